//! Open sessions per client (`server.max_sessions_per_client`), so that one client's
//! `initialize` flood cannot take every session the upstreams allow.
//!
//! The client is the peer's IP address until authentication exists, then the
//! principal. A [`ClientSlot`] is taken before the upstream session is opened and held
//! by the session; it is given back when the session leaves the store, whichever way
//! it ends (DELETE, idle expiry, upstream death, shutdown).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

/// The count of open sessions of each client, and its bound.
#[derive(Debug, Default)]
pub struct ClientCounts {
    /// Most sessions per client; 0: no bound.
    max: usize,
    open: Mutex<HashMap<Arc<str>, usize>>,
}

impl ClientCounts {
    /// Counts allowing `max` sessions per client (0: no bound).
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(ClientCounts { max, open: Mutex::new(HashMap::new()) })
    }

    /// The bound (0: none).
    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for one more session of `client`, or `None` if it has `max` already.
    pub fn try_take(self: &Arc<Self>, client: &Arc<str>) -> Option<ClientSlot> {
        let mut open = self.open.lock();
        let count = open.entry(client.clone()).or_insert(0);
        if self.max > 0 && *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientSlot { counts: self.clone(), client: client.clone() })
    }

    /// Open sessions of `client`.
    pub fn open(&self, client: &str) -> usize {
        self.open.lock().get(client).copied().unwrap_or(0)
    }
}

/// One open session of a client; dropping it gives the slot back.
#[derive(Debug)]
pub struct ClientSlot {
    counts: Arc<ClientCounts>,
    client: Arc<str>,
}

impl ClientSlot {
    /// The client it counts against.
    pub fn client(&self) -> &Arc<str> {
        &self.client
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock();
        if let Some(count) = open.get_mut(&self.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_each_client_and_gives_slots_back() {
        let counts = ClientCounts::new(2);
        let (a, b): (Arc<str>, Arc<str>) = ("10.0.0.1".into(), "10.0.0.2".into());
        let first = counts.try_take(&a).expect("first");
        let _second = counts.try_take(&a).expect("second");
        assert!(counts.try_take(&a).is_none(), "a third is refused");
        assert!(counts.try_take(&b).is_some(), "another client is not affected");
        drop(first);
        assert_eq!(counts.open(&a), 1);
        assert!(counts.try_take(&a).is_some(), "a slot given back is free again");
        let unbounded = ClientCounts::new(0);
        let slots: Vec<_> = (0..100).filter_map(|_| unbounded.try_take(&a)).collect();
        assert_eq!(slots.len(), 100);
    }
}
