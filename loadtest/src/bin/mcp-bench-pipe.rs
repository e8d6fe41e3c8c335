//! `mcp-bench-pipe`: messages per second through `shadowcat forward stdio -- SERVER`
//! against a direct pipe to the same SERVER, rounds interleaved (direct, forward,
//! direct, forward, ...), for each window of requests in flight. Prints one JSON line
//! per run (`--out FILE` keeps them) and a summary table of medians.
//!
//! ```sh
//! mcp-bench-pipe --shadowcat target/release/shadowcat -- target/release/mcp-bench-upstream --stdio
//! ```

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use shadowcat_loadtest::pipe::{self, PipeOptions};
use shadowcat_loadtest::stats::median;

/// Forward stdio against a direct pipe.
#[derive(Debug, Parser)]
#[command(name = "mcp-bench-pipe", version, about)]
struct Args {
    /// The shadowcat binary.
    #[arg(long)]
    shadowcat: String,
    /// Requests in flight, one table row each.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16])]
    windows: Vec<usize>,
    /// Rounds of each (direct, forward) pair.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds before the measurement starts.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Characters of echo text per call.
    #[arg(long, default_value_t = 32)]
    payload_bytes: usize,
    /// Where to append the JSON lines too.
    #[arg(long)]
    out: Option<String>,
    /// The server command (it must serve `tools/call echo` over stdio).
    #[arg(last = true, required = true)]
    server: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(table) => {
            print!("{table}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mcp-bench-pipe: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<String, String> {
    if args.windows.iter().any(|w| !(1..=64).contains(w)) {
        return Err("--windows must be between 1 and 64".into());
    }
    let seconds = |s: f64| Duration::try_from_secs_f64(s).map_err(|e| format!("bad duration {s}: {e}"));
    let mut out = match &args.out {
        Some(path) => {
            Some(std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| format!("{path}: {e}"))?)
        }
        None => None,
    };
    let mut forward = vec![args.shadowcat.clone(), "forward".into(), "stdio".into(), "--".into()];
    forward.extend(args.server.iter().cloned());
    let mut table = String::from(
        "| in flight | direct calls/s | forward calls/s | ratio | p50 direct / forward (us) | added p50 (us) | forward CPU per call (us) |\n|---|---|---|---|---|---|---|\n",
    );
    for &window in &args.windows {
        let mut runs: [Vec<Value>; 2] = [Vec::new(), Vec::new()];
        for round in 0..args.rounds {
            for (target, command) in [(0, &args.server), (1, &forward)] {
                let opts = PipeOptions {
                    command: command.clone(),
                    window,
                    warmup: seconds(args.warmup)?,
                    duration: seconds(args.duration)?,
                    payload_bytes: args.payload_bytes,
                    timeout: Duration::from_secs(10),
                };
                let mut v = pipe::run(&opts)?;
                let name = ["direct", "forward"][target];
                v["labels"] = serde_json::json!({"scenario": "forward", "target": name, "round": round.to_string()});
                println!("{v}");
                if let Some(f) = out.as_mut() {
                    writeln!(f, "{v}").map_err(|e| e.to_string())?;
                }
                if v["errors"].as_u64() != Some(0) {
                    return Err(format!("a run had errors: {v}"));
                }
                runs[target].push(v);
            }
        }
        let med =
            |t: usize, f: &dyn Fn(&Value) -> Option<f64>| median(&runs[t].iter().filter_map(f).collect::<Vec<_>>());
        let rate = |v: &Value| v["calls_per_s"].as_f64();
        let p50 = |v: &Value| v["p50_us"].as_f64();
        // The forwarder's own CPU: the process without the server it spawned.
        let cpu = |v: &Value| v["cpu_us_per_call"]["process"].as_f64();
        let (Some(a), Some(b), Some(pa), Some(pb)) = (med(0, &rate), med(1, &rate), med(0, &p50), med(1, &p50)) else {
            return Err("no runs".into());
        };
        let cpu = med(1, &cpu).map_or("-".into(), |c| format!("{c:.1}"));
        let _ = writeln!(
            table,
            "| {window} | {a:.0} | {b:.0} | {:.2}x | {pa:.0} / {pb:.0} | {:.0} | {cpu} |",
            b / a,
            pb - pa
        );
    }
    Ok(table)
}
