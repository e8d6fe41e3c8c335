//! Spawning a stdio server and stopping its whole process group.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

use crate::config::StdioConfig;

/// Environment variables a child inherits from the gateway; everything else it gets
/// comes from the config.
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG"];

/// How to start one process of an upstream.
#[derive(Debug, Clone)]
pub struct Launch {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<String>,
}

impl Launch {
    /// Resolves the config: `self` becomes this binary, env secrets are read now.
    pub fn from_config(cfg: &StdioConfig) -> Result<Launch, String> {
        let program = if cfg.command == "self" {
            std::env::current_exe().map_err(|e| format!("cannot find this binary for command `self`: {e}"))?
        } else {
            PathBuf::from(&cfg.command)
        };
        let mut env = Vec::new();
        for name in INHERITED_ENV {
            if let Ok(value) = std::env::var(name) {
                env.push(((*name).to_owned(), value));
            }
        }
        for (key, value) in &cfg.env {
            env.push((key.clone(), value.resolve().map_err(|e| format!("env.{key}: {e}"))?));
        }
        Ok(Launch { program, args: cfg.args.clone(), env, cwd: cfg.cwd.clone() })
    }

    /// A short description for logs (no environment: it may hold secrets).
    pub fn describe(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(a);
        }
        s
    }

    /// Starts the process in a process group of its own.
    pub fn spawn(&self) -> std::io::Result<Process> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn()?;
        let pid = child.id().map(|p| p as i32).unwrap_or(0);
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(std::io::Error::other("child has no stdio pipes"));
        };
        Ok(Process { child, pid, stdin, stdout, stderr })
    }
}

/// A running child with its pipes.
pub struct Process {
    /// The child (killed when dropped).
    pub child: Child,
    /// Its pid, which is also its process group id.
    pub pid: i32,
    /// Its stdin.
    pub stdin: ChildStdin,
    /// Its stdout.
    pub stdout: ChildStdout,
    /// Its stderr.
    pub stderr: ChildStderr,
}

impl Process {
    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// Sends `signal` to the process group `pgid` (errors such as "no such process" are
/// expected when the group is already gone, and ignored).
pub fn signal_group(pgid: i32, signal: Signal) {
    if pgid > 0 {
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
}

/// Stops a child: SIGTERM to its group, SIGKILL after `grace`, then SIGKILL to the
/// group again so that no grandchild outlives it. Returns the exit status text.
pub async fn stop(child: &mut Child, pgid: i32, grace: Duration) -> String {
    signal_group(pgid, Signal::SIGTERM);
    let status = match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            signal_group(pgid, Signal::SIGKILL);
            child.wait().await
        }
    };
    signal_group(pgid, Signal::SIGKILL);
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("unknown ({e})"),
    }
}
