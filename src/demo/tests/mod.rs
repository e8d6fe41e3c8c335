//! Tests that drive [`super::serve`] over in-memory pipes the way a real client would.

mod catalog;
mod diagnostics;
mod input_required;
mod protocol;
mod server_requests;
mod tools;

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, Lines};
use tokio::task::JoinHandle;

/// Longest wait for one expected message.
const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// A scripted MCP client connected to a fresh server.
struct Client {
    input: DuplexStream,
    output: Lines<BufReader<DuplexStream>>,
    server: JoinHandle<std::io::Result<()>>,
    next_id: i64,
}

impl Client {
    fn start() -> Self {
        let (input, server_input) = tokio::io::duplex(1 << 16);
        let (server_output, output) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(super::serve(server_input, server_output));
        Self { input, output: BufReader::new(output).lines(), server, next_id: 1 }
    }

    /// A client that has completed the handshake, declaring `capabilities`.
    async fn connected(capabilities: Value) -> Self {
        let mut client = Self::start();
        let result = client.initialize("2025-11-25", capabilities).await;
        assert_eq!(result["protocolVersion"], "2025-11-25");
        client.notify("notifications/initialized", json!({})).await;
        client
    }

    async fn initialize(&mut self, version: &str, capabilities: Value) -> Value {
        let params = json!({
            "protocolVersion": version,
            "capabilities": capabilities,
            "clientInfo": { "name": "demo-tests", "version": "0.0.0" },
        });
        self.request_ok("initialize", params).await
    }

    async fn send_raw(&mut self, line: &str) {
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        self.input.write_all(&bytes).await.expect("write to the server");
    }

    async fn send(&mut self, message: Value) {
        self.send_raw(&message.to_string()).await;
    }

    async fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({ "jsonrpc": "2.0", "method": method, "params": params })).await;
    }

    /// Sends a request with a fresh numeric id and returns that id.
    async fn send_request(&mut self, method: &str, params: Value) -> Value {
        let id = json!(self.next_id);
        self.next_id += 1;
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })).await;
        id
    }

    async fn recv(&mut self) -> Value {
        let line = tokio::time::timeout(RECV_TIMEOUT, self.output.next_line())
            .await
            .expect("timed out waiting for a message")
            .expect("read from the server")
            .expect("the server closed its output");
        serde_json::from_str(&line).expect("the server wrote a line that is not JSON")
    }

    /// Reads until the response to `id`; returns it and everything received before it.
    async fn recv_response(&mut self, id: &Value) -> (Value, Vec<Value>) {
        let mut before = Vec::new();
        loop {
            let message = self.recv().await;
            if message.get("method").is_none() && message.get("id") == Some(id) {
                return (message, before);
            }
            before.push(message);
        }
    }

    /// Sends a request and returns its whole response (skipping other messages).
    async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.send_request(method, params).await;
        self.recv_response(&id).await.0
    }

    /// Sends a request and returns its `result`, failing on an error response.
    async fn request_ok(&mut self, method: &str, params: Value) -> Value {
        let response = self.request(method, params).await;
        assert_eq!(response["jsonrpc"], "2.0");
        assert!(response.get("error").is_none(), "unexpected error: {response}");
        response["result"].clone()
    }

    /// Sends a request and returns its `error` object, failing on a result.
    async fn request_err(&mut self, method: &str, params: Value) -> Value {
        let response = self.request(method, params).await;
        assert!(response.get("result").is_none(), "expected an error: {response}");
        response["error"].clone()
    }

    async fn call_tool(&mut self, name: &str, arguments: Value) -> Value {
        self.request_ok("tools/call", json!({ "name": name, "arguments": arguments })).await
    }

    /// Answers server-to-client `request` with `result`.
    async fn reply(&mut self, request: &Value, result: Value) {
        self.send(json!({ "jsonrpc": "2.0", "id": request["id"], "result": result })).await;
    }

    /// Receives the next message, which must be a server-to-client request for `method`
    /// hinting `input_key` as its `inputRequests` key.
    async fn recv_server_request(&mut self, method: &str, input_key: &str) -> Value {
        let request = self.recv().await;
        assert_eq!(request["method"], method, "{request}");
        assert!(request["id"].as_str().is_some_and(|id| id.starts_with("demo-")), "{request}");
        assert_eq!(request["params"]["_meta"]["dev.shadowcat/inputKey"], input_key, "{request}");
        request
    }

    /// Asserts that nothing arrives for `ms` milliseconds.
    async fn expect_silence(&mut self, ms: u64) {
        let wait = tokio::time::timeout(Duration::from_millis(ms), self.output.next_line()).await;
        if let Ok(Ok(Some(line))) = wait {
            panic!("expected silence, got {line}");
        }
    }

    /// Closes the server's input and checks that `serve` returns cleanly.
    async fn finish(self) {
        drop(self.input);
        let served = tokio::time::timeout(RECV_TIMEOUT, self.server)
            .await
            .expect("serve did not return after EOF")
            .expect("serve panicked");
        assert!(served.is_ok(), "serve failed: {served:?}");
    }
}

/// The text of the first content block of a tool result.
fn first_text(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_default()
}

/// Capabilities of a client that supports every server-to-client request.
fn full_capabilities() -> Value {
    json!({ "sampling": {}, "elicitation": {}, "roots": { "listChanged": true } })
}
