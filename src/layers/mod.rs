//! Pipeline stages, one folder each. Every stage is a `tower::Layer` over
//! [`McpService`](crate::pipeline::McpService), registered in
//! [`STAGES`].

pub mod access_log;
pub mod auth;
pub mod intercept;
pub mod metrics;
pub mod policy;
pub mod rate_limit;
pub mod record;
pub mod registry;
pub mod watch;

pub use registry::{build_pipeline, check_pipeline, BuildContext, Pipeline, StageDef, StageFn, STAGES};

/// Parses a stage's options (`null` means all defaults).
pub(crate) fn stage_options<T: serde::de::DeserializeOwned + Default>(
    options: &serde_json::Value,
) -> Result<T, String> {
    if options.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(options.clone()).map_err(|e| e.to_string())
}
