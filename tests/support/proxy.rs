//! A fault-injecting TCP proxy for chaos tests (a small stand-in for
//! toxiproxy, which isn't available here).

use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// What the proxy does to traffic. Changes apply to existing connections
/// immediately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Forward bytes both ways.
    #[default]
    None,
    /// Hold every chunk, in either direction, for this long before
    /// forwarding it (latency, not a throughput cap).
    Delay(Duration),
    /// Network partition: connections stay open, but whatever either side
    /// sends is read and dropped; new connections are accepted and don't
    /// reach upstream until the fault is lifted.
    Blackhole,
    /// Server down: existing connections are closed now, new ones right
    /// after accept.
    Refuse,
}

/// A TCP proxy on 127.0.0.1 in front of one upstream address.
///
/// It runs on its own thread with its own current-thread tokio runtime, so
/// it works from sync and async tests alike. Dropping it closes every
/// connection and stops the thread.
#[derive(Debug)]
pub struct ChaosProxy {
    addr: SocketAddr,
    fault: watch::Sender<Fault>,
    connections: Arc<AtomicUsize>,
    cut: Arc<AtomicBool>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ChaosProxy {
    /// Listen on 127.0.0.1:0 and forward to `upstream`.
    pub fn start(upstream: SocketAddr) -> ChaosProxy {
        // Bound here so the address is known (and connectable) on return.
        let listener = StdTcpListener::bind("127.0.0.1:0").expect("bind proxy listener");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("proxy listener address");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build proxy runtime");
        let (fault, faults) = watch::channel(Fault::None);
        let (shutdown, stop) = oneshot::channel();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        let cut = Arc::new(AtomicBool::new(false));
        let armed = Arc::clone(&cut);
        let thread = std::thread::Builder::new()
            .name(format!("chaos-proxy-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("register listener");
                    accept_loop(listener, upstream, faults, counter, armed, stop).await;
                });
                // Dropping the runtime here drops every connection task,
                // which closes their sockets.
            })
            .expect("spawn proxy thread");
        ChaosProxy {
            addr,
            fault,
            connections,
            cut,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Switch the fault; applies to existing connections at once.
    pub fn set_fault(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// The fault currently in force.
    pub fn fault(&self) -> Fault {
        *self.fault.borrow()
    }

    /// Arms a cut of the next connection whose client commits: the
    /// client's simple-query `COMMIT` reaches PostgreSQL, and when the
    /// server's answer to it (`CommandComplete` "COMMIT") comes back, the
    /// proxy closes the connection instead of passing it on. The
    /// transaction has committed; the client cannot know.
    pub fn cut_at_next_commit(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// Whether the armed cut is still to happen.
    pub fn cut_pending(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }

    /// Client connections currently open through the proxy.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.shutdown.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Counts a client connection for as long as its task lives.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(counter: &Arc<AtomicUsize>) -> Open {
        counter.fetch_add(1, Ordering::SeqCst);
        Open(Arc::clone(counter))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    faults: watch::Receiver<Fault>,
    counter: Arc<AtomicUsize>,
    cut: Arc<AtomicBool>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => accepted,
        };
        let client = match accepted {
            Ok((client, _)) => client,
            Err(_) => {
                // E.g. out of fds: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if *faults.borrow() == Fault::Refuse {
            drop(client);
            continue;
        }
        let _ = client.set_nodelay(true);
        let open = Open::new(&counter);
        tokio::spawn(handle(
            client,
            upstream,
            faults.clone(),
            Arc::clone(&cut),
            open,
        ));
    }
}

async fn handle(
    client: TcpStream,
    upstream: SocketAddr,
    faults: watch::Receiver<Fault>,
    cut: Arc<AtomicBool>,
    _open: Open,
) {
    let session = session(client, upstream, faults.clone(), cut);
    // Dropping the session drops both sockets, i.e. closes them.
    tokio::select! {
        _ = session => {}
        _ = until_refused(faults) => {}
    }
}

async fn session(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut faults: watch::Receiver<Fault>,
    cut: Arc<AtomicBool>,
) {
    let Some(server) = connect_when_open(&mut client, upstream, &mut faults).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // An error either way ends both directions; a clean EOF only its own.
    let committing = Arc::new(AtomicBool::new(false));
    let _ = tokio::try_join!(
        pump(
            client_read,
            server_write,
            faults.clone(),
            Watch::Commit(cut, Arc::clone(&committing))
        ),
        pump(server_read, client_write, faults, Watch::Answer(committing)),
    );
}

async fn until_refused(mut faults: watch::Receiver<Fault>) {
    loop {
        if *faults.borrow_and_update() == Fault::Refuse {
            return;
        }
        if faults.changed().await.is_err() {
            // Proxy shutting down; runtime drop ends this task.
            std::future::pending::<()>().await;
        }
    }
}

/// Connect upstream, but not while partitioned: then the client's bytes
/// are read and dropped until the fault changes.
async fn connect_when_open(
    client: &mut TcpStream,
    upstream: SocketAddr,
    faults: &mut watch::Receiver<Fault>,
) -> Option<TcpStream> {
    let mut sink = [0u8; 4096];
    loop {
        let fault = *faults.borrow_and_update();
        match fault {
            Fault::Refuse => return None,
            Fault::None => return TcpStream::connect(upstream).await.ok(),
            Fault::Delay(d) => {
                tokio::time::sleep(d).await;
                return TcpStream::connect(upstream).await.ok();
            }
            Fault::Blackhole => {
                tokio::select! {
                    read = client.read(&mut sink) => {
                        if matches!(read, Ok(0) | Err(_)) {
                            return None;
                        }
                    }
                    changed = faults.changed() => changed.ok()?,
                }
            }
        }
    }
}

/// What a direction watches for, for [`ChaosProxy::cut_at_next_commit`].
enum Watch {
    /// Client to server: a `COMMIT` while a cut is armed (taking it) marks
    /// the session as committing.
    Commit(Arc<AtomicBool>, Arc<AtomicBool>),
    /// Server to client: the answer to that `COMMIT` ends the session
    /// unsent.
    Answer(Arc<AtomicBool>),
}

/// A simple query's `COMMIT`, and the tag of its `CommandComplete`.
fn names_commit(chunk: &[u8]) -> bool {
    chunk.windows(7).any(|w| w == b"COMMIT\0")
}

/// Forward one direction through a delay line: the reader stamps each chunk
/// with when it may leave, so latency doesn't also throttle throughput.
async fn pump(
    mut src: OwnedReadHalf,
    mut dst: OwnedWriteHalf,
    faults: watch::Receiver<Fault>,
    watch: Watch,
) -> io::Result<()> {
    // Bounded, so a slow or stalled destination pushes back on the source.
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(64);
    let reader_faults = faults.clone();
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        let result = loop {
            let n = match src.read(&mut buf).await {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) => break Err(e),
            };
            let fault = *reader_faults.borrow();
            let due = match fault {
                Fault::Blackhole | Fault::Refuse => continue,
                Fault::Delay(d) => Instant::now() + d,
                Fault::None => Instant::now(),
            };
            if tx.send((due, buf[..n].to_vec())).await.is_err() {
                break Ok(());
            }
        };
        // Closing the channel tells the writer the source is done.
        drop(tx);
        result
    };
    let mut writer_faults = faults;
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if *writer_faults.borrow() == Fault::Blackhole {
                continue;
            }
            match &watch {
                Watch::Commit(armed, committing) => {
                    if names_commit(&chunk) && armed.swap(false, Ordering::SeqCst) {
                        committing.store(true, Ordering::SeqCst);
                    }
                }
                Watch::Answer(committing) => {
                    if committing.load(Ordering::SeqCst) && names_commit(&chunk) {
                        return Err(io::Error::other("cut after the commit"));
                    }
                }
            }
            dst.write_all(&chunk).await?;
        }
        // A partition swallows the FIN too: pass it on only once lifted.
        while *writer_faults.borrow_and_update() == Fault::Blackhole {
            if writer_faults.changed().await.is_err() {
                break;
            }
        }
        dst.shutdown().await
    };
    tokio::try_join!(reader, writer).map(|_| ())
}
