//! `mcp-bench`: the load generator. One JSON line per run on stdout; `--report FILE`
//! summarizes the lines of many runs (what `loadtest/run.sh` prints).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use shadowcat_loadtest::idle::{self, IdleOptions};
use shadowcat_loadtest::load::{self, LoadOptions, Watch};

/// Drives MCP sessions against a Streamable HTTP endpoint and measures them.
#[derive(Debug, Parser)]
#[command(name = "mcp-bench", version, about)]
struct Args {
    /// The MCP endpoint (`http://HOST:PORT/PATH`).
    #[arg(long, required_unless_present = "report")]
    url: Option<String>,
    /// Concurrent sessions (or stateless workers), each on its own connection with one
    /// request in flight.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    sessions: u64,
    /// Stateless clients (revision 2026-07-28): no initialize and no session; every
    /// `tools/call echo` carries the `_meta` envelope and the `MCP-Protocol-Version`,
    /// `Mcp-Method` and `Mcp-Name` headers. `--sessions` is then the number of workers.
    #[arg(long, conflicts_with = "idle_sessions")]
    stateless: bool,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before the measurement starts.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Characters of echo text per call.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    payload_bytes: u64,
    /// Seconds to wait for one reply before counting it as an error.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Runtime threads; 1 (default) runs every session on one thread.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Idle mode: open this many sessions, hold them idle, report memory of `--watch`.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    idle_sessions: Option<u64>,
    /// Idle mode: seconds to hold the sessions.
    #[arg(long, default_value_t = 5.0)]
    hold: f64,
    /// Idle mode: close each session's connection once initialized.
    #[arg(long)]
    drop_connections: bool,
    /// A process to measure, `NAME=PID` (CPU per request in load mode, RSS in idle
    /// mode); repeatable.
    #[arg(long, value_parser = parse_watch)]
    watch: Vec<Watch>,
    /// Load mode: the children of a process together, `NAME=PID` (CPU per request of
    /// the stdio upstreams a gateway started); repeatable.
    #[arg(long, value_parser = parse_watch, conflicts_with = "idle_sessions")]
    watch_children: Vec<Watch>,
    /// `KEY=VALUE` copied into the output's `labels`; repeatable.
    #[arg(long, value_parser = parse_label)]
    label: Vec<(String, String)>,
    /// A file holding a bearer token every request carries (a gateway with `auth`),
    /// or one token per line, taken in turn (each request a token not seen before,
    /// while there are more tokens than requests).
    #[arg(long)]
    bearer_file: Option<PathBuf>,
    /// Report mode: summarize a file of JSON lines written by earlier runs.
    #[arg(long)]
    report: Option<PathBuf>,
}

fn parse_watch(s: &str) -> Result<Watch, String> {
    let (name, pid) = s.split_once('=').ok_or("expected NAME=PID")?;
    let pid = pid.parse().map_err(|_| format!("not a pid: {pid}"))?;
    Ok(Watch { name: name.to_owned(), pid })
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or("expected KEY=VALUE")?;
    Ok((k.to_owned(), v.to_owned()))
}

fn seconds(name: &str, s: f64, max: f64) -> Result<Duration, String> {
    if !(0.0..=max).contains(&s) {
        return Err(format!("--{name} must be between 0 and {max} seconds"));
    }
    Ok(Duration::from_secs_f64(s))
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.report {
        return match std::fs::read_to_string(path) {
            Ok(text) => {
                print!("{}", shadowcat_loadtest::report::render(&text));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mcp-bench: cannot read {}: {e}", path.display());
                ExitCode::FAILURE
            }
        };
    }
    match run(&args) {
        Ok(mut out) => {
            let labels: serde_json::Map<String, Value> =
                args.label.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
            out["labels"] = Value::Object(labels);
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mcp-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<Value, String> {
    let url = args.url.clone().ok_or("--url is required")?;
    let timeout = seconds("timeout", args.timeout, 600.0)?;
    let runtime = shadowcat_loadtest::runtime(args.threads).map_err(|e| format!("cannot start the runtime: {e}"))?;
    let bearer = match &args.bearer_file {
        Some(path) => {
            Some(std::fs::read_to_string(path).map_err(|e| format!("--bearer-file {}: {e}", path.display()))?)
        }
        None => None,
    };
    if let Some(n) = args.idle_sessions {
        let opts = IdleOptions {
            url,
            sessions: n as usize,
            hold: seconds("hold", args.hold, 3600.0)?,
            drop_connections: args.drop_connections,
            timeout,
            watch: args.watch.clone(),
            bearer: bearer.clone(),
        };
        return runtime.block_on(idle::run(&opts));
    }
    let opts = LoadOptions {
        url,
        sessions: args.sessions as usize,
        stateless: args.stateless,
        duration: seconds("duration", args.duration, 3600.0)?,
        warmup: seconds("warmup", args.warmup, 3600.0)?,
        payload_bytes: args.payload_bytes as usize,
        timeout,
        watch: args.watch.clone(),
        watch_children: args.watch_children.clone(),
        bearer,
    };
    runtime.block_on(load::run(&opts))
}
