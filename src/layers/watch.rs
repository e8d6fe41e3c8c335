//! Hot reload for stages that load files (`intercept` rules, `policy` directories):
//! a directory is watched (`notify`), so that an editor's save by rename and a
//! Kubernetes ConfigMap's symlink swap are seen as well as a write in place. After
//! a change settles, the stage's reload function runs on the watcher's own thread;
//! it reads, checks and swaps in whole (see [`Shared`](crate::pipeline::Shared)),
//! or logs why not and keeps what it had.

use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use futures_util::future::BoxFuture;
use notify::Watcher;
use parking_lot::Mutex;

use crate::pipeline::Lifecycle;

/// How long after a change the files are read: editors and ConfigMap updates touch
/// the directory several times for one save.
const SETTLE: Duration = Duration::from_millis(50);

/// Watches one directory for the stage's lifetime (register it with
/// `BuildContext::lifecycles`).
pub struct DirWatch {
    dir: PathBuf,
    /// Who watches (`intercept`, `policy`), for errors and the thread's name.
    stage: &'static str,
    reload: Arc<dyn Fn() + Send + Sync>,
    /// The watcher while running (dropping it ends the reload thread).
    watcher: Mutex<Option<notify::RecommendedWatcher>>,
}

impl DirWatch {
    /// Runs `reload` after each change in `dir` (not its subdirectories).
    pub fn new(dir: PathBuf, stage: &'static str, reload: impl Fn() + Send + Sync + 'static) -> Self {
        let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
        DirWatch { dir, stage, reload: Arc::new(reload), watcher: Mutex::new(None) }
    }
}

impl Lifecycle for DirWatch {
    fn start(&self) -> Result<(), String> {
        let (tx, rx) = mpsc::channel::<()>();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok() {
                let _ = tx.send(());
            }
        })
        .map_err(|e| format!("{}: cannot watch {}: {e}", self.stage, self.dir.display()))?;
        watcher
            .watch(&self.dir, notify::RecursiveMode::NonRecursive)
            .map_err(|e| format!("{}: cannot watch {}: {e}", self.stage, self.dir.display()))?;
        let reload = self.reload.clone();
        std::thread::Builder::new()
            .name(format!("{}-reload", self.stage))
            .spawn(move || {
                // Ends when the watcher (and with it the sender) is dropped.
                while rx.recv().is_ok() {
                    std::thread::sleep(SETTLE);
                    while rx.try_recv().is_ok() {}
                    reload();
                }
            })
            .map_err(|e| format!("{}: cannot start the reload thread: {e}", self.stage))?;
        *self.watcher.lock() = Some(watcher);
        Ok(())
    }

    fn stop(&self, _grace: Duration) -> BoxFuture<'_, ()> {
        self.watcher.lock().take();
        Box::pin(std::future::ready(()))
    }
}
