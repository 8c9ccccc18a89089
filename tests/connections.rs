//! Slow, idle and greedy clients against the real binary and its real
//! listener: every phase of a connection has a deadline, heads are bounded,
//! connections are capped without locking out the probes, and a stop waits
//! only for requests already read.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use support::app::{TOKEN, TallyProcess, parse_greeting};
use support::load::{self, Until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn sqlite_env(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}/tally.db", dir.path().display())
}

/// A connection that has sent the start of a request head and no more.
async fn partial_head(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    s
}

/// Whether the server has closed `s` (EOF or reset) within `within`;
/// bytes it sends first are read and dropped.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// One request on a new connection, HTTP/1.0 so the server closes after
/// it: the status and the body.
async fn one_request(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut reply))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply).into_owned();
    let status = reply
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {reply:?}"));
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    (status, body.unwrap_or_default())
}

/// The value of an unlabelled metric.
async fn metric(addr: SocketAddr, name: &str) -> u64 {
    let (status, text) = one_request(addr, "/metrics").await;
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// 200 connections each sending a header byte every 200 ms are all closed
/// at the header timeout, while other clients are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_sent_a_byte_at_a_time_are_cut_off_at_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_env(&dir);
    let tally =
        TallyProcess::spawn(&[("TALLY_DATABASE_URL", &url), ("TALLY_HEADER_TIMEOUT", "1s")]);
    let addr = tally.addr;
    let mut slow = Vec::new();
    for _ in 0..200 {
        slow.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let started = Instant::now();
            let mut buf = [0u8; 256];
            loop {
                if s.write_all(b"G").await.is_err() {
                    return started.elapsed();
                }
                let read = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await;
                if let Ok(Ok(0) | Err(_)) = read {
                    return started.elapsed();
                }
                assert!(started.elapsed() < Duration::from_secs(20), "never closed");
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(one_request(addr, "/").await.0, 200);
    let mut lasted = Vec::new();
    for s in slow {
        lasted.push(s.await.unwrap());
    }
    lasted.sort();
    println!(
        "slow heads closed after {:?} (first) to {:?} (last)",
        lasted[0], lasted[199]
    );
    assert!(lasted[0] >= Duration::from_millis(900), "{lasted:?}");
    assert!(lasted[199] < Duration::from_secs(4), "{lasted:?}");
    assert_eq!(
        metric(addr, "tally_http_connections_timed_out_total").await,
        200
    );
}

/// A keep-alive connection between requests, and one that has sent
/// nothing, wait the idle timeout, not the (shorter) header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_at_the_idle_timeout_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_env(&dir);
    let tally = TallyProcess::spawn(&[
        ("TALLY_DATABASE_URL", &url),
        ("TALLY_HEADER_TIMEOUT", "1s"),
        ("TALLY_IDLE_TIMEOUT", "3s"),
    ]);
    let mut kept = TcpStream::connect(tally.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let mut silent = TcpStream::connect(tally.addr).await.unwrap();

    assert!(!closed_within(&mut kept, Duration::from_millis(2000)).await);
    assert!(!closed_within(&mut silent, Duration::from_millis(10)).await);
    assert!(closed_within(&mut kept, Duration::from_millis(3000)).await);
    assert!(closed_within(&mut silent, Duration::from_millis(500)).await);
}

/// A head larger than TALLY_MAX_HEADER_BYTES gets 431; 200 connections
/// each sending 371 KB of unfinished headers cost little memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_heads_get_431_and_cannot_grow_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_env(&dir);
    let tally = TallyProcess::spawn(&[("TALLY_DATABASE_URL", &url)]);
    let addr = tally.addr;

    let mut s = TcpStream::connect(addr).await.unwrap();
    let pad = "a".repeat(16 * 1024);
    s.write_all(format!("GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {pad}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply).await;
    assert!(
        reply.starts_with(b"HTTP/1.1 431 "),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    // A head just under the bound is served.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let pad = "a".repeat(15 * 1024);
    s.write_all(format!("GET /healthz HTTP/1.0\r\nHost: x\r\nX-Pad: {pad}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).await.unwrap();
    assert!(
        reply.starts_with(b"HTTP/1.0 200 "),
        "{:?}",
        String::from_utf8_lossy(&reply)
    );

    let before = tally.memory_kib("VmRSS");
    let chunk = format!("X-Pad: {}\r\n", "a".repeat(1000));
    let mut senders = Vec::new();
    for _ in 0..200 {
        let chunk = chunk.clone();
        senders.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await;
            for _ in 0..371 {
                if s.write_all(chunk.as_bytes()).await.is_err() {
                    break;
                }
            }
            closed_within(&mut s, Duration::from_secs(5)).await
        }));
    }
    for s in senders {
        assert!(
            s.await.unwrap(),
            "a connection with a huge head stayed open"
        );
    }
    let peak = tally.memory_kib("VmHWM");
    println!("RSS {before} KiB before, peak {peak} KiB during 200 × 371 KB heads");
    assert!(
        peak < before + 16 * 1024,
        "peak RSS {peak} KiB, {before} KiB before"
    );
}

/// At TALLY_MAX_CONNECTIONS, each new connection pushes out the one that
/// has waited longest without a whole request: slow heads cannot keep
/// anyone out, and probes and hits are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_new_connections_push_out_the_slowest() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_env(&dir);
    let tally = TallyProcess::spawn(&[
        ("TALLY_DATABASE_URL", &url),
        ("TALLY_MAX_CONNECTIONS", "20"),
        ("TALLY_HEADER_TIMEOUT", "60s"),
    ]);
    let mut held = Vec::new();
    for _ in 0..60 {
        held.push(partial_head(tally.addr).await);
        // One at a time, so that each push-out is done before the next.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(one_request(tally.addr, "/healthz").await.0, 200);
    assert_eq!(one_request(tally.addr, "/readyz").await.0, 200);
    let (status, body) = one_request(tally.addr, "/").await;
    assert_eq!((status, parse_greeting(&body)), (200, Some(1)));
    // 40 pushed out by the held connections and one by /healthz; each
    // request after it took the slot its predecessor freed, unless it came
    // before that slot was free (then it pushed out one more).
    let evicted = metric(tally.addr, "tally_http_connections_evicted_total").await;
    assert!((41..=44).contains(&evicted), "{evicted}");
    let mut closed = 0;
    for s in &mut held {
        if closed_within(s, Duration::from_millis(50)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, evicted);
}

/// When every connection has a request being answered (SQLite locked, so
/// the hits wait), a probe connection still answers /healthz, /readyz and
/// /metrics, and other requests on it get 503 `overloaded`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_connection_busy_the_probes_still_answer() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tally.db");
    let url = format!("sqlite://{}", db.display());
    let tally = TallyProcess::spawn(&[
        ("TALLY_DATABASE_URL", &url),
        ("TALLY_MAX_CONNECTIONS", "10"),
        ("TALLY_STORE_TIMEOUT", "30s"),
    ]);
    let locker = rusqlite::Connection::open(&db).unwrap();
    locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let addr = tally.addr;
    let hits: Vec<_> = (0..10)
        .map(|_| tokio::spawn(async move { one_request(addr, "/").await }))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_eq!(one_request(addr, "/healthz").await.0, 200);
    assert_eq!(one_request(addr, "/readyz").await.0, 200);
    assert_eq!(metric(addr, "tally_http_requests_in_flight").await, 11);
    let (status, body) = one_request(addr, "/").await;
    assert_eq!(status, 503);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "overloaded");

    locker.execute_batch("COMMIT").unwrap();
    let mut counts = Vec::new();
    for h in hits {
        let (status, body) = h.await.unwrap();
        assert_eq!(status, 200);
        counts.push(parse_greeting(&body).unwrap());
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=10).collect::<Vec<i64>>());
}

/// With an open-file limit of 256 (a common default is 1 024), the cap is
/// lowered to fit it, and 400 idle connections from one client do not make
/// /healthz or a hit fail for another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_fits_the_open_file_limit() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_env(&dir);
    let tally = TallyProcess::spawn_wrapped(
        &["prlimit", "--nofile=256:256", "--"],
        &[("TALLY_DATABASE_URL", &url)],
    );
    assert!(
        tally
            .log()
            .contains("TALLY_MAX_CONNECTIONS is more than the open-file limit allows"),
        "{}",
        tally.log()
    );
    let mut idle = Vec::new();
    for _ in 0..400 {
        idle.push(TcpStream::connect(tally.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(one_request(tally.addr, "/healthz").await.0, 200);
    let (status, body) = one_request(tally.addr, "/").await;
    assert_eq!((status, parse_greeting(&body)), (200, Some(1)));
    assert!(!tally.log().contains("accepting a connection failed"));
}

/// A connection that sent only `G`, one with half a body and an idle one
/// do not hold a stop: under load, SIGTERM answers every request already
/// read and exits 0 at once, far inside the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_do_not_hold_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_env(&dir);
    let mut tally = TallyProcess::spawn(&[
        ("TALLY_DATABASE_URL", &url),
        ("TALLY_SHUTDOWN_GRACE", "20s"),
    ]);
    let mut g = TcpStream::connect(tally.addr).await.unwrap();
    g.write_all(b"G").await.unwrap();
    // Creating a site reads its body before anything else.
    let mut half_body = TcpStream::connect(tally.addr).await.unwrap();
    half_body
        .write_all(
            format!(
                "POST /api/v1/sites HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"slug\""
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let _idle = TcpStream::connect(tally.addr).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (url, stop) = (tally.url("/"), stop.clone());
        async move { load::run(&[url], Method::GET, 32, Until::Flag(stop, 1_000_000)).await }
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let signalled = Instant::now();
    tally.signal(libc::SIGTERM);
    let (status, tally) = tokio::task::spawn_blocking(move || {
        let status = tally.wait(Duration::from_secs(30));
        (status, tally)
    })
    .await
    .unwrap();
    let took = signalled.elapsed();
    stop.store(true, Ordering::Relaxed);
    let outcomes = load.await.unwrap();
    println!("stopped in {took:?} with half-sent requests open");
    assert_eq!(status.code(), Some(0), "{}", tally.log());
    assert!(took < Duration::from_secs(5), "the stop took {took:?}");
    assert!(closed_within(&mut g, Duration::from_millis(100)).await);
    assert!(closed_within(&mut half_body, Duration::from_millis(100)).await);
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o.status, Some(200) | None)),
        "{:?}",
        load::statuses(&outcomes)
    );
    let acknowledged = outcomes.iter().filter(|o| o.status == Some(200)).count() as i64;
    assert!(acknowledged > 50, "the load was real: {acknowledged}");
    drop(tally);
    let survivor = TallyProcess::spawn(&[("TALLY_DATABASE_URL", &url)]);
    assert_eq!(
        support::app::default_count(&survivor.url("")).await,
        acknowledged
    );
}
