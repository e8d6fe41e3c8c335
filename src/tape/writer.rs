//! The tape writer: one thread that owns every open tape file. Recording hands it
//! frames through a channel and never waits on a disk; each tape has a bounded
//! queue ([`TapeQueue`]) whose state the recorder reads to apply its `when_full`
//! policy. The thread redacts, serializes and writes each frame, flushes whenever it
//! has caught up (so a crash loses at most the frames still queued, and a tape cut
//! short is readable up to its last whole line), and writes a tape's trailer with its
//! counts and checksum when the tape closes.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use super::format::{Dir, Header, Line, Side, Trailer};
use super::read::hex;
use super::redact::{Placeholders, Redaction};

/// One tape's queue to the writer, shared by the recorder and the writer thread.
#[derive(Debug)]
pub struct TapeQueue {
    queued: AtomicUsize,
    dropped: AtomicU64,
    space: tokio::sync::Notify,
    capacity: usize,
}

impl TapeQueue {
    /// A queue of at most `capacity` frames.
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(TapeQueue {
            queued: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            space: tokio::sync::Notify::new(),
            capacity: capacity.max(1),
        })
    }

    /// Whether the queue is full.
    pub fn is_full(&self) -> bool {
        self.queued.load(Ordering::Acquire) >= self.capacity
    }

    /// Counts a frame dropped (queue full under `when_full: drop`, or a failed write).
    pub fn drop_one(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("shadowcat_tape_frames_dropped_total").increment(1);
    }

    /// Frames dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until the queue has room.
    pub async fn wait_for_space(&self) {
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.is_full() {
                return;
            }
            notified.await;
        }
    }

    fn took(&self) {
        let before = self.queued.fetch_sub(1, Ordering::AcqRel);
        if before >= self.capacity {
            self.space.notify_waiters();
        }
    }
}

/// A frame before it is written: the message and where it was.
pub struct FrameJob {
    /// Which way it went.
    pub dir: Dir,
    /// Which wire.
    pub side: Side,
    /// The logical call (0: unknown).
    pub call: u64,
    /// The protocol revision.
    pub rev: Option<&'static str>,
    /// The endpoint path (client side).
    pub route: Option<Arc<str>>,
    /// The upstream, once known.
    pub upstream: Option<Arc<str>>,
    /// What carried it.
    pub carrier: &'static str,
    /// The HTTP status, when there is one to say.
    pub status: Option<u16>,
    /// Request headers that matter, as a JSON object.
    pub headers: Option<Arc<str>>,
    /// The message's bytes (only they are written: no copy of the parsed message).
    pub msg: bytes::Bytes,
    /// Wall clock.
    pub at: SystemTime,
    /// Monotonic clock (the frame's offset is from the tape's start).
    pub when: Instant,
    /// Not a frame but a `change` line: what a stage (a rule) made of `msg`.
    pub change: Option<Box<ChangeNote>>,
}

/// What a rule made of a message (`msg` is the message as it came).
pub struct ChangeNote {
    /// The rule's id.
    pub by: Box<str>,
    /// Its action.
    pub action: &'static str,
    /// The message that went on in its place.
    pub after: Option<bytes::Bytes>,
    /// The answer sent back instead.
    pub answer: Option<bytes::Bytes>,
    /// The fault the client's wire carried it with (`malformed`, `reset`, `dribble`).
    pub wire: Option<&'static str>,
}

// Frames are nearly every command sent: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
enum Cmd {
    Open { id: u64, path: PathBuf, started: Instant, header: Box<Header>, queue: Arc<TapeQueue> },
    Frame { id: u64, job: FrameJob },
    Close { id: u64, reason: &'static str },
    Sync(mpsc::Sender<()>),
}

/// Rotation and retention.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// A tape past this many bytes is continued in a new part (0: never).
    pub max_tape_bytes: u64,
    /// Closed tapes older than this are deleted.
    pub max_age: Option<Duration>,
    /// Closed tapes are deleted, oldest first, while all of them take more than this.
    pub max_total_bytes: Option<u64>,
}

/// How long the writer naps between batches while frames keep coming (the most a
/// frame waits before it is written, beyond the writing itself). A tape whose queue
/// reaches half its capacity wakes it early, so a fast session is not held back by
/// the nap. Measured (16 sessions over HTTP, `record` against the same gateway
/// without it, 5 rounds each): a wake-up per frame cost +58% per call, a 1 ms nap
/// +35%, 5 ms +17%, 10 ms +22%, 20 ms +25% (longer batches go cold in the cache).
const BATCH_NAP: Duration = Duration::from_millis(5);

/// Retention is enforced a second after a tape closed, and every minute anyway (for
/// `max_age`).
const RETAIN_AFTER_CLOSE: Duration = Duration::from_secs(1);
const RETAIN_EVERY: Duration = Duration::from_secs(60);

/// The handle to the writer thread; the thread ends when every handle is dropped.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Cmd>,
    /// The writer thread, woken from its nap when a queue fills up.
    thread: std::thread::Thread,
}

impl Writer {
    /// Starts the writer thread; closed tapes go into the index of `dir` (where
    /// `policy`'s retention applies), if given.
    pub fn start(redaction: Redaction, dir: Option<PathBuf>, policy: Policy) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel();
        let handle =
            std::thread::Builder::new().name("tape-writer".into()).spawn(move || run(&rx, &redaction, dir, &policy))?;
        Ok(Writer { tx, thread: handle.thread().clone() })
    }

    /// Opens tape `id` in `path`, its header first; frame offsets count from `started`.
    pub fn open(&self, id: u64, path: PathBuf, started: Instant, header: Header, queue: Arc<TapeQueue>) {
        let _ = self.tx.send(Cmd::Open { id, path, started, header: Box::new(header), queue });
    }

    /// Queues a frame of tape `id` (its queue counted first: see [`Writer::enqueue`]).
    fn send_frame(&self, id: u64, job: FrameJob) {
        let _ = self.tx.send(Cmd::Frame { id, job });
    }

    /// Queues a frame of tape `id`, counting it in `queue` (whose `when_full` policy
    /// the caller has applied).
    pub fn enqueue(&self, id: u64, queue: &TapeQueue, job: FrameJob) {
        let queued = queue.queued.fetch_add(1, Ordering::AcqRel) + 1;
        self.send_frame(id, job);
        if queued == queue.capacity.div_ceil(2) {
            self.thread.unpark();
        }
    }

    /// Closes tape `id`: its trailer is written after every frame queued before.
    pub fn close(&self, id: u64, reason: &'static str) {
        let _ = self.tx.send(Cmd::Close { id, reason });
    }

    /// Waits (at most `within`) until everything queued before has been written;
    /// whether it was.
    pub fn sync(&self, within: Duration) -> bool {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Cmd::Sync(tx)).is_err() {
            return false;
        }
        rx.recv_timeout(within).is_ok()
    }
}

struct Open {
    file: BufWriter<File>,
    path: PathBuf,
    started: Instant,
    /// Its header, for the next part.
    header: Header,
    bytes: u64,
    digest: aws_lc_rs::digest::Context,
    frames: u64,
    /// `change` lines written.
    changes: u64,
    placeholders: Placeholders,
    queue: Arc<TapeQueue>,
    failed: bool,
    dirty: bool,
}

impl Open {
    fn write_line(&mut self, line: &[u8]) {
        if self.failed {
            return;
        }
        let written = self.file.write_all(line).and_then(|()| self.file.write_all(b"\n"));
        match written {
            Ok(()) => {
                self.digest.update(line);
                self.digest.update(b"\n");
                self.bytes += line.len() as u64 + 1;
                self.dirty = true;
            }
            Err(e) => self.fail(&e),
        }
    }

    fn fail(&mut self, e: &std::io::Error) {
        self.failed = true;
        tracing::warn!(path = %self.path.display(), error = %e, "a tape write failed; its later frames are counted as dropped");
    }

    fn flush(&mut self) {
        if self.dirty && !self.failed {
            if let Err(e) = self.file.flush() {
                self.fail(&e);
            }
        }
        self.dirty = false;
    }
}

/// The tapes the thread has: open ones, and those whose file could not be created
/// (their frames are counted as dropped, so their queues still drain).
struct Tapes {
    open: HashMap<u64, Open>,
    dead: HashMap<u64, Arc<TapeQueue>>,
    index: Indexer,
    closed_since_retained: bool,
}

/// The index, opened on first use; a failure is logged once and indexing stops.
struct Indexer {
    dir: Option<PathBuf>,
    /// The tape directory (also once indexing has stopped).
    root: Option<PathBuf>,
    index: Option<super::index::Index>,
}

impl Indexer {
    fn remove(&mut self, id: &str) {
        if let Some(i) = &self.index {
            if let Err(e) = i.remove(id) {
                tracing::warn!(error = %e, "a deleted tape stays in the index");
            }
        } else if let Some(dir) = &self.dir {
            if let Ok(i) = super::index::Index::open(dir) {
                let _ = i.remove(id);
                self.index = Some(i);
            }
        }
    }

    fn add(&mut self, path: &std::path::Path) {
        let Some(dir) = &self.dir else { return };
        if self.index.is_none() {
            match super::index::Index::open(dir) {
                Ok(i) => self.index = Some(i),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the tape index; tapes are written but not indexed");
                    self.dir = None;
                    return;
                }
            }
        }
        let added = super::read(path).map_err(|e| e.to_string()).and_then(|tape| match &mut self.index {
            Some(i) => i.add(path, &tape),
            None => Ok(()),
        });
        if let Err(e) = added {
            tracing::warn!(path = %path.display(), error = %e, "a closed tape could not be indexed");
        }
    }
}

fn run(rx: &mpsc::Receiver<Cmd>, redaction: &Redaction, dir: Option<PathBuf>, policy: &Policy) {
    let index = Indexer { dir: dir.clone(), root: dir, index: None };
    let mut tapes = Tapes { open: HashMap::new(), dead: HashMap::new(), index, closed_since_retained: false };
    let mut retained = Instant::now();
    let mut busy = false;
    loop {
        // Busy: a short nap, then take what came meanwhile, so that under load the
        // proxy's sends do not each wake this thread (a wake-up per frame cost more
        // than the writing). Idle: wait on the channel.
        let first = if busy {
            std::thread::park_timeout(BATCH_NAP);
            match rx.try_recv() {
                Ok(cmd) => Some(cmd),
                Err(mpsc::TryRecvError::Empty) => None,
                Err(mpsc::TryRecvError::Disconnected) => break,
            }
        } else {
            match rx.recv_timeout(RETAIN_AFTER_CLOSE) {
                Ok(cmd) => Some(cmd),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        };
        busy = first.is_some();
        let mut syncs = Vec::new();
        let mut next = first;
        while let Some(cmd) = next {
            match cmd {
                Cmd::Sync(done) => syncs.push(done),
                cmd => handle(&mut tapes, redaction, policy, cmd),
            }
            next = rx.try_recv().ok();
        }
        // Caught up: what was written reaches the files before more is waited for.
        tapes.open.values_mut().for_each(Open::flush);
        let due = if tapes.closed_since_retained { RETAIN_AFTER_CLOSE } else { RETAIN_EVERY };
        if retained.elapsed() >= due {
            retain(&mut tapes, policy);
            tapes.closed_since_retained = false;
            retained = Instant::now();
        }
        for done in syncs {
            let _ = done.send(());
        }
    }
    for (_, tape) in tapes.open.drain() {
        let path = tape.path.clone();
        if close(tape, "shutdown") {
            tapes.index.add(&path);
        }
    }
}

/// Creates a tape's file and writes its header; `None` (logged, counted) if it cannot.
fn create(
    path: PathBuf,
    started: Instant,
    header: Header,
    queue: Arc<TapeQueue>,
    placeholders: Placeholders,
) -> Option<Open> {
    let file = match File::options().create_new(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot create a tape; its frames are counted as dropped");
            metrics::counter!("shadowcat_tape_open_failures_total").increment(1);
            return None;
        }
    };
    let mut tape = Open {
        file: BufWriter::with_capacity(64 * 1024, file),
        path,
        started,
        header: header.clone(),
        bytes: 0,
        digest: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
        frames: 0,
        changes: 0,
        placeholders,
        queue,
        failed: false,
        dirty: false,
    };
    match serde_json::to_vec(&Line::Header(Box::new(header))) {
        Ok(line) => tape.write_line(&line),
        Err(e) => tracing::warn!(error = %e, "a tape header could not be written"),
    }
    metrics::counter!("shadowcat_tapes_opened_total").increment(1);
    Some(tape)
}

/// Closes tape `id`'s current part (`rotated`) and goes on in the next.
fn rotate(tapes: &mut Tapes, id: u64) {
    let Some(mut old) = tapes.open.remove(&id) else { return };
    let first = old.header.continues.clone().unwrap_or_else(|| old.header.tape.clone());
    let part = old.header.part.unwrap_or(1) + 1;
    let mut header = old.header.clone();
    header.tape = format!("{first}.{part}");
    header.part = Some(part);
    header.continues = Some(first);
    header.started_at = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
    let path = old.path.with_file_name(format!("{}{}", header.tape, super::EXTENSION));
    // The same secret keeps its placeholder in every part; each trailer counts its own.
    let mut carried = std::mem::take(&mut old.placeholders);
    old.placeholders.replaced = carried.replaced;
    carried.replaced = 0;
    let (started, queue, old_path) = (old.started, old.queue.clone(), old.path.clone());
    if close(old, "rotated") {
        tapes.index.add(&old_path);
    }
    match create(path, started, header, queue.clone(), carried) {
        Some(tape) => {
            tapes.open.insert(id, tape);
        }
        None => {
            tapes.dead.insert(id, queue);
        }
    }
}

/// Deletes closed tapes past `policy`'s age and total size (oldest first), and
/// their index entries; open tapes are never touched.
fn retain(tapes: &mut Tapes, policy: &Policy) {
    let Some(dir) = tapes.index.root.clone() else { return };
    if policy.max_age.is_none() && policy.max_total_bytes.is_none() {
        return;
    }
    let open: std::collections::HashSet<&PathBuf> = tapes.open.values().map(|t| &t.path).collect();
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    let mut files: Vec<(String, PathBuf, u64, SystemTime, bool)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.strip_suffix(super::EXTENSION)?.to_owned();
            let meta = e.metadata().ok()?;
            let path = e.path();
            let is_open = open.contains(&path);
            Some((name, path, meta.len(), meta.modified().unwrap_or(SystemTime::now()), is_open))
        })
        .collect();
    // Oldest first: by when each was last written (ids only sort to the second).
    files.sort_by(|a, b| a.3.cmp(&b.3).then_with(|| a.0.cmp(&b.0)));
    let mut total: u64 = files.iter().map(|f| f.2).sum();
    let now = SystemTime::now();
    let mut gone = Vec::new();
    for (name, path, len, modified, is_open) in &files {
        if *is_open {
            continue;
        }
        let too_old = policy.max_age.is_some_and(|age| now.duration_since(*modified).unwrap_or_default() > age);
        let too_big = policy.max_total_bytes.is_some_and(|max| total > max);
        if too_old || too_big {
            match std::fs::remove_file(path) {
                Ok(()) => {
                    total = total.saturating_sub(*len);
                    gone.push(name.clone());
                }
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "retention could not delete a tape"),
            }
        }
    }
    if gone.is_empty() {
        return;
    }
    for name in &gone {
        tapes.index.remove(name);
    }
    metrics::counter!("shadowcat_tapes_deleted_total").increment(gone.len() as u64);
    tracing::info!(deleted = gone.len(), "tapes past record.retention deleted");
}

fn handle(tapes: &mut Tapes, redaction: &Redaction, policy: &Policy, cmd: Cmd) {
    match cmd {
        Cmd::Open { id, path, started, header, queue } => {
            match create(path, started, *header, queue.clone(), Placeholders::default()) {
                Some(tape) => {
                    tapes.open.insert(id, tape);
                }
                None => {
                    tapes.dead.insert(id, queue);
                }
            }
        }
        Cmd::Frame { id, job } => {
            // A tape past its size goes on in a new part before this frame (so no part
            // is left empty).
            let full = |t: &Open| t.bytes >= policy.max_tape_bytes && t.frames > 0 && !t.failed;
            if policy.max_tape_bytes > 0 && tapes.open.get(&id).is_some_and(full) {
                rotate(tapes, id);
            }
            let Some(tape) = tapes.open.get_mut(&id) else {
                // The tape could not be created: the frame is lost, and counted.
                if let Some(queue) = tapes.dead.get(&id) {
                    queue.took();
                    queue.drop_one();
                }
                return;
            };
            tape.queue.took();
            if tape.failed {
                tape.queue.drop_one();
                return;
            }
            if job.change.is_some() {
                match change_line(job, tape.started, redaction, &mut tape.placeholders) {
                    Some(line) => {
                        tape.write_line(&line);
                        tape.changes += u64::from(!tape.failed);
                    }
                    None => tracing::warn!(path = %tape.path.display(), "a change line could not be made; left out"),
                }
                return;
            }
            let seq = tape.frames + 1;
            match frame_line(job, seq, tape.started, redaction, &mut tape.placeholders) {
                Some(line) => {
                    tape.write_line(&line);
                    if tape.failed {
                        tape.queue.drop_one();
                    } else {
                        tape.frames = seq;
                    }
                }
                None => tape.queue.drop_one(),
            }
        }
        Cmd::Close { id, reason } => {
            if let Some(tape) = tapes.open.remove(&id) {
                let path = tape.path.clone();
                if close(tape, reason) {
                    tapes.index.add(&path);
                }
                tapes.closed_since_retained = true;
            }
            tapes.dead.remove(&id);
        }
        Cmd::Sync(_) => {}
    }
}

/// Writes the trailer; whether the tape is whole.
fn close(mut tape: Open, reason: &str) -> bool {
    let checksum = format!("sha256:{}", hex(tape.digest.clone().finish().as_ref()));
    let trailer = Trailer {
        ended_at: humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
        reason: reason.to_owned(),
        frames: tape.frames,
        changes: tape.changes,
        dropped: tape.queue.dropped(),
        redacted: tape.placeholders.replaced,
        checksum,
    };
    if let Ok(line) = serde_json::to_vec(&Line::Trailer(trailer)) {
        tape.write_line(&line);
    }
    tape.flush();
    if !tape.failed {
        if let Err(e) = tape.file.get_ref().sync_data() {
            tracing::debug!(path = %tape.path.display(), error = %e, "a closed tape was not synced to disk");
        }
    }
    metrics::counter!("shadowcat_tapes_closed_total").increment(1);
    !tape.failed
}

/// A message's JSON on one line (compacted when it spans several), redacted when
/// the configuration asks.
fn message_text<'a>(
    bytes: &'a [u8],
    redaction: &Redaction,
    placeholders: &mut Placeholders,
) -> Option<std::borrow::Cow<'a, str>> {
    let multiline = memchr::memchr2(b'\n', b'\r', bytes).is_some();
    Some(if redaction.is_empty() && !multiline {
        std::borrow::Cow::Borrowed(std::str::from_utf8(bytes).ok()?)
    } else {
        let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        if !redaction.is_empty() {
            placeholders.apply(redaction, &mut value);
        }
        std::borrow::Cow::Owned(serde_json::to_string(&value).ok()?)
    })
}

/// A `change` line: when, where, the rule, and the message before and after.
fn change_line(
    job: FrameJob,
    started: Instant,
    redaction: &Redaction,
    placeholders: &mut Placeholders,
) -> Option<Vec<u8>> {
    let note = job.change?;
    let mut redacted = |b: &Option<bytes::Bytes>| -> Option<Option<Box<serde_json::value::RawValue>>> {
        match b {
            None => Some(None),
            Some(b) => {
                let text = message_text(b, redaction, placeholders)?;
                serde_json::value::RawValue::from_string(text.into_owned()).ok().map(Some)
            }
        }
    };
    let before = redacted(&Some(job.msg.clone()))??;
    let after = redacted(&note.after)?;
    let answer = redacted(&note.answer)?;
    let line = ChangeOut {
        kind: "change",
        t_us: job.when.saturating_duration_since(started).as_micros() as u64,
        at: Rfc3339(job.at),
        dir: job.dir,
        side: job.side,
        call: job.call,
        rev: job.rev,
        rule: &note.by,
        action: note.action,
        wire: note.wire,
        before,
        after,
        answer,
    };
    serde_json::to_vec(&line).ok()
}

/// A `change` line's members (see [`Change`](super::format::Change)).
#[derive(serde::Serialize)]
struct ChangeOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    t_us: u64,
    at: Rfc3339,
    dir: Dir,
    side: Side,
    call: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    rev: Option<&'a str>,
    rule: &'a str,
    action: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    wire: Option<&'a str>,
    before: Box<serde_json::value::RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<Box<serde_json::value::RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    answer: Option<Box<serde_json::value::RawValue>>,
}

/// A frame's line: the message on one line (compacted when it spans several),
/// redacted when the configuration asks.
fn frame_line(
    job: FrameJob,
    seq: u64,
    started: Instant,
    redaction: &Redaction,
    placeholders: &mut Placeholders,
) -> Option<Vec<u8>> {
    let text = message_text(&job.msg, redaction, placeholders)?;
    // The frame's members, then the message's bytes as they are (no second parse).
    let frame = FrameOut {
        kind: "frame",
        seq,
        t_us: job.when.saturating_duration_since(started).as_micros() as u64,
        at: Rfc3339(job.at),
        dir: job.dir,
        side: job.side,
        call: job.call,
        rev: job.rev,
        route: job.route.as_deref(),
        upstream: job.upstream.as_deref(),
        carrier: job.carrier,
        status: job.status,
    };
    let mut line = Vec::with_capacity(160 + text.len());
    serde_json::to_writer(&mut line, &frame).ok()?;
    line.pop(); // the closing brace
    if let Some(h) = &job.headers {
        line.extend_from_slice(b",\"headers\":");
        line.extend_from_slice(h.as_bytes());
    }
    line.extend_from_slice(b",\"msg\":");
    line.extend_from_slice(text.as_bytes());
    line.push(b'}');
    Some(line)
}

/// A frame line's members but the message and headers, borrowed (see
/// [`Frame`](super::format::Frame)).
#[derive(serde::Serialize)]
struct FrameOut<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    seq: u64,
    t_us: u64,
    at: Rfc3339,
    dir: Dir,
    side: Side,
    call: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    rev: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<&'a str>,
    carrier: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
}

/// A wall-clock time written as RFC 3339 with microseconds, without a String.
struct Rfc3339(SystemTime);

impl serde::Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_micros(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_waits_for_the_writer() {
        let q = TapeQueue::new(1);
        q.queued.fetch_add(1, Ordering::AcqRel);
        assert!(q.is_full());
        let waiting = tokio::spawn({
            let q = q.clone();
            async move { q.wait_for_space().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "no room yet");
        q.took();
        tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("woken").expect("join");
        assert!(!q.is_full());
        q.drop_one();
        assert_eq!(q.dropped(), 1);
    }

    #[test]
    fn retention_deletes_closed_tapes_by_age_then_oldest_first() {
        let dir = std::env::temp_dir().join(format!("shadowcat-retain-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        for (name, age_days) in [
            ("20261101T000000Z-a", 31u64),
            ("20261201T000000Z-b", 1),
            ("20261201T100000Z-c", 1),
            ("20261202T000000Z-d", 0),
        ] {
            let path = dir.join(format!("{name}{}", super::super::EXTENSION));
            std::fs::write(&path, vec![b'x'; 100]).expect("write");
            let f = File::options().write(true).open(&path).expect("open");
            f.set_modified(now - day * age_days as u32).expect("mtime");
        }
        std::fs::write(dir.join("index.sqlite"), b"").expect("not a tape");
        let index = Indexer { dir: None, root: Some(dir.clone()), index: None };
        let mut tapes = Tapes { open: HashMap::new(), dead: HashMap::new(), index, closed_since_retained: true };
        let left = |dir: &std::path::Path| {
            let mut v: Vec<String> =
                std::fs::read_dir(dir).expect("dir").filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
            v.sort();
            v
        };
        retain(&mut tapes, &Policy { max_tape_bytes: 0, max_age: Some(day * 30), max_total_bytes: None });
        assert_eq!(left(&dir).len(), 4, "the 31-day-old tape went: {:?}", left(&dir));
        retain(&mut tapes, &Policy { max_tape_bytes: 0, max_age: None, max_total_bytes: Some(250) });
        assert_eq!(
            left(&dir),
            ["20261201T100000Z-c.tape.jsonl", "20261202T000000Z-d.tape.jsonl", "index.sqlite"],
            "oldest first, down to 250 bytes"
        );
        std::fs::remove_dir_all(&dir).expect("clean");
    }

    #[test]
    fn the_writer_writes_a_checked_tape() {
        let dir = std::env::temp_dir().join(format!("shadowcat-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("w.tape.jsonl");
        let _ = std::fs::remove_file(&path);
        let writer = Writer::start(Redaction::default(), None, Policy::default()).expect("start");
        let q = TapeQueue::new(4);
        let started = Instant::now();
        let header = Header {
            format: super::super::FORMAT.into(),
            version: super::super::VERSION,
            tape: "w".into(),
            started_at: "2026-12-02T00:00:00Z".into(),
            shadowcat: "test".into(),
            mode: "gateway".into(),
            side: "client".into(),
            route: None,
            upstream: None,
            session: None,
            client: None,
            server: None,
            revisions: vec![],
            part: None,
            continues: None,
        };
        writer.open(1, path.clone(), started, header, q.clone());
        // A message sent pretty-printed still takes one line.
        let msg = bytes::Bytes::from_static(b"{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 1,\n  \"method\": \"ping\"\n}");
        let job = FrameJob {
            dir: Dir::ClientToServer,
            side: Side::Client,
            call: 1,
            rev: Some("2025-11-25"),
            route: None,
            upstream: None,
            carrier: "request",
            status: None,
            headers: None,
            msg,
            at: SystemTime::now(),
            when: Instant::now(),
            change: None,
        };
        writer.enqueue(1, &q, job);
        writer.close(1, "shutdown");
        assert!(writer.sync(Duration::from_secs(5)));
        let tape = super::super::read(&path).expect("valid");
        assert_eq!(tape.frames.len(), 1);
        assert_eq!(tape.frames[0].msg.get(), r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
        assert!(tape.cut_short.is_none());
        assert!(!q.is_full());
    }
}
