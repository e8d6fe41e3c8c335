//! Forward mode over stdio: Shadowcat launched by an MCP client as if it were the
//! server. Each line on stdin is one message into the same pipeline the gateway runs
//! (one client, so one session); everything the pipeline answers goes to stdout, one
//! message per line. Logs go to stderr.
//!
//! - A 2025 client's `initialize` creates the session; its server-to-client stream is
//!   then read for the client (requests, notifications). A 2026-07-28 client's
//!   requests (a `_meta` envelope, no handshake) are served statelessly, as on HTTP; its
//!   `notifications/cancelled` stops the request.
//! - A line that is not a JSON-RPC message is logged and skipped.
//! - stdin closed, SIGTERM or SIGINT: the session ends (the child gets its stdin closed,
//!   then SIGTERM, then SIGKILL) and Shadowcat exits 0. The child exiting on its own:
//!   Shadowcat writes what it has and exits with the child's status.
//! - A remote (HTTP) server that is down or loses the session: each request gets an
//!   error (-32003, or -32001 once the session is gone); a new `initialize` starts a
//!   new session, and stateless requests reach the server again once it is back.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use parking_lot::Mutex;
use std::io::{BufRead, Read, Write as _};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::config::Config;
use crate::error::GatewayError;
use crate::gateway::Core;
use crate::pipeline::{McpReply, McpRequest, RequestContext, RequestKind, Transport};
use crate::protocol::{modern, Message, MessageError, MessageKind, ProtocolVersion};
use crate::session::Session;

/// Messages waiting to be written to stdout.
const OUT_BUFFER: usize = 256;

/// Runs forward mode on stdio until stdin closes, a signal comes or the child exits;
/// returns the exit code.
pub async fn run_stdio(config: Config) -> Result<i32, String> {
    // With an admin listener, metrics are served: the recorder goes in before the
    // stages register theirs.
    let metrics = config.admin.listen.as_ref().and_then(|_| {
        crate::telemetry::install_metrics()
            .map_err(|e| tracing::warn!(error = %e, "metrics recorder not installed"))
            .ok()
    });
    let core = Core::build(&config)?;
    let admin = crate::gateway::AdminListener::bind(&config).await?;
    core.start().await?;
    let (admin_stop, admin_shutdown) = tokio::sync::watch::channel(false);
    let admin = admin.map(|l| {
        // stdout is the client's: the address goes to stderr.
        eprintln!("shadowcat forward stdio: admin=http://{}", l.addr);
        l.serve(metrics, &core, &config.server, admin_shutdown)
    });
    let route: Arc<str> = core.paths.first().map(|p| Arc::from(p.as_str())).ok_or("no route")?;
    let (out, out_rx) = mpsc::channel::<Message>(OUT_BUFFER);
    let (gone_tx, mut gone) = mpsc::channel::<i32>(1);
    let writer = write_stdout(out_rx, gone_tx.clone());
    let front = Arc::new(StdioFront {
        core,
        route,
        out,
        session: Mutex::new(None),
        in_flight: Mutex::new(HashMap::new()),
        child_gone: gone_tx,
        ending: std::sync::atomic::AtomicBool::new(false),
    });
    let mut lines = read_stdin(config.server.max_body_bytes);
    let code = loop {
        tokio::select! {
            line = lines.recv() => match line {
                Some(Ok(Input::Line(line))) => front.clone().line(line).await,
                Some(Ok(Input::TooLong(bytes))) => {
                    tracing::warn!(
                        bytes,
                        max = config.server.max_body_bytes,
                        "a line from the client exceeds server.max_body_bytes; skipped"
                    );
                    front.refused(&GatewayError::PayloadTooLarge { limit: config.server.max_body_bytes });
                }
                None => break 0,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "stdin failed; ending");
                    break 0;
                }
            },
            Some(code) = gone.recv() => break code,
            _ = crate::gateway::wait_for_signal() => break 0,
        }
    };
    // The admin listener stops first (an open watch stream is not waited for).
    let _ = admin_stop.send(true);
    if let Some(task) = admin {
        task.abort();
    }
    front.end().await;
    drop(front);
    // What is queued goes out; tasks still holding the queue do not hold the exit up.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
    Ok(code)
}

/// One line of stdin.
enum Input {
    /// The line, without its line ending (any bytes: checked by the parser).
    Line(Vec<u8>),
    /// A line longer than the limit, skipped without being held: its length.
    TooLong(usize),
}

/// Lines of stdin, read by a thread of its own with blocking reads. (tokio's stdin
/// runs each read as a blocking-pool task: a thread hand-off per read, which cost
/// forward mode most of its time per message.) A line over `max` bytes is read past,
/// never held whole. The thread is not waited for at exit.
fn read_stdin(max: usize) -> mpsc::Receiver<std::io::Result<Input>> {
    let (tx, rx) = mpsc::channel(OUT_BUFFER);
    let spawned = std::thread::Builder::new().name("stdin".into()).spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let next = next_line(&mut stdin, max);
            let end = matches!(next, Ok(None) | Err(_));
            if let Some(input) = next.transpose() {
                if tx.blocking_send(input).is_err() {
                    return;
                }
            }
            if end {
                return;
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the stdin reader");
    }
    rx
}

/// The next line of `input` (`None` at its end).
fn next_line(input: &mut impl BufRead, max: usize) -> std::io::Result<Option<Input>> {
    let mut line = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    if input.take(limit).read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') && line.len() > max {
        let mut skipped = line.len();
        loop {
            let buf = input.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            let (used, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            input.consume(used);
            skipped += used;
            if done {
                break;
            }
        }
        return Ok(Some(Input::TooLong(skipped)));
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(Some(Input::Line(line)))
}

/// Writes the queued messages to stdout, one per line, from a thread of its own
/// (blocking writes, flushed when the queue is empty); resolves when the queue is
/// closed and written. A message under a wire fault (`intercept`) is written as it
/// says: other bytes, in pieces, or not at all, forward mode then ending with
/// [`RESET_EXIT`] as if the server had crashed (`gone` hears of it).
fn write_stdout(mut rx: mpsc::Receiver<Message>, gone: mpsc::Sender<i32>) -> tokio::sync::oneshot::Receiver<()> {
    let (done_tx, done) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("stdout".into()).spawn(move || {
        let mut stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
        while let Some(m) = rx.blocking_recv() {
            let mut wrote = write_line(&mut stdout, &m);
            while let (Written::Line, Ok(m)) = (wrote, rx.try_recv()) {
                wrote = write_line(&mut stdout, &m);
            }
            let flushed = stdout.flush().is_ok();
            match wrote {
                Written::Line if flushed => continue,
                Written::Cut => {
                    let _ = gone.blocking_send(RESET_EXIT);
                }
                _ => tracing::warn!("stdout closed; messages to the client are dropped"),
            }
            break;
        }
        let _ = done_tx.send(());
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the stdout writer");
    }
    done
}

/// Forward stdio's exit code after an `intercept` rule's `fault: reset`.
pub const RESET_EXIT: i32 = 1;

/// What writing one message to stdout came to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Written {
    Line,
    Failed,
    /// A `fault: reset`: nothing more is written.
    Cut,
}

fn write_line(out: &mut impl std::io::Write, m: &Message) -> Written {
    use crate::protocol::WireFault;
    let done = |r: std::io::Result<()>| if r.is_ok() { Written::Line } else { Written::Failed };
    let Some(by) = m.wire_fault() else {
        return done(out.write_all(m.bytes()).and_then(|()| out.write_all(b"\n")));
    };
    tracing::info!(rule = %by.rule, fault = by.fault.name(), "intercept: a line to the client goes out under a wire fault");
    match &by.fault {
        WireFault::Malformed(bytes) => done(out.write_all(bytes).and_then(|()| out.write_all(b"\n"))),
        WireFault::Reset => {
            tracing::warn!(rule = %by.rule, "intercept: fault reset: stdout is cut off and forward mode ends");
            Written::Cut
        }
        WireFault::Dribble { chunk, every } => {
            let mut pieces = m.bytes().chunks((*chunk).max(1)).peekable();
            while let Some(piece) = pieces.next() {
                if out.write_all(piece).and_then(|()| out.flush()).is_err() {
                    return Written::Failed;
                }
                if pieces.peek().is_some() {
                    std::thread::sleep(*every);
                }
            }
            done(out.write_all(b"\n"))
        }
    }
}

struct StdioFront {
    core: Core,
    route: Arc<str>,
    out: mpsc::Sender<Message>,
    session: Mutex<Option<Arc<Session>>>,
    /// Stateless requests in flight, by id, for `notifications/cancelled`.
    in_flight: Mutex<HashMap<String, AbortHandle>>,
    child_gone: mpsc::Sender<i32>,
    /// Forward mode is ending (the child's exit is then expected).
    ending: std::sync::atomic::AtomicBool,
}

impl StdioFront {
    /// A line refused before the pipeline: its observers hear of it.
    fn refused(&self, error: &GatewayError) {
        let headers = http::HeaderMap::new();
        self.core.refusals.notify(&crate::pipeline::Refusal {
            error,
            transport: Transport::Stdio,
            peer: None,
            method: "message",
            path: &self.route,
            headers: &headers,
            id: None,
        });
    }

    /// One line from the client. Its message is handed to the pipeline before the next
    /// line is read (a stdio server sees the client's messages in order); the reply is
    /// relayed by a task of its own.
    async fn line(self: Arc<Self>, line: Vec<u8>) {
        if line.trim_ascii().is_empty() {
            return;
        }
        let line = bytes::Bytes::from(line);
        let m = match Message::parse(line.clone()) {
            Ok(m) => m,
            Err(e) => {
                let preview: String = String::from_utf8_lossy(&line).chars().take(200).collect();
                tracing::warn!(error = %e, line = %preview, "a line from the client is not a JSON-RPC message; skipped");
                self.refused(&match e {
                    MessageError::Parse(d) => GatewayError::Parse(d),
                    MessageError::Invalid(d) => GatewayError::InvalidRequest(d),
                });
                return;
            }
        };
        let stateless = modern::declares_stateless(&m);
        if stateless || self.session.lock().is_none() && m.method() != Some("initialize") {
            return self.stateless(m).await;
        }
        let session = self.session.lock().clone();
        let version = session.as_ref().and_then(|s| s.version()).unwrap_or(ProtocolVersion::LATEST_HANDSHAKE);
        let is_init = m.method() == Some("initialize") && m.is_request();
        let req = McpRequest {
            kind: RequestKind::Message(m),
            session: if is_init { None } else { session },
            route: self.route.clone(),
            headers: http::HeaderMap::new(),
            version,
            received_at: std::time::Instant::now(),
            context: RequestContext::new(Transport::Stdio, None),
        };
        let id = req.msg().and_then(|m| m.id_key()).map(str::to_owned);
        match self.core.service.start(req).await {
            Ok(reply) => {
                if let Some(session) = reply.new_session().cloned() {
                    *self.session.lock() = Some(session.clone());
                    self.clone().open_stream(session);
                }
                let this = self.clone();
                tokio::spawn(async move { this.relay(reply).await });
            }
            Err(e) => {
                if id.is_some() {
                    let _ = self.out.send(e.to_message(id.as_deref())).await;
                } else {
                    tracing::warn!(error = %e, "a message from the client was refused");
                }
            }
        }
    }

    /// A request without a session: served statelessly (a 2026-07-28 client). A
    /// notification other than `notifications/cancelled` is dropped.
    async fn stateless(self: Arc<Self>, m: Message) {
        match m.kind() {
            MessageKind::Request => {}
            MessageKind::Notification => {
                if m.method() == Some("notifications/cancelled") {
                    if let Some(task) = m.param_key("requestId").and_then(|id| self.in_flight.lock().remove(&id)) {
                        task.abort();
                    }
                }
                return;
            }
            MessageKind::Response => {
                tracing::warn!("a response from the client without a session; skipped");
                return;
            }
        }
        let id = m.id_key().unwrap_or("null").to_owned();
        // stdio has no headers: those an HTTP upstream needs come from the body.
        let headers = crate::bridge::legacy_client::routing_headers(&m);
        let req = McpRequest {
            kind: RequestKind::Message(m),
            session: None,
            route: self.route.clone(),
            headers,
            version: ProtocolVersion::V2026_07_28,
            received_at: std::time::Instant::now(),
            context: RequestContext::new(Transport::Stdio, None),
        };
        let reply = match self.core.service.start(req).await {
            Ok(reply) => reply,
            Err(e) => {
                let _ = self.out.send(e.to_message(Some(&id))).await;
                return;
            }
        };
        let this = self.clone();
        let key = id.clone();
        let task = tokio::spawn(async move {
            this.relay(reply).await;
            this.in_flight.lock().remove(&key);
        });
        self.in_flight.lock().insert(id, task.abort_handle());
    }

    /// Writes a reply's messages to stdout.
    async fn relay(&self, reply: McpReply) {
        let mut s = reply.into_stream();
        while let Some(m) = s.next().await {
            if self.out.send(m).await.is_err() {
                return;
            }
        }
    }

    /// Reads the session's server-to-client stream for the client; when it ends because
    /// the child exited, forward mode ends with the child's status.
    fn open_stream(self: Arc<Self>, session: Arc<Session>) {
        tokio::spawn(async move {
            let req = McpRequest {
                kind: RequestKind::OpenStream { resume: None },
                session: Some(session.clone()),
                route: self.route.clone(),
                headers: http::HeaderMap::new(),
                version: session.version().unwrap_or(ProtocolVersion::LATEST_HANDSHAKE),
                received_at: std::time::Instant::now(),
                context: RequestContext::new(Transport::Stdio, None),
            };
            match self.core.service.start(req).await {
                Ok(reply) => self.relay(reply).await,
                Err(e) => tracing::warn!(error = %e, "no server-to-client stream"),
            }
            let upstream = session.upstream();
            if upstream.is_alive() || self.ending.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            if upstream.is_process() {
                let code = upstream.exit_code(std::time::Duration::from_secs(2)).await.unwrap_or(1);
                tracing::info!(code, "the server exited; forward mode ends");
                let _ = self.child_gone.send(code).await;
            } else {
                // A remote server that lost the session (it restarted): the client's
                // next request gets -32001 and its next `initialize` a new session.
                tracing::warn!("the remote server ended the session; the client must initialize again");
            }
        });
    }

    /// Ends the session and everything the core holds.
    async fn end(&self) {
        self.ending.store(true, std::sync::atomic::Ordering::SeqCst);
        for (_, task) in self.in_flight.lock().drain() {
            task.abort();
        }
        self.core.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[u8], max: usize) -> Vec<String> {
        let mut input = std::io::BufReader::with_capacity(4, text);
        let mut out = Vec::new();
        while let Some(line) = next_line(&mut input, max).expect("read") {
            out.push(match line {
                Input::Line(l) => String::from_utf8_lossy(&l).into_owned(),
                Input::TooLong(n) => format!("too long: {n}"),
            });
        }
        out
    }

    #[test]
    fn lines_lose_their_endings_and_long_ones_are_read_past() {
        assert_eq!(lines(b"ab\r\ncd\nef", 8), ["ab", "cd", "ef"]);
        assert_eq!(lines(b"0123456789abc\nok\n", 8), ["too long: 14", "ok"]);
        assert_eq!(lines(b"12345678\n123456789", 8), ["12345678", "too long: 9"]);
        assert_eq!(lines(b"\xff\xfe\nok\n", 8), ["\u{fffd}\u{fffd}", "ok"], "bytes are passed on as they are");
    }
}
