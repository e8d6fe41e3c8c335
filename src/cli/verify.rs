//! `shadowcat tape verify TAPE (--upstream URL | -- COMMAND)`: the recorded client
//! side sent again to a live server, through `shadowcat forward stdio --record` (so
//! the new run is a tape too, and a tape of one revision verifies a server of the
//! other: forward mode bridges as the gateway does), then compared with the tape.
//!
//! The requests go in the recorded order with fresh ids; a server request on the way
//! (sampling, elicitation, roots) gets the client's recorded answer to the same kind
//! of request; a 2026-07-28 retry round carries the live server's `requestState`.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::tape::{Dir, Side, Tape};

/// The JSON-RPC error code of a gateway that cannot reach its upstream.
const UNAVAILABLE: i64 = -32003;

/// How long a request may wait for its response.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// What `verify` was given.
pub struct VerifyArgs<'a> {
    pub tape: &'a Path,
    pub era: &'a str,
    pub upstream: Option<&'a str>,
    pub command: &'a [String],
    pub ignore: &'a [String],
    pub update: bool,
    pub junit: Option<&'a Path>,
}

/// Runs it: 0 equal, 1 different, 2 could not run.
pub fn verify(args: &VerifyArgs<'_>) -> u8 {
    match run(args) {
        Ok(equal) => u8::from(!equal),
        Err(e) => {
            eprintln!("shadowcat tape verify: could not run: {e}");
            2
        }
    }
}

fn run(args: &VerifyArgs<'_>) -> Result<bool, String> {
    let old = crate::tape::read(args.tape).map_err(|e| e.to_string())?;
    for (i, p) in args.ignore.iter().enumerate() {
        jsonpath_rust::parser::parse_json_path(p).map_err(|e| format!("--ignore[{i}] {p:?}: not a JSONPath: {e}"))?;
    }
    let dir =
        std::env::temp_dir().join(format!("shadowcat-verify-{}-{:08x}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = drive(args, &old, &dir);
    let outcome = result.and_then(|()| {
        let new_path = new_tape(&dir)?;
        let new = crate::tape::read(&new_path).map_err(|e| e.to_string())?;
        let live = crate::tape::diff::exchanges(&new, &[]);
        // The gateway's own "upstream unavailable" is no answer of the server's.
        if let Some(e) = live.iter().find_map(|x| x.answer.as_ref()?.get("error").filter(|e| e["code"] == UNAVAILABLE))
        {
            return Err(format!("the live server is unavailable: {}", e["message"].as_str().unwrap_or_default()));
        }
        let report = crate::tape::diff::compare(
            &crate::tape::diff::exchanges(&old, args.ignore),
            &crate::tape::diff::exchanges(&new, args.ignore),
        );
        out_raw!("{}", report.render(&args.tape.display().to_string(), "the live server"));
        if let Some(junit) = args.junit {
            std::fs::write(junit, report.junit(&args.tape.display().to_string()))
                .map_err(|e| format!("--junit {}: {e}", junit.display()))?;
        }
        if args.update && !report.is_equal() {
            std::fs::copy(&new_path, args.tape).map_err(|e| format!("--update {}: {e}", args.tape.display()))?;
            out!("{}: re-recorded from the live server", args.tape.display());
        }
        Ok(report.is_equal())
    });
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

fn new_tape(dir: &Path) -> Result<PathBuf, String> {
    let tapes: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.to_string_lossy().ends_with(crate::tape::EXTENSION)
                && std::fs::read_to_string(p)
                    .is_ok_and(|t| t.lines().next().is_some_and(|h| h.contains(r#""side":"client""#)))
        })
        .collect();
    match tapes.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err("the new run recorded nothing".into()),
        many => Err(format!("the new run recorded {} client tapes, not one", many.len())),
    }
}

/// The child: `shadowcat forward stdio --record DIR` in front of the live server.
fn spawn(args: &VerifyArgs<'_>, dir: &Path) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.args(["forward", "stdio", "--era", args.era, "--record"])
        .arg(dir)
        .arg("--log-file")
        .arg(dir.join("forward.log"));
    match (args.upstream, args.command) {
        (Some(url), _) => {
            cmd.args(["--upstream", url]);
        }
        (None, []) => return Err("give --upstream URL or -- COMMAND".into()),
        (None, command) => {
            cmd.arg("--").args(command);
        }
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
    cmd.spawn().map_err(|e| format!("cannot start forward mode: {e}"))
}

fn drive(args: &VerifyArgs<'_>, old: &Tape, dir: &Path) -> Result<(), String> {
    let mut child = spawn(args, dir)?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if tx.send(v).is_err() {
                    return;
                }
            }
        }
    });
    let log = dir.join("forward.log");
    let fail = |what: String| -> String {
        let tail: String =
            std::fs::read_to_string(&log).unwrap_or_default().lines().rev().take(3).collect::<Vec<_>>().join(" | ");
        if tail.is_empty() {
            what
        } else {
            format!("{what} (forward mode logged: {tail})")
        }
    };
    let mut answers = recorded_answers(old);
    let total = old
        .frames
        .iter()
        .filter(|f| f.side == Side::Client && f.dir == Dir::ClientToServer && f.msg.get().contains("\"method\""))
        .count();
    let progress = super::progress::Progress::new(total as u64, "verifying");
    let mut live_state: Option<Value> = None;
    let mut n = 0;
    let frames = old.frames.iter().filter(|f| f.side == Side::Client && f.dir == Dir::ClientToServer);
    for f in frames {
        let Ok(mut msg) = serde_json::from_str::<Value>(f.msg.get()) else { continue };
        let is_request = msg.get("method").is_some() && msg.get("id").is_some_and(|i| !i.is_null());
        if msg.get("method").is_none() {
            continue; // an answer to a server request: sent when the live server asks
        }
        progress.inc();
        if !is_request {
            send(&mut stdin, &msg).map_err(&fail)?;
            continue;
        }
        n += 1;
        let id = json!(format!("verify-{n}"));
        msg["id"] = id.clone();
        if msg.pointer("/params/requestState").is_some() {
            if let Some(state) = &live_state {
                msg["params"]["requestState"] = state.clone();
            }
        }
        send(&mut stdin, &msg).map_err(&fail)?;
        let method = msg["method"].as_str().unwrap_or_default().to_owned();
        loop {
            let got = rx
                .recv_timeout(RESPONSE_TIMEOUT)
                .map_err(|_| fail(format!("no response to {method} within {}s", RESPONSE_TIMEOUT.as_secs())))?;
            match (got.get("method").and_then(Value::as_str), got.get("id")) {
                (Some(asked), Some(sid)) => {
                    let answer = match answers.get_mut(asked).and_then(VecDeque::pop_front) {
                        Some(mut a) => {
                            a["id"] = sid.clone();
                            a
                        }
                        None => {
                            json!({"jsonrpc":"2.0","id":sid,"error":{"code":-32601,"message":format!("the tape has no answer to {asked}")}})
                        }
                    };
                    send(&mut stdin, &answer).map_err(&fail)?;
                }
                (None, Some(rid)) if *rid == id => {
                    live_state = got.pointer("/result/requestState").cloned();
                    break;
                }
                _ => {}
            }
        }
    }
    progress.finish();
    drop(stdin);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return Ok(()),
            Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                return Err(fail("forward mode did not exit".into()));
            }
        }
    }
}

fn send(stdin: &mut impl Write, v: &Value) -> Result<(), String> {
    writeln!(stdin, "{v}").and_then(|()| stdin.flush()).map_err(|e| format!("the live server went away: {e}"))
}

/// The client's recorded answers to server requests, by the request's method, in order.
fn recorded_answers(tape: &Tape) -> HashMap<String, VecDeque<Value>> {
    let mut asked: HashMap<String, String> = HashMap::new();
    let mut out: HashMap<String, VecDeque<Value>> = HashMap::new();
    for f in tape.frames.iter().filter(|f| f.side == Side::Client) {
        let Ok(msg) = serde_json::from_str::<Value>(f.msg.get()) else { continue };
        let id = msg.get("id").map(Value::to_string);
        match (f.dir, msg.get("method").and_then(Value::as_str), id) {
            (Dir::ServerToClient, Some(m), Some(id)) => {
                asked.insert(id, m.to_owned());
            }
            (Dir::ClientToServer, None, Some(id)) => {
                if let Some(m) = asked.get(&id) {
                    out.entry(m.clone()).or_default().push_back(msg);
                }
            }
            _ => {}
        }
    }
    out
}
