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
mod discovery;
pub mod legacy_client;
mod listen;
pub mod param_headers;
pub mod pool;
pub mod seal;
pub mod stamp;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use parking_lot::Mutex;
use serde_json::{Map, Value};
use tokio::sync::broadcast;

use crate::config::{BridgeConfig, EraSetting, PoolConfig};
use crate::error::GatewayError;
use crate::protocol::modern::{self, Envelope};
use crate::protocol::Message;
use crate::reply::McpReply;
use crate::upstream::era::Era;
use crate::upstream::Upstream;
use discovery::widen_discover;
use pool::{Facts, Pooled};
use seal::Sealer;
use stamp::Stamp;

/// Longest wait for a pooled session's input slot when the pool is full.
pub(crate) const SLOT_WAIT: Duration = Duration::from_secs(30);

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
    tool_params: Mutex<Option<discovery::ToolParams>>,
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
        let bridge = Arc::new(Bridge {
            name: name.into(),
            upstream,
            era_setting,
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

    /// For a session-era client's `initialize`: the upstream's own session when it
    /// serves that era, else a session the gateway owns on the modern-only upstream.
    /// An HTTP upstream's era is probed now if unknown (a probe without a verdict: the
    /// session goes upstream as is); a stdio upstream's is not probed here (that would
    /// start a process), so it is used only when pinned or already probed.
    pub async fn open_session(self: &Arc<Self>, tag: &str) -> Result<crate::upstream::UpstreamSession, GatewayError> {
        let era = self.upstream.era_without_spawning().await;
        if era.is_some_and(|era| !era.serves_legacy()) {
            let session = legacy_client::ModernSession::open(self.clone(), tag).await?;
            return Ok(crate::upstream::UpstreamSession::new(legacy_client::OwnedSession(session)));
        }
        self.upstream.open(tag, crate::upstream::WireOrigin::ClientSession).await
    }

    /// Serves one checked stateless request.
    /// `client` identifies the client for per-client bounds; `principal` is who the
    /// `auth` stage verified, whose the `requestState` of an emulated
    /// multi-round-trip call is (another principal presenting it is refused).
    pub async fn serve(
        self: &Arc<Self>,
        m: Message,
        headers: &HeaderMap,
        client: Option<Arc<str>>,
        principal: Option<Arc<str>>,
    ) -> Result<McpReply, GatewayError> {
        let era = self.era().await?;
        let checks_headers = !(era.is_modern() && self.upstream.receives_headers());
        // Only requests that came over HTTP have headers to check (`client` is their peer).
        if checks_headers && client.is_some() && m.method() == Some("tools/call") {
            self.check_param_headers(&m, headers).await?;
        }
        self.dispatch(era, m, headers, client, principal).await
    }

    /// Serves a checked stateless request by the upstream's era.
    async fn dispatch(
        self: &Arc<Self>,
        era: Era,
        m: Message,
        headers: &HeaderMap,
        client: Option<Arc<str>>,
        principal: Option<Arc<str>>,
    ) -> Result<McpReply, GatewayError> {
        match era {
            Era::Modern { .. } if self.upstream.takes_stateless_requests() => {
                let is_discover = m.method() == Some("server/discover");
                let reply = self.upstream.send_stateless(m, headers).await?;
                Ok(if is_discover { widen_discover(reply).await } else { reply })
            }
            // A dual-era server that needs a session (a process): served through the
            // pool in its session era (stateless stdio pass-through is not built).
            era @ Era::Modern { .. } if era.serves_legacy() => self.serve_legacy(m, headers, client, principal).await,
            // A 2026-07-28-only server that needs a session: pooled processes spoken
            // to statelessly.
            Era::Modern { .. } => match m.method() {
                Some("subscriptions/listen") => self.listen_stdio(m).await,
                Some("server/discover") => Ok(widen_discover(call::start_modern(self.clone(), m).await?).await),
                _ => call::start_modern(self.clone(), m).await,
            },
            Era::Legacy => self.serve_legacy(m, headers, client, principal).await,
        }
    }

    async fn serve_legacy(
        self: &Arc<Self>,
        m: Message,
        headers: &HeaderMap,
        client: Option<Arc<str>>,
        principal: Option<Arc<str>>,
    ) -> Result<McpReply, GatewayError> {
        let envelope = Envelope::of(&m).map_err(|e| GatewayError::InvalidParams(e.to_string()))?;
        let method = m.method().unwrap_or_default().to_owned();
        match method.as_str() {
            "server/discover" => self.discover(&m).await,
            "subscriptions/listen" => self.listen(&m).await,
            _ if modern::INPUT_METHODS.contains(&method.as_str()) => {
                call::start(self.clone(), m, envelope, true, (client, principal), headers).await
            }
            _ if modern::CLIENT_METHODS.contains(&method.as_str()) => {
                call::start(self.clone(), m, envelope, false, (client, principal), headers).await
            }
            _ => Err(GatewayError::MethodNotFound(format!("{method} is not served by this upstream"))),
        }
    }
}

/// A result message answering `id` (JSON text).
fn result_message(id: Option<&str>, result: Map<String, Value>) -> Message {
    Message::result_response(id, &Value::Object(result))
}
