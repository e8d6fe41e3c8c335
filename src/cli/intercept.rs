//! `shadowcat intercept`: rule files for the `intercept` stage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::layers::intercept::rules::RuleSet;

/// `intercept` subcommands.
#[derive(Debug, Subcommand)]
pub enum InterceptCommand {
    /// Rule files.
    #[command(subcommand)]
    Rules(RulesCommand),
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
}

/// Runs an `intercept` command; returns the exit code.
pub fn run(cmd: InterceptCommand) -> ExitCode {
    match cmd {
        InterceptCommand::Rules(RulesCommand::Validate { file }) => match RuleSet::load(&file) {
            Ok(set) => {
                for warning in &set.warnings {
                    eprintln!("warning: {warning}");
                }
                let enabled = set.rules.iter().filter(|r| r.enabled).count();
                out!("{}: ok ({} rules, {enabled} enabled)", file.display(), set.rules.len());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
    }
}
