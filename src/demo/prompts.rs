//! Prompts: `greeting`, `code_review`, the conformance fixtures, and the prompt that
//! `test_trigger_prompt_change` adds and removes.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::diagnostics::{self, DYNAMIC_PROMPT};
use super::input_required;
use super::media::RED_PIXEL_PNG;
use super::message::RpcError;
use super::rpc::RequestCtx;
use super::server::{required_str, Params};
use super::session::Session;

/// One prompt argument: name, description, required.
struct PromptArg(&'static str, &'static str, bool);

/// One prompt: name, description, arguments.
pub(crate) struct Prompt(&'static str, &'static str, &'static [PromptArg]);

impl Prompt {
    /// Whether the prompt has an argument called `name`.
    pub(crate) fn has_argument(&self, name: &str) -> bool {
        self.2.iter().any(|PromptArg(arg, ..)| *arg == name)
    }
}

const PROMPTS: &[Prompt] = &[
    Prompt("greeting", "Greets someone by name", &[PromptArg("name", "Who to greet", true)]),
    Prompt(
        "code_review",
        "Asks for a review of a piece of code",
        &[
            PromptArg("code", "The code to review", true),
            PromptArg("language", "Programming language of the code", false),
        ],
    ),
    Prompt("test_simple_prompt", "A simple prompt without arguments", &[]),
    Prompt(
        "test_prompt_with_arguments",
        "A prompt with two required arguments",
        &[PromptArg("arg1", "First test argument", true), PromptArg("arg2", "Second test argument", true)],
    ),
    Prompt(
        "test_prompt_with_embedded_resource",
        "A prompt embedding a resource",
        &[PromptArg("resourceUri", "URI of the resource to embed", true)],
    ),
    Prompt("test_prompt_with_image", "A prompt with an image", &[]),
    Prompt(
        input_required::PROMPT,
        "Asks the user for context (elicitation, key user_context) and builds a prompt from it",
        &[],
    ),
];

/// The prompt called `name`.
pub(crate) fn find(name: &str) -> Option<&'static Prompt> {
    PROMPTS.iter().find(|prompt| prompt.0 == name)
}

/// `prompts/list`: the fixed prompts, and the dynamic one if this session lists it.
pub(crate) fn definitions(session: &Session) -> Vec<Value> {
    let mut prompts: Vec<Value> = PROMPTS
        .iter()
        .map(|Prompt(name, description, args)| {
            let mut prompt = json!({ "name": name, "description": description });
            if !args.is_empty() {
                let args: Vec<Value> = args
                    .iter()
                    .map(|PromptArg(name, description, required)| {
                        json!({ "name": name, "description": description, "required": required })
                    })
                    .collect();
                prompt["arguments"] = Value::Array(args);
            }
            prompt
        })
        .collect();
    if session.has_dynamic_prompt() {
        prompts.push(diagnostics::dynamic_prompt_definition());
    }
    prompts
}

fn user_text(text: impl Into<String>) -> Value {
    json!({ "role": "user", "content": { "type": "text", "text": text.into() } })
}

/// `prompts/get`: unknown prompts and missing or non-string arguments are -32602.
pub(crate) async fn get(ctx: &RequestCtx, params: &Params) -> Result<Value, RpcError> {
    let name = required_str(params, "name")?;
    match name {
        input_required::PROMPT => input_required::prompt(ctx).await,
        DYNAMIC_PROMPT if ctx.peer.session.has_dynamic_prompt() => Ok(diagnostics::dynamic_prompt()),
        _ => get_fixed(name, params),
    }
}

/// `prompts/get` of a prompt whose messages depend only on its arguments.
fn get_fixed(name: &str, params: &Params) -> Result<Value, RpcError> {
    let prompt = find(name).ok_or_else(|| RpcError::invalid_params(format!("Unknown prompt: {name}")))?;
    let mut args: HashMap<&str, &str> = HashMap::new();
    match params.get("arguments") {
        None | Some(Value::Null) => {}
        Some(Value::Object(given)) => {
            for (key, value) in given {
                let value = value
                    .as_str()
                    .ok_or_else(|| RpcError::invalid_params(format!("argument `{key}` must be a string")))?;
                args.insert(key, value);
            }
        }
        Some(_) => return Err(RpcError::invalid_params("arguments must be an object")),
    }
    for PromptArg(arg, _, required) in prompt.2 {
        if *required && !args.contains_key(arg) {
            return Err(RpcError::invalid_params(format!("prompt {name} needs argument `{arg}`")));
        }
    }
    let arg = |key: &str| args.get(key).copied().unwrap_or_default();
    let (description, messages) = match name {
        "greeting" => ("A greeting", vec![user_text(format!("Please greet {} warmly.", arg("name")))]),
        "code_review" => {
            let language = args.get("language").map(|l| format!(" {l}")).unwrap_or_default();
            let text = format!("Please review this{language} code for bugs, style and clarity:\n\n{}", arg("code"));
            ("A code review request", vec![user_text(text)])
        }
        "test_simple_prompt" => ("A simple prompt", vec![user_text("This is a simple prompt for testing.")]),
        "test_prompt_with_arguments" => {
            let text = format!("Prompt with arguments: arg1='{}', arg2='{}'", arg("arg1"), arg("arg2"));
            ("A prompt with arguments", vec![user_text(text)])
        }
        "test_prompt_with_embedded_resource" => (
            "A prompt with an embedded resource",
            vec![
                json!({
                    "role": "user",
                    "content": {
                        "type": "resource",
                        "resource": {
                            "uri": arg("resourceUri"),
                            "mimeType": "text/plain",
                            "text": "Embedded resource content for testing.",
                        },
                    },
                }),
                user_text("Please process the embedded resource above."),
            ],
        ),
        "test_prompt_with_image" => (
            "A prompt with an image",
            vec![
                json!({ "role": "user", "content": { "type": "image", "data": RED_PIXEL_PNG, "mimeType": "image/png" } }),
                user_text("Please analyze the image above."),
            ],
        ),
        _ => return Err(RpcError::invalid_params(format!("Unknown prompt: {name}"))),
    };
    Ok(json!({ "description": description, "messages": messages }))
}
