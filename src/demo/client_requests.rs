//! Server-to-client requests (sampling, elicitation, roots) as the tools and prompts make
//! them, each optionally tagged with the key a bridging gateway should use for it.
//!
//! When Shadowcat bridges a 2026-07-28 client to this legacy server, it turns each
//! server-to-client request made during a call into one entry of an `input_required`
//! result's `inputRequests` map. A legacy server cannot name that entry on the wire, so
//! the demo hints the key in `params._meta["dev.shadowcat/inputKey"]`; 2025 clients ignore
//! unknown `_meta` keys.

use serde_json::{json, Map, Value};

use super::rpc::RequestCtx;
use super::server;

/// The `_meta` key naming the `inputRequests` key a bridging gateway should use.
pub(crate) const INPUT_KEY_META: &str = "dev.shadowcat/inputKey";

/// Adds the input-key hint to request `params` (an object), if there is a key.
fn with_input_key(mut params: Value, key: Option<&str>) -> Value {
    if let (Some(key), Some(object)) = (key, params.as_object_mut()) {
        object.insert("_meta".into(), json!({ INPUT_KEY_META: key }));
    }
    params
}

/// The params of a `sampling/createMessage` with one user text message.
pub(crate) fn sampling_params(prompt: &str, max_tokens: u32, key: Option<&str>) -> Value {
    let params = json!({
        "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
        "maxTokens": max_tokens,
    });
    with_input_key(params, key)
}

/// The model's text from a `CreateMessageResult`, or its content as JSON if it has no text.
pub(crate) fn sampled_text(result: &Value) -> String {
    // `content` is one block, or (since 2025-11-25) an array of blocks.
    let content = result.get("content").cloned().unwrap_or(Value::Null);
    let is_text = |block: &&Value| block.get("type") == Some(&json!("text"));
    let first_text = match &content {
        Value::Array(blocks) => blocks.iter().find(is_text),
        block => Some(block).filter(is_text),
    }
    .and_then(|block| block.get("text"))
    .and_then(Value::as_str);
    first_text.map_or_else(|| content.to_string(), str::to_string)
}

/// Asks the client's model (`sampling/createMessage`, needs `sampling`) and returns its text.
pub(crate) async fn sample(
    ctx: &RequestCtx,
    prompt: &str,
    max_tokens: u32,
    key: Option<&str>,
) -> Result<String, String> {
    let params = sampling_params(prompt, max_tokens, key);
    let result = server::ask_client(ctx, "sampling", "sampling/createMessage", params).await?;
    Ok(sampled_text(&result))
}

/// The user's answer to a form elicitation.
#[derive(Debug)]
pub(crate) struct Elicited {
    /// `accept`, `decline` or `cancel`.
    pub(crate) action: String,
    /// The form's values (`{}` when the user did not accept).
    pub(crate) content: Value,
}

impl Elicited {
    /// The accepted form's values, or why there are none.
    pub(crate) fn accepted(&self) -> Result<&Map<String, Value>, String> {
        if self.action != "accept" {
            return Err(format!("the user did not accept the form (action={})", self.action));
        }
        self.content.as_object().ok_or_else(|| "the accepted form has no content object".to_string())
    }

    /// The accepted form's string field `field`.
    pub(crate) fn accepted_str(&self, field: &str) -> Result<&str, String> {
        self.accepted()?
            .get(field)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("the accepted form has no string `{field}`"))
    }
}

/// Asks the user to fill a form (`elicitation/create`, needs `elicitation`).
pub(crate) async fn elicit(
    ctx: &RequestCtx,
    message: &str,
    schema: Value,
    key: Option<&str>,
) -> Result<Elicited, String> {
    let params = with_input_key(json!({ "message": message, "requestedSchema": schema }), key);
    let result = server::ask_client(ctx, "elicitation", "elicitation/create", params).await?;
    let action = result.get("action").and_then(Value::as_str).ok_or("the elicitation result has no action")?;
    let content = result.get("content").cloned().unwrap_or_else(|| json!({}));
    Ok(Elicited { action: action.to_string(), content })
}

/// Lists the client's roots (`roots/list`, needs `roots`).
pub(crate) async fn list_roots(ctx: &RequestCtx, key: Option<&str>) -> Result<Vec<Value>, String> {
    let result = server::ask_client(ctx, "roots", "roots/list", with_input_key(json!({}), key)).await?;
    match result.get("roots") {
        Some(Value::Array(roots)) => Ok(roots.clone()),
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(_) => Err("the roots/list result's `roots` is not an array".into()),
    }
}

/// An object schema of one required property `name` of JSON type `kind`.
pub(crate) fn one_field_form(name: &str, kind: &str) -> Value {
    json!({ "type": "object", "properties": { name: { "type": kind } }, "required": [name] })
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn key_hint_goes_in_meta() {
        let params = sampling_params("hi", 5, Some("k"));
        assert_eq!(params["_meta"], json!({ "dev.shadowcat/inputKey": "k" }));
        assert!(sampling_params("hi", 5, None).get("_meta").is_none());
    }

    #[test]
    fn sampled_text_takes_the_first_text_block() {
        assert_eq!(sampled_text(&json!({ "content": { "type": "text", "text": "a" } })), "a");
        let blocks = json!({ "content": [{ "type": "image", "data": "x" }, { "type": "text", "text": "b" }] });
        assert_eq!(sampled_text(&blocks), "b");
        let image = json!({ "content": { "type": "image", "data": "x" } });
        assert_eq!(sampled_text(&image), "{\"type\":\"image\",\"data\":\"x\"}");
    }

    #[test]
    fn accepted_fields() {
        let accepted = Elicited { action: "accept".into(), content: json!({ "name": "Ada", "n": 1 }) };
        assert_eq!(accepted.accepted_str("name"), Ok("Ada"));
        assert!(accepted.accepted_str("n").is_err());
        let declined = Elicited { action: "decline".into(), content: json!({}) };
        assert!(declined.accepted().is_err_and(|e| e.contains("decline")));
    }
}
