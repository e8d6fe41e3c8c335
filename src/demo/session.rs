//! Per-connection state: what the client said at `initialize`, the log level it asked for,
//! the resources it subscribed to, and whether the dynamic tool and prompt are listed.

use parking_lot::Mutex;
use std::collections::HashSet;

use serde_json::Value;

use super::rpc::lock;

/// MCP log levels (RFC 5424 severities), least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum LogLevel {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl LogLevel {
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "debug" => Self::Debug,
            "info" => Self::Info,
            "notice" => Self::Notice,
            "warning" => Self::Warning,
            "error" => Self::Error,
            "critical" => Self::Critical,
            "alert" => Self::Alert,
            "emergency" => Self::Emergency,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Notice => "notice",
            Self::Warning => "warning",
            Self::Error => "error",
            Self::Critical => "critical",
            Self::Alert => "alert",
            Self::Emergency => "emergency",
        }
    }
}

#[derive(Debug)]
struct State {
    /// `None` until `initialize`: then server-to-client requests are not gated.
    client_capabilities: Option<Value>,
    min_log_level: LogLevel,
    subscriptions: HashSet<String>,
    /// Toggled by `test_trigger_tool_change`.
    dynamic_tool: bool,
    /// Toggled by `test_trigger_prompt_change`.
    dynamic_prompt: bool,
    /// Set by the first `test_url_elicitation_required` call (the user "went to the URL").
    url_visited: bool,
}

impl Default for State {
    fn default() -> Self {
        Self {
            client_capabilities: None,
            min_log_level: LogLevel::Debug,
            subscriptions: HashSet::new(),
            dynamic_tool: false,
            dynamic_prompt: false,
            url_visited: false,
        }
    }
}

/// Session state shared by all request tasks of one connection.
#[derive(Debug, Default)]
pub(crate) struct Session {
    state: Mutex<State>,
}

impl Session {
    /// Remembers the capabilities the client declared at `initialize`.
    pub(crate) fn initialized(&self, capabilities: Value) {
        lock(&self.state).client_capabilities = Some(capabilities);
    }

    /// Whether the client may be sent requests needing capability `name` (`sampling`,
    /// `elicitation`, `roots`). Before `initialize` nothing is known, so everything is allowed.
    pub(crate) fn client_supports(&self, name: &str) -> bool {
        match &lock(&self.state).client_capabilities {
            None => true,
            Some(capabilities) => capabilities.get(name).is_some_and(|c| !c.is_null()),
        }
    }

    pub(crate) fn set_log_level(&self, level: LogLevel) {
        lock(&self.state).min_log_level = level;
    }

    pub(crate) fn log_enabled(&self, level: LogLevel) -> bool {
        level >= lock(&self.state).min_log_level
    }

    pub(crate) fn subscribe(&self, uri: &str) {
        lock(&self.state).subscriptions.insert(uri.to_string());
    }

    pub(crate) fn unsubscribe(&self, uri: &str) {
        lock(&self.state).subscriptions.remove(uri);
    }

    pub(crate) fn is_subscribed(&self, uri: &str) -> bool {
        lock(&self.state).subscriptions.contains(uri)
    }

    /// Adds the dynamic tool if it is not listed, else removes it; returns whether it now is.
    pub(crate) fn toggle_dynamic_tool(&self) -> bool {
        let mut state = lock(&self.state);
        state.dynamic_tool = !state.dynamic_tool;
        state.dynamic_tool
    }

    pub(crate) fn has_dynamic_tool(&self) -> bool {
        lock(&self.state).dynamic_tool
    }

    /// Adds the dynamic prompt if it is not listed, else removes it; returns whether it now is.
    pub(crate) fn toggle_dynamic_prompt(&self) -> bool {
        let mut state = lock(&self.state);
        state.dynamic_prompt = !state.dynamic_prompt;
        state.dynamic_prompt
    }

    /// Whether the URL of `test_url_elicitation_required` was handed out before; marks it so.
    pub(crate) fn visit_url(&self) -> bool {
        std::mem::replace(&mut lock(&self.state).url_visited, true)
    }

    pub(crate) fn has_dynamic_prompt(&self) -> bool {
        lock(&self.state).dynamic_prompt
    }
}
