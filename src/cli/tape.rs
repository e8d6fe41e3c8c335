//! `shadowcat tape ...`: commands over recorded tapes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

/// `tape` subcommands.
#[derive(Debug, Subcommand)]
pub enum TapeCommand {
    /// Check a tape file. Exit 0: a whole, valid tape; 1: cut short (a crash or a full
    /// disk: readable up to the line named); 2: not readable (not a tape, corrupt, or
    /// of a newer format), with the file and line that say why.
    Validate {
        /// The tape file (`*.tape.jsonl`).
        file: PathBuf,
    },
    /// Compare two recordings of the same flow: requests added, removed and changed,
    /// ignoring ids, `_meta`, progress tokens, `requestState` and `--ignore` paths; a
    /// changed `tools/list` is shown as schema drift. Exit 0 equal, 1 different, 2
    /// could not read a tape.
    Diff {
        /// The first (older) tape.
        a: PathBuf,
        /// The second tape.
        b: PathBuf,
        /// A JSONPath (RFC 9535) into messages to ignore, such as
        /// `$.result.content[0].text` (repeatable).
        #[arg(long = "ignore", value_name = "JSONPATH")]
        ignore: Vec<String>,
    },
    /// List the tapes in the index, newest first.
    List {
        #[command(flatten)]
        at: super::library::Where,
        /// Only tapes started since: a time (RFC 3339, `2026-12-02T10:00:00Z`) or a
        /// duration back from now (`30m`, `2h`).
        #[arg(long)]
        since: Option<String>,
        /// Only tapes with a request of this method.
        #[arg(long)]
        method: Option<String>,
        /// Only tapes with a call of this tool.
        #[arg(long)]
        tool: Option<String>,
        /// Only the tape of this session (its 8-hex-digit tag).
        #[arg(long)]
        session: Option<String>,
        /// Only tapes with a request answered with an error.
        #[arg(long)]
        errors: bool,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A tape's timeline: offsets, directions, methods, tools, latency per request,
    /// errors highlighted (colour on a terminal, none when piped or with NO_COLOR).
    Show {
        /// The tape: its id (or a unique start of it) or its file.
        id: String,
        #[command(flatten)]
        at: super::library::Where,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a tape as its JSON lines, or as a HAR 1.2 log (for browser devtools and
    /// HTTP tooling: one entry per request, with its response).
    Export {
        /// The tape: its id (or a unique start of it) or its file.
        id: String,
        #[command(flatten)]
        at: super::library::Where,
        /// `jsonl` or `har`.
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "har"])]
        format: String,
    },
    /// Check tape files and add them to the directory and its index (copied in when
    /// they are elsewhere). Exit 1 if any was not readable.
    Import {
        /// The tape files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        at: super::library::Where,
    },
    /// Delete a tape and its index entry (asks first unless `--yes`).
    Delete {
        /// The tape: its id or a unique start of it.
        id: String,
        #[command(flatten)]
        at: super::library::Where,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
    /// Counts, and latency percentiles per method and tool, over the indexed tapes.
    Stats {
        #[command(flatten)]
        at: super::library::Where,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Send a tape's client side to a live server (a URL, or a command run over stdio)
    /// and compare its answers with the tape. Exit 0 equal, 1 different, 2 could not
    /// run. A tape of one protocol revision verifies a server of another.
    Verify {
        /// The tape (the golden recording).
        tape: PathBuf,
        /// The live server's Streamable HTTP URL.
        #[arg(long, conflicts_with = "command")]
        upstream: Option<String>,
        /// A JSONPath (RFC 9535) into messages to ignore (repeatable).
        #[arg(long = "ignore", value_name = "JSONPATH")]
        ignore: Vec<String>,
        /// Re-record: the new run becomes the tape when it differs.
        #[arg(long)]
        update: bool,
        /// Also write a JUnit XML report (one test case per request) to FILE.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// The live server's protocol era, when it should not be probed (`auto`,
        /// `modern`, `legacy`; as `forward stdio --era`).
        #[arg(long, default_value = "auto", value_parser = ["auto", "modern", "legacy"])]
        era: String,
        /// The live server as a stdio command (after `--`).
        #[arg(last = true, required_unless_present = "upstream")]
        command: Vec<String>,
    },
}

/// Runs a `tape` command.
pub fn run(cmd: TapeCommand) -> ExitCode {
    match cmd {
        TapeCommand::Validate { file } => validate(&file),
        TapeCommand::List { at, since, method, tool, session, errors, json } => {
            let since = match since.map(|s| since_time(&s)).transpose() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("shadowcat tape list: --since: {e}");
                    return ExitCode::from(2);
                }
            };
            let filter = crate::tape::index::Filter { since, method, tool, session, errors };
            super::library::list(&at, &filter, json)
        }
        TapeCommand::Show { id, at, json } => super::library::show(&at, &id, json),
        TapeCommand::Export { id, at, format } => super::library::export(&at, &id, &format),
        TapeCommand::Import { files, at } => super::library::import(&at, &files),
        TapeCommand::Delete { id, at, yes } => super::library::delete(&at, &id, yes),
        TapeCommand::Stats { at, json } => super::library::stats(&at, json),
        TapeCommand::Diff { a, b, ignore } => diff(&a, &b, &ignore),
        TapeCommand::Verify { tape, upstream, ignore, update, junit, era, command } => {
            ExitCode::from(super::verify::verify(&super::verify::VerifyArgs {
                tape: &tape,
                era: &era,
                upstream: upstream.as_deref(),
                command: &command,
                ignore: &ignore,
                update,
                junit: junit.as_deref(),
            }))
        }
    }
}

/// `--since`: an RFC 3339 time, or a duration back from now.
fn since_time(text: &str) -> Result<String, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(humantime::format_rfc3339_micros(t).to_string());
    }
    let back = crate::config::duration::parse(text)
        .map_err(|_| format!("{text:?} is neither a time (RFC 3339) nor a duration (30m, 2h)"))?;
    let t = std::time::SystemTime::now().checked_sub(back).ok_or("too far back")?;
    Ok(humantime::format_rfc3339_micros(t).to_string())
}

fn diff(a: &std::path::Path, b: &std::path::Path, ignore: &[String]) -> ExitCode {
    for (i, p) in ignore.iter().enumerate() {
        if let Err(e) = jsonpath_rust::parser::parse_json_path(p) {
            eprintln!("shadowcat tape diff: --ignore[{i}] {p:?}: not a JSONPath: {e}");
            return ExitCode::from(2);
        }
    }
    let read = |p: &std::path::Path| crate::tape::read(p).map_err(|e| e.to_string());
    let (x, y) = match (read(a), read(b)) {
        (Ok(x), Ok(y)) => (x, y),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let report = crate::tape::diff::compare(
        &crate::tape::diff::exchanges(&x, ignore),
        &crate::tape::diff::exchanges(&y, ignore),
    );
    out_raw!("{}", report.render(&a.display().to_string(), &b.display().to_string()));
    ExitCode::from(u8::from(!report.is_equal()))
}

fn validate(file: &std::path::Path) -> ExitCode {
    match crate::tape::read(file) {
        Ok(tape) => {
            let frames = tape.frames.len();
            match (&tape.cut_short, &tape.trailer) {
                (Some(cut), _) => {
                    out!(
                        "{}: cut short: readable up to line {} ({frames} frames); {}",
                        file.display(),
                        cut.last_whole_line,
                        cut.why
                    );
                    ExitCode::from(1)
                }
                (None, Some(trailer)) => {
                    let dropped = if trailer.dropped > 0 {
                        format!(", {} frames dropped while recording", trailer.dropped)
                    } else {
                        String::new()
                    };
                    out!(
                        "{}: ok: tape {}, {frames} frames, closed ({}){dropped}",
                        file.display(),
                        tape.header.tape,
                        trailer.reason
                    );
                    ExitCode::SUCCESS
                }
                (None, None) => {
                    // parse() sets cut_short whenever there is no trailer.
                    out!("{}: no trailer", file.display());
                    ExitCode::from(1)
                }
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}
