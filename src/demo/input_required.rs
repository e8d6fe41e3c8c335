//! The tools and the prompt that the 2026-07-28 conformance scenarios
//! `input-required-result-*` call, written as a legacy server.
//!
//! Each one makes real server-to-client requests while the call runs, tagged with the
//! `inputRequests` key a bridging gateway should give them (see [`super::client_requests`]),
//! and completes once they are answered. Shadowcat's bridge turns those requests into an
//! `input_required` result for a 2026 client and feeds the client's `inputResponses` back as
//! their JSON-RPC responses, so one upstream call can span several client rounds: requests
//! made concurrently form one round, requests made one after another form several.
//!
//! | tool | requests (key) |
//! |---|---|
//! | `test_input_required_result_elicitation` | elicitation `user_name` |
//! | `test_input_required_result_sampling` | sampling `capital_question` |
//! | `test_input_required_result_list_roots` | roots `client_roots` |
//! | `test_input_required_result_request_state`, `…_tampered_state` | elicitation `confirm` |
//! | `test_input_required_result_multiple_inputs` | `user_name`, `greeting`, `client_roots` at once |
//! | `test_input_required_result_multi_round` | elicitation `step1`, then `step2` |
//! | `test_input_required_result_capabilities` | those of `user_name`, `greeting`, `client_roots` the client declared |
//! | prompt `test_input_required_result_prompt` | elicitation `user_context` |

use serde_json::{json, Value};

use super::client_requests::{elicit, list_roots, one_field_form, sample};
use super::conformance::{no_arguments, tool};
use super::message::{RpcError, INTERNAL_ERROR};
use super::rpc::RequestCtx;
use super::tools::{text_result, ToolOutcome};

/// The prompt that needs an elicitation before it can be built.
pub(crate) const PROMPT: &str = "test_input_required_result_prompt";

const NAME_QUESTION: &str = "What is your name?";
const GREETING_PROMPT: &str = "Generate a greeting";

fn name_form() -> Value {
    one_field_form("name", "string")
}

/// The fixture tools, for `tools/list`.
pub(crate) fn definitions() -> Vec<Value> {
    [
        ("test_input_required_result_elicitation", "Asks the user's name (elicitation, key user_name) and greets them"),
        (
            "test_input_required_result_sampling",
            "Asks the model for the capital of France (sampling, key capital_question)",
        ),
        ("test_input_required_result_list_roots", "Lists the client's roots (roots/list, key client_roots)"),
        (
            "test_input_required_result_request_state",
            "Asks for a confirmation (elicitation, key confirm); answers state-ok when confirmed",
        ),
        (
            "test_input_required_result_multiple_inputs",
            "Asks for a name, a sampled greeting and the roots at once (keys user_name, greeting, client_roots)",
        ),
        (
            "test_input_required_result_multi_round",
            "Asks for a name (key step1), then for a colour (key step2), one after the other",
        ),
        (
            "test_input_required_result_tampered_state",
            "Asks for a confirmation (elicitation, key confirm); answers state-ok when confirmed",
        ),
        (
            "test_input_required_result_capabilities",
            "Asks only for the inputs the client declared capabilities for (keys user_name, greeting, client_roots)",
        ),
    ]
    .into_iter()
    .map(|(name, description)| tool(name, description, no_arguments()))
    .collect()
}

/// Runs fixture tool `name`; `None` if there is no such fixture.
pub(crate) async fn call(ctx: &RequestCtx, name: &str) -> Option<ToolOutcome> {
    Some(match name {
        "test_input_required_result_elicitation" => greet(ctx).await,
        "test_input_required_result_sampling" => {
            let prompt = "What is the capital of France?";
            sample(ctx, prompt, 100, Some("capital_question")).await.map(|text| text_result(format!("Sampled: {text}")))
        }
        "test_input_required_result_list_roots" => {
            list_roots(ctx, Some("client_roots")).await.map(|roots| text_result(format!("Roots: {}", describe(&roots))))
        }
        "test_input_required_result_request_state" | "test_input_required_result_tampered_state" => confirm(ctx).await,
        "test_input_required_result_multiple_inputs" => multiple_inputs(ctx).await,
        "test_input_required_result_multi_round" => multi_round(ctx).await,
        "test_input_required_result_capabilities" => declared_inputs(ctx).await,
        _ => return None,
    })
}

/// `roots` as `name <uri>` (or just the uri), comma-separated.
fn describe(roots: &[Value]) -> String {
    if roots.is_empty() {
        return "(none)".into();
    }
    let describe_one = |root: &Value| {
        let uri = root.get("uri").and_then(Value::as_str).unwrap_or("?");
        match root.get("name").and_then(Value::as_str) {
            Some(name) => format!("{name} <{uri}>"),
            None => uri.to_string(),
        }
    };
    roots.iter().map(describe_one).collect::<Vec<_>>().join(", ")
}

async fn greet(ctx: &RequestCtx) -> ToolOutcome {
    let answer = elicit(ctx, NAME_QUESTION, name_form(), Some("user_name")).await?;
    Ok(text_result(format!("Hello, {}!", answer.accepted_str("name")?)))
}

async fn confirm(ctx: &RequestCtx) -> ToolOutcome {
    let answer = elicit(ctx, "Please confirm", one_field_form("ok", "boolean"), Some("confirm")).await?;
    match answer.accepted()?.get("ok") {
        Some(Value::Bool(true)) => Ok(text_result("state-ok: confirmed")),
        Some(Value::Bool(false)) => Err("not confirmed (ok=false)".into()),
        _ => Err("the accepted form has no boolean `ok`".into()),
    }
}

/// Fails, before asking anything, unless the client declared every one of `capabilities`.
fn require(ctx: &RequestCtx, capabilities: &[&str]) -> Result<(), String> {
    let missing: Vec<&str> =
        capabilities.iter().copied().filter(|name| !ctx.peer.session.client_supports(name)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("the client did not declare the capabilities this tool needs: {}", missing.join(", ")))
    }
}

/// All three requests are outstanding at once, so a bridge can gather them into one round.
async fn multiple_inputs(ctx: &RequestCtx) -> ToolOutcome {
    require(ctx, &["elicitation", "sampling", "roots"])?;
    let (name, greeting, roots) = tokio::join!(
        elicit(ctx, NAME_QUESTION, name_form(), Some("user_name")),
        sample(ctx, GREETING_PROMPT, 50, Some("greeting")),
        list_roots(ctx, Some("client_roots")),
    );
    let (name, greeting, roots) = (name?, greeting?, roots?);
    let name = name.accepted_str("name")?;
    Ok(text_result(format!("All inputs received: name={name}, greeting={greeting}, roots={}", describe(&roots))))
}

/// The second question is asked only once the first is answered: two rounds for a bridge.
async fn multi_round(ctx: &RequestCtx) -> ToolOutcome {
    let step1 = elicit(ctx, "Step 1: What is your name?", name_form(), Some("step1")).await?;
    let name = step1.accepted_str("name")?;
    let color_form = one_field_form("color", "string");
    let step2 = elicit(ctx, "Step 2: What is your favorite color?", color_form, Some("step2")).await?;
    Ok(text_result(format!("Done: {name} likes {}", step2.accepted_str("color")?)))
}

/// Asks, at once, for whichever of a name, a greeting and the roots the client can answer.
async fn declared_inputs(ctx: &RequestCtx) -> ToolOutcome {
    let declared = |name| ctx.peer.session.client_supports(name);
    let (ask_name, ask_greeting, ask_roots) = (declared("elicitation"), declared("sampling"), declared("roots"));
    if !(ask_name || ask_greeting || ask_roots) {
        return Err("the client declared none of the elicitation, sampling and roots capabilities".into());
    }
    let (name, greeting, roots) = tokio::join!(
        async {
            if ask_name {
                Some(elicit(ctx, NAME_QUESTION, name_form(), Some("user_name")).await)
            } else {
                None
            }
        },
        async {
            if ask_greeting {
                Some(sample(ctx, GREETING_PROMPT, 50, Some("greeting")).await)
            } else {
                None
            }
        },
        async {
            if ask_roots {
                Some(list_roots(ctx, Some("client_roots")).await)
            } else {
                None
            }
        },
    );
    let mut received = Vec::new();
    if let Some(name) = name {
        received.push(format!("name={}", name?.accepted_str("name")?));
    }
    if let Some(greeting) = greeting {
        received.push(format!("greeting={}", greeting?));
    }
    if let Some(roots) = roots {
        received.push(format!("roots={}", describe(&roots?)));
    }
    Ok(text_result(format!("capability-scoped inputs received: {}", received.join(", "))))
}

/// `prompts/get` of [`PROMPT`]; a failed elicitation is -32603 (a prompt has no `isError`).
pub(crate) async fn prompt(ctx: &RequestCtx) -> Result<Value, RpcError> {
    let question = "What context should the prompt use?";
    let context = async {
        let answer = elicit(ctx, question, one_field_form("context", "string"), Some("user_context")).await?;
        answer.accepted_str("context").map(str::to_string)
    }
    .await
    .map_err(|error| RpcError::new(INTERNAL_ERROR, format!("prompt {PROMPT}: {error}")))?;
    Ok(json!({
        "description": "A prompt built from context the user supplied",
        "messages": [{ "role": "user", "content": { "type": "text", "text": format!("Context: {context}") } }],
    }))
}
