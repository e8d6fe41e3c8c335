//! The command line.

/// `println!` for command output that a closed pipe (`| head`) ends quietly.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

/// `print!` for command output that a closed pipe ends quietly.
macro_rules! out_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if write!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

mod auth;
mod intercept;
mod library;
mod policy;
mod progress;
mod tape;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, HttpConfig, StdioConfig, UpstreamConfig};

/// Shadowcat: an MCP gateway and developer proxy.
#[derive(Debug, Parser)]
#[command(name = "shadowcat", version, about)]
pub struct Cli {
    /// Log as JSON lines instead of text (logs always go to stderr).
    #[arg(long, global = true)]
    pub log_json: bool,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (reverse proxy). With no file and no upstream: the embedded
    /// default, 127.0.0.1:8080/mcp in front of the built-in demo server.
    #[command(visible_alias = "reverse")]
    Gateway(GatewayArgs),
    /// Forward mode, for local development: Shadowcat between an MCP client and a server.
    #[command(subcommand)]
    Forward(ForwardCommand),
    /// Check or print configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Work with recorded tapes (`--record DIR`, or the `record` stage).
    #[command(subcommand)]
    Tape(tape::TapeCommand),
    /// Interception rules (`--rules FILE`, or the `intercept` stage): check a rule file;
    /// list, switch and load the rules of a running instance; resume or drop paused
    /// messages; watch rules act.
    #[command(subcommand)]
    Intercept(intercept::InterceptCommand),
    /// Helpers for the `auth` stage: hash (or make) a static API key.
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    /// Cedar policies (the `policy` stage): check a directory, print the built-in
    /// schema, decide one request.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Serve a recorded tape as an MCP server: over Streamable HTTP at /mcp
    /// (`--listen`), or on stdio (`--stdio`). Clients of every revision are served,
    /// bridged as for any 2025 server.
    Replay(ReplayArgs),
    /// Run the built-in demo MCP server on stdio.
    DemoServer,
}

/// Arguments of `gateway`.
#[derive(Debug, clap::Args)]
pub struct GatewayArgs {
    /// Configuration file (YAML).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Listen address (HOST:PORT), overriding `server.listen`.
    #[arg(long)]
    pub listen: Option<String>,
    /// Admin listen address (HOST:PORT), overriding `admin.listen`.
    #[arg(long)]
    pub admin: Option<String>,
    /// A Streamable HTTP upstream URL, replacing the configured upstreams.
    #[arg(long, conflicts_with = "command")]
    pub upstream: Option<String>,
    /// Record every session to tapes under DIR (adds the `record` stage, or sets its
    /// `dir` when the configuration has one).
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// Interception rules (YAML or JSON; see `shadowcat intercept rules validate`):
    /// adds the `intercept` stage, or sets its `rules` when the configuration has one.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// A stdio upstream command (after `--`), replacing the configured upstreams.
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// `forward` subcommands.
#[derive(Debug, Subcommand)]
pub enum ForwardCommand {
    /// Sit between a stdio MCP client and a server: the client launches Shadowcat as if
    /// it were the server. The server is a command (after `--`) or a remote Streamable
    /// HTTP URL (`--upstream`).
    Stdio(ForwardStdioArgs),
    /// Serve a local stdio server over Streamable HTTP (for HTTP-only clients), with the
    /// gateway's whole front and pipeline; one child per client session.
    Http(ForwardHttpArgs),
}

/// Arguments of `forward stdio`.
#[derive(Debug, clap::Args)]
pub struct ForwardStdioArgs {
    /// Configuration file (YAML) for the pipeline; its upstreams are replaced.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// A remote Streamable HTTP server instead of a command.
    #[arg(long, conflicts_with = "command")]
    pub upstream: Option<String>,
    /// A header sent to the remote server (`'Name: value'`; repeatable). Never logged.
    #[arg(long = "header", requires = "upstream")]
    pub headers: Vec<String>,
    /// An environment variable holding a bearer token for the remote server.
    #[arg(long, requires = "upstream")]
    pub bearer_token_env: Option<String>,
    /// The server's protocol era, when it should not be probed: `modern` (2026-07-28
    /// only), `legacy` (2025 revisions only), or `auto` (the default: probed once).
    #[arg(long, default_value = "auto", value_parser = ["auto", "modern", "legacy"])]
    pub era: String,
    /// Write logs to this file (appended) instead of stderr.
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// Record every session to tapes under DIR (adds the `record` stage, or sets its
    /// `dir` when the configuration has one).
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// Interception rules (YAML or JSON; see `shadowcat intercept rules validate`):
    /// adds the `intercept` stage, or sets its `rules` when the configuration has one.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Admin listen address (HOST:PORT): `/metrics`, `/stages` and the intercept
    /// stage's endpoints (`shadowcat intercept paused`, ...); off unless given.
    #[arg(long, value_name = "HOST:PORT")]
    pub admin: Option<String>,
    /// The stdio server to run (after `--`).
    #[arg(last = true, required_unless_present = "upstream")]
    pub command: Vec<String>,
}

impl ForwardStdioArgs {
    /// The configuration this stands for (no listeners are opened in forward stdio).
    pub fn resolve(&self) -> Result<Config, String> {
        let mut config = base_config(self.config.as_deref())?;
        config.admin.listen = self.admin.clone();
        let upstream = match &self.upstream {
            Some(url) => {
                let mut headers = serde_json::Map::new();
                for h in &self.headers {
                    let (name, value) =
                        h.split_once(':').ok_or_else(|| format!("--header {h:?}: expected 'Name: value'"))?;
                    headers.insert(name.trim().to_owned(), serde_json::json!(value.trim()));
                }
                if let Some(var) = &self.bearer_token_env {
                    headers.insert("Authorization".into(), serde_json::json!({ "env": var, "prefix": "Bearer " }));
                }
                let cfg: HttpConfig = serde_json::from_value(serde_json::json!({ "url": url, "headers": headers }))
                    .map_err(|e| format!("--upstream: {e}"))?;
                UpstreamConfig::Http(cfg)
            }
            None => stdio_upstream(&self.command)?.ok_or("forward stdio needs -- COMMAND or --upstream")?,
        };
        let era: crate::config::EraSetting =
            serde_json::from_value(serde_json::json!(self.era)).map_err(|e| format!("--era: {e}"))?;
        let mut upstream = upstream;
        match &mut upstream {
            UpstreamConfig::Stdio(s) => s.era = era,
            UpstreamConfig::Http(h) => h.era = era,
            UpstreamConfig::Replay(_) => {}
        }
        only_upstream(&mut config, "forward", upstream);
        config.mode = Some("forward");
        if let Some(file) = &self.rules {
            with_rules(&mut config, file)?;
        }
        if let Some(dir) = &self.record {
            with_record(&mut config, dir)?;
        }
        config.validate().map_err(|e| format!("<command line>: {e}"))?;
        Ok(config)
    }
}

/// Arguments of `forward http`.
#[derive(Debug, clap::Args)]
pub struct ForwardHttpArgs {
    /// Configuration file (YAML) for the front and the pipeline; its upstreams are
    /// replaced by the command.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Listen address (HOST:PORT).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Admin listen address (HOST:PORT); off unless given.
    #[arg(long)]
    pub admin: Option<String>,
    /// Record every session to tapes under DIR (adds the `record` stage, or sets its
    /// `dir` when the configuration has one).
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// Interception rules (YAML or JSON; see `shadowcat intercept rules validate`):
    /// adds the `intercept` stage, or sets its `rules` when the configuration has one.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// The stdio server to run (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

impl ForwardHttpArgs {
    /// The gateway configuration this stands for.
    pub fn resolve(&self) -> Result<Config, String> {
        let mut config = base_config(self.config.as_deref())?;
        config.admin.listen = self.admin.clone();
        if self.config.is_none() {
            // One developer's local clients, which often leave sessions behind (an SDK
            // client does not DELETE its session on close): no per-client bound.
            config.server.max_sessions_per_client = 0;
        }
        config.mode = Some("forward");
        let args = GatewayArgs {
            config: None,
            listen: Some(self.listen.clone()),
            admin: None,
            upstream: None,
            record: self.record.clone(),
            rules: self.rules.clone(),
            command: self.command.clone(),
        };
        args.apply(config)
    }
}

/// Arguments of `replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The tape (`*.tape.jsonl`).
    pub tape: PathBuf,
    /// Listen address (HOST:PORT) for Streamable HTTP at /mcp.
    #[arg(long, default_value = "127.0.0.1:8080", conflicts_with = "stdio")]
    pub listen: String,
    /// Serve one client on stdin/stdout instead (logs on stderr).
    #[arg(long)]
    pub stdio: bool,
    /// How a request finds its recorded one: `method_params` (method and params,
    /// ignoring `_meta`, ids and `--ignore` paths), `sequential` (the next recorded
    /// request of that method), `strict` (the next recorded request, which must match).
    #[arg(long, default_value = "method_params", value_parser = ["method_params", "sequential", "strict"])]
    pub matching: String,
    /// Replay this many times faster than recorded (0.1 to 10).
    #[arg(long, default_value_t = 1.0, conflicts_with = "instant")]
    pub speed: f64,
    /// Answer at once, without the recorded delays.
    #[arg(long)]
    pub instant: bool,
    /// A JSONPath (RFC 9535) into params that matching ignores (repeatable).
    #[arg(long = "ignore", value_name = "JSONPATH")]
    pub ignore: Vec<String>,
}

impl ReplayArgs {
    /// The configuration this stands for: the embedded default's front and pipeline
    /// with the tape as its only upstream.
    pub fn resolve(&self) -> Result<Config, String> {
        let mut config = Config::embedded_default().map_err(|e| e.to_string())?;
        config.server.listen = self.listen.clone();
        config.admin.listen = None;
        config.server.max_sessions_per_client = 0;
        let cfg: crate::config::ReplayConfig = serde_json::from_value(serde_json::json!({
            "tape": self.tape,
            "matching": self.matching,
            "speed": self.speed,
            "instant": self.instant,
            "ignore": self.ignore,
        }))
        .map_err(|e| format!("replay: {e}"))?;
        only_upstream(&mut config, "replay", UpstreamConfig::Replay(cfg));
        if self.stdio {
            config.mode = Some("forward");
        }
        config.validate().map_err(|e| format!("<command line>: {e}"))?;
        Ok(config)
    }
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load and validate a file, as the gateway would at start-up.
    Validate {
        /// The file.
        file: PathBuf,
    },
    /// Print the embedded default configuration.
    Default,
}

impl GatewayArgs {
    /// The configuration: the file or the embedded default, with flags applied.
    pub fn resolve(&self) -> Result<Config, String> {
        self.apply(base_config(self.config.as_deref())?)
    }

    /// Applies the flags to `config`.
    fn apply(&self, mut config: Config) -> Result<Config, String> {
        if let Some(listen) = &self.listen {
            config.server.listen = listen.clone();
        }
        if let Some(admin) = &self.admin {
            config.admin.listen = Some(admin.clone());
        }
        let cli_upstream = if let Some(url) = &self.upstream {
            let cfg: HttpConfig =
                serde_json::from_value(serde_json::json!({ "url": url })).map_err(|e| format!("--upstream: {e}"))?;
            Some(UpstreamConfig::Http(cfg))
        } else {
            stdio_upstream(&self.command)?
        };
        if let Some(upstream) = cli_upstream {
            only_upstream(&mut config, "cli", upstream);
        }
        if let Some(file) = &self.rules {
            with_rules(&mut config, file)?;
        }
        if let Some(dir) = &self.record {
            with_record(&mut config, dir)?;
        }
        config.validate().map_err(|e| format!("<command line>: {e}"))?;
        Ok(config)
    }
}

/// The configuration file at `path`, else the embedded default.
fn base_config(path: Option<&std::path::Path>) -> Result<Config, String> {
    match path {
        Some(path) => load_checked(path),
        None => Config::embedded_default().map_err(|e| e.to_string()),
    }
}

/// A configuration file, with its pipeline checked as the gateway would build it
/// (stage names, order and options: the stages are not the config's to know).
fn load_checked(path: &std::path::Path) -> Result<Config, String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let specs = config.stage_specs().map_err(|e| format!("{}: {e}", path.display()))?;
    let routes = config.effective_routes().into_iter().map(|r| (r.path, r.upstream)).collect();
    let stages = specs.iter().map(|s| s.name.clone()).collect();
    let ctx = crate::layers::BuildContext { routes: std::sync::Arc::new(routes), stages, ..Default::default() };
    crate::layers::check_pipeline(&specs, &ctx).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(config)
}

/// The stdio upstream of a `-- COMMAND [ARGS...]`, if one was given.
fn stdio_upstream(command: &[String]) -> Result<Option<UpstreamConfig>, String> {
    let Some((program, args)) = command.split_first() else { return Ok(None) };
    let cfg: StdioConfig = serde_json::from_value(serde_json::json!({ "command": program, "args": args }))
        .map_err(|e| format!("-- COMMAND: {e}"))?;
    Ok(Some(UpstreamConfig::Stdio(cfg)))
}

/// Sets `key` of `stage`'s options to `value` where the pipeline lists the stage;
/// whether it does.
fn set_stage_option(config: &mut Config, stage: &str, key: &str, value: &str) -> bool {
    use crate::config::StageEntry;
    let Some(entry) = config.pipeline.iter_mut().find(|e| names_stage(e, stage)) else {
        return false;
    };
    if let StageEntry::Name(_) = entry {
        *entry = stage_with(stage, key, value);
        return true;
    }
    if let StageEntry::WithOptions(map) = entry {
        let options = map.entry(stage.to_owned()).or_insert(serde_json::Value::Null);
        if !options.is_object() {
            *options = serde_json::json!({});
        }
        options[key] = serde_json::json!(value);
    }
    true
}

/// Whether a pipeline entry is `stage`.
fn names_stage(entry: &crate::config::StageEntry, stage: &str) -> bool {
    match entry {
        crate::config::StageEntry::Name(name) => name == stage,
        crate::config::StageEntry::WithOptions(map) => map.contains_key(stage),
    }
}

/// A pipeline entry: `stage` with the one option `key: value`.
fn stage_with(stage: &str, key: &str, value: &str) -> crate::config::StageEntry {
    crate::config::StageEntry::WithOptions([(stage.to_owned(), serde_json::json!({ key: value }))].into())
}

/// Records to `dir`: sets the `record` stage's `dir`, or adds the stage last in the
/// pipeline (innermost: it records what the stages before it let through).
fn with_record(config: &mut Config, dir: &std::path::Path) -> Result<(), String> {
    let dir = dir.to_str().ok_or_else(|| format!("--record {}: not a UTF-8 path", dir.display()))?;
    if !set_stage_option(config, "record", "dir", dir) {
        config.pipeline.push(stage_with("record", "dir", dir));
    }
    Ok(())
}

/// Intercepts with the rules in `file`: sets the `intercept` stage's `rules`, or adds
/// the stage last in the pipeline but before `record` (so that tapes hold what the
/// rules let through and what they answered).
fn with_rules(config: &mut Config, file: &std::path::Path) -> Result<(), String> {
    let file = file.to_str().ok_or_else(|| format!("--rules {}: not a UTF-8 path", file.display()))?;
    if !set_stage_option(config, "intercept", "rules", file) {
        let at = config.pipeline.iter().position(|e| names_stage(e, "record")).unwrap_or(config.pipeline.len());
        config.pipeline.insert(at, stage_with("intercept", "rules", file));
    }
    Ok(())
}

/// Makes `upstream` the configuration's only upstream (and so the one route's).
fn only_upstream(config: &mut Config, name: &str, upstream: UpstreamConfig) {
    config.upstreams.clear();
    config.upstreams.insert(name.into(), upstream);
    config.routes.clear();
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config(ConfigCommand::Validate { file }) => match load_checked(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        Command::Config(ConfigCommand::Default) => {
            print!("{}", crate::config::DEFAULT_YAML);
            ExitCode::SUCCESS
        }
        Command::Tape(cmd) => tape::run(cmd),
        Command::Intercept(cmd) => intercept::run(cmd),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Auth(cmd) => auth::run(cmd),
        Command::Replay(args) if args.stdio => {
            let _log_guard = crate::telemetry::init_logging(cli.log_json);
            let config = match args.resolve() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("shadowcat: {e}");
                    return ExitCode::from(2);
                }
            };
            run_async(2, async { crate::forward::run_stdio(config).await.map(|_| ()) })
        }
        Command::Replay(args) => run_gateway(cli.log_json, args.resolve()),
        Command::DemoServer => {
            run_async(1, async { crate::demo::serve_stdio().await.map_err(|e| format!("demo server: {e}")) })
        }
        Command::Gateway(args) => run_gateway(cli.log_json, args.resolve()),
        Command::Forward(ForwardCommand::Http(args)) => run_gateway(cli.log_json, args.resolve()),
        Command::Forward(ForwardCommand::Stdio(args)) => {
            let file = match &args.log_file {
                Some(path) => match std::fs::OpenOptions::new().create(true).append(true).open(path) {
                    Ok(f) => Some(f),
                    Err(e) => {
                        eprintln!("shadowcat: --log-file {}: {e}", path.display());
                        return ExitCode::from(2);
                    }
                },
                None => None,
            };
            let _log_guard = crate::telemetry::init_logging_to(cli.log_json, file);
            let config = match args.resolve() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("shadowcat: {e}");
                    return ExitCode::from(2);
                }
            };
            let mut code = 0;
            let exit = run_async(2, async {
                code = crate::forward::run_stdio(config).await?;
                Ok(())
            });
            if exit != ExitCode::SUCCESS {
                return exit;
            }
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
    }
}

/// Runs the gateway on a resolved configuration.
fn run_gateway(log_json: bool, config: Result<Config, String>) -> ExitCode {
    let _log_guard = crate::telemetry::init_logging(log_json);
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shadowcat: {e}");
            return ExitCode::from(2);
        }
    };
    // With thread_per_core the front threads do the serving: the main runtime only runs
    // signals, admin, expiry and health checks.
    let main_threads = if config.server.thread_per_core { 1 } else { config.server.worker_threads };
    run_async(main_threads, crate::gateway::run(config))
}

fn run_async<F: std::future::Future<Output = Result<(), String>>>(worker_threads: usize, fut: F) -> ExitCode {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if worker_threads > 0 {
        builder.worker_threads(worker_threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shadowcat: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(fut);
    // A blocking read of stdin (forward stdio) never ends on its own: do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shadowcat: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stages(config: &Config) -> Vec<(String, serde_json::Value)> {
        config.stage_specs().expect("specs").into_iter().map(|s| (s.name, s.options)).collect()
    }

    #[test]
    fn rules_and_record_flags_place_or_set_their_stages() {
        let yaml = "pipeline: [metrics, record]\nupstreams: {a: {stdio: {command: x}}}\n";
        let mut config = Config::from_yaml(yaml, "t.yaml").expect("config");
        with_rules(&mut config, std::path::Path::new("r.yaml")).expect("rules");
        with_record(&mut config, std::path::Path::new("tapes")).expect("record");
        let names: Vec<_> = stages(&config).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["metrics", "intercept", "record"], "intercept goes before record");
        assert_eq!(stages(&config)[1].1, serde_json::json!({"rules": "r.yaml"}));
        assert_eq!(stages(&config)[2].1, serde_json::json!({"dir": "tapes"}));

        let yaml = "pipeline: [{intercept: {rules: old.yaml}}, access_log]\nupstreams: {a: {stdio: {command: x}}}\n";
        let mut config = Config::from_yaml(yaml, "t.yaml").expect("config");
        with_rules(&mut config, std::path::Path::new("new.yaml")).expect("rules");
        assert_eq!(stages(&config)[0], ("intercept".into(), serde_json::json!({"rules": "new.yaml"})));
        assert_eq!(stages(&config).len(), 2);
    }
}
