//! stdio upstreams: one process per client session (a stdio MCP server serves one
//! client), with a warm pool of pre-spawned processes to hide start-up time.

mod lines;
mod process;
mod session;
mod stream;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Semaphore;

pub use session::StdioSession;

use super::era::{self, Era};
use crate::config::{EraSetting, StdioConfig};
use crate::error::GatewayError;
use process::{Launch, Process};
use session::Limits;

/// A stdio upstream: how to launch it, its warm pool and its session bound.
pub struct StdioUpstream {
    name: Arc<str>,
    launch: Launch,
    limits: Limits,
    warm_target: usize,
    warm: Mutex<VecDeque<Process>>,
    sessions: Arc<Semaphore>,
    max_sessions: usize,
    spawned_once: AtomicBool,
    /// The era, once known (pinned by config, or probed).
    era: Mutex<Option<Era>>,
    /// One era probe at a time.
    era_probe: tokio::sync::Mutex<()>,
}

/// Time a stdio upstream gets to answer the era probe before it counts as legacy.
const ERA_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

impl StdioUpstream {
    /// Builds the upstream from its config (nothing is spawned yet).
    pub fn new(name: &str, cfg: &StdioConfig) -> Result<Arc<Self>, String> {
        Ok(Arc::new(StdioUpstream {
            name: name.into(),
            launch: Launch::from_config(cfg)?,
            limits: Limits::from_config(cfg),
            warm_target: cfg.warm,
            warm: Mutex::new(VecDeque::new()),
            sessions: Arc::new(Semaphore::new(cfg.max_sessions)),
            max_sessions: cfg.max_sessions,
            spawned_once: AtomicBool::new(false),
            era: Mutex::new(match cfg.era {
                EraSetting::Auto => None,
                EraSetting::Modern => Some(Era::Modern { versions: vec!["2026-07-28".into()] }),
                EraSetting::Legacy => Some(Era::Legacy),
            }),
            era_probe: tokio::sync::Mutex::new(()),
        }))
    }

    /// The era, when known without starting anything (pinned, or probed before).
    pub fn known_era(&self) -> Option<Era> {
        self.era.lock().clone()
    }

    /// The era: pinned by config, else probed once in a throwaway process (some
    /// legacy servers exit on an unknown first request, so the probe never touches a
    /// process that serves) and cached.
    pub async fn era(self: &Arc<Self>) -> Result<Era, GatewayError> {
        if let Some(era) = self.known_era() {
            return Ok(era);
        }
        let _one = self.era_probe.lock().await;
        if let Some(era) = self.known_era() {
            return Ok(era);
        }
        let session = self.open("era-probe").await?;
        let verdict = tokio::time::timeout(ERA_PROBE_TIMEOUT, async {
            let reply = session.send(era::probe_message()).await.ok()?;
            reply.first_response(era::PROBE_ID).await
        })
        .await;
        session.close().await;
        let era = match verdict {
            Ok(Some(answer)) => match era::classify_message(answer.bytes()) {
                era::Verdict::Known(era) => era,
                era::Verdict::Unknown(_) => Era::Legacy,
            },
            // No answer in time, or the process exited: legacy.
            _ => Era::Legacy,
        };
        tracing::info!(upstream = %self.name, ?era, "upstream era probed (throwaway process)");
        *self.era.lock() = Some(era.clone());
        Ok(era)
    }

    /// Fills the warm pool; with no warm pool, checks once that the command starts.
    pub async fn start(self: &Arc<Self>) {
        if self.warm_target == 0 {
            match self.launch.spawn() {
                Ok(mut p) => {
                    self.spawned_once.store(true, Ordering::SeqCst);
                    process::stop(&mut p.child, p.pid, self.limits.kill_grace).await;
                }
                Err(e) => {
                    tracing::error!(upstream = %self.name, command = %self.launch.describe(), error = %e, "cannot start upstream")
                }
            }
            return;
        }
        self.replenish();
    }

    /// Whether the upstream can serve (its command has started at least once).
    pub fn is_ready(&self) -> bool {
        self.spawned_once.load(Ordering::SeqCst)
    }

    fn replenish(self: &Arc<Self>) {
        let missing = self.warm_target.saturating_sub(self.warm.lock().len());
        for _ in 0..missing {
            let this = self.clone();
            tokio::spawn(async move {
                match this.launch.spawn() {
                    Ok(p) => {
                        this.spawned_once.store(true, Ordering::SeqCst);
                        let mut warm = this.warm.lock();
                        if warm.len() < this.warm_target {
                            warm.push_back(p);
                        }
                    }
                    Err(e) => {
                        tracing::error!(upstream = %this.name, command = %this.launch.describe(), error = %e, "cannot pre-spawn upstream")
                    }
                }
            });
        }
    }

    /// Opens a session on a warm process, or a fresh one.
    pub async fn open(self: &Arc<Self>, session_tag: &str) -> Result<StdioSession, GatewayError> {
        let permit = self.sessions.clone().try_acquire_owned().map_err(|_| {
            GatewayError::Overloaded(format!("upstream {} has reached max_sessions ({})", self.name, self.max_sessions))
        })?;
        let warm = loop {
            let next = self.warm.lock().pop_front();
            match next {
                Some(mut p) => {
                    if p.is_running() {
                        break Some(p);
                    }
                    tracing::warn!(upstream = %self.name, "a warm process had exited; discarded");
                }
                None => break None,
            }
        };
        let proc = match warm {
            Some(p) => p,
            // The command line may hold secrets (a token in an argument): it goes to
            // the log, never to the client.
            None => self.launch.spawn().map_err(|e| {
                tracing::error!(upstream = %self.name, command = %self.launch.describe(), error = %e, "cannot start upstream");
                GatewayError::UpstreamUnavailable {
                    upstream: self.name.to_string(),
                    detail: format!("cannot start its command: {e}"),
                }
            })?,
        };
        self.spawned_once.store(true, Ordering::SeqCst);
        self.replenish();
        tracing::debug!(upstream = %self.name, session = session_tag, pid = proc.pid, "upstream process attached");
        Ok(StdioSession::start(self.name.clone(), session_tag.to_owned(), proc, self.limits.clone(), permit))
    }

    /// Stops the warm processes (shutdown).
    pub async fn shutdown(&self) {
        let procs: Vec<Process> = self.warm.lock().drain(..).collect();
        for mut p in procs {
            process::stop(&mut p.child, p.pid, self.limits.kill_grace).await;
        }
    }
}
