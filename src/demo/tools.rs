//! `tools/list` and `tools/call`: the demo's own tools, and the dispatch to the conformance
//! fixtures in [`super::conformance`].
//!
//! A tool's own failure (bad arguments, a refused sampling request) is a tool result with
//! `isError: true`; only an unknown tool or malformed `tools/call` params are JSON-RPC errors.

use std::time::Duration;

use serde_json::{json, Map, Number, Value};

use super::client_requests::{self, Elicited};
use super::message::RpcError;
use super::rpc::RequestCtx;
use super::server::{self, required_str, Params};
use super::session::{LogLevel, Session};
use super::{conformance, diagnostics, input_required, resources};

/// What a tool body returns: a `CallToolResult`, or a message for an `isError` result.
pub(crate) type ToolOutcome = Result<Value, String>;

const SLOW_MAX_STEPS: u64 = 1_000;
const SLOW_MAX_DELAY_MS: u64 = 60_000;

/// A result with one text block.
pub(crate) fn text_result(text: impl Into<String>) -> Value {
    json!({ "content": [{ "type": "text", "text": text.into() }] })
}

/// A tool execution error: `isError: true` with the message as text.
pub(crate) fn tool_error(message: impl Into<String>) -> Value {
    json!({ "isError": true, "content": [{ "type": "text", "text": message.into() }] })
}

/// A required string argument.
pub(crate) fn arg_str<'a>(args: &'a Params, name: &str) -> Result<&'a str, String> {
    match args.get(name) {
        Some(Value::String(value)) => Ok(value),
        Some(_) => Err(format!("argument `{name}` must be a string")),
        None => Err(format!("missing required argument `{name}`")),
    }
}

fn arg_number<'a>(args: &'a Params, name: &str) -> Result<&'a Number, String> {
    match args.get(name) {
        Some(Value::Number(value)) => Ok(value),
        Some(_) => Err(format!("argument `{name}` must be a number")),
        None => Err(format!("missing required argument `{name}`")),
    }
}

fn arg_u64_or(args: &Params, name: &str, default: u64, max: u64) -> Result<u64, String> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(value) => value
            .as_u64()
            .filter(|v| *v <= max)
            .ok_or_else(|| format!("argument `{name}` must be an integer from 0 to {max}")),
    }
}

fn object_schema(properties: Value, required: &[&str]) -> Value {
    json!({ "type": "object", "properties": properties, "required": required })
}

/// Every tool of this session, for `tools/list`.
pub(crate) fn definitions(session: &Session) -> Vec<Value> {
    let mut tools = vec![
        json!({
            "name": "echo",
            "description": "Returns `message` unchanged as text.",
            "inputSchema": object_schema(json!({ "message": { "type": "string", "description": "Text to echo back" } }), &["message"]),
        }),
        json!({
            "name": "test_url_elicitation_required",
            "description": "First call in a session: error -32042 (URL elicitation required); then `authorized`.",
            "inputSchema": object_schema(json!({}), &[]),
        }),
        json!({
            "name": "add",
            "description": "Adds two numbers; returns the sum as text and as structuredContent.sum.",
            "inputSchema": object_schema(json!({
                "a": { "type": "number", "description": "First addend" },
                "b": { "type": "number", "description": "Second addend" },
            }), &["a", "b"]),
            "outputSchema": object_schema(json!({ "sum": { "type": "number", "description": "a + b" } }), &["sum"]),
        }),
        json!({
            "name": "slow",
            "description": "Takes `steps` steps of `delay_ms` each, reporting progress after each; stops when cancelled.",
            "inputSchema": object_schema(json!({
                "steps": { "type": "integer", "minimum": 0, "maximum": SLOW_MAX_STEPS, "default": 5, "description": "Number of steps" },
                "delay_ms": { "type": "integer", "minimum": 0, "maximum": SLOW_MAX_DELAY_MS, "default": 100, "description": "Milliseconds per step" },
            }), &[]),
        }),
        json!({
            "name": "sample",
            "description": "Asks the client's model (sampling/createMessage) to answer `prompt` and returns its text.",
            "inputSchema": object_schema(json!({ "prompt": { "type": "string", "description": "Prompt for the model" } }), &["prompt"]),
        }),
        json!({
            "name": "elicit",
            "description": "Asks the user (elicitation/create) to fill a small form and returns the action and content.",
            "inputSchema": object_schema(json!({ "message": { "type": "string", "description": "Message shown to the user" } }), &["message"]),
        }),
        json!({
            "name": "roots",
            "description": "Lists the client's roots (roots/list) as JSON text.",
            "inputSchema": object_schema(json!({}), &[]),
        }),
        json!({
            "name": "log",
            "description": "Sends one log notification at each of debug, info, warning and error, honouring logging/setLevel.",
            "inputSchema": object_schema(json!({}), &[]),
        }),
        json!({
            "name": "touch_resource",
            "description": "Marks resource `uri` as changed: subscribers get notifications/resources/updated.",
            "inputSchema": object_schema(json!({ "uri": { "type": "string", "description": "URI of the changed resource" } }), &["uri"]),
        }),
    ];
    tools.extend(conformance::definitions());
    tools.extend(input_required::definitions());
    tools.extend(diagnostics::definitions(session));
    tools
}

/// `tools/call`.
pub(crate) async fn call(ctx: &RequestCtx, params: &Params) -> Result<Value, RpcError> {
    let name = required_str(params, "name")?;
    let args = match params.get("arguments") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(args)) => args.clone(),
        Some(_) => return Err(RpcError::invalid_params("arguments must be an object")),
    };
    let outcome = match name {
        "echo" => arg_str(&args, "message").map(text_result),
        "add" => add(&args),
        "slow" => slow(ctx, &args).await,
        "sample" => sample(ctx, &args).await,
        "elicit" => elicit(ctx, &args).await,
        "roots" => roots(ctx).await,
        "log" => log_levels(ctx).await,
        "touch_resource" => touch_resource(ctx, &args).await,
        "test_url_elicitation_required" => return url_elicitation_required(ctx),
        _ => match call_fixture(ctx, name, &args).await {
            Some(outcome) => outcome,
            None => return Err(RpcError::invalid_params(format!("Unknown tool: {name}"))),
        },
    };
    Ok(outcome.unwrap_or_else(tool_error))
}

/// A 2025-11-25 URL-mode elicitation the server needs before it can answer: the first
/// call in a session fails with -32042 naming the URL; later calls succeed (the user
/// is taken to have visited it).
fn url_elicitation_required(ctx: &RequestCtx) -> Result<Value, RpcError> {
    if ctx.peer.session.visit_url() {
        return Ok(text_result("authorized"));
    }
    Err(RpcError::new(-32042, "URL elicitation required").with_data(json!({ "elicitations": [{
        "mode": "url",
        "elicitationId": "demo-authorize-1",
        "url": "https://auth.example/authorize?session=demo",
        "message": "Authorize the demo server",
    }]})))
}

/// Runs conformance fixture `name`; `None` if there is no such fixture (in this session).
async fn call_fixture(ctx: &RequestCtx, name: &str, args: &Params) -> Option<ToolOutcome> {
    if let Some(outcome) = conformance::call(ctx, name, args).await {
        return Some(outcome);
    }
    if let Some(outcome) = input_required::call(ctx, name).await {
        return Some(outcome);
    }
    diagnostics::call(ctx, name).await
}

fn add(args: &Params) -> ToolOutcome {
    let (a, b) = (arg_number(args, "a")?, arg_number(args, "b")?);
    let integer_sum = match (a.as_i64(), b.as_i64()) {
        (Some(a), Some(b)) => a.checked_add(b).map(Number::from),
        _ => None,
    };
    let sum = match integer_sum {
        Some(sum) => sum,
        None => {
            let (a, b) = (a.as_f64().unwrap_or(f64::NAN), b.as_f64().unwrap_or(f64::NAN));
            Number::from_f64(a + b).ok_or("the sum is not a finite number")?
        }
    };
    Ok(json!({
        "content": [{ "type": "text", "text": sum.to_string() }],
        "structuredContent": { "sum": sum },
    }))
}

async fn slow(ctx: &RequestCtx, args: &Params) -> ToolOutcome {
    let steps = arg_u64_or(args, "steps", 5, SLOW_MAX_STEPS)?;
    let delay = Duration::from_millis(arg_u64_or(args, "delay_ms", 100, SLOW_MAX_DELAY_MS)?);
    for step in 1..=steps {
        tokio::time::sleep(delay).await;
        let message = format!("step {step} of {steps}");
        ctx.progress(step, Some(steps), Some(message)).await;
    }
    Ok(text_result(format!("done after {steps} steps")))
}

async fn sample(ctx: &RequestCtx, args: &Params) -> ToolOutcome {
    let prompt = arg_str(args, "prompt")?;
    client_requests::sample(ctx, prompt, 100, None).await.map(text_result)
}

async fn elicit(ctx: &RequestCtx, args: &Params) -> ToolOutcome {
    let message = arg_str(args, "message")?;
    let schema = object_schema(
        json!({
            "name": { "type": "string", "title": "Name", "description": "Your name" },
            "confirm": { "type": "boolean", "title": "Confirm", "description": "Go ahead?", "default": true },
        }),
        &["name"],
    );
    let Elicited { action, content } = client_requests::elicit(ctx, message, schema, None).await?;
    Ok(text_result(format!("action={action}, content={content}")))
}

async fn roots(ctx: &RequestCtx) -> ToolOutcome {
    let result = server::ask_client(ctx, "roots", "roots/list", json!({})).await?;
    let roots = result.get("roots").cloned().unwrap_or_else(|| json!([]));
    Ok(text_result(roots.to_string()))
}

async fn log_levels(ctx: &RequestCtx) -> ToolOutcome {
    let levels = [LogLevel::Debug, LogLevel::Info, LogLevel::Warning, LogLevel::Error];
    let mut sent = 0;
    for level in levels {
        let data = json!(format!("demo log message at level {}", level.as_str()));
        if server::log(ctx, level, data).await {
            sent += 1;
        }
    }
    Ok(text_result(format!("sent {sent} of {} log messages", levels.len())))
}

async fn touch_resource(ctx: &RequestCtx, args: &Params) -> ToolOutcome {
    let uri = arg_str(args, "uri")?;
    if resources::notify_updated(ctx, uri).await {
        Ok(text_result(format!("notified subscribers of {uri}")))
    } else {
        Ok(text_result(format!("{uri} has no subscribers; nothing sent")))
    }
}
