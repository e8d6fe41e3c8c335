//! Thread per core: one current-thread runtime per front thread, each accepting on its
//! own `SO_REUSEPORT` listener on the same address, so that a request is read, proxied
//! and answered on one thread without cross-thread wake-ups (on a small machine shared
//! with its upstreams those wake-ups are a large part of the gateway's CPU per call).
//! Sessions, upstream pools and everything else stay shared between the threads.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;

fn reuseport_socket(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// The first listener, with `SO_REUSEPORT`, so that the other threads can bind the
/// same (possibly ephemeral) port next to it.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    reuseport_socket(addr)
}

/// Starts `threads` front threads, each serving a handler of its own from
/// `new_handler` on `listener`'s address. The
/// returned task ends when every thread has stopped accepting and drained its
/// connections (after `shutdown`); the threads' runtimes, and the session tasks on
/// them, stay up until `release` turns true.
pub fn spawn<S>(
    listener: TcpListener,
    threads: usize,
    new_handler: impl Fn() -> S,
    shutdown: watch::Receiver<bool>,
    release: watch::Receiver<bool>,
    grace: Duration,
    limits: crate::server::ConnLimits,
) -> Result<JoinHandle<()>, String>
where
    S: crate::server::HttpService,
{
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut listeners = vec![listener.into_std().map_err(|e| e.to_string())?];
    for index in 1..threads.max(1) {
        let more = reuseport_socket(addr).and_then(TcpListener::into_std);
        listeners.push(more.map_err(|e| format!("cannot listen on {addr} (thread {index}): {e}"))?);
    }
    let mut drained = Vec::with_capacity(listeners.len());
    for (index, std_listener) in listeners.into_iter().enumerate() {
        let (handler, shutdown, mut release) = (new_handler(), shutdown.clone(), release.clone());
        let limits = limits.clone();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("shadowcat-front-{index}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start a front thread's runtime");
                        return;
                    }
                };
                runtime.block_on(async move {
                    match TcpListener::from_std(std_listener) {
                        Ok(l) => crate::server::serve(l, handler, shutdown, grace, limits).await,
                        Err(e) => tracing::error!(error = %e, "cannot use a front thread's listener"),
                    }
                    let _ = done_tx.send(());
                    let _ = release.wait_for(|r| *r).await;
                });
            })
            .map_err(|e| format!("cannot start front thread {index}: {e}"))?;
        drained.push(done_rx);
    }
    Ok(tokio::spawn(async move {
        for done in drained {
            let _ = done.await;
        }
    }))
}
