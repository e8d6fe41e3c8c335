//! The summary `run.sh` prints: reads the JSON lines of every run (each tagged with
//! `labels`: scenario, target, round), pairs each direct round with the gateway round
//! run right after it, and prints medians over the rounds and the targets. The `pool`
//! scenario (stateless clients through the pool, labels `pool` and target `stateless`
//! or `session`) gets a table of its own, one row per pool size.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::stats::median;

/// The issue's targets, for the HTTP-upstream scenario.
const TARGET_CPU_US: f64 = 30.0;
const TARGET_ADDED_P50_US: f64 = 100.0;
const TARGET_RATIO: f64 = 0.4;
const TARGET_IDLE_MIB: f64 = 10.0;
const TARGET_PER_SESSION_KIB: f64 = 16.0;

/// A round whose machine was busier than this (in cores) before it started, with
/// processes not of the bench, is flagged as skewed.
const NOISY_BACKGROUND_CORES: f64 = 0.15;

/// A run during which the machine was busier than the processes it watched by more
/// than this (in cores) shared the machine with something else (pool scenario, where
/// every process of the bench is watched).
const FOREIGN_CORES: f64 = 0.3;

#[derive(Debug, Clone, Default)]
struct LoadRow {
    scenario: String,
    target: String,
    round: String,
    pool: Option<u64>,
    sessions: u64,
    rps: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    errors: u64,
    gateway_cpu: Option<f64>,
    upstream_cpu: Option<f64>,
    client_cpu: Option<f64>,
    busy_cores: Option<f64>,
    /// Cores used by the processes the run watched (and the client), together.
    own_cores: Option<f64>,
    noisy: bool,
}

#[derive(Debug, Default)]
struct Memory {
    idle_kib: Option<f64>,
    peak_kib: Option<f64>,
    per_session_open: Option<(f64, u64)>,
    per_session_closed: Option<(f64, u64)>,
}

/// Renders the summary of the JSON lines in `input`.
pub fn render(input: &str) -> String {
    let mut loads = Vec::new();
    let mut recorded: Vec<(String, String, u64, u64, u64)> = Vec::new();
    let mut memory: BTreeMap<String, Memory> = BTreeMap::new();
    let mut meta = None;
    for line in input.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        let label = |k: &str| v["labels"][k].as_str().unwrap_or("").to_owned();
        let scenario = label("scenario");
        match v["mode"].as_str() {
            Some("load") => {
                meta.get_or_insert_with(|| {
                    (v["duration_s"].as_f64(), v["warmup_s"].as_f64(), v["payload_bytes"].as_u64())
                });
                let cpu = |name: &str| v["cpu"][name]["us_per_req"].as_f64();
                loads.push(LoadRow {
                    scenario,
                    target: label("target"),
                    round: label("round"),
                    pool: label("pool").parse().ok(),
                    sessions: v["sessions"].as_u64().unwrap_or(0),
                    rps: v["throughput_rps"].as_f64().unwrap_or(0.0),
                    p50: v["p50_us"].as_f64().unwrap_or(0.0),
                    p90: v["p90_us"].as_f64().unwrap_or(0.0),
                    p99: v["p99_us"].as_f64().unwrap_or(0.0),
                    errors: v["errors"].as_u64().unwrap_or(0),
                    gateway_cpu: cpu("gateway"),
                    upstream_cpu: cpu("upstream"),
                    client_cpu: cpu("client"),
                    busy_cores: v["machine"]["busy_cores"].as_f64(),
                    own_cores: v["cpu"].as_object().and_then(|cpu| {
                        let cores: Vec<f64> = cpu.values().filter_map(|c| c["cores"].as_f64()).collect();
                        (!cores.is_empty()).then(|| cores.iter().sum())
                    }),
                    noisy: v["labels"]["background"]
                        .as_str()
                        .and_then(|b| b.parse::<f64>().ok())
                        .is_some_and(|b| b > NOISY_BACKGROUND_CORES),
                });
            }
            Some("idle") => {
                let m = memory.entry(scenario).or_default();
                let per = v["memory"]["gateway"]["per_session_kib"].as_f64();
                let n = v["sessions"].as_u64().unwrap_or(0);
                let slot = if v["drop_connections"].as_bool() == Some(true) {
                    &mut m.per_session_closed
                } else {
                    &mut m.per_session_open
                };
                *slot = per.map(|p| (p, n));
            }
            Some("record") => {
                let n = |k: &str| v[k].as_u64().unwrap_or(0);
                recorded.push((scenario, label("target"), n("frames"), n("expected"), n("dropped")));
            }
            Some("rss") => {
                let m = memory.entry(scenario).or_default();
                m.idle_kib = v["idle_kib"].as_f64().or(m.idle_kib);
                m.peak_kib = v["peak_kib"].as_f64().or(m.peak_kib);
            }
            _ => {}
        }
    }

    let mut out = String::new();
    if let Some((duration, warmup, payload)) = meta {
        let _ = writeln!(
            out,
            "Medians over rounds of {:.0} s (after {:.0} s warm-up), echo text {} B; CPU/req = utime+stime \
             from /proc over the measured window / requests in it.",
            duration.unwrap_or(0.0),
            warmup.unwrap_or(0.0),
            payload.unwrap_or(0)
        );
    }
    let mut scenarios: Vec<String> = loads.iter().map(|r| r.scenario.clone()).collect();
    scenarios.extend(memory.keys().cloned());
    scenarios.sort();
    scenarios.dedup();
    for scenario in &scenarios {
        let rows: Vec<&LoadRow> = loads.iter().filter(|r| &r.scenario == scenario).collect();
        if scenario == "pool" {
            render_pool(&mut out, &rows);
        } else {
            render_scenario(&mut out, scenario, &rows, memory.get(scenario));
            render_baseline(&mut out, scenario, &rows);
            for (_, target, frames, expected, dropped) in recorded.iter().filter(|r| &r.0 == scenario) {
                let verdict = if frames == expected && *dropped == 0 { "none lost" } else { "FRAMES LOST" };
                let _ = writeln!(
                    out,
                    "\nrecord ({target}): {frames} frames in the tapes, {expected} expected from what the load generator saw (2 per call, 3 per session), {dropped} dropped: {verdict}"
                );
            }
        }
    }
    if let Some(http) = scenarios.iter().find(|s| s.as_str() == "http") {
        let rows: Vec<&LoadRow> = loads.iter().filter(|r| &r.scenario == http).collect();
        render_targets(&mut out, &rows, memory.get(http));
    } else {
        let _ = writeln!(out, "\nNo HTTP-upstream scenario in these results: the targets are set for it.");
    }
    out
}

/// Per sessions count: paired (direct, gateway) rounds.
fn pairs<'a>(rows: &[&'a LoadRow], sessions: u64) -> Vec<(&'a LoadRow, &'a LoadRow)> {
    let pick = |target: &str, round: &str| {
        rows.iter().copied().find(|r| r.sessions == sessions && r.target == target && r.round == round)
    };
    let mut rounds: Vec<&str> = rows.iter().filter(|r| r.sessions == sessions).map(|r| r.round.as_str()).collect();
    rounds.sort();
    rounds.dedup();
    rounds.into_iter().filter_map(|round| Some((pick("direct", round)?, pick("gateway", round)?))).collect()
}

fn med(values: impl Iterator<Item = f64>) -> Option<f64> {
    median(&values.collect::<Vec<_>>())
}

struct Summary {
    rounds: usize,
    direct_rps: f64,
    gateway_rps: f64,
    ratio: f64,
    direct_p50: f64,
    gateway_p50: f64,
    added_p50: f64,
    direct_p99: f64,
    gateway_p99: f64,
    gateway_cpu: Option<f64>,
    upstream_cpu: Option<f64>,
    client_cpu_direct: Option<f64>,
    client_cpu_gateway: Option<f64>,
    busy_direct: Option<f64>,
    busy_gateway: Option<f64>,
    noisy: usize,
    errors: u64,
}

fn summarize(pairs: &[(&LoadRow, &LoadRow)]) -> Option<Summary> {
    let m = |f: &dyn Fn(&(&LoadRow, &LoadRow)) -> f64| med(pairs.iter().map(f));
    let opt = |f: &dyn Fn(&(&LoadRow, &LoadRow)) -> Option<f64>| med(pairs.iter().filter_map(f));
    Some(Summary {
        rounds: pairs.len(),
        direct_rps: m(&|(d, _)| d.rps)?,
        gateway_rps: m(&|(_, g)| g.rps)?,
        ratio: m(&|(d, g)| if d.rps > 0.0 { g.rps / d.rps } else { 0.0 })?,
        direct_p50: m(&|(d, _)| d.p50)?,
        gateway_p50: m(&|(_, g)| g.p50)?,
        added_p50: m(&|(d, g)| g.p50 - d.p50)?,
        direct_p99: m(&|(d, _)| d.p99)?,
        gateway_p99: m(&|(_, g)| g.p99)?,
        gateway_cpu: opt(&|(_, g)| g.gateway_cpu),
        upstream_cpu: opt(&|(d, _)| d.upstream_cpu),
        client_cpu_direct: opt(&|(d, _)| d.client_cpu),
        client_cpu_gateway: opt(&|(_, g)| g.client_cpu),
        busy_direct: opt(&|(d, _)| d.busy_cores),
        busy_gateway: opt(&|(_, g)| g.busy_cores),
        noisy: pairs.iter().filter(|(d, g)| d.noisy || g.noisy).count(),
        errors: pairs.iter().map(|(d, g)| d.errors + g.errors).sum(),
    })
}

fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.decimals$}"))
}

fn render_scenario(out: &mut String, scenario: &str, rows: &[&LoadRow], memory: Option<&Memory>) {
    let what = match scenario {
        "http" => "client -> gateway -> mcp-bench-upstream over HTTP",
        "stdio" => "client -> gateway -> mcp-bench-upstream --stdio (one process per session)",
        _ => "client -> gateway -> upstream",
    };
    let _ = writeln!(out, "\n## scenario {scenario}: {what}; direct = client -> mcp-bench-upstream over HTTP\n");
    let mut sessions: Vec<u64> = rows.iter().map(|r| r.sessions).collect();
    sessions.sort_unstable();
    sessions.dedup();
    if !sessions.is_empty() {
        let _ = writeln!(
            out,
            "| sessions | rounds | direct req/s | gateway req/s | ratio | p50 direct us | p50 gateway us | added p50 us \
             | p99 direct us | p99 gateway us | gateway CPU us/req | upstream CPU us/req | client CPU us/req (direct/gw) | busy cores (direct/gw) | errors |"
        );
        let _ = writeln!(out, "|{}", "---|".repeat(15));
    }
    for n in sessions {
        let Some(s) = summarize(&pairs(rows, n)) else {
            let _ = writeln!(out, "| {n} | 0 | (no complete direct/gateway pair) |");
            continue;
        };
        let _ = writeln!(
            out,
            "| {n} | {} | {:.0} | {:.0} | {:.2}x | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} / {} | {} / {} | {} |",
            s.rounds,
            s.direct_rps,
            s.gateway_rps,
            s.ratio,
            s.direct_p50,
            s.gateway_p50,
            s.added_p50,
            s.direct_p99,
            s.gateway_p99,
            fmt_opt(s.gateway_cpu, 1),
            fmt_opt(s.upstream_cpu, 1),
            fmt_opt(s.client_cpu_direct, 1),
            fmt_opt(s.client_cpu_gateway, 1),
            fmt_opt(s.busy_direct, 2),
            fmt_opt(s.busy_gateway, 2),
            s.errors
        );
        if s.noisy > 0 {
            let _ = writeln!(
                out,
                "|  | ({} of these rounds started while other processes kept the machine busy: skewed) |",
                s.noisy
            );
        }
    }
    if let Some(m) = memory {
        let per = |p: Option<(f64, u64)>, how: &str| {
            p.map_or_else(String::new, |(kib, n)| {
                format!("; {kib:+.1} KiB per more idle session (over {n} sessions, {how})")
            })
        };
        let _ = writeln!(
            out,
            "\ngateway memory: RSS {} MiB idle after start{}{}; peak RSS (VmHWM) {} MiB after the load rounds",
            fmt_opt(m.idle_kib.map(|k| k / 1024.0), 1),
            per(m.per_session_open, "connections kept open"),
            per(m.per_session_closed, "connections closed"),
            fmt_opt(m.peak_kib.map(|k| k / 1024.0), 1),
        );
    }
}

/// With `BASELINE` set, `run.sh` runs a second gateway (an older build) right after
/// this one in every round: per sessions count, this build's gateway CPU per call
/// against the baseline's, as the median of the per-round ratios (each ratio compares
/// two runs seconds apart, so a machine whose speed drifts skews it least).
fn render_baseline(out: &mut String, scenario: &str, rows: &[&LoadRow]) {
    let mut sessions: Vec<u64> = rows.iter().filter(|r| r.target == "baseline").map(|r| r.sessions).collect();
    sessions.sort_unstable();
    sessions.dedup();
    if sessions.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n### scenario {scenario}: this build against the baseline gateway (BASELINE), same rounds\n\n\
         | sessions | rounds | baseline CPU us/req | this build CPU us/req | change (median of per-round ratios) \
         | baseline p50 us | this build p50 us | baseline req/s | this build req/s |\n|{}",
        "---|".repeat(9)
    );
    for n in sessions {
        let pick = |target: &str, round: &str| {
            rows.iter().copied().find(|r| r.sessions == n && r.target == target && r.round == round)
        };
        let mut rounds: Vec<&str> = rows.iter().filter(|r| r.sessions == n).map(|r| r.round.as_str()).collect();
        rounds.sort();
        rounds.dedup();
        let pairs: Vec<(&LoadRow, &LoadRow)> =
            rounds.into_iter().filter_map(|round| Some((pick("baseline", round)?, pick("gateway", round)?))).collect();
        let cpu = |r: &LoadRow| r.gateway_cpu;
        let ratio = med(pairs.iter().filter_map(|(b, g)| Some(cpu(g)? / cpu(b).filter(|c| *c > 0.0)?)));
        let _ = writeln!(
            out,
            "| {n} | {} | {} | {} | {} | {} | {} | {} | {} |",
            pairs.len(),
            fmt_opt(med(pairs.iter().filter_map(|(b, _)| cpu(b))), 1),
            fmt_opt(med(pairs.iter().filter_map(|(_, g)| cpu(g))), 1),
            ratio.map_or_else(|| "-".into(), |r| format!("{:+.1}%", (r - 1.0) * 100.0)),
            fmt_opt(med(pairs.iter().map(|(b, _)| b.p50)), 1),
            fmt_opt(med(pairs.iter().map(|(_, g)| g.p50)), 1),
            fmt_opt(med(pairs.iter().map(|(b, _)| b.rps)), 0),
            fmt_opt(med(pairs.iter().map(|(_, g)| g.rps)), 0),
        );
    }
}

/// The `pool` scenario: per pool size (and worker count), the stateless runs and, for
/// reference, the session-mode (2025 client) runs through the same gateway, medians
/// over rounds.
fn render_pool(out: &mut String, rows: &[&LoadRow]) {
    let _ = writeln!(
        out,
        "\n## scenario pool: stateless (2026-07-28) clients -> gateway -> its pool of mcp-bench-upstream --stdio \
         sessions (pool.min = pool.max = pool); session = 2025 clients through the same gateway (one upstream \
         process per session)\n"
    );
    let mut keys: Vec<(u64, u64)> = rows.iter().filter_map(|r| Some((r.pool?, r.sessions))).collect();
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        let _ = writeln!(out, "(no runs with a `pool` label)");
        return;
    }
    let _ = writeln!(
        out,
        "| pool | workers | rounds | stateless req/s | vs smallest pool | p50 us | p90 us | p99 us | gateway CPU us/req \
         | upstream CPU us/req | busy cores (machine / bench) | session-mode req/s | session p50 us | session p99 us | stateless / session | errors |"
    );
    let _ = writeln!(out, "|{}", "---|".repeat(16));
    let mut smallest: BTreeMap<u64, f64> = BTreeMap::new();
    for (pool, workers) in keys {
        let of = |target: &str| -> Vec<&LoadRow> {
            rows.iter()
                .copied()
                .filter(|r| r.pool == Some(pool) && r.sessions == workers && r.target == target)
                .collect()
        };
        let (stateless, session) = (of("stateless"), of("session"));
        let m = |rs: &[&LoadRow], f: &dyn Fn(&LoadRow) -> f64| med(rs.iter().map(|r| f(r)));
        let o = |rs: &[&LoadRow], f: &dyn Fn(&LoadRow) -> Option<f64>| med(rs.iter().filter_map(|r| f(r)));
        let rps = m(&stateless, &|r| r.rps);
        let base = rps.map(|rps| *smallest.entry(workers).or_insert(rps));
        let versus = match (rps, base) {
            (Some(rps), Some(base)) if base > 0.0 => Some(rps / base),
            _ => None,
        };
        // stateless / session per round, then the median.
        let ratio = med(stateless.iter().filter_map(|s| {
            let d = session.iter().find(|d| d.round == s.round)?;
            (d.rps > 0.0).then(|| s.rps / d.rps)
        }));
        let x = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.2}x"));
        let _ = writeln!(
            out,
            "| {pool} | {workers} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} | {} |",
            stateless.len(),
            fmt_opt(rps, 0),
            x(versus),
            fmt_opt(m(&stateless, &|r| r.p50), 1),
            fmt_opt(m(&stateless, &|r| r.p90), 1),
            fmt_opt(m(&stateless, &|r| r.p99), 1),
            fmt_opt(o(&stateless, &|r| r.gateway_cpu), 1),
            fmt_opt(o(&stateless, &|r| r.upstream_cpu), 1),
            fmt_opt(o(&stateless, &|r| r.busy_cores), 2),
            fmt_opt(o(&stateless, &|r| r.own_cores), 2),
            fmt_opt(m(&session, &|r| r.rps), 0),
            fmt_opt(m(&session, &|r| r.p50), 1),
            fmt_opt(m(&session, &|r| r.p99), 1),
            x(ratio),
            stateless.iter().chain(&session).map(|r| r.errors).sum::<u64>(),
        );
        let noisy = stateless.iter().chain(&session).filter(|r| r.noisy).count();
        if noisy > 0 {
            let _ = writeln!(
                out,
                "|  | ({noisy} of these runs started while other processes kept the machine busy: skewed) |"
            );
        }
        let foreign = stateless
            .iter()
            .chain(&session)
            .filter(|r| matches!((r.busy_cores, r.own_cores), (Some(b), Some(o)) if b - o > FOREIGN_CORES))
            .count();
        if foreign > 0 {
            let _ = writeln!(
                out,
                "|  | ({foreign} of these runs shared the machine with more than {FOREIGN_CORES} cores of other \
                 processes while measured: skewed) |"
            );
        }
    }
}

fn render_targets(out: &mut String, rows: &[&LoadRow], memory: Option<&Memory>) {
    let many = rows.iter().map(|r| r.sessions).max().unwrap_or(0);
    let one = rows.iter().map(|r| r.sessions).min().unwrap_or(0);
    let at_many = summarize(&pairs(rows, many));
    let at_one = summarize(&pairs(rows, one));
    let verdict = |v: Option<f64>, ok: &dyn Fn(f64) -> bool| match v {
        Some(v) if ok(v) => "met",
        Some(_) => "MISSED",
        None => "not measured",
    };
    let _ = writeln!(out, "\n## targets (HTTP upstream)\n");
    let _ = writeln!(out, "| target | goal | measured | verdict |\n|---|---|---|---|");
    let mut line = |name: String, goal: String, v: Option<f64>, unit: &str, ok: &dyn Fn(f64) -> bool| {
        let _ = writeln!(out, "| {name} | {goal} | {}{unit} | {} |", fmt_opt(v, 1), verdict(v, ok));
    };
    let cpu = at_many.as_ref().and_then(|s| s.gateway_cpu);
    line(
        format!("gateway CPU per proxied tools/call, {many} sessions"),
        format!("<= {TARGET_CPU_US} us"),
        cpu,
        " us",
        &|v| v <= TARGET_CPU_US,
    );
    let added = at_one.as_ref().map(|s| s.added_p50);
    line(format!("added p50 latency, {one} session(s)"), format!("<= {TARGET_ADDED_P50_US} us"), added, " us", &|v| {
        v <= TARGET_ADDED_P50_US
    });
    let ratio = at_many.as_ref().map(|s| s.ratio);
    let _ = writeln!(
        out,
        "| throughput vs direct, {many} sessions | >= {TARGET_RATIO}x | {}x | {} |",
        fmt_opt(ratio, 2),
        verdict(ratio, &|v| v >= TARGET_RATIO)
    );
    let idle = memory.and_then(|m| m.idle_kib).map(|k| k / 1024.0);
    let _ = writeln!(
        out,
        "| gateway RSS idle | <= {TARGET_IDLE_MIB} MiB | {} MiB | {} |",
        fmt_opt(idle, 1),
        verdict(idle, &|v| v <= TARGET_IDLE_MIB)
    );
    for (what, per) in [
        ("gateway RSS per more idle session, its connection closed", memory.and_then(|m| m.per_session_closed)),
        ("gateway RSS per more idle session, its keep-alive connection open", memory.and_then(|m| m.per_session_open)),
    ] {
        let per = per.map(|(k, _)| k);
        let _ = writeln!(
            out,
            "| {what} | <= {TARGET_PER_SESSION_KIB} KiB | {} KiB | {} |",
            fmt_opt(per, 1),
            verdict(per, &|v| v <= TARGET_PER_SESSION_KIB)
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn load(scenario: &str, target: &str, round: u32, sessions: u64, rps: f64, p50: f64, cpu: f64) -> String {
        serde_json::json!({
            "mode": "load", "sessions": sessions, "duration_s": 10.0, "warmup_s": 2.0, "payload_bytes": 32,
            "throughput_rps": rps, "p50_us": p50, "p99_us": p50 * 2.0, "errors": 0,
            "cpu": { "gateway": { "us_per_req": cpu }, "upstream": { "us_per_req": 14.0 }, "client": { "us_per_req": 9.0 } },
            "labels": { "scenario": scenario, "target": target, "round": round.to_string() },
        })
        .to_string()
    }

    #[test]
    fn pairs_rounds_and_judges_targets() {
        let mut lines = Vec::new();
        for round in 1..=3 {
            lines.push(load("http", "direct", round, 1, 10000.0, 90.0, 0.0));
            lines.push(load("http", "gateway", round, 1, 6000.0, 150.0 + round as f64, 25.0));
            lines.push(load("http", "direct", round, 16, 40000.0, 300.0, 0.0));
            lines.push(load("http", "gateway", round, 16, 12000.0, 900.0, 20.0 + round as f64));
        }
        lines.push(r#"{"mode":"rss","labels":{"scenario":"http"},"idle_kib":6144,"peak_kib":20480}"#.into());
        lines.push(
            r#"{"mode":"idle","sessions":200,"drop_connections":false,"memory":{"gateway":{"per_session_kib":20.5}},"labels":{"scenario":"http"}}"#
                .into(),
        );
        let text = render(&lines.join("\n"));
        assert!(text.contains("| 1 | 3 | 10000 | 6000 | 0.60x | 90.0 | 152.0 | 62.0 |"), "{text}");
        assert!(text.contains("| 16 | 3 | 40000 | 12000 | 0.30x |"), "{text}");
        assert!(
            text.contains("| gateway CPU per proxied tools/call, 16 sessions | <= 30 us | 22.0 us | met |"),
            "{text}"
        );
        assert!(text.contains("| throughput vs direct, 16 sessions | >= 0.4x | 0.30x | MISSED |"), "{text}");
        assert!(text.contains("| gateway RSS idle | <= 10 MiB | 6.0 MiB | met |"), "{text}");
        assert!(text.contains("keep-alive connection open | <= 16 KiB | 20.5 KiB | MISSED |"), "{text}");
        assert!(text.contains("its connection closed | <= 16 KiB | - KiB | not measured |"), "{text}");
    }

    #[test]
    fn pool_rows_per_pool_size() {
        let run = |target: &str, pool: u64, round: u32, rps: f64| {
            serde_json::json!({
                "mode": "load", "sessions": 16, "duration_s": 5.0, "warmup_s": 2.0, "payload_bytes": 32,
                "throughput_rps": rps, "p50_us": 100.0, "p90_us": 150.0, "p99_us": 300.0, "errors": 0,
                "cpu": { "gateway": { "us_per_req": 40.0, "cores": 1.0 }, "upstream": { "us_per_req": 8.0, "cores": 0.25 } },
                "machine": { "busy_cores": 1.5 },
                "labels": { "scenario": "pool", "target": target, "round": round.to_string(), "pool": pool.to_string() },
            })
            .to_string()
        };
        let mut lines = Vec::new();
        for round in 1..=2 {
            for pool in [1, 2, 4] {
                lines.push(run("session", pool, round, 30000.0));
                lines.push(run("stateless", pool, round, 5000.0 * pool as f64 + round as f64));
            }
        }
        let text = render(&lines.join("\n"));
        assert!(text.contains("## scenario pool:"), "{text}");
        assert!(
            text.contains(
                "| 1 | 16 | 2 | 5002 | 1.00x | 100.0 | 150.0 | 300.0 | 40.0 | 8.0 | 1.50 / 1.25 | 30000 | 100.0 | 300.0 | 0.17x | 0 |"
            ),
            "{text}"
        );
        assert!(text.contains("| 4 | 16 | 2 | 20002 | 4.00x |"), "{text}");
        assert!(!text.contains("## scenario pool: client -> gateway"), "{text}");
    }

    #[test]
    fn a_baseline_is_compared_round_by_round() {
        let mut lines = Vec::new();
        for (round, (base, new)) in [(40.0, 42.0), (50.0, 51.0), (30.0, 36.0)].into_iter().enumerate() {
            let round = round as u32 + 1;
            lines.push(load("http", "direct", round, 16, 40000.0, 300.0, 0.0));
            lines.push(load("http", "gateway", round, 16, 12000.0, 900.0, new));
            lines.push(load("http", "baseline", round, 16, 13000.0, 850.0, base));
        }
        let text = render(&lines.join("\n"));
        // Ratios 1.05, 1.02, 1.2: the median is +5.0%.
        assert!(text.contains("| 16 | 3 | 40.0 | 42.0 | +5.0% | 850.0 | 900.0 | 13000 | 12000 |"), "{text}");
        let without = render(&load("http", "gateway", 1, 16, 1.0, 1.0, 1.0));
        assert!(!without.contains("baseline"), "{without}");
    }

    #[test]
    fn recorded_frames_are_checked_against_the_load() {
        let mut lines = vec![load("http", "gateway", 1, 16, 100.0, 1.0, 1.0)];
        lines.push(r#"{"mode":"record","frames":1030,"expected":1030,"dropped":0,"labels":{"scenario":"http","target":"gateway"}}"#.into());
        lines.push(r#"{"mode":"record","frames":1000,"expected":1030,"dropped":30,"labels":{"scenario":"http","target":"baseline"}}"#.into());
        let text = render(&lines.join("\n"));
        assert!(text.contains("record (gateway): 1030 frames in the tapes, 1030 expected"), "{text}");
        assert!(text.contains("none lost"), "{text}");
        assert!(text.contains("record (baseline): 1000 frames") && text.contains("30 dropped: FRAMES LOST"), "{text}");
    }

    #[test]
    fn without_http_says_so() {
        let text = render(&load("stdio", "direct", 1, 1, 1.0, 1.0, 1.0));
        assert!(text.contains("No HTTP-upstream scenario"));
    }
}
