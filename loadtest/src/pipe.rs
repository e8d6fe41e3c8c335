//! Driving one stdio MCP server through its pipes: the `forward` scenario measures
//! messages per second through `shadowcat forward stdio -- SERVER` against a direct
//! pipe to the same SERVER.
//!
//! One run spawns the command, initializes (revision 2025-11-25), then keeps `window`
//! `tools/call echo` requests in flight (a writer thread refills the window as a reader
//! thread takes each reply off stdout) for warm-up plus the measured time. Every reply
//! is checked (its id is one in flight, it is a result, it echoes the text). Blocking
//! I/O on two threads: the cheapest client, so the server and the forwarder are what
//! is measured.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::procfs;
use crate::stats::Latencies;

/// What one run is asked to do.
#[derive(Debug, Clone)]
pub struct PipeOptions {
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Requests kept in flight.
    pub window: usize,
    /// Time before the measurement starts.
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
    /// Characters of echo text per call.
    pub payload_bytes: usize,
    /// How long one reply may take before the run fails.
    pub timeout: Duration,
}

/// Spawns the command and measures it; one JSON object (mode `pipe`).
pub fn run(opts: &PipeOptions) -> Result<Value, String> {
    let (program, args) = opts.command.split_first().ok_or("no command")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let result = measure(&mut child, opts);
    drop(child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if child.try_wait().ok().flatten().is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    result
}

fn measure(child: &mut Child, opts: &PipeOptions) -> Result<Value, String> {
    let mut stdin = BufWriter::new(child.stdin.take().ok_or("no stdin")?);
    let mut stdout = BufReader::with_capacity(64 * 1024, child.stdout.take().ok_or("no stdout")?);
    let init = json!({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "mcp-bench", "version": "0"}}});
    writeln!(stdin, "{init}").and_then(|()| stdin.flush()).map_err(|e| format!("write: {e}"))?;
    let reply = read_message(&mut stdout)?;
    if reply["id"] != "init" || !reply["result"].is_object() {
        return Err(format!("initialize failed: {reply}"));
    }
    writeln!(stdin, r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#)
        .and_then(|()| stdin.flush())
        .map_err(|e| format!("write: {e}"))?;

    let text: String = "x".repeat(opts.payload_bytes);
    let sent: Arc<Mutex<HashMap<u64, Instant>>> = Arc::new(Mutex::new(HashMap::with_capacity(opts.window * 2)));
    let stop = Arc::new(AtomicBool::new(false));
    let (credit_tx, credit_rx) = mpsc::sync_channel::<()>(opts.window);
    for _ in 0..opts.window {
        let _ = credit_tx.send(());
    }
    let writer = {
        let (sent, stop, text) = (sent.clone(), stop.clone(), text.clone());
        std::thread::spawn(move || -> Result<u64, String> {
            let mut id = 0u64;
            while credit_rx.recv().is_ok() && !stop.load(Ordering::Relaxed) {
                id += 1;
                let line = format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{text}"}}}}}}"#
                );
                sent.lock().insert(id, Instant::now());
                // At most `window` lines are unread, far less than a pipe holds: a
                // write never waits for the server.
                stdin.write_all(line.as_bytes()).and_then(|()| stdin.write_all(b"\n")).map_err(|e| e.to_string())?;
                stdin.flush().map_err(|e| e.to_string())?;
            }
            Ok(id)
        })
    };

    let cpu_pid = child.id();
    let ticks = procfs::clock_ticks() as f64;
    // The process and its children (the server a forwarder spawned), in ticks.
    let cpu_of = |pid: u32| -> Option<f64> {
        let own = procfs::cpu_ticks(pid).ok()?;
        let kids: u64 = procfs::children_cpu_ticks(pid).ok()?.values().sum();
        Some((own + kids) as f64)
    };
    let start = Instant::now();
    let measure_from = start + opts.warmup;
    let end = measure_from + opts.duration;
    let mut latencies = Latencies::with_capacity(1 << 20);
    let mut counted = 0u64;
    let mut errors = 0u64;
    let mut cpu_start = None;
    let mut own_start = None;
    let mut measuring = false;
    let mut outcome = Ok(());
    loop {
        let now = Instant::now();
        if !measuring && now >= measure_from {
            measuring = true;
            cpu_start = cpu_of(cpu_pid);
            own_start = procfs::cpu_ticks(cpu_pid).ok();
        }
        if now >= end {
            break;
        }
        let m = match read_message(&mut stdout) {
            Ok(m) => m,
            Err(e) => {
                outcome = Err(e);
                break;
            }
        };
        let Some(id) = m["id"].as_u64() else { continue }; // a notification
        let Some(at) = sent.lock().remove(&id) else {
            outcome = Err(format!("a reply to a request not in flight: {m}"));
            break;
        };
        let ok = m["result"]["content"][0]["text"].as_str() == Some(text.as_str());
        if measuring {
            latencies.record(at.elapsed().as_nanos() as u64);
            counted += 1;
            errors += u64::from(!ok);
        }
        if at.elapsed() > opts.timeout {
            outcome = Err(format!("a reply took longer than {:?}", opts.timeout));
            break;
        }
        let _ = credit_tx.send(());
    }
    let elapsed = Instant::now().saturating_duration_since(measure_from).as_secs_f64();
    let cpu_end = cpu_of(cpu_pid);
    let own_end = procfs::cpu_ticks(cpu_pid).ok();
    // The writer ends (closing the server's stdin) at its next credit.
    stop.store(true, Ordering::Relaxed);
    drop(credit_tx);
    let _ = writer.join();
    outcome?;
    let per_msg = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if counted > 0 => Some((b - a) / ticks * 1e6 / counted as f64),
        _ => None,
    };
    Ok(json!({
        "mode": "pipe",
        "window": opts.window,
        "duration_s": opts.duration.as_secs_f64(),
        "warmup_s": opts.warmup.as_secs_f64(),
        "payload_bytes": opts.payload_bytes,
        "calls": counted,
        "errors": errors,
        "calls_per_s": counted as f64 / elapsed.max(1e-9),
        "p50_us": latencies.quantile_us(0.5),
        "p99_us": latencies.quantile_us(0.99),
        "cpu_us_per_call": {
            "process": per_msg(own_start.map(|t| t as f64), own_end.map(|t| t as f64)),
            "with_children": per_msg(cpu_start, cpu_end),
        },
    }))
}

/// The next line that is a JSON message.
fn read_message(stdout: &mut BufReader<ChildStdout>) -> Result<Value, String> {
    let mut line = String::new();
    loop {
        line.clear();
        let n = stdout.read_line(&mut line).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("the server closed its stdout".into());
        }
        if line.trim().is_empty() {
            continue;
        }
        return serde_json::from_str(&line).map_err(|e| format!("not JSON ({e}): {}", line.trim()));
    }
}
