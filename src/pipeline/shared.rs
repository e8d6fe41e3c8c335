//! State a stage shares between all its calls and can replace while serving (a rule
//! set, a policy, limits): read without a lock on every call, swapped atomically by a
//! file watcher or the admin API.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

/// Shared, hot-swappable state. Clones share it. A call that loaded the state keeps
/// that version until it finishes, however often it is replaced meanwhile: load it in
/// [`Stage::begin`](super::Stage::begin) and keep the `Arc` in the call.
///
/// ```
/// use shadowcat::pipeline::Shared;
/// let rules = Shared::new(vec!["block-echo"]);
/// let in_flight = rules.load();
/// rules.replace(vec!["block-echo", "slow-add"]);
/// assert_eq!(in_flight.len(), 1, "a call keeps the state it started under");
/// assert_eq!(rules.load().len(), 2);
/// assert_eq!(rules.generation(), 2);
/// ```
pub struct Shared<T> {
    current: Arc<ArcSwap<T>>,
    generation: Arc<AtomicU64>,
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared { current: self.current.clone(), generation: self.generation.clone() }
    }
}

impl<T> Shared<T> {
    /// State starting as `value` (generation 1).
    pub fn new(value: T) -> Self {
        Shared { current: Arc::new(ArcSwap::from_pointee(value)), generation: Arc::new(AtomicU64::new(1)) }
    }

    /// The current state.
    pub fn load(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Replaces the state for calls that start from now on; returns the old one.
    pub fn replace(&self, value: T) -> Arc<T> {
        let old = self.current.swap(Arc::new(value));
        self.generation.fetch_add(1, Ordering::AcqRel);
        old
    }

    /// How many versions there have been (1 before the first replacement).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("generation", &self.generation()).field("current", &self.load()).finish()
    }
}
