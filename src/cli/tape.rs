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
}

/// Runs a `tape` command.
pub fn run(cmd: TapeCommand) -> ExitCode {
    match cmd {
        TapeCommand::Validate { file } => validate(&file),
    }
}

fn validate(file: &std::path::Path) -> ExitCode {
    match crate::tape::read(file) {
        Ok(tape) => {
            let frames = tape.frames.len();
            match (&tape.cut_short, &tape.trailer) {
                (Some(cut), _) => {
                    println!(
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
                    println!(
                        "{}: ok: tape {}, {frames} frames, closed ({}){dropped}",
                        file.display(),
                        tape.header.tape,
                        trailer.reason
                    );
                    ExitCode::SUCCESS
                }
                (None, None) => {
                    // parse() sets cut_short whenever there is no trailer.
                    println!("{}: no trailer", file.display());
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
