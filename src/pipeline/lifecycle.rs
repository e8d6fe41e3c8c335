//! Work a stage does outside calls: started when the gateway (or forward mode)
//! starts, stopped when it shuts down. A stage registers a [`Lifecycle`] at build
//! time (`layers::BuildContext::lifecycles`); building a pipeline only to check it
//! (`config validate`) starts nothing.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use parking_lot::RwLock;

/// Start and stop of a stage's own work (a writer thread, a sweeper task).
pub trait Lifecycle: Send + Sync + 'static {
    /// Starts it (inside the runtime); an error stops the start-up with that message.
    fn start(&self) -> Result<(), String>;

    /// Stops it, within `grace` (what it holds is written out: tapes get their
    /// trailers). Called after the last call has ended.
    fn stop(&self, grace: std::time::Duration) -> BoxFuture<'_, ()>;
}

/// The registered lifecycles, started in order and stopped in reverse.
#[derive(Clone, Default)]
pub struct Lifecycles {
    list: Arc<RwLock<Vec<Arc<dyn Lifecycle>>>>,
}

impl Lifecycles {
    /// Registers one (at build time).
    pub fn register(&self, l: Arc<dyn Lifecycle>) {
        self.list.write().push(l);
    }

    /// Starts every one; the first error is returned.
    pub fn start(&self) -> Result<(), String> {
        let list = self.list.read().clone();
        list.iter().try_for_each(|l| l.start())
    }

    /// Stops every one, the last registered first.
    pub async fn stop(&self, grace: std::time::Duration) {
        let list = self.list.read().clone();
        for l in list.iter().rev() {
            l.stop(grace).await;
        }
    }
}
