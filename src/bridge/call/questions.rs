//! The upstream's questions to the client during a call (elicitation, sampling,
//! roots): checked against the capabilities the client declared, keyed for
//! `inputRequests`, answered from `inputResponses` given in advance; and a 2025-11-25
//! "URL elicitation required" error turned into a round of URL elicitations.

use serde_json::{json, Map, Value};

use super::drive::Step;
use super::{Call, Question, INPUT_KEY_HINT};
use crate::error::GatewayError;
use crate::protocol::{codes, Message};

/// The upstream asks the client something.
pub(super) async fn ask(call: &mut Call, m: Message, client_id: &str) -> Option<Step> {
    let id = m.id_key().unwrap_or("null").to_owned();
    let method = m.method().unwrap_or_default().to_owned();
    let mut params: Map<String, Value> = m.params().unwrap_or_default();
    if method == "ping" {
        call.pooled.answer(&id, Ok(json!({}))).await;
        return None;
    }
    let Some(required) = required_capability(&method, &params) else {
        call.pooled
            .answer(&id, Err((codes::METHOD_NOT_FOUND, format!("{method} cannot be relayed to the client"))))
            .await;
        return None;
    };
    if call.inbox.is_none() || !declared(&call.capabilities, &required) {
        let detail = format!("the upstream asked {method}, which the client did not declare");
        call.pooled.answer(&id, Err((codes::INVALID_REQUEST, format!("the client did not declare {required}")))).await;
        let e = GatewayError::MissingCapability { required, detail };
        return Some(Step::Refused(e.to_message(Some(client_id))));
    }
    let hint = params
        .get_mut("_meta")
        .and_then(Value::as_object_mut)
        .and_then(|meta| meta.remove(INPUT_KEY_HINT))
        .and_then(|h| h.as_str().map(str::to_owned));
    if params.get("_meta").and_then(Value::as_object).is_some_and(Map::is_empty) {
        params.remove("_meta");
    }
    let key = unique_key(call, hint.as_deref().unwrap_or(short_name(&method)));
    if let Some(answer) = call.presupplied.remove(&key).filter(Value::is_object) {
        call.pooled.answer(&id, Ok(answer)).await;
        return None;
    }
    call.questions.push(Question { key, upstream_id: id, request: json!({"method": method, "params": params}) });
    None
}

/// The `data.elicitations` of a 2025-11-25 "URL elicitation required" error (-32042).
pub(super) fn url_elicitations(m: &Message) -> Option<Vec<Value>> {
    if !m.is_error() {
        return None;
    }
    let v = m.to_value()?;
    let error = v.get("error")?;
    if error.get("code").and_then(Value::as_i64) != Some(i64::from(codes::URL_ELICITATION_REQUIRED)) {
        return None;
    }
    error.pointer("/data/elicitations").and_then(Value::as_array).cloned()
}

/// A -32042 becomes a round of URL-mode elicitations (without the 2025 `elicitationId`);
/// the retry sends the call again.
pub(super) fn url_round(call: &mut Call, elicitations: Vec<Value>, client_id: &str) -> Step {
    let required = json!({"elicitation": {"url": {}}});
    if !declared(&call.capabilities, &required) {
        let detail = "the upstream needs a URL elicitation, which the client did not declare".to_owned();
        let e = GatewayError::MissingCapability { required, detail };
        return Step::Refused(e.to_message(Some(client_id)));
    }
    for e in elicitations {
        let mut params = Map::new();
        params.insert("mode".into(), json!("url"));
        for field in ["message", "url"] {
            if let Some(v) = e.get(field) {
                params.insert(field.into(), v.clone());
            }
        }
        let key = unique_key(call, "elicitation");
        let request = json!({"method": "elicitation/create", "params": params});
        call.questions.push(Question { key, upstream_id: String::new(), request });
    }
    call.reissue = true;
    Step::Park
}

/// The client capability a server-to-client request needs, as a `ClientCapabilities`
/// object; `None` for requests a client cannot be asked.
fn required_capability(method: &str, params: &Map<String, Value>) -> Option<Value> {
    match method {
        "elicitation/create" => Some(match params.get("mode").and_then(Value::as_str) {
            Some("url") => json!({"elicitation": {"url": {}}}),
            _ => json!({"elicitation": {"form": {}}}),
        }),
        "sampling/createMessage" if params.contains_key("tools") || params.contains_key("toolChoice") => {
            Some(json!({"sampling": {"tools": {}}}))
        }
        "sampling/createMessage" => Some(json!({"sampling": {}})),
        "roots/list" => Some(json!({"roots": {}})),
        _ => None,
    }
}

/// Whether `caps` covers `required`. An `elicitation` without modes means form.
fn declared(caps: &Map<String, Value>, required: &Value) -> bool {
    let Some(required) = required.as_object() else { return false };
    required.iter().all(|(name, sub)| {
        let Some(have) = caps.get(name).and_then(Value::as_object) else { return false };
        sub.as_object().is_none_or(|sub| {
            sub.keys().all(|mode| {
                have.contains_key(mode) || (name == "elicitation" && mode == "form" && !have.contains_key("url"))
            })
        })
    })
}

fn short_name(method: &str) -> &str {
    match method {
        "elicitation/create" => "elicitation",
        "sampling/createMessage" => "sampling",
        "roots/list" => "roots",
        other => other,
    }
}

fn unique_key(call: &Call, base: &str) -> String {
    let taken = |k: &str| call.questions.iter().any(|q| q.key == k);
    if !taken(base) {
        return base.to_owned();
    }
    (2..).map(|n| format!("{base}_{n}")).find(|k| !taken(k)).unwrap_or_else(|| base.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_checked_by_mode() {
        let form_only = json!({"elicitation": {}, "sampling": {}}).as_object().cloned().unwrap_or_default();
        assert!(declared(&form_only, &json!({"elicitation": {"form": {}}})));
        assert!(!declared(&form_only, &json!({"elicitation": {"url": {}}})));
        assert!(declared(&form_only, &json!({"sampling": {}})));
        assert!(!declared(&form_only, &json!({"sampling": {"tools": {}}})));
        assert!(!declared(&form_only, &json!({"roots": {}})));
        let url_only = json!({"elicitation": {"url": {}}}).as_object().cloned().unwrap_or_default();
        assert!(!declared(&url_only, &json!({"elicitation": {"form": {}}})));
        assert!(declared(&url_only, &json!({"elicitation": {"url": {}}})));
    }
}
