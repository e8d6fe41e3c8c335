//! The stdio JSON-RPC 2.0 runtime: one writer task, one task per incoming request,
//! cancellation, and server-to-client requests routed back by id.
//!
//! Nothing here knows about MCP methods; [`super::server`] does the dispatching.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};

use super::framing::{read_line, write_loop, LineRead};
use super::message::{
    classify, id_key, is_valid_id, response, Incoming, RpcError, INTERNAL_ERROR, INVALID_REQUEST, PARSE_ERROR,
};
use super::server;
use super::session::Session;

/// How many outgoing messages may wait for the writer before senders wait too.
const OUTBOUND_CAPACITY: usize = 256;
/// How long in-flight requests may still run once the input has reached EOF.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Locks a mutex (parking_lot: no poisoning).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock()
}

type PendingReply = oneshot::Sender<Result<Value, RpcError>>;

/// The connection as seen by handlers: the outgoing channel, the session state,
/// server-to-client requests waiting for answers, and the requests still running.
pub(crate) struct Peer {
    outbound: mpsc::Sender<String>,
    pending: Mutex<HashMap<String, PendingReply>>,
    in_flight: Mutex<HashMap<String, (u64, AbortHandle)>>,
    next_request_id: AtomicU64,
    next_task_id: AtomicU64,
    input_closed: AtomicBool,
    pub(crate) session: Session,
}

impl Peer {
    fn new(outbound: mpsc::Sender<String>) -> Self {
        Self {
            outbound,
            pending: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
            next_request_id: AtomicU64::new(1),
            next_task_id: AtomicU64::new(1),
            input_closed: AtomicBool::new(false),
            session: Session::default(),
        }
    }

    /// Queues one message for the writer (waits while the queue is full).
    async fn send(&self, message: &Value) {
        match serde_json::to_string(message) {
            Ok(line) => {
                if self.outbound.send(line).await.is_err() {
                    eprintln!("shadowcat-demo: output closed, dropping a message");
                }
            }
            Err(error) => eprintln!("shadowcat-demo: cannot serialize a message: {error}"),
        }
    }

    /// Sends a notification to the client.
    pub(crate) async fn notify(&self, method: &str, params: Value) {
        self.send(&json!({ "jsonrpc": "2.0", "method": method, "params": params })).await;
    }

    /// Sends a request to the client and waits for its answer.
    pub(crate) async fn request(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        if self.input_closed.load(Ordering::SeqCst) {
            return Err(RpcError::new(INTERNAL_ERROR, "the client connection is closed"));
        }
        let id = format!("demo-{}", self.next_request_id.fetch_add(1, Ordering::SeqCst));
        let (reply_tx, reply_rx) = oneshot::channel();
        lock(&self.pending).insert(id.clone(), reply_tx);
        // Removes the entry if this future is dropped (the calling request was cancelled).
        let _guard = PendingGuard { peer: self, id: &id };
        let message = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        self.send(&message).await;
        match reply_rx.await {
            Ok(outcome) => outcome,
            Err(_) => Err(RpcError::new(INTERNAL_ERROR, "the client connection is closed")),
        }
    }

    /// Hands a client's response to the task waiting for it.
    fn resolve(&self, id: &Value, outcome: Result<Value, RpcError>) {
        let waiter = id.as_str().and_then(|key| lock(&self.pending).remove(key));
        match waiter {
            Some(waiter) => {
                // The waiting task may have been cancelled meanwhile; nothing to do then.
                let _ = waiter.send(outcome);
            }
            None => eprintln!("shadowcat-demo: ignoring a response to unknown request id {id}"),
        }
    }

    /// Aborts the running request with this id; it then sends no response.
    pub(crate) fn cancel(&self, id: &Value) -> bool {
        match lock(&self.in_flight).remove(&id_key(id)) {
            Some((_, handle)) => {
                handle.abort();
                true
            }
            None => false,
        }
    }

    /// Marks the input as closed and fails every server-to-client request still waiting.
    fn close_input(&self) {
        self.input_closed.store(true, Ordering::SeqCst);
        let waiters: Vec<PendingReply> = lock(&self.pending).drain().map(|(_, tx)| tx).collect();
        for waiter in waiters {
            let closed = RpcError::new(INTERNAL_ERROR, "the client connection is closed");
            let _ = waiter.send(Err(closed));
        }
    }

    fn finish(&self, key: &str, task_id: u64) {
        let mut in_flight = lock(&self.in_flight);
        if in_flight.get(key).is_some_and(|(id, _)| *id == task_id) {
            in_flight.remove(key);
        }
    }
}

/// Deregisters a server-to-client request when its waiter goes away. If no answer had
/// arrived (the calling request was cancelled), the client is told to drop the request.
struct PendingGuard<'a> {
    peer: &'a Peer,
    id: &'a str,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if lock(&self.peer.pending).remove(self.id).is_none() {
            return; // answered, or failed at EOF
        }
        let params = json!({ "requestId": self.id, "reason": "the calling request was cancelled" });
        let note = json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": params });
        // Drop cannot await: if the output queue is full, the client just never hears of it.
        if let Ok(line) = serde_json::to_string(&note) {
            let _ = self.peer.outbound.try_send(line);
        }
    }
}

/// What a handler gets for one incoming request.
pub(crate) struct RequestCtx {
    pub(crate) peer: Arc<Peer>,
    /// The progress token from `params._meta.progressToken`, exactly as the client sent it.
    pub(crate) progress_token: Option<Value>,
}

impl RequestCtx {
    /// Sends `notifications/progress` if the request carried a progress token.
    pub(crate) async fn progress(&self, progress: u64, total: Option<u64>, message: Option<String>) {
        let Some(token) = &self.progress_token else {
            return;
        };
        let mut params = Map::new();
        params.insert("progressToken".into(), token.clone());
        params.insert("progress".into(), progress.into());
        if let Some(total) = total {
            params.insert("total".into(), total.into());
        }
        if let Some(message) = message {
            params.insert("message".into(), message.into());
        }
        self.peer.notify("notifications/progress", Value::Object(params)).await;
    }
}

/// Serves until `input` reaches EOF, then lets running requests finish (for a while).
pub(crate) async fn run<R, W>(input: R, output: W) -> io::Result<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
    let writer = tokio::spawn(write_loop(output, rx));
    let peer = Arc::new(Peer::new(tx));
    let mut tasks = JoinSet::new();
    let mut reader = BufReader::new(input);
    let mut line = Vec::new();
    let read_result = loop {
        match read_line(&mut reader, &mut line).await {
            Ok(LineRead::Eof) => break Ok(()),
            Ok(LineRead::TooLong) => {
                let error = RpcError::new(PARSE_ERROR, "message exceeds the maximum line length");
                peer.send(&response(&Value::Null, Err(error))).await;
            }
            Ok(LineRead::Line) => handle_line(&peer, &mut tasks, &line).await,
            Err(error) => break Err(error),
        }
        while tasks.try_join_next().is_some() {}
    };
    peer.close_input();
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        eprintln!("shadowcat-demo: input closed; aborting requests still running");
        tasks.shutdown().await;
    }
    drop(peer);
    let write_result =
        writer.await.unwrap_or_else(|error| Err(io::Error::other(format!("writer task failed: {error}"))));
    read_result.and(write_result)
}

async fn handle_line(peer: &Arc<Peer>, tasks: &mut JoinSet<()>, line: &[u8]) {
    let text = line.trim_ascii();
    if text.is_empty() {
        return;
    }
    let message = match serde_json::from_slice::<Value>(text) {
        Ok(message) => message,
        Err(error) => {
            let error = RpcError::new(PARSE_ERROR, format!("parse error: {error}"));
            peer.send(&response(&Value::Null, Err(error))).await;
            return;
        }
    };
    match classify(message) {
        Incoming::Request { id, method, params } => spawn_request(peer, tasks, id, method, params),
        Incoming::Notification { method, params } => server::handle_notification(peer, &method, params),
        Incoming::Response { id, outcome } => {
            if id.is_null() {
                if let Err(error) = outcome {
                    eprintln!("shadowcat-demo: the client reported an error: {}", error.message);
                }
            } else {
                peer.resolve(&id, outcome);
            }
        }
        Incoming::Invalid { id, reason } => {
            let error = RpcError::new(INVALID_REQUEST, format!("invalid request: {reason}"));
            peer.send(&response(&id, Err(error))).await;
        }
    }
}

fn spawn_request(peer: &Arc<Peer>, tasks: &mut JoinSet<()>, id: Value, method: String, params: Option<Value>) {
    let progress_token = params
        .as_ref()
        .and_then(|params| params.get("_meta"))
        .and_then(|meta| meta.get("progressToken"))
        .filter(|token| is_valid_id(token))
        .cloned();
    let ctx = RequestCtx { peer: Arc::clone(peer), progress_token };
    let key = id_key(&id);
    let task_id = peer.next_task_id.fetch_add(1, Ordering::SeqCst);
    // Held while spawning so the task cannot finish (and deregister) before it is registered.
    let mut in_flight = lock(&peer.in_flight);
    let task_key = key.clone();
    let handle = tasks.spawn(async move {
        let outcome = server::handle_request(&ctx, &method, params).await;
        ctx.peer.finish(&task_key, task_id);
        ctx.peer.send(&response(&id, outcome)).await;
    });
    in_flight.insert(key, (task_id, handle));
}
