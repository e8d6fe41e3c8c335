//! Configuration: one YAML file, validated at load with errors that name the file,
//! line and key. The binary carries an embedded default (`config/default.yaml`).

pub mod duration;
mod secret;
pub mod size;
mod types;

use std::net::SocketAddr;
use std::path::Path;

pub use secret::SecretValue;
pub use types::{
    AdminConfig, BridgeConfig, CacheScope, Config, EraSetting, HttpConfig, Matching, PoolConfig, ReplayConfig,
    RouteConfig, ServerConfig, StageEntry, StageSpec, StdioConfig, TokenEndpointAuth, UpstreamConfig, UpstreamOAuth,
};

/// The embedded default configuration: the gateway in front of its own demo server.
pub const DEFAULT_YAML: &str = include_str!("../../config/default.yaml");

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ConfigError {
    /// The file (or `<embedded default>`, `<command line>`).
    pub origin: String,
    /// What is wrong, with line and key where known.
    pub message: String,
}

impl Config {
    /// The embedded default.
    pub fn embedded_default() -> Result<Config, ConfigError> {
        Config::from_yaml(DEFAULT_YAML, "<embedded default>")
    }

    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError { origin: origin.clone(), message: format!("cannot read: {e}") })?;
        Config::from_yaml(&text, &origin)
    }

    /// Parses and validates YAML text; `origin` names it in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = serde_saphyr::from_str(text)
            .map_err(|e| ConfigError { origin: origin.to_owned(), message: e.to_string() })?;
        config.validate().map_err(|message| ConfigError { origin: origin.to_owned(), message })?;
        Ok(config)
    }

    /// Checks what the types alone cannot. Errors name the key.
    pub fn validate(&self) -> Result<(), String> {
        let listen = parse_addr(&self.server.listen).map_err(|e| format!("server.listen: {e}"))?;
        if !listen.ip().is_loopback() && !self.server.allow_non_loopback {
            return Err(format!(
                "server.listen: {listen} is not a loopback address; this gateway spawns commands and does not \
                 authenticate clients yet, so set server.allow_non_loopback: true to listen there on purpose"
            ));
        }
        if let Some(admin) = &self.admin.listen {
            let admin = parse_addr(admin).map_err(|e| format!("admin.listen: {e}"))?;
            if !admin.ip().is_loopback() && !self.server.allow_non_loopback {
                return Err(format!(
                    "admin.listen: {admin} is not a loopback address; set server.allow_non_loopback: true to allow it"
                ));
            }
        }
        if self.server.max_body_bytes == 0 {
            return Err("server.max_body_bytes: must be greater than 0".into());
        }
        if self.server.max_header_bytes < MIN_HEADER_BYTES {
            return Err(format!(
                "server.max_header_bytes: must be at least {} (got {})",
                MIN_HEADER_BYTES, self.server.max_header_bytes
            ));
        }
        if self.server.sse_buffer_events == 0 {
            return Err("server.sse_buffer_events: must be greater than 0".into());
        }
        if self.server.sse_buffer_bytes == 0 {
            return Err("server.sse_buffer_bytes: must be greater than 0".into());
        }
        if self.upstreams.is_empty() {
            return Err("upstreams: at least one upstream is required".into());
        }
        for (name, upstream) in &self.upstreams {
            validate_upstream(upstream).map_err(|e| format!("upstreams.{name}.{e}"))?;
        }
        for (i, route) in self.routes.iter().enumerate() {
            if !route.path.starts_with('/') {
                return Err(format!("routes[{i}].path: {:?} must start with '/'", route.path));
            }
            if !self.upstreams.contains_key(&route.upstream) {
                return Err(format!("routes[{i}].upstream: no upstream named {:?}", route.upstream));
            }
            if self.routes[..i].iter().any(|r| r.path == route.path) {
                return Err(format!("routes[{i}].path: {:?} is routed twice", route.path));
            }
        }
        if self.routes.is_empty() && self.upstreams.len() > 1 {
            return Err("routes: required when there is more than one upstream".into());
        }
        self.stage_specs()?;
        Ok(())
    }

    /// The routes in force: the configured ones, or `/mcp` to the only upstream.
    pub fn effective_routes(&self) -> Vec<RouteConfig> {
        if !self.routes.is_empty() {
            return self.routes.clone();
        }
        self.upstreams
            .keys()
            .next()
            .map(|name| vec![RouteConfig { path: "/mcp".into(), upstream: name.clone() }])
            .unwrap_or_default()
    }

    /// The pipeline list as name + options.
    pub fn stage_specs(&self) -> Result<Vec<StageSpec>, String> {
        self.pipeline
            .iter()
            .enumerate()
            .map(|(i, entry)| match entry {
                StageEntry::Name(name) => Ok(StageSpec { name: name.clone(), options: serde_json::Value::Null }),
                StageEntry::WithOptions(map) if map.len() == 1 => {
                    let (name, options) = map.iter().next().ok_or_else(|| format!("pipeline[{i}]: empty entry"))?;
                    Ok(StageSpec { name: name.clone(), options: options.clone() })
                }
                StageEntry::WithOptions(_) => Err(format!(
                    "pipeline[{i}]: an entry is a stage name or a map with exactly one key (the stage name)"
                )),
            })
            .collect()
    }

    /// The listen address (validated).
    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        parse_addr(&self.server.listen)
    }
}

fn validate_upstream(upstream: &UpstreamConfig) -> Result<(), String> {
    match upstream {
        UpstreamConfig::Stdio(s) => {
            if s.command.trim().is_empty() {
                return Err("stdio.command: must not be empty".into());
            }
            if s.max_sessions == 0 {
                return Err("stdio.max_sessions: must be greater than 0".into());
            }
            if s.warm > s.max_sessions {
                return Err(format!("stdio.warm: {} is more than max_sessions ({})", s.warm, s.max_sessions));
            }
            if s.max_in_flight == 0 {
                return Err("stdio.max_in_flight: must be greater than 0".into());
            }
            if s.max_request_timeout < s.request_timeout {
                return Err("stdio.max_request_timeout: must not be less than request_timeout".into());
            }
            for (key, value) in &s.env {
                value.resolve().map_err(|e| format!("stdio.env.{key}: {e}"))?;
            }
            Ok(())
        }
        UpstreamConfig::Http(h) => {
            let uri: http::Uri = h.url.parse().map_err(|e| format!("http.url: {:?} is not a URL: {e}", h.url))?;
            if !matches!(uri.scheme_str(), Some("http") | Some("https")) || uri.host().is_none() {
                return Err(format!("http.url: {:?} must be an absolute http:// or https:// URL", h.url));
            }
            if h.max_sessions == 0 {
                return Err("http.max_sessions: must be greater than 0".into());
            }
            for (i, name) in h.forward_headers.iter().enumerate() {
                forward_header(name).map_err(|e| format!("http.forward_headers[{i}]: {e}"))?;
            }
            for (key, value) in &h.headers {
                http::HeaderName::from_bytes(key.as_bytes())
                    .map_err(|_| format!("http.headers.{key}: not a valid header name"))?;
                let v = value.resolve().map_err(|e| format!("http.headers.{key}: {e}"))?;
                http::HeaderValue::from_str(&v).map_err(|_| format!("http.headers.{key}: not a valid header value"))?;
            }
            Ok(())
        }
        UpstreamConfig::Replay(r) => {
            if r.tape.as_os_str().is_empty() {
                return Err("replay.tape: must not be empty".into());
            }
            if !(0.1..=10.0).contains(&r.speed) {
                return Err(format!("replay.speed: {} is outside 0.1 to 10", r.speed));
            }
            Ok(())
        }
    }
}

/// Headers `forward_headers` may not name, with why.
const UNFORWARDABLE: &[(&str, &str)] = &[
    ("authorization", "a client's token must not be passed through to an upstream (MCP authorization)"),
    ("proxy-authorization", "a client's credentials must not reach an upstream"),
    ("cookie", "a client's cookies are credentials"),
    ("host", "the gateway sets it"),
    ("content-length", "the gateway sets it"),
    ("content-type", "the gateway sets it"),
    ("accept", "the gateway sets it"),
    ("mcp-session-id", "the gateway rewrites it to the upstream's session"),
    ("last-event-id", "the gateway resumes upstream streams itself"),
    ("connection", "hop-by-hop"),
    ("keep-alive", "hop-by-hop"),
    ("proxy-connection", "hop-by-hop"),
    ("te", "hop-by-hop"),
    ("trailer", "hop-by-hop"),
    ("transfer-encoding", "hop-by-hop"),
    ("upgrade", "hop-by-hop"),
];

/// A name from an upstream's `forward_headers`: a header name that is neither a
/// credential nor one the gateway owns.
pub fn forward_header(name: &str) -> Result<http::HeaderName, String> {
    let header =
        http::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| format!("{name:?} is not a header name"))?;
    match UNFORWARDABLE.iter().find(|(n, _)| *n == header.as_str()) {
        Some((_, why)) => Err(format!("{name} cannot be forwarded: {why}")),
        None => Ok(header),
    }
}

/// The smallest `max_header_bytes` hyper accepts.
pub const MIN_HEADER_BYTES: usize = 8192;

fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.to_socket_addrs()
        .map_err(|e| format!("{text:?} is not HOST:PORT: {e}"))?
        .next()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

#[cfg(test)]
mod tests;
