//! Tapes: recordings of MCP traffic, one per client session (or stateless client
//! conversation), as JSON Lines. The format is in `docs/tape-format.md` and
//! [`format`]; [`read`] reads and checks a tape; [`writer`] is the thread that writes
//! them; [`redact`] replaces secrets with placeholders before anything is written.
//! The `record` stage (`layers::record`) decides what goes on which tape.

pub mod diff;
pub mod format;
pub mod index;
pub mod read;
pub mod redact;
pub mod writer;

pub use format::{Dir, Frame, Header, Line, Side, Trailer, EXTENSION, FORMAT, VERSION};
pub use read::{read, CutShort, Tape, TapeError};

/// A new tape id: the UTC start time (sortable) and 8 random hex digits, such as
/// `20261202T051500Z-1a2b3c4d`.
pub fn new_id(now: std::time::SystemTime) -> String {
    let stamp = humantime::format_rfc3339_seconds(now).to_string();
    // 2026-12-02T05:15:00Z -> 20261202T051500Z
    let compact: String = stamp.chars().filter(|c| *c != '-' && *c != ':').collect();
    format!("{compact}-{:08x}", rand::random::<u32>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_188_500);
        let id = new_id(t);
        assert!(id.starts_with("20261202T"), "{id}");
        assert_eq!(id.len(), "20261202T051500Z-1a2b3c4d".len(), "{id}");
        assert!(new_id(t + std::time::Duration::from_secs(1)) > id);
    }
}
