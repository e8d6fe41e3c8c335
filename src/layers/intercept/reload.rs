//! Hot reload of the rule file: its directory is watched (`notify`), so that an
//! editor's save by rename and a Kubernetes ConfigMap's symlink swap are seen as well
//! as a write in place. On any change in the directory the file is read again; if its
//! text changed it is parsed and checked, then swapped in whole ([`Shared::replace`]):
//! messages in flight finish under the rules they started with. A file that does not
//! load is rejected with a logged error naming file and line, and the old rules stay;
//! a file deleted is waited for (the old rules stay until it is back).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use notify::Watcher;
use parking_lot::Mutex;

use super::rules::RuleSet;
use crate::pipeline::{Lifecycle, Shared};

/// How long after a change the file is read: editors and ConfigMap updates touch the
/// directory several times for one save.
const SETTLE: Duration = Duration::from_millis(50);

/// Watches one rule file for the stage's lifetime.
pub struct Reloader {
    path: PathBuf,
    rules: Shared<RuleSet>,
    /// The text the current rules were loaded from.
    loaded: std::sync::Arc<Mutex<String>>,
    /// The watcher while running (dropping it ends the reload thread).
    watcher: Mutex<Option<notify::RecommendedWatcher>>,
}

impl Reloader {
    /// A reloader of `path`, whose current rules (`rules`) came from `text`.
    pub fn new(path: &Path, rules: Shared<RuleSet>, text: String) -> Self {
        Reloader {
            path: path.to_owned(),
            rules,
            loaded: std::sync::Arc::new(Mutex::new(text)),
            watcher: Mutex::new(None),
        }
    }
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

impl Lifecycle for Reloader {
    fn start(&self) -> Result<(), String> {
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let (tx, rx) = mpsc::channel::<()>();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok() {
                let _ = tx.send(());
            }
        })
        .map_err(|e| format!("intercept: cannot watch {}: {e}", self.path.display()))?;
        watcher
            .watch(&dir, notify::RecursiveMode::NonRecursive)
            .map_err(|e| format!("intercept: cannot watch {}: {e}", dir.display()))?;
        let (path, rules, loaded) = (self.path.clone(), self.rules.clone(), self.loaded.clone());
        std::thread::Builder::new()
            .name("intercept-reload".into())
            .spawn(move || {
                // Ends when the watcher (and with it the sender) is dropped.
                while rx.recv().is_ok() {
                    std::thread::sleep(SETTLE);
                    while rx.try_recv().is_ok() {}
                    reload(&path, &rules, &loaded);
                }
            })
            .map_err(|e| format!("intercept: cannot start the reload thread: {e}"))?;
        *self.watcher.lock() = Some(watcher);
        Ok(())
    }

    fn stop(&self, _grace: Duration) -> BoxFuture<'_, ()> {
        self.watcher.lock().take();
        Box::pin(std::future::ready(()))
    }
}
