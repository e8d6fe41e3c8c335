//! The stage registry: stage name -> constructor. Adding a stage is one module under
//! `layers/` and one line in [`STAGES`].

use std::sync::Arc;

use serde_json::Value;

use crate::config::StageSpec;
use crate::layers;
use crate::pipeline::{links::CallLinks, McpService, RefusalObservers, StageControls, StageLayer};

/// Wraps an inner service in one stage.
pub type StageFn = Arc<dyn Fn(McpService) -> McpService + Send + Sync>;

/// What a stage constructor gets besides its own options: shared facts, and where
/// it registers what it offers beyond calls.
#[derive(Clone)]
pub struct BuildContext {
    /// Tool names each upstream has listed, for bounded metric labels.
    pub known_tools: layers::metrics::KnownTools,
    /// Where a stage registers its admin handle ([`StageControl`](crate::pipeline::StageControl)).
    pub controls: StageControls,
    /// Where a stage registers to hear of refusals before the pipeline.
    pub refusals: RefusalObservers,
    /// Where a stage registers to see the upstream wire
    /// ([`WireTap`](crate::upstream::WireTap)).
    pub wire: crate::upstream::WireTaps,
    /// Where a stage registers work of its own to start and stop with the gateway.
    pub lifecycles: crate::pipeline::Lifecycles,
    /// Where a stage registers to hear of the changes other stages make to messages
    /// ([`ChangeObserver`](crate::pipeline::ChangeObserver)).
    pub changes: crate::pipeline::ChangeObservers,
    /// Where a stage registers documents it serves beside the MCP endpoints.
    pub endpoints: crate::pipeline::Endpoints,
    /// What the pipeline is built for: `gateway` or `forward` (recorded in tapes).
    pub mode: &'static str,
    /// Each route's upstream (route path -> upstream name).
    pub routes: Arc<std::collections::HashMap<String, String>>,
    /// The pipeline's stage names, in order (a stage may look at what comes after it).
    pub stages: Arc<[String]>,
}

impl Default for BuildContext {
    fn default() -> Self {
        BuildContext {
            known_tools: Default::default(),
            controls: Default::default(),
            refusals: Default::default(),
            wire: Default::default(),
            lifecycles: Default::default(),
            changes: Default::default(),
            endpoints: Default::default(),
            mode: "gateway",
            routes: Default::default(),
            stages: Arc::from([]),
        }
    }
}

/// One entry of the registry.
pub struct StageDef {
    /// The name used in the YAML `pipeline:` list.
    pub name: &'static str,
    /// Builds the stage from its options (`null` when none were given).
    pub build: fn(&Value, &BuildContext) -> Result<StageFn, String>,
    /// Stages that, when both are present, must come earlier in the list, with the
    /// reason shown to the user when they do not.
    pub must_follow: &'static [(&'static str, &'static str)],
}

/// Every stage Shadowcat knows.
pub static STAGES: &[StageDef] = &[
    layers::auth::STAGE,
    layers::metrics::STAGE,
    layers::access_log::STAGE,
    layers::policy::STAGE,
    layers::rate_limit::STAGE,
    layers::intercept::STAGE,
    layers::record::STAGE,
];

fn find(name: &str) -> Option<&'static StageDef> {
    STAGES.iter().find(|s| s.name == name)
}

/// Checks the pipeline list: known names, no duplicates, a safe order, valid options.
/// Returns the stages' wrappers, outermost first.
pub fn check_pipeline(specs: &[StageSpec], ctx: &BuildContext) -> Result<Vec<StageFn>, String> {
    let mut out = Vec::with_capacity(specs.len());
    for (index, spec) in specs.iter().enumerate() {
        let Some(def) = find(&spec.name) else {
            let known: Vec<_> = STAGES.iter().map(|s| s.name).collect();
            return Err(format!(
                "pipeline[{index}]: unknown stage {:?} (known stages: {})",
                spec.name,
                known.join(", ")
            ));
        };
        if specs[..index].iter().any(|s| s.name == spec.name) {
            return Err(format!("pipeline[{index}]: stage {:?} is listed twice", spec.name));
        }
        for (earlier, why) in def.must_follow {
            if specs[index..].iter().any(|s| s.name == *earlier) {
                return Err(format!("pipeline[{index}]: stage {:?} must come after {:?}: {why}", spec.name, earlier));
            }
        }
        let stage = (def.build)(&spec.options, ctx).map_err(|e| format!("pipeline[{index}] ({}): {e}", spec.name))?;
        out.push(stage);
    }
    Ok(out)
}

/// A checked pipeline, ready to be built over a service as often as needed: every
/// build shares the stages (their state, their registrations) and the call links,
/// but has call paths of its own. The gateway builds one per front thread, so that
/// the reference counts a call takes and gives back stay in that thread's cache.
#[derive(Clone)]
pub struct Pipeline {
    stages: Arc<[StageFn]>,
    links: CallLinks,
}

impl Pipeline {
    /// Checks `specs` and builds each stage once (see [`check_pipeline`]).
    pub fn new(specs: &[StageSpec], ctx: &BuildContext) -> Result<Pipeline, String> {
        Ok(Pipeline { stages: check_pipeline(specs, ctx)?.into(), links: CallLinks::default() })
    }

    /// The stages around `inner` (the router), with the pipeline's own call linking
    /// ([`CallLinks`]) outermost.
    pub fn over(&self, inner: McpService) -> McpService {
        let staged = self.stages.iter().rev().fold(inner, |svc, stage| stage(svc));
        StageLayer::new(self.links.clone()).service(staged)
    }
}

/// Builds the whole pipeline around `inner` once (see [`Pipeline`]).
pub fn build_pipeline(specs: &[StageSpec], ctx: &BuildContext, inner: McpService) -> Result<McpService, String> {
    Ok(Pipeline::new(specs, ctx)?.over(inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> StageSpec {
        StageSpec { name: name.into(), options: Value::Null }
    }

    #[test]
    fn rejects_unknown_and_duplicate_stages() {
        let ctx = BuildContext::default();
        let err = check_pipeline(&[spec("nope")], &ctx).err().expect("error");
        assert!(err.contains("unknown stage \"nope\""), "{err}");
        assert!(err.contains("metrics"), "{err}");
        let err = check_pipeline(&[spec("metrics"), spec("metrics")], &ctx).err().expect("error");
        assert!(err.contains("listed twice"), "{err}");
        assert_eq!(check_pipeline(&[spec("metrics"), spec("access_log")], &ctx).map(|v| v.len()), Ok(2));
    }

    #[test]
    fn rejects_bad_options() {
        let ctx = BuildContext::default();
        let bad = StageSpec { name: "access_log".into(), options: serde_json::json!({"levle": "info"}) };
        let err = check_pipeline(&[bad], &ctx).err().expect("error");
        assert!(err.contains("access_log") && err.contains("levle"), "{err}");
    }
}
