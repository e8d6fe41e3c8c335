//! Stateless (2026-07-28) requests on the HTTP front: how they are told from
//! session-era ones, and the checks a body-processing server must make before the
//! pipeline sees them (README, "Stateless requests").
//!
//! The era is decided from the declared version first: a request whose
//! `MCP-Protocol-Version` names a stateless revision, or whose `params._meta` declares
//! a version that is not a handshake-era one, is stateless; everything else (an
//! `initialize` declaring a 2025 revision, requests with `Mcp-Session-Id`) is served
//! by the session-era path.

use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::checks::VERSION_HEADER;
use crate::error::GatewayError;
use crate::protocol::modern::{self, Envelope};
use crate::protocol::{codes, Message, ProtocolVersion};

/// Whether the header names a stateless revision.
pub fn header_is_stateless(headers: &HeaderMap) -> bool {
    headers
        .get(VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(ProtocolVersion::parse)
        .is_some_and(ProtocolVersion::is_stateless)
}

/// Whether a POST body is served statelessly.
pub fn is_stateless(headers: &HeaderMap, messages: &[Message]) -> bool {
    header_is_stateless(headers) || messages.iter().any(modern::declares_stateless)
}

/// One header's value, decoded; `Ok(None)` when absent; an error when sent twice or
/// malformed.
fn single(headers: &HeaderMap, name: &str) -> Result<Option<String>, GatewayError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(GatewayError::HeaderMismatch(format!("{name} is sent more than once")));
    }
    modern::decode_header_value(first.as_bytes())
        .map(Some)
        .map_err(|e| GatewayError::HeaderMismatch(format!("{name}: {e}")))
}

/// The checks of a stateless request, in the order the specification's conformance
/// suite requires: header/body mismatches (-32020), then the envelope (-32602), then
/// the version (-32022), then missing routing headers (-32020), then the method
/// (404, -32601). Returns the envelope.
pub fn check_request(headers: &HeaderMap, m: &Message) -> Result<Envelope, GatewayError> {
    let method = m.method().unwrap_or_default();
    let header_version = single(headers, VERSION_HEADER)?;
    let header_method = single(headers, modern::METHOD_HEADER)?;
    if let (Some(h), Some(b)) = (&header_version, modern::declared_version(m)) {
        if *h != b {
            return Err(GatewayError::HeaderMismatch(format!(
                "MCP-Protocol-Version {h:?} differs from the body's _meta protocolVersion {b:?}"
            )));
        }
    }
    if let Some(h) = &header_method {
        if h != method {
            return Err(GatewayError::HeaderMismatch(format!(
                "Mcp-Method {h:?} differs from the body's method {method:?}"
            )));
        }
    }
    let envelope = Envelope::of(m).map_err(|e| GatewayError::InvalidParams(e.to_string()))?;
    if !ProtocolVersion::parse(&envelope.version).is_some_and(ProtocolVersion::is_stateless) {
        return Err(GatewayError::UnsupportedVersion(envelope.version));
    }
    if header_version.is_none() {
        return Err(GatewayError::HeaderMismatch("the MCP-Protocol-Version header is required".into()));
    }
    if header_method.is_none() {
        return Err(GatewayError::HeaderMismatch("the Mcp-Method header is required".into()));
    }
    if let Some(expected) = modern::name_value(m) {
        match single(headers, modern::NAME_HEADER)? {
            None => {
                return Err(GatewayError::HeaderMismatch(format!("the Mcp-Name header is required for {method}")));
            }
            Some(h) if h != expected => {
                return Err(GatewayError::HeaderMismatch(format!(
                    "Mcp-Name {h:?} differs from the body's {:?}",
                    expected
                )));
            }
            Some(_) => {}
        }
    }
    if modern::REMOVED_METHODS.contains(&method) {
        return Err(GatewayError::MethodNotFound(format!("{method} does not exist in protocol version 2026-07-28")));
    }
    Ok(envelope)
}

/// The HTTP status of a JSON-RPC error answering a stateless request: the status of
/// the gateway's own error when it made it; else 404 for an unknown method, 400 for
/// the errors the transport requires to be 400, else 200 (the error travels in the
/// body, as a tool's unknown name does).
pub fn error_status(m: &Message) -> StatusCode {
    #[derive(Deserialize)]
    struct Error {
        code: i64,
    }
    #[derive(Deserialize)]
    struct Body {
        error: Error,
    }
    if !m.is_error() {
        return StatusCode::OK;
    }
    if let Some(status) = m.status_hint().and_then(|s| StatusCode::from_u16(s).ok()) {
        return status;
    }
    let Ok(body) = serde_json::from_slice::<Body>(m.bytes()) else { return StatusCode::OK };
    match i32::try_from(body.error.code).unwrap_or(0) {
        codes::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        codes::PARSE_ERROR
        | codes::INVALID_REQUEST
        | codes::HEADER_MISMATCH
        | codes::MISSING_REQUIRED_CAPABILITY
        | codes::UNSUPPORTED_PROTOCOL_VERSION => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::headers;

    const LIST: &str = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}"#;

    fn msg(text: &str) -> Message {
        Message::parse(text.as_bytes().to_vec()).expect("message")
    }

    fn code(r: Result<Envelope, GatewayError>) -> i32 {
        r.map(|_| 0).unwrap_or_else(|e| e.jsonrpc_code())
    }

    #[test]
    fn classification() {
        let legacy = msg(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        assert!(!is_stateless(&HeaderMap::new(), std::slice::from_ref(&legacy)));
        assert!(is_stateless(&headers(&[("mcp-protocol-version", "2026-07-28")]), std::slice::from_ref(&legacy)));
        assert!(!is_stateless(&headers(&[("mcp-protocol-version", "2025-11-25")]), std::slice::from_ref(&legacy)));
        assert!(is_stateless(&HeaderMap::new(), &[msg(LIST)]));
    }

    #[test]
    fn ladder_order() {
        let good = [("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call"), ("mcp-name", "echo")];
        assert_eq!(code(check_request(&headers(&good), &msg(LIST))), 0);
        assert_eq!(code(check_request(&headers(&good[..2]), &msg(LIST))), codes::HEADER_MISMATCH);
        assert_eq!(
            code(check_request(&headers(&[good[0], ("mcp-method", "TOOLS/CALL"), good[2]]), &msg(LIST))),
            codes::HEADER_MISMATCH
        );
        assert_eq!(
            code(check_request(&headers(&[good[0], good[1], ("mcp-name", " =?base64?ZWNobw==?= ")]), &msg(LIST))),
            0
        );
        let v999 = LIST.replace("2026-07-28", "v999.0.0");
        assert_eq!(code(check_request(&headers(&good), &msg(&v999))), codes::HEADER_MISMATCH);
        assert_eq!(
            code(check_request(&headers(&[("mcp-protocol-version", "v999.0.0"), good[1], good[2]]), &msg(&v999))),
            codes::UNSUPPORTED_PROTOCOL_VERSION
        );
        let no_meta = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo"}}"#;
        assert_eq!(code(check_request(&headers(&good), &msg(no_meta))), codes::INVALID_PARAMS);
        let ping = LIST.replace("tools/call", "ping");
        assert_eq!(
            code(check_request(&headers(&[good[0], ("mcp-method", "ping")]), &msg(&ping))),
            codes::METHOD_NOT_FOUND
        );
    }
}
