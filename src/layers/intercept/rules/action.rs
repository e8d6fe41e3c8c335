//! What a rule does: the file's `action:` (continue, drop, block, mock, delay,
//! modify, fault) compiled once at load, and a mock's templated result.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use crate::protocol::{WireFault, WireFaultBy};

use super::{splitmix64, RuleSet};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum ActionSpec {
    Continue,
    Drop,
    Block(BlockSpec),
    Mock(MockSpec),
    Delay(DelaySpec),
    Modify(crate::layers::intercept::modify::ModifySpec),
    Fault(FaultSpec),
    Pause(PauseSpec),
}

/// `pause: { timeout: 30s }`: held until an operator resumes, edits or drops it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PauseSpec {
    #[serde(default = "pause_timeout", with = "crate::config::duration")]
    timeout: Duration,
}

fn pause_timeout() -> Duration {
    Duration::from_secs(60)
}

/// A failure to inject.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum FaultSpec {
    /// Never answer (the sender's own timeout decides).
    Hang,
    /// `hang` by its name for streams: the stream stops at the message, open.
    Stall,
    /// Hold, then fail as an upstream that did not answer in time.
    Timeout(#[serde(with = "crate::config::duration")] Duration),
    /// Fail as an unreachable or failing upstream (HTTP 502).
    UpstreamError(#[serde(default)] Option<String>),
    /// Refuse with HTTP 429 and `Retry-After`.
    TooManyRequests {
        #[serde(with = "crate::config::duration")]
        retry_after: Duration,
    },
    /// Give the client bytes that are not JSON where the message (or a request's
    /// answer) goes: these, or the first half of the message's own.
    Malformed(#[serde(default)] Option<String>),
    /// Cut the client's connection off where the message (or a request's answer) goes.
    Reset,
    /// Give the client the message (or each message answering a request) in pieces.
    Dribble(#[serde(default)] Option<DribbleSpec>),
}

/// `dribble: { chunk: 16, every: 100ms }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DribbleSpec {
    #[serde(default = "dribble_chunk")]
    chunk: usize,
    #[serde(default = "dribble_every", with = "crate::config::duration")]
    every: Duration,
}

/// A wire fault of rule `id`.
fn wire(id: &str, fault: WireFault) -> Fault {
    Fault::Wire(std::sync::Arc::new(WireFaultBy { fault, rule: id.into() }))
}

fn dribble_chunk() -> usize {
    16
}

fn dribble_every() -> Duration {
    Duration::from_millis(100)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BlockSpec {
    #[serde(default = "block_code")]
    code: i32,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    data: Option<Value>,
    /// An HTTP status instead of a JSON-RPC error in a 200 (client requests only).
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    headers: HashMap<String, String>,
}

fn block_code() -> i32 {
    -32050
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MockSpec {
    #[serde(default)]
    result: Option<Value>,
    #[serde(default)]
    error: Option<MockError>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MockError {
    code: i32,
    message: String,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum DelaySpec {
    /// Always this long.
    Fixed(#[serde(with = "crate::config::duration")] Duration),
    /// Uniformly between the two (drawn from the file's seed).
    Uniform(#[serde(with = "duration_pair")] (Duration, Duration)),
    /// `base`, times `factor` for each earlier firing of the rule, at most `max`.
    Exponential {
        #[serde(with = "crate::config::duration")]
        base: Duration,
        #[serde(default = "two")]
        factor: f64,
        #[serde(with = "crate::config::duration")]
        max: Duration,
    },
}

fn two() -> f64 {
    2.0
}

/// `[100ms, 500ms]`: two durations.
mod duration_pair {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<(Duration, Duration), D::Error> {
        let [low, high] = <[String; 2]>::deserialize(d)?;
        let parse = |t: &str| crate::config::duration::parse(t).map_err(serde::de::Error::custom);
        Ok((parse(&low)?, parse(&high)?))
    }
}

/// How long a `delay` holds a message.
#[derive(Debug, Clone, Copy)]
pub enum Delay {
    /// Always this long.
    Fixed(Duration),
    /// Uniformly between the two.
    Uniform(Duration, Duration),
    /// `base * factor^n` for the rule's n-th firing, at most `max`.
    Exponential {
        /// The first delay.
        base: Duration,
        /// The growth per firing.
        factor: f64,
        /// The cap.
        max: Duration,
    },
}

impl Delay {
    /// The delay for the rule's `n`-th firing, drawing from `seed`.
    pub fn for_firing(&self, n: u64, seed: u64) -> Duration {
        match *self {
            Delay::Fixed(d) => d,
            Delay::Uniform(low, high) => {
                let draw = (splitmix64(seed ^ n.rotate_left(32)) >> 11) as f64 / (1u64 << 53) as f64;
                low + (high - low).mul_f64(draw)
            }
            Delay::Exponential { base, factor, max } => {
                let exp = i32::try_from(n).unwrap_or(i32::MAX);
                base.mul_f64(factor.powi(exp).min(max.as_secs_f64() / base.as_secs_f64().max(1e-9))).min(max)
            }
        }
    }
}

/// A failure a `fault` injects.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Never answer.
    Hang,
    /// Hold this long, then fail as an upstream timeout (504).
    Timeout(Duration),
    /// Fail as an upstream error (502), with this detail.
    UpstreamError(String),
    /// Refuse with 429 and `Retry-After`.
    TooManyRequests(Duration),
    /// A fault on the client's wire (`malformed`, `reset`, `dribble`): the message,
    /// or the answer to a request, goes out as it says.
    Wire(std::sync::Arc<crate::protocol::WireFaultBy>),
    /// `malformed` without bytes of its own: the first half of the message's.
    Truncated,
}

/// A string of a mock's result, made from a template or given as it is.
#[derive(Debug)]
pub enum Piece {
    /// Any JSON value, as written.
    Fixed(Value),
    /// A string with `{{...}}` in it: the name of its compiled template.
    Template(String),
    /// An object whose values are pieces.
    Object(Vec<(String, Piece)>),
    /// An array of pieces.
    Array(Vec<Piece>),
}

/// What a rule does.
#[derive(Debug)]
pub enum Action {
    /// Let the message through as it is (and stop looking at later rules).
    Continue,
    /// Discard it (a request is answered with an error, so that nothing hangs).
    Drop,
    /// Answer with a JSON-RPC error, or refuse with an HTTP status.
    Block {
        /// The JSON-RPC error code.
        code: i32,
        /// The error message.
        message: String,
        /// The error's `data`.
        data: Option<Value>,
        /// An HTTP status (with headers) in place of a JSON-RPC error in a 200.
        status: Option<(http::StatusCode, http::HeaderMap)>,
    },
    /// Answer without the other side: a result (maybe templated) or an error.
    Mock {
        /// The result, when it is one.
        result: Option<Piece>,
        /// The error, when it is one (code, message, data).
        error: Option<(i32, String, Option<Value>)>,
    },
    /// Hold the message, then let it through.
    Delay(Delay),
    /// Fail the call as something below would.
    Fault(Fault),
    /// Change the message by JSONPath, then let it through.
    Modify(crate::layers::intercept::modify::Modify),
    /// Hold the message until an operator resumes, edits or drops it, at most this
    /// long.
    Pause(Duration),
}

impl Action {
    /// The action's name, as in the rule file.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Continue => "continue",
            Action::Drop => "drop",
            Action::Block { .. } => "block",
            Action::Mock { .. } => "mock",
            Action::Delay(_) => "delay",
            Action::Fault(_) => "fault",
            Action::Modify(_) => "modify",
            Action::Pause(_) => "pause",
        }
    }
}

pub(super) fn compile_action(spec: ActionSpec, id: &str, set: &mut RuleSet) -> Result<Action, (String, String)> {
    Ok(match spec {
        ActionSpec::Continue => Action::Continue,
        ActionSpec::Drop => Action::Drop,
        ActionSpec::Pause(p) if p.timeout.is_zero() => {
            return Err(("action.pause.timeout".to_owned(), "must be above zero".into()))
        }
        ActionSpec::Pause(p) => Action::Pause(p.timeout),
        ActionSpec::Delay(d) => Action::Delay(match d {
            DelaySpec::Fixed(d) => Delay::Fixed(d),
            DelaySpec::Uniform((low, high)) if low <= high => Delay::Uniform(low, high),
            DelaySpec::Uniform(_) => {
                return Err(("action.delay.uniform".to_owned(), "the first bound is above the second".into()))
            }
            DelaySpec::Exponential { base, factor, max } if factor >= 1.0 && !base.is_zero() && base <= max => {
                Delay::Exponential { base, factor, max }
            }
            DelaySpec::Exponential { .. } => {
                return Err((
                    "action.delay.exponential".to_owned(),
                    "needs base > 0, base <= max and factor >= 1".into(),
                ))
            }
        }),
        ActionSpec::Fault(f) => Action::Fault(match f {
            FaultSpec::Hang | FaultSpec::Stall => Fault::Hang,
            FaultSpec::Timeout(d) => Fault::Timeout(d),
            FaultSpec::UpstreamError(detail) => {
                Fault::UpstreamError(detail.unwrap_or_else(|| format!("fault injected by rule {id}")))
            }
            FaultSpec::TooManyRequests { retry_after } => Fault::TooManyRequests(retry_after),
            FaultSpec::Malformed(None) => Fault::Truncated,
            FaultSpec::Malformed(Some(text)) => wire(id, WireFault::Malformed(Bytes::from(text))),
            FaultSpec::Reset => wire(id, WireFault::Reset),
            FaultSpec::Dribble(spec) => {
                let spec = spec.unwrap_or(DribbleSpec { chunk: dribble_chunk(), every: dribble_every() });
                if spec.chunk == 0 {
                    return Err(("action.fault.dribble.chunk".to_owned(), "must be at least 1".into()));
                }
                wire(id, WireFault::Dribble { chunk: spec.chunk, every: spec.every })
            }
        }),
        ActionSpec::Modify(m) => Action::Modify(crate::layers::intercept::modify::Modify::compile(m)?),
        ActionSpec::Block(b) => {
            let status = match b.status {
                None => {
                    if !b.headers.is_empty() {
                        return Err(("action.block.headers".to_owned(), "headers need a status".into()));
                    }
                    None
                }
                Some(code) => {
                    let status = http::StatusCode::from_u16(code)
                        .ok()
                        .filter(|s| s.is_client_error() || s.is_server_error())
                        .ok_or((
                            "action.block.status".to_owned(),
                            format!("{code} is not an HTTP error status (400-599)"),
                        ))?;
                    let mut headers = http::HeaderMap::new();
                    for (name, value) in &b.headers {
                        let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                            ("action.block.headers".to_owned(), format!("{name:?} is not a header name"))
                        })?;
                        let value = http::HeaderValue::from_str(value).map_err(|_| {
                            ("action.block.headers".to_owned(), format!("the value of {name} is not a header value"))
                        })?;
                        headers.append(name, value);
                    }
                    Some((status, headers))
                }
            };
            let message = b.message.unwrap_or_else(|| format!("blocked by rule {id}"));
            Action::Block { code: b.code, message, data: b.data, status }
        }
        ActionSpec::Mock(m) => match (m.result, m.error) {
            (Some(result), None) => {
                let mut n = 0;
                let piece = compile_piece(result, id, &mut n, set).map_err(|e| ("action.mock.result".to_owned(), e))?;
                Action::Mock { result: Some(piece), error: None }
            }
            (None, Some(e)) => Action::Mock { result: None, error: Some((e.code, e.message, e.data)) },
            _ => return Err(("action.mock".to_owned(), "give exactly one of result and error".into())),
        },
    })
}

/// Compiles the templates in a mock's result (strings with `{{`).
fn compile_piece(value: Value, id: &str, n: &mut usize, set: &mut RuleSet) -> Result<Piece, String> {
    Ok(match value {
        Value::String(s) if s.contains("{{") => {
            let name = format!("{id}#{n}");
            *n += 1;
            set.templates.register_template_string(&name, &s).map_err(|e| format!("template {s:?}: {e}"))?;
            set.uses_templates = true;
            Piece::Template(name)
        }
        Value::Object(map) => Piece::Object(
            map.into_iter().map(|(k, v)| Ok((k, compile_piece(v, id, n, set)?))).collect::<Result<_, String>>()?,
        ),
        Value::Array(items) => {
            Piece::Array(items.into_iter().map(|v| compile_piece(v, id, n, set)).collect::<Result<_, String>>()?)
        }
        other => Piece::Fixed(other),
    })
}

impl Piece {
    /// The value, with its templates rendered against `context`.
    pub fn render(&self, templates: &handlebars::Handlebars<'_>, context: &Value) -> Result<Value, String> {
        Ok(match self {
            Piece::Fixed(v) => v.clone(),
            Piece::Template(name) => Value::String(templates.render(name, context).map_err(|e| e.to_string())?),
            Piece::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, p)| Ok((k.clone(), p.render(templates, context)?)))
                    .collect::<Result<_, String>>()?,
            ),
            Piece::Array(items) => {
                Value::Array(items.iter().map(|p| p.render(templates, context)).collect::<Result<_, String>>()?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_strictly() {
        let text = "version: 1\nrules:\n  - id: m\n    action: { mock: { result: { content: [ { type: text, text: 'mocked {{request.params.arguments.message}}' } ] } } }\n";
        let set = RuleSet::parse(text, "r.yaml").expect("valid");
        let Action::Mock { result: Some(piece), .. } = &set.rules[0].action else { panic!("a mock") };
        let ctx = serde_json::json!({ "request": { "params": { "arguments": { "message": "a \"quoted\" word" } } } });
        let out = piece.render(&set.templates, &ctx).expect("renders");
        assert_eq!(out["content"][0]["text"], "mocked a \"quoted\" word");
        let err = piece.render(&set.templates, &serde_json::json!({ "request": {} })).expect_err("strict");
        assert!(!err.is_empty());
    }
}
