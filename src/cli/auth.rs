//! `shadowcat auth`: helpers for the `auth` stage's configuration.

use std::io::Read;
use std::process::ExitCode;

use clap::Subcommand;

use crate::layers::auth::hash_key;

/// `auth` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Print the SHA-256 of an API key, as `api_keys[].sha256` wants it. The key is
    /// read from stdin (one line), so that it stays out of the shell's history; with
    /// `--generate`, a new random key is made and printed first.
    HashKey {
        /// Make a new key (32 random bytes, URL-safe Base64 with an `sc_` prefix).
        #[arg(long)]
        generate: bool,
    },
}

/// Runs an `auth` subcommand.
pub fn run(cmd: AuthCommand) -> ExitCode {
    match cmd {
        AuthCommand::HashKey { generate: true } => {
            use base64::Engine;
            let mut bytes = [0u8; 32];
            if aws_lc_rs::rand::fill(&mut bytes).is_err() {
                eprintln!("shadowcat auth hash-key: no random bytes from the system");
                return ExitCode::from(2);
            }
            let key = format!("sc_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
            println!("key:    {key}");
            println!("sha256: {}", hash_key(&key));
            ExitCode::SUCCESS
        }
        AuthCommand::HashKey { generate: false } => {
            let mut text = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut text) {
                eprintln!("shadowcat auth hash-key: cannot read stdin: {e}");
                return ExitCode::from(2);
            }
            let key = text.trim_end_matches(['\n', '\r']);
            if key.is_empty() || key.contains(char::is_whitespace) {
                eprintln!("shadowcat auth hash-key: give the key on stdin, one line without spaces");
                return ExitCode::from(2);
            }
            println!("{}", hash_key(key));
            ExitCode::SUCCESS
        }
    }
}
