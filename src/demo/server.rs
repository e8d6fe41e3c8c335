//! MCP method dispatch: lifecycle (`initialize`, `ping`), logging, and the routing of the
//! tools, resources, prompts and completion methods to their modules.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::message::{RpcError, METHOD_NOT_FOUND};
use super::rpc::{Peer, RequestCtx};
use super::session::LogLevel;
use super::{completion, prompts, resources, tools};

/// Protocol revisions this server speaks, newest last.
pub(crate) const SUPPORTED_VERSIONS: [&str; 3] = ["2025-03-26", "2025-06-18", "2025-11-25"];
/// What the server answers when the client asks for a version it does not know.
pub(crate) const LATEST_VERSION: &str = "2025-11-25";
/// `serverInfo.name`.
pub(crate) const SERVER_NAME: &str = "shadowcat-demo";
/// `logger` of the log notifications this server sends.
pub(crate) const LOGGER: &str = "shadowcat-demo";

/// The params of a request as an object; absent or `null` params read as `{}`.
pub(crate) type Params = Map<String, Value>;

fn params_object(params: Option<Value>) -> Result<Params, RpcError> {
    match params {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(object)) => Ok(object),
        Some(_) => Err(RpcError::invalid_params("params must be an object")),
    }
}

/// A required string member of `params`, or -32602.
pub(crate) fn required_str<'a>(params: &'a Params, name: &str) -> Result<&'a str, RpcError> {
    params
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::invalid_params(format!("missing or non-string `{name}`")))
}

/// Runs one request; the runtime sends back what this returns.
pub(crate) async fn handle_request(ctx: &RequestCtx, method: &str, params: Option<Value>) -> Result<Value, RpcError> {
    let params = params_object(params)?;
    let session = &ctx.peer.session;
    match method {
        "initialize" => initialize(&ctx.peer, &params),
        "ping" => Ok(json!({})),
        "logging/setLevel" => {
            let name = required_str(&params, "level")?;
            let level =
                LogLevel::parse(name).ok_or_else(|| RpcError::invalid_params(format!("unknown log level `{name}`")))?;
            session.set_log_level(level);
            Ok(json!({}))
        }
        "tools/list" => Ok(json!({ "tools": tools::definitions(session) })),
        "tools/call" => tools::call(ctx, &params).await,
        "resources/list" => Ok(json!({ "resources": resources::list() })),
        "resources/templates/list" => Ok(json!({ "resourceTemplates": resources::templates() })),
        "resources/read" => resources::read(required_str(&params, "uri")?),
        "resources/subscribe" => {
            session.subscribe(required_str(&params, "uri")?);
            Ok(json!({}))
        }
        "resources/unsubscribe" => {
            session.unsubscribe(required_str(&params, "uri")?);
            Ok(json!({}))
        }
        "prompts/list" => Ok(json!({ "prompts": prompts::definitions(session) })),
        "prompts/get" => prompts::get(ctx, &params).await,
        "completion/complete" => completion::complete(&params),
        _ => Err(RpcError::new(METHOD_NOT_FOUND, format!("method not found: {method}"))),
    }
}

fn initialize(peer: &Peer, params: &Params) -> Result<Value, RpcError> {
    let requested = params.get("protocolVersion").and_then(Value::as_str);
    let version = requested.filter(|v| SUPPORTED_VERSIONS.contains(v)).unwrap_or(LATEST_VERSION);
    let capabilities = match params.get("capabilities") {
        Some(Value::Object(caps)) => Value::Object(caps.clone()),
        _ => json!({}),
    };
    peer.session.initialized(capabilities);
    Ok(json!({
        "protocolVersion": version,
        "capabilities": {
            "tools": { "listChanged": true },
            "resources": { "subscribe": true, "listChanged": true },
            "prompts": { "listChanged": true },
            "logging": {},
            "completions": {},
        },
        "serverInfo": { "name": SERVER_NAME, "version": env!("CARGO_PKG_VERSION") },
        "instructions": "Shadowcat's demo MCP server: echo/add/slow tools, the MCP conformance \
                         fixtures (test_*, including those the 2026-07-28 scenarios call), demo:// \
                         and test:// resources, and prompts.",
    }))
}

/// Handles a client notification; notifications never get an answer.
pub(crate) fn handle_notification(peer: &Arc<Peer>, method: &str, params: Option<Value>) {
    match method {
        "notifications/cancelled" => {
            if let Some(id) = params.as_ref().and_then(|p| p.get("requestId")) {
                if !peer.cancel(id) {
                    eprintln!("shadowcat-demo: cancellation for unknown or finished request {id}");
                }
            }
        }
        "notifications/initialized" | "notifications/roots/list_changed" | "notifications/progress" => {}
        other => eprintln!("shadowcat-demo: ignoring notification {other}"),
    }
}

/// Sends `notifications/message` unless `level` is below the level set by `logging/setLevel`.
/// Returns whether it was sent.
pub(crate) async fn log(ctx: &RequestCtx, level: LogLevel, data: Value) -> bool {
    if !ctx.peer.session.log_enabled(level) {
        return false;
    }
    let params = json!({ "level": level.as_str(), "logger": LOGGER, "data": data });
    ctx.peer.notify("notifications/message", params).await;
    true
}

/// Sends a request to the client, first checking that it declared `capability`.
pub(crate) async fn ask_client(
    ctx: &RequestCtx,
    capability: &str,
    method: &str,
    params: Value,
) -> Result<Value, String> {
    if !ctx.peer.session.client_supports(capability) {
        return Err(format!("the client did not declare the `{capability}` capability"));
    }
    ctx.peer
        .request(method, params)
        .await
        .map_err(|error| format!("{method} failed: {} (code {})", error.message, error.code))
}
