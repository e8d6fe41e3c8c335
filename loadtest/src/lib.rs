//! The Shadowcat benchmark: a load generator (`mcp-bench`) and a minimal, fast MCP
//! upstream (`mcp-bench-upstream`), so that what is measured is the gateway, not the
//! upstream. `loadtest/run.sh` runs both against the upstream directly and through the
//! gateway and prints the comparison; `loadtest/README.md` explains the figures.
//!
//! The upstream answers a message in a few microseconds:
//!
//! ```
//! use shadowcat_loadtest::mcp::{answer, Answer};
//!
//! let call = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;
//! let Answer::Reply(reply) = answer(call) else { panic!("a request gets a reply") };
//! assert_eq!(
//!     std::str::from_utf8(&reply).unwrap(),
//!     r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"hi"}]}}"#
//! );
//! ```

#![forbid(unsafe_code)]

pub mod client;
pub mod idle;
pub mod load;
pub mod mcp;
pub mod pipe;
pub mod procfs;
pub mod report;
pub mod server;
pub mod stats;
pub mod stdio;

/// Builds the tokio runtime the binaries run on: a current-thread runtime for one
/// thread (the cheapest per request), else a multi-thread one.
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()
    }
}
