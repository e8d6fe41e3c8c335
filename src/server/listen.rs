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
/// A connection must send its first bytes within `header_timeout`, and each HTTP/1.1
/// request head within `header_timeout` of its first byte, or it is closed (slowloris
/// protection; hyper's own header timeout does not cover the wait before the first
/// byte, when it still detects the HTTP version).
pub async fn serve<F, Fut>(
    listener: TcpListener,
    handler: F,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
    header_timeout: Duration,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ResponseBody>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
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

/// The address of the peer a request came from (in the request's extensions), and
/// its IP address as text (made once per connection).
#[derive(Debug, Clone)]
pub struct PeerAddr(pub std::net::SocketAddr, pub std::sync::Arc<str>);
