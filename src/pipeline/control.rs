//! Control handles: what a stage lets the admin listener see of it
//! (`GET /stages` lists them, `GET /stages/<name>` shows one). Read-only for now:
//! mutating endpoints come with the admin token.

use std::sync::Arc;

use parking_lot::RwLock;

/// A stage's handle for the admin listener.
pub trait StageControl: Send + Sync + 'static {
    /// The stage's name in the pipeline (the path segment under `/stages/`).
    fn name(&self) -> &str;
    /// Its state as JSON (counters, the loaded rule set's version, options). Never
    /// secrets: the admin listener serves this as it is.
    fn status(&self) -> serde_json::Value;
}

/// The registered handles, shared by the builder and the admin listener.
#[derive(Clone, Default)]
pub struct StageControls {
    handles: Arc<RwLock<Vec<Arc<dyn StageControl>>>>,
}

impl StageControls {
    /// Registers a stage's handle (at build time).
    pub fn register(&self, control: Arc<dyn StageControl>) {
        self.handles.write().push(control);
    }

    /// The handle named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn StageControl>> {
        self.handles.read().iter().find(|c| c.name() == name).cloned()
    }

    /// The names of every handle, in pipeline order.
    pub fn names(&self) -> Vec<String> {
        self.handles.read().iter().map(|c| c.name().to_owned()).collect()
    }
}
