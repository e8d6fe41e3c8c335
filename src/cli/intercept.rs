//! `shadowcat intercept`: rule files for the `intercept` stage, and the stage of a
//! running instance, through its admin listener (`--admin URL`; the token from
//! `SHADOWCAT_ADMIN_TOKEN`).

use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use crate::layers::intercept::rules::RuleSet;

/// `intercept` subcommands.
#[derive(Debug, Subcommand)]
pub enum InterceptCommand {
    /// Rule files, and the rules of a running instance.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// The messages `pause` rules hold in a running instance.
    Paused(Live),
    /// Lets a paused message go on, as it was or as edited.
    Resume {
        /// The paused message's number (from `intercept paused`).
        id: u64,
        /// A file with the message to send instead (a JSON-RPC message with the same id).
        #[arg(long, value_name = "FILE")]
        edit: Option<PathBuf>,
        #[command(flatten)]
        live: Live,
    },
    /// Drops a paused message (a request is answered with an error).
    Drop {
        /// The paused message's number.
        id: u64,
        #[command(flatten)]
        live: Live,
    },
    /// Follows the rules that act, one line per match, until interrupted.
    Watch(Live),
}

/// Where the running instance is.
#[derive(Debug, Args)]
pub struct Live {
    /// The instance's admin listener.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9901")]
    admin: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `intercept rules` subcommands.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Check a rule file (YAML or JSON): exit 0 if it is valid (warnings, such as a
    /// rule that can never match, go to stderr), 1 if not, with errors naming the
    /// file, line, rule and key.
    Validate {
        /// The rule file.
        file: PathBuf,
    },
    /// The rules of a running instance, with how often each matched and acted.
    List(Live),
    /// One rule of a running instance.
    Show {
        /// The rule's id.
        id: String,
        #[command(flatten)]
        live: Live,
    },
    /// Turns a rule on (until its file is next reloaded).
    Enable {
        /// The rule's id.
        id: String,
        #[command(flatten)]
        live: Live,
    },
    /// Turns a rule off (until its file is next reloaded).
    Disable {
        /// The rule's id.
        id: String,
        #[command(flatten)]
        live: Live,
    },
    /// Loads a rule file into a running instance (checked whole first; on an
    /// error nothing changes).
    Load {
        /// The rule file.
        file: PathBuf,
        #[command(flatten)]
        live: Live,
    },
}

/// Runs an `intercept` command; returns the exit code.
pub fn run(cmd: InterceptCommand) -> ExitCode {
    let result = match cmd {
        InterceptCommand::Rules(RulesCommand::Validate { file }) => return validate(&file),
        InterceptCommand::Rules(RulesCommand::List(live)) => {
            live.get("rules").map(|v| live.print(&v, || rules_table(&v)))
        }
        InterceptCommand::Rules(RulesCommand::Show { id, live }) => live
            .get(&format!("rules/{}", segment(&id)))
            .map(|v| live.print(&v, || rules_table(&serde_json::json!({"rules": [v]})))),
        InterceptCommand::Rules(RulesCommand::Enable { id, live }) => live
            .post(&format!("rules/{}/enable", segment(&id)), None)
            .map(|v| live.print(&v, || format!("{id}: enabled"))),
        InterceptCommand::Rules(RulesCommand::Disable { id, live }) => live
            .post(&format!("rules/{}/disable", segment(&id)), None)
            .map(|v| live.print(&v, || format!("{id}: disabled"))),
        InterceptCommand::Rules(RulesCommand::Load { file, live }) => std::fs::read(&file)
            .map_err(|e| format!("{}: cannot read: {e}", file.display()))
            .and_then(|text| live.send(http::Method::PUT, "rules", Some(text)))
            .map(|v| {
                for w in v["warnings"].as_array().into_iter().flatten() {
                    eprintln!("warning: {}", w.as_str().unwrap_or_default());
                }
                live.print(&v, || {
                    format!("{}: loaded ({} rules, generation {})", file.display(), v["rules"], v["generation"])
                })
            }),
        InterceptCommand::Paused(live) => live.get("paused").map(|v| live.print(&v, || paused_table(&v))),
        InterceptCommand::Resume { id, edit, live } => {
            match edit.map(|f| std::fs::read(&f).map_err(|e| format!("{}: cannot read: {e}", f.display()))) {
                Some(Err(e)) => Err(e),
                Some(Ok(edited)) => live
                    .post(&format!("paused/{id}/resume"), Some(edited))
                    .map(|v| live.print(&v, || format!("{id}: resumed, edited"))),
                None => {
                    live.post(&format!("paused/{id}/resume"), None).map(|v| live.print(&v, || format!("{id}: resumed")))
                }
            }
        }
        InterceptCommand::Drop { id, live } => {
            live.post(&format!("paused/{id}/drop"), None).map(|v| live.print(&v, || format!("{id}: dropped")))
        }
        InterceptCommand::Watch(live) => live.watch(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn validate(file: &std::path::Path) -> ExitCode {
    match RuleSet::load(file) {
        Ok(set) => {
            for warning in &set.warnings {
                eprintln!("warning: {warning}");
            }
            let enabled = set.rules.iter().filter(|r| r.enabled.load(std::sync::atomic::Ordering::Relaxed)).count();
            out!("{}: ok ({} rules, {enabled} enabled)", file.display(), set.rules.len());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

/// A rule id as one path segment.
fn segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Rows under a header, each column as wide as its widest cell.
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = vec![line(header.iter().map(|h| h.to_string()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

fn rules_table(v: &Value) -> String {
    let rows = v["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            ["id", "enabled", "priority", "action", "matches", "fired", "description"]
                .iter()
                .map(|k| cell(&r[*k]))
                .collect()
        })
        .collect();
    table(&["ID", "ENABLED", "PRIORITY", "ACTION", "MATCHES", "FIRED", "DESCRIPTION"], rows)
}

fn paused_table(v: &Value) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let rows = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let held = now.saturating_sub(p["since_ms"].as_u64().unwrap_or(now)) / 1000;
            let left = (p["timeout_ms"].as_u64().unwrap_or(0) / 1000).saturating_sub(held);
            vec![
                cell(&p["id"]),
                cell(&p["rule"]),
                cell(&p["direction"]),
                cell(&p["kind"]),
                cell(&p["method"]),
                format!("{held}s"),
                format!("{left}s"),
            ]
        })
        .collect();
    table(&["ID", "RULE", "DIRECTION", "KIND", "METHOD", "HELD", "LEFT"], rows)
}

fn watch_line(e: &Value) -> String {
    if let Some(missed) = e.get("missed") {
        return format!("... {missed} matches missed (the watcher fell behind)");
    }
    let time = e["time_ms"].as_u64().map_or_else(String::new, |ms| {
        humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
    });
    let mut line = format!(
        "{time} {} {} {} {} {}",
        cell(&e["rule"]),
        cell(&e["action"]),
        cell(&e["direction"]),
        cell(&e["kind"]),
        cell(&e["method"])
    );
    if let Some(tool) = e["tool"].as_str() {
        line.push_str(&format!(" tool={tool}"));
    }
    if let Some(n) = e.get("paused") {
        line.push_str(&format!(" paused={n}"));
    }
    line
}

impl Live {
    fn print(&self, v: &Value, human: impl FnOnce() -> String) {
        if self.json {
            out!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        } else {
            out!("{}", human());
        }
    }

    fn get(&self, path: &str) -> Result<Value, String> {
        self.send(http::Method::GET, path, None)
    }

    fn post(&self, path: &str, body: Option<Vec<u8>>) -> Result<Value, String> {
        self.send(http::Method::POST, path, body)
    }

    fn request(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<http::Request<Full<Bytes>>, String> {
        let url = format!("{}/stages/intercept/{path}", self.admin.trim_end_matches('/'));
        let mut req = http::Request::builder().method(method).uri(&url);
        if let Ok(token) = std::env::var("SHADOWCAT_ADMIN_TOKEN") {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        req.body(Full::new(Bytes::from(body.unwrap_or_default()))).map_err(|e| format!("--admin {}: {e}", self.admin))
    }

    fn runtime() -> Result<tokio::runtime::Runtime, String> {
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())
    }

    fn client() -> hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
    }

    /// Sends `req`; the body of a successful answer, or the error an unsuccessful
    /// one gives.
    async fn open(&self, req: http::Request<Full<Bytes>>) -> Result<hyper::body::Incoming, String> {
        let resp = Self::client()
            .request(req)
            .await
            .map_err(|e| format!("cannot reach the admin listener at {}: {e}", self.admin))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp.into_body());
        }
        let body = resp.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        let message = match serde_json::from_slice::<Value>(&body) {
            Ok(value) => value["error"].as_str().map_or_else(|| cell(&value), str::to_owned),
            Err(_) => String::from_utf8_lossy(&body).trim().to_owned(),
        };
        Err(format!("{status}: {message}"))
    }

    /// One call; the answer's JSON, or its error.
    fn send(&self, method: http::Method, path: &str, body: Option<Vec<u8>>) -> Result<Value, String> {
        let req = self.request(method, path, body)?;
        Self::runtime()?.block_on(async {
            let body = self.open(req).await?.collect().await.map_err(|e| e.to_string())?.to_bytes();
            serde_json::from_slice(&body).map_err(|e| format!("the admin listener's answer is not JSON: {e}"))
        })
    }

    /// `watch`: prints each event as it comes, until the stream ends.
    fn watch(&self) -> Result<(), String> {
        let req = self.request(http::Method::GET, "watch", None)?;
        Self::runtime()?.block_on(async {
            let mut body = self.open(req).await?;
            let mut pending = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| format!("the watch stream broke: {e}"))?;
                let Some(data) = frame.data_ref() else { continue };
                pending.extend_from_slice(data);
                while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
                    let event: Vec<u8> = pending.drain(..end + 2).collect();
                    let text = String::from_utf8_lossy(&event);
                    for data in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
                        let Ok(v) = serde_json::from_str::<Value>(data) else { continue };
                        if self.json {
                            out!("{v}");
                        } else {
                            out!("{}", watch_line(&v));
                        }
                    }
                }
            }
            Ok(())
        })
    }
}
