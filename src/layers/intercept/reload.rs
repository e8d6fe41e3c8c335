//! Hot reload of the rule file: its directory is watched ([`DirWatch`]). On any
//! change in the directory the file is read again; if its
//! text changed it is parsed and checked, then swapped in whole ([`Shared::replace`]):
//! messages in flight finish under the rules they started with. A file that does not
//! load is rejected with a logged error naming file and line, and the old rules stay;
//! a file deleted is waited for (the old rules stay until it is back).

use std::path::Path;

use parking_lot::Mutex;

use super::rules::RuleSet;
use crate::layers::watch::DirWatch;
use crate::pipeline::Shared;

/// Watches the rule file at `path`, whose current rules (`rules`) came from `text`.
pub fn watch(path: &Path, rules: Shared<RuleSet>, text: String) -> DirWatch {
    let dir = path.parent().map(Path::to_owned).unwrap_or_default();
    let (path, loaded) = (path.to_owned(), Mutex::new(text));
    DirWatch::new(dir, "intercept", move || reload(&path, &rules, &loaded))
}

/// Reads the file again and swaps its rules in if its text changed and loads.
fn reload(path: &Path, rules: &Shared<RuleSet>, loaded: &Mutex<String>) {
    let origin = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        // Deleted (an editor's save, a ConfigMap swap in progress): wait for it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::error!(file = %origin, error = %e, "intercept rules not reloaded: cannot read the file; the old rules stay");
            return;
        }
    };
    let mut last = loaded.lock();
    if *last == text {
        return;
    }
    match RuleSet::parse(&text, &origin) {
        Ok(set) => {
            for warning in &set.warnings {
                tracing::warn!(%warning, "intercept rule file");
            }
            let count = set.rules.len();
            rules.replace(set);
            *last = text;
            tracing::info!(file = %origin, rules = count, generation = rules.generation(), "intercept rules reloaded");
        }
        Err(error) => {
            *last = text;
            tracing::error!(%error, "intercept rules rejected; the old rules stay");
        }
    }
}
