//! Reading newline-delimited messages with a size bound.
//!
//! A line over the bound is not kept: only its first and last few KiB are, so that the
//! JSON-RPC id of an oversized response (which SDKs write near the start or the end)
//! can still be found and its request failed with a clear error.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Bytes kept from each end of an oversized line.
const KEEP: usize = 4096;

/// One read.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, without its newline.
    Data(Bytes),
    /// A line longer than the limit.
    TooLong {
        /// Its length.
        len: usize,
        /// Its first bytes.
        head: Bytes,
        /// Its last bytes.
        tail: Bytes,
    },
    /// End of input.
    Eof,
}

/// Reads the next line of at most `max` bytes.
pub async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R, max: usize) -> std::io::Result<Line> {
    let mut line = BytesMut::new();
    let mut len = 0usize;
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            if len == 0 {
                return Ok(Line::Eof);
            }
            return Ok(finish(line, len, tail, max));
        }
        let (chunk, found) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        len += chunk.len();
        if len <= max {
            line.extend_from_slice(chunk);
        } else {
            if line.len() > KEEP {
                line.truncate(KEEP);
            } else if line.len() < KEEP {
                let room = KEEP - line.len();
                line.extend_from_slice(&chunk[..room.min(chunk.len())]);
            }
            tail.extend_from_slice(chunk);
            if tail.len() > KEEP {
                tail.drain(..tail.len() - KEEP);
            }
        }
        let used = chunk.len() + usize::from(found);
        reader.consume(used);
        if found {
            return Ok(finish(line, len, tail, max));
        }
    }
}

fn finish(mut line: BytesMut, len: usize, tail: Vec<u8>, max: usize) -> Line {
    if len > max {
        return Line::TooLong { len, head: line.freeze(), tail: Bytes::from(tail) };
    }
    if line.last() == Some(&b'\r') {
        line.truncate(line.len() - 1);
    }
    Line::Data(line.freeze())
}

/// A line read with [`read_prefix`].
#[derive(Debug, PartialEq, Eq)]
pub struct Prefix {
    /// Its first bytes (at most the bound), without the newline.
    pub kept: Bytes,
    /// Its whole length; more than `kept.len()` when it was cut.
    pub len: usize,
}

impl Prefix {
    /// Whether the line was longer than the bound.
    pub fn is_cut(&self) -> bool {
        self.len > self.kept.len()
    }
}

/// Reads the next line keeping at most its first `max` bytes: the rest, up to the
/// newline, is read past and not kept (for text that is only logged, such as stderr).
/// `None` at end of input. The bytes need not be UTF-8.
pub async fn read_prefix<R: AsyncBufRead + Unpin>(reader: &mut R, max: usize) -> std::io::Result<Option<Prefix>> {
    let mut kept = BytesMut::new();
    let mut len = 0usize;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            if len == 0 {
                return Ok(None);
            }
            break;
        }
        let (chunk, found) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        let room = max.saturating_sub(kept.len());
        kept.extend_from_slice(&chunk[..room.min(chunk.len())]);
        len += chunk.len();
        let used = chunk.len() + usize::from(found);
        reader.consume(used);
        if found {
            break;
        }
    }
    if len == kept.len() && kept.last() == Some(&b'\r') {
        kept.truncate(kept.len() - 1);
        len -= 1;
    }
    Ok(Some(Prefix { kept: kept.freeze(), len }))
}

/// Finds the JSON-RPC `"id"` of a message from a fragment of it (the head or tail of
/// an oversized line). Returns the id's JSON text.
pub fn find_id(fragment: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(fragment);
    let mut search = text.as_ref();
    while let Some(pos) = search.find("\"id\"") {
        let rest = search[pos + 4..].trim_start();
        if let Some(value) = rest.strip_prefix(':') {
            let value = value.trim_start();
            let end = if let Some(stripped) = value.strip_prefix('"') {
                stripped.find('"').map(|i| i + 2)
            } else {
                value.find(|c: char| !(c.is_ascii_digit() || c == '-')).or(Some(value.len()))
            };
            if let Some(end) = end.filter(|e| *e > 0) {
                return Some(value[..end].to_owned());
            }
        }
        search = &search[pos + 4..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_lines_and_bounds_them() {
        let long = "x".repeat(100);
        let input = format!("{{\"a\":1}}\r\n{long}\nlast");
        let mut reader = tokio::io::BufReader::with_capacity(8, input.as_bytes());
        assert_eq!(read_line(&mut reader, 50).await.expect("io"), Line::Data(Bytes::from_static(b"{\"a\":1}")));
        match read_line(&mut reader, 50).await.expect("io") {
            Line::TooLong { len, .. } => assert_eq!(len, 100),
            other => panic!("{other:?}"),
        }
        assert_eq!(read_line(&mut reader, 50).await.expect("io"), Line::Data(Bytes::from_static(b"last")));
        assert_eq!(read_line(&mut reader, 50).await.expect("io"), Line::Eof);
    }

    #[tokio::test]
    async fn keeps_a_bounded_prefix_of_each_line() {
        let mut input = vec![b'y'; 100];
        input.extend_from_slice(b"\n\xff\xfe not utf-8\r\nend");
        let mut reader = tokio::io::BufReader::with_capacity(8, input.as_slice());
        let first = read_prefix(&mut reader, 10).await.expect("io").expect("a line");
        assert_eq!((first.kept.as_ref(), first.len, first.is_cut()), (&b"yyyyyyyyyy"[..], 100, true));
        let second = read_prefix(&mut reader, 64).await.expect("io").expect("a line");
        assert_eq!((second.kept.as_ref(), second.is_cut()), (&b"\xff\xfe not utf-8"[..], false));
        let last = read_prefix(&mut reader, 64).await.expect("io").expect("a line");
        assert_eq!(last, Prefix { kept: Bytes::from_static(b"end"), len: 3 });
        assert_eq!(read_prefix(&mut reader, 64).await.expect("io"), None);
    }

    #[test]
    fn finds_ids_in_fragments() {
        assert_eq!(find_id(br#"{"jsonrpc":"2.0","id":42,"result":{"#).as_deref(), Some("42"));
        assert_eq!(find_id(br#"aaaa"},"jsonrpc":"2.0","id":"req-1"}"#).as_deref(), Some("\"req-1\""));
        assert_eq!(find_id(b"no id here"), None);
    }
}
