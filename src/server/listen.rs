//! The accept loop shared by the MCP and admin listeners, with graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::ResponseBody;

/// Serves HTTP/1.1 and h2 on `listener` until `shutdown` turns true, then stops
/// accepting and gives open connections `grace` to finish. Each request carries the
/// connection's [`PeerAddr`] in its extensions.
///
/// A connection must send its first bytes within `limits.header_timeout`, and each
/// HTTP/1.1 request head within that time of its first byte, or it is closed
/// (slowloris protection; hyper's own header timeout does not cover the wait before
/// the first byte, when it still detects the HTTP version). A request head over
/// `limits.max_header_bytes` gets 431 from hyper.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    handler: F,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
    limits: ConnLimits,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ResponseBody>> + Send + 'static,
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
                let handler = handler.clone();
                let client: std::sync::Arc<str> = peer.ip().to_string().into();
                let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                    req.extensions_mut().insert(PeerAddr(peer, client.clone()));
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let builder = builder.clone();
                let watcher = graceful.watcher();
                let mut stop = shutdown.clone();
                tokio::spawn(async move {
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
                    let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
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

/// The smallest `max_header_bytes` hyper accepts.
pub const MIN_HEADER_BYTES: usize = 8192;

/// Per-connection bounds.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Time to send the first bytes, and each request head.
    pub header_timeout: Duration,
    /// Largest request head (request line and headers), at least [`MIN_HEADER_BYTES`].
    pub max_header_bytes: usize,
}

/// The address of the peer a request came from (in the request's extensions), and
/// its IP address as text (made once per connection).
#[derive(Debug, Clone)]
pub struct PeerAddr(pub std::net::SocketAddr, pub std::sync::Arc<str>);
