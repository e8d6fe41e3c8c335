//! `completion/complete`: values for prompt arguments and template variables from small
//! fixed lists, filtered by the typed prefix.

use serde_json::{json, Value};

use super::message::RpcError;
use super::prompts;
use super::resources::{self, FIXTURE_TEMPLATE_URI, ITEM_TEMPLATE_URI};
use super::server::{required_str, Params};

/// What the conformance fixtures complete, for any of their arguments.
const FIXTURE_VALUES: &[&str] = &["paris", "park", "party", "test", "testValue"];
const NAMES: &[&str] = &["Ada", "Alan", "Alice", "Bob", "Grace", "Linus"];
const LANGUAGES: &[&str] = &["go", "java", "javascript", "python", "rust", "typescript"];
const ITEM_IDS: &[&str] = &["1", "2", "3", "42", "100"];
/// The spec caps one completion answer at 100 values.
const MAX_VALUES: usize = 100;

fn prompt_values(name: &str, argument: &str) -> Result<&'static [&'static str], RpcError> {
    let prompt = prompts::find(name).ok_or_else(|| RpcError::invalid_params(format!("Unknown prompt: {name}")))?;
    if !prompt.has_argument(argument) {
        return Ok(&[]);
    }
    Ok(match (name, argument) {
        ("greeting", "name") => NAMES,
        ("code_review", "language") => LANGUAGES,
        (name, _) if name.starts_with("test_") => FIXTURE_VALUES,
        _ => &[],
    })
}

fn resource_values(uri: &str, argument: &str) -> Result<&'static [&'static str], RpcError> {
    match (uri, argument) {
        (ITEM_TEMPLATE_URI, "id") => Ok(ITEM_IDS),
        (FIXTURE_TEMPLATE_URI, _) => Ok(FIXTURE_VALUES),
        (ITEM_TEMPLATE_URI, _) => Ok(&[]),
        (uri, _) if resources::is_static(uri) => Ok(&[]),
        _ => Err(RpcError::invalid_params(format!("Unknown resource or template: {uri}"))),
    }
}

/// `completion/complete`.
pub(crate) fn complete(params: &Params) -> Result<Value, RpcError> {
    let reference =
        params.get("ref").and_then(Value::as_object).ok_or_else(|| RpcError::invalid_params("missing `ref`"))?;
    let argument = params
        .get("argument")
        .and_then(Value::as_object)
        .ok_or_else(|| RpcError::invalid_params("missing `argument`"))?;
    let arg_name = required_str(argument, "name")?;
    let prefix = argument.get("value").and_then(Value::as_str).unwrap_or_default();
    let candidates = match required_str(reference, "type")? {
        "ref/prompt" => prompt_values(required_str(reference, "name")?, arg_name)?,
        "ref/resource" => resource_values(required_str(reference, "uri")?, arg_name)?,
        other => return Err(RpcError::invalid_params(format!("unknown ref type `{other}`"))),
    };
    let matching: Vec<&str> = candidates.iter().copied().filter(|v| v.starts_with(prefix)).collect();
    let total = matching.len();
    let values: Vec<&str> = matching.into_iter().take(MAX_VALUES).collect();
    Ok(json!({ "completion": { "values": values, "total": total, "hasMore": total > values.len() } }))
}
