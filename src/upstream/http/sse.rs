//! An incremental, bounded parser for `text/event-stream` (the WHATWG event stream
//! format), fed with body chunks as they arrive from the upstream.
//!
//! Lines end with CRLF, LF or CR, and a chunk may end anywhere, even between the CR
//! and the LF of one line break. Comments (`:`) and unknown fields are skipped; `id`
//! and `retry` are remembered across events (and across reconnections, for
//! `Last-Event-ID`). An event whose data would exceed the bound is not kept: its bytes
//! are counted and dropped, and it comes out as [`SseItem::TooLarge`]. Memory per
//! stream is bounded by the data bound plus one chunk.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

/// Bytes a line may take beyond the data bound (the field name, colon and space).
const LINE_SLACK: usize = 64;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event` field (`None` means the default type, `message`).
    pub event: Option<String>,
    /// The data lines joined with `\n`.
    pub data: Bytes,
}

/// What the parser yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// A complete event.
    Event(SseEvent),
    /// An event whose data exceeded the bound; it was dropped.
    TooLarge {
        /// The bytes of data it had when it ended.
        size: usize,
    },
}

/// The parser state of one event stream.
#[derive(Debug)]
pub struct SseParser {
    max_data: usize,
    /// The current line, up to the bound.
    line: BytesMut,
    /// The current line's full length (may exceed what `line` keeps).
    line_len: usize,
    /// The previous chunk ended with CR: a leading LF belongs to that line break.
    after_cr: bool,
    /// No line seen yet on this connection (a leading BOM is skipped).
    first_line: bool,
    data: BytesMut,
    has_data: bool,
    event: Option<String>,
    /// Set when the current event's data went over the bound: bytes seen so far.
    oversized: Option<usize>,
    last_event_id: Option<String>,
    retry: Option<Duration>,
    out: VecDeque<SseItem>,
}

impl SseParser {
    /// A parser that keeps events of at most `max_data` bytes of data.
    pub fn new(max_data: usize) -> Self {
        SseParser {
            max_data,
            line: BytesMut::new(),
            line_len: 0,
            after_cr: false,
            first_line: true,
            data: BytesMut::new(),
            has_data: false,
            event: None,
            oversized: None,
            last_event_id: None,
            retry: None,
            out: VecDeque::new(),
        }
    }

    /// The last event id seen (kept across events and reconnections).
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_deref()
    }

    /// The reconnection delay the server advised, if any.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    /// A new connection continues the stream: a half-read event is dropped (as at the
    /// end of a stream), while the last event id and `retry` stay.
    pub fn new_connection(&mut self) {
        self.line.clear();
        self.line_len = 0;
        self.after_cr = false;
        self.first_line = true;
        self.reset_event();
    }

    /// The next parsed item, if any is complete.
    pub fn next_item(&mut self) -> Option<SseItem> {
        self.out.pop_front()
    }

    /// Feeds the next chunk of the body.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if chunk[0] == b'\n' {
                    chunk = &chunk[1..];
                    continue;
                }
            }
            match chunk.iter().position(|b| *b == b'\n' || *b == b'\r') {
                Some(i) => {
                    self.append(&chunk[..i]);
                    self.end_line();
                    if chunk[i] == b'\r' {
                        match chunk.get(i + 1) {
                            Some(b'\n') => chunk = &chunk[i + 2..],
                            Some(_) => chunk = &chunk[i + 1..],
                            None => {
                                self.after_cr = true;
                                chunk = &[];
                            }
                        }
                    } else {
                        chunk = &chunk[i + 1..];
                    }
                }
                None => {
                    self.append(chunk);
                    chunk = &[];
                }
            }
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        let room = (self.max_data + LINE_SLACK).saturating_sub(self.line.len());
        self.line.extend_from_slice(&bytes[..room.min(bytes.len())]);
        self.line_len += bytes.len();
    }

    fn end_line(&mut self) {
        let mut line = std::mem::take(&mut self.line).freeze();
        let mut full_len = std::mem::take(&mut self.line_len);
        if std::mem::take(&mut self.first_line) && line.starts_with(b"\xEF\xBB\xBF") {
            line = line.slice(3..);
            full_len -= 3;
        }
        if line.is_empty() && full_len == 0 {
            self.dispatch();
            return;
        }
        if line.first() == Some(&b':') {
            return;
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(i) => {
                let value = line.slice(i + 1..);
                let value = if value.first() == Some(&b' ') { value.slice(1..) } else { value };
                (line.slice(..i), value)
            }
            None => (line.clone(), Bytes::new()),
        };
        let truncated = full_len > line.len();
        match &field[..] {
            b"data" => {
                let value_len = value.len() + (full_len - line.len());
                self.has_data = true;
                if let Some(size) = self.oversized.as_mut() {
                    *size += value_len + 1;
                } else if truncated || self.data.len() + value_len > self.max_data {
                    self.oversized = Some(self.data.len() + value_len);
                    self.data = BytesMut::new();
                } else {
                    self.data.extend_from_slice(&value);
                    self.data.extend_from_slice(b"\n");
                }
            }
            _ if truncated => {} // an over-long line of another field: ignored
            b"event" => self.event = Some(String::from_utf8_lossy(&value).into_owned()),
            b"id" if !value.contains(&0) => {
                self.last_event_id = (!value.is_empty()).then(|| String::from_utf8_lossy(&value).into_owned());
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                if let Ok(ms) = std::str::from_utf8(&value).unwrap_or("").parse::<u64>() {
                    self.retry = Some(Duration::from_millis(ms));
                }
            }
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        if let Some(size) = self.oversized.take() {
            self.out.push_back(SseItem::TooLarge { size });
            self.reset_event();
            return;
        }
        if !self.has_data {
            self.reset_event();
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.last() == Some(&b'\n') {
            data.truncate(data.len() - 1);
        }
        let event = self.event.take();
        self.has_data = false;
        self.out.push_back(SseItem::Event(SseEvent { event, data: data.freeze() }));
    }

    fn reset_event(&mut self) {
        self.data = BytesMut::new();
        self.has_data = false;
        self.event = None;
        self.oversized = None;
    }
}

/// In a whole SSE body, the data of the first event that is a JSON-RPC response with
/// id `id` (its JSON text).
pub fn find_response(body: &[u8], id: &str) -> Option<Bytes> {
    let mut parser = SseParser::new(body.len().max(1));
    parser.feed(body);
    parser.feed(b"\n\n");
    while let Some(item) = parser.next_item() {
        if let SseItem::Event(e) = item {
            if let Ok(m) = crate::protocol::Message::parse(e.data.clone()) {
                if m.kind() == crate::protocol::MessageKind::Response && m.id_key() == Some(id) {
                    return Some(e.data);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8], max: usize) -> (Vec<SseItem>, SseParser) {
        let mut p = SseParser::new(max);
        p.feed(input);
        let mut out = Vec::new();
        while let Some(item) = p.next_item() {
            out.push(item);
        }
        (out, p)
    }

    fn event(data: &str) -> SseItem {
        SseItem::Event(SseEvent { event: None, data: Bytes::copy_from_slice(data.as_bytes()) })
    }

    #[test]
    fn joins_multi_line_data_and_skips_comments() {
        let input = b": a comment\ndata: {\"a\":\ndata:1}\n\n:keep-alive\n\ndata: second\n\n";
        let (items, _) = parse_all(input, 1024);
        assert_eq!(items, vec![event("{\"a\":\n1}"), event("second")]);
    }

    #[test]
    fn accepts_crlf_cr_and_lf_line_ends() {
        let (items, _) = parse_all(b"data: a\r\n\r\ndata: b\r\rdata: c\n\n", 1024);
        assert_eq!(items, vec![event("a"), event("b"), event("c")]);
    }

    #[test]
    fn remembers_id_and_retry_and_event_type() {
        let input = b"id: 1-0\nretry: 1500\ndata: \n\nid: 42\nevent: message\ndata: x\n\nretry: soon\n\n";
        let (items, p) = parse_all(input, 1024);
        assert_eq!(items[0], event(""));
        assert_eq!(
            items[1],
            SseItem::Event(SseEvent { event: Some("message".into()), data: Bytes::from_static(b"x") })
        );
        assert_eq!(items.len(), 2);
        assert_eq!(p.last_event_id(), Some("42"));
        assert_eq!(p.retry(), Some(Duration::from_millis(1500)), "an invalid retry is ignored");
    }

    #[test]
    fn ignores_ids_with_nul_and_events_without_data() {
        let (items, p) = parse_all(b"id: a\0b\nevent: ping\n\nid\ndata\n\n", 1024);
        assert_eq!(items, vec![event("")]);
        assert_eq!(p.last_event_id(), None, "a bare `id` line resets the id");
    }

    #[test]
    fn skips_a_leading_bom_and_unknown_fields() {
        let (items, _) = parse_all(b"\xEF\xBB\xBFdata: x\nfoo: bar\n\n", 1024);
        assert_eq!(items, vec![event("x")]);
    }

    #[test]
    fn chunk_boundaries_anywhere_give_the_same_events() {
        let input: &[u8] =
            b"\xEF\xBB\xBF: hi\r\nid: 7\r\nretry: 20\r\ndata: {\"jsonrpc\":\"2.0\",\r\ndata: \"id\":1}\r\n\r\ndata: two\r\rdata: three\n\n";
        let (whole, whole_parser) = parse_all(input, 1024);
        assert_eq!(whole.len(), 3);
        for split in 0..=input.len() {
            let mut p = SseParser::new(1024);
            p.feed(&input[..split]);
            p.feed(&input[split..]);
            let items: Vec<SseItem> = std::iter::from_fn(|| p.next_item()).collect();
            assert_eq!(items, whole, "split at {split}");
            assert_eq!(p.last_event_id(), whole_parser.last_event_id());
        }
        let mut p = SseParser::new(1024);
        for b in input {
            p.feed(std::slice::from_ref(b));
        }
        let items: Vec<SseItem> = std::iter::from_fn(|| p.next_item()).collect();
        assert_eq!(items, whole, "byte by byte");
        assert_eq!(p.retry(), Some(Duration::from_millis(20)));
    }

    #[test]
    fn bounds_events_and_recovers_after_an_oversized_one() {
        let big = "x".repeat(100);
        let input = format!("data: {big}\ndata: {big}\n\ndata: ok\n\n");
        let (items, _) = parse_all(input.as_bytes(), 150);
        assert_eq!(items, vec![SseItem::TooLarge { size: 201 }, event("ok")]);
        // One over-long line, fed in small chunks, is never kept whole.
        let mut p = SseParser::new(50);
        p.feed(b"data: ");
        for _ in 0..1000 {
            p.feed(b"0123456789");
            assert!(p.line.len() <= 50 + LINE_SLACK);
        }
        p.feed(b"\n\ndata: after\n\n");
        assert_eq!(p.next_item(), Some(SseItem::TooLarge { size: 10_000 }));
        assert_eq!(p.next_item(), Some(event("after")));
    }

    #[test]
    fn a_new_connection_drops_the_half_event_but_keeps_the_id() {
        let mut p = SseParser::new(1024);
        p.feed(b"id: 5\ndata: done\n\ndata: half");
        assert_eq!(p.next_item(), Some(event("done")));
        p.new_connection();
        p.feed(b"data: fresh\n\n");
        assert_eq!(p.next_item(), Some(event("fresh")));
        assert_eq!(p.last_event_id(), Some("5"));
    }

    #[test]
    fn exactly_the_bound_is_kept() {
        let data = "y".repeat(64);
        let (items, _) = parse_all(format!("data: {data}\n\n").as_bytes(), 64);
        assert_eq!(items, vec![event(&data)]);
        let (items, _) = parse_all(format!("data: {data}y\n\n").as_bytes(), 64);
        assert_eq!(items, vec![SseItem::TooLarge { size: 65 }]);
    }
}
