//! The lines of a tape (see `docs/tape-format.md`): a header, frames, a trailer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

/// The `format` of every tape's header.
pub const FORMAT: &str = "shadowcat-tape";

/// The newest format version this Shadowcat writes and reads.
/// Version 2 added `change` lines (what an `intercept` rule changed) and the
/// trailer's `changes`; a version 1 tape reads as one without changes.
pub const VERSION: u32 = 2;

/// The file name ending of a tape.
pub const EXTENSION: &str = ".tape.jsonl";

/// One line of a tape.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    /// The first line.
    Header(Box<Header>),
    /// One message.
    Frame(Frame),
    /// What a rule changed (version 2).
    Change(Change),
    /// The last line of a tape closed in order.
    Trailer(Trailer),
}

/// What a tape is of.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// The format version ([`VERSION`] when written by this build).
    pub version: u32,
    /// The tape's id (its file name without [`EXTENSION`]).
    pub tape: String,
    /// When recording started (RFC 3339, UTC).
    pub started_at: String,
    /// The Shadowcat version that wrote it.
    pub shadowcat: String,
    /// `gateway` or `forward`.
    pub mode: String,
    /// Whose traffic: `client` (a client's session or stateless conversation) or
    /// `upstream` (a session the gateway itself keeps with an upstream, pooled).
    pub side: String,
    /// The endpoint path (client tapes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The upstream's name in the config, when one upstream serves the whole tape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The session's tag (8 hex digits of a digest of its id; never the id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The client's `clientInfo` and `capabilities`, when known as the tape opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<Value>,
    /// The server's `serverInfo` and `capabilities`, when known as the tape opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<Value>,
    /// The protocol revisions in force, as known when the tape opens.
    #[serde(default)]
    pub revisions: Vec<String>,
    /// For a tape continued in another file (`record.max_tape_bytes`): which part
    /// this is (2, 3, ...; absent for the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<u32>,
    /// For a part after the first: the id of the first part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continues: Option<String>,
}

/// Which way a frame's message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Dir {
    /// Client to server (on the upstream side: gateway to upstream).
    #[serde(rename = "c2s")]
    ClientToServer,
    /// Server to client (on the upstream side: upstream to gateway).
    #[serde(rename = "s2c")]
    ServerToClient,
}

/// Which wire a frame was on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Between the client and the gateway.
    Client,
    /// Between the gateway and an upstream, where it differs from the client's.
    Upstream,
}

/// One message, with where and when it was.
#[derive(Debug, Serialize, Deserialize)]
pub struct Frame {
    /// 1, 2, 3, ... in the order the frames were recorded.
    pub seq: u64,
    /// Microseconds since the tape started (monotonic clock).
    pub t_us: u64,
    /// Wall clock (RFC 3339, UTC, microseconds).
    pub at: String,
    /// Which way it went.
    pub dir: Dir,
    /// Which wire.
    pub side: Side,
    /// The logical call (all rounds of a multi-round-trip request share it); 0 when
    /// the upstream wire does not say.
    pub call: u64,
    /// The protocol revision in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    /// The endpoint path the call came in on (client side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The upstream serving it, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// What carried it: `request`, `reply`, `post_stream`, `get_stream` (client side),
    /// `wire` (upstream side).
    pub carrier: String,
    /// The HTTP status of the response that carried it, when there was one to say
    /// (a JSON reply; an error the gateway answered with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The request headers that matter (client requests only; never credentials,
    /// cookies or session ids).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The JSON-RPC message, as it crossed the wire (after redaction).
    pub msg: Box<RawValue>,
}

/// What an `intercept` rule made of a message: the message as it came, and the one
/// that went on, or the answer sent back in its place (neither: it went no further,
/// or the call failed as the rule said).
#[derive(Debug, Serialize, Deserialize)]
pub struct Change {
    /// Microseconds since the tape started.
    pub t_us: u64,
    /// Wall clock (RFC 3339, UTC, microseconds).
    pub at: String,
    /// Which way the message was going.
    pub dir: Dir,
    /// Which wire.
    pub side: Side,
    /// The logical call.
    pub call: u64,
    /// The protocol revision in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    /// The rule's id.
    pub rule: String,
    /// Its action: `modify`, `mock`, `block`, `drop`, `fault`, `pause`.
    pub action: String,
    /// For a fault on the client's wire: `malformed`, `reset` or `dribble` (then
    /// `after` is the message the fault was applied to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire: Option<String>,
    /// The message as the rule got it (after redaction, as every message on a tape).
    pub before: Box<RawValue>,
    /// The message that went on in its place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Box<RawValue>>,
    /// The answer sent back to its sender instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Box<RawValue>>,
}

/// How a tape ended.
#[derive(Debug, Serialize, Deserialize)]
pub struct Trailer {
    /// When (RFC 3339, UTC).
    pub ended_at: String,
    /// Why: `session_ended` (DELETE), `session_closed` (expired or gone), `idle`
    /// (a stateless conversation or upstream tape quiet for the gap), `shutdown`,
    /// `rotated` (continued in the next part, see [`Header::part`]).
    pub reason: String,
    /// Frames written.
    pub frames: u64,
    /// `change` lines written (version 2; 0 when absent).
    #[serde(default)]
    pub changes: u64,
    /// Frames dropped because the tape's queue was full (`when_full: drop`) or a
    /// write failed.
    pub dropped: u64,
    /// Values replaced by `<redacted:N>` placeholders.
    pub redacted: u64,
    /// `sha256:` and the hex SHA-256 of every byte of the tape before this line.
    pub checksum: String,
}
