//! `shadowcat demo-server`: a small but complete MCP server over the stdio transport
//! (newline-delimited JSON-RPC 2.0), used as the upstream in Shadowcat's own tests and in
//! runs of the MCP server conformance suite through the gateway.
//!
//! It offers its own tools (`echo`, `add`, `slow`, `sample`, `elicit`, `roots`, `log`,
//! `touch_resource`), resources (`demo://readme`, `demo://logo`, `demo://items/{id}`) and
//! prompts (`greeting`, `code_review`), plus every fixture that
//! `@modelcontextprotocol/conformance` 0.1.16 calls (`test_*` tools, `test://` resources,
//! `test_*` prompts) and those its 2026-07-28 scenarios call (`test_input_required_result_*`,
//! `test_missing_capability`, `test_streaming_elicitation`, `test_logging_tool`, the list-change
//! triggers). It stays a legacy server: where a 2026 server would answer `input_required`, it
//! makes real server-to-client requests, hinting in `params._meta["dev.shadowcat/inputKey"]`
//! the `inputRequests` key a bridging gateway should use. Requests run concurrently, each in
//! its own task, and can be cancelled with `notifications/cancelled`. Server-to-client
//! requests (sampling, elicitation, roots) use string ids `demo-N`. Diagnostics go to stderr
//! only.
//!
//! A session, one JSON message per line (`>` from the client, `<` from the server):
//!
//! ```text
//! > {"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{"sampling":{}},"clientInfo":{"name":"c","version":"1"}}}
//! < {"id":1,"jsonrpc":"2.0","result":{"protocolVersion":"2025-11-25","serverInfo":{"name":"shadowcat-demo",...},...}}
//! > {"jsonrpc":"2.0","method":"notifications/initialized"}
//! > {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"sample","arguments":{"prompt":"hi"}}}
//! < {"id":"demo-1","jsonrpc":"2.0","method":"sampling/createMessage","params":{...}}
//! > {"jsonrpc":"2.0","id":"demo-1","result":{"role":"assistant","content":{"type":"text","text":"hello"},"model":"m"}}
//! < {"id":2,"jsonrpc":"2.0","result":{"content":[{"type":"text","text":"hello"}]}}
//! ```

mod client_requests;
mod completion;
mod conformance;
mod diagnostics;
mod framing;
mod input_required;
mod media;
mod message;
mod prompts;
mod resources;
mod rpc;
mod server;
mod session;
mod tools;

#[cfg(test)]
mod tests;

use tokio::io::{AsyncRead, AsyncWrite};

/// Serves MCP over the given byte streams until `input` reaches EOF.
///
/// Each line of `input` is one JSON-RPC message; each message written to `output` is one
/// line. After EOF, requests still running get a few seconds to finish (server-to-client
/// requests fail at once), then the output is flushed and shut down.
///
/// # Errors
/// Reading `input` or writing `output` failed.
pub async fn serve<R, W>(input: R, output: W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    rpc::run(input, output).await
}

/// Serves MCP on this process's stdin/stdout.
///
/// # Errors
/// Reading stdin or writing stdout failed.
pub async fn serve_stdio() -> std::io::Result<()> {
    serve(tokio::io::stdin(), tokio::io::stdout()).await
}
