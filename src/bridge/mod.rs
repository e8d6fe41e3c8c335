//! Serving stateless (2026-07-28) clients from every upstream.
//!
//! One [`Bridge`] per upstream decides, from the upstream's era (pinned in config or
//! probed once with `server/discover`), how a stateless request is served:
//!
//! - **modern upstream**: passed through as it came (HTTP), only `server/discover`'s
//!   `supportedVersions` widened to what the gateway serves on the route;
//! - **legacy upstream**: dispatched to a [`pool`] of sessions the gateway initialized
//!   itself, keyed by the client's declared capability set. The request id and progress
//!   token are rewritten per upstream session; results get `resultType`, cache hints
//!   and `serverInfo` ([`stamp`]); `server/discover` is answered from the upstream's
//!   initialize result; `subscriptions/listen` is fed from the pool's `list_changed`
//!   notifications; and a server-to-client request during `tools/call`, `prompts/get`
//!   or `resources/read` becomes an `input_required` answer whose sealed
//!   `requestState` ([`seal`]) names the parked upstream call the retry resumes
//!   ([`call`]).

mod call;
pub mod legacy_client;
pub mod param_headers;
pub mod pool;
pub mod seal;
pub mod stamp;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use http::HeaderMap;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use crate::config::{BridgeConfig, EraSetting, PoolConfig};
use crate::error::GatewayError;
use crate::pipeline::{McpReply, MessageStream, ReplyBody};
use crate::protocol::id_value;
use crate::protocol::modern::{self, Envelope, META_SUBSCRIPTION_ID};
use crate::protocol::{Message, MessageKind, ProtocolVersion};
use crate::upstream::era::{self, Era};
use crate::upstream::Upstream;
use pool::{Facts, Pooled};
use seal::Sealer;
use stamp::Stamp;

/// Longest wait for a pooled session's input slot when the pool is full.
pub(crate) const SLOT_WAIT: Duration = Duration::from_secs(30);

/// Time a stdio upstream gets to answer the era probe before it counts as legacy.
const STDIO_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Settings shared by every bridge.
pub struct BridgeSettings {
    /// The `bridge:` config.
    pub config: BridgeConfig,
    /// Seals `requestState`.
    pub sealer: Sealer,
}

impl BridgeSettings {
    /// Builds the settings; with no `state_key`, a random key for this process (logged).
    pub fn new(config: &BridgeConfig) -> Result<Arc<Self>, String> {
        let replica = format!("{:016x}", rand::random::<u64>());
        let secret = match &config.state_key {
            Some(key) => key.resolve().map_err(|e| format!("bridge.state_key: {e}"))?.into_bytes(),
            None => {
                tracing::info!(replica = %replica,
                    "bridge.state_key is not set: requestState is sealed with a random key of this process \
                     (retries must come back to this process, and do not survive a restart)");
                rand::random::<[u8; 32]>().to_vec()
            }
        };
        Ok(Arc::new(BridgeSettings { config: config.clone(), sealer: Sealer::new(&secret, replica) }))
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// How one upstream serves stateless clients.
pub struct Bridge {
    name: Arc<str>,
    upstream: Upstream,
    era_setting: EraSetting,
    era: Mutex<Option<Era>>,
    era_probe: tokio::sync::Mutex<()>,
    settings: Arc<BridgeSettings>,
    pool_config: PoolConfig,
    pools: Mutex<HashMap<String, Vec<Arc<Pooled>>>>,
    creating: tokio::sync::Mutex<()>,
    facts: Mutex<Option<Facts>>,
    events: broadcast::Sender<Message>,
    parked: call::ParkedCalls,
    next_session: AtomicU64,
    /// Upstream resource subscriptions by URI, with the number of listens wanting each.
    subscriptions: Mutex<HashMap<String, usize>>,
    /// The pooled session that holds them.
    subscription_session: Mutex<Option<Arc<Pooled>>>,
    /// The upstream's tools' `x-mcp-header` properties, by tool name, and when they
    /// were read (for the upstreams whose `Mcp-Param-*` headers the gateway checks).
    tool_params: Mutex<Option<ToolParams>>,
}

/// When the tools were read, and each tool's `x-mcp-header` properties.
type ToolParams = (Instant, HashMap<String, Vec<param_headers::ParamHeader>>);

/// How long the tools' `x-mcp-header` declarations are trusted before `tools/list` is
/// read again (a `tools/list_changed` seen from the upstream forgets them at once).
const TOOL_PARAMS_MAX_AGE: Duration = Duration::from_secs(30);

/// An open listen on a stateless stdio upstream: when the client's stream goes, the
/// upstream gets `notifications/cancelled` for it (unless the server ended it).
struct ListenGuard {
    pooled: Arc<Pooled>,
    upstream_id: String,
}

impl Drop for ListenGuard {
    fn drop(&mut self) {
        if self.pooled.listens.lock().remove(&self.upstream_id).is_some() {
            let (pooled, id) = (self.pooled.clone(), self.upstream_id.clone());
            tokio::spawn(async move { pooled.cancel(&id, "the client closed the subscription").await });
        }
    }
}

/// The resource subscriptions of one listen; released when the listen ends.
struct Subscriptions {
    bridge: Arc<Bridge>,
    uris: Vec<String>,
}

impl Subscriptions {
    /// Whether a notification goes to this listen: a list change it asked for, or an
    /// update of a subscribed resource (or a sub-resource of one).
    fn wants(&self, m: &Message, lists: &[&str]) -> bool {
        match m.method() {
            Some("notifications/resources/updated") => {
                let uri = m
                    .params::<Map<String, Value>>()
                    .and_then(|p| p.get("uri").and_then(Value::as_str).map(str::to_owned));
                uri.is_some_and(|uri| {
                    self.uris.iter().any(|s| uri == *s || uri.starts_with(&format!("{}/", s.trim_end_matches('/'))))
                })
            }
            Some(method) => lists.contains(&method),
            None => false,
        }
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        for uri in &self.uris {
            release_subscription(&self.bridge, uri);
        }
    }
}

/// One listen less wants `uri`; the last one unsubscribes upstream (in the background).
fn release_subscription(bridge: &Arc<Bridge>, uri: &str) {
    let last = {
        let mut counts = bridge.subscriptions.lock();
        match counts.get_mut(uri) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                counts.remove(uri);
                true
            }
            None => false,
        }
    };
    let session = bridge.subscription_session.lock().clone();
    if let (true, Some(session)) = (last, session) {
        let uri = uri.to_owned();
        tokio::spawn(async move {
            upstream_subscription(&session, "resources/unsubscribe", &uri).await;
        });
    }
}

/// Sends `resources/subscribe` or `resources/unsubscribe` for `uri`; true on success.
async fn upstream_subscription(session: &Pooled, method: &str, uri: &str) -> bool {
    let id = session.next_id("sub");
    let id_json = id_value(&id);
    let m = Message::from_value(&json!({"jsonrpc": "2.0", "id": id_json, "method": method, "params": {"uri": uri}}));
    let Ok(reply) = session.send(m).await else { return false };
    let ok = first_response(reply, &id).await.is_some_and(|r| !r.is_error());
    if !ok {
        tracing::warn!(session = %session.tag, method, uri, "the upstream refused a resource subscription");
    }
    ok
}

impl Bridge {
    /// The bridge of upstream `name`.
    pub fn new(
        name: &str,
        upstream: Upstream,
        era_setting: EraSetting,
        pool_config: PoolConfig,
        settings: Arc<BridgeSettings>,
    ) -> Arc<Self> {
        let (events, _) = broadcast::channel(256);
        let era = match era_setting {
            EraSetting::Auto => None,
            EraSetting::Modern => Some(Era::Modern { versions: vec![ProtocolVersion::LATEST.as_str().into()] }),
            EraSetting::Legacy => Some(Era::Legacy),
        };
        let bridge = Arc::new(Bridge {
            name: name.into(),
            upstream,
            era_setting,
            era: Mutex::new(era),
            era_probe: tokio::sync::Mutex::new(()),
            settings,
            pool_config,
            pools: Mutex::new(HashMap::new()),
            creating: tokio::sync::Mutex::new(()),
            facts: Mutex::new(None),
            events,
            parked: call::ParkedCalls::default(),
            next_session: AtomicU64::new(1),
            subscriptions: Mutex::new(HashMap::new()),
            subscription_session: Mutex::new(None),
            tool_params: Mutex::new(None),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            let weak = Arc::downgrade(&bridge);
            let mut changes = bridge.events.subscribe();
            tokio::spawn(async move {
                loop {
                    match changes.recv().await {
                        Ok(m) if m.method() == Some("notifications/tools/list_changed") => match weak.upgrade() {
                            Some(b) => *b.tool_params.lock() = None,
                            None => return,
                        },
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
        }
        bridge
    }

    /// The upstream's era: pinned, cached, or probed now.
    pub async fn era(&self) -> Result<Era, GatewayError> {
        if let Some(era) = self.era.lock().clone() {
            return Ok(era);
        }
        let era = match &self.upstream {
            Upstream::Http(u) => u.era().await?,
            Upstream::Stdio(_) => {
                let _one = self.era_probe.lock().await;
                if let Some(era) = self.era.lock().clone() {
                    return Ok(era);
                }
                let era = self.probe_stdio().await?;
                tracing::info!(upstream = %self.name, ?era, "upstream era probed (throwaway process)");
                era
            }
        };
        *self.era.lock() = Some(era.clone());
        Ok(era)
    }

    /// Probes a stdio upstream in a throwaway process: some legacy servers exit on an
    /// unknown first request, so the probe never touches a process that serves.
    async fn probe_stdio(&self) -> Result<Era, GatewayError> {
        let session = self.upstream.open("era-probe").await?;
        let probe = era::probe_message();
        let verdict = tokio::time::timeout(STDIO_PROBE_TIMEOUT, async {
            let reply = session.send(probe, &HeaderMap::new()).await.ok()?;
            first_response(reply, era::PROBE_ID).await
        })
        .await;
        session.close().await;
        Ok(match verdict {
            Ok(Some(answer)) => match era::classify_message(answer.bytes()) {
                era::Verdict::Known(era) => era,
                era::Verdict::Unknown(_) => Era::Legacy,
            },
            // No answer in time, or the process exited: legacy.
            _ => Era::Legacy,
        })
    }

    /// For a session-era client's `initialize`: the upstream's own session when it
    /// serves that era, else a session the gateway owns on the modern-only upstream.
    /// An HTTP upstream's era is probed now if unknown (a probe without a verdict: the
    /// session goes upstream as is); a stdio upstream's is not probed here (that would
    /// start a process), so it is used only when pinned or already probed.
    pub async fn open_session(self: &Arc<Self>, tag: &str) -> Result<crate::upstream::UpstreamSession, GatewayError> {
        let era = match &self.upstream {
            Upstream::Http(_) => match self.era().await {
                Ok(era) => Some(era),
                Err(e) => {
                    tracing::debug!(upstream = %self.name, error = %e, "era unknown; the session goes upstream as is");
                    None
                }
            },
            Upstream::Stdio(_) => self.era.lock().clone(),
        };
        if era.is_some_and(|era| !era.serves_legacy()) {
            let session = legacy_client::ModernSession::open(self.clone(), tag).await?;
            return Ok(crate::upstream::UpstreamSession::Modern(session));
        }
        self.upstream.open(tag).await
    }

    /// Whether this bridge was told the era rather than probing it.
    pub fn era_pinned(&self) -> bool {
        self.era_setting != EraSetting::Auto
    }

    /// Serves one checked stateless request.
    /// `client` identifies the client for per-client bounds.
    pub async fn serve(
        self: &Arc<Self>,
        m: Message,
        headers: &HeaderMap,
        client: Option<Arc<str>>,
    ) -> Result<McpReply, GatewayError> {
        let era = self.era().await?;
        let checks_headers = !(era.is_modern() && matches!(self.upstream, Upstream::Http(_)));
        // Only requests that came over HTTP have headers to check (`client` is their peer).
        if checks_headers && client.is_some() && m.method() == Some("tools/call") {
            self.check_param_headers(&m, headers).await?;
        }
        self.dispatch(era, m, headers, client).await
    }

    /// Serves a checked stateless request by the upstream's era.
    async fn dispatch(
        self: &Arc<Self>,
        era: Era,
        m: Message,
        headers: &HeaderMap,
        client: Option<Arc<str>>,
    ) -> Result<McpReply, GatewayError> {
        match (era, &self.upstream) {
            (Era::Modern { .. }, Upstream::Http(u)) => {
                let is_discover = m.method() == Some("server/discover");
                let reply = u.send_stateless(m, headers).await?;
                Ok(if is_discover { widen_discover(reply).await } else { reply })
            }
            // A dual-era stdio server: served through the pool in its session era
            // (stateless stdio pass-through is not built).
            (era @ Era::Modern { .. }, Upstream::Stdio(_)) if era.serves_legacy() => {
                self.serve_legacy(m, headers, client).await
            }
            (Era::Modern { .. }, Upstream::Stdio(_)) => match m.method() {
                Some("subscriptions/listen") => self.listen_stdio(m).await,
                Some("server/discover") => Ok(widen_discover(call::start_modern(self.clone(), m).await?).await),
                _ => call::start_modern(self.clone(), m).await,
            },
            (Era::Legacy, _) => self.serve_legacy(m, headers, client).await,
        }
    }

    async fn serve_legacy(
        self: &Arc<Self>,
        m: Message,
        headers: &HeaderMap,
        client: Option<Arc<str>>,
    ) -> Result<McpReply, GatewayError> {
        let envelope = Envelope::of(&m).map_err(|e| GatewayError::InvalidParams(e.to_string()))?;
        let method = m.method().unwrap_or_default().to_owned();
        match method.as_str() {
            "server/discover" => self.discover(&m).await,
            "subscriptions/listen" => self.listen(&m).await,
            _ if modern::INPUT_METHODS.contains(&method.as_str()) => {
                call::start(self.clone(), m, envelope, true, client, headers).await
            }
            _ if modern::CLIENT_METHODS.contains(&method.as_str()) => {
                call::start(self.clone(), m, envelope, false, client, headers).await
            }
            _ => Err(GatewayError::MethodNotFound(format!("{method} is not served by this upstream"))),
        }
    }

    /// The stamp for results of this upstream.
    fn stamp(&self, facts: &Facts) -> Stamp {
        Stamp {
            server_info: facts.server_info.clone(),
            ttl_ms: self.settings.config.cache_ttl_ms,
            scope: self.settings.config.cache_scope,
        }
    }

    /// What the upstream said at initialize (initializing a session if none has been).
    async fn facts(self: &Arc<Self>) -> Result<Facts, GatewayError> {
        if let Some(f) = self.facts.lock().clone() {
            return Ok(f);
        }
        self.session_for(&Map::new(), false).await?;
        self.facts.lock().clone().ok_or_else(|| GatewayError::Internal("no facts after initialize".into()))
    }

    /// The capabilities the gateway advertises for this upstream: the upstream's
    /// (`resources.subscribe` is served as `resourceSubscriptions` of a listen).
    fn advertised(facts: &Facts) -> Map<String, Value> {
        facts.capabilities.clone()
    }

    async fn discover(self: &Arc<Self>, m: &Message) -> Result<McpReply, GatewayError> {
        let facts = self.facts().await?;
        let mut result = Map::new();
        result.insert("supportedVersions".into(), json!(ProtocolVersion::ALL.map(ProtocolVersion::as_str)));
        result.insert("capabilities".into(), Value::Object(Self::advertised(&facts)));
        if let Some(instructions) = &facts.instructions {
            result.insert("instructions".into(), json!(instructions));
        }
        self.stamp(&facts).result("server/discover", &mut result);
        Ok(McpReply::new(ReplyBody::Message(result_message(m.id_key(), result))))
    }

    async fn listen(self: &Arc<Self>, m: &Message) -> Result<McpReply, GatewayError> {
        let filter: Option<Map<String, Value>> =
            m.params::<Map<String, Value>>().and_then(|p| p.get("notifications").and_then(Value::as_object).cloned());
        let Some(filter) = filter else {
            return Err(GatewayError::InvalidParams(
                "subscriptions/listen needs params.notifications (an object)".into(),
            ));
        };
        let facts = self.facts().await?;
        let caps = Self::advertised(&facts);
        let supports =
            |cap: &str| caps.get(cap).and_then(|c| c.get("listChanged")).and_then(Value::as_bool) == Some(true);
        let mut honored = Map::new();
        for (field, cap) in
            [("toolsListChanged", "tools"), ("promptsListChanged", "prompts"), ("resourcesListChanged", "resources")]
        {
            if filter.get(field).and_then(Value::as_bool) == Some(true) && supports(cap) {
                honored.insert(field.into(), json!(true));
            }
        }
        let id_text = m.id_key().unwrap_or("null").to_owned();
        let id = id_value(&id_text);
        let asked: Vec<String> = filter
            .get("resourceSubscriptions")
            .and_then(Value::as_array)
            .map(|uris| uris.iter().filter_map(|u| u.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let can_subscribe =
            facts.capabilities.get("resources").and_then(|r| r.get("subscribe")).and_then(Value::as_bool) == Some(true);
        let subscribed = if can_subscribe && !asked.is_empty() {
            self.subscribe(&asked).await
        } else {
            Subscriptions { bridge: self.clone(), uris: Vec::new() }
        };
        if !subscribed.uris.is_empty() {
            honored.insert("resourceSubscriptions".into(), json!(subscribed.uris));
        }
        let ack = Message::notification(
            "notifications/subscriptions/acknowledged",
            json!({"notifications": honored, "_meta": {META_SUBSCRIPTION_ID: id}}),
        );
        let wanted: Vec<&'static str> = [
            ("toolsListChanged", "notifications/tools/list_changed"),
            ("promptsListChanged", "notifications/prompts/list_changed"),
            ("resourcesListChanged", "notifications/resources/list_changed"),
        ]
        .into_iter()
        .filter(|(field, _)| honored.contains_key(*field))
        .map(|(_, method)| method)
        .collect();
        let rx = self.events.subscribe();
        let state = (rx, wanted, id, subscribed);
        let updates = futures_util::stream::unfold(state, |(mut rx, wanted, id, subscribed)| async move {
            loop {
                match rx.recv().await {
                    Ok(m) if subscribed.wants(&m, &wanted) => {
                        let mut params: Map<String, Value> = m.params().unwrap_or_default();
                        let meta = params.entry("_meta").or_insert_with(|| json!({}));
                        if let Some(meta) = meta.as_object_mut() {
                            meta.insert(META_SUBSCRIPTION_ID.into(), id.clone());
                        }
                        let tagged = Message::notification(m.method().unwrap_or_default(), Value::Object(params));
                        return Some((tagged, (rx, wanted, id, subscribed)));
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        let stream: MessageStream = Box::pin(futures_util::stream::once(async move { ack }).chain(updates));
        Ok(McpReply::new(ReplyBody::Stream(stream)))
    }

    /// Subscribes upstream (once per resource, reference counted across listens) to
    /// `uris`, on the pool's capability-less session; returns those subscribed.
    async fn subscribe(self: &Arc<Self>, uris: &[String]) -> Subscriptions {
        let mut done = Subscriptions { bridge: self.clone(), uris: Vec::new() };
        let Ok((session, _)) = self.session_for(&Map::new(), false).await else { return done };
        for uri in uris {
            let first = {
                let mut counts = self.subscriptions.lock();
                let n = counts.entry(uri.clone()).or_insert(0);
                *n += 1;
                *n == 1
            };
            let ok = !first || upstream_subscription(&session, "resources/subscribe", uri).await;
            if ok {
                done.uris.push(uri.clone());
            } else {
                release_subscription(self, uri);
            }
        }
        *self.subscription_session.lock() = Some(session);
        done
    }

    /// A pooled session for the capability set `caps`; with `for_input`, one whose
    /// input slot is free (waiting for one when the pool is full), returned with the slot.
    async fn session_for(
        self: &Arc<Self>,
        caps: &Map<String, Value>,
        for_input: bool,
    ) -> Result<(Arc<Pooled>, Option<tokio::sync::OwnedMutexGuard<()>>), GatewayError> {
        let key = pool_key(caps);
        let max = self.pool_config.max.max(1);
        loop {
            let sessions: Vec<Arc<Pooled>> = {
                let mut pools = self.pools.lock();
                let list = pools.entry(key.clone()).or_default();
                list.retain(|p| p.session.is_alive());
                list.clone()
            };
            if for_input {
                for p in &sessions {
                    if let Ok(slot) = p.input.clone().try_lock_owned() {
                        return Ok((p.clone(), Some(slot)));
                    }
                }
            } else if let Some(p) = sessions.iter().min_by_key(|p| p.busy.load(Ordering::Relaxed)) {
                if sessions.len() >= max || p.busy.load(Ordering::Relaxed) == 0 {
                    return Ok((p.clone(), None));
                }
            }
            if sessions.len() < max {
                let _one = self.creating.lock().await;
                let count =
                    self.pools.lock().get(&key).map_or(0, |l| l.iter().filter(|p| p.session.is_alive()).count());
                if count < max {
                    let n = self.next_session.fetch_add(1, Ordering::Relaxed);
                    let tag = format!("{}-pool-{n}", self.name);
                    let (p, facts) =
                        pool::open(&self.upstream, tag, normalized_caps(caps), self.events.clone()).await?;
                    tracing::info!(upstream = %self.name, session = %p.tag, capabilities = %key, "pooled upstream session opened");
                    self.facts.lock().get_or_insert(facts);
                    self.pools.lock().entry(key.clone()).or_default().push(p.clone());
                    let slot = if for_input { p.input.clone().try_lock_owned().ok() } else { None };
                    return Ok((p, slot));
                }
                continue;
            }
            // Full: wait (bounded) for the least busy session's input slot.
            // A waiter counts as busy, so waiters spread over the sessions (shortest queue).
            let Some(p) = sessions.iter().min_by_key(|p| p.busy.load(Ordering::Relaxed)).cloned() else { continue };
            p.busy.fetch_add(1, Ordering::Relaxed);
            let waited = tokio::time::timeout(SLOT_WAIT, p.input.clone().lock_owned()).await;
            p.busy.fetch_sub(1, Ordering::Relaxed);
            let Ok(slot) = waited else {
                return Err(GatewayError::Overloaded(format!(
                    "all {max} pooled sessions of upstream {} are busy with calls (some may be waiting for client \
                     input); raise pool.max",
                    self.name
                )));
            };
            if p.session.is_alive() {
                return Ok((p, Some(slot)));
            }
        }
    }

    /// Checks a `tools/call`'s `Mcp-Param-*` headers against its arguments, as the
    /// tool's `x-mcp-header` properties require (read from the upstream's `tools/list`,
    /// kept [`TOOL_PARAMS_MAX_AGE`]). If the list cannot be read, nothing is checked.
    async fn check_param_headers(self: &Arc<Self>, m: &Message, headers: &HeaderMap) -> Result<(), GatewayError> {
        let params: Map<String, Value> = m.params().unwrap_or_default();
        let Some(tool) = params.get("name").and_then(Value::as_str) else { return Ok(()) };
        let fresh = |known: &Option<ToolParams>| {
            known
                .as_ref()
                .filter(|(at, _)| at.elapsed() < TOOL_PARAMS_MAX_AGE)
                .map(|(_, tools)| tools.get(tool).cloned())
        };
        let cached = fresh(&self.tool_params.lock());
        let declared = match cached {
            Some(Some(declared)) => declared,
            // Unknown tool in a fresh list: the upstream will say so.
            Some(None) => return Ok(()),
            None => {
                let tools = self.read_tool_params().await;
                let declared = tools.get(tool).cloned().unwrap_or_default();
                *self.tool_params.lock() = Some((Instant::now(), tools));
                declared
            }
        };
        if declared.is_empty() {
            return Ok(());
        }
        let arguments = params.get("arguments").and_then(Value::as_object).cloned().unwrap_or_default();
        param_headers::check(&declared, &arguments, headers)
    }

    /// Every tool's `x-mcp-header` properties, from the upstream's `tools/list` (all
    /// pages, up to 20).
    async fn read_tool_params(self: &Arc<Self>) -> HashMap<String, Vec<param_headers::ParamHeader>> {
        let mut tools = HashMap::new();
        let mut cursor: Option<String> = None;
        for page in 0..20 {
            let params = match &cursor {
                Some(c) => json!({ "cursor": c }),
                None => json!({}),
            };
            let id = format!("\"sc-tools-{page}\"");
            let (list, headers) = legacy_client::envelope_request("tools/list", params, &id, &Map::new(), None, None);
            let served = match self.era().await {
                Ok(era) => self.dispatch(era, list, &headers, None).await,
                Err(e) => Err(e),
            };
            let answer = match served {
                Ok(reply) => first_response(reply, &id).await.and_then(|m| m.to_value()),
                Err(e) => {
                    tracing::debug!(upstream = %self.name, error = %e, "cannot read tools/list to check Mcp-Param headers");
                    None
                }
            };
            let Some(result) = answer.as_ref().and_then(|a| a.get("result")) else { break };
            for tool in result.get("tools").and_then(Value::as_array).into_iter().flatten() {
                if let (Some(name), Some(schema)) = (tool.get("name").and_then(Value::as_str), tool.get("inputSchema"))
                {
                    tools.insert(name.to_owned(), param_headers::declared(schema));
                }
            }
            cursor = result.get("nextCursor").and_then(Value::as_str).map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        tools
    }

    /// The least busy session of a stateless (2026-07-28) stdio upstream, opening one
    /// (no handshake) while there are fewer than `pool.max`.
    async fn modern_session(self: &Arc<Self>) -> Result<Arc<Pooled>, GatewayError> {
        const KEY: &str = "stateless";
        let max = self.pool_config.max.max(1);
        // Looked at once without the lock, then again under it: a burst of requests
        // that all found the pool short must not each open a process.
        let mut creating = None;
        loop {
            let sessions: Vec<Arc<Pooled>> = {
                let mut pools = self.pools.lock();
                let list = pools.entry(KEY.into()).or_default();
                list.retain(|p| p.session.is_alive());
                list.clone()
            };
            let least = sessions.iter().min_by_key(|p| p.busy.load(Ordering::Relaxed)).cloned();
            if let Some(p) = &least {
                if sessions.len() >= max || p.busy.load(Ordering::Relaxed) == 0 {
                    return Ok(p.clone());
                }
            }
            if creating.is_none() {
                creating = Some(self.creating.lock().await);
                continue;
            }
            let n = self.next_session.fetch_add(1, Ordering::Relaxed);
            let p = pool::open_raw(&self.upstream, format!("{}-stateless-{n}", self.name), self.events.clone()).await?;
            tracing::info!(upstream = %self.name, session = %p.tag, "stateless upstream process opened");
            self.pools.lock().entry(KEY.into()).or_default().push(p.clone());
            return Ok(p);
        }
    }

    /// `subscriptions/listen` on a stateless stdio upstream: the request goes to one of
    /// its processes under an id of the gateway's; the frames tagged with that id come
    /// back retagged with the client's; closing the client's stream sends
    /// `notifications/cancelled` for it, and the server ending it ends the client's.
    async fn listen_stdio(self: &Arc<Self>, m: Message) -> Result<McpReply, GatewayError> {
        let pooled = self.modern_session().await?;
        let client_id = m.id_key().unwrap_or("null").to_owned();
        let upstream_id = pooled.next_id("listen");
        let (tx, frames) = tokio::sync::mpsc::channel(64);
        pooled.listens.lock().insert(upstream_id.clone(), tx);
        let guard = ListenGuard { pooled: pooled.clone(), upstream_id: upstream_id.clone() };
        let replies = pooled.send(call::retarget_request(&m, &upstream_id, None)).await?.into_stream();
        let client_value = id_value(&client_id);
        let state = (frames, replies, guard, client_value, client_id, false);
        let stream =
            futures_util::stream::unfold(state, |(mut frames, mut replies, guard, value, id, done)| async move {
                if done {
                    return None;
                }
                let (m, end) = tokio::select! {
                    Some(f) = frames.recv() => {
                        if f.method() == Some("notifications/cancelled") {
                            return None; // the server ended the subscription
                        }
                        let mut params: Map<String, Value> = f.params().unwrap_or_default();
                        if let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) {
                            meta.insert(META_SUBSCRIPTION_ID.into(), value.clone());
                        }
                        (Message::notification(f.method().unwrap_or_default(), Value::Object(params)), false)
                    }
                    r = replies.next() => match r {
                        Some(r) if r.kind() == MessageKind::Response => (call::answer_with_id(&r, &id), true),
                        Some(other) => (other, false),
                        None => return None,
                    },
                };
                Some((m, (frames, replies, guard, value, id, end)))
            });
        Ok(McpReply::new(ReplyBody::Stream(Box::pin(stream))))
    }

    /// Closes idle sessions beyond `pool.min` and every session at shutdown.
    pub async fn close_idle(&self, everything: bool) {
        let idle = self.pool_config.idle_timeout;
        let mut closing = Vec::new();
        {
            let mut pools = self.pools.lock();
            for list in pools.values_mut() {
                let mut keep = Vec::new();
                for p in list.drain(..) {
                    let idle_now = p.busy.load(Ordering::Relaxed) == 0 && p.last_used.lock().elapsed() >= idle;
                    if everything || !p.session.is_alive() || (idle_now && keep.len() >= self.pool_config.min) {
                        closing.push(p);
                    } else {
                        keep.push(p);
                    }
                }
                *list = keep;
            }
        }
        for p in closing {
            if everything {
                tracing::debug!(session = %p.tag, "closing pooled upstream session");
            } else {
                tracing::info!(upstream = %self.name, session = %p.tag, "pooled upstream session closed (idle or gone)");
            }
            p.session.close().await;
        }
    }
}

/// The client capabilities a pooled session declares: the ones that let a server ask
/// the client something (`sampling`, `elicitation`, `roots`), as declared.
fn normalized_caps(caps: &Map<String, Value>) -> Map<String, Value> {
    caps.iter()
        .filter(|(k, _)| matches!(k.as_str(), "sampling" | "elicitation" | "roots"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The pool key of a capability set.
fn pool_key(caps: &Map<String, Value>) -> String {
    serde_json::to_string(&Value::Object(normalized_caps(caps))).unwrap_or_default()
}

/// A result message answering `id` (JSON text).
fn result_message(id: Option<&str>, result: Map<String, Value>) -> Message {
    let id = id.and_then(|i| serde_json::from_str::<Value>(i).ok()).unwrap_or(Value::Null);
    Message::from_value(&json!({"jsonrpc": "2.0", "id": id, "result": result}))
}

/// Waits for the response with id `id` (JSON text) in a reply.
pub(crate) async fn first_response(reply: McpReply, id: &str) -> Option<Message> {
    match reply.body {
        ReplyBody::Message(m) => (m.kind() == MessageKind::Response).then_some(m),
        ReplyBody::Accepted => None,
        body @ (ReplyBody::Stream(_) | ReplyBody::Resumed(_)) => {
            let mut s = McpReply::new(body).into_stream();
            while let Some(m) = s.next().await {
                if m.kind() == MessageKind::Response && m.id_key() == Some(id) {
                    return Some(m);
                }
            }
            None
        }
    }
}

/// A modern upstream's `server/discover` answer, its `supportedVersions` widened to
/// every version the gateway serves (a session-era client on this route is served
/// too: by the upstream itself, or by the gateway).
async fn widen_discover(reply: McpReply) -> McpReply {
    let widen = |m: Message| -> Message {
        let Some(mut v) = m.to_value() else { return m };
        let Some(list) = v.pointer_mut("/result/supportedVersions").and_then(Value::as_array_mut) else { return m };
        for version in ProtocolVersion::ALL {
            if !list.iter().any(|x| x == version.as_str()) {
                list.push(json!(version.as_str()));
            }
        }
        Message::from_value(&v)
    };
    match reply.body {
        ReplyBody::Message(m) => McpReply::new(ReplyBody::Message(widen(m))),
        ReplyBody::Stream(s) => McpReply::new(ReplyBody::Stream(Box::pin(s.map(move |m| {
            if m.kind() == MessageKind::Response {
                widen(m)
            } else {
                m
            }
        })))),
        ReplyBody::Accepted | ReplyBody::Resumed(_) => reply,
    }
}
