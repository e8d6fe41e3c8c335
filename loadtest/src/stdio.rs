//! The bench upstream over stdio: one JSON-RPC message per line on stdin, answers one
//! per line on stdout, until stdin closes. Plain blocking I/O on one thread: that is
//! the cheapest way to serve one session, and a stdio upstream has one per process.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};

use crate::mcp::{answer, Answer};

/// Longest accepted line; a longer one is answered with a parse error and skipped.
const MAX_LINE_BYTES: u64 = 16 * 1024 * 1024;

/// Serves stdin/stdout until stdin is closed.
pub fn serve() -> io::Result<()> {
    serve_on(io::stdin().lock(), io::stdout().lock())
}

/// Serves `input` to `output` until `input` ends.
pub fn serve_on(input: impl Read, output: impl Write) -> io::Result<()> {
    let mut input = BufReader::with_capacity(64 * 1024, input);
    let mut output = BufWriter::with_capacity(64 * 1024, output);
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        let read = (&mut input).take(MAX_LINE_BYTES + 1).read_until(b'\n', &mut line)?;
        if read == 0 {
            return output.flush();
        }
        let complete = line.last() == Some(&b'\n');
        if !complete && read as u64 > MAX_LINE_BYTES {
            skip_rest_of_line(&mut input)?;
            line.clear(); // answered below as a parse error
        }
        let message = line.trim_ascii();
        if message.is_empty() && complete {
            continue;
        }
        match answer(message) {
            Answer::Reply(b) | Answer::Initialized(b) | Answer::Invalid(b) => {
                output.write_all(&b)?;
                output.write_all(b"\n")?;
            }
            Answer::Accepted => {}
        }
        // Flush only when no more input is waiting: a burst is answered in one write.
        if input.buffer().is_empty() {
            output.flush()?;
        }
    }
}

fn skip_rest_of_line(input: &mut impl BufRead) -> io::Result<()> {
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(at) => {
                input.consume(at + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                input.consume(n);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn answers_requests_one_per_line_and_skips_notifications() {
        let input = concat!(
            r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#,
            "\n",
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            "\n\n",
            r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}"#,
            "\n",
            "garbage",
        );
        let mut out = Vec::new();
        serve_on(input.as_bytes(), &mut out).unwrap();
        let lines: Vec<serde_json::Value> =
            String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["result"]["protocolVersion"], "2025-11-25");
        assert_eq!(lines[1]["result"]["content"][0]["text"], "x");
        assert_eq!(lines[2]["error"]["code"], -32600);
    }
}
