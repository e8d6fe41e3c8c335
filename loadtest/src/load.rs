//! The load run: N sessions each initialize, then call `tools/call echo` with one
//! request in flight for warm-up + duration; or, stateless (revision 2026-07-28), N
//! workers each send stateless `tools/call echo` requests, one in flight, with no
//! handshake. Requests that complete inside the measured window (after the warm-up)
//! count; the CPU time of watched processes is read from `/proc` at the window's two
//! ends, so CPU per request covers exactly the requests counted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{ClientError, Session, Target, PROTOCOL_VERSION, STATELESS_VERSION};
use crate::procfs;
use crate::stats::Latencies;

/// A process whose CPU time or memory the bench reads, by name (`gateway=1234`).
#[derive(Debug, Clone)]
pub struct Watch {
    /// The name in the output.
    pub name: String,
    /// Its pid.
    pub pid: u32,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The MCP endpoint.
    pub url: String,
    /// Concurrent sessions, or stateless workers (connections), one request in flight each.
    pub sessions: usize,
    /// Stateless clients (2026-07-28: no initialize, no session) instead of sessions.
    pub stateless: bool,
    /// Measured time.
    pub duration: Duration,
    /// Time before the measurement starts (requests run but do not count).
    pub warmup: Duration,
    /// Characters of echo text per call.
    pub payload_bytes: usize,
    /// Longest wait for one reply.
    pub timeout: Duration,
    /// Processes to read CPU time of.
    pub watch: Vec<Watch>,
    /// Processes whose children (together) to read CPU time of: the stdio upstreams
    /// a gateway started. Children that end inside the window are not counted.
    pub watch_children: Vec<Watch>,
    /// A bearer token every request carries.
    pub bearer: Option<String>,
}

#[derive(Default)]
struct Tally {
    latencies: Latencies,
    /// Calls answered, warm-up and after the window included.
    ok_total: u64,
    errors: u64,
    errors_total: u64,
    kinds: BTreeMap<String, u64>,
    first_error: Option<String>,
}

impl Tally {
    fn error(&mut self, e: &ClientError, in_window: bool) {
        self.errors_total += 1;
        if in_window {
            self.errors += 1;
        }
        *self.kinds.entry(e.kind()).or_default() += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }
}

/// Runs the load and returns its result as one JSON object.
pub async fn run(opts: &LoadOptions) -> Result<Value, String> {
    let target = Arc::new(
        Target::parse(&opts.url).and_then(|t| t.with_bearer(opts.bearer.as_deref())).map_err(|e| e.to_string())?,
    );
    let sessions = if opts.stateless {
        open_stateless(&target, opts.sessions, opts.timeout).await?
    } else {
        open_sessions(&target, opts.sessions, opts.timeout).await?
    };
    let text: Arc<str> = "x".repeat(opts.payload_bytes).into();

    let start = Instant::now();
    let window_start = start + opts.warmup;
    let window_end = window_start + opts.duration;
    let mut tasks = JoinSet::new();
    for mut session in sessions {
        let text = text.clone();
        let capacity = 4096;
        tasks.spawn(async move {
            let mut tally = Tally { latencies: Latencies::with_capacity(capacity), ..Tally::default() };
            while Instant::now() < window_end {
                let sent = Instant::now();
                let result = session.call_echo(&text).await;
                let done = Instant::now();
                let in_window = done >= window_start && done < window_end;
                if result.is_ok() {
                    tally.ok_total += 1;
                }
                match result {
                    Ok(()) if in_window => tally.latencies.record((done - sent).as_nanos() as u64),
                    Ok(()) => {}
                    Err(e) => {
                        tally.error(&e, in_window);
                        if e.is_session_gone() && !session.is_stateless() {
                            if let Err(e) = session.initialize().await {
                                tally.error(&e, false);
                            }
                        }
                        // Do not spin on a failing server; the loop still ends on time.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            (session, tally)
        });
    }

    tokio::time::sleep_until(window_start).await;
    let cpu_start = cpu_samples(opts);
    let machine_start = procfs::machine_cpu().ok();
    let measured_from = Instant::now();
    tokio::time::sleep_until(window_end).await;
    let cpu_end = cpu_samples(opts);
    let machine_end = procfs::machine_cpu().ok();
    let measured = measured_from.elapsed();

    let mut total = Tally::default();
    let mut finished = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (session, tally) = joined.map_err(|e| format!("a session task failed: {e}"))?;
        finished.push(session);
        total.latencies.merge(tally.latencies);
        total.errors += tally.errors;
        total.ok_total += tally.ok_total;
        total.errors_total += tally.errors_total;
        for (k, n) in tally.kinds {
            *total.kinds.entry(k).or_default() += n;
        }
        total.first_error = total.first_error.or(tally.first_error);
    }
    close_sessions(finished).await;

    let requests = total.latencies.len() as u64;
    let seconds = measured.as_secs_f64().max(1e-9);
    let cpu = cpu_report(&cpu_start, &cpu_end, requests, seconds);
    let tick_s = 1.0 / procfs::clock_ticks() as f64;
    let machine = match (machine_start, machine_end) {
        (Some(a), Some(b)) => json!({
            "busy_cores": round(b.busy.saturating_sub(a.busy) as f64 * tick_s / seconds, 3),
            "steal_cores": round(b.steal.saturating_sub(a.steal) as f64 * tick_s / seconds, 3),
            "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        }),
        _ => Value::Null,
    };
    let lat = &mut total.latencies;
    Ok(json!({
        "mode": "load",
        "url": opts.url,
        "sessions": opts.sessions,
        "stateless": opts.stateless,
        "protocol_version": if opts.stateless { STATELESS_VERSION } else { PROTOCOL_VERSION },
        "duration_s": round(seconds, 3),
        "warmup_s": opts.warmup.as_secs_f64(),
        "payload_bytes": opts.payload_bytes,
        "requests": requests,
        "calls_total": total.ok_total,
        "throughput_rps": round(requests as f64 / seconds, 1),
        "p50_us": round(lat.quantile_us(0.50), 1),
        "p90_us": round(lat.quantile_us(0.90), 1),
        "p99_us": round(lat.quantile_us(0.99), 1),
        "max_us": round(lat.quantile_us(1.0), 1),
        "mean_us": round(lat.mean_us(), 1),
        "errors": total.errors,
        "errors_total": total.errors_total,
        "error_kinds": total.kinds,
        "first_error": total.first_error,
        "cpu": cpu,
        "machine": machine,
    }))
}

/// Opens `n` sessions at once; all or nothing.
pub(crate) async fn open_sessions(target: &Arc<Target>, n: usize, timeout: Duration) -> Result<Vec<Session>, String> {
    open_all(target, n, timeout, false).await
}

/// Opens `n` stateless clients at once (each connects and makes one call); all or
/// nothing.
async fn open_stateless(target: &Arc<Target>, n: usize, timeout: Duration) -> Result<Vec<Session>, String> {
    open_all(target, n, timeout, true).await
}

async fn open_all(target: &Arc<Target>, n: usize, timeout: Duration, stateless: bool) -> Result<Vec<Session>, String> {
    let mut opening = JoinSet::new();
    for _ in 0..n {
        let target = target.clone();
        opening.spawn(async move {
            if stateless {
                Session::open_stateless(target, timeout).await
            } else {
                Session::open(target, timeout).await
            }
        });
    }
    let mut sessions = Vec::with_capacity(n);
    let mut failure = None;
    while let Some(joined) = opening.join_next().await {
        match joined {
            Ok(Ok(s)) => sessions.push(s),
            Ok(Err(e)) => failure = failure.or(Some(e.to_string())),
            Err(e) => failure = failure.or(Some(e.to_string())),
        }
    }
    if let Some(reason) = failure {
        let opened = sessions.len();
        close_sessions(sessions).await;
        let what = if stateless { "stateless clients (each connects and makes one call)" } else { "sessions" };
        return Err(format!("could not open {n} {what} ({opened} opened): {reason}"));
    }
    Ok(sessions)
}

/// Ends every session (`DELETE`), at most 16 at a time; failures are ignored (the
/// run is over), each is bounded by the session's timeout.
pub(crate) async fn close_sessions(sessions: Vec<Session>) {
    let mut closing = JoinSet::new();
    for mut s in sessions {
        if closing.len() >= 16 {
            let _ = closing.join_next().await;
        }
        closing.spawn(async move {
            let _ = s.delete().await;
        });
    }
    while closing.join_next().await.is_some() {}
}

/// What the CPU time of one watched name was at one end of the window.
enum CpuSample {
    /// One process, in ticks (`None` if unreadable).
    One(Option<u64>),
    /// The children of a process, ticks by pid (`None` if the parent is unreadable).
    Children(Option<BTreeMap<u32, u64>>),
}

/// CPU of each watched process, of the children of each `watch_children` process,
/// and of this one (`client`), by name.
fn cpu_samples(opts: &LoadOptions) -> Vec<(String, CpuSample)> {
    let one = |name: &str, pid| (name.to_owned(), CpuSample::One(procfs::cpu_ticks(pid).ok()));
    let mut out: Vec<(String, CpuSample)> = opts.watch.iter().map(|w| one(&w.name, w.pid)).collect();
    for w in &opts.watch_children {
        out.push((w.name.clone(), CpuSample::Children(procfs::children_cpu_ticks(w.pid).ok())));
    }
    out.push(one("client", std::process::id()));
    out
}

fn cpu_report(start: &[(String, CpuSample)], end: &[(String, CpuSample)], requests: u64, seconds: f64) -> Value {
    let tick_us = 1e6 / procfs::clock_ticks() as f64;
    let mut out = serde_json::Map::new();
    for ((name, a), (_, b)) in start.iter().zip(end) {
        let (ticks, each) = match (a, b) {
            (CpuSample::One(Some(a)), CpuSample::One(Some(b))) => (Some(b.saturating_sub(*a)), None),
            (CpuSample::Children(Some(a)), CpuSample::Children(Some(b))) => {
                // Children alive at the end: what each used since the start (all of it
                // for those started inside the window).
                let mut each: Vec<u64> =
                    b.iter().map(|(pid, t)| t.saturating_sub(a.get(pid).copied().unwrap_or(0))).collect();
                each.sort_unstable_by(|x, y| y.cmp(x));
                (Some(each.iter().sum()), Some(each))
            }
            _ => (None, None),
        };
        let mut entry = match ticks {
            Some(ticks) => {
                let us = ticks as f64 * tick_us;
                json!({
                    "cpu_ms": round(us / 1000.0, 1),
                    "us_per_req": if requests > 0 { round(us / requests as f64, 2) } else { 0.0 },
                    "cores": round(us / 1e6 / seconds, 3),
                })
            }
            None => json!({ "error": "process not readable in /proc" }),
        };
        if let Some(each) = each {
            // How the work spread over the children (a pool's sessions), busiest first.
            entry["processes"] = json!(each.len());
            entry["cpu_ms_each"] = each.iter().map(|&t| round(t as f64 * tick_us / 1000.0, 1)).collect();
        }
        out.insert(name.clone(), entry);
    }
    Value::Object(out)
}

/// Rounds to `digits` decimals (for readable JSON).
pub(crate) fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}
