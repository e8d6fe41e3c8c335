//! JSON-RPC 2.0 messages: error codes, the error object, and the classification of one
//! parsed input message into request, notification, response or invalid.

use serde_json::{json, Value};

/// Invalid JSON was received.
pub(crate) const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid request object.
pub(crate) const INVALID_REQUEST: i64 = -32600;
/// The method does not exist.
pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
/// Invalid method parameters.
pub(crate) const INVALID_PARAMS: i64 = -32602;
/// Internal JSON-RPC error.
pub(crate) const INTERNAL_ERROR: i64 = -32603;
/// MCP: the requested resource does not exist.
pub(crate) const RESOURCE_NOT_FOUND: i64 = -32002;

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RpcError {
    pub(crate) code: i64,
    pub(crate) message: String,
    pub(crate) data: Option<Value>,
}

impl RpcError {
    pub(crate) fn new(code: i64, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: None }
    }

    pub(crate) fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }

    pub(crate) fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    fn to_json(&self) -> Value {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let (Some(data), Some(object)) = (&self.data, error.as_object_mut()) {
            object.insert("data".into(), data.clone());
        }
        error
    }

    /// Reads an `error` member sent by the client; anything malformed still becomes an error.
    fn from_json(value: &Value) -> Self {
        let code = value.get("code").and_then(Value::as_i64).unwrap_or(INTERNAL_ERROR);
        let message =
            value.get("message").and_then(Value::as_str).unwrap_or("client returned a malformed error").to_string();
        Self { code, message, data: value.get("data").cloned() }
    }
}

/// One classified input message.
#[derive(Debug, PartialEq)]
pub(crate) enum Incoming {
    Request { id: Value, method: String, params: Option<Value> },
    Notification { method: String, params: Option<Value> },
    Response { id: Value, outcome: Result<Value, RpcError> },
    Invalid { id: Value, reason: &'static str },
}

pub(crate) fn is_valid_id(id: &Value) -> bool {
    id.is_string() || id.is_number()
}

pub(crate) fn classify(message: Value) -> Incoming {
    let Value::Object(mut object) = message else {
        let reason =
            if message.is_array() { "batch requests are not supported" } else { "a message must be a JSON object" };
        return Incoming::Invalid { id: Value::Null, reason };
    };
    let id = object.remove("id");
    let reply_id = id.clone().filter(is_valid_id).unwrap_or(Value::Null);
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        let reason = "jsonrpc must be \"2.0\"";
        return Incoming::Invalid { id: reply_id, reason };
    }
    match object.remove("method") {
        Some(Value::String(method)) => {
            let params = object.remove("params");
            match id {
                None => Incoming::Notification { method, params },
                Some(id) if is_valid_id(&id) => Incoming::Request { id, method, params },
                Some(_) => Incoming::Invalid { id: Value::Null, reason: "id must be a string or a number" },
            }
        }
        Some(_) => Incoming::Invalid { id: reply_id, reason: "method must be a string" },
        None => {
            let outcome = match (object.remove("result"), object.remove("error")) {
                (Some(result), None) => Ok(result),
                (None, Some(error)) => Err(RpcError::from_json(&error)),
                _ => {
                    return Incoming::Invalid {
                        id: reply_id,
                        reason: "a message needs a method, or exactly one of result and error",
                    }
                }
            };
            match id {
                Some(id) => Incoming::Response { id, outcome },
                None => Incoming::Invalid { id: Value::Null, reason: "a response needs an id" },
            }
        }
    }
}

pub(crate) fn response(id: &Value, outcome: Result<Value, RpcError>) -> Value {
    match outcome {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err(error) => json!({ "jsonrpc": "2.0", "id": id, "error": error.to_json() }),
    }
}

/// Map key for a request id: its JSON text, so `1` and `"1"` stay distinct.
pub(crate) fn id_key(id: &Value) -> String {
    id.to_string()
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn classifies_messages() {
        let request = classify(json!({"jsonrpc":"2.0","id":"a","method":"ping"}));
        assert!(matches!(request, Incoming::Request { ref id, .. } if id == "a"));
        let note = classify(json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
        assert!(matches!(note, Incoming::Notification { .. }));
        let reply = classify(json!({"jsonrpc":"2.0","id":"demo-1","result":{}}));
        assert!(matches!(reply, Incoming::Response { outcome: Ok(_), .. }));
        let err = classify(json!({"jsonrpc":"2.0","id":"demo-1","error":{"code":-1,"message":"no"}}));
        assert!(matches!(err, Incoming::Response { outcome: Err(ref e), .. } if e.code == -1));
        let no_version = classify(json!({"id":7,"method":"ping"}));
        assert_eq!(no_version, Incoming::Invalid { id: json!(7), reason: "jsonrpc must be \"2.0\"" });
        let null_id = classify(json!({"jsonrpc":"2.0","id":null,"method":"ping"}));
        assert!(matches!(null_id, Incoming::Invalid { id: Value::Null, .. }));
        assert!(matches!(classify(json!([1])), Incoming::Invalid { .. }));
        assert!(matches!(classify(json!({"jsonrpc":"2.0"})), Incoming::Invalid { .. }));
    }
}
