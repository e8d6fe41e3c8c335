//! Reply streams from an HTTP upstream: a POST's SSE stream, relayed event by event
//! until the final response, and the server-to-client (GET) stream.
//!
//! When the upstream closes a stream before it is done (2025-11-25 servers may, after
//! any event with an id, and have the client poll), the stream is resumed with a GET
//! carrying `Last-Event-ID` after the `retry` the server advised (else a backoff that
//! grows while reconnections bring nothing). A reconnection that fails
//! [`MAX_FAILED_RECONNECTS`] times in a row ends the stream with an error. Messages
//! from the resumed connection continue the same reply stream. A request's stream has
//! `request_timeout`, extended by progress notifications up to `max_request_timeout`;
//! on expiry the client gets a JSON-RPC error and the upstream `notifications/cancelled`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use http::{HeaderMap, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::watch;
use tokio::time::Instant;

use super::shared::{is_sse, read_body, InFlight, SessionShared};
use super::sse::{SseItem, SseParser};
use super::Limits;
use crate::error::GatewayError;
use crate::protocol::{parse_body, Message, MessageKind};
use crate::reply::MessageStream;

/// Failed reconnections in a row before a stream is given up.
pub(super) const MAX_FAILED_RECONNECTS: u32 = 5;
/// The longest `retry` honoured.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// First reconnection delay when the server advised none (doubles each time).
const BACKOFF_START: Duration = Duration::from_millis(250);
/// Bytes read after the final response so the connection can go back to the pool.
const DRAIN_BYTES: usize = 64 * 1024;
/// Time given to the upstream to end a stream after its final response.
const DRAIN_TIME: Duration = Duration::from_secs(1);
/// Bytes of a refused resumption's body read to tell why.
const ERROR_BODY_LIMIT: usize = 16 * 1024;

/// The timeout of one request: `request_timeout` from the start or the last progress,
/// never past `max_request_timeout` from the start.
pub(super) struct Deadline {
    started: Instant,
    idle: Duration,
    hard: Instant,
    current: Instant,
}

impl Deadline {
    pub fn new(limits: &Limits) -> Self {
        let now = Instant::now();
        let hard = now + limits.max_request_timeout;
        Deadline { started: now, idle: limits.request_timeout, hard, current: (now + limits.request_timeout).min(hard) }
    }

    pub fn extend(&mut self) {
        self.current = (Instant::now() + self.idle).min(self.hard);
    }

    pub fn current(&self) -> Instant {
        self.current
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// What one read step produced.
enum Fill {
    /// Progress: bytes read, or a reconnection made or attempted.
    More,
    /// The stream cannot go on.
    Ended(GatewayError),
    /// An event over `max_message_bytes` was dropped.
    TooLarge(usize),
    /// The upstream answers GET with 405: it offers no stream to resume.
    NoGetStream,
}

/// Reads SSE from the upstream, reconnecting when a stream is cut.
struct Reader {
    shared: Arc<SessionShared>,
    /// The client's headers of the request, sent again on reconnection.
    headers: HeaderMap,
    body: Option<Incoming>,
    parser: SseParser,
    queue: VecDeque<Message>,
    /// Reconnections in a row that failed.
    failures: u32,
    /// Reconnections in a row that brought no message (they slow the next ones down).
    quiet: u32,
    /// A GET stream may start afresh when there is no event id to resume from.
    is_get: bool,
    /// The final response has been read.
    answered: bool,
}

impl Reader {
    fn new(shared: Arc<SessionShared>, headers: HeaderMap, resp: Response<Incoming>, is_get: bool) -> Self {
        let parser = SseParser::new(shared.target.limits.max_message_bytes);
        let body = Some(resp.into_body());
        Reader { shared, headers, body, parser, queue: VecDeque::new(), failures: 0, quiet: 0, is_get, answered: false }
    }

    async fn fill(&mut self) -> Fill {
        let Some(body) = self.body.as_mut() else {
            return self.reconnect().await;
        };
        match body.frame().await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    self.parser.feed(&data);
                    self.collect()
                }
                Err(_) => Fill::More, // trailers
            },
            Some(Err(e)) => {
                tracing::debug!(upstream = %self.shared.target.name, session = %self.shared.tag, error = %e,
                    "upstream SSE stream broke");
                self.body = None;
                Fill::More
            }
            None => {
                tracing::debug!(upstream = %self.shared.target.name, session = %self.shared.tag, "upstream closed an SSE stream");
                self.body = None;
                Fill::More
            }
        }
    }

    /// Turns parsed events into queued messages (an oversized event is reported
    /// after the others are queued).
    fn collect(&mut self) -> Fill {
        let mut too_large = None;
        while let Some(item) = self.parser.next_item() {
            let event = match item {
                SseItem::TooLarge { size } => {
                    too_large.get_or_insert(size);
                    continue;
                }
                SseItem::Event(event) => event,
            };
            if event.event.as_deref().is_some_and(|t| t != "message") {
                tracing::debug!(upstream = %self.shared.target.name, event = ?event.event, "skipping a non-message SSE event");
                continue;
            }
            if event.data.iter().all(u8::is_ascii_whitespace) {
                continue; // a priming event: only its id matters
            }
            match parse_body(&event.data) {
                Ok((messages, _)) => {
                    self.quiet = 0;
                    self.queue.extend(messages);
                }
                Err(e) => {
                    let preview: String = String::from_utf8_lossy(&event.data).chars().take(200).collect();
                    tracing::warn!(upstream = %self.shared.target.name, session = %self.shared.tag, error = %e,
                        data = %preview, "skipping an SSE event that is not a JSON-RPC message");
                }
            }
        }
        too_large.map_or(Fill::More, Fill::TooLarge)
    }

    /// Reopens a cut stream: GET with `Last-Event-ID` after the advised delay.
    async fn reconnect(&mut self) -> Fill {
        if !self.shared.is_alive() {
            return Fill::Ended(GatewayError::UnknownSession);
        }
        let last = self.parser.last_event_id().map(str::to_owned);
        if last.is_none() && !self.is_get {
            return Fill::Ended(
                self.shared
                    .target
                    .unavailable("it closed the SSE stream before the response, with no event id to resume from"),
            );
        }
        if self.failures >= MAX_FAILED_RECONNECTS {
            return Fill::Ended(self.shared.target.unavailable(format!(
                "it closed the SSE stream and {MAX_FAILED_RECONNECTS} reconnections in a row failed"
            )));
        }
        let backoff = BACKOFF_START.saturating_mul(2u32.saturating_pow(self.failures.saturating_add(self.quiet)));
        let delay = self.parser.retry().unwrap_or(backoff).min(MAX_RETRY_DELAY);
        tokio::time::sleep(delay).await;
        tracing::debug!(upstream = %self.shared.target.name, session = %self.shared.tag, last_event_id = ?last,
            failures = self.failures, "reconnecting an SSE stream");
        self.failures += 1;
        let bound = self.shared.target.limits.request_timeout;
        let resp = match tokio::time::timeout(bound, self.shared.get(&self.headers, last.as_deref())).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(_)) => return Fill::More, // logged by exchange; tried again
            Err(_) => {
                tracing::warn!(upstream = %self.shared.target.name, session = %self.shared.tag, "reconnection timed out");
                return Fill::More;
            }
        };
        let status = resp.status();
        if status.is_success() && is_sse(&resp) {
            self.failures = 0;
            self.quiet = self.quiet.saturating_add(1);
            self.body = Some(resp.into_body());
            self.parser.new_connection();
            return Fill::More;
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            return Fill::NoGetStream;
        }
        let body = tokio::time::timeout(bound, read_body(resp, ERROR_BODY_LIMIT))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        if self.shared.session_gone(status, &body, self.shared.has_upstream_id()) {
            self.shared.mark_gone(status);
            return Fill::Ended(GatewayError::UnknownSession);
        }
        tracing::warn!(upstream = %self.shared.target.name, session = %self.shared.tag, %status, "reconnection refused");
        Fill::More
    }

    /// The request is answered: what is left of the body (usually just its end) is
    /// read, so that the connection goes back to the pool instead of being closed.
    /// What is already buffered is read at once (usually the end, sent with the last
    /// event); the rest in the background, briefly. The client is not kept waiting.
    fn release(&mut self) {
        let Some(mut body) = self.body.take() else { return };
        let mut read = 0usize;
        loop {
            match body.frame().now_or_never() {
                Some(Some(Ok(frame))) => {
                    read += frame.data_ref().map_or(0, |d| d.len());
                    if read > DRAIN_BYTES {
                        return;
                    }
                }
                Some(None | Some(Err(_))) => return,
                None => break,
            }
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(tokio::time::timeout(DRAIN_TIME, async move {
            while let Some(Ok(frame)) = body.frame().await {
                read += frame.data_ref().map_or(0, |d| d.len());
                if read > DRAIN_BYTES {
                    break;
                }
            }
        }));
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if self.answered {
            self.release();
        }
        // Otherwise the body is dropped mid-stream: the connection closes and the
        // upstream sees the client go away.
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// The final response has passed.
    Finished,
    Done,
}

enum Step {
    Filled(Fill),
    SessionEnded,
    /// The client cancelled the request: the stream ends without an answer.
    Cancelled,
    TimedOut,
}

/// The messages the upstream sends for one request, ending with its response.
pub(super) struct ReplyStream {
    reader: Reader,
    id: Box<str>,
    is_init: bool,
    deadline: Deadline,
    closed: watch::Receiver<bool>,
    phase: Phase,
    in_flight: InFlight,
}

impl ReplyStream {
    pub fn new(
        shared: Arc<SessionShared>,
        id: Box<str>,
        is_init: bool,
        headers: HeaderMap,
        resp: Response<Incoming>,
        deadline: Deadline,
        in_flight: InFlight,
    ) -> Self {
        let closed = shared.closed();
        ReplyStream {
            reader: Reader::new(shared, headers, resp, false),
            id,
            is_init,
            deadline,
            closed,
            phase: Phase::Running,
            in_flight,
        }
    }

    pub fn into_stream(self) -> MessageStream {
        Box::pin(futures_util::stream::unfold(self, |mut s| async move {
            let m = s.next().await?;
            Some((m, s))
        }))
    }

    fn fail(&mut self, e: GatewayError) -> Message {
        self.phase = Phase::Done;
        e.to_message(Some(&self.id))
    }

    async fn next(&mut self) -> Option<Message> {
        loop {
            if self.phase == Phase::Running {
                if let Some(m) = self.reader.queue.pop_front() {
                    return Some(self.pass(m));
                }
            }
            match self.phase {
                Phase::Running => {}
                Phase::Finished => {
                    self.phase = Phase::Done;
                    self.reader.release();
                    return None;
                }
                Phase::Done => return None,
            }
            let until = self.deadline.current();
            let step = tokio::select! {
                biased;
                _ = self.closed.wait_for(|c| *c) => Step::SessionEnded,
                _ = self.in_flight.cancelled.wait_for(|c| *c) => Step::Cancelled,
                filled = tokio::time::timeout_at(until, self.reader.fill()) => filled.map_or(Step::TimedOut, Step::Filled),
            };
            let shared = self.reader.shared.clone();
            match step {
                Step::Filled(Fill::More) => {}
                Step::Filled(Fill::Ended(e)) => return Some(self.fail(e)),
                Step::Filled(Fill::NoGetStream) => {
                    let e = shared.target.unavailable(
                        "it closed the SSE stream before the response and offers no GET to resume it (405)",
                    );
                    return Some(self.fail(e));
                }
                Step::Filled(Fill::TooLarge(size)) => {
                    let max = shared.target.limits.max_message_bytes;
                    tracing::warn!(upstream = %shared.target.name, session = %shared.tag, id = %self.id, size, max,
                        "upstream SSE event exceeds max_message_bytes; request failed");
                    shared.cancel(
                        &self.id,
                        &self.reader.headers,
                        "the upstream's message exceeded the gateway's size limit",
                    );
                    let e = shared
                        .target
                        .unavailable(format!("it sent a message of {size} bytes, more than max_message_bytes ({max})"));
                    return Some(self.fail(e));
                }
                Step::SessionEnded => return Some(self.fail(GatewayError::UnknownSession)),
                Step::Cancelled => {
                    self.phase = Phase::Done;
                    return None;
                }
                Step::TimedOut => {
                    shared.cancel(&self.id, &self.reader.headers, "the gateway's request timeout expired");
                    let after = self.deadline.elapsed();
                    return Some(
                        self.fail(GatewayError::UpstreamTimeout { upstream: shared.target.name.to_string(), after }),
                    );
                }
            }
        }
    }

    fn pass(&mut self, m: Message) -> Message {
        if m.kind() == MessageKind::Response && m.id_key() == Some(&*self.id) {
            self.phase = Phase::Finished;
            self.reader.answered = true;
            if self.is_init {
                self.reader.shared.learn_version(&m);
            }
        } else if m.method() == Some("notifications/progress") {
            self.deadline.extend();
        }
        m
    }
}

/// The server-to-client stream (GET): relayed until the session ends; reconnected
/// (resuming after the last event id) when the upstream closes it.
pub(super) struct ListenStream {
    reader: Reader,
    closed: watch::Receiver<bool>,
    done: bool,
}

impl ListenStream {
    pub fn new(shared: Arc<SessionShared>, headers: HeaderMap, resp: Response<Incoming>) -> Self {
        let closed = shared.closed();
        ListenStream { reader: Reader::new(shared, headers, resp, true), closed, done: false }
    }

    pub fn into_stream(self) -> MessageStream {
        Box::pin(futures_util::stream::unfold(self, |mut s| async move {
            let m = s.next().await?;
            Some((m, s))
        }))
    }

    async fn next(&mut self) -> Option<Message> {
        loop {
            if self.done {
                return None;
            }
            if let Some(m) = self.reader.queue.pop_front() {
                return Some(m);
            }
            let filled = tokio::select! {
                biased;
                _ = self.closed.wait_for(|c| *c) => None,
                filled = self.reader.fill() => Some(filled),
            };
            let shared = &self.reader.shared;
            match filled {
                None => self.done = true,
                Some(Fill::More) => {}
                Some(Fill::TooLarge(size)) => {
                    tracing::warn!(upstream = %shared.target.name, session = %shared.tag, size,
                        max = shared.target.limits.max_message_bytes,
                        "dropped a server-to-client message over max_message_bytes");
                }
                Some(Fill::NoGetStream) => {
                    // The upstream stopped offering a GET stream: stay open, idle.
                    let _ = self.closed.wait_for(|c| *c).await;
                    self.done = true;
                }
                Some(Fill::Ended(e)) => {
                    tracing::info!(upstream = %shared.target.name, session = %shared.tag, error = %e,
                        "the upstream's server-to-client stream ended");
                    self.done = true;
                }
            }
        }
    }
}

/// A stream that yields nothing and ends when the session does (the GET stream of
/// an upstream that offers none).
pub(super) fn idle_until_closed(closed: watch::Receiver<bool>) -> MessageStream {
    Box::pin(futures_util::stream::unfold(Some(closed), |state| async move {
        let mut closed = state?;
        let _ = closed.wait_for(|c| *c).await;
        None::<(Message, Option<watch::Receiver<bool>>)>
    }))
}
