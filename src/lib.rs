//! Shadowcat: an MCP (Model Context Protocol) gateway and developer proxy.
//!
//! Every feature that touches traffic is a `tower` layer in one pipeline
//! ([`pipeline`]), defined in YAML ([`config`]). Fronts ([`server`]) decode client
//! traffic into [`pipeline::McpRequest`]s; the [`router`] hands them to upstream
//! sessions ([`upstream`]).

pub mod bridge;
pub mod cli;
pub mod config;
pub mod demo;
pub mod error;
pub mod forward;
pub mod gateway;
pub mod layers;
pub mod pipeline;
pub mod protocol;
pub mod reply;
pub mod router;
pub mod server;
pub mod session;
pub mod tape;
pub mod telemetry;
pub mod upstream;

/// Helpers shared by unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use http::{HeaderMap, HeaderValue};

    /// A header map of `(name, value)` pairs (repeated names are appended).
    pub(crate) fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }
}
