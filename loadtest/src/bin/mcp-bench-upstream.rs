//! `mcp-bench-upstream`: a minimal, fast MCP server for the benchmark, over Streamable
//! HTTP (default) or stdio (`--stdio`). See the crate docs and `loadtest/README.md`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// A minimal, fast MCP server (initialize, ping, tools/list, tools/call echo).
#[derive(Debug, Parser)]
#[command(name = "mcp-bench-upstream", version, about)]
struct Args {
    /// Speak MCP over stdin/stdout (one message per line) instead of HTTP.
    #[arg(long)]
    stdio: bool,
    /// HTTP listen address; port 0 picks a free port (printed on stderr).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// The MCP endpoint path.
    #[arg(long, default_value = "/mcp")]
    path: String,
    /// Runtime threads; 1 runs everything on one thread (the cheapest per request).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Exit after this many seconds even if nobody stops the server (a safety net
    /// for scripts); 0 means never.
    #[arg(long, default_value_t = 0)]
    exit_after: u64,
    /// Microseconds of CPU each `tools/call` spends in a busy loop before answering,
    /// to stand in for an upstream that does real work (0: none, the minimal upstream).
    #[arg(long, default_value_t = 0)]
    work_us: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    shadowcat_loadtest::mcp::set_call_work(Duration::from_micros(args.work_us));
    if args.stdio {
        return match shadowcat_loadtest::stdio::serve() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mcp-bench-upstream: stdio: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match shadowcat_loadtest::runtime(args.threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mcp-bench-upstream: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(&args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("mcp-bench-upstream: cannot listen on {}: {e}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        match listener.local_addr() {
            Ok(addr) => eprintln!("mcp-bench-upstream listening: http://{addr}{}", args.path),
            Err(e) => eprintln!("mcp-bench-upstream: listening (address unknown: {e})"),
        }
        let server = shadowcat_loadtest::server::serve(listener, args.path.clone());
        if args.exit_after == 0 {
            server.await;
        } else if tokio::time::timeout(Duration::from_secs(args.exit_after), server).await.is_err() {
            eprintln!("mcp-bench-upstream: --exit-after {} s reached; exiting", args.exit_after);
        }
        ExitCode::SUCCESS
    })
}
