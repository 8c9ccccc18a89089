//! Tests of the test harness itself: if these fail, failures elsewhere say
//! nothing about tally.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use support::pg::PgServer;
use support::proxy::{ChaosProxy, Fault};
use support::redis::{RedisOptions, RedisServer};
use support::wait_for;
use tokio_postgres::{Client, NoTls};

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    // The connection task ends by itself when the server goes away.
    tokio::spawn(connection);
    Ok(client)
}

async fn query_i32(client: &Client, sql: &str) -> i32 {
    client.query_one(sql, &[]).await.expect(sql).get(0)
}

#[tokio::test]
async fn pg_starts_and_answers_queries() {
    let pg = PgServer::start();
    assert_eq!(pg.psql("postgres", "SELECT 1"), "1");
    let client = connect(&pg.url("postgres")).await.unwrap();
    assert_eq!(query_i32(&client, "SELECT 1").await, 1);
    assert_eq!(pg.psql("postgres", "SHOW max_connections"), "300");
    assert_eq!(pg.psql("postgres", "SHOW fsync"), "on");
    assert!(pg.is_running());
}

#[tokio::test]
async fn pg_create_database_twice_gives_two_distinct_databases() {
    let pg = PgServer::start();
    let a = pg.create_database();
    let b = pg.create_database();
    assert_ne!(a, b);
    let prefix = format!("postgres://postgres@127.0.0.1:{}/", pg.port());
    let name_a = a.strip_prefix(&prefix).expect("url a").to_owned();
    let name_b = b.strip_prefix(&prefix).expect("url b").to_owned();

    let client_a = connect(&a).await.unwrap();
    let client_b = connect(&b).await.unwrap();
    client_a
        .batch_execute("CREATE TABLE only_in_a (x int)")
        .await
        .unwrap();
    let current_b: String = client_b
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(current_b, name_b);
    let tables_in_b: i64 = client_b
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables_in_b, 0);
    assert_eq!(
        pg.psql(
            &name_a,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'"
        ),
        "1"
    );
}

#[tokio::test]
async fn pg_kill_then_restart_keeps_committed_data() {
    let mut pg = PgServer::start();
    let port = pg.port();
    let url = pg.create_database();
    let client = connect(&url).await.unwrap();
    client
        .batch_execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (4242)")
        .await
        .unwrap();
    drop(client);

    pg.kill();
    assert!(!pg.is_running());
    assert!(connect(&url).await.is_err(), "connected to a killed server");

    pg.restart();
    assert!(pg.is_running());
    assert_eq!(pg.port(), port);
    let client = connect(&url).await.unwrap();
    assert_eq!(query_i32(&client, "SELECT v FROM kept").await, 4242);
    let rows: i64 = client
        .query_one("SELECT count(*) FROM kept", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn pg_stop_then_restart_keeps_data() {
    let mut pg = PgServer::start();
    pg.psql(
        "postgres",
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('clean')",
    );
    pg.stop();
    assert!(!pg.is_running());
    pg.restart();
    assert_eq!(pg.psql("postgres", "SELECT v FROM t"), "clean");
}

#[tokio::test]
async fn pg_freeze_times_out_queries_and_thaw_recovers() {
    let pg = PgServer::start();
    let client = connect(&pg.url("postgres")).await.unwrap();
    assert_eq!(query_i32(&client, "SELECT 1").await, 1);

    pg.freeze();
    assert!(pg.is_running(), "a frozen server still counts as running");
    let frozen =
        tokio::time::timeout(Duration::from_secs(1), client.query_one("SELECT 1", &[])).await;
    assert!(
        frozen.is_err(),
        "query answered by a frozen server: {frozen:?}"
    );

    pg.thaw();
    let thawed = tokio::time::timeout(Duration::from_secs(5), async {
        let fresh = connect(&pg.url("postgres")).await.unwrap();
        query_i32(&fresh, "SELECT 2").await
    })
    .await;
    assert_eq!(thawed.expect("query after thaw timed out"), 2);
}

#[test]
fn two_pg_servers_run_side_by_side() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(PgServer::start);
        let b = s.spawn(PgServer::start);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.port(), b.port());
    assert_ne!(a.data_dir(), b.data_dir());
    a.psql(
        "postgres",
        "CREATE TABLE which (v text); INSERT INTO which VALUES ('a')",
    );
    b.psql(
        "postgres",
        "CREATE TABLE which (v text); INSERT INTO which VALUES ('b')",
    );
    assert_eq!(a.psql("postgres", "SELECT v FROM which"), "a");
    assert_eq!(b.psql("postgres", "SELECT v FROM which"), "b");
}

#[test]
fn pg_psql_file_runs_a_script_and_fails_loudly() {
    let pg = PgServer::start();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.sql");
    std::fs::write(
        &good,
        "CREATE TABLE s (v int);\nINSERT INTO s VALUES (1), (2), (3);\n",
    )
    .unwrap();
    pg.psql_file("postgres", &good);
    assert_eq!(pg.psql("postgres", "SELECT sum(v) FROM s"), "6");

    let bad = dir.path().join("bad.sql");
    std::fs::write(
        &bad,
        "INSERT INTO s VALUES (10);\nSELEC nonsense;\nINSERT INTO s VALUES (100);\n",
    )
    .unwrap();
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pg.psql_file("postgres", &bad)
    }))
    .expect_err("a broken script must panic");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("syntax error"),
        "panic lacks psql's stderr: {message}"
    );
    // ON_ERROR_STOP: nothing after the error ran.
    assert_eq!(pg.psql("postgres", "SELECT sum(v) FROM s"), "16");
}

#[test]
fn redis_set_get_and_reply_rendering() {
    let redis = RedisServer::start();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}", redis.port()));
    assert_eq!(
        redis.command(&["SET", "k", "hello world"]).as_deref(),
        Ok("OK")
    );
    assert_eq!(redis.command(&["GET", "k"]).as_deref(), Ok("hello world"));
    assert_eq!(redis.command(&["GET", "missing"]).as_deref(), Ok("(nil)"));
    assert_eq!(redis.command(&["INCR", "n"]).as_deref(), Ok("1"));
    assert_eq!(
        redis.command(&["RPUSH", "l", "a", "b", "c"]).as_deref(),
        Ok("3")
    );
    assert_eq!(
        redis.command(&["LRANGE", "l", "0", "-1"]).as_deref(),
        Ok("a\nb\nc")
    );
    let err = redis.command(&["INCR", "k"]).unwrap_err();
    assert!(err.starts_with("ERR "), "{err}");
}

#[test]
fn redis_kill_restart_without_persist_loses_keys() {
    let mut redis = RedisServer::start();
    let port = redis.port();
    assert_eq!(redis.command(&["SET", "k", "v"]).as_deref(), Ok("OK"));
    redis.kill();
    assert!(!redis.is_running());
    assert!(redis.command(&["PING"]).is_err());
    redis.restart();
    assert!(redis.is_running());
    assert_eq!(redis.port(), port);
    assert_eq!(redis.command(&["GET", "k"]).as_deref(), Ok("(nil)"));
}

#[test]
fn redis_persist_with_save_survives_kill_and_restart() {
    let mut redis = RedisServer::start_with(RedisOptions {
        persist: true,
        ..RedisOptions::default()
    });
    assert_eq!(redis.command(&["SET", "k", "saved"]).as_deref(), Ok("OK"));
    assert_eq!(redis.command(&["SAVE"]).as_deref(), Ok("OK"));
    assert!(redis.dir().join("dump.rdb").is_file());
    // Written after SAVE, so lost by the SIGKILL.
    assert_eq!(redis.command(&["SET", "late", "x"]).as_deref(), Ok("OK"));
    redis.kill();
    redis.restart();
    assert_eq!(redis.command(&["GET", "k"]).as_deref(), Ok("saved"));
    assert_eq!(redis.command(&["GET", "late"]).as_deref(), Ok("(nil)"));
}

#[test]
fn redis_freeze_stalls_replies_until_thaw() {
    let redis = RedisServer::start();
    let mut conn = TcpStream::connect(("127.0.0.1", redis.port())).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    redis.freeze();
    conn.write_all(b"PING\r\n").unwrap();
    let mut buf = [0u8; 16];
    let err = conn.read(&mut buf).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    redis.thaw();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = conn.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"+PONG\r\n");
}

/// A tiny echo server on its own threads, for the lifetime of the test.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn connect_proxy(proxy: &ChaosProxy) -> TcpStream {
    let conn = TcpStream::connect(proxy.addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    conn.set_nodelay(true).unwrap();
    conn
}

/// Write `msg` and read the same number of bytes back.
fn round_trip(conn: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    conn.write_all(msg)?;
    let mut back = vec![0u8; msg.len()];
    conn.read_exact(&mut back)?;
    Ok(back)
}

fn wait_connections(proxy: &ChaosProxy, n: usize) {
    let seen = wait_for(Duration::from_secs(2), Duration::from_millis(5), || {
        (proxy.connections() == n).then_some(())
    });
    assert!(
        seen.is_some(),
        "expected {n} connections, have {}",
        proxy.connections()
    );
}

#[test]
fn proxy_forwards_bytes_and_counts_connections() {
    let proxy = ChaosProxy::start(echo_server());
    assert_eq!(proxy.addr().port(), proxy.port());
    assert_eq!(proxy.connections(), 0);
    let mut conn = connect_proxy(&proxy);
    assert_eq!(round_trip(&mut conn, b"hello").unwrap(), b"hello");
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(round_trip(&mut conn, &big).unwrap(), big);
    wait_connections(&proxy, 1);
    drop(conn);
    wait_connections(&proxy, 0);
}

#[test]
fn proxy_delay_slows_each_round_trip() {
    let proxy = ChaosProxy::start(echo_server());
    let mut conn = connect_proxy(&proxy);
    assert_eq!(round_trip(&mut conn, b"warm").unwrap(), b"warm");
    // What an undelayed round trip takes here and now; the delay is well
    // above it, so a trip that carries the delay cannot pass for one
    // that does not.
    let baseline = (0..20)
        .map(|_| {
            let started = Instant::now();
            assert_eq!(round_trip(&mut conn, b"base").unwrap(), b"base");
            started.elapsed()
        })
        .max()
        .unwrap();
    let delay = (baseline * 20).max(Duration::from_millis(200));

    proxy.set_fault(Fault::Delay(delay));
    let started = Instant::now();
    assert_eq!(round_trip(&mut conn, b"slow").unwrap(), b"slow");
    let slow = started.elapsed();
    assert!(
        slow >= delay,
        "delayed by {delay:?}, the round trip took {slow:?}"
    );
    // Once each way, not more.
    let most = delay * 3 + baseline * 4;
    assert!(
        slow < most,
        "delayed by {delay:?}, the round trip took {slow:?}, beyond {most:?} \
         (undelayed at most {baseline:?})"
    );

    proxy.set_fault(Fault::None);
    let started = Instant::now();
    assert_eq!(round_trip(&mut conn, b"fast").unwrap(), b"fast");
    let fast = started.elapsed();
    let most = delay / 2 + baseline * 4;
    assert!(
        fast < most,
        "undelayed round trip took {fast:?}, beyond {most:?} (the delay was {delay:?}, \
         undelayed before at most {baseline:?})"
    );
}

#[test]
fn proxy_blackhole_swallows_traffic_until_lifted() {
    let proxy = ChaosProxy::start(echo_server());
    let mut old = connect_proxy(&proxy);
    assert_eq!(round_trip(&mut old, b"before").unwrap(), b"before");

    proxy.set_fault(Fault::Blackhole);
    old.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let err = round_trip(&mut old, b"lost").unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    let mut during = connect_proxy(&proxy);
    during
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let err = round_trip(&mut during, b"lost too").unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    // Partitioned, not closed.
    wait_connections(&proxy, 2);

    proxy.set_fault(Fault::None);
    let mut fresh = connect_proxy(&proxy);
    assert_eq!(round_trip(&mut fresh, b"after").unwrap(), b"after");
    // Existing connections carry new bytes again (what was sent meanwhile is gone).
    old.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(round_trip(&mut old, b"again").unwrap(), b"again");
    during
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(round_trip(&mut during, b"healed").unwrap(), b"healed");
}

/// Whether the peer closed `conn`: a read gives EOF or an error rather than
/// timing out.
fn closed_by_peer(conn: &mut TcpStream) -> bool {
    conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 16];
    match conn.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

#[test]
fn proxy_refuse_closes_existing_and_new_connections() {
    let proxy = ChaosProxy::start(echo_server());
    let mut old = connect_proxy(&proxy);
    assert_eq!(round_trip(&mut old, b"up").unwrap(), b"up");
    wait_connections(&proxy, 1);

    proxy.set_fault(Fault::Refuse);
    assert!(closed_by_peer(&mut old), "existing connection left open");
    wait_connections(&proxy, 0);
    let mut new = connect_proxy(&proxy);
    let started = Instant::now();
    assert!(closed_by_peer(&mut new), "new connection left open");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(proxy.connections(), 0);

    proxy.set_fault(Fault::None);
    let mut back = connect_proxy(&proxy);
    assert_eq!(round_trip(&mut back, b"back").unwrap(), b"back");
}

#[tokio::test]
async fn proxy_in_front_of_postgres() {
    let pg = PgServer::start();
    let proxy = ChaosProxy::start(SocketAddr::from(([127, 0, 0, 1], pg.port())));
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", proxy.port());
    let client = connect(&url).await.unwrap();
    assert_eq!(query_i32(&client, "SELECT 7").await, 7);

    proxy.set_fault(Fault::Blackhole);
    let stalled =
        tokio::time::timeout(Duration::from_secs(1), client.query_one("SELECT 1", &[])).await;
    assert!(
        stalled.is_err(),
        "query got through a blackhole: {stalled:?}"
    );

    proxy.set_fault(Fault::Refuse);
    let refused = tokio::time::timeout(Duration::from_secs(5), connect(&url)).await;
    assert!(
        matches!(refused, Ok(Err(_))),
        "connect through Refuse: {refused:?}"
    );

    proxy.set_fault(Fault::None);
    let client = connect(&url).await.unwrap();
    assert_eq!(query_i32(&client, "SELECT 8").await, 8);
}
