//! Documents a stage serves beside the MCP endpoints, on the same listener: the
//! protected resource metadata of `auth` (RFC 9728), for one. A stage registers
//! them at build time; the gateway's front answers `GET` (and `HEAD`) for each path.

use std::sync::Arc;

use parking_lot::RwLock;

/// A fixed document at a path.
#[derive(Clone)]
pub struct Document {
    /// The path (`/.well-known/oauth-protected-resource/mcp`).
    pub path: String,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: bytes::Bytes,
}

/// The registered documents.
#[derive(Clone, Default)]
pub struct Endpoints {
    documents: Arc<RwLock<Vec<Document>>>,
}

impl Endpoints {
    /// Registers a document (at build time); a later one at the same path wins.
    pub fn register(&self, path: &str, content_type: &'static str, body: bytes::Bytes) {
        let mut documents = self.documents.write();
        documents.retain(|d| d.path != path);
        documents.push(Document { path: path.to_owned(), content_type, body });
    }

    /// Every document.
    pub fn documents(&self) -> Vec<Document> {
        self.documents.read().clone()
    }
}
