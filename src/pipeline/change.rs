//! Changes a stage made to a call's messages: a stage that rewrites, answers or
//! stops messages (`intercept`) tells the [`ChangeObserver`]s registered at build
//! time (`record`, which puts them on the call's tape), whatever the order of the
//! two in the pipeline.

use std::sync::Arc;

use parking_lot::RwLock;

use super::{CallInfo, Direction};
use crate::protocol::Message;

/// One change: the message as the stage got it, and what became of it.
pub struct Change<'a> {
    /// Which way the message was going.
    pub direction: Direction,
    /// Who changed it (a rule's id).
    pub by: &'a str,
    /// What was done (`modify`, `mock`, `block`, `drop`, `fault`, `pause`).
    pub action: &'static str,
    /// The message as it came.
    pub before: &'a Message,
    /// The message that went on in its place (`None`: it went no further).
    pub after: Option<&'a Message>,
    /// The answer sent back to its sender instead (a mocked, blocked or dropped
    /// request).
    pub answer: Option<&'a Message>,
}

/// Told of every change. Called on the message's task: keep it quick.
pub trait ChangeObserver: Send + Sync + 'static {
    /// A stage changed one of `call`'s messages.
    fn changed(&self, call: &CallInfo, change: &Change<'_>);
}

/// The registered observers, shared by the builder and the stages that change.
#[derive(Clone, Default)]
pub struct ChangeObservers {
    observers: Arc<RwLock<Vec<Arc<dyn ChangeObserver>>>>,
}

impl ChangeObservers {
    /// Registers an observer (at build time).
    pub fn register(&self, observer: Arc<dyn ChangeObserver>) {
        self.observers.write().push(observer);
    }

    /// Tells every observer.
    pub fn notify(&self, call: &CallInfo, change: &Change<'_>) {
        for o in self.observers.read().iter() {
            o.changed(call, change);
        }
    }

    /// Whether any observer is registered (a stage keeps no copy of a message
    /// before changing it when none is).
    pub fn is_empty(&self) -> bool {
        self.observers.read().is_empty()
    }
}
