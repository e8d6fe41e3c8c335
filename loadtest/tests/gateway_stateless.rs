//! The stateless mode against the real gateway: `shadowcat gateway` in front of
//! `mcp-bench-upstream --stdio` with a pool of 2 sessions, driven briefly by stateless
//! (2026-07-28) clients and by 2025 sessions, as `run.sh`'s `pool` scenario does; and
//! the pipe driver of the `forward` scenario through `shadowcat forward stdio`.
//!
//! The gateway binary: `SHADOWCAT_BIN` if set, else the workspace's debug build,
//! made up to date with `cargo build -p shadowcat --bin shadowcat` first.

#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use shadowcat_loadtest::load::{self, LoadOptions, Watch};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The gateway binary (see the module docs).
fn gateway_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("SHADOWCAT_BIN") {
        return bin.into();
    }
    let root = workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", "shadowcat", "--bin", "shadowcat"])
        .current_dir(&root)
        .status()
        .expect("cannot run cargo to build the gateway");
    assert!(status.success(), "cargo build -p shadowcat failed (set SHADOWCAT_BIN to use a built gateway)");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    target.join("debug").join("shadowcat")
}

/// A running gateway, stopped (SIGKILL) when dropped.
struct Gateway {
    child: Child,
    url: String,
    _dir: TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start_gateway(pool: usize) -> Gateway {
    let dir = std::env::temp_dir().join(format!("shadowcat-loadtest-{}-pool{pool}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dir = TempDir(dir);
    let config = dir.0.join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  listen: 127.0.0.1:0\n  shutdown_grace: 1s\nadmin:\n  listen: null\npipeline: []\n\
             upstreams:\n  bench:\n    stdio:\n      command: {}\n      args: [--stdio]\n      era: legacy\n      \
             pool: {{min: {pool}, max: {pool}}}\n",
            env!("CARGO_BIN_EXE_mcp-bench-upstream")
        ),
    )
    .unwrap();
    let mut child = Command::new(gateway_binary())
        .arg("gateway")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the gateway");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("shadowcat listening: mcp=") {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
            }
        }
    });
    let url = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(url) => url,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the gateway did not announce its address within 30 s");
        }
    };
    Gateway { child, url, _dir: dir }
}

fn options(gateway: &Gateway, stateless: bool) -> LoadOptions {
    let pid = gateway.child.id();
    LoadOptions {
        url: gateway.url.clone(),
        sessions: 4,
        stateless,
        duration: Duration::from_millis(500),
        warmup: Duration::from_millis(100),
        payload_bytes: 16,
        timeout: Duration::from_secs(10),
        watch: vec![Watch { name: "gateway".into(), pid }],
        watch_children: vec![Watch { name: "upstream".into(), pid }],
        bearer: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_clients_through_the_pool() {
    let gateway = start_gateway(2);
    let out = load::run(&options(&gateway, true)).await.unwrap();
    assert_eq!(out["stateless"], true, "{out}");
    assert_eq!(out["protocol_version"], "2026-07-28", "{out}");
    assert!(out["requests"].as_u64().unwrap() > 10, "{out}");
    assert_eq!(out["errors"], 0, "{out}");
    assert_eq!(out["errors_total"], 0, "{out}");
    assert!(out["p99_us"].as_f64().unwrap() >= out["p50_us"].as_f64().unwrap(), "{out}");
    assert!(out["cpu"]["gateway"]["us_per_req"].is_number(), "{out}");
    // The pool: exactly its two sessions, two upstream processes.
    assert_eq!(out["cpu"]["upstream"]["processes"], 2, "{out}");

    // 2025 sessions through the same gateway: one more process each.
    let out = load::run(&options(&gateway, false)).await.unwrap();
    assert_eq!(out["stateless"], false, "{out}");
    assert!(out["requests"].as_u64().unwrap() > 10, "{out}");
    assert_eq!(out["errors"], 0, "{out}");
    assert!(out["cpu"]["upstream"]["processes"].as_u64().unwrap() >= 6, "{out}");
}

#[test]
fn the_pipe_driver_measures_forward_stdio_and_the_direct_pipe() {
    let upstream = env!("CARGO_BIN_EXE_mcp-bench-upstream").to_owned();
    let gateway = gateway_binary().display().to_string();
    let direct = vec![upstream.clone(), "--stdio".into()];
    let forward = vec![gateway, "forward".into(), "stdio".into(), "--".into(), upstream, "--stdio".into()];
    for command in [direct, forward] {
        let opts = shadowcat_loadtest::pipe::PipeOptions {
            command: command.clone(),
            window: 4,
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(400),
            payload_bytes: 16,
            timeout: Duration::from_secs(10),
        };
        let v = shadowcat_loadtest::pipe::run(&opts).unwrap_or_else(|e| panic!("{command:?}: {e}"));
        assert_eq!(v["errors"], 0, "{v}");
        assert!(v["calls"].as_u64().unwrap() > 10, "{v}");
        assert!(v["p50_us"].as_f64().unwrap() > 0.0, "{v}");
    }
    // A server that is not there: a clear error, no hang.
    let opts = shadowcat_loadtest::pipe::PipeOptions {
        command: vec!["/nonexistent/server".into()],
        window: 1,
        warmup: Duration::ZERO,
        duration: Duration::from_millis(100),
        payload_bytes: 1,
        timeout: Duration::from_secs(1),
    };
    let e = shadowcat_loadtest::pipe::run(&opts).unwrap_err();
    assert!(e.contains("cannot start"), "{e}");
}
