//! The limiter behind the `rate_limit` stage: an interface, and the local one
//! (GCRA buckets from `governor` in a bounded key map).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{HashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};

/// Takes cells from buckets by key. The local limiter keeps them in memory; one
/// shared by replicas (a store all of them reach) implements the same.
pub trait Limiter: Send + Sync + 'static {
    /// Takes a cell from `key`'s bucket, or says how long until one is there.
    fn check(&self, key: &str) -> Result<(), Duration>;
    /// Forgets buckets that are full again (indistinguishable from new ones).
    fn sweep(&self);
    /// How many keys are held.
    fn len(&self) -> usize;
    /// Whether no key is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The limit, for the admin listener (`10/1s burst 20`).
    fn describe(&self) -> String;
}

/// A key map that holds at most `cap` keys: a new key beyond them shares one
/// overflow bucket until a sweep makes room, so that a flood of new keys (clients,
/// principals) costs no memory and is still limited.
pub struct Bounded {
    map: HashMapStateStore<Box<str>>,
    overflow: InMemoryState,
    cap: usize,
}

impl StateStore for Bounded {
    type Key = Box<str>;

    fn measure_and_replace<T, F, E>(&self, key: &Box<str>, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut map = self.map.lock();
        if let Some(state) = map.get(key) {
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        if map.len() >= self.cap {
            drop(map);
            return self.overflow.measure_and_replace(&NotKeyed::NonKey, f);
        }
        map.entry(key.clone()).or_default().measure_and_replace(&NotKeyed::NonKey, f)
    }
}

impl ShrinkableKeyedStateStore<Box<str>> for Bounded {
    fn retain_recent(&self, drop_below: Nanos) {
        self.map.retain_recent(drop_below);
    }

    fn shrink_to_fit(&self) {
        self.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.map.lock().len()
    }

    fn is_empty(&self) -> bool {
        self.map.lock().is_empty()
    }
}

/// The in-process limiter of one key class.
pub struct LocalLimiter {
    limiter: RateLimiter<Box<str>, Bounded, DefaultClock, NoOpMiddleware<<DefaultClock as Clock>::Instant>>,
    quota: Quota,
}

impl LocalLimiter {
    /// `count` cells per `period`, at most `burst` at once, for at most `max_keys` keys.
    pub fn new(count: u32, period: Duration, burst: u32, max_keys: usize) -> Result<LocalLimiter, String> {
        let burst = NonZeroU32::new(burst).ok_or("the burst must be at least 1")?;
        let quota = Quota::with_period(period / count).ok_or("the period is too short")?.allow_burst(burst);
        let state =
            Bounded { map: parking_lot::Mutex::new(HashMap::new()), overflow: InMemoryState::default(), cap: max_keys };
        Ok(LocalLimiter { limiter: RateLimiter::new(quota, state, DefaultClock::default()), quota })
    }
}

impl Limiter for LocalLimiter {
    fn check(&self, key: &str) -> Result<(), Duration> {
        let key: Box<str> = key.into();
        self.limiter.check_key(&key).map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.limiter.len()
    }

    fn describe(&self) -> String {
        let every = self.quota.replenish_interval();
        format!("1/{every:?} burst {}", self.quota.burst_size())
    }
}
