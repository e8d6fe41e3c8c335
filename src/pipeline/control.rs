//! Control handles: what a stage lets the admin listener see and do of it.
//! `GET /stages` lists them, `GET /stages/<name>` shows one ([`StageControl::status`],
//! open to anyone who reaches the listener), and `/stages/<name>/...` are the stage's
//! own endpoints ([`StageControl::call`]): the listener checks `admin.token` before
//! handing them over, so a stage only says what a call does.

use std::sync::Arc;

use parking_lot::RwLock;

/// A stage's handle for the admin listener.
pub trait StageControl: Send + Sync + 'static {
    /// The stage's name in the pipeline (the path segment under `/stages/`).
    fn name(&self) -> &str;
    /// Its state as JSON (counters, the loaded rule set's version, options). Never
    /// secrets: the admin listener serves this as it is.
    fn status(&self) -> serde_json::Value;

    /// One of the stage's own endpoints, `/stages/<name>/<path>`. Already
    /// authorized; the default has none.
    fn call(&self, call: AdminCall) -> AdminReply {
        let _ = call;
        AdminReply::not_found()
    }
}

/// A call to `/stages/<name>/<path>` on the admin listener.
pub struct AdminCall {
    /// GET reads; anything else changes something.
    pub method: http::Method,
    /// The path below `/stages/<name>/`, split at `/` (empty segments left out).
    pub path: Vec<String>,
    /// The request body (at most the admin listener's body limit).
    pub body: bytes::Bytes,
}

/// What a stage's endpoint answers.
pub enum AdminReply {
    /// A JSON body with a status.
    Json(http::StatusCode, serde_json::Value),
    /// A stream of JSON events, served as SSE until the client goes away.
    Events(std::pin::Pin<Box<dyn futures_core::Stream<Item = serde_json::Value> + Send>>),
}

impl AdminReply {
    /// `200` with `value`.
    pub fn ok(value: serde_json::Value) -> Self {
        AdminReply::Json(http::StatusCode::OK, value)
    }

    /// An error: `{"error": message}` with `status`.
    pub fn error(status: http::StatusCode, message: impl Into<String>) -> Self {
        AdminReply::Json(status, serde_json::json!({ "error": message.into() }))
    }

    /// `404`.
    pub fn not_found() -> Self {
        Self::error(http::StatusCode::NOT_FOUND, "no such endpoint")
    }
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
