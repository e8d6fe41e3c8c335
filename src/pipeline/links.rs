//! Linking calls, the pipeline's own outermost stage.
//!
//! - The rounds of one multi-round-trip (2026-07-28 `input_required`) call share a
//!   [`CallId`]: when a final result asks for input with a `requestState`, the state
//!   is remembered with the call, and the retry that brings it back gets the same id.
//! - A client's response to a server-to-client request (sampling, elicitation, roots)
//!   names that request ([`RequestContext::answers`](super::RequestContext)): the
//!   requests a session's streams carried to the client are remembered by id.
//!
//! Both tables are bounded (oldest entries go first); a link that fell out leaves the
//! later round with a call id of its own, which is all that is lost.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Deserialize;

use super::{CallId, CallInfo, Direction, Flow, McpRequest, MessageContext, ServerRequest, Stage};
use crate::protocol::{modern, Message, MessageKind};

/// Entries each table keeps.
const CAPACITY: usize = 4096;

/// A map that forgets its oldest entries beyond a bound.
struct Bounded<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    fn new() -> Self {
        Bounded { map: HashMap::new(), order: VecDeque::new() }
    }

    fn insert(&mut self, k: K, v: V) {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
        }
        while self.order.len() > CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }

    fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    fn remove(&mut self, k: &K) -> Option<V> {
        // The key stays in `order` until it ages out; a re-insert then counts once.
        self.map.remove(k)
    }
}

struct Tables {
    /// Hash of a `requestState` -> the call that answered with it.
    states: Bounded<u64, CallId>,
    /// (session id, request id) -> the server-to-client request sent to the client.
    server_requests: Bounded<(Arc<str>, Arc<str>), ServerRequest>,
}

/// The linking stage (always outermost; not named in the config).
#[derive(Clone)]
pub struct CallLinks {
    tables: Arc<Mutex<Tables>>,
    /// Keyed per process, so that a client cannot craft states that collide.
    hasher: RandomState,
}

impl Default for CallLinks {
    fn default() -> Self {
        CallLinks {
            tables: Arc::new(Mutex::new(Tables { states: Bounded::new(), server_requests: Bounded::new() })),
            hasher: RandomState::new(),
        }
    }
}

/// What the linking stage keeps about a call.
pub struct Linked {
    /// The call this request belongs to (an earlier round's, when linked).
    call: CallId,
    /// The server request a client response answers.
    answers: Option<ServerRequest>,
    /// Whether the final result may ask for input (a stateless MRTR method).
    may_ask: bool,
}

#[derive(Deserialize)]
struct WithState {
    #[serde(rename = "requestState")]
    request_state: Option<String>,
}

#[derive(Deserialize)]
struct ResultEnvelope {
    result: ResultState,
}

#[derive(Deserialize)]
struct ResultState {
    #[serde(rename = "resultType")]
    result_type: Option<String>,
    #[serde(rename = "requestState")]
    request_state: Option<String>,
}

impl CallLinks {
    fn state_key(&self, state: &str) -> u64 {
        self.hasher.hash_one(state)
    }

    fn remember_state(&self, call: CallId, m: &Message) {
        // Most results are complete: a byte search spares parsing them.
        if memchr::memmem::find(m.bytes(), b"input_required").is_none() {
            return;
        }
        let Ok(env) = serde_json::from_slice::<ResultEnvelope>(m.bytes()) else { return };
        if env.result.result_type.as_deref() != Some("input_required") {
            return;
        }
        if let Some(state) = env.result.request_state {
            let key = self.state_key(&state);
            self.tables.lock().states.insert(key, call);
        }
    }
}

impl Stage for CallLinks {
    type Call = Linked;

    fn begin(&self, req: &McpRequest) -> Linked {
        let mut linked = Linked { call: req.context.call, answers: None, may_ask: false };
        let Some(m) = req.msg() else { return linked };
        match (&req.session, m.kind()) {
            (Some(session), MessageKind::Response) => {
                if let Some(id) = m.id_key() {
                    let key = (Arc::from(session.id()), Arc::from(id));
                    linked.answers = self.tables.lock().server_requests.remove(&key);
                }
            }
            (None, MessageKind::Request) if req.version.is_stateless() => {
                linked.may_ask = m.method().is_some_and(|method| modern::INPUT_METHODS.contains(&method));
                let retry =
                    m.params_raw().is_some_and(|p| memchr::memmem::find(p.as_bytes(), b"requestState").is_some());
                if linked.may_ask && retry {
                    let state = m.params::<WithState>().and_then(|p| p.request_state);
                    if let Some(state) = state {
                        let key = self.state_key(&state);
                        if let Some(call) = self.tables.lock().states.get(&key) {
                            linked.call = *call;
                        }
                    }
                }
            }
            _ => {}
        }
        linked
    }

    fn on_request(&self, linked: &Linked, _info: &CallInfo, mut req: McpRequest) -> Flow<McpRequest> {
        req.context.later_round = linked.call != req.context.call;
        req.context.call = linked.call;
        if linked.answers.is_some() {
            req.context.answers = linked.answers.clone();
        }
        Flow::pass(req)
    }

    fn on_message(&self, linked: &Linked, ctx: &MessageContext<'_>, msg: Message) -> Flow {
        if ctx.direction != Direction::ServerToClient {
            return Flow::pass(msg);
        }
        match msg.kind() {
            MessageKind::Request => {
                if let (Some(session), Some(id), Some(method)) = (&ctx.call.session, msg.id_key(), msg.method()) {
                    let during = (ctx.carrier != super::Carrier::GetStream).then_some(linked.call);
                    let request = ServerRequest { method: Arc::from(method), during };
                    let key = (Arc::from(session.id()), Arc::from(id));
                    self.tables.lock().server_requests.insert(key, request);
                }
            }
            MessageKind::Response if linked.may_ask && msg.id_key() == ctx.call.request_id.as_deref() => {
                self.remember_state(linked.call, &msg);
            }
            _ => {}
        }
        Flow::pass(msg)
    }
}
