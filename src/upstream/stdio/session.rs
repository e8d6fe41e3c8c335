//! One client session on one stdio process.
//!
//! Requests and responses are matched by JSON-RPC id. What else the process sends
//! (server-to-client requests and notifications) is routed by the rule in the README:
//! progress goes to the request that owns its `progressToken`; anything else goes to
//! the GET stream if one is open, else to the oldest pending request's stream, else
//! waits in a bounded backlog for the next stream.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};
use tokio::time::Instant;

use super::lines::{self, Line};
use super::process::{self, Process};
use super::stream::{ListenStream, RequestStream};
use crate::config::StdioConfig;
use crate::error::GatewayError;
use crate::protocol::{codes, Message, MessageKind};
use crate::reply::{McpReply, ReplyBody};

/// Server-to-client messages kept while no stream can take them.
const BACKLOG: usize = 256;
/// Messages buffered per request stream and for the GET stream.
const STREAM_BUFFER: usize = 64;
/// Messages waiting to be written to the process.
const WRITE_BUFFER: usize = 64;
/// Longest stderr line logged; the rest of a longer line is read past.
const STDERR_LINE_MAX: usize = 64 * 1024;

struct Pending {
    tx: mpsc::Sender<Message>,
    order: u64,
    progress_token: Option<String>,
}

#[derive(Default)]
struct State {
    pending: HashMap<Box<str>, Pending>,
    progress_owner: HashMap<String, Box<str>>,
    next_order: u64,
    get_sink: Option<mpsc::Sender<Message>>,
    backlog: VecDeque<Message>,
    initialized: bool,
    init_id: Option<Box<str>>,
    exit: Option<String>,
}

/// State shared by the session handle and its tasks.
pub(super) struct Shared {
    pub(super) upstream: Arc<str>,
    tag: String,
    state: Mutex<State>,
    writer: Mutex<Option<mpsc::Sender<Bytes>>>,
    alive: AtomicBool,
    /// The process's exit code when it exited on its own (killed by a signal: 1).
    exit_code: Mutex<Option<i32>>,
}

impl Shared {
    /// Removes a pending request (timed out) and tells the process it is cancelled.
    pub(super) fn abandon(&self, id: &str, reason: &str) {
        if self.forget(id) {
            let cancel = Message::notification(
                "notifications/cancelled",
                serde_json::json!({ "requestId": serde_json::from_str::<serde_json::Value>(id).unwrap_or_default(), "reason": reason }),
            );
            if let Some(writer) = self.writer.lock().clone() {
                let _ = writer.try_send(cancel.bytes().clone());
            }
        }
    }

    /// Removes a pending request; true if it was there.
    pub(super) fn forget(&self, id: &str) -> bool {
        let mut state = self.state.lock();
        match state.pending.remove(id) {
            Some(p) => {
                if let Some(token) = p.progress_token {
                    state.progress_owner.remove(&token);
                }
                true
            }
            None => false,
        }
    }

    fn route_response(&self, m: Message) {
        let Some(id) = m.id_key() else {
            tracing::warn!(upstream = %self.upstream, session = %self.tag, "upstream sent an error with a null id; dropped");
            return;
        };
        let tx = {
            let mut state = self.state.lock();
            let Some(p) = state.pending.remove(id) else {
                tracing::debug!(upstream = %self.upstream, session = %self.tag, id, "response to a request no longer pending; dropped");
                return;
            };
            if let Some(token) = &p.progress_token {
                state.progress_owner.remove(token);
            }
            if state.init_id.as_deref() == Some(id) {
                state.initialized = true;
                state.init_id = None;
            }
            p.tx
        };
        if tx.try_send(m).is_err() {
            tracing::warn!(upstream = %self.upstream, session = %self.tag, "reply stream full or gone; response dropped");
        }
    }

    /// Routes a server-to-client request or notification (see the module docs).
    async fn route_unsolicited(&self, m: Message) {
        let target = {
            let mut state = self.state.lock();
            let by_token = if m.method() == Some("notifications/progress") {
                m.param_key("progressToken")
                    .and_then(|t| state.progress_owner.get(&t).cloned())
                    .and_then(|id| state.pending.get(&id).map(|p| p.tx.clone()))
            } else {
                None
            };
            if let Some(tx) = by_token {
                Some(tx)
            } else if !state.initialized && m.kind() == MessageKind::Notification {
                push_backlog(&mut state.backlog, m, &self.upstream);
                return;
            } else if let Some(sink) = state.get_sink.clone().filter(|s| !s.is_closed()) {
                Some(sink)
            } else if let Some(p) = state.pending.values().min_by_key(|p| p.order) {
                Some(p.tx.clone())
            } else {
                push_backlog(&mut state.backlog, m, &self.upstream);
                return;
            }
        };
        if let Some(tx) = target {
            if let Err(e) = tx.send(m).await {
                push_backlog(&mut self.state.lock().backlog, e.0, &self.upstream);
            }
        }
    }

    /// Fails every pending request: the process is gone.
    fn fail_all(&self, reason: &str) {
        self.alive.store(false, Ordering::SeqCst);
        let pending = {
            let mut state = self.state.lock();
            state.exit.get_or_insert_with(|| reason.to_owned());
            state.get_sink = None;
            state.progress_owner.clear();
            std::mem::take(&mut state.pending)
        };
        for (id, p) in pending {
            let err =
                GatewayError::UpstreamUnavailable { upstream: self.upstream.to_string(), detail: reason.to_owned() };
            let _ = p.tx.try_send(err.to_message(Some(&id)));
        }
    }
}

fn push_backlog(backlog: &mut VecDeque<Message>, m: Message, upstream: &str) {
    if backlog.len() >= BACKLOG {
        backlog.pop_front();
        tracing::warn!(upstream, "server-to-client backlog full: oldest message dropped");
    }
    backlog.push_back(m);
}

/// Limits of one session, from the upstream's config.
#[derive(Clone)]
pub(super) struct Limits {
    pub max_in_flight: usize,
    pub request_timeout: Duration,
    pub max_request_timeout: Duration,
    pub max_message_bytes: usize,
    pub stderr_lines_per_second: u32,
    pub kill_grace: Duration,
}

impl Limits {
    pub(super) fn from_config(cfg: &StdioConfig) -> Self {
        Limits {
            max_in_flight: cfg.max_in_flight,
            request_timeout: cfg.request_timeout,
            max_request_timeout: cfg.max_request_timeout,
            max_message_bytes: cfg.max_message_bytes,
            stderr_lines_per_second: cfg.stderr_lines_per_second,
            kill_grace: cfg.kill_grace,
        }
    }
}

/// A client session bound to one process.
pub struct StdioSession {
    shared: Arc<Shared>,
    limits: Limits,
    close_tx: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    exited: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
}

impl StdioSession {
    /// Attaches a session to a running process and starts its tasks.
    pub(super) fn start(
        upstream: Arc<str>,
        tag: String,
        proc: Process,
        limits: Limits,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        let Process { child, pid, stdin, stdout, stderr } = proc;
        let (writer, write_rx) = mpsc::channel::<Bytes>(WRITE_BUFFER);
        let shared = Arc::new(Shared {
            upstream,
            tag,
            state: Mutex::new(State::default()),
            writer: Mutex::new(Some(writer)),
            alive: AtomicBool::new(true),
            exit_code: Mutex::new(None),
        });
        tokio::spawn(write_loop(stdin, write_rx));
        tokio::spawn(read_loop(shared.clone(), stdout, limits.max_message_bytes));
        tokio::spawn(stderr_loop(shared.clone(), stderr, limits.stderr_lines_per_second));
        let (close_tx, close_rx) = tokio::sync::oneshot::channel();
        let (exited_tx, exited) = watch::channel(false);
        tokio::spawn(supervise(shared.clone(), child, pid, limits.kill_grace, close_rx, exited_tx));
        StdioSession { shared, limits, close_tx: Mutex::new(Some(close_tx)), exited, _permit: permit }
    }

    /// Whether the process is still there.
    pub fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::SeqCst)
    }

    /// Sends one client message to the process.
    pub async fn send(&self, m: Message) -> Result<McpReply, GatewayError> {
        if !self.is_alive() {
            return Err(GatewayError::UnknownSession);
        }
        match m.kind() {
            MessageKind::Request => self.send_request(m).await,
            MessageKind::Notification => {
                if m.method() == Some("notifications/cancelled") {
                    if let Some(id) = m.param_key("requestId") {
                        self.shared.forget(&id);
                    }
                }
                self.write(m).await?;
                Ok(McpReply::accepted())
            }
            MessageKind::Response => {
                self.write(m).await?;
                Ok(McpReply::accepted())
            }
        }
    }

    async fn send_request(&self, m: Message) -> Result<McpReply, GatewayError> {
        let Some(id) = m.id_key().map(Box::<str>::from) else {
            return Err(GatewayError::InvalidRequest("request without id".into()));
        };
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let progress_token = m.progress_token();
        let first = {
            let mut state = self.shared.state.lock();
            if state.pending.contains_key(&id) {
                return Err(GatewayError::InvalidRequest(format!(
                    "request id {id} is already in flight in this session"
                )));
            }
            if state.pending.len() >= self.limits.max_in_flight {
                return Err(GatewayError::Overloaded(format!(
                    "{} requests already in flight in this session (max_in_flight)",
                    self.limits.max_in_flight
                )));
            }
            if m.method() == Some("initialize") {
                state.initialized = false;
                state.init_id = Some(id.clone());
            }
            let order = state.next_order;
            state.next_order += 1;
            if let Some(token) = &progress_token {
                state.progress_owner.insert(token.clone(), id.clone());
            }
            state.pending.insert(id.clone(), Pending { tx, order, progress_token });
            if m.method() == Some("initialize") {
                VecDeque::new()
            } else {
                std::mem::take(&mut state.backlog)
            }
        };
        if let Err(e) = self.write(m.clone()).await {
            self.shared.forget(&id);
            return Err(e);
        }
        let now = Instant::now();
        let stream = RequestStream {
            rx,
            first,
            id,
            shared: self.shared.clone(),
            idle_timeout: self.limits.request_timeout,
            hard_deadline: now + self.limits.max_request_timeout,
            sleep: Box::pin(tokio::time::sleep(self.limits.request_timeout)),
            started: now,
            done: false,
        };
        Ok(McpReply::new(ReplyBody::Stream(Box::pin(stream))))
    }

    /// The process's exit code, if it exited on its own; waits (up to `within`) for
    /// the process to be gone.
    pub async fn exit_code(&self, within: Duration) -> Option<i32> {
        let mut exited = self.exited.clone();
        let _ = tokio::time::timeout(within, exited.wait_for(|e| *e)).await;
        *self.shared.exit_code.lock()
    }

    /// For a stateless (2026-07-28) server: there is no handshake to wait for, so its
    /// notifications are routed at once instead of being held until `initialize`.
    pub fn set_stateless(&self) {
        self.shared.state.lock().initialized = true;
    }

    /// Opens the server-to-client stream; a second call replaces the first.
    pub fn open_stream(&self) -> Result<McpReply, GatewayError> {
        if !self.is_alive() {
            return Err(GatewayError::UnknownSession);
        }
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let first = {
            let mut state = self.shared.state.lock();
            state.get_sink = Some(tx);
            std::mem::take(&mut state.backlog)
        };
        Ok(McpReply::new(ReplyBody::Stream(Box::pin(ListenStream { first, rx }))))
    }

    async fn write(&self, m: Message) -> Result<(), GatewayError> {
        let closed = || GatewayError::UpstreamUnavailable {
            upstream: self.shared.upstream.to_string(),
            detail: "the process's stdin is closed".into(),
        };
        let writer = self.shared.writer.lock().clone().ok_or_else(closed)?;
        writer.send(m.bytes().clone()).await.map_err(|_| closed())
    }

    /// Ends the session: stdin closed, SIGTERM to the process group, SIGKILL after the
    /// grace period. Returns once the process is gone.
    pub async fn close(&self) {
        if let Some(tx) = self.close_tx.lock().take() {
            let _ = tx.send(());
        }
        let mut exited = self.exited.clone();
        let _ = exited.wait_for(|e| *e).await;
    }
}

async fn write_loop(mut stdin: tokio::process::ChildStdin, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(bytes) = rx.recv().await {
        let ok = stdin.write_all(&bytes).await.is_ok() && stdin.write_all(b"\n").await.is_ok();
        if !ok || stdin.flush().await.is_err() {
            break;
        }
    }
}

async fn read_loop(shared: Arc<Shared>, stdout: tokio::process::ChildStdout, max: usize) {
    let mut reader = BufReader::with_capacity(8 * 1024, stdout);
    loop {
        match lines::read_line(&mut reader, max).await {
            Ok(Line::Data(bytes)) => {
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match Message::parse(bytes.clone()) {
                    Ok(m) if m.kind() == MessageKind::Response => shared.route_response(m),
                    Ok(m) => shared.route_unsolicited(m).await,
                    Err(e) => {
                        let preview: String = String::from_utf8_lossy(&bytes).chars().take(200).collect();
                        tracing::warn!(upstream = %shared.upstream, session = %shared.tag, error = %e, line = %preview,
                            "skipping a stdout line that is not a JSON-RPC message");
                    }
                }
            }
            Ok(Line::TooLong { len, head, tail }) => {
                let id = lines::find_id(&tail).or_else(|| lines::find_id(&head));
                tracing::warn!(upstream = %shared.upstream, session = %shared.tag, len, max, id = ?id,
                    "upstream message exceeds max_message_bytes; dropped");
                if let Some(id) = id {
                    let detail = format!("its response of {len} bytes exceeds max_message_bytes ({max})");
                    let err = Message::error_response(Some(&id), codes::UPSTREAM_ERROR, &detail, None);
                    shared.route_response(err);
                }
            }
            Ok(Line::Eof) => break,
            Err(e) => {
                tracing::warn!(upstream = %shared.upstream, session = %shared.tag, error = %e, "reading stdout failed");
                break;
            }
        }
    }
    shared.fail_all("the upstream process closed its stdout (it exited or crashed)");
}

async fn stderr_loop(shared: Arc<Shared>, stderr: tokio::process::ChildStderr, per_second: u32) {
    // Bounded per line, and never ended by bytes that are not UTF-8: a process whose
    // stderr is no longer read dies of SIGPIPE on its next write.
    let mut reader = BufReader::new(stderr);
    let mut window = Instant::now();
    let mut in_window = 0u32;
    let mut suppressed = 0u64;
    loop {
        let line = match lines::read_prefix(&mut reader, STDERR_LINE_MAX).await {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(upstream = %shared.upstream, session = %shared.tag, error = %e, "reading stderr failed");
                break;
            }
        };
        if window.elapsed() >= Duration::from_secs(1) {
            if suppressed > 0 {
                tracing::warn!(upstream = %shared.upstream, session = %shared.tag, suppressed, "stderr lines suppressed (rate limit)");
            }
            window = Instant::now();
            in_window = 0;
            suppressed = 0;
        }
        in_window += 1;
        if in_window > per_second {
            suppressed += 1;
            continue;
        }
        let text = String::from_utf8_lossy(&line.kept);
        if line.is_cut() {
            tracing::info!(target: "shadowcat::upstream::stderr", upstream = %shared.upstream, session = %shared.tag,
                len = line.len, cut_at = STDERR_LINE_MAX, "{text} [stderr line cut]");
        } else {
            tracing::info!(target: "shadowcat::upstream::stderr", upstream = %shared.upstream, session = %shared.tag, "{text}");
        }
    }
}

async fn supervise(
    shared: Arc<Shared>,
    mut child: tokio::process::Child,
    pid: i32,
    grace: Duration,
    close_rx: tokio::sync::oneshot::Receiver<()>,
    exited: watch::Sender<bool>,
) {
    let reason = tokio::select! {
        status = child.wait() => {
            process::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
            if let Ok(s) = &status {
                *shared.exit_code.lock() = Some(s.code().unwrap_or(1));
            }
            let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            tracing::warn!(upstream = %shared.upstream, session = %shared.tag, %status, "upstream process exited");
            format!("the upstream process exited ({status})")
        }
        _ = close_rx => {
            // Closing stdin lets a well-behaved server exit on its own.
            shared.writer.lock().take();
            let status = process::stop(&mut child, pid, grace).await;
            tracing::debug!(upstream = %shared.upstream, session = %shared.tag, %status, "upstream process stopped");
            "the session ended".to_owned()
        }
    };
    shared.fail_all(&reason);
    let _ = exited.send(true);
}
