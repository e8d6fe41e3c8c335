//! Refusals before the pipeline: requests a front answers itself (Origin, method,
//! Accept, media type, size, JSON, protocol version, session checks) never reach a
//! stage, so stages that must account for every request (an audit log, metrics)
//! register a [`RefusalObserver`] at build time.

use std::sync::Arc;

use http::HeaderMap;
use parking_lot::RwLock;

use super::Transport;
use crate::error::GatewayError;

/// A request the front refused.
pub struct Refusal<'a> {
    /// Why, as the client is told.
    pub error: &'a GatewayError,
    /// How it came.
    pub transport: Transport,
    /// The peer's IP address (HTTP).
    pub peer: Option<&'a str>,
    /// The HTTP method (`POST`, `GET`, ...), or `message` on stdio.
    pub method: &'a str,
    /// The request path (HTTP), or the route (stdio).
    pub path: &'a str,
    /// The request's headers, credentials included: an observer must not write
    /// `Authorization`, cookies or `Mcp-Session-Id` anywhere.
    pub headers: &'a HeaderMap,
    /// The JSON-RPC id the error answers, when the body was read that far.
    pub id: Option<&'a str>,
}

/// Told of every refusal before the pipeline. Called on the request's task: keep it
/// quick (count, or queue for a writer).
pub trait RefusalObserver: Send + Sync + 'static {
    /// A request was refused.
    fn refused(&self, refusal: &Refusal<'_>);
}

/// The registered observers, shared by the builder and the fronts.
#[derive(Clone, Default)]
pub struct RefusalObservers {
    observers: Arc<RwLock<Vec<Arc<dyn RefusalObserver>>>>,
}

impl RefusalObservers {
    /// Registers an observer (at build time).
    pub fn register(&self, observer: Arc<dyn RefusalObserver>) {
        self.observers.write().push(observer);
    }

    /// Tells every observer.
    pub fn notify(&self, refusal: &Refusal<'_>) {
        for o in self.observers.read().iter() {
            o.refused(refusal);
        }
    }

    /// Whether any observer is registered.
    pub fn is_empty(&self) -> bool {
        self.observers.read().is_empty()
    }
}
