//! The tools that the MCP server conformance suite (`@modelcontextprotocol/conformance`)
//! calls, with the names, schemas, contents and notification counts its scenarios check.

use std::time::Duration;

use serde_json::{json, Value};

use super::client_requests::{self, Elicited};
use super::media::{RED_PIXEL_PNG, SILENT_WAV};
use super::rpc::RequestCtx;
use super::server::{self, Params};
use super::session::LogLevel;
use super::tools::{arg_str, text_result, ToolOutcome};

/// The input schema of a tool without arguments.
pub(crate) fn no_arguments() -> Value {
    json!({ "type": "object", "properties": {} })
}

/// A `tools/list` entry.
pub(crate) fn tool(name: &str, description: &str, input_schema: Value) -> Value {
    json!({ "name": name, "description": description, "inputSchema": input_schema })
}

fn one_string_argument(name: &str, description: &str) -> Value {
    json!({
        "type": "object",
        "properties": { name: { "type": "string", "description": description } },
        "required": [name],
    })
}

/// The fixture tools, for `tools/list`.
pub(crate) fn definitions() -> Vec<Value> {
    vec![
        tool("test_simple_text", "Returns one text block", no_arguments()),
        tool("test_image_content", "Returns a PNG image", no_arguments()),
        tool("test_audio_content", "Returns a WAV clip", no_arguments()),
        tool("test_embedded_resource", "Returns an embedded text resource", no_arguments()),
        tool("test_multiple_content_types", "Returns text, an image and an embedded resource", no_arguments()),
        tool("test_tool_with_logging", "Sends three info log notifications while it runs", no_arguments()),
        tool("test_tool_with_progress", "Reports progress 0, 50 and 100 of 100", no_arguments()),
        tool("test_error_handling", "Always fails with isError", no_arguments()),
        tool(
            "test_reconnection",
            "Runs for a few hundred milliseconds (over HTTP the gateway may close the SSE stream mid-call, SEP-1699)",
            no_arguments(),
        ),
        tool(
            "test_sampling",
            "Asks the client for an LLM completion (sampling/createMessage)",
            one_string_argument("prompt", "Prompt sent to the model"),
        ),
        tool(
            "test_elicitation",
            "Asks the client for a username and email (elicitation/create)",
            one_string_argument("message", "Message shown to the user"),
        ),
        tool(
            "test_elicitation_sep1034_defaults",
            "Elicitation whose fields all carry defaults (SEP-1034)",
            no_arguments(),
        ),
        tool("test_elicitation_sep1330_enums", "Elicitation with every enum variant (SEP-1330)", no_arguments()),
        tool(
            "json_schema_2020_12_tool",
            "Tool whose input schema uses JSON Schema 2020-12 keywords",
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {
                    "address": {
                        "type": "object",
                        "properties": { "street": { "type": "string" }, "city": { "type": "string" } },
                    },
                },
                "properties": { "name": { "type": "string" }, "address": { "$ref": "#/$defs/address" } },
                "additionalProperties": false,
            }),
        ),
    ]
}

fn sep1034_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": { "type": "string", "description": "User name", "default": "John Doe" },
            "age": { "type": "integer", "description": "User age", "default": 30 },
            "score": { "type": "number", "description": "User score", "default": 95.5 },
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active",
            },
            "verified": { "type": "boolean", "description": "Verification status", "default": true },
        },
        "required": [],
    })
}

fn titled(options: &[(&str, &str)]) -> Value {
    options.iter().map(|(value, title)| json!({ "const": value, "title": title })).collect()
}

fn sep1330_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "untitledSingle": {
                "type": "string",
                "description": "Untitled single-select",
                "enum": ["option1", "option2", "option3"],
            },
            "titledSingle": {
                "type": "string",
                "description": "Titled single-select",
                "oneOf": titled(&[("value1", "First Option"), ("value2", "Second Option"), ("value3", "Third Option")]),
            },
            "legacyEnum": {
                "type": "string",
                "description": "Legacy titled enum",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"],
            },
            "untitledMulti": {
                "type": "array",
                "description": "Untitled multi-select",
                "items": { "type": "string", "enum": ["option1", "option2", "option3"] },
            },
            "titledMulti": {
                "type": "array",
                "description": "Titled multi-select",
                "items": {
                    "anyOf": titled(&[("value1", "First Choice"), ("value2", "Second Choice"), ("value3", "Third Choice")]),
                },
            },
        },
        "required": [],
    })
}

fn image_block() -> Value {
    json!({ "type": "image", "data": RED_PIXEL_PNG, "mimeType": "image/png" })
}

async fn pause(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Runs fixture tool `name`; `None` if there is no such fixture.
pub(crate) async fn call(ctx: &RequestCtx, name: &str, args: &Params) -> Option<ToolOutcome> {
    Some(match name {
        "test_simple_text" => Ok(text_result("This is a simple text response for testing.")),
        "test_image_content" => Ok(json!({ "content": [image_block()] })),
        "test_audio_content" => Ok(json!({
            "content": [{ "type": "audio", "data": SILENT_WAV, "mimeType": "audio/wav" }],
        })),
        "test_embedded_resource" => Ok(json!({
            "content": [{
                "type": "resource",
                "resource": {
                    "uri": "test://embedded-resource",
                    "mimeType": "text/plain",
                    "text": "This is an embedded resource content.",
                },
            }],
        })),
        "test_multiple_content_types" => Ok(json!({
            "content": [
                { "type": "text", "text": "Multiple content types test:" },
                image_block(),
                {
                    "type": "resource",
                    "resource": {
                        "uri": "test://mixed-content-resource",
                        "mimeType": "application/json",
                        "text": "{\"test\":\"data\",\"value\":123}",
                    },
                },
            ],
        })),
        "test_tool_with_logging" => {
            let steps = ["Tool execution started", "Tool processing data", "Tool execution completed"];
            for (i, message) in steps.into_iter().enumerate() {
                if i > 0 {
                    pause(50).await;
                }
                server::log(ctx, LogLevel::Info, json!(message)).await;
            }
            Ok(text_result("Tool with logging executed successfully"))
        }
        "test_tool_with_progress" => {
            for progress in [0, 50, 100] {
                ctx.progress(progress, Some(100), None).await;
                if progress < 100 {
                    pause(50).await;
                }
            }
            Ok(text_result("Tool with progress executed successfully"))
        }
        "test_error_handling" => Err("This tool intentionally returns an error for testing".into()),
        "test_reconnection" => {
            pause(300).await;
            Ok(text_result("Reconnection test completed successfully"))
        }
        "test_sampling" => match arg_str(args, "prompt") {
            Ok(prompt) => client_requests::sample(ctx, prompt, 100, None)
                .await
                .map(|text| text_result(format!("LLM response: {text}"))),
            Err(error) => Err(error),
        },
        "test_elicitation" => match arg_str(args, "message") {
            Ok(message) => {
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "username": { "type": "string", "description": "User's response" },
                        "email": { "type": "string", "description": "User's email address" },
                    },
                    "required": ["username", "email"],
                });
                client_requests::elicit(ctx, message, schema, None).await.map(|Elicited { action, content }| {
                    text_result(format!("User response: action={action}, content={content}"))
                })
            }
            Err(error) => Err(error),
        },
        "test_elicitation_sep1034_defaults" => {
            let message = "Please review and update the form fields with defaults";
            client_requests::elicit(ctx, message, sep1034_schema(), None).await.map(completed)
        }
        "test_elicitation_sep1330_enums" => {
            let message = "Please select options from the enum fields";
            client_requests::elicit(ctx, message, sep1330_schema(), None).await.map(completed)
        }
        "json_schema_2020_12_tool" => Ok(text_result(format!("Received: {}", Value::Object(args.clone())))),
        _ => return None,
    })
}

fn completed(Elicited { action, content }: Elicited) -> Value {
    text_result(format!("Elicitation completed: action={action}, content={content}"))
}
