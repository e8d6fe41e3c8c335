//! The configuration types. Every field has a default written once, here.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::duration;
use super::secret::SecretValue;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The MCP listener.
    #[serde(default)]
    pub server: ServerConfig,
    /// The admin listener (`/healthz`, `/readyz`, `/metrics`).
    #[serde(default)]
    pub admin: AdminConfig,
    /// Pipeline stages, outermost first: a name, or a one-key map `name: {options}`.
    #[serde(default = "default_pipeline")]
    pub pipeline: Vec<StageEntry>,
    /// What the configuration is run as: `gateway` (`None`) or `forward` (set by the
    /// `forward` commands; not a key of the file).
    #[serde(skip)]
    pub mode: Option<&'static str>,
    /// Endpoint paths and the upstream each serves. Empty: `/mcp` serves the only upstream.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Upstream MCP servers by name.
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Serving 2026-07-28 (stateless) clients from 2025-era upstreams.
    #[serde(default)]
    pub bridge: BridgeConfig,
}

/// The era bridge: stateless clients served from pooled sessions of legacy upstreams.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeConfig {
    /// Key sealing `requestState` (any length; SHA-256 makes the AEAD key). Replicas
    /// behind one load balancer should share it. Unset: a random key per process.
    pub state_key: Option<SecretValue>,
    /// How long an `input_required` answer stays valid (and its upstream call parked).
    #[serde(with = "duration")]
    pub state_ttl: Duration,
    /// Most `input_required` rounds of one call.
    pub max_rounds: u32,
    /// Most calls parked waiting for a retry, per upstream.
    pub max_parked: usize,
    /// Most calls parked per client (the peer's IP address; the principal once
    /// authentication exists), per upstream.
    pub max_parked_per_client: usize,
    /// After an upstream's first server-to-client request, time to wait for more before
    /// answering `input_required` (a server may ask several things at once).
    #[serde(with = "duration")]
    pub input_settle: Duration,
    /// `ttlMs` stamped on cacheable results of legacy upstreams.
    pub cache_ttl_ms: u64,
    /// `cacheScope` stamped on cacheable results of legacy upstreams (`private` or `public`).
    pub cache_scope: CacheScope,
    /// Whether authenticated principals share the pooled upstream sessions that serve
    /// stateless clients (`false`: each principal's calls go to sessions of its own,
    /// so nothing an upstream keeps in a session crosses from one principal to another).
    pub share_pool_across_principals: bool,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            state_key: None,
            state_ttl: Duration::from_secs(300),
            max_rounds: 8,
            max_parked: 256,
            max_parked_per_client: 32,
            input_settle: Duration::from_millis(30),
            cache_ttl_ms: 0,
            cache_scope: CacheScope::Private,
            share_pool_across_principals: false,
        }
    }
}

/// Who may reuse a cached result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheScope {
    /// Only the same authorization context.
    #[default]
    Private,
    /// Anyone.
    Public,
}

impl CacheScope {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheScope::Private => "private",
            CacheScope::Public => "public",
        }
    }
}

/// The pool of initialized upstream sessions that serves stateless clients of a
/// legacy upstream, per declared client capability set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Sessions kept open per capability set once it has been used.
    pub min: usize,
    /// Most sessions per capability set.
    pub max: usize,
    /// Sessions beyond `min` idle this long are closed.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig { min: 1, max: 4, idle_timeout: Duration::from_secs(300) }
    }
}

fn default_pipeline() -> Vec<StageEntry> {
    vec![StageEntry::Name("metrics".into()), StageEntry::Name("access_log".into())]
}

/// The MCP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on (`HOST:PORT`).
    pub listen: String,
    /// Must be `true` to listen on an address other than loopback: the gateway
    /// spawns commands and, in this version, does not authenticate clients.
    pub allow_non_loopback: bool,
    /// Allowed `Origin` values (`scheme://host[:port]`), besides loopback origins when
    /// bound to loopback. `"*"` allows any origin.
    pub allowed_origins: Vec<String>,
    /// Allowed `Host` header names (without port), besides loopback names when bound
    /// to loopback. `"*"` allows any host.
    pub allowed_hosts: Vec<String>,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// A session with no request and no open stream for this long is ended.
    #[serde(with = "duration")]
    pub session_idle_timeout: Duration,
    /// Events kept per SSE stream for resumption with `Last-Event-ID`.
    pub sse_buffer_events: usize,
    /// Bytes of events kept per SSE stream (oldest dropped first); an event larger
    /// than this is delivered but not kept.
    pub sse_buffer_bytes: usize,
    /// Most open sessions per client (the peer's IP address; the principal once
    /// authentication exists); past it `initialize` gets 429. 0: no bound.
    pub max_sessions_per_client: usize,
    /// Most open client connections to the MCP listener; past it a connection gets
    /// one 503 and is closed. 0: no bound.
    pub max_connections: usize,
    /// Most requests the front works on at once (until each has its response head;
    /// a stream being read does not count); past it a request gets 503 with
    /// `Retry-After` at once instead of waiting. 0: no bound.
    pub max_concurrent_requests: usize,
    /// Finished SSE streams kept per session for resumption.
    pub sse_retained_streams: usize,
    /// The `retry` the gateway advises to 2025-11-25 clients.
    #[serde(with = "duration")]
    pub sse_retry: Duration,
    /// Interval of SSE keep-alive comments on idle streams.
    #[serde(with = "duration")]
    pub sse_keepalive: Duration,
    /// Time in-flight requests get to finish on shutdown.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
    /// A client connection must send each request head within this time (and its
    /// first bytes within this time of connecting), or it is closed.
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers) in bytes; larger gets 431. At
    /// least 8192.
    pub max_header_bytes: usize,
    /// Serve with one single-threaded runtime per front thread, each on its own
    /// `SO_REUSEPORT` listener: a request stays on one thread from socket to
    /// upstream and back (less CPU per call and more throughput). The default;
    /// `false` serves on one shared multi-threaded (work-stealing) runtime instead,
    /// which spreads a few very busy connections better.
    pub thread_per_core: bool,
    /// Threads serving requests; 0 means one per CPU core. On a small machine shared
    /// with its upstreams, 1 costs less CPU per request (see the README's Performance).
    pub worker_threads: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            allow_non_loopback: false,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            max_body_bytes: 4 * 1024 * 1024,
            session_idle_timeout: Duration::from_secs(30 * 60),
            sse_buffer_events: 256,
            sse_buffer_bytes: 1024 * 1024,
            max_sessions_per_client: 16,
            max_connections: 4096,
            max_concurrent_requests: 4096,
            sse_retained_streams: 16,
            sse_retry: Duration::from_secs(1),
            sse_keepalive: Duration::from_secs(20),
            shutdown_grace: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            max_header_bytes: 8192,
            thread_per_core: true,
            worker_threads: 0,
        }
    }
}

/// The admin listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address to listen on; `null` turns the admin listener off.
    pub listen: Option<String>,
    /// The bearer token the stages' own endpoints (`/stages/<name>/...`) require:
    /// a literal, `{env: NAME}` or `{file: PATH}`. Without one, those that change
    /// anything are refused.
    pub token: Option<SecretValue>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { listen: Some("127.0.0.1:9901".into()), token: None }
    }
}

/// A pipeline entry: `metrics`, or `access_log: { level: debug }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StageEntry {
    /// A stage with default options.
    Name(String),
    /// A stage with options.
    WithOptions(BTreeMap<String, serde_json::Value>),
}

/// A stage name with its options, as the pipeline builder takes it.
#[derive(Debug, Clone)]
pub struct StageSpec {
    /// The stage's registry name.
    pub name: String,
    /// Its options (`null` for defaults).
    pub options: serde_json::Value,
}

/// An endpoint path and the upstream behind it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The path, such as `/mcp`.
    pub path: String,
    /// The upstream's name in `upstreams`.
    pub upstream: String,
}

/// One upstream MCP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum UpstreamConfig {
    /// A local process speaking MCP over stdio, one per client session.
    Stdio(StdioConfig),
    /// A remote Streamable HTTP server.
    Http(HttpConfig),
    /// A recorded tape served as the server (`shadowcat replay`).
    Replay(ReplayConfig),
}

/// How a replayed tape finds the recorded request a client's request stands for.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Matching {
    /// The same method and params (ignoring `_meta`, ids and the `ignore` paths),
    /// anywhere in the tape, the first not yet answered first.
    #[default]
    MethodParams,
    /// The next recorded request of the same method, in the tape's order.
    Sequential,
    /// The next recorded request, which must have the same method and params.
    Strict,
}

/// A tape served as the server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayConfig {
    /// The tape file (`*.tape.jsonl`).
    pub tape: std::path::PathBuf,
    /// How requests are matched to recorded ones.
    #[serde(default)]
    pub matching: Matching,
    /// Recorded delays divided by this (0.1 to 10; 2 is twice as fast).
    #[serde(default = "default_speed")]
    pub speed: f64,
    /// No delays at all.
    #[serde(default)]
    pub instant: bool,
    /// JSONPaths (RFC 9535) into params that matching ignores (a timestamp, a nonce).
    #[serde(default)]
    pub ignore: Vec<String>,
    /// The bridge's pool of replayed sessions for 2026-07-28 clients.
    #[serde(default)]
    pub pool: PoolConfig,
}

fn default_speed() -> f64 {
    1.0
}

/// A stdio upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdioConfig {
    /// The program; `self` means this shadowcat binary.
    pub command: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment for the child. It gets only these plus `PATH`, `HOME` and `LANG`.
    #[serde(default)]
    pub env: BTreeMap<String, SecretValue>,
    /// Working directory of the child.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Processes spawned ahead of need, to hide start-up time.
    #[serde(default)]
    pub warm: usize,
    /// Most concurrent sessions (processes); more get 503.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Requests in flight per session; more get 503.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Time a request may take without progress.
    #[serde(default = "default_request_timeout", with = "duration")]
    pub request_timeout: Duration,
    /// Time a request may take even while it reports progress.
    #[serde(default = "default_max_request_timeout", with = "duration")]
    pub max_request_timeout: Duration,
    /// Largest line (message) accepted from the process, in bytes.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Stderr lines logged per second per session; the rest are counted and dropped.
    #[serde(default = "default_stderr_lines_per_second")]
    pub stderr_lines_per_second: u32,
    /// Time a process gets between SIGTERM and SIGKILL when its session ends.
    #[serde(default = "default_kill_grace", with = "duration")]
    pub kill_grace: Duration,
    /// Which protocol era the server speaks: `auto` (probe once with
    /// `server/discover`), `modern` (2026-07-28, stateless) or `legacy` (2025 revisions).
    #[serde(default)]
    pub era: EraSetting,
    /// The pool serving stateless clients when the server is legacy.
    #[serde(default)]
    pub pool: PoolConfig,
}

/// An HTTP upstream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The MCP endpoint URL.
    pub url: String,
    /// Static headers sent upstream (credentials from `env:` or `file:`).
    #[serde(default)]
    pub headers: BTreeMap<String, SecretValue>,
    /// Client headers forwarded besides the default allow-list (`x-tenant-id`);
    /// never credentials or transport headers.
    #[serde(default)]
    pub forward_headers: Vec<String>,
    /// Tell the upstream who the client is: `Forwarded: for=...;proto=http`,
    /// `X-Forwarded-For` and `X-Forwarded-Proto`, made by the gateway from the peer
    /// address (whatever the client sent in those headers is replaced).
    #[serde(default)]
    pub forwarded: bool,
    /// Most concurrent sessions; more get 503.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Requests in flight per session; more get 503.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Time to establish a connection.
    #[serde(default = "default_connect_timeout", with = "duration")]
    pub connect_timeout: Duration,
    /// Time a request may take without progress.
    #[serde(default = "default_request_timeout", with = "duration")]
    pub request_timeout: Duration,
    /// Time a request may take even while it reports progress.
    #[serde(default = "default_max_request_timeout", with = "duration")]
    pub max_request_timeout: Duration,
    /// Largest message (JSON body or SSE event) accepted from the upstream, in bytes.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Which protocol era the server speaks: `auto` (probe once with
    /// `server/discover`), `modern` (2026-07-28, stateless) or `legacy` (2025 revisions).
    #[serde(default)]
    pub era: EraSetting,
    /// The pool serving stateless clients when the server is legacy.
    #[serde(default)]
    pub pool: PoolConfig,
    /// The gateway's own OAuth client for this upstream: access tokens by client
    /// credentials, sent as `Authorization: Bearer` (a client's token never is).
    #[serde(default)]
    pub oauth: Option<Box<UpstreamOAuth>>,
}

/// How the gateway authenticates at the token endpoint (RFC 6749 2.3, RFC 7523).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuth {
    /// HTTP Basic with the client id and secret.
    #[default]
    ClientSecretBasic,
    /// The client id and secret in the form.
    ClientSecretPost,
    /// A JWT signed with the client's private key (`private_key`).
    PrivateKeyJwt,
}

/// `upstreams.<name>.http.oauth`: the client credentials grant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamOAuth {
    /// The authorization server's token endpoint.
    pub token_endpoint: String,
    /// The gateway's client id there.
    pub client_id: String,
    /// Its secret (`client_secret_basic`, `client_secret_post`).
    #[serde(default)]
    pub client_secret: Option<SecretValue>,
    /// How it authenticates.
    #[serde(default)]
    pub auth_method: TokenEndpointAuth,
    /// Its private key, PEM (PKCS#8 EC P-256 or RSA), for `private_key_jwt`.
    #[serde(default)]
    pub private_key: Option<SecretValue>,
    /// The `kid` of that key at the authorization server, if it needs one.
    #[serde(default)]
    pub key_id: Option<String>,
    /// The scopes asked for (space-separated).
    #[serde(default)]
    pub scope: Option<String>,
    /// The resource indicator (RFC 8707) asked for; default: the upstream's URL.
    #[serde(default)]
    pub resource: Option<String>,
    /// How long before its expiry a token is replaced.
    #[serde(default = "default_refresh_before", with = "duration")]
    pub refresh_before: Duration,
}

fn default_refresh_before() -> Duration {
    Duration::from_secs(60)
}

/// An upstream's protocol era, as configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EraSetting {
    /// Probe once with `server/discover` (in a throwaway process for stdio) and cache
    /// the answer.
    #[default]
    Auto,
    /// 2026-07-28 and later: stateless.
    Modern,
    /// 2025-03-26 to 2025-11-25: the initialize handshake and sessions.
    Legacy,
}

fn default_max_sessions() -> usize {
    64
}
fn default_max_in_flight() -> usize {
    32
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_request_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_max_message_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_stderr_lines_per_second() -> u32 {
    20
}
fn default_kill_grace() -> Duration {
    Duration::from_secs(2)
}
