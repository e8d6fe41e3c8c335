//! Test harness: the real `shadowcat` binary on ephemeral loopback ports, a small
//! HTTP/SSE client, and the paths of the installed test dependencies.
#![allow(dead_code, unused_imports, missing_docs, clippy::unwrap_used)]

pub mod client;
pub mod conformance;
pub mod jwt;
pub mod modern;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

pub use client::{Http, McpClient, Reply, SseEvent};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_shadowcat")
}

/// Paths of what `scripts/install-test-deps.sh` installed.
pub struct Deps {
    pub node: String,
    pub conformance_js: String,
    pub everything_js: String,
    pub python: String,
    /// The conformance suite 0.2 (2026-07-28 scenarios).
    pub conformance_next_js: String,
    /// The npm packages (TypeScript SDK v2) for the JS fixtures.
    pub node_modules: String,
}

/// The installed test dependencies; fails with a clear message when they are missing.
pub fn deps() -> Deps {
    let dir = std::env::var("SHADOWCAT_TEST_DEPS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join(".test-deps"));
    let text = std::fs::read_to_string(dir.join("env")).unwrap_or_else(|e| {
        panic!(
            "test dependencies not installed in {} ({e}): run scripts/test.sh (or scripts/install-test-deps.sh)",
            dir.display()
        )
    });
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("{key} missing from {}/env", dir.display()))
    };
    Deps {
        node: get("SHADOWCAT_NODE"),
        conformance_js: get("SHADOWCAT_CONFORMANCE_JS"),
        everything_js: get("SHADOWCAT_EVERYTHING_JS"),
        python: get("SHADOWCAT_PYTHON"),
        conformance_next_js: get("SHADOWCAT_CONFORMANCE_NEXT_JS"),
        node_modules: get("SHADOWCAT_NODE_MODULES"),
    }
}

/// A unique scratch directory under the system temp dir.
pub fn scratch_dir(tag: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("shadowcat-test-{}-{tag}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A path inside `tests/fixtures`.
pub fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name).display().to_string()
}

/// A running gateway.
pub struct Gateway {
    child: Option<Child>,
    pub mcp_url: String,
    pub admin_url: Option<String>,
    pub base: String,
    log: Arc<Mutex<String>>,
}

/// `server:` keys for a gateway whose clients open many sessions from one address
/// and never end them (the conformance suites: a session per scenario, no DELETE; a
/// gateway in front of another is the inner one's only client): no per-client bound.
pub const MANY_SESSIONS: &str = "  max_sessions_per_client: 0\n";

/// YAML for a stdio upstream named `up` running the demo server, with extra keys.
pub fn demo_config(server_extra: &str, upstream_extra: &str) -> String {
    format!(
        "server:\n  listen: 127.0.0.1:0\n{server_extra}admin:\n  listen: 127.0.0.1:0\nupstreams:\n  up:\n    stdio:\n      command: {}\n      args: [demo-server]\n{upstream_extra}",
        bin()
    )
}

impl Gateway {
    /// Starts `shadowcat gateway --config <yaml>` and waits for its listening line.
    pub fn start(yaml: &str) -> Gateway {
        let dir = scratch_dir("gw");
        let path = dir.join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        Gateway::start_args(&["gateway", "--config", path.to_str().unwrap()])
    }

    /// Like [`Gateway::start`], logging with the `RUST_LOG` filter `filter`.
    pub fn start_logged(yaml: &str, filter: &str) -> Gateway {
        let dir = scratch_dir("gw");
        let path = dir.join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        Gateway::start_args_logged(&["gateway", "--config", path.to_str().unwrap()], filter)
    }

    /// Starts the binary with `args` and waits for its listening line.
    pub fn start_args(args: &[&str]) -> Gateway {
        let filter = std::env::var("SHADOWCAT_TEST_LOG").unwrap_or_else(|_| "info".into());
        Gateway::start_args_logged(args, &filter)
    }

    /// Starts the binary with `args`, logging with the `RUST_LOG` filter `filter`.
    pub fn start_args_logged(args: &[&str], filter: &str) -> Gateway {
        let mut child = Command::new(bin())
            .args(args)
            .env("RUST_LOG", filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn shadowcat");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.starts_with("shadowcat listening:") {
                    let _ = tx.send(line.clone());
                }
                if std::env::var("SHADOWCAT_TEST_ECHO").is_ok() {
                    eprintln!("[gateway] {line}");
                }
                let mut l = log2.lock();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("gateway did not start; log:\n{}", log.lock());
            }
        };
        let mut mcp_url = String::new();
        let mut admin_url = None;
        for part in line.split_whitespace() {
            if let Some(u) = part.strip_prefix("mcp=") {
                mcp_url = u.replace("127.0.0.1", "localhost");
            }
            if let Some(u) = part.strip_prefix("admin=") {
                admin_url = Some(u.to_owned());
            }
        }
        let after_scheme = mcp_url.find("://").map_or(0, |i| i + 3);
        let base = mcp_url[..mcp_url[after_scheme..].find('/').map_or(mcp_url.len(), |i| after_scheme + i)].to_owned();
        Gateway { child: Some(child), mcp_url, admin_url, base, log }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// Everything the gateway has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().clone()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log().contains(needle))
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        signal(child.id() as i32, "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("gateway did not exit within 30 s of SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id() as i32, "TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends a signal by name to a pid.
pub fn signal(pid: i32, name: &str) {
    let _ = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status();
}

/// Polls `cond` every 25 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// (pid, ppid, pgid) of every process.
pub fn processes() -> Vec<(i32, i32, i32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // The command name is in parentheses and may contain spaces.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 3 && fields[0] != "Z" {
            out.push((pid, fields[1].parse().unwrap_or(0), fields[2].parse().unwrap_or(0)));
        }
    }
    out
}

/// Live (non-zombie) children of `parent`.
pub fn children_of(parent: i32) -> Vec<i32> {
    processes().into_iter().filter(|(_, ppid, _)| *ppid == parent).map(|(pid, _, _)| pid).collect()
}

/// Live members of process group `pgid`.
pub fn group_members(pgid: i32) -> Vec<i32> {
    processes().into_iter().filter(|(_, _, g)| *g == pgid).map(|(pid, _, _)| pid).collect()
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `tests/fixtures/modern-server.mjs` (TypeScript SDK v2, dual-era).
pub struct ModernServer {
    child: Child,
    /// Its MCP endpoint.
    pub url: String,
}

impl ModernServer {
    /// The dual-era server (2026-07-28 and the 2025 revisions).
    pub fn start() -> ModernServer {
        Self::start_args(&[])
    }

    /// The server with extra arguments (`--modern-only`: 2026-07-28 only).
    pub fn start_args(args: &[&str]) -> ModernServer {
        Self::start_on(0, args)
    }

    /// The server on `port` (0: any free one) with extra arguments.
    pub fn start_on(port: u16, args: &[&str]) -> ModernServer {
        let d = deps();
        let mut child = Command::new(&d.node)
            .arg(fixture("modern-server.mjs"))
            .args(["--port", &port.to_string()])
            .args(args)
            .env("SHADOWCAT_NODE_MODULES", &d.node_modules)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start modern-server.mjs");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the ready line");
        let url = line
            .trim()
            .strip_prefix("modern-server listening: ")
            .unwrap_or_else(|| panic!("modern-server did not start: {line:?}"))
            .to_owned();
        ModernServer { child, url }
    }
}

impl Drop for ModernServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The rows of a table of checks in the README, under the heading `heading`: each
/// row's label (its first and third cells), HTTP status and JSON-RPC code.
pub fn readme_checks(heading: &str) -> Vec<(String, u16, i64)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let section = readme.split(heading).nth(1).unwrap_or_else(|| panic!("README has no {heading:?}"));
    let mut rows = Vec::new();
    for line in section.lines().skip_while(|l| !l.starts_with("| #")).skip(2) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let code: String = cells[5].chars().take_while(|c| *c == '-' || c.is_ascii_digit()).collect();
        rows.push((
            format!("{} {}", cells[1], cells[3]),
            cells[4].parse().expect("status"),
            code.parse().expect("code"),
        ));
    }
    rows
}

/// server-everything over Streamable HTTP, bound to loopback.
pub struct Everything(Child);

impl Drop for Everything {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn everything_http(port: u16) -> Everything {
    let d = deps();
    let child = Command::new(&d.node)
        .args(["-r", &fixture("bind-loopback.cjs"), &d.everything_js, "streamableHttp"])
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start server-everything");
    let up = wait_until(Duration::from_secs(30), || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    assert!(up, "server-everything did not start on port {port}");
    Everything(child)
}

/// Starts the binary with `args`, stdin and stdout piped (stderr dropped): a
/// `forward stdio` between the test, as the client, and a server.
pub fn spawn_piped<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
) -> (Child, std::process::ChildStdin, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn shadowcat");
    let stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (child, stdin, stdout)
}
