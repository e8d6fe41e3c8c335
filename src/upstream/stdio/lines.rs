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

    #[test]
    fn finds_ids_in_fragments() {
        assert_eq!(find_id(br#"{"jsonrpc":"2.0","id":42,"result":{"#).as_deref(), Some("42"));
        assert_eq!(find_id(br#"aaaa"},"jsonrpc":"2.0","id":"req-1"}"#).as_deref(), Some("\"req-1\""));
        assert_eq!(find_id(b"no id here"), None);
    }
}
