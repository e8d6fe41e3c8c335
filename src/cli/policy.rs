//! `shadowcat policy`: the Cedar policies of the `policy` stage, checked and tried
//! without a running gateway.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::layers::policy::engine::{self, Action, Policies, Query, Subject, Target};

/// `policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check a directory of `*.cedar` files against the built-in schema: exit 0 if
    /// they load (warnings go to stderr), 1 if not, with errors naming file, line and
    /// column.
    Validate {
        /// The policy directory (the `policy` stage's `dir`).
        dir: PathBuf,
    },
    /// Print the built-in Cedar schema policies are checked against.
    Schema,
    /// Decide one request with a directory's policies: prints `allowed` or `denied`
    /// and the policies that decided. Exit 0 if allowed, 1 if denied, 2 if the
    /// policies or the request are bad.
    Check(CheckArgs),
}

/// Arguments of `policy check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The policy directory.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Who asks: `alice`, `User::"alice"` or `Shadowcat::User::"alice"` (the token's `sub`).
    #[arg(long)]
    principal: String,
    /// The principal's token claims as JSON (`{"groups":["eng"],"scope":"mcp:tools"}`):
    /// groups, scopes, client id and `principal.claims` come from them.
    #[arg(long, value_name = "JSON", default_value = "{}")]
    claims: String,
    /// The action: `call_tool`, `list_tools`, `read_resource`, `list_resources`,
    /// `list_resource_templates`, `get_prompt`, `list_prompts` or `complete`.
    #[arg(long)]
    action: String,
    /// What on: `Tool::"run_sql"`, `Resource::"file:///x"`, `Prompt::"greet"`, or
    /// `Upstream::"<name>"` for the list actions.
    #[arg(long)]
    resource: String,
    /// The upstream serving it (the resource's parent).
    #[arg(long, default_value = "up")]
    upstream: String,
    /// The route it came on (the resource's and the upstream's parent).
    #[arg(long, default_value = "/mcp")]
    route: String,
    /// The context as JSON: `arguments` (the call's arguments), and optionally
    /// `protocol` and `method`.
    #[arg(long, value_name = "JSON")]
    context: Option<String>,
}

/// Runs a `policy` subcommand.
pub fn run(cmd: PolicyCommand) -> ExitCode {
    match cmd {
        PolicyCommand::Schema => {
            print!("{}", engine::SCHEMA);
            ExitCode::SUCCESS
        }
        PolicyCommand::Validate { dir } => match Policies::load_dir(&dir) {
            Ok((policies, warnings)) => {
                for w in warnings {
                    eprintln!("warning: {w}");
                }
                println!("{}: ok ({} policies)", dir.display(), policies.len());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
        },
        PolicyCommand::Check(args) => match check(&args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("shadowcat policy check: {e}");
                ExitCode::from(2)
            }
        },
    }
}

fn check(args: &CheckArgs) -> Result<bool, String> {
    let (policies, _) = Policies::load_dir(&args.dir)?;
    let action = Action::parse(&args.action).ok_or_else(|| format!("unknown action {:?}", args.action))?;
    let target = Target::parse(&args.resource).ok_or_else(|| {
        format!(
            "resource {:?}: expected Tool::\"name\", Resource::\"uri\", Prompt::\"name\" or Upstream::\"name\"",
            args.resource
        )
    })?;
    let (target, upstream) = match target {
        Target::Upstream => {
            let name = args.resource.rsplit("::").next().unwrap_or_default().trim_matches('"').to_owned();
            (Target::Upstream, name)
        }
        t => (t, args.upstream.clone()),
    };
    let mut claims: Value = serde_json::from_str(&args.claims).map_err(|e| format!("--claims is not JSON: {e}"))?;
    let sub = args.principal.strip_prefix("Shadowcat::").unwrap_or(&args.principal);
    let sub = sub.strip_prefix("User::").map_or(sub, |s| s.trim_matches('"'));
    match claims.as_object_mut() {
        Some(map) => map.insert("sub".into(), Value::String(sub.to_owned())),
        None => return Err("--claims must be a JSON object".into()),
    };
    let context: Value = match &args.context {
        Some(text) => serde_json::from_str(text).map_err(|e| format!("--context is not JSON: {e}"))?,
        None => Value::Object(Default::default()),
    };
    let Some(fields) = context.as_object() else { return Err("--context must be a JSON object".into()) };
    if let Some(other) = fields.keys().find(|k| !["arguments", "protocol", "method"].contains(&k.as_str())) {
        return Err(format!("--context: unknown key {other:?} (arguments, protocol, method)"));
    }
    let text =
        |name: &str, default: &'static str| fields.get(name).and_then(Value::as_str).unwrap_or(default).to_owned();
    let subject = Subject::from_claims(&claims);
    let (protocol, method) = (text("protocol", "2025-11-25"), text("method", ""));
    let q = Query {
        subject: &subject,
        action,
        target: &target,
        upstream: &upstream,
        route: &args.route,
        arguments: fields.get("arguments"),
        protocol: &protocol,
        method: &method,
    };
    let d = policies.decide(&q);
    let by: Vec<String> = d
        .policies
        .iter()
        .map(|id| match policies.place(id) {
            Some(place) if place != id => format!("{id} ({place})"),
            _ => id.clone(),
        })
        .collect();
    let verdict = if d.allowed { "allowed" } else { "denied" };
    if by.is_empty() {
        println!("{verdict}: no policy permits it (default deny)");
    } else {
        println!("{verdict} by {}", by.join(", "));
    }
    for e in &d.errors {
        eprintln!("note: a policy failed to evaluate and was skipped: {e}");
    }
    Ok(d.allowed)
}
