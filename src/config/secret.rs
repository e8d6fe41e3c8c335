//! Values that may be secrets: written in the file, or taken from an environment
//! variable or a file at load time.
//!
//! ```yaml
//! headers:
//!   X-Team: platform                                   # literal
//!   Authorization: { env: UPSTREAM_TOKEN, prefix: "Bearer " }
//!   X-Api-Key: { file: /run/secrets/api-key }          # trailing newline trimmed
//! ```

use std::fmt;

use serde::Deserialize;

/// A literal, or a reference to an environment variable or a file.
#[derive(Clone, Deserialize)]
#[serde(untagged)]
pub enum SecretValue {
    /// Written in the config.
    Literal(String),
    /// From an environment variable.
    Env {
        /// The variable's name.
        env: String,
        /// Put before the value (for `Bearer `).
        #[serde(default)]
        prefix: String,
    },
    /// From a file (a trailing newline is trimmed).
    File {
        /// The file's path.
        file: String,
        /// Put before the value.
        #[serde(default)]
        prefix: String,
    },
}

impl SecretValue {
    /// The value, read now.
    pub fn resolve(&self) -> Result<String, String> {
        match self {
            SecretValue::Literal(v) => Ok(v.clone()),
            SecretValue::Env { env, prefix } => std::env::var(env)
                .map(|v| format!("{prefix}{v}"))
                .map_err(|_| format!("environment variable {env} is not set")),
            SecretValue::File { file, prefix } => std::fs::read_to_string(file)
                .map(|v| format!("{prefix}{}", v.trim_end_matches(['\r', '\n'])))
                .map_err(|e| format!("cannot read {file}: {e}")),
        }
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretValue::Literal(_) => f.write_str("SecretValue::Literal(..)"),
            SecretValue::Env { env, .. } => write!(f, "SecretValue::Env({env})"),
            SecretValue::File { file, .. } => write!(f, "SecretValue::File({file})"),
        }
    }
}
