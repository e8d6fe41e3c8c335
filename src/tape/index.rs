//! The tape index: `index.sqlite` beside the tapes, one row per tape and one per
//! request in it, updated by the writer as each tape closes (and by `tape import`).
//! `tape list`, `show`, `stats` and `delete` read it.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use super::format::{Dir, Side};
use super::read::Tape;

/// The index's file name in a tape directory.
pub const FILE: &str = "index.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tapes (
    id TEXT PRIMARY KEY,
    file TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    reason TEXT,
    mode TEXT NOT NULL,
    side TEXT NOT NULL,
    route TEXT,
    upstream TEXT,
    session TEXT,
    client TEXT,
    server TEXT,
    revisions TEXT NOT NULL,
    frames INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    dropped INTEGER NOT NULL,
    cut_short INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS calls (
    tape TEXT NOT NULL REFERENCES tapes(id) ON DELETE CASCADE,
    n INTEGER NOT NULL,
    method TEXT NOT NULL,
    tool TEXT,
    error INTEGER,
    latency_us INTEGER
);
CREATE INDEX IF NOT EXISTS tapes_started ON tapes(started_at);
CREATE INDEX IF NOT EXISTS tapes_session ON tapes(session);
CREATE INDEX IF NOT EXISTS calls_tape ON calls(tape);
CREATE INDEX IF NOT EXISTS calls_method ON calls(method);
CREATE INDEX IF NOT EXISTS calls_tool ON calls(tool);
";

/// One tape as the index knows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    /// The tape id.
    pub id: String,
    /// Its file.
    pub file: String,
    /// When it started.
    pub started_at: String,
    /// When it ended (closed in order).
    pub ended_at: Option<String>,
    /// Why it ended.
    pub reason: Option<String>,
    /// `gateway` or `forward`.
    pub mode: String,
    /// `client` or `upstream`.
    pub side: String,
    /// The upstream.
    pub upstream: Option<String>,
    /// The session's tag.
    pub session: Option<String>,
    /// The client's name and version.
    pub client: Option<String>,
    /// Revisions.
    pub revisions: String,
    /// Frames.
    pub frames: i64,
    /// Client requests.
    pub requests: i64,
    /// Requests answered with an error.
    pub errors: i64,
    /// Whether it was cut short.
    pub cut_short: bool,
}

/// What `tape list` asks for.
#[derive(Debug, Default)]
pub struct Filter {
    /// Tapes started at or after this (RFC 3339 prefix compare).
    pub since: Option<String>,
    /// Tapes with a request of this method.
    pub method: Option<String>,
    /// Tapes with a call of this tool.
    pub tool: Option<String>,
    /// The session's tag.
    pub session: Option<String>,
    /// Tapes with an error answer.
    pub errors: bool,
}

/// The index of one tape directory.
pub struct Index {
    conn: Connection,
}

/// One request of a tape, for the index.
struct Call {
    method: String,
    tool: Option<String>,
    error: Option<i64>,
    latency_us: Option<i64>,
}

fn calls(tape: &Tape) -> Vec<Call> {
    let mut out: Vec<Call> = Vec::new();
    let mut open: std::collections::HashMap<String, (usize, u64)> = std::collections::HashMap::new();
    for f in tape.frames.iter().filter(|f| f.side == Side::Client) {
        let Ok(msg) = serde_json::from_str::<Value>(f.msg.get()) else { continue };
        let id = msg.get("id").filter(|i| !i.is_null()).map(Value::to_string);
        match (f.dir, msg.get("method").and_then(Value::as_str), id) {
            (Dir::ClientToServer, Some(method), Some(id)) => {
                let tool = msg.pointer("/params/name").and_then(Value::as_str).filter(|_| method == "tools/call");
                out.push(Call {
                    method: method.to_owned(),
                    tool: tool.map(str::to_owned),
                    error: None,
                    latency_us: None,
                });
                open.insert(id, (out.len() - 1, f.t_us));
            }
            (Dir::ServerToClient, None, Some(id)) => {
                if let Some((i, started)) = open.remove(&id) {
                    out[i].latency_us = Some(f.t_us.saturating_sub(started) as i64);
                    out[i].error = msg.pointer("/error/code").and_then(Value::as_i64).or_else(|| {
                        // A tool's own failure counts as an error too.
                        (msg.pointer("/result/isError") == Some(&Value::Bool(true))).then_some(0)
                    });
                }
            }
            _ => {}
        }
    }
    out
}

impl Index {
    /// Opens (creating if needed) the index of `dir`.
    pub fn open(dir: &Path) -> Result<Index, String> {
        let path = dir.join(FILE);
        let conn = Connection::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;")
            .and_then(|()| conn.execute_batch(SCHEMA))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Index { conn })
    }

    /// Adds (or replaces) `tape`, read from `file`.
    pub fn add(&mut self, file: &Path, tape: &Tape) -> Result<(), String> {
        let h = &tape.header;
        let calls = calls(tape);
        let errors = calls.iter().filter(|c| c.error.is_some()).count() as i64;
        let name = |v: &Option<Value>| {
            v.as_ref().and_then(|c| c.get("info")).map(|i| {
                let n = i.get("name").and_then(Value::as_str).unwrap_or("?");
                match i.get("version").and_then(Value::as_str) {
                    Some(v) => format!("{n} {v}"),
                    None => n.to_owned(),
                }
            })
        };
        let bytes = std::fs::metadata(file).map(|m| m.len() as i64).unwrap_or(0);
        let tx = self.conn.transaction().map_err(|e| e.to_string())?;
        tx.execute("DELETE FROM calls WHERE tape = ?1", params![h.tape]).map_err(|e| e.to_string())?;
        tx.execute(
            "INSERT OR REPLACE INTO tapes VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19)",
            params![
                h.tape,
                file.display().to_string(),
                h.started_at,
                tape.trailer.as_ref().map(|t| t.ended_at.clone()),
                tape.trailer.as_ref().map(|t| t.reason.clone()),
                h.mode,
                h.side,
                h.route,
                h.upstream,
                h.session,
                name(&h.client),
                name(&h.server),
                h.revisions.join(","),
                tape.frames.len() as i64,
                calls.len() as i64,
                errors,
                tape.trailer.as_ref().map_or(0, |t| t.dropped as i64),
                tape.cut_short.is_some(),
                bytes,
            ],
        )
        .map_err(|e| e.to_string())?;
        {
            let mut insert = tx
                .prepare("INSERT INTO calls (tape, n, method, tool, error, latency_us) VALUES (?1,?2,?3,?4,?5,?6)")
                .map_err(|e| e.to_string())?;
            for (n, c) in calls.iter().enumerate() {
                insert
                    .execute(params![h.tape, n as i64 + 1, c.method, c.tool, c.error, c.latency_us])
                    .map_err(|e| e.to_string())?;
            }
        }
        tx.commit().map_err(|e| e.to_string())
    }

    /// The tapes matching `filter`, newest first.
    pub fn list(&self, filter: &Filter) -> Result<Vec<Entry>, String> {
        let mut sql = String::from(
            "SELECT id, file, started_at, ended_at, reason, mode, side, upstream, session, client, revisions, frames, requests, errors, cut_short FROM tapes t WHERE 1=1",
        );
        let mut args: Vec<String> = Vec::new();
        if let Some(since) = &filter.since {
            args.push(since.clone());
            sql.push_str(&format!(" AND started_at >= ?{}", args.len()));
        }
        if let Some(session) = &filter.session {
            args.push(session.clone());
            sql.push_str(&format!(" AND session = ?{}", args.len()));
        }
        if let Some(method) = &filter.method {
            args.push(method.clone());
            sql.push_str(&format!(" AND id IN (SELECT tape FROM calls WHERE method = ?{})", args.len()));
        }
        if let Some(tool) = &filter.tool {
            args.push(tool.clone());
            sql.push_str(&format!(" AND id IN (SELECT tape FROM calls WHERE tool = ?{})", args.len()));
        }
        if filter.errors {
            sql.push_str(" AND errors > 0");
        }
        sql.push_str(" ORDER BY started_at DESC, id DESC");
        let mut stmt = self.conn.prepare(&sql).map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args.iter()), |r| {
                Ok(Entry {
                    id: r.get(0)?,
                    file: r.get(1)?,
                    started_at: r.get(2)?,
                    ended_at: r.get(3)?,
                    reason: r.get(4)?,
                    mode: r.get(5)?,
                    side: r.get(6)?,
                    upstream: r.get(7)?,
                    session: r.get(8)?,
                    client: r.get(9)?,
                    revisions: r.get(10)?,
                    frames: r.get(11)?,
                    requests: r.get(12)?,
                    errors: r.get(13)?,
                    cut_short: r.get(14)?,
                })
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())
    }

    /// The file of tape `id` (a full id, or a unique prefix of one).
    pub fn file_of(&self, id: &str) -> Result<Option<PathBuf>, String> {
        let mut stmt = self
            .conn
            .prepare("SELECT file FROM tapes WHERE id LIKE ?1 || '%' ESCAPE '\\' LIMIT 2")
            .map_err(|e| e.to_string())?;
        let escaped = id.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        let found: Vec<String> = stmt
            .query_map([escaped], |r| r.get(0))
            .map_err(|e| e.to_string())?
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        match found.as_slice() {
            [one] => Ok(Some(PathBuf::from(one))),
            [] => Ok(None),
            _ => Err(format!("{id:?} names more than one tape: give more of its id")),
        }
    }

    /// Removes tape `id` from the index.
    pub fn remove(&self, id: &str) -> Result<(), String> {
        self.conn.execute("DELETE FROM tapes WHERE id = ?1", [id]).map(|_| ()).map_err(|e| e.to_string())
    }

    /// Counts and latency percentiles (p50, p90, p99, in µs) per method and tool.
    pub fn stats(&self) -> Result<Stats, String> {
        let count = |sql: &str| self.conn.query_row(sql, [], |r| r.get::<_, i64>(0)).map_err(|e| e.to_string());
        let tapes = count("SELECT COUNT(*) FROM tapes")?;
        let frames = count("SELECT COALESCE(SUM(frames), 0) FROM tapes")?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT method, COALESCE(tool, ''), latency_us, error FROM calls ORDER BY method, tool, latency_us",
            )
            .map_err(|e| e.to_string())?;
        let mut per: std::collections::BTreeMap<(String, String), (Vec<i64>, i64)> = Default::default();
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                ))
            })
            .map_err(|e| e.to_string())?;
        for row in rows {
            let (method, tool, latency, error) = row.map_err(|e| e.to_string())?;
            let e = per.entry((method, tool)).or_default();
            if let Some(l) = latency {
                e.0.push(l);
            }
            e.1 += i64::from(error.is_some());
        }
        let pct = |v: &[i64], p: f64| -> Option<i64> {
            if v.is_empty() {
                return None;
            }
            let i = ((v.len() as f64 - 1.0) * p).round() as usize;
            v.get(i).copied()
        };
        let rows = per
            .into_iter()
            .map(|((method, tool), (lat, errors))| StatRow {
                method,
                tool: (!tool.is_empty()).then_some(tool),
                count: lat.len() as i64,
                errors,
                p50_us: pct(&lat, 0.5),
                p90_us: pct(&lat, 0.9),
                p99_us: pct(&lat, 0.99),
            })
            .collect();
        Ok(Stats { tapes, frames, rows })
    }

    /// Whether tape `id` is indexed.
    pub fn has(&self, id: &str) -> Result<bool, String> {
        self.conn
            .query_row("SELECT 1 FROM tapes WHERE id = ?1", [id], |_| Ok(()))
            .optional()
            .map(|o| o.is_some())
            .map_err(|e| e.to_string())
    }
}

/// What `tape stats` prints.
#[derive(Debug, serde::Serialize)]
pub struct Stats {
    /// Tapes indexed.
    pub tapes: i64,
    /// Frames in them.
    pub frames: i64,
    /// Per method and tool.
    pub rows: Vec<StatRow>,
}

/// One method (and tool) in `tape stats`.
#[derive(Debug, serde::Serialize)]
pub struct StatRow {
    /// The method.
    pub method: String,
    /// The tool, for `tools/call`.
    pub tool: Option<String>,
    /// Answered requests.
    pub count: i64,
    /// Of them, errors.
    pub errors: i64,
    /// Latency percentiles, µs.
    pub p50_us: Option<i64>,
    /// 90th.
    pub p90_us: Option<i64>,
    /// 99th.
    pub p99_us: Option<i64>,
}
