//! The accept loop shared by the MCP and admin listeners, with graceful shutdown.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::ResponseBody;
use crate::error::GatewayError;

/// Serves HTTP/1.1 and h2 on `listener` until `shutdown` turns true, then stops
/// accepting and gives open connections `grace` to finish. Each request carries the
/// connection's [`PeerAddr`] in its extensions.
///
/// A connection must send its first bytes within `limits.header_timeout`, and each
/// HTTP/1.1 request head within that time of its first byte, or it is closed
/// (slowloris protection; hyper's own header timeout does not cover the wait before
/// the first byte, when it still detects the HTTP version). A request head over
/// `limits.max_header_bytes` gets 431 from hyper. Past `limits.connections`' bound a
/// new connection gets one HTTP/1.1 503 with a JSON-RPC error body and
/// `Connection: close` (see [`ConnectionGate`]).
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
    limits: ConnLimits,
) where
    S: HttpService,
{
    serve_with(listener, PlainTcp, service, shutdown, grace, limits).await
}

/// What a listener serves: a cloneable tower service from HTTP requests to responses
/// that never fails (every error is a response). [`http_service`](super::http_service)
/// is one; the admin listener's `service_fn` another.
pub trait HttpService:
    tower::Service<Request<Incoming>, Response = Response<ResponseBody>, Error = Infallible, Future: Send>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> HttpService for S where
    S: tower::Service<Request<Incoming>, Response = Response<ResponseBody>, Error = Infallible, Future: Send>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// Makes an accepted TCP connection the stream HTTP is spoken on: the connection
/// itself ([`PlainTcp`]), or, for a TLS listener, the stream after the handshake.
/// The handshake must finish within the header timeout, or the connection is closed.
pub trait Acceptor: Clone + Send + Sync + 'static {
    /// The stream hyper reads and writes.
    type Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static;
    /// Takes the connection over.
    fn accept(&self, tcp: TcpStream) -> impl std::future::Future<Output = std::io::Result<Self::Io>> + Send;
}

/// Plain TCP: HTTP on the connection as it is.
#[derive(Debug, Clone, Copy)]
pub struct PlainTcp;

impl Acceptor for PlainTcp {
    type Io = TcpStream;

    async fn accept(&self, tcp: TcpStream) -> std::io::Result<TcpStream> {
        Ok(tcp)
    }
}

/// [`serve`], with the connections taken over by `acceptor` first.
pub async fn serve_with<A, S>(
    listener: TcpListener,
    acceptor: A,
    service: S,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
    limits: ConnLimits,
) where
    A: Acceptor,
    S: HttpService,
{
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let header_timeout = limits.header_timeout;
    // hyper reads into a buffer that must always have 8 KiB free: at its default
    // maximum it doubles to 16 KiB on a connection's second request and keeps that for
    // as long as the connection lives. A maximum of 8 KiB keeps it at 8 KiB (about
    // 4 KiB less RSS per idle keep-alive connection); request heads are then bounded
    // by it too.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES));
    builder.http2().timer(TokioTimer::new());
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let entered = match &limits.connections {
                    Some(gate) => match gate.try_enter() {
                        Some(entered) => Some(entered),
                        None => {
                            tokio::spawn(refuse(stream, gate.max));
                            continue;
                        }
                    },
                    None => None,
                };
                let front = service.clone();
                let client: std::sync::Arc<str> = peer.ip().to_string().into();
                let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                    req.extensions_mut().insert(PeerAddr(peer, client.clone()));
                    tower::ServiceExt::oneshot(front.clone(), req)
                });
                let builder = builder.clone();
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                let mut stop = shutdown.clone();
                tokio::spawn(async move {
                    let _entered = entered;
                    // peek, not readable(): readiness can be reported before any byte is there.
                    // A connection that has sent nothing yet (a client's spare pooled
                    // connection, say) must not hold up a shutdown: it is just closed.
                    let mut first = [0u8; 1];
                    tokio::select! {
                        peeked = tokio::time::timeout(header_timeout, stream.peek(&mut first)) => {
                            if peeked.is_err() {
                                tracing::debug!(%peer, "connection sent nothing within the header timeout; closed");
                                return;
                            }
                        }
                        _ = stop.wait_for(|down| *down) => return,
                    }
                    let io = match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(io)) => io,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "connection refused by the acceptor");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "the acceptor did not finish within the header timeout; closed");
                            return;
                        }
                    };
                    let conn = builder.serve_connection(TokioIo::new(io), service).into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            _ = async { let _ = shutdown.wait_for(|down| *down).await; } => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(?grace, "connections still open after the shutdown grace period; closing them");
    }
}

pub use crate::config::MIN_HEADER_BYTES;

/// Per-connection bounds.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Time to send the first bytes, and each request head.
    pub header_timeout: Duration,
    /// Largest request head (request line and headers), at least [`MIN_HEADER_BYTES`].
    pub max_header_bytes: usize,
    /// The bound on open connections, shared by every listener of one front; `None`:
    /// no bound (the admin listener).
    pub connections: Option<Arc<ConnectionGate>>,
}

/// Counts the open connections of a front against `server.max_connections`, in the
/// gauge `shadowcat_connections_open`; refusals are counted in
/// `shadowcat_connections_refused_total`.
#[derive(Debug)]
pub struct ConnectionGate {
    max: usize,
    open: AtomicUsize,
}

impl ConnectionGate {
    /// A gate letting `max` connections in at once (0: no bound).
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(ConnectionGate { max, open: AtomicUsize::new(0) })
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Lets one more connection in, or `None` at the bound.
    pub fn try_enter(self: &Arc<Self>) -> Option<Entered> {
        let entered = self
            .open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (self.max == 0 || n < self.max).then_some(n + 1));
        entered.ok()?;
        metrics::gauge!("shadowcat_connections_open").increment(1.0);
        Some(Entered(self.clone()))
    }
}

/// One open connection; dropping it lets another in.
#[derive(Debug)]
pub struct Entered(Arc<ConnectionGate>);

impl Drop for Entered {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
        metrics::gauge!("shadowcat_connections_open").decrement(1.0);
    }
}

/// Longest time a refused connection is kept to hand it its 503.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Answers a connection over the bound with one 503 and closes it. What the client
/// already sent is read (briefly) and dropped, so that closing does not reset the
/// connection before the client has read the answer.
async fn refuse(mut stream: TcpStream, max: usize) {
    metrics::counter!("shadowcat_connections_refused_total").increment(1);
    let peer = stream.peer_addr().ok();
    tracing::warn!(?peer, max, "connection refused: server.max_connections reached");
    let e = GatewayError::Overloaded(format!("the gateway has reached server.max_connections ({max})"));
    let body = e.to_message(None).bytes().clone();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         retry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let answer = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, answer).await;
}

/// The address of the peer a request came from (in the request's extensions), and
/// its IP address as text (made once per connection).
#[derive(Debug, Clone)]
pub struct PeerAddr(pub std::net::SocketAddr, pub std::sync::Arc<str>);

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts connections; refuses every one when `refuse` is set.
    #[derive(Clone)]
    struct Counting {
        seen: Arc<AtomicUsize>,
        refuse: bool,
    }

    impl Acceptor for Counting {
        type Io = TcpStream;

        async fn accept(&self, tcp: TcpStream) -> std::io::Result<TcpStream> {
            self.seen.fetch_add(1, Ordering::SeqCst);
            if self.refuse {
                return Err(std::io::Error::other("refused by the test acceptor"));
            }
            Ok(tcp)
        }
    }

    async fn exchange(refuse: bool) -> (usize, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(AtomicUsize::new(0));
        let acceptor = Counting { seen: seen.clone(), refuse };
        let service = tower::service_fn(|_req: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(crate::server::response::full(bytes::Bytes::from("hi"))))
        });
        let (stop, shutdown) = watch::channel(false);
        let limits = ConnLimits { header_timeout: Duration::from_secs(5), max_header_bytes: 8192, connections: None };
        let server =
            tokio::spawn(serve_with(listener, acceptor, service, shutdown, Duration::from_millis(100), limits));
        let mut client = TcpStream::connect(addr).await.expect("connect");
        client.write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.expect("write");
        let mut answer = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_string(&mut answer)).await;
        let _ = stop.send(true);
        let _ = server.await;
        (seen.load(Ordering::SeqCst), answer)
    }

    #[tokio::test]
    async fn connections_pass_the_acceptor() {
        let (seen, answer) = exchange(false).await;
        assert_eq!(seen, 1);
        assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("hi"), "{answer}");
        let (seen, answer) = exchange(true).await;
        assert_eq!(seen, 1);
        assert!(answer.is_empty(), "a refused connection gets no answer: {answer}");
    }
}
