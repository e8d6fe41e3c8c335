//! The idle run: open N sessions (each initialized, then left alone) and hold them,
//! reading the resident memory (`VmRSS`) of watched processes along the way, so the
//! memory one more idle session costs the gateway can be read off.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::client::{Session, Target};
use crate::load::{close_sessions, open_sessions, round, Watch};
use crate::procfs;

/// What to run.
#[derive(Debug, Clone)]
pub struct IdleOptions {
    /// The MCP endpoint.
    pub url: String,
    /// Sessions to open and hold.
    pub sessions: usize,
    /// How long to hold them (memory is read after at most one second of it).
    pub hold: Duration,
    /// Close each session's connection once it is initialized (before the next batch
    /// opens), so only the session, not an open keep-alive connection, is held.
    pub drop_connections: bool,
    /// Longest wait for one reply.
    pub timeout: Duration,
    /// Processes to read the memory of.
    pub watch: Vec<Watch>,
    /// A bearer token every request carries.
    pub bearer: Option<String>,
}

/// Sessions opened at a time.
const OPEN_BATCH: usize = 16;

/// Runs the idle test and returns its result as one JSON object.
///
/// The first fifth of the sessions warm the gateway up (allocator arenas, pooled
/// upstream connections, table growth); the cost per session is read over the
/// other four fifths, so it is what one more idle session costs.
pub async fn run(opts: &IdleOptions) -> Result<Value, String> {
    let target = Arc::new(
        Target::parse(&opts.url).and_then(|t| t.with_bearer(opts.bearer.as_deref())).map_err(|e| e.to_string())?,
    );
    let settle = opts.hold.min(Duration::from_secs(1));
    let warmup_sessions = (opts.sessions / 5).max(1).min(opts.sessions);
    let before = rss(&opts.watch);
    let mut sessions = Vec::with_capacity(opts.sessions);
    open_more(&target, opts, &mut sessions, warmup_sessions).await?;
    tokio::time::sleep(settle / 2).await;
    let warm = rss(&opts.watch);
    open_more(&target, opts, &mut sessions, opts.sessions - warmup_sessions).await?;
    tokio::time::sleep(settle).await;
    let held = rss(&opts.watch);
    tokio::time::sleep(opts.hold.saturating_sub(settle)).await;
    let opened = sessions.len();
    close_sessions(sessions).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = rss(&opts.watch);

    let mut memory = serde_json::Map::new();
    for (i, w) in opts.watch.iter().enumerate() {
        let entry = match (before[i], warm[i], held[i]) {
            (Some(b), Some(wa), Some(h)) => json!({
                "rss_before_kib": b,
                "rss_warm_kib": wa,
                "rss_held_kib": h,
                "rss_after_delete_kib": after[i],
                "per_session_kib": round((h as f64 - wa as f64) / (opened - warmup_sessions).max(1) as f64, 2),
                "average_per_session_kib": round((h as f64 - b as f64) / opened.max(1) as f64, 2),
            }),
            _ => json!({ "error": "process not readable in /proc" }),
        };
        memory.insert(w.name.clone(), entry);
    }
    Ok(json!({
        "mode": "idle",
        "url": opts.url,
        "sessions": opened,
        "warmup_sessions": warmup_sessions,
        "drop_connections": opts.drop_connections,
        "hold_s": opts.hold.as_secs_f64(),
        "memory": memory,
    }))
}

/// Opens `n` more sessions, [`OPEN_BATCH`] at a time; on failure closes them all.
async fn open_more(
    target: &Arc<Target>,
    opts: &IdleOptions,
    sessions: &mut Vec<Session>,
    mut remaining: usize,
) -> Result<(), String> {
    while remaining > 0 {
        let batch = remaining.min(OPEN_BATCH);
        match open_sessions(target, batch, opts.timeout).await {
            Ok(mut opened) => {
                if opts.drop_connections {
                    // At once, so that only a batch of connections is ever open and
                    // the memory read is what sessions, not connections, cost.
                    opened.iter_mut().for_each(|s| s.disconnect());
                }
                sessions.extend(opened);
            }
            Err(e) => {
                close_sessions(std::mem::take(sessions)).await;
                return Err(e);
            }
        }
        remaining -= batch;
    }
    Ok(())
}

fn rss(watch: &[Watch]) -> Vec<Option<u64>> {
    watch.iter().map(|w| procfs::status_kib(w.pid, "VmRSS").ok()).collect()
}
