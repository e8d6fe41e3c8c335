//! The tape commands that work on a directory of tapes and its index: `list`,
//! `show`, `export`, `import`, `delete`, `stats`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{json, Value};

use crate::tape::index::{Filter, Index};
use crate::tape::{Dir, Tape};

/// Where the tapes are: `--dir`, else the `record` stage's `dir` in `--config`, else
/// a per-user data directory (`$XDG_DATA_HOME/shadowcat/tapes`, or
/// `~/.local/share/shadowcat/tapes`).
#[derive(Debug, clap::Args)]
pub struct Where {
    /// The tape directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// A configuration file whose `record` stage names the directory.
    #[arg(long, short, value_name = "FILE", conflicts_with = "dir")]
    pub config: Option<PathBuf>,
}

impl Where {
    /// The directory.
    pub fn resolve(&self) -> Result<PathBuf, String> {
        if let Some(dir) = &self.dir {
            return Ok(dir.clone());
        }
        if let Some(file) = &self.config {
            let config = crate::config::Config::load(file).map_err(|e| e.to_string())?;
            let specs = config.stage_specs().map_err(|e| format!("{}: {e}", file.display()))?;
            let dir =
                specs.iter().find(|s| s.name == "record").and_then(|s| s.options.get("dir")).and_then(Value::as_str);
            return dir.map(PathBuf::from).ok_or_else(|| format!("{}: no `record` stage with a `dir`", file.display()));
        }
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .ok_or("no --dir, and neither XDG_DATA_HOME nor HOME is set")?;
        Ok(data.join("shadowcat/tapes"))
    }

    fn index(&self) -> Result<(PathBuf, Index), String> {
        let dir = self.resolve()?;
        if !dir.is_dir() {
            return Err(format!("{}: no such tape directory (record with --record DIR, or give --dir)", dir.display()));
        }
        let index = Index::open(&dir)?;
        Ok((dir, index))
    }
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("shadowcat tape: {e}");
    ExitCode::from(2)
}

/// Colour for a terminal that has not asked for none.
fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn paint(on: bool, code: &str, text: &str) -> String {
    if on {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// `tape list`.
pub fn list(at: &Where, filter: &Filter, as_json: bool) -> ExitCode {
    let (_, index) = match at.index() {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let entries = match index.list(filter) {
        Ok(e) => e,
        Err(e) => return fail(e),
    };
    if as_json {
        out!("{}", serde_json::to_string(&entries).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    let c = colour();
    out!(
        "{:<26} {:<27} {:<24} {:<10} {:>5} {:>5} {:>6}  STATE",
        "ID",
        "STARTED",
        "CLIENT",
        "UPSTREAM",
        "REQS",
        "ERRS",
        "FRAMES"
    );
    for e in &entries {
        let state =
            if e.cut_short { "cut short".to_owned() } else { e.reason.clone().unwrap_or_else(|| "open".into()) };
        let errs = format!("{:>5}", e.errors);
        out!(
            "{:<26} {:<27} {:<24} {:<10} {:>5} {} {:>6}  {}",
            e.id,
            e.started_at.get(..27).unwrap_or(&e.started_at),
            e.client.as_deref().unwrap_or(if e.side == "upstream" { "(upstream side)" } else { "-" }),
            e.upstream.as_deref().unwrap_or("-"),
            e.requests,
            if e.errors > 0 { paint(c, "31", &errs) } else { errs },
            e.frames,
            state
        );
    }
    ExitCode::SUCCESS
}

/// A tape by file, or by id (or id prefix) in the index.
fn find(at: &Where, id: &str) -> Result<PathBuf, String> {
    let as_file = Path::new(id);
    if as_file.is_file() {
        return Ok(as_file.to_owned());
    }
    let (_, index) = at.index()?;
    index.file_of(id)?.ok_or_else(|| format!("no tape {id:?} in the index"))
}

fn load(at: &Where, id: &str) -> Result<(PathBuf, Tape), String> {
    let file = find(at, id)?;
    let tape = crate::tape::read(&file).map_err(|e| e.to_string())?;
    Ok((file, tape))
}

/// The frames of a tape, each with what a timeline shows.
fn timeline(tape: &Tape) -> Vec<Value> {
    let mut asked: std::collections::HashMap<String, (u64, String)> = std::collections::HashMap::new();
    let mut out = Vec::new();
    for f in &tape.frames {
        let msg: Value = serde_json::from_str(f.msg.get()).unwrap_or(Value::Null);
        let id = msg.get("id").filter(|i| !i.is_null()).map(Value::to_string);
        let method = msg.get("method").and_then(Value::as_str);
        let key = |id: &str| format!("{:?}:{id}", f.side);
        let mut row = json!({
            "seq": f.seq, "t_us": f.t_us, "dir": f.dir, "side": f.side, "call": f.call, "carrier": f.carrier,
        });
        match (method, &id) {
            (Some(m), id) => {
                row["method"] = json!(m);
                if let Some(tool) = msg.pointer("/params/name").and_then(Value::as_str) {
                    row["tool"] = json!(tool);
                }
                if let Some(id) = id {
                    row["id"] = json!(id);
                    asked.insert(key(id), (f.t_us, m.to_owned()));
                }
            }
            (None, Some(id)) => {
                row["id"] = json!(id);
                if let Some((t, m)) = asked.remove(&key(id)) {
                    row["answers"] = json!(m);
                    row["latency_us"] = json!(f.t_us.saturating_sub(t));
                }
                if let Some(e) = msg.get("error") {
                    row["error"] = e.clone();
                } else if msg.pointer("/result/isError") == Some(&Value::Bool(true)) {
                    row["error"] = json!({"isError": true});
                }
            }
            (None, None) => {}
        }
        if let Some(s) = f.status {
            row["status"] = json!(s);
        }
        out.push(row);
    }
    out
}

/// `tape show`.
pub fn show(at: &Where, id: &str, as_json: bool) -> ExitCode {
    let (file, tape) = match load(at, id) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let rows = timeline(&tape);
    if as_json {
        let out = json!({ "file": file.display().to_string(), "header": tape.header, "frames": rows,
            "changes": tape.changes,
            "trailer": tape.trailer.as_ref().map(|t| json!({"reason": t.reason, "frames": t.frames, "changes": t.changes, "dropped": t.dropped})),
            "cut_short": tape.cut_short.as_ref().map(|c| json!({"last_whole_line": c.last_whole_line, "why": c.why})) });
        out!("{out}");
        return ExitCode::SUCCESS;
    }
    let c = colour();
    let h = &tape.header;
    out!("tape {} ({}), {} side, started {}", h.tape, file.display(), h.side, h.started_at);
    if let Some(s) = &h.session {
        out!("session {s}, upstream {}, revisions {}", h.upstream.as_deref().unwrap_or("-"), h.revisions.join(", "));
    }
    // Frames and what rules changed, in time order.
    let mut lines: Vec<(u64, String)> = Vec::with_capacity(rows.len() + tape.changes.len());
    for r in &rows {
        let t_us = r["t_us"].as_u64().unwrap_or(0);
        let t = t_us as f64 / 1000.0;
        let arrow = if r["dir"] == json!(Dir::ClientToServer) { "->" } else { "<-" };
        let side = if r["side"] == "upstream" { " [upstream]" } else { "" };
        let what = match (r["method"].as_str(), r["answers"].as_str()) {
            (Some(m), _) => {
                let tool = r["tool"].as_str().map(|t| format!(" {t}")).unwrap_or_default();
                let id = r["id"].as_str().map(|i| format!(" #{i}")).unwrap_or_default();
                format!("{m}{tool}{id}")
            }
            (None, Some(m)) => {
                let ms = r["latency_us"].as_u64().unwrap_or(0) as f64 / 1000.0;
                format!("response to {m} #{} ({ms:.1} ms)", r["id"].as_str().unwrap_or("?"))
            }
            (None, None) => format!("response #{}", r["id"].as_str().unwrap_or("?")),
        };
        let line = format!("{t:>10.1} ms  {arrow} {what}{side}");
        lines.push((
            t_us,
            match r.get("error") {
                Some(e) => {
                    let detail = e.get("message").and_then(Value::as_str).map(|m| format!(": {m}")).unwrap_or_default();
                    paint(c, "31", &format!("{line}  ERROR{detail}"))
                }
                None => line,
            },
        ));
    }
    for ch in &tape.changes {
        let t = ch.t_us as f64 / 1000.0;
        let became = match (&ch.after, &ch.answer, &ch.wire) {
            (_, _, Some(wire)) => format!("sent with fault {wire}"),
            (Some(_), _, None) => "changed".to_owned(),
            (None, Some(_), None) => "answered in its place".to_owned(),
            (None, None, None) => "stopped".to_owned(),
        };
        let line = format!("{t:>10.1} ms  ~  rule {} ({}): {became}, call {}", ch.rule, ch.action, ch.call);
        lines.push((ch.t_us, paint(c, "36", &line)));
    }
    lines.sort_by_key(|(t, _)| *t);
    for (_, line) in &lines {
        out!("{line}");
    }
    match (&tape.trailer, &tape.cut_short) {
        (_, Some(cut)) => {
            out!("{}", paint(c, "33", &format!("cut short: readable up to line {} ({})", cut.last_whole_line, cut.why)))
        }
        (Some(t), None) => {
            out!("closed: {}, {} frames, {} changes, {} dropped", t.reason, t.frames, t.changes, t.dropped)
        }
        (None, None) => {}
    }
    ExitCode::SUCCESS
}

/// `tape export`.
pub fn export(at: &Where, id: &str, format: &str) -> ExitCode {
    let (file, tape) = match load(at, id) {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    if format == "jsonl" {
        return match std::fs::read(&file).map(|b| std::io::stdout().write_all(&b)) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => fail(format!("{}: {e}", file.display())),
        };
    }
    out!("{}", har(&tape));
    ExitCode::SUCCESS
}

/// A HAR 1.2 log: one entry per client request, with its response.
fn har(tape: &Tape) -> Value {
    let route = tape.header.route.clone().unwrap_or_else(|| "/mcp".into());
    let mut entries: Vec<Value> = Vec::new();
    let mut open: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for f in tape.frames.iter().filter(|f| f.side == crate::tape::Side::Client) {
        let msg: Value = serde_json::from_str(f.msg.get()).unwrap_or(Value::Null);
        let id = msg.get("id").filter(|i| !i.is_null()).map(Value::to_string);
        match (f.dir, msg.get("method").is_some(), id) {
            (Dir::ClientToServer, true, id) => {
                let headers: Vec<Value> = f.headers.iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
                entries.push(json!({
                    "startedDateTime": f.at,
                    "time": 0,
                    "request": {
                        "method": "POST", "url": format!("http://shadowcat{route}"), "httpVersion": "HTTP/1.1",
                        "cookies": [], "headers": headers, "queryString": [], "headersSize": -1, "bodySize": f.msg.get().len(),
                        "postData": { "mimeType": "application/json", "text": f.msg.get() },
                    },
                    "response": { "status": 202, "statusText": "", "httpVersion": "HTTP/1.1", "cookies": [], "headers": [],
                        "content": { "size": 0, "mimeType": "application/json", "text": "" }, "redirectURL": "", "headersSize": -1, "bodySize": 0 },
                    "cache": {},
                    "timings": { "send": 0, "wait": 0, "receive": 0 },
                    "_t_us": f.t_us,
                }));
                if let Some(id) = id {
                    open.insert(id, entries.len() - 1);
                }
            }
            (Dir::ServerToClient, false, Some(id)) => {
                let Some(i) = open.remove(&id) else { continue };
                let e = &mut entries[i];
                let ms = f.t_us.saturating_sub(e["_t_us"].as_u64().unwrap_or(0)) as f64 / 1000.0;
                e["time"] = json!(ms);
                e["timings"]["wait"] = json!(ms);
                e["response"]["status"] = json!(f.status.unwrap_or(200));
                e["response"]["content"] =
                    json!({ "size": f.msg.get().len(), "mimeType": "application/json", "text": f.msg.get() });
                e["response"]["bodySize"] = json!(f.msg.get().len());
            }
            _ => {}
        }
    }
    for e in &mut entries {
        if let Some(o) = e.as_object_mut() {
            o.remove("_t_us");
        }
    }
    json!({ "log": { "version": "1.2", "creator": { "name": "shadowcat", "version": env!("CARGO_PKG_VERSION") }, "entries": entries } })
}

/// `tape import`.
pub fn import(at: &Where, files: &[PathBuf]) -> ExitCode {
    let dir = match at.resolve() {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return fail(format!("{}: {e}", dir.display()));
    }
    let mut index = match Index::open(&dir) {
        Ok(i) => i,
        Err(e) => return fail(e),
    };
    let progress = super::progress::Progress::new(files.len() as u64, "importing");
    let mut bad = 0;
    for file in files {
        let result = crate::tape::read(file).map_err(|e| e.to_string()).and_then(|tape| {
            let name = format!("{}{}", tape.header.tape, crate::tape::EXTENSION);
            let target = dir.join(&name);
            let same = std::fs::canonicalize(file).ok() == std::fs::canonicalize(&target).ok();
            if !same {
                std::fs::copy(file, &target).map_err(|e| format!("{}: {e}", target.display()))?;
            }
            index.add(&target, &tape)?;
            Ok(tape.cut_short.map(|c| format!("cut short at line {}", c.last_whole_line)))
        });
        match result {
            Ok(note) => progress.line(&format!(
                "{}: imported{}",
                file.display(),
                note.map(|n| format!(" ({n})")).unwrap_or_default()
            )),
            Err(e) => {
                bad += 1;
                progress.line(&e);
            }
        }
        progress.inc();
    }
    progress.finish();
    if bad > 0 {
        eprintln!("shadowcat tape import: {bad} of {} files not imported", files.len());
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// `tape delete`.
pub fn delete(at: &Where, id: &str, yes: bool) -> ExitCode {
    let (_, index) = match at.index() {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let file = match index.file_of(id) {
        Ok(Some(f)) => f,
        Ok(None) => return fail(format!("no tape {id:?} in the index")),
        Err(e) => return fail(e),
    };
    let tape_id = file
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(crate::tape::EXTENSION))
        .unwrap_or(id)
        .to_owned();
    if !yes {
        if !std::io::stdin().is_terminal() {
            return fail(format!("delete {}: give --yes to delete without asking", file.display()));
        }
        out_raw!("delete tape {tape_id} ({})? [y/N] ", file.display());
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            out!("kept");
            return ExitCode::from(1);
        }
    }
    if let Err(e) = std::fs::remove_file(&file) {
        if e.kind() != std::io::ErrorKind::NotFound {
            return fail(format!("{}: {e}", file.display()));
        }
    }
    match index.remove(&tape_id) {
        Ok(()) => {
            out!("deleted {tape_id}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `tape stats`.
pub fn stats(at: &Where, as_json: bool) -> ExitCode {
    let (_, index) = match at.index() {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    let stats = match index.stats() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if as_json {
        out!("{}", serde_json::to_string(&stats).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    out!("{} tapes, {} frames", stats.tapes, stats.frames);
    out!(
        "{:<28} {:<24} {:>7} {:>6} {:>10} {:>10} {:>10}",
        "METHOD",
        "TOOL",
        "COUNT",
        "ERRS",
        "P50 MS",
        "P90 MS",
        "P99 MS"
    );
    let ms = |v: Option<i64>| v.map_or_else(|| "-".into(), |us| format!("{:.1}", us as f64 / 1000.0));
    for r in &stats.rows {
        out!(
            "{:<28} {:<24} {:>7} {:>6} {:>10} {:>10} {:>10}",
            r.method,
            r.tool.as_deref().unwrap_or("-"),
            r.count,
            r.errors,
            ms(r.p50_us),
            ms(r.p90_us),
            ms(r.p99_us)
        );
    }
    ExitCode::SUCCESS
}
