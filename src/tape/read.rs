//! Reading and checking a tape: whole, cut short (readable up to its last whole
//! line), or not readable (with the file and line that says why).

use std::path::Path;

use super::format::{Change, Frame, Header, Line, Trailer, FORMAT, VERSION};

/// A tape that could not be read, with where.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {what}")]
pub struct TapeError {
    /// The file.
    pub file: String,
    /// The line (1-based; 0: the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub what: String,
}

/// Where a tape that was not closed in order stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutShort {
    /// The last whole line (the header is line 1).
    pub last_whole_line: usize,
    /// Why it is short: no trailer, or a last line without its end.
    pub why: String,
}

/// A tape read through.
#[derive(Debug)]
pub struct Tape {
    /// Its header.
    pub header: Header,
    /// Its frames, in order.
    pub frames: Vec<Frame>,
    /// What rules changed, in order (version 2).
    pub changes: Vec<Change>,
    /// Its trailer, when it was closed in order.
    pub trailer: Option<Trailer>,
    /// Set when it was not closed in order (a crash, a full disk).
    pub cut_short: Option<CutShort>,
}

/// Reads the tape in `path`.
pub fn read(path: &Path) -> Result<Tape, TapeError> {
    let file = path.display().to_string();
    let err = |line: usize, what: String| TapeError { file: file.clone(), line, what };
    let bytes = std::fs::read(path).map_err(|e| err(0, format!("cannot read: {e}")))?;
    parse(&bytes).map_err(|(line, what)| err(line, what))
}

/// Reads a tape from its bytes; an error is (line, what).
pub fn parse(bytes: &[u8]) -> Result<Tape, (usize, String)> {
    if bytes.is_empty() {
        return Err((1, "empty file: not a tape".into()));
    }
    let mut lines: Vec<&[u8]> = bytes.split_inclusive(|b| *b == b'\n').collect();
    // A last line without its newline was being written when the tape stopped.
    let torn = lines.last().filter(|l| !l.ends_with(b"\n")).map(|l| l.len());
    if torn.is_some() {
        lines.pop();
    }
    let Some(first) = lines.first() else {
        return Err((1, "the header line is incomplete: not a readable tape".into()));
    };
    let header = parse_header(first)?;
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    digest.update(first);
    let mut frames: Vec<Frame> = Vec::new();
    let mut changes: Vec<Change> = Vec::new();
    let mut trailer = None;
    for (i, raw) in lines.iter().enumerate().skip(1) {
        let n = i + 1;
        if trailer.is_some() {
            return Err((n, "a line after the trailer".into()));
        }
        let kind: LineKind = serde_json::from_slice(raw).map_err(|e| (n, format!("not a tape line: {e}")))?;
        match kind.kind.as_str() {
            "header" => return Err((n, "a second header".into())),
            "frame" => {
                let f: Frame = serde_json::from_slice(raw).map_err(|e| (n, format!("a bad frame: {e}")))?;
                let want = frames.len() as u64 + 1;
                if f.seq != want {
                    return Err((n, format!("frame seq {} where {want} was expected", f.seq)));
                }
                check_message(&f).map_err(|what| (n, what))?;
                digest.update(raw);
                frames.push(f);
            }
            "change" if header.version >= 2 => {
                let c: Change = serde_json::from_slice(raw).map_err(|e| (n, format!("a bad change line: {e}")))?;
                for (what, m) in
                    [("before", Some(&c.before)), ("after", c.after.as_ref()), ("answer", c.answer.as_ref())]
                {
                    if let Some(m) = m {
                        crate::protocol::Message::parse(m.get().as_bytes().to_vec())
                            .map_err(|e| (n, format!("a change's {what} is not a JSON-RPC message: {e}")))?;
                    }
                }
                digest.update(raw);
                changes.push(c);
            }
            "trailer" => {
                let t: Trailer = serde_json::from_slice(raw).map_err(|e| (n, format!("a bad trailer: {e}")))?;
                let sum = hex(digest.clone().finish().as_ref());
                let want = t.checksum.strip_prefix("sha256:").unwrap_or(&t.checksum);
                if want != sum {
                    return Err((
                        n,
                        format!("checksum mismatch: the trailer says {}, the lines make sha256:{sum}", t.checksum),
                    ));
                }
                if t.frames != frames.len() as u64 {
                    return Err((n, format!("the trailer counts {} frames, the tape has {}", t.frames, frames.len())));
                }
                if t.changes != changes.len() as u64 {
                    return Err((
                        n,
                        format!("the trailer counts {} changes, the tape has {}", t.changes, changes.len()),
                    ));
                }
                trailer = Some(t);
            }
            other => return Err((n, format!("not a tape line: unknown line type {other:?}"))),
        }
    }
    let cut_short = match (torn, &trailer) {
        (Some(len), _) => Some(CutShort {
            last_whole_line: lines.len(),
            why: format!("line {} is incomplete ({len} bytes without an end of line)", lines.len() + 1),
        }),
        (None, None) => Some(CutShort { last_whole_line: lines.len(), why: "no trailer".into() }),
        (None, Some(_)) => None,
    };
    Ok(Tape { header, frames, changes, trailer, cut_short })
}

/// What a line is, read before the line itself (the frame's message is kept as
/// raw JSON, which an internally tagged enum cannot hold).
#[derive(serde::Deserialize)]
struct LineKind {
    #[serde(rename = "type")]
    kind: String,
}

fn parse_header(raw: &[u8]) -> Result<Header, (usize, String)> {
    let value: serde_json::Value =
        serde_json::from_slice(raw).map_err(|e| (1, format!("not a tape: the first line is not JSON ({e})")))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT)
        || value.get("type").and_then(|t| t.as_str()) != Some("header")
    {
        return Err((1, format!("not a tape: the first line is not a {FORMAT} header")));
    }
    let version =
        value.get("version").and_then(|v| v.as_u64()).ok_or((1, "the header has no format version".to_owned()))?;
    if version > u64::from(VERSION) {
        return Err((
            1,
            format!("format version {version} is newer than this Shadowcat reads ({VERSION}): upgrade Shadowcat"),
        ));
    }
    match serde_json::from_value::<Line>(value) {
        Ok(Line::Header(h)) => Ok(*h),
        Ok(_) => Err((1, "not a tape: the first line is not a header".into())),
        Err(e) => Err((1, format!("a bad header: {e}"))),
    }
}

/// A frame's message must be a JSON-RPC 2.0 message.
fn check_message(f: &Frame) -> Result<(), String> {
    crate::protocol::Message::parse(f.msg.get().as_bytes().to_vec())
        .map(|_| ())
        .map_err(|e| format!("frame {}: not a JSON-RPC message: {e}", f.seq))
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = r#"{"type":"header","format":"shadowcat-tape","version":1,"tape":"t","started_at":"2026-12-02T00:00:00Z","shadowcat":"0.1.0","mode":"gateway","side":"client","revisions":["2025-11-25"]}"#;

    fn frame(seq: u64) -> String {
        format!(
            r#"{{"type":"frame","seq":{seq},"t_us":{seq},"at":"2026-12-02T00:00:00Z","dir":"c2s","side":"client","call":1,"carrier":"request","msg":{{"jsonrpc":"2.0","id":{seq},"method":"ping"}}}}"#
        )
    }

    fn closed(frames: &[String]) -> String {
        closed_as(HEADER, frames, &format!(r#""frames":{}"#, frames.len()))
    }

    /// `header`, `lines`, and a trailer with `counts` and the right checksum.
    fn closed_as(header: &str, lines: &[String], counts: &str) -> String {
        let mut text = format!("{header}\n");
        for f in lines {
            text.push_str(f);
            text.push('\n');
        }
        let sum = hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes()).as_ref());
        text.push_str(&format!(
            r#"{{"type":"trailer","ended_at":"2026-12-02T00:00:01Z","reason":"shutdown",{counts},"dropped":0,"redacted":0,"checksum":"sha256:{sum}"}}"#
        ));
        text.push('\n');
        text
    }

    #[test]
    fn a_whole_tape_reads_back() {
        let tape = parse(closed(&[frame(1), frame(2)]).as_bytes()).expect("valid");
        assert_eq!(tape.frames.len(), 2);
        assert_eq!(tape.frames[1].msg.get(), r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#);
        assert!(tape.cut_short.is_none());
        assert_eq!(tape.trailer.map(|t| t.reason), Some("shutdown".into()));
        assert_eq!(tape.header.revisions, ["2025-11-25"]);
    }

    #[test]
    fn short_tapes_say_where_they_stop() {
        let text = format!("{HEADER}\n{}\n", frame(1));
        let cut = parse(text.as_bytes()).expect("readable").cut_short.expect("short");
        assert_eq!(cut, CutShort { last_whole_line: 2, why: "no trailer".into() });
        let torn = format!("{HEADER}\n{}\n{{\"type\":\"fr", frame(1));
        let tape = parse(torn.as_bytes()).expect("readable");
        assert_eq!(tape.frames.len(), 1);
        assert!(tape.cut_short.expect("short").why.starts_with("line 3 is incomplete"));
    }

    #[test]
    fn a_version_2_tape_keeps_its_changes_and_counts_them() {
        let change = r#"{"type":"change","t_us":3,"at":"2026-12-02T00:00:00Z","dir":"c2s","side":"client","call":1,"rule":"r","action":"mock","before":{"jsonrpc":"2.0","id":1,"method":"ping"},"answer":{"jsonrpc":"2.0","id":1,"result":{}}}"#;
        let v2 = HEADER.replace(r#""version":1"#, r#""version":2"#);
        let lines = [frame(1), change.to_owned()];
        let tape = parse(closed_as(&v2, &lines, r#""frames":1,"changes":1"#).as_bytes()).expect("valid");
        assert_eq!((tape.frames.len(), tape.changes.len()), (1, 1));
        assert_eq!(tape.changes[0].rule, "r");
        assert!(tape.changes[0].after.is_none());
        assert_eq!(tape.changes[0].answer.as_ref().map(|a| a.get()), Some(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#));
        let (line, what) = parse(closed_as(&v2, &lines, r#""frames":1"#).as_bytes()).expect_err("count");
        assert_eq!(line, 4);
        assert!(what.contains("the trailer counts 0 changes, the tape has 1"), "{what}");
    }

    #[test]
    fn tampering_is_found() {
        let text = closed(&[frame(1)]).replace("\"ping\"", "\"pong\"");
        let (line, what) = parse(text.as_bytes()).expect_err("tampered");
        assert_eq!(line, 3);
        assert!(what.contains("checksum mismatch"), "{what}");
        let extra = closed(&[frame(1)]) + &frame(2) + "\n";
        assert_eq!(parse(extra.as_bytes()).expect_err("after trailer").0, 4);
    }
}
