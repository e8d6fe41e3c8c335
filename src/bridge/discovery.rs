//! What the bridge learns about its upstream, and what it tells clients about it.
//!
//! The upstream's era (pinned, or probed once); the facts it gave at initialize and the
//! `server/discover` answer built from them (or, from a modern upstream, its own
//! answer widened to every version the gateway serves); and the tools' `x-mcp-header`
//! declarations, read from `tools/list`, that a `tools/call`'s `Mcp-Param-*` headers
//! are checked against.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use http::HeaderMap;
use serde_json::{json, Map, Value};

use super::pool::Facts;
use super::stamp::Stamp;
use super::{legacy_client, param_headers, result_message, Bridge};
use crate::config::EraSetting;
use crate::error::GatewayError;
use crate::protocol::{Message, MessageKind, ProtocolVersion};
use crate::reply::{McpReply, ReplyBody};
use crate::upstream::era::Era;

/// When the tools were read, and each tool's `x-mcp-header` properties.
pub(super) type ToolParams = (Instant, HashMap<String, Vec<param_headers::ParamHeader>>);

/// How long the tools' `x-mcp-header` declarations are trusted before `tools/list` is
/// read again (a `tools/list_changed` seen from the upstream forgets them at once).
const TOOL_PARAMS_MAX_AGE: Duration = Duration::from_secs(30);

// === impl Bridge: the era ===

impl Bridge {
    /// The upstream's era (kept by the upstream: pinned, cached, or probed now).
    pub async fn era(&self) -> Result<Era, GatewayError> {
        self.upstream.era().await
    }

    /// Whether this bridge was told the era rather than probing it.
    pub fn era_pinned(&self) -> bool {
        self.era_setting != EraSetting::Auto
    }
}

// === impl Bridge: facts and server/discover ===

impl Bridge {
    /// The stamp for results of this upstream.
    pub(super) fn stamp(&self, facts: &Facts) -> Stamp {
        Stamp {
            server_info: facts.server_info.clone(),
            ttl_ms: self.settings.config.cache_ttl_ms,
            scope: self.settings.config.cache_scope,
        }
    }

    /// What the upstream said at initialize (initializing a session if none has been).
    pub(super) async fn facts(self: &Arc<Self>) -> Result<Facts, GatewayError> {
        if let Some(f) = self.facts.lock().clone() {
            return Ok(f);
        }
        self.session_for(&Map::new(), false, None).await?;
        self.facts.lock().clone().ok_or_else(|| GatewayError::Internal("no facts after initialize".into()))
    }

    /// The capabilities the gateway advertises for this upstream: the upstream's
    /// (`resources.subscribe` is served as `resourceSubscriptions` of a listen).
    pub(super) fn advertised(facts: &Facts) -> Map<String, Value> {
        facts.capabilities.clone()
    }

    /// `server/discover` on a legacy upstream: answered from its initialize result.
    pub(super) async fn discover(self: &Arc<Self>, m: &Message) -> Result<McpReply, GatewayError> {
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
}

/// A modern upstream's `server/discover` answer, its `supportedVersions` widened to
/// every version the gateway serves (a session-era client on this route is served
/// too: by the upstream itself, or by the gateway).
pub(super) async fn widen_discover(reply: McpReply) -> McpReply {
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
        ReplyBody::Accepted => reply,
    }
}

// === impl Bridge: the tools' x-mcp-header declarations ===

impl Bridge {
    /// Checks a `tools/call`'s `Mcp-Param-*` headers against its arguments, as the
    /// tool's `x-mcp-header` properties require (read from the upstream's `tools/list`,
    /// kept [`TOOL_PARAMS_MAX_AGE`]). If the list cannot be read, nothing is checked.
    pub(super) async fn check_param_headers(
        self: &Arc<Self>,
        m: &Message,
        headers: &HeaderMap,
    ) -> Result<(), GatewayError> {
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
                Ok(era) => self.dispatch(era, list, &headers, None, None).await,
                Err(e) => Err(e),
            };
            let answer = match served {
                Ok(reply) => reply.first_response(&id).await.and_then(|m| m.to_value()),
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
}
