//! `record`: every message of every session, both directions, to tapes under `dir`
//! (one file per client session or stateless client conversation; the format is in
//! `docs/tape-format.md`).
//!
//! ```yaml
//! pipeline:
//!   - record:
//!       dir: /var/lib/shadowcat/tapes
//!       queue_frames: 1024          # per tape, between the proxy and the writer
//!       when_full: backpressure     # or `drop` (counted in metrics and the trailer)
//!       stateless_gap: 5m           # a 2026-07-28 client quiet this long starts a new tape
//!       max_tape_bytes: 64MiB       # a longer tape goes on in a new part (`<id>.2.tape.jsonl`)
//!       retention: { max_age: 30d, max_total_bytes: 10GiB }   # closed tapes past either are deleted
//!       redact:
//!         paths: ["$.params.arguments.password"]   # JSONPath (RFC 9535)
//!         patterns: ["sk-[A-Za-z0-9]{20,}"]         # regular expressions
//! ```
//!
//! What goes on a tape:
//! - the client's wire: every message of every call, with its call, revision,
//!   upstream, carrier, the HTTP status of a JSON reply or of an error the gateway
//!   answered with, and the request headers that matter ([`RECORDED_HEADERS`]: never
//!   `Authorization`, cookies or `Mcp-Session-Id`);
//! - the upstream wire where it differs (a [`WireTap`]): the sessions the bridge
//!   pools for 2026-07-28 clients (their `initialize`, a legacy server's
//!   `elicitation/create` and the bridge's answer) and the stateless requests the
//!   gateway sends, one tape per upstream session (`side: upstream`).
//!
//! Recording never blocks the proxy on the disk: frames go to a writer thread
//! ([`crate::tape::writer`]) through a bounded queue per tape. When a tape's queue is
//! full, `backpressure` holds that call's next message until there is room (other
//! sessions go on), and `drop` drops the frame and counts it. A tape closes (its
//! trailer written) when its session is deleted or gone, when a stateless
//! conversation or an upstream tape has been quiet for `stateless_gap`, and on
//! shutdown.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{BuildContext, StageDef, StageFn};
use crate::pipeline::{
    CallEnd, CallInfo, Carrier, Change, ChangeObserver, Direction, Flow, Lifecycle, McpRequest, MessageContext,
    ReplyStart, RequestKind, Stage, StageLayer, Verdict,
};
use crate::protocol::Message;
use crate::session::Session;
use crate::tape::redact::Redaction;
use crate::tape::writer::{ChangeNote, FrameJob, TapeQueue, Writer};
use crate::tape::{Dir, Header, Side};
use crate::upstream::{WireContext, WireDirection, WireOrigin, WireTap};

/// The registry entry.
pub const STAGE: StageDef = StageDef { name: "record", build, must_follow: &[] };

/// The request headers a tape keeps (lower case). Credentials, cookies and session
/// ids are never among them.
pub const RECORDED_HEADERS: [&str; 7] =
    ["accept", "content-type", "last-event-id", "mcp-method", "mcp-name", "mcp-protocol-version", "user-agent"];

/// What `record` does when a tape's queue is full.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Hold that call's next message until the writer has caught up (default).
    #[default]
    Backpressure,
    /// Drop the frame and count it (metrics, the tape's trailer).
    Drop,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionOptions {
    #[serde(default, with = "crate::config::duration::option")]
    max_age: Option<Duration>,
    #[serde(default, with = "crate::config::size::option")]
    max_total_bytes: Option<u64>,
}

fn default_max_tape_bytes() -> u64 {
    64 * 1024 * 1024
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedactOptions {
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    patterns: Vec<String>,
}

fn default_queue() -> usize {
    1024
}

fn default_gap() -> Duration {
    Duration::from_secs(300)
}

/// Options of the `record` stage.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    dir: PathBuf,
    #[serde(default = "default_queue")]
    queue_frames: usize,
    #[serde(default)]
    when_full: WhenFull,
    #[serde(default = "default_gap", with = "crate::config::duration")]
    stateless_gap: Duration,
    #[serde(default)]
    redact: RedactOptions,
    #[serde(default = "default_max_tape_bytes", with = "crate::config::size")]
    max_tape_bytes: u64,
    #[serde(default)]
    retention: RetentionOptions,
}

fn build(options: &Value, ctx: &BuildContext) -> Result<StageFn, String> {
    if options.is_null() {
        return Err("needs a `dir` to write tapes to (`- record: { dir: tapes }`, or --record DIR)".into());
    }
    let o: Options = serde_json::from_value(options.clone()).map_err(|e| e.to_string())?;
    if o.dir.as_os_str().is_empty() {
        return Err("dir: must not be empty".into());
    }
    if o.queue_frames == 0 {
        return Err("queue_frames: must be greater than 0".into());
    }
    if o.stateless_gap.is_zero() {
        return Err("stateless_gap: must be greater than 0".into());
    }
    let redaction = Redaction::new(&o.redact.paths, &o.redact.patterns)?;
    let recorder = Recorder::new(Settings {
        dir: o.dir,
        queue_frames: o.queue_frames,
        when_full: o.when_full,
        gap: o.stateless_gap,
        mode: ctx.mode,
        redaction,
        policy: crate::tape::writer::Policy {
            max_tape_bytes: o.max_tape_bytes,
            max_age: o.retention.max_age,
            max_total_bytes: o.retention.max_total_bytes,
        },
    });
    ctx.lifecycles.register(Arc::new(recorder.clone()));
    ctx.wire.register(Arc::new(recorder.clone()));
    ctx.changes.register(Arc::new(recorder.clone()));
    let layer = StageLayer::new(recorder);
    Ok(Arc::new(move |inner| layer.service(inner)))
}

/// What a recorder is set up with.
pub struct Settings {
    /// Where tapes go.
    pub dir: PathBuf,
    /// Frames queued per tape at most.
    pub queue_frames: usize,
    /// What to do when a tape's queue is full.
    pub when_full: WhenFull,
    /// How long a stateless conversation or an upstream tape may be quiet.
    pub gap: Duration,
    /// `gateway` or `forward`.
    pub mode: &'static str,
    /// What to redact.
    pub redaction: Redaction,
    /// Rotation and retention.
    pub policy: crate::tape::writer::Policy,
}

/// The `record` stage (and tap of the upstream wire).
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

struct Inner {
    settings: Settings,
    writer: OnceLock<Writer>,
    tapes: Mutex<HashMap<Key, Arc<TapeHandle>>>,
    next_id: AtomicU64,
    sweeper: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// What a tape is of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// A client session, by id (kept in memory only).
    Session(Arc<str>),
    /// A stateless client, by its key (principal or peer address).
    Client(Arc<str>),
    /// An upstream session (or an upstream's stateless exchanges), by upstream and tag.
    Upstream(Arc<str>),
}

/// One open tape.
struct TapeHandle {
    id: u64,
    queue: Arc<TapeQueue>,
    /// Frames of other calls, held while the `initialize` that created this tape's
    /// session has not ended (its own frames go first).
    held: Mutex<Option<Vec<FrameJob>>>,
    /// Its file and header until its first frame: the writer creates the file then
    /// (a session's tape opened by a GET stream gets the header of the `initialize`
    /// that is still finishing; a tape without frames is never written).
    unopened: Mutex<Option<(PathBuf, Instant, Header)>>,
    /// When its last frame came, in ms since the recorder's clock started.
    last: AtomicU64,
    session: Option<Weak<Session>>,
    /// The request headers its last call recorded, and their JSON: a session's calls
    /// mostly send the same ones, so their JSON is made once, not once per call.
    headers: Mutex<Option<HeaderMemo>>,
}

/// Recorded header values (in [`RECORDED_HEADERS`] order) and their JSON object.
struct HeaderMemo {
    values: [Option<Box<str>>; RECORDED_HEADERS.len()],
    json: Option<Arc<str>>,
}

/// The values of [`RECORDED_HEADERS`] in `headers` (a value that is not text is left out).
fn recorded_values(headers: &http::HeaderMap) -> [Option<&str>; RECORDED_HEADERS.len()] {
    RECORDED_HEADERS.map(|name: &str| headers.get(name).and_then(|v| v.to_str().ok()))
}

/// The JSON object of the recorded headers (`None` when there are none).
fn headers_json(values: &[Option<&str>; RECORDED_HEADERS.len()]) -> Option<Arc<str>> {
    let kept: BTreeMap<&str, &str> =
        RECORDED_HEADERS.iter().zip(values).filter_map(|(name, v)| Some((*name, (*v)?))).collect();
    if kept.is_empty() {
        return None;
    }
    serde_json::to_string(&kept).ok().map(Arc::from)
}

impl TapeHandle {
    /// The headers' JSON, reusing the last call's when the values are the same.
    fn headers_json(&self, headers: &http::HeaderMap) -> Option<Arc<str>> {
        let values = recorded_values(headers);
        let mut memo = self.headers.lock();
        if let Some(m) = memo.as_ref() {
            if m.values.iter().zip(&values).all(|(a, b)| a.as_deref() == *b) {
                return m.json.clone();
            }
        }
        let json = headers_json(&values);
        *memo = Some(HeaderMemo { values: values.map(|v| v.map(Box::from)), json: json.clone() });
        json
    }
}

/// What the recorder keeps about one call.
pub struct RecordCall {
    tape: Option<Arc<TapeHandle>>,
    /// Frames of an `initialize` call, kept until its session (and tape) exists.
    pending: Mutex<Vec<FrameJob>>,
    /// The tape of the session this `initialize` created (from its reply on).
    init_tape: Mutex<Option<Arc<TapeHandle>>>,
    /// The client part of a new tape's header (`initialize` params).
    client: Option<Value>,
    started: Instant,
    call_id: u64,
    /// The revision in force (`None` for `initialize`: it is being negotiated).
    rev: Option<&'static str>,
    request_id: Option<Arc<str>>,
    /// The request headers that matter, as a JSON object (its tape's, while they are
    /// the same as its last call's).
    headers: Option<Arc<str>>,
    ends_session: Option<Arc<str>>,
}

/// The recorder's clock, for tape idleness.
fn clock_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

impl Recorder {
    /// A recorder (its writer starts with [`Lifecycle::start`]).
    pub fn new(settings: Settings) -> Self {
        Recorder {
            inner: Arc::new(Inner {
                settings,
                writer: OnceLock::new(),
                tapes: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                sweeper: Mutex::new(None),
            }),
        }
    }

    fn writer(&self) -> Option<&Writer> {
        self.inner.writer.get()
    }

    /// The open tape for `key`, or a new one with `header` (started `started`).
    fn tape(
        &self,
        key: Key,
        started: Instant,
        header: impl FnOnce(String) -> Header,
        session: Option<&Arc<Session>>,
    ) -> Option<Arc<TapeHandle>> {
        self.writer()?;
        let mut tapes = self.inner.tapes.lock();
        if let Some(t) = tapes.get(&key) {
            t.last.store(clock_ms(), Ordering::Relaxed);
            return Some(t.clone());
        }
        let name = crate::tape::new_id(SystemTime::now());
        let path = self.inner.settings.dir.join(format!("{name}{}", crate::tape::EXTENSION));
        let handle = Arc::new(TapeHandle {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            queue: TapeQueue::new(self.inner.settings.queue_frames),
            held: Mutex::new(None),
            unopened: Mutex::new(Some((path, started, header(name)))),
            last: AtomicU64::new(clock_ms()),
            session: session.map(Arc::downgrade),
            headers: Mutex::new(None),
        });
        tapes.insert(key, handle.clone());
        Some(handle)
    }

    /// Has the writer create `tape`'s file, if it has not yet.
    fn ensure_open(writer: &Writer, tape: &TapeHandle) {
        if let Some((path, started, header)) = tape.unopened.lock().take() {
            writer.open(tape.id, path, started, header, tape.queue.clone());
        }
    }

    /// A stateless client's conversation tape: the open one, unless it has been
    /// quiet for the gap (then it closes and a new one opens).
    fn conversation(
        &self,
        client: Arc<str>,
        started: Instant,
        header: impl FnOnce(String) -> Header,
    ) -> Option<Arc<TapeHandle>> {
        let key = Key::Client(client);
        let gap = self.inner.settings.gap.as_millis() as u64;
        let stale = self
            .inner
            .tapes
            .lock()
            .get(&key)
            .is_some_and(|t| clock_ms().saturating_sub(t.last.load(Ordering::Relaxed)) > gap);
        if stale {
            self.close(&key, "idle");
        }
        self.tape(key, started, header, None)
    }

    fn close(&self, key: &Key, reason: &'static str) {
        let removed = self.inner.tapes.lock().remove(key);
        if let (Some(t), Some(writer)) = (removed, self.writer()) {
            // A tape that never got a frame is not written at all.
            if t.unopened.lock().take().is_none() {
                writer.close(t.id, reason);
            }
        }
    }

    fn header(&self, name: String, side: &str) -> Header {
        Header {
            format: crate::tape::FORMAT.into(),
            version: crate::tape::VERSION,
            tape: name,
            started_at: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
            shadowcat: env!("CARGO_PKG_VERSION").into(),
            mode: self.inner.settings.mode.into(),
            side: side.into(),
            route: None,
            upstream: None,
            session: None,
            client: None,
            server: None,
            revisions: Vec::new(),
            part: None,
            continues: None,
        }
    }

    /// Queues `job` on `tape` under the `when_full` policy: `None` when it is queued
    /// (or dropped), else a future that queues it once there is room.
    fn push(&self, tape: &Arc<TapeHandle>, job: FrameJob) -> Option<BoxFuture<'static, ()>> {
        let writer = self.writer()?;
        {
            let mut held = tape.held.lock();
            if let Some(held) = held.as_mut() {
                held.push(job);
                return None;
            }
        }
        Self::ensure_open(writer, tape);
        if !tape.queue.is_full() {
            writer.enqueue(tape.id, &tape.queue, job);
            return None;
        }
        match self.inner.settings.when_full {
            WhenFull::Drop => {
                tape.queue.drop_one();
                None
            }
            WhenFull::Backpressure => {
                let (writer, tape) = (writer.clone(), tape.clone());
                Some(Box::pin(async move {
                    tape.queue.wait_for_space().await;
                    writer.enqueue(tape.id, &tape.queue, job);
                }))
            }
        }
    }

    /// Closes every sessions' tape whose session is gone, and every other tape quiet
    /// for longer than the gap.
    fn sweep(&self) {
        let gap = self.inner.settings.gap.as_millis() as u64;
        let now = clock_ms();
        let done: Vec<(Key, &'static str)> = self
            .inner
            .tapes
            .lock()
            .iter()
            .filter_map(|(k, t)| match (&t.session, k) {
                (Some(s), _) => match s.upgrade() {
                    Some(s) if s.is_alive() => None,
                    _ => Some((k.clone(), "session_closed")),
                },
                (None, _) if now.saturating_sub(t.last.load(Ordering::Relaxed)) > gap => Some((k.clone(), "idle")),
                _ => None,
            })
            .collect();
        for (key, reason) in done {
            self.close(&key, reason);
        }
    }
}

/// A frame of `msg` (its bytes shared, not copied: the writer needs nothing else).
fn frame(dir: Dir, side: Side, call: u64, rev: Option<&'static str>, carrier: &'static str, msg: &Message) -> FrameJob {
    FrameJob {
        dir,
        side,
        call,
        rev,
        route: None,
        upstream: None,
        carrier,
        status: None,
        headers: None,
        msg: msg.bytes().clone(),
        at: SystemTime::now(),
        when: Instant::now(),
        change: None,
    }
}

fn carrier_label(c: Carrier) -> &'static str {
    match c {
        Carrier::Request => "request",
        Carrier::Reply => "reply",
        Carrier::PostStream => "post_stream",
        Carrier::GetStream => "get_stream",
    }
}

/// `clientInfo` and `capabilities` of an `initialize` request, or of a 2026-07-28
/// request's `_meta`.
fn client_part(m: &Message) -> Option<Value> {
    let params = m.to_value()?.get_mut("params").map(Value::take)?;
    if m.method() == Some("initialize") {
        return Some(json!({ "info": params.get("clientInfo"), "capabilities": params.get("capabilities") }));
    }
    let meta = params.get("_meta")?;
    let info = meta.get("io.modelcontextprotocol/clientInfo");
    let caps = meta.get("io.modelcontextprotocol/clientCapabilities");
    (info.is_some() || caps.is_some()).then(|| json!({ "info": info, "capabilities": caps }))
}

impl Stage for Recorder {
    type Call = RecordCall;

    fn begin(&self, req: &McpRequest) -> RecordCall {
        let started = Instant::now();
        let msg = req.msg();
        let is_init = msg.and_then(Message::method) == Some("initialize");
        let rev = (!is_init).then(|| req.version.as_str());
        let mut call = RecordCall {
            tape: None,
            pending: Mutex::new(Vec::new()),
            init_tape: Mutex::new(None),
            client: None,
            started,
            call_id: req.context.call.get(),
            rev,
            request_id: msg.filter(|m| m.is_request()).and_then(Message::id_shared),
            headers: None,
            ends_session: None,
        };
        if self.writer().is_none() {
            return call;
        }
        match (&req.session, &req.kind) {
            (Some(s), RequestKind::EndSession) => {
                call.ends_session = Some(s.shared_id().clone());
                call.tape = self.inner.tapes.lock().get(&Key::Session(s.shared_id().clone())).cloned();
            }
            (Some(s), _) => {
                let header = |name| Header {
                    route: Some(req.route.to_string()),
                    upstream: Some(s.upstream_name().to_string()),
                    session: Some(s.tag().to_owned()),
                    revisions: rev.map(str::to_owned).into_iter().collect(),
                    ..self.header(name, "client")
                };
                call.tape = self.tape(Key::Session(s.shared_id().clone()), started, header, Some(s));
            }
            (None, RequestKind::Message(m)) if m.method() == Some("initialize") => {
                call.client = client_part(m);
            }
            (None, _) if req.version.is_stateless() => {
                let client: Arc<str> = Arc::from(req.client_key().unwrap_or("local"));
                let header = |name| Header {
                    route: Some(req.route.to_string()),
                    client: msg.and_then(client_part),
                    revisions: rev.map(str::to_owned).into_iter().collect(),
                    ..self.header(name, "client")
                };
                call.tape = self.conversation(client, started, header);
            }
            _ => {}
        }
        call.headers = match &call.tape {
            Some(tape) => tape.headers_json(&req.headers),
            None => headers_json(&recorded_values(&req.headers)),
        };
        call
    }

    fn on_reply(&self, call: &RecordCall, reply: &ReplyStart<'_>) {
        let (Some(session), Some(client)) = (reply.new_session, &call.client) else { return };
        let header = |name| Header {
            route: Some(session.route().to_owned()),
            upstream: Some(session.upstream_name().to_string()),
            session: Some(session.tag().to_owned()),
            client: Some(client.clone()),
            ..self.header(name, "client")
        };
        let Some(tape) = self.tape(Key::Session(session.shared_id().clone()), call.started, header, Some(session))
        else {
            return;
        };
        // Until this call ends, the session's other calls (the client may start them
        // as soon as it has the session id) wait behind its frames.
        *tape.held.lock() = Some(Vec::new());
        *call.init_tape.lock() = Some(tape);
    }

    fn on_message(&self, call: &RecordCall, ctx: &MessageContext<'_>, msg: Message) -> Flow {
        if self.writer().is_none() {
            return Flow::pass(msg);
        }
        let dir = match ctx.direction {
            Direction::ClientToServer => Dir::ClientToServer,
            Direction::ServerToClient => Dir::ServerToClient,
        };
        let mut job = frame(dir, Side::Client, ctx.call.call.get(), call.rev, carrier_label(ctx.carrier), &msg);
        // The session's own name of its upstream, shared; else a copy.
        let shared = ctx.call.session.as_ref().map(|s| s.upstream_name()).filter(|u| Some(&***u) == ctx.upstream);
        job.upstream = shared.cloned().or_else(|| ctx.upstream.map(Arc::from));
        job.route = Some(ctx.call.route.clone());
        if ctx.carrier == Carrier::Reply {
            job.status = Some(200);
        }
        if ctx.carrier == Carrier::Request {
            job.headers = call.headers.clone();
        }
        let Some(tape) = &call.tape else {
            call.pending.lock().push(job);
            return Flow::pass(msg);
        };
        match self.push(tape, job) {
            None => Flow::pass(msg),
            Some(wait) => Flow::later(async move {
                wait.await;
                Verdict::Pass(msg)
            }),
        }
    }

    fn end(&self, call: &RecordCall, end: &CallEnd<'_>) {
        if self.writer().is_none() {
            return;
        }
        let mut tape = call.tape.clone();
        if let Some(t) = call.init_tape.lock().take() {
            // The session this `initialize` created: its header gets the server's
            // side, then its frames go first, then those of calls that came meanwhile.
            if let Some((_, _, h)) = t.unopened.lock().as_mut() {
                let result =
                    end.response.and_then(Message::to_value).and_then(|mut v| v.get_mut("result").map(Value::take));
                h.server = result
                    .as_ref()
                    .map(|r| json!({ "info": r.get("serverInfo"), "capabilities": r.get("capabilities") }));
                h.revisions = result
                    .as_ref()
                    .and_then(|r| r.get("protocolVersion"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .into_iter()
                    .collect();
            }
            if let Some(writer) = self.writer() {
                let mut held = t.held.lock();
                Self::ensure_open(writer, &t);
                for job in std::mem::take(&mut *call.pending.lock()) {
                    writer.enqueue(t.id, &t.queue, job);
                }
                for job in held.take().unwrap_or_default() {
                    writer.enqueue(t.id, &t.queue, job);
                }
            }
            tape = Some(t);
        }
        if let Some(tape) = &tape {
            if let Some(e) = end.error {
                if call.request_id.is_some() {
                    let m = e.to_message(call.request_id.as_deref());
                    let mut job = frame(Dir::ServerToClient, Side::Client, call.call_id, call.rev, "reply", &m);
                    job.status = Some(e.status().as_u16());
                    job.upstream = end.upstream.map(Arc::from);
                    // An error ends the call: nothing waits behind it.
                    if self.push(tape, job).is_some() {
                        tape.queue.drop_one();
                    }
                }
            }
        }
        if let Some(id) = &call.ends_session {
            self.close(&Key::Session(id.clone()), "session_ended");
        }
    }
}

impl WireTap for Recorder {
    fn wants(&self, origin: WireOrigin) -> bool {
        // A client session's messages are on its client tape already.
        origin != WireOrigin::ClientSession
    }

    fn on_wire(&self, ctx: &WireContext<'_>, message: &Message) {
        if self.writer().is_none() {
            return;
        }
        let key = Key::Upstream(Arc::from(format!("{}/{}", ctx.upstream, ctx.session)));
        let header = |name| Header {
            upstream: Some(ctx.upstream.to_owned()),
            session: Some(ctx.session.to_owned()),
            ..self.header(name, "upstream")
        };
        let Some(tape) = self.tape(key, Instant::now(), header, None) else { return };
        let dir = match ctx.direction {
            WireDirection::ToUpstream => Dir::ClientToServer,
            WireDirection::FromUpstream => Dir::ServerToClient,
        };
        let mut job = frame(dir, Side::Upstream, 0, None, "wire", message);
        job.upstream = Some(Arc::from(ctx.upstream));
        // The upstream wire cannot be held back from here: a full queue drops the
        // frame (counted) instead.
        if self.push(&tape, job).is_some() {
            tape.queue.drop_one();
        }
    }
}

/// What a rule changed goes on the call's tape as a `change` line, wherever
/// `record` and `intercept` are in the pipeline.
impl ChangeObserver for Recorder {
    fn changed(&self, call: &CallInfo, change: &Change<'_>) {
        if self.writer().is_none() {
            return;
        }
        let key = match &call.session {
            Some(s) => Key::Session(s.shared_id().clone()),
            None if call.version.is_stateless() => Key::Client(Arc::from(call.client.as_deref().unwrap_or("local"))),
            None => {
                tracing::debug!(rule = change.by, "a change to a call without a tape yet (initialize) is not recorded");
                return;
            }
        };
        let Some(tape) = self.inner.tapes.lock().get(&key).cloned() else { return };
        let dir = match change.direction {
            Direction::ClientToServer => Dir::ClientToServer,
            Direction::ServerToClient => Dir::ServerToClient,
        };
        let mut job = frame(dir, Side::Client, call.call.get(), Some(call.version.as_str()), "change", change.before);
        job.change = Some(Box::new(ChangeNote {
            by: change.by.into(),
            action: change.action,
            after: change.after.map(|m| m.bytes().clone()),
            answer: change.answer.map(|m| m.bytes().clone()),
            wire: change.after.and_then(Message::wire_fault).map(|by| by.fault.name()),
        }));
        // Told on the message's task, which cannot wait here: a full queue drops it
        // (counted), as on the upstream wire.
        if self.push(&tape, job).is_some() {
            tape.queue.drop_one();
        }
    }
}

impl Lifecycle for Recorder {
    fn start(&self) -> Result<(), String> {
        let dir = &self.inner.settings.dir;
        std::fs::create_dir_all(dir).map_err(|e| format!("record: cannot create {}: {e}", dir.display()))?;
        let probe = dir.join(".shadowcat-write-test");
        std::fs::write(&probe, b"").map_err(|e| format!("record: cannot write in {}: {e}", dir.display()))?;
        let _ = std::fs::remove_file(&probe);
        let writer =
            Writer::start(self.inner.settings.redaction.clone(), Some(dir.clone()), self.inner.settings.policy.clone())
                .map_err(|e| format!("record: cannot start the tape writer: {e}"))?;
        let _ = self.inner.writer.set(writer);
        let every = (self.inner.settings.gap / 4).clamp(Duration::from_millis(200), Duration::from_secs(5));
        let me = self.clone();
        *self.inner.sweeper.lock() = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                me.sweep();
            }
        }));
        tracing::info!(dir = %dir.display(), "recording tapes");
        Ok(())
    }

    fn stop(&self, grace: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(sweeper) = self.inner.sweeper.lock().take() {
                sweeper.abort();
            }
            let Some(writer) = self.writer().cloned() else { return };
            let keys: Vec<Key> = self.inner.tapes.lock().keys().cloned().collect();
            for key in &keys {
                self.close(key, "shutdown");
            }
            let synced = tokio::task::spawn_blocking(move || writer.sync(grace)).await.unwrap_or(false);
            if !synced {
                tracing::warn!(?grace, "the tape writer did not catch up within the shutdown grace");
            }
        })
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("dir", &self.inner.settings.dir).finish()
    }
}
