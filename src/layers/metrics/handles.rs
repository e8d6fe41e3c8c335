//! Metric handles per label set, registered once and reused: recording a call is a
//! hash of its labels, a read lock and two atomic updates, with no allocation once the
//! label set has been seen.

use std::collections::HashMap;
use std::hash::BuildHasher;

use metrics::{Counter, Histogram};
use parking_lot::RwLock;

use super::{REQUESTS_TOTAL, REQUEST_DURATION};

/// The labels of the duration histogram (the counter adds `status`).
pub struct Labels<'a> {
    pub method: &'static str,
    pub tool: &'a str,
    pub route: &'a str,
    pub upstream: &'a str,
}

struct Entry {
    method: &'static str,
    tool: Box<str>,
    route: Box<str>,
    upstream: Box<str>,
    histogram: Histogram,
    counters: RwLock<Vec<(Box<str>, Counter)>>,
}

impl Entry {
    fn matches(&self, l: &Labels<'_>) -> bool {
        self.method == l.method && &*self.tool == l.tool && &*self.route == l.route && &*self.upstream == l.upstream
    }

    fn record(&self, status: &str, seconds: f64) {
        self.histogram.record(seconds);
        if let Some((_, c)) = self.counters.read().iter().find(|(s, _)| &**s == status) {
            c.increment(1);
            return;
        }
        let mut counters = self.counters.write();
        if let Some((_, c)) = counters.iter().find(|(s, _)| &**s == status) {
            c.increment(1);
            return;
        }
        let labels = [
            ("method", self.method.to_owned()),
            ("tool", self.tool.to_string()),
            ("route", self.route.to_string()),
            ("upstream", self.upstream.to_string()),
            ("status", status.to_owned()),
        ];
        let counter = metrics::counter!(REQUESTS_TOTAL, &labels);
        counter.increment(1);
        counters.push((status.into(), counter));
    }
}

/// Handles by label set.
#[derive(Default)]
pub struct Handles {
    hasher: std::collections::hash_map::RandomState,
    buckets: RwLock<HashMap<u64, Vec<Entry>>>,
}

impl Handles {
    fn hash(&self, l: &Labels<'_>) -> u64 {
        self.hasher.hash_one((l.method, l.tool, l.route, l.upstream))
    }

    /// Records one finished call.
    pub fn record(&self, labels: &Labels<'_>, status: &str, seconds: f64) {
        let key = self.hash(labels);
        if let Some(entry) = self.buckets.read().get(&key).and_then(|b| b.iter().find(|e| e.matches(labels))) {
            entry.record(status, seconds);
            return;
        }
        let mut buckets = self.buckets.write();
        let bucket = buckets.entry(key).or_default();
        let pos = match bucket.iter().position(|e| e.matches(labels)) {
            Some(pos) => pos,
            None => {
                let common = [
                    ("method", labels.method.to_owned()),
                    ("tool", labels.tool.to_owned()),
                    ("route", labels.route.to_owned()),
                    ("upstream", labels.upstream.to_owned()),
                ];
                bucket.push(Entry {
                    method: labels.method,
                    tool: labels.tool.into(),
                    route: labels.route.into(),
                    upstream: labels.upstream.into(),
                    histogram: metrics::histogram!(REQUEST_DURATION, &common),
                    counters: RwLock::new(Vec::new()),
                });
                bucket.len() - 1
            }
        };
        bucket[pos].record(status, seconds);
    }
}
