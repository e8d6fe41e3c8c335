//! Turning a legacy upstream's answers into 2026-07-28 ones: `resultType`, cache hints
//! and `serverInfo` on results, retired error codes mapped; and back
//! ([`to_legacy_result`]) for a 2025 client served by a modern upstream.

use serde_json::{json, Map, Value};

use crate::config::CacheScope;
use crate::protocol::id_value;
use crate::protocol::modern::{CACHEABLE_METHODS, META_SERVER_INFO};
use crate::protocol::{codes, Message};

/// What is stamped on results.
#[derive(Debug, Clone)]
pub struct Stamp {
    /// The upstream's `serverInfo` from its initialize result.
    pub server_info: Value,
    /// `ttlMs` for cacheable results.
    pub ttl_ms: u64,
    /// `cacheScope` for cacheable results.
    pub scope: CacheScope,
}

impl Stamp {
    /// Adds `resultType: "complete"` (unless the result has one), `ttlMs` and
    /// `cacheScope` for the cacheable methods, and `_meta.serverInfo`, to a result
    /// object.
    pub fn result(&self, method: &str, result: &mut Map<String, Value>) {
        result.entry("resultType").or_insert_with(|| json!("complete"));
        if CACHEABLE_METHODS.contains(&method) {
            result.entry("ttlMs").or_insert_with(|| json!(self.ttl_ms));
            result.entry("cacheScope").or_insert_with(|| json!(self.scope.as_str()));
        }
        self.server_info(result);
    }

    /// Adds `_meta.serverInfo`.
    pub fn server_info(&self, result: &mut Map<String, Value>) {
        let meta = result.entry("_meta").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.entry(META_SERVER_INFO).or_insert_with(|| self.server_info.clone());
        }
    }

    /// The final response of a bridged request, answering `client_id`: results
    /// stamped, `-32002` (resource not found) mapped to `-32602`.
    pub fn response(&self, method: &str, upstream: &Message, client_id: &str) -> Message {
        let Some(Value::Object(mut whole)) = upstream.to_value() else {
            return Message::error_response(Some(client_id), codes::INTERNAL_ERROR, "upstream reply unreadable", None);
        };
        if let Some(Value::Object(result)) = whole.get_mut("result") {
            self.result(method, result);
        }
        if let Some(Value::Object(error)) = whole.get_mut("error") {
            if error.get("code").and_then(Value::as_i64) == Some(i64::from(codes::LEGACY_RESOURCE_NOT_FOUND)) {
                error.insert("code".into(), json!(codes::INVALID_PARAMS));
            }
        }
        let id = id_value(client_id);
        whole.insert("id".into(), id);
        Message::from_value(&Value::Object(whole))
    }
}

/// A modern (2026-07-28) result as a 2025 client knows it: without `resultType`, the
/// cache hints (`ttlMs`, `cacheScope`) and `_meta.serverInfo` (an emptied `_meta`
/// goes too). Everything else is the server's and stays.
pub fn to_legacy_result(result: &mut Map<String, Value>) {
    for key in ["resultType", "ttlMs", "cacheScope"] {
        result.remove(key);
    }
    if let Some(Value::Object(meta)) = result.get_mut("_meta") {
        meta.remove(META_SERVER_INFO);
        if meta.is_empty() {
            result.remove("_meta");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_modern_result_loses_what_2025_clients_do_not_know() {
        let mut r = json!({"content": [], "resultType": "complete", "ttlMs": 0, "cacheScope": "private",
            "_meta": {META_SERVER_INFO: {"name": "s"}}});
        to_legacy_result(r.as_object_mut().expect("object"));
        assert_eq!(r, json!({"content": []}));
        let mut r = json!({"tools": [], "_meta": {META_SERVER_INFO: {}, "vendor/key": 1}});
        to_legacy_result(r.as_object_mut().expect("object"));
        assert_eq!(r, json!({"tools": [], "_meta": {"vendor/key": 1}}));
    }

    fn stamp() -> Stamp {
        Stamp { server_info: json!({"name": "up", "version": "1"}), ttl_ms: 0, scope: CacheScope::Private }
    }

    #[test]
    fn stamps_results_and_maps_codes() {
        let up = Message::parse(br#"{"jsonrpc":"2.0","id":"sc-1","result":{"tools":[]}}"#.to_vec()).expect("m");
        let v = stamp().response("tools/list", &up, "5").to_value().expect("json");
        assert_eq!(v["id"], 5);
        assert_eq!(v["result"]["resultType"], "complete");
        assert_eq!(v["result"]["ttlMs"], 0);
        assert_eq!(v["result"]["cacheScope"], "private");
        assert_eq!(v["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"], "up");
        let v = stamp().response("tools/call", &up, "\"a\"").to_value().expect("json");
        assert_eq!(v["id"], "a");
        assert!(v["result"].get("ttlMs").is_none(), "tools/call results carry no cache hints");
        let missing = Message::parse(
            br#"{"jsonrpc":"2.0","id":"sc-2","error":{"code":-32002,"message":"nope","data":{"uri":"x://y"}}}"#
                .to_vec(),
        )
        .expect("m");
        let v = stamp().response("resources/read", &missing, "3").to_value().expect("json");
        assert_eq!(v["error"]["code"], -32602);
        assert_eq!(v["error"]["data"]["uri"], "x://y");
    }
}
