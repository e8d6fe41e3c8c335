//! `Mcp-Param-*` headers (2026-07-28): a tool's `inputSchema` may mark properties with
//! `x-mcp-header: "Name"`; a `tools/call` over HTTP then carries the argument's value
//! in `Mcp-Param-Name` too, and the server must check that they agree. An HTTP
//! upstream does this itself; for upstreams the headers never reach (stdio, or a
//! bridged legacy server) the gateway is the server that checks.

use http::HeaderMap;
use serde_json::{Map, Value};

use crate::error::GatewayError;
use crate::protocol::modern::decode_header_value;

/// The JSON type of a header-mirrored property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string, compared as is.
    String,
    /// An integer, compared numerically (`42` equals `42.0`).
    Integer,
    /// `true` or `false`.
    Boolean,
}

/// One property a tool mirrors into a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamHeader {
    /// The header's name, lower case (`mcp-param-region`).
    pub header: String,
    /// The property path from the arguments' root, through `properties` only.
    pub path: Vec<String>,
    /// Its type.
    pub kind: Kind,
}

/// The header-mirrored properties of a tool's `inputSchema` (only those reachable
/// through `properties` chains, of type string, integer or boolean, as the transport
/// allows).
pub fn declared(input_schema: &Value) -> Vec<ParamHeader> {
    let mut out = Vec::new();
    walk(input_schema, &mut Vec::new(), &mut out);
    out
}

fn walk(schema: &Value, path: &mut Vec<String>, out: &mut Vec<ParamHeader>) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else { return };
    for (name, property) in properties {
        path.push(name.clone());
        if let Some(header) = property.get("x-mcp-header").and_then(Value::as_str).filter(|h| !h.is_empty()) {
            let kind = match property.get("type").and_then(Value::as_str) {
                Some("integer") => Some(Kind::Integer),
                Some("boolean") => Some(Kind::Boolean),
                Some("string") => Some(Kind::String),
                _ => None,
            };
            if let Some(kind) = kind {
                out.push(ParamHeader {
                    header: format!("mcp-param-{}", header.to_ascii_lowercase()),
                    path: path.clone(),
                    kind,
                });
            }
        }
        walk(property, path, out);
        path.pop();
    }
}

/// Checks a `tools/call`'s headers against its arguments: for each declared property
/// with a (non-null) value, its header must be there, well-formed, and equal.
pub fn check(
    declared: &[ParamHeader],
    arguments: &Map<String, Value>,
    headers: &HeaderMap,
) -> Result<(), GatewayError> {
    for p in declared {
        let mut value = None;
        let mut here = Some(arguments);
        for (i, key) in p.path.iter().enumerate() {
            let Some(level) = here else { break };
            let v = level.get(key);
            if i + 1 == p.path.len() {
                value = v;
            } else {
                here = v.and_then(Value::as_object);
            }
        }
        let Some(value) = value.filter(|v| !v.is_null()) else { continue };
        let mismatch = |why: String| GatewayError::HeaderMismatch(format!("{}: {why}", p.header));
        let mut sent = headers.get_all(p.header.as_str()).iter();
        let Some(raw) = sent.next() else {
            return Err(mismatch(format!("required: the arguments carry `{}`", p.path.join("."))));
        };
        if sent.next().is_some() {
            return Err(mismatch("sent more than once".into()));
        }
        let text = decode_header_value(raw.as_bytes()).map_err(mismatch)?;
        let equal = match (p.kind, value) {
            (Kind::String, Value::String(s)) => text == *s,
            (Kind::Integer, Value::Number(n)) => text.parse::<f64>().ok().zip(n.as_f64()).is_some_and(|(a, b)| a == b),
            (Kind::Boolean, Value::Bool(b)) => text == b.to_string(),
            // The argument has another type than the schema says: the upstream judges it.
            _ => true,
        };
        if !equal {
            return Err(mismatch(format!("differs from the argument `{}`", p.path.join("."))));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::headers;
    use serde_json::json;

    #[test]
    fn declared_properties_and_checks() {
        let schema = json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "count": {"type": "integer", "x-mcp-header": "Count"},
            "nested": {"type": "object", "properties": {"flag": {"type": "boolean", "x-mcp-header": "Flag"}}},
            "listed": {"type": "array", "items": {"type": "string", "x-mcp-header": "Nope"}},
            "plain": {"type": "string"},
        }});
        let d = declared(&schema);
        assert_eq!(d.len(), 3, "{d:?}");
        let args = |v: Value| v.as_object().cloned().unwrap_or_default();
        let ok = headers(&[("mcp-param-region", "eu"), ("mcp-param-count", "42.0"), ("mcp-param-flag", "true")]);
        let a = args(json!({"region": "eu", "count": 42, "nested": {"flag": true}}));
        assert!(check(&d, &a, &ok).is_ok());
        let b64 = headers(&[
            ("mcp-param-region", "=?base64?SGVsbG8=?="),
            ("mcp-param-count", "42"),
            ("mcp-param-flag", "true"),
        ]);
        assert!(check(&d, &args(json!({"region": "Hello", "count": 42, "nested": {"flag": true}})), &b64).is_ok());
        let bad = headers(&[
            ("mcp-param-region", "=?base64?SGVsbG8?="),
            ("mcp-param-count", "42"),
            ("mcp-param-flag", "true"),
        ]);
        assert!(check(&d, &args(json!({"region": "Hello", "count": 42, "nested": {"flag": true}})), &bad).is_err());
        assert!(check(&d, &args(json!({"region": "us", "count": 42, "nested": {"flag": true}})), &ok).is_err());
        assert!(check(&d, &args(json!({"region": "eu"})), &HeaderMap::new()).is_err(), "missing header");
        assert!(check(&d, &args(json!({"region": null})), &HeaderMap::new()).is_ok(), "null: no header expected");
        let e = check(&d, &args(json!({"region": "eu"})), &HeaderMap::new()).expect_err("missing");
        assert_eq!(e.jsonrpc_code(), -32020);
    }
}
