//! Assembling and running the gateway: upstreams, sessions, router, pipeline, the
//! MCP and admin listeners, and orderly shutdown on SIGTERM/SIGINT.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::bridge::Bridge;
use crate::config::Config;
use crate::layers::{BuildContext, Pipeline};
use crate::pipeline::{McpService, RefusalObservers, StageControls};
use crate::router::{Router, StreamLimits};
use crate::server::admin::Admin;
use crate::server::{Front, FrontSettings, OriginPolicy};
use crate::session::SessionStore;
use crate::upstream::Upstream;

mod per_core;

/// What serves requests, whatever the front: upstreams, sessions, bridges and the
/// pipeline.
pub(crate) struct Core {
    /// The pipeline over the router.
    pub service: McpService,
    /// The pipeline and the router, to build more services like `service` (one per
    /// front thread).
    pipeline: Pipeline,
    router: Router,
    /// The sessions.
    pub store: Arc<SessionStore>,
    /// Upstreams by name.
    pub upstreams: HashMap<String, Upstream>,
    /// Bridges by upstream name.
    pub bridges: HashMap<Arc<str>, Arc<Bridge>>,
    /// Endpoint paths, sorted.
    pub paths: Vec<String>,
    /// The stages' admin handles.
    pub controls: StageControls,
    /// Who hears of refusals before the pipeline.
    pub refusals: RefusalObservers,
    /// Documents the stages serve beside the MCP endpoints.
    pub endpoints: crate::pipeline::Endpoints,
    /// The stages' own work (a tape writer), started and stopped with the core.
    lifecycles: crate::pipeline::Lifecycles,
    /// How long shutdown may take.
    grace: std::time::Duration,
    reaper: tokio::task::JoinHandle<()>,
}

impl Core {
    /// Builds it from the config (contacts nobody yet).
    pub(crate) fn build(config: &Config) -> Result<Core, String> {
        // Stages register their taps of the upstream wire when the pipeline is built
        // below; upstreams open sessions only once serving, after that.
        let wire = crate::upstream::WireTaps::default();
        let mut upstreams: HashMap<String, Upstream> = HashMap::new();
        for (name, cfg) in &config.upstreams {
            upstreams.insert(name.clone(), Upstream::from_config(name, cfg, wire.clone())?);
        }
        let store = SessionStore::bounded(config.server.session_idle_timeout, config.server.max_sessions_per_client);
        store.spawn_reaper();
        let limits = StreamLimits {
            buffer_events: config.server.sse_buffer_events,
            buffer_bytes: config.server.sse_buffer_bytes,
            retained_streams: config.server.sse_retained_streams,
        };
        let bridge_settings = crate::bridge::BridgeSettings::new(&config.bridge)?;
        let mut bridges = HashMap::new();
        for (name, cfg) in &config.upstreams {
            let (era, pool) = match cfg {
                crate::config::UpstreamConfig::Stdio(s) => (s.era, s.pool.clone()),
                crate::config::UpstreamConfig::Http(h) => (h.era, h.pool.clone()),
                crate::config::UpstreamConfig::Replay(r) => (crate::config::EraSetting::Legacy, r.pool.clone()),
            };
            if let Some(upstream) = upstreams.get(name) {
                let bridge = Bridge::new(name, upstream.clone(), era, pool, bridge_settings.clone());
                bridges.insert(Arc::<str>::from(name.as_str()), bridge);
            }
        }
        let mut routes = HashMap::new();
        for route in config.effective_routes() {
            let bridge = bridges
                .get(route.upstream.as_str())
                .cloned()
                .ok_or_else(|| format!("route {} names unknown upstream {}", route.path, route.upstream))?;
            routes.insert(Arc::from(route.path.as_str()), (Arc::from(route.upstream.as_str()), bridge));
        }
        let mut paths: Vec<String> = routes.keys().map(|p: &Arc<str>| p.to_string()).collect();
        paths.sort();
        let router = Router::new(routes, store.clone(), limits);
        let reaper_bridges: Vec<Arc<Bridge>> = bridges.values().cloned().collect();
        // Idle pooled sessions are looked for every half of the shortest pool.idle_timeout
        // (at most every 30 s).
        let shortest_idle = config
            .upstreams
            .values()
            .map(|u| match u {
                crate::config::UpstreamConfig::Stdio(s) => s.pool.idle_timeout,
                crate::config::UpstreamConfig::Http(h) => h.pool.idle_timeout,
                crate::config::UpstreamConfig::Replay(r) => r.pool.idle_timeout,
            })
            .min()
            .unwrap_or(std::time::Duration::from_secs(60));
        let reap_every =
            (shortest_idle / 2).clamp(std::time::Duration::from_millis(100), std::time::Duration::from_secs(30));
        let reaper = tokio::spawn(async move {
            loop {
                tokio::time::sleep(reap_every).await;
                for bridge in &reaper_bridges {
                    bridge.close_idle(false).await;
                }
            }
        });
        let specs = config.stage_specs()?;
        let route_upstreams =
            config.effective_routes().into_iter().map(|r| (r.path.clone(), r.upstream.clone())).collect();
        let ctx = BuildContext {
            wire,
            mode: config.mode.unwrap_or("gateway"),
            routes: Arc::new(route_upstreams),
            stages: specs.iter().map(|s| s.name.clone()).collect(),
            ..BuildContext::default()
        };
        let pipeline = Pipeline::new(&specs, &ctx)?;
        let service = pipeline.over(router.clone().into_service());
        let BuildContext { controls, refusals, lifecycles, endpoints, .. } = ctx;
        let grace = config.server.shutdown_grace;

        Ok(Core {
            service,
            pipeline,
            router,
            store,
            upstreams,
            bridges,
            paths,
            controls,
            refusals,
            endpoints,
            lifecycles,
            grace,
            reaper,
        })
    }

    /// Another service like [`Core::service`], sharing everything it serves with, with
    /// call paths of its own (for a front thread).
    pub(crate) fn new_service(&self) -> McpService {
        self.pipeline.over(self.router.clone().into_service())
    }

    /// Starts background work (the stages' own, warm pools, readiness checks).
    pub(crate) async fn start(&self) -> Result<(), String> {
        self.lifecycles.start()?;
        for upstream in self.upstreams.values() {
            upstream.start().await;
        }
        Ok(())
    }

    /// Ends every session, pooled session and warm process.
    pub(crate) async fn shutdown(&self) {
        self.store.close_all().await;
        // After the sessions: their last calls have ended (a recorder writes its tapes' trailers).
        self.lifecycles.stop(self.grace).await;
        self.reaper.abort();
        for bridge in self.bridges.values() {
            bridge.close_idle(true).await;
        }
        for upstream in self.upstreams.values() {
            upstream.shutdown().await;
        }
    }
}

/// Runs the gateway until SIGTERM or SIGINT; then stops accepting, lets in-flight
/// requests finish within `server.shutdown_grace`, closes GET streams, stops every
/// child process and returns.
pub async fn run(config: Config) -> Result<(), String> {
    let metrics = match crate::telemetry::install_metrics() {
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::warn!(error = %e, "metrics recorder not installed");
            None
        }
    };
    let core = Core::build(&config)?;
    let Core { store, paths, refusals, .. } = &core;
    let (store, paths, refusals) = (store.clone(), paths.clone(), refusals.clone());
    let listen = config.listen_addr()?;
    let listener = if config.server.thread_per_core { per_core::bind(listen) } else { TcpListener::bind(listen).await }
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let admin_listener = AdminListener::bind(&config).await?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let policy = OriginPolicy::new(bound, &config.server.allowed_origins, &config.server.allowed_hosts);
    let settings = FrontSettings {
        max_body_bytes: config.server.max_body_bytes,
        sse_keepalive: config.server.sse_keepalive,
        sse_retry: config.server.sse_retry,
    };
    let forwarded =
        config.upstreams.values().any(|u| matches!(u, crate::config::UpstreamConfig::Http(h) if h.forwarded));
    // One front per front thread, each over a pipeline of its own (see `Pipeline`);
    // the bound on requests in progress is shared by all.
    let shed = crate::server::ShedLayer::new(config.server.max_concurrent_requests, refusals.clone());
    let front_shutdown = shutdown_rx.clone();
    let new_handler = || {
        let service = core.new_service();
        let front =
            Front::new(service, store.clone(), paths.clone(), policy.clone(), settings.clone(), front_shutdown.clone());
        let mut front = front.with_refusals(refusals.clone()).with_peer_handed_down(forwarded);
        for doc in core.endpoints.documents() {
            let path = doc.path.clone();
            front = front.with_endpoint(path, crate::server::document_endpoint(doc));
        }
        crate::server::http_service(Arc::new(front), &shed)
    };
    let grace = config.server.shutdown_grace;
    // Shared by every front thread's listener; the admin listener is not bounded.
    let mcp_limits = crate::server::ConnLimits {
        header_timeout: config.server.header_read_timeout,
        max_header_bytes: config.server.max_header_bytes,
        connections: Some(crate::server::ConnectionGate::new(config.server.max_connections)),
    };

    core.start().await?;

    let mut announce = format!("shadowcat listening: mcp=http://{bound}{}", paths.first().map_or("", |p| p.as_str()));
    let admin_task = admin_listener.map(|l| {
        announce.push_str(&format!(" admin=http://{}", l.addr));
        l.serve(metrics, &core, &config.server, shutdown_rx.clone())
    });

    let (release_tx, release_rx) = watch::channel(false);
    let server = if config.server.thread_per_core {
        let threads = match config.server.worker_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        per_core::spawn(listener, threads, new_handler, shutdown_rx, release_rx, grace, mcp_limits)?
    } else {
        tokio::spawn(crate::server::serve(listener, new_handler(), shutdown_rx, grace, mcp_limits))
    };

    eprintln!("{announce}");
    tracing::info!(%bound, routes = ?paths, "gateway started");

    wait_for_signal().await;
    tracing::info!(?grace, "shutting down: no new connections; in-flight requests may finish");
    let _ = shutdown_tx.send(true);
    store.close_streams();
    let _ = server.await;
    if let Some(task) = admin_task {
        let _ = task.await;
    }
    core.shutdown().await;
    // Session tasks may live on the per-core runtimes: they stop only now.
    let _ = release_tx.send(true);
    tracing::info!("stopped");
    Ok(())
}

/// The admin listener, bound (before anything else starts, so that a taken port
/// stops the start) with its token resolved.
pub(crate) struct AdminListener {
    listener: TcpListener,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    token: Option<String>,
}

impl AdminListener {
    /// Binds `admin.listen`, if set.
    pub(crate) async fn bind(config: &Config) -> Result<Option<AdminListener>, String> {
        let Some(addr) = &config.admin.listen else { return Ok(None) };
        let token = match &config.admin.token {
            Some(secret) => Some(secret.resolve().map_err(|e| format!("admin.token: {e}"))?),
            None => None,
        };
        let listener = TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr} (admin): {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        Ok(Some(AdminListener { listener, addr, token }))
    }

    /// Serves the admin endpoints of `core` until `shutdown` (unbounded in
    /// connections; `server`'s header limits and shutdown grace).
    pub(crate) fn serve(
        self,
        metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
        core: &Core,
        server: &crate::config::ServerConfig,
        shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let limits = crate::server::ConnLimits {
            header_timeout: server.header_read_timeout,
            max_header_bytes: server.max_header_bytes,
            connections: None,
        };
        let upstreams = core.upstreams.iter().map(|(n, u)| (n.clone(), u.clone())).collect();
        let admin = Arc::new(Admin { metrics, upstreams, controls: core.controls.clone(), token: self.token });
        let handler = tower::service_fn(move |req| {
            let admin = admin.clone();
            async move { Ok::<_, std::convert::Infallible>(admin.handle(req).await) }
        });
        tokio::spawn(crate::server::serve(self.listener, handler, shutdown, server.shutdown_grace, limits))
    }
}

/// Waits for SIGTERM or SIGINT.
pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops the gateway");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
