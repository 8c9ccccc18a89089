//! Accepting and serving HTTP connections so that no client can hold the
//! server: a deadline for every phase of a connection, a bound on header
//! bytes, a cap on open connections, and a stop that waits only for
//! requests already read.
//!
//! Each connection is in one [`Phase`] at a time (HTTP/1.1 serves its
//! requests one after another). A watchdog beside the connection closes it
//! when its phase's deadline passes:
//!
//! | phase | ends when | deadline |
//! |---|---|---|
//! | idle (before a request) | the first byte arrives | `idle_timeout` |
//! | head | the whole head has arrived | `header_timeout` from the first byte |
//! | body | the body's last byte has arrived | `body_timeout` from the head |
//! | handling | the handler answers | none: the handler's own timeouts |
//! | sending | the response is written | `body_timeout` without progress |
//!
//! When `max_connections` are open, a new connection pushes out the one
//! that has waited longest without delivering a whole request (idle, or
//! sending its head or body slowly), as a stop would: slow and idle clients
//! cannot keep others out. When every open connection has a request being
//! answered, a few more connections are served for `/healthz`, `/readyz`
//! and `/metrics` only, so that an orchestrator still sees a live, ready
//! server (a full server is not a dead one); every other request on them
//! gets 503. Past those, a new connection is closed at once.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, header};
use axum::response::IntoResponse;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::{Instant, sleep_until};
use tower::ServiceExt;

use crate::http::{ApiError, ErrorCode};
use crate::metrics::Metrics;
use crate::sync::lock;

/// What a connection may take; all are settings (see `config`).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
}

/// Connections past `max_connections`: waiting for a slot to free, or
/// served for the operational probes.
pub const PROBE_CONNECTIONS: usize = 32;

/// How long a connection past the cap waits for a pushed-out connection's
/// slot before it is served for the probes only.
const SLOT_WAIT: Duration = Duration::from_secs(1);

/// A probe connection's whole-request and idle deadlines.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The paths a probe connection may ask for.
const PROBE_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// File descriptors kept for everything but client connections: the
/// store's pool, Redis, SQLite's files, logs.
const FDS_KEPT: u64 = 64;

impl Limits {
    /// Raises the process's open-file limit to its hard limit and lowers
    /// `max_connections` to what that limit can hold; a cap the process
    /// cannot reach would let accept fail with EMFILE for everyone instead.
    pub fn fit_to_fd_limit(mut self, store_connections: u64) -> Limits {
        let available = match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the open-file limit");
                return self;
            }
        };
        let budget = available
            .saturating_sub(FDS_KEPT + store_connections + PROBE_CONNECTIONS as u64)
            .max(1);
        if (self.max_connections as u64) > budget {
            tracing::warn!(
                configured = self.max_connections,
                open_file_limit = available,
                using = budget,
                "TALLY_MAX_CONNECTIONS is more than the open-file limit allows; \
                 raise the limit (ulimit -n, LimitNOFILE=) to use it all"
            );
            self.max_connections = budget as usize;
        }
        self
    }
}

/// Serves `router` on `listener` until `stop` turns true; then stops
/// accepting, closes every connection that has not delivered a whole
/// request, and returns once the others have had their answers.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let shared = Arc::new(Shared {
        slots: Arc::new(Semaphore::new(limits.max_connections)),
        probe_slots: Arc::new(Semaphore::new(PROBE_CONNECTIONS)),
        limits,
        router,
        metrics,
        open: Mutex::new(Registry::default()),
        stop: stop.clone(),
    });
    // Every connection task holds a sender; when all are dropped, all
    // connections are closed.
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    let mut accept_errors = 0u32;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                accept_errors = 0;
                pair
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning, and say
                // so once per burst.
                if accept_errors == 0 {
                    tracing::warn!(error = %e, "accepting a connection failed");
                }
                accept_errors = accept_errors.saturating_add(1);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let slot = match shared.slots.clone().try_acquire_owned() {
            Ok(permit) => Ok(permit),
            Err(_) => match shared.probe_slots.clone().try_acquire_owned() {
                Ok(permit) => Err(permit),
                Err(_) => {
                    shared.metrics.connection_refused();
                    drop(stream);
                    continue;
                }
            },
        };
        let shared = shared.clone();
        let open = open_tx.clone();
        tokio::spawn(async move {
            let slot = match slot {
                Ok(permit) => Slot::Full(permit),
                Err(probe) => shared.wait_for_slot(probe).await,
            };
            serve_connection(stream, peer, slot, &shared).await;
            drop(open);
        });
    }
    drop(open_tx);
    let _ = open_rx.recv().await;
}

struct Shared {
    limits: Limits,
    router: Router,
    metrics: Arc<Metrics>,
    slots: Arc<Semaphore>,
    probe_slots: Arc<Semaphore>,
    open: Mutex<Registry>,
    stop: watch::Receiver<bool>,
}

/// The open connections' activities, to choose one to push out.
#[derive(Default)]
struct Registry {
    next: u64,
    connections: HashMap<u64, Arc<Activity>>,
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.open)
    }

    /// A connection past the cap: pushes out the open connection that has
    /// waited longest without a whole request, and takes its slot; if none
    /// can go, or its slot does not free in time, serves the probes only.
    async fn wait_for_slot(&self, probe: OwnedSemaphorePermit) -> Slot {
        let oldest = self
            .registry()
            .connections
            .values()
            .filter(|a| a.evictable())
            .min_by_key(|a| a.now().1)
            .cloned();
        if let Some(activity) = oldest {
            activity.evict();
            // Counted here, not when the connection's task notices: a
            // request this one serves (perhaps /metrics, on the probe
            // slot) must already see it.
            self.metrics.connection_evicted();
            if let Ok(Ok(permit)) =
                tokio::time::timeout(SLOT_WAIT, self.slots.clone().acquire_owned()).await
            {
                return Slot::Full(permit);
            }
        }
        Slot::ProbeOnly(probe)
    }
}

/// A connection's right to be served: in full, or for the probes only.
enum Slot {
    Full(#[allow(dead_code)] OwnedSemaphorePermit),
    ProbeOnly(#[allow(dead_code)] OwnedSemaphorePermit),
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, slot: Slot, shared: &Shared) {
    // Small responses must not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let _open = shared.metrics.connection_opened();
    let probe_only = matches!(slot, Slot::ProbeOnly(_));
    let activity = Arc::new(Activity::new());
    let key = {
        let mut registry = shared.registry();
        registry.next += 1;
        let key = registry.next;
        if !probe_only {
            registry.connections.insert(key, activity.clone());
        }
        key
    };
    let _registered = Deregister { shared, key };
    let io = TokioIo::new(Tracked {
        stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        let router = shared.router.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            handle(request, peer, probe_only, router.clone(), activity.clone())
        })
    };
    let max_header = shared.limits.max_header_bytes;
    let mut builder = http1::Builder::new();
    builder
        .max_header_size(max_header)
        // hyper's smallest read buffer is 8 KiB; a head that fills it is
        // answered 431.
        .max_buf_size(max_header.max(8192))
        // The watchdog below times every phase; hyper's own header timer
        // would also close idle keep-alive connections at the same deadline.
        .header_read_timeout(None)
        .keep_alive(!probe_only);
    let mut conn = std::pin::pin!(builder.serve_connection(io, service));

    let limits = if probe_only {
        // A probe connection gets one quick request.
        Limits {
            idle_timeout: PROBE_TIMEOUT,
            header_timeout: PROBE_TIMEOUT,
            body_timeout: PROBE_TIMEOUT,
            ..shared.limits.clone()
        }
    } else {
        shared.limits.clone()
    };
    let mut stop = shared.stop.clone();
    let mut stopping = false;
    loop {
        if activity.evicted.load(Relaxed) {
            return;
        }
        let now = Instant::now();
        let (phase, since) = activity.now();
        let deadline = deadline(phase, since, &limits, stopping);
        if deadline.is_some_and(|d| d <= now) {
            if !stopping {
                shared.metrics.connection_timed_out();
                tracing::debug!(%peer, ?phase, "closing a connection past its deadline");
            }
            return;
        }
        tokio::select! {
            _ = conn.as_mut() => return,
            () = sleep_until(deadline.unwrap_or(now + Duration::from_secs(3600))) => {}
            () = activity.changed.notified() => {}
            Ok(()) = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Takes a closed connection out of the registry.
struct Deregister<'a> {
    shared: &'a Shared,
    key: u64,
}

impl Drop for Deregister<'_> {
    fn drop(&mut self) {
        self.shared.registry().connections.remove(&self.key);
    }
}

/// One request: through the router, or, on a probe connection, through it
/// only for the probe paths.
async fn handle(
    request: Request<Incoming>,
    peer: SocketAddr,
    probe_only: bool,
    router: Router,
    activity: Arc<Activity>,
) -> Result<Response<Body>, Infallible> {
    let has_body = !hyper::body::Body::is_end_stream(request.body());
    activity.set(if has_body {
        Phase::Body
    } else {
        Phase::Handling
    });
    let mut request = request.map(|body| {
        Body::new(RequestBody {
            inner: body,
            activity: activity.clone(),
        })
    });
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = if probe_only && !PROBE_PATHS.contains(&request.uri().path()) {
        let mut response = ApiError::new(
            ErrorCode::Overloaded,
            "tally has as many connections open as TALLY_MAX_CONNECTIONS allows; retry later",
        )
        .retry_after(1)
        .into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    } else {
        router.oneshot(request).await?
    };
    activity.set(Phase::Sending);
    Ok(response.map(|body| {
        Body::new(ResponseBody {
            inner: body,
            activity,
        })
    }))
}

/// Where a connection is in serving its current request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a request's first byte.
    Idle,
    /// A request's head is arriving.
    Head,
    /// The head is in; its body is arriving.
    Body,
    /// The whole request is in; the handler is working on it.
    Handling,
    /// The response is being written.
    Sending,
    /// The response's last byte is with hyper, not yet flushed.
    Flushing,
}

/// When a connection in `phase` since `since` is closed; `None` for never.
/// While stopping, connections without a whole request are closed at once
/// and the others finish their response.
pub fn deadline(phase: Phase, since: Instant, limits: &Limits, stopping: bool) -> Option<Instant> {
    match phase {
        Phase::Idle | Phase::Head | Phase::Body if stopping => Some(since),
        Phase::Idle => Some(since + limits.idle_timeout),
        Phase::Head => Some(since + limits.header_timeout),
        Phase::Body | Phase::Sending | Phase::Flushing => Some(since + limits.body_timeout),
        Phase::Handling => None,
    }
}

/// A connection's phase and when it began (for `Sending`, when the last
/// byte was written), shared by the socket, the bodies and the watchdog.
#[derive(Debug)]
struct Activity {
    state: Mutex<(Phase, Instant)>,
    /// Woken when the phase changes (a deadline may come sooner).
    changed: Notify,
    /// Whether the socket has written since the last look (cheaper than
    /// taking the lock on every write).
    wrote: AtomicBool,
    /// Pushed out to make room for a new connection.
    evicted: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Activity {
            state: Mutex::new((Phase::Idle, Instant::now())),
            changed: Notify::new(),
            wrote: AtomicBool::new(false),
            evicted: AtomicBool::new(false),
        }
    }

    /// Whether this connection may be pushed out: it has not delivered a
    /// whole request (the same connections a stop closes at once).
    fn evictable(&self) -> bool {
        !self.evicted.load(Relaxed)
            && matches!(self.now().0, Phase::Idle | Phase::Head | Phase::Body)
    }

    fn evict(&self) {
        self.evicted.store(true, Relaxed);
        self.changed.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, (Phase, Instant)> {
        lock(&self.state)
    }

    fn now(&self) -> (Phase, Instant) {
        let mut state = self.lock();
        if self.wrote.swap(false, Relaxed) && matches!(state.0, Phase::Sending) {
            state.1 = Instant::now();
        }
        *state
    }

    fn set(&self, phase: Phase) {
        *self.lock() = (phase, Instant::now());
        self.changed.notify_one();
    }

    /// Moves from `from` to `to`; a no-op in any other phase.
    fn advance(&self, from: Phase, to: Phase) {
        let mut state = self.lock();
        if state.0 == from {
            *state = (to, Instant::now());
            drop(state);
            self.changed.notify_one();
        }
    }
}

/// The socket, telling the connection's [`Activity`] when a request's first
/// byte arrives, when response bytes leave, and when they are flushed.
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.advance(Phase::Idle, Phase::Head);
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote.store(true, Relaxed);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote.store(true, Relaxed);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.stream).poll_flush(cx);
        if matches!(polled, Poll::Ready(Ok(()))) {
            self.activity.advance(Phase::Flushing, Phase::Idle);
        }
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A request body that marks the request whole when its end arrives, or
/// when the handler stops reading it.
struct RequestBody {
    inner: Incoming,
    activity: Arc<Activity>,
}

impl hyper::body::Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.activity.advance(Phase::Body, Phase::Handling);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        self.activity.advance(Phase::Body, Phase::Handling);
    }
}

/// A response body that marks the response written when hyper has taken
/// its last frame (or dropped it).
struct ResponseBody {
    inner: Body,
    activity: Arc<Activity>,
}

impl hyper::body::Body for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.activity.advance(Phase::Sending, Phase::Flushing);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.activity.advance(Phase::Sending, Phase::Flushing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_connections: 10,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            max_header_bytes: 16384,
        }
    }

    #[test]
    fn each_phase_has_its_deadline() {
        let t = Instant::now();
        let l = limits();
        let s = Duration::from_secs;
        assert_eq!(deadline(Phase::Idle, t, &l, false), Some(t + s(75)));
        assert_eq!(deadline(Phase::Head, t, &l, false), Some(t + s(10)));
        assert_eq!(deadline(Phase::Body, t, &l, false), Some(t + s(30)));
        assert_eq!(deadline(Phase::Handling, t, &l, false), None);
        assert_eq!(deadline(Phase::Sending, t, &l, false), Some(t + s(30)));
        assert_eq!(deadline(Phase::Flushing, t, &l, false), Some(t + s(30)));
    }

    #[test]
    fn a_stop_closes_only_connections_without_a_whole_request() {
        let t = Instant::now();
        let l = limits();
        for phase in [Phase::Idle, Phase::Head, Phase::Body] {
            assert_eq!(deadline(phase, t, &l, true), Some(t), "{phase:?}");
        }
        assert_eq!(deadline(Phase::Handling, t, &l, true), None);
        assert_eq!(
            deadline(Phase::Sending, t, &l, true),
            Some(t + Duration::from_secs(30))
        );
    }
}
