//! The tool names each upstream has listed, learnt from `tools/list` results.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;
use serde::Deserialize;

use crate::protocol::Message;

/// At most this many tool names are kept per upstream.
const MAX_TOOLS_PER_UPSTREAM: usize = 1024;

/// Tool names per upstream, shared by every stage that labels by tool.
#[derive(Clone, Default)]
pub struct KnownTools {
    inner: Arc<RwLock<HashMap<String, HashSet<String>>>>,
}

#[derive(Deserialize)]
struct ListResult {
    result: ToolsField,
}

#[derive(Deserialize)]
struct ToolsField {
    #[serde(default)]
    tools: Vec<ToolName>,
}

#[derive(Deserialize)]
struct ToolName {
    name: String,
}

impl KnownTools {
    /// Adds the names in a `tools/list` result from `upstream`.
    pub fn learn(&self, upstream: &str, result: &Message) {
        let Ok(list) = serde_json::from_slice::<ListResult>(result.bytes()) else {
            return;
        };
        let mut map = self.inner.write();
        let names = map.entry(upstream.to_owned()).or_default();
        for tool in list.result.tools {
            if names.len() >= MAX_TOOLS_PER_UPSTREAM {
                break;
            }
            names.insert(tool.name);
        }
    }

    /// Whether `upstream` has listed a tool called `name`.
    pub fn contains(&self, upstream: &str, name: &str) -> bool {
        self.inner.read().get(upstream).is_some_and(|names| names.contains(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_from_tools_list() {
        let known = KnownTools::default();
        let m = Message::parse(
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo","inputSchema":{}}]}}"#.to_vec(),
        )
        .expect("valid");
        known.learn("demo", &m);
        assert!(known.contains("demo", "echo"));
        assert!(!known.contains("demo", "evil"));
        assert!(!known.contains("other", "echo"));
    }
}
