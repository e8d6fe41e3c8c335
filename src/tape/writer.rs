//! The tape writer: one thread that owns every open tape file. Recording hands it
//! frames through a channel and never waits on a disk; each tape has a bounded
//! queue ([`TapeQueue`]) whose state the recorder reads to apply its `when_full`
//! policy. The thread redacts, serializes and writes each frame, flushes whenever it
//! has caught up (so a crash loses at most the frames still queued, and a tape cut
//! short is readable up to its last whole line), and writes a tape's trailer with its
//! counts and checksum when the tape closes.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

use serde_json::value::RawValue;

use super::format::{Dir, Frame, Header, Line, Side, Trailer};
use super::read::hex;
use super::redact::{Placeholders, Redaction};
use crate::protocol::Message;

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
    /// The upstream, once known.
    pub upstream: Option<Arc<str>>,
    /// What carried it.
    pub carrier: &'static str,
    /// The HTTP status, when there is one to say.
    pub status: Option<u16>,
    /// Request headers that matter.
    pub headers: BTreeMap<String, String>,
    /// The message.
    pub msg: Message,
    /// Wall clock.
    pub at: SystemTime,
    /// Monotonic clock (the frame's offset is from the tape's start).
    pub when: Instant,
}

enum Cmd {
    Open { id: u64, path: PathBuf, started: Instant, header: Box<Header>, queue: Arc<TapeQueue> },
    Frame { id: u64, job: Box<FrameJob> },
    Close { id: u64, reason: &'static str },
    Sync(mpsc::Sender<()>),
}

/// The handle to the writer thread; the thread ends when every handle is dropped.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Cmd>,
}

impl Writer {
    /// Starts the writer thread; closed tapes go into the index of `index_dir`, if given.
    pub fn start(redaction: Redaction, index_dir: Option<PathBuf>) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new().name("tape-writer".into()).spawn(move || run(&rx, &redaction, index_dir))?;
        Ok(Writer { tx })
    }

    /// Opens tape `id` in `path`, its header first; frame offsets count from `started`.
    pub fn open(&self, id: u64, path: PathBuf, started: Instant, header: Header, queue: Arc<TapeQueue>) {
        let _ = self.tx.send(Cmd::Open { id, path, started, header: Box::new(header), queue });
    }

    /// Queues a frame of tape `id` (its queue counted first: see [`Writer::enqueue`]).
    fn send_frame(&self, id: u64, job: FrameJob) {
        let _ = self.tx.send(Cmd::Frame { id, job: Box::new(job) });
    }

    /// Queues a frame of tape `id`, counting it in `queue` (whose `when_full` policy
    /// the caller has applied).
    pub fn enqueue(&self, id: u64, queue: &TapeQueue, job: FrameJob) {
        queue.queued.fetch_add(1, Ordering::AcqRel);
        self.send_frame(id, job);
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
    digest: aws_lc_rs::digest::Context,
    frames: u64,
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
}

/// The index, opened on first use; a failure is logged once and indexing stops.
struct Indexer {
    dir: Option<PathBuf>,
    index: Option<super::index::Index>,
}

impl Indexer {
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

fn run(rx: &mpsc::Receiver<Cmd>, redaction: &Redaction, index_dir: Option<PathBuf>) {
    let mut tapes =
        Tapes { open: HashMap::new(), dead: HashMap::new(), index: Indexer { dir: index_dir, index: None } };
    while let Ok(cmd) = rx.recv() {
        let mut syncs = Vec::new();
        let mut next = Some(cmd);
        while let Some(cmd) = next {
            match cmd {
                Cmd::Sync(done) => syncs.push(done),
                cmd => handle(&mut tapes, redaction, cmd),
            }
            next = rx.try_recv().ok();
        }
        // Caught up: what was written reaches the files before more is waited for.
        tapes.open.values_mut().for_each(Open::flush);
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

fn handle(tapes: &mut Tapes, redaction: &Redaction, cmd: Cmd) {
    match cmd {
        Cmd::Open { id, path, started, header, queue } => {
            let file = match File::options().create_new(true).write(true).open(&path) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot create a tape; its frames are counted as dropped");
                    metrics::counter!("shadowcat_tape_open_failures_total").increment(1);
                    tapes.dead.insert(id, queue);
                    return;
                }
            };
            let mut tape = Open {
                file: BufWriter::with_capacity(64 * 1024, file),
                path,
                started,
                digest: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
                frames: 0,
                placeholders: Placeholders::default(),
                queue,
                failed: false,
                dirty: false,
            };
            match serde_json::to_vec(&Line::Header(*header)) {
                Ok(line) => tape.write_line(&line),
                Err(e) => tracing::warn!(error = %e, "a tape header could not be written"),
            }
            metrics::counter!("shadowcat_tapes_opened_total").increment(1);
            tapes.open.insert(id, tape);
        }
        Cmd::Frame { id, job } => {
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
            let seq = tape.frames + 1;
            match frame_line(*job, seq, tape.started, redaction, &mut tape.placeholders) {
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

/// A frame's line: the message on one line (compacted when it spans several),
/// redacted when the configuration asks.
fn frame_line(
    job: FrameJob,
    seq: u64,
    started: Instant,
    redaction: &Redaction,
    placeholders: &mut Placeholders,
) -> Option<Vec<u8>> {
    let bytes = job.msg.bytes();
    let multiline = memchr::memchr2(b'\n', b'\r', bytes).is_some();
    let text = if redaction.is_empty() && !multiline {
        String::from_utf8(bytes.to_vec()).ok()?
    } else {
        let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        if !redaction.is_empty() {
            placeholders.apply(redaction, &mut value);
        }
        serde_json::to_string(&value).ok()?
    };
    let msg = RawValue::from_string(text).ok()?;
    let frame = Frame {
        seq,
        t_us: job.when.saturating_duration_since(started).as_micros() as u64,
        at: humantime::format_rfc3339_micros(job.at).to_string(),
        dir: job.dir,
        side: job.side,
        call: job.call,
        rev: job.rev.map(str::to_owned),
        upstream: job.upstream.map(|u| u.to_string()),
        carrier: job.carrier.to_owned(),
        status: job.status,
        headers: job.headers,
        msg,
    };
    serde_json::to_vec(&Line::Frame(frame)).ok()
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
    fn the_writer_writes_a_checked_tape() {
        let dir = std::env::temp_dir().join(format!("shadowcat-writer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("w.tape.jsonl");
        let _ = std::fs::remove_file(&path);
        let writer = Writer::start(Redaction::default(), None).expect("start");
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
        };
        writer.open(1, path.clone(), started, header, q.clone());
        // A message sent pretty-printed still takes one line.
        let msg = Message::parse(b"{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 1,\n  \"method\": \"ping\"\n}".to_vec())
            .expect("message");
        let job = FrameJob {
            dir: Dir::ClientToServer,
            side: Side::Client,
            call: 1,
            rev: Some("2025-11-25"),
            upstream: None,
            carrier: "request",
            status: None,
            headers: BTreeMap::new(),
            msg,
            at: SystemTime::now(),
            when: Instant::now(),
        };
        writer.enqueue(1, &q, job);
        writer.close(1, "shutdown");
        assert!(writer.sync(Duration::from_secs(5)));
        let tape = super::super::read(&path).expect("valid");
        assert_eq!(tape.frames.len(), 1);
        assert_eq!(tape.frames[0].msg.get(), r#"{"id":1,"jsonrpc":"2.0","method":"ping"}"#);
        assert!(tape.cut_short.is_none());
        assert!(!q.is_full());
    }
}
