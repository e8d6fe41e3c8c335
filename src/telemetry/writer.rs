//! The log writer: lines are appended to a buffer and written to stderr by a flusher
//! thread every [`FLUSH_EVERY`], when the buffer passes [`FLUSH_AT`], or at once for
//! warnings and errors. A busy gateway thus writes many lines per system call and
//! never wakes another thread per line (a channel-per-line writer measured ~3 us of
//! CPU per request more under load).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use tracing::Level;
use tracing_subscriber::fmt::MakeWriter;

/// How often buffered lines are written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Buffered bytes that trigger a write right away.
pub const FLUSH_AT: usize = 64 * 1024;
/// Buffered bytes beyond which new lines are dropped (stderr is stuck).
const DROP_AT: usize = 8 * 1024 * 1024;

struct Shared {
    buf: Mutex<Vec<u8>>,
    wake: Condvar,
    /// Serialises writes so that lines never interleave or reorder.
    out: Mutex<()>,
    /// Where lines go instead of stderr (`--log-file`).
    file: Option<Mutex<std::fs::File>>,
}

impl Shared {
    fn flush(&self) {
        let _out = self.out.lock();
        let bytes = std::mem::take(&mut *self.buf.lock());
        if bytes.is_empty() {
            return;
        }
        if let Some(file) = &self.file {
            let mut file = file.lock();
            let _ = file.write_all(&bytes);
            let _ = file.flush();
        } else {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(&bytes);
            let _ = err.flush();
        }
    }
}

/// A `MakeWriter` for tracing-subscriber that buffers lines for stderr.
#[derive(Clone)]
pub struct BufferedStderr {
    shared: Arc<Shared>,
}

/// Flushes what is buffered when dropped; keep it until exit.
pub struct FlushGuard {
    shared: Arc<Shared>,
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.flush();
    }
}

impl BufferedStderr {
    /// A writer and its guard; starts the flusher thread.
    pub fn new() -> (BufferedStderr, FlushGuard) {
        Self::to_file(None)
    }

    /// The same, writing to `file` instead of stderr when given.
    pub fn to_file(file: Option<std::fs::File>) -> (BufferedStderr, FlushGuard) {
        let shared = Arc::new(Shared {
            buf: Mutex::new(Vec::with_capacity(FLUSH_AT)),
            wake: Condvar::new(),
            out: Mutex::new(()),
            file: file.map(Mutex::new),
        });
        let weak = Arc::downgrade(&shared);
        let spawned = std::thread::Builder::new().name("shadowcat-log".into()).spawn(move || {
            while let Some(shared) = weak.upgrade() {
                {
                    let mut buf = shared.buf.lock();
                    if buf.len() < FLUSH_AT {
                        let _ = shared.wake.wait_for(&mut buf, FLUSH_EVERY);
                    }
                }
                shared.flush();
            }
        });
        if let Err(e) = spawned {
            eprintln!("shadowcat: cannot start the log flusher thread ({e}); logs are written line by line");
        }
        (BufferedStderr { shared: shared.clone() }, FlushGuard { shared })
    }
}

/// One event's writer.
pub struct LineWriter<'a> {
    shared: &'a Shared,
    urgent: bool,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut buf = self.shared.buf.lock();
        if buf.len() < DROP_AT {
            buf.extend_from_slice(bytes);
        }
        if buf.len() >= FLUSH_AT {
            self.shared.wake.notify_one();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter<'_> {
    fn drop(&mut self) {
        if self.urgent {
            self.shared.flush();
        }
    }
}

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { shared: &self.shared, urgent: false }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        LineWriter { shared: &self.shared, urgent: *meta.level() <= Level::WARN }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_and_flushes_on_drop() {
        let (w, guard) = BufferedStderr::new();
        {
            let mut line = w.make_writer();
            line.write_all(b"").expect("write");
        }
        w.shared.buf.lock().extend_from_slice(b"shadowcat log writer test line\n");
        assert!(!w.shared.buf.lock().is_empty());
        drop(guard);
        assert!(w.shared.buf.lock().is_empty(), "dropping the guard flushes");
    }
}
