//! Line framing: reading one bounded `\n`-terminated line, and the single writer task.

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Longest accepted input line; a longer one is answered with a parse error and skipped.
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

pub(crate) enum LineRead {
    Line,
    TooLong,
    Eof,
}

/// Reads one `\n`-terminated line (without bounding memory by the sender's goodwill).
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R, line: &mut Vec<u8>) -> io::Result<LineRead> {
    line.clear();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match (too_long, line.is_empty()) {
                (true, _) => LineRead::TooLong,
                (false, true) => LineRead::Eof,
                (false, false) => LineRead::Line,
            });
        }
        let newline = available.iter().position(|&b| b == b'\n');
        let taken = newline.map_or(available.len(), |at| at + 1);
        if !too_long {
            if line.len() + taken > MAX_LINE_BYTES {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(&available[..taken]);
            }
        }
        reader.consume(taken);
        if newline.is_some() {
            return Ok(if too_long { LineRead::TooLong } else { LineRead::Line });
        }
    }
}

/// The only code that writes to the output: one line per message, flushed at once.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(mut output: W, mut rx: mpsc::Receiver<String>) -> io::Result<()> {
    let mut failure = None;
    while let Some(mut line) = rx.recv().await {
        if failure.is_some() {
            continue; // keep draining so that senders never block on a dead output
        }
        line.push('\n');
        let written = async {
            output.write_all(line.as_bytes()).await?;
            output.flush().await
        }
        .await;
        if let Err(error) = written {
            eprintln!("shadowcat-demo: cannot write to the output: {error}");
            failure = Some(error);
        }
    }
    match failure {
        Some(error) => Err(error),
        None => output.shutdown().await,
    }
}

#[cfg(test)]
mod unit {
    use super::*;
    use tokio::io::BufReader;

    #[tokio::test]
    async fn reads_lines_with_a_limit() {
        let data = b"first\r\nsecond".to_vec();
        let mut reader = BufReader::new(&data[..]);
        let mut line = Vec::new();
        assert!(matches!(read_line(&mut reader, &mut line).await, Ok(LineRead::Line)));
        assert_eq!(line.trim_ascii(), b"first");
        assert!(matches!(read_line(&mut reader, &mut line).await, Ok(LineRead::Line)));
        assert_eq!(line, b"second");
        assert!(matches!(read_line(&mut reader, &mut line).await, Ok(LineRead::Eof)));
    }
}
