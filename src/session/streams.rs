//! The SSE streams of one session, kept for resumption with `Last-Event-ID`.
//!
//! Each stream (a POST's reply stream or the GET stream) has an id unique in its
//! session; its events are numbered from 1 (0 is the priming event), and an event id is
//! `<stream>-<seq>`. The last `sse_buffer_events` events of each stream are kept, at
//! most `sse_buffer_bytes` of them in all (older events are dropped first; an event
//! larger than that bound is delivered live but not kept, and the events before it are
//! dropped too, so that what is kept is always the stream's latest events). When
//! a client disconnects, the stream's source stays here, and messages that arrive in
//! the meantime wait in it (bounded); a GET with `Last-Event-ID` replays the kept
//! events after that id, then goes on with the live source. Events that fell out of
//! the buffer cannot be replayed: the resumed stream starts at the oldest kept event
//! (the gap is logged and counted in `shadowcat_sse_events_lost_total`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::error::GatewayError;
use crate::reply::MessageStream;

/// Bytes of events kept per stream unless configured (`server.sse_buffer_bytes`).
pub const DEFAULT_BUFFER_BYTES: usize = 1024 * 1024;

/// One SSE stream of a session.
pub struct SseStream {
    id: u64,
    is_get: bool,
    capacity: usize,
    max_bytes: usize,
    state: Mutex<SseState>,
}

struct SseState {
    buffer: VecDeque<(u64, Bytes)>,
    /// Bytes of the events in `buffer`.
    bytes: usize,
    next_seq: u64,
    source: Option<MessageStream>,
    attached: bool,
    finished: bool,
}

impl SseStream {
    /// The stream's id within its session.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether this is a GET (server-to-client) stream.
    pub fn is_get(&self) -> bool {
        self.is_get
    }

    /// The event id of event `seq`.
    pub fn event_id(&self, seq: u64) -> String {
        format!("{}-{}", self.id, seq)
    }

    /// Numbers and keeps one encoded event; `encode` gets the event id.
    pub fn record(&self, encode: impl FnOnce(&str) -> Bytes) -> Bytes {
        let mut state = self.state.lock();
        let seq = state.next_seq;
        state.next_seq += 1;
        let bytes = encode(&self.event_id(seq));
        if bytes.len() > self.max_bytes {
            // Not kept, and neither is anything older: a resumption from before it
            // starts after it, and the gap is counted as lost.
            state.buffer.clear();
            state.bytes = 0;
            return bytes;
        }
        while state.buffer.len() >= self.capacity || state.bytes + bytes.len() > self.max_bytes {
            let Some((_, old)) = state.buffer.pop_front() else { break };
            state.bytes -= old.len();
        }
        state.bytes += bytes.len();
        state.buffer.push_back((seq, bytes.clone()));
        bytes
    }

    /// The client went away: keep the source for a later resumption.
    pub fn detach(&self, source: Option<MessageStream>) {
        let mut state = self.state.lock();
        state.attached = false;
        if source.is_none() {
            state.finished = true;
        }
        state.source = source;
    }

    /// The source ended: nothing more will come.
    pub fn finish(&self) {
        self.state.lock().finished = true;
    }

    fn is_live(&self) -> bool {
        let state = self.state.lock();
        state.attached || !state.finished
    }

    fn is_attached(&self) -> bool {
        self.state.lock().attached
    }
}

/// What a resumption gets: kept events to replay, then the live source (if any).
pub struct Resumed {
    /// The stream.
    pub stream: Arc<SseStream>,
    /// Encoded events after the client's last one.
    pub replay: Vec<Bytes>,
    /// The live source, if the stream has not finished.
    pub source: Option<MessageStream>,
    /// Events the client missed that are no longer kept.
    pub lost: u64,
    /// A GET stream taken up without `Last-Event-ID` (a new stream over the old
    /// source): the front primes it as a new one.
    pub reattached: bool,
}

/// The streams of one session.
pub struct StreamRegistry {
    next_id: AtomicU64,
    capacity: usize,
    max_bytes: usize,
    retained: usize,
    streams: Mutex<VecDeque<Arc<SseStream>>>,
}

impl StreamRegistry {
    /// A registry keeping `capacity` events per stream (at most
    /// [`DEFAULT_BUFFER_BYTES`] of them) and `retained` finished streams.
    pub fn new(capacity: usize, retained: usize) -> Self {
        StreamRegistry {
            next_id: AtomicU64::new(1),
            capacity,
            max_bytes: DEFAULT_BUFFER_BYTES,
            retained,
            streams: Mutex::new(VecDeque::new()),
        }
    }

    /// Keeps at most `max_bytes` of events per stream (see the module docs).
    pub fn with_buffer_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Registers a new attached stream.
    pub fn create(&self, is_get: bool) -> Arc<SseStream> {
        let stream = Arc::new(SseStream {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            is_get,
            capacity: self.capacity,
            max_bytes: self.max_bytes,
            state: Mutex::new(SseState {
                buffer: VecDeque::new(),
                bytes: 0,
                next_seq: 0,
                source: None,
                attached: true,
                finished: false,
            }),
        });
        let mut streams = self.streams.lock();
        streams.push_back(stream.clone());
        // Beyond the retention bound, forget the oldest streams no client is reading:
        // finished ones first, then detached ones (their undelivered messages go too).
        while streams.len() > self.retained {
            let pos =
                streams.iter().position(|s| !s.is_live()).or_else(|| streams.iter().position(|s| !s.is_attached()));
            let Some(pos) = pos else { break };
            if let Some(old) = streams.remove(pos) {
                if old.is_live() {
                    tracing::debug!(stream = old.id, "evicted a detached stream with undelivered messages");
                }
            }
        }
        stream
    }

    /// The current GET stream: `Err(Conflict)` if a client is attached to it;
    /// otherwise its live source (taken), if any.
    pub fn take_detached_get(&self) -> Result<Option<MessageStream>, GatewayError> {
        let mut streams = self.streams.lock();
        let Some(pos) = streams.iter().rposition(|s| s.is_get) else {
            return Ok(None);
        };
        if streams[pos].is_attached() {
            return Err(GatewayError::Conflict("this session already has an open GET stream".into()));
        }
        let old = streams.remove(pos);
        Ok(old.and_then(|s| s.state.lock().source.take()))
    }

    /// Resumes the stream named by a `Last-Event-ID`.
    pub fn resume(&self, last_event_id: &str) -> Result<Resumed, GatewayError> {
        let bad =
            || GatewayError::InvalidRequest(format!("Last-Event-ID {last_event_id:?} names no stream of this session"));
        let (stream_id, seq) = last_event_id.trim().split_once('-').ok_or_else(bad)?;
        let stream_id: u64 = stream_id.parse().map_err(|_| bad())?;
        let seq: u64 = seq.parse().map_err(|_| bad())?;
        let stream = self.streams.lock().iter().find(|s| s.id == stream_id).cloned().ok_or_else(bad)?;
        let mut state = stream.state.lock();
        if state.attached {
            return Err(GatewayError::Conflict(format!("stream {stream_id} is already being read by a client")));
        }
        let replay: Vec<Bytes> = state.buffer.iter().filter(|(s, _)| *s > seq).map(|(_, b)| b.clone()).collect();
        let oldest_kept = state.buffer.front().map(|(s, _)| *s).unwrap_or(state.next_seq);
        let lost = oldest_kept.saturating_sub(seq + 1);
        state.attached = true;
        let source = state.source.take();
        drop(state);
        Ok(Resumed { stream, replay, source, lost, reattached: false })
    }

    /// Takes up the session's GET stream that no client is reading, as a new stream
    /// over its live source; `Ok(None)` if there is none; `Err(Conflict)` if a client
    /// reads it.
    pub fn reattach_get(&self) -> Result<Option<Resumed>, GatewayError> {
        let Some(source) = self.take_detached_get()? else { return Ok(None) };
        let stream = self.create(true);
        Ok(Some(Resumed { stream, replay: Vec::new(), source: Some(source), lost: 0, reattached: true }))
    }

    /// Whether a client is reading any stream of this session.
    pub fn any_attached(&self) -> bool {
        self.streams.lock().iter().any(|s| s.is_attached())
    }

    /// Drops every kept source (session end, shutdown): live streams end.
    pub fn close_all(&self) {
        for s in self.streams.lock().iter() {
            s.state.lock().source = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_after_last_event_and_counts_losses() {
        let reg = StreamRegistry::new(3, 4);
        let s = reg.create(false);
        for i in 0..5 {
            s.record(|id| Bytes::from(format!("{id}:{i}")));
        }
        assert!(matches!(reg.resume("1-2"), Err(GatewayError::Conflict(_))));
        s.detach(None);
        let r = reg.resume("1-3").map_err(|e| e.to_string()).expect("resume");
        assert_eq!(r.replay, vec![Bytes::from("1-4:4")]);
        assert_eq!(r.lost, 0);
        r.stream.detach(None);
        let r = reg.resume("1-0").map_err(|e| e.to_string()).expect("resume");
        assert_eq!(r.replay.len(), 3);
        assert_eq!(r.lost, 1, "event 1 fell out of the buffer");
        assert!(matches!(reg.resume("9-1"), Err(GatewayError::InvalidRequest(_))));
        assert!(matches!(reg.resume("garbage"), Err(GatewayError::InvalidRequest(_))));
    }

    #[test]
    fn the_buffer_is_bounded_in_bytes() {
        let reg = StreamRegistry::new(100, 4).with_buffer_bytes(10);
        let s = reg.create(false);
        for _ in 0..5 {
            s.record(|_| Bytes::from_static(b"abcd"));
        }
        s.detach(None);
        let r = reg.resume("1-0").map_err(|e| e.to_string()).expect("resume");
        assert_eq!(r.replay.len(), 2, "two 4-byte events fit in 10 bytes");
        assert_eq!(r.lost, 2, "events 1 and 2 fell out");
        r.stream.detach(None);

        // An event larger than the bound is delivered but not kept, nor is anything older.
        let s = reg.create(false);
        s.record(|_| Bytes::from_static(b"abcd"));
        let big = s.record(|_| Bytes::from_static(b"0123456789ABCDEF"));
        assert_eq!(big.len(), 16, "delivered whole");
        s.detach(None);
        let r = reg.resume("2-0").map_err(|e| e.to_string()).expect("resume");
        assert!(r.replay.is_empty());
        assert_eq!(r.lost, 1, "the big event is counted as lost");
        r.stream.detach(None);
        let after = s.record(|_| Bytes::from_static(b"xyz"));
        s.detach(None);
        let r = reg.resume("2-1").map_err(|e| e.to_string()).expect("resume");
        assert_eq!(r.replay, vec![after], "kept events start after the big one");
        assert_eq!(s.state.lock().bytes, 3);
    }

    #[test]
    fn detached_streams_are_bounded() {
        let reg = StreamRegistry::new(3, 2);
        for _ in 0..5 {
            let s = reg.create(false);
            let source: MessageStream = Box::pin(futures_util::stream::pending());
            s.detach(Some(source));
        }
        assert_eq!(reg.streams.lock().len(), 2);
        assert!(reg.resume("1-0").is_err(), "the oldest was evicted");
        assert!(reg.resume("5-0").is_ok());
    }

    #[test]
    fn one_attached_get_stream() {
        let reg = StreamRegistry::new(3, 4);
        assert!(reg.take_detached_get().map_err(|e| e.to_string()).expect("none").is_none());
        let g = reg.create(true);
        assert!(matches!(reg.take_detached_get(), Err(GatewayError::Conflict(_))));
        g.detach(None);
        assert!(reg.take_detached_get().is_ok());
    }
}
