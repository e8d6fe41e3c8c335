//! The diagnostic tools of the 2026-07-28 conformance scenarios (`server-stateless` and the
//! `subscriptions/listen` tests), written as a legacy server, plus the tool and the prompt
//! that the two list-change triggers add and remove.

use serde_json::{json, Value};

use super::client_requests::{elicit, one_field_form, sampled_text, sampling_params};
use super::conformance::{no_arguments, tool};
use super::rpc::RequestCtx;
use super::server;
use super::session::{LogLevel, Session};
use super::tools::{text_result, ToolOutcome};

/// Listed while `test_trigger_tool_change` has added it.
pub(crate) const DYNAMIC_TOOL: &str = "test_dynamic_tool";
/// Listed while `test_trigger_prompt_change` has added it.
pub(crate) const DYNAMIC_PROMPT: &str = "test_dynamic_prompt";

/// The diagnostic tools, and the dynamic tool if this session lists it, for `tools/list`.
pub(crate) fn definitions(session: &Session) -> Vec<Value> {
    let mut tools = vec![
        tool(
            "test_missing_capability",
            "Asks for sampling (key needs_sampling) even when the client did not declare it",
            no_arguments(),
        ),
        tool(
            "test_streaming_elicitation",
            "Asks for a stream name (elicitation, key stream_name) while the call runs",
            no_arguments(),
        ),
        tool("test_logging_tool", "Sends two info log notifications while it runs", no_arguments()),
        tool(
            "test_trigger_tool_change",
            "Adds or removes tool test_dynamic_tool and sends notifications/tools/list_changed",
            no_arguments(),
        ),
        tool(
            "test_trigger_prompt_change",
            "Adds or removes prompt test_dynamic_prompt and sends notifications/prompts/list_changed",
            no_arguments(),
        ),
    ];
    if session.has_dynamic_tool() {
        tools.push(tool(DYNAMIC_TOOL, "A tool added by test_trigger_tool_change", no_arguments()));
    }
    tools
}

/// Runs diagnostic tool `name`; `None` if there is no such tool (in this session).
pub(crate) async fn call(ctx: &RequestCtx, name: &str) -> Option<ToolOutcome> {
    Some(match name {
        "test_missing_capability" => sample_regardless(ctx).await,
        "test_streaming_elicitation" => {
            let question = "What name should the stream use?";
            match elicit(ctx, question, one_field_form("name", "string"), Some("stream_name")).await {
                Ok(answer) => answer.accepted_str("name").map(|name| text_result(format!("Stream name: {name}"))),
                Err(error) => Err(error),
            }
        }
        "test_logging_tool" => {
            for message in ["Tool execution started", "Tool execution completed"] {
                server::log(ctx, LogLevel::Info, json!(message)).await;
            }
            Ok(text_result("Tool with logging executed successfully"))
        }
        "test_trigger_tool_change" => {
            let listed = ctx.peer.session.toggle_dynamic_tool();
            ctx.peer.notify("notifications/tools/list_changed", json!({})).await;
            Ok(text_result(format!("{} tool {DYNAMIC_TOOL}", if listed { "added" } else { "removed" })))
        }
        "test_trigger_prompt_change" => {
            let listed = ctx.peer.session.toggle_dynamic_prompt();
            ctx.peer.notify("notifications/prompts/list_changed", json!({})).await;
            Ok(text_result(format!("{} prompt {DYNAMIC_PROMPT}", if listed { "added" } else { "removed" })))
        }
        DYNAMIC_TOOL if ctx.peer.session.has_dynamic_tool() => {
            Ok(text_result("This tool was added by test_trigger_tool_change."))
        }
        _ => return None,
    })
}

/// Sends `sampling/createMessage` without checking the client's capabilities, on purpose:
/// a bridging gateway must refuse it for a client that did not declare `sampling`.
async fn sample_regardless(ctx: &RequestCtx) -> ToolOutcome {
    let params = sampling_params("This tool needs the sampling capability. Say hello.", 10, Some("needs_sampling"));
    let method = "sampling/createMessage";
    let result = ctx
        .peer
        .request(method, params)
        .await
        .map_err(|error| format!("{method} failed: {} (code {})", error.message, error.code))?;
    Ok(text_result(format!("Sampled: {}", sampled_text(&result))))
}

/// The `prompts/list` entry of [`DYNAMIC_PROMPT`].
pub(crate) fn dynamic_prompt_definition() -> Value {
    json!({ "name": DYNAMIC_PROMPT, "description": "A prompt added by test_trigger_prompt_change" })
}

/// The `prompts/get` result of [`DYNAMIC_PROMPT`].
pub(crate) fn dynamic_prompt() -> Value {
    json!({
        "description": "A prompt added by test_trigger_prompt_change",
        "messages": [{ "role": "user", "content": { "type": "text", "text": "This prompt was added at run time." } }],
    })
}
