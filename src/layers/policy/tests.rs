//! Loading, checking and deciding, and the stage over a `service_fn` upstream
//! (no sockets). End-to-end runs with a real identity provider, real servers and
//! both eras are in `tests/policy.rs`.

use futures_util::StreamExt;
use serde_json::json;
use tower::{service_fn, ServiceExt};

use super::*;
use crate::error::GatewayError;
use crate::pipeline::{McpReply, McpService, ReplyBody};
use crate::protocol::{id_value, ProtocolVersion};

fn load(files: &[(&str, &str)]) -> Result<Policies, String> {
    let sources = files.iter().map(|(f, t)| (format!("/etc/policies/{f}"), (*t).to_owned())).collect();
    Policies::from_sources(sources).map(|(p, _)| p)
}

fn alice() -> Subject {
    Subject::from_claims(&json!({
        "iss": "https://login.example", "sub": "alice", "client_id": "desk",
        "groups": ["eng"], "scope": "mcp:tools math", "tier": {"level": 3}
    }))
}

fn ask(p: &Policies, who: &Subject, action: Action, target: Target, arguments: Option<Value>) -> Decision {
    let q = Query {
        subject: who,
        action,
        target: &target,
        upstream: "db",
        route: "/mcp",
        arguments: arguments.as_ref(),
        protocol: "2025-11-25",
        method: "tools/call",
    };
    p.decide(&q)
}

const SQL: &str = r#"
@id("tools-for-eng")
permit (principal, action == Shadowcat::Action::"call_tool", resource in Shadowcat::Upstream::"db")
when { principal.groups.contains("eng") };

@id("no-drop")
forbid (principal, action == Shadowcat::Action::"call_tool", resource == Shadowcat::Tool::"run_sql")
when { context.arguments.query like "DROP*" };
"#;

#[test]
fn the_built_in_schema_parses_and_every_action_is_in_it() {
    let schema = engine::schema();
    for action in Action::ALL {
        let uid: cedar_policy::EntityUid = format!(r#"Shadowcat::Action::"{}""#, action.name()).parse().expect("uid");
        assert!(schema.actions().any(|a| a == &uid), "{} is not in the schema", action.name());
        assert_eq!(Action::parse(action.name()), Some(action));
    }
}

#[test]
fn default_deny_permit_and_forbid_beats_permit_on_arguments() {
    let p = load(&[("sql.cedar", SQL)]).expect("loads");
    let who = alice();
    let select = ask(&p, &who, Action::CallTool, Target::Tool("run_sql".into()), Some(json!({"query": "SELECT 1"})));
    assert!(select.allowed, "{select:?}");
    assert_eq!(select.policies, ["tools-for-eng"]);
    let drop = ask(&p, &who, Action::CallTool, Target::Tool("run_sql".into()), Some(json!({"query": "DROP TABLE t"})));
    assert!(!drop.allowed);
    assert_eq!(drop.policies, ["no-drop"]);
    // A call without the argument: the forbid cannot apply (an error skips it).
    assert!(ask(&p, &who, Action::CallTool, Target::Tool("run_sql".into()), None).allowed);
    // No policy permits listing or prompts: denied by default, with no policy named.
    let list = ask(&p, &who, Action::ListTools, Target::Upstream, None);
    assert!(!list.allowed && list.policies.is_empty());
    let bob = Subject::from_claims(&json!({"sub": "bob", "groups": ["sales"]}));
    assert!(!ask(&p, &bob, Action::CallTool, Target::Tool("echo".into()), None).allowed);
}

#[test]
fn claims_scopes_client_and_parents_are_seen() {
    let text = r#"
permit (principal == Shadowcat::User::"alice", action == Shadowcat::Action::"get_prompt", resource)
when { principal.claims.tier.level >= 3 && principal.scopes.contains("math") && principal.client_id == "desk" };
permit (principal, action == Shadowcat::Action::"read_resource", resource in Shadowcat::Route::"/mcp")
when { principal.issuer == "https://login.example" && context.protocol == "2025-11-25" && resource.uri like "file:///*" };
"#;
    let p = load(&[("a.cedar", text)]).expect("loads");
    let who = alice();
    let d = ask(&p, &who, Action::GetPrompt, Target::Prompt("greet".into()), None);
    assert!(d.allowed, "{d:?}");
    assert_eq!(d.policies, ["a.cedar:2"], "a policy without @id is named by file and line");
    assert!(ask(&p, &who, Action::ReadResource, Target::Resource("file:///x".into()), None).allowed);
    assert!(!ask(&p, &who, Action::ReadResource, Target::Resource("demo://x".into()), None).allowed);
    let low =
        Subject::from_claims(&json!({"sub": "alice", "tier": {"level": 1}, "scope": "math", "client_id": "desk"}));
    assert!(!ask(&p, &low, Action::GetPrompt, Target::Prompt("greet".into()), None).allowed);
    assert!(!ask(&p, &Subject::anonymous(), Action::GetPrompt, Target::Prompt("greet".into()), None).allowed);
}

#[test]
fn has_tests_on_claims_and_arguments_are_not_impossible() {
    let text = r#"@id("trial")
forbid (principal, action == Shadowcat::Action::"call_tool", resource)
when { principal.claims has tier && principal.claims.tier == "trial" && context.arguments has limit && context.arguments.limit > 10 };
permit (principal, action == Shadowcat::Action::"call_tool", resource);"#;
    let (p, warnings) =
        Policies::from_sources(vec![("t.cedar".into(), text.into())]).map_err(|e| e.to_string()).expect("loads");
    assert!(warnings.is_empty(), "{warnings:?}");
    let trial = Subject::from_claims(&json!({"sub": "t", "tier": "trial"}));
    assert!(!ask(&p, &trial, Action::CallTool, Target::Tool("q".into()), Some(json!({"limit": 50}))).allowed);
    assert!(ask(&p, &trial, Action::CallTool, Target::Tool("q".into()), Some(json!({"limit": 5}))).allowed);
    assert!(ask(&p, &alice(), Action::CallTool, Target::Tool("q".into()), Some(json!({"limit": 50}))).allowed);
    // The rest of such a policy is still checked.
    let wrong = r#"permit (principal, action, resource) when { principal.claims has x && resource like "a*" };"#;
    assert!(load(&[("w.cedar", wrong)]).is_err());
}

#[test]
fn arguments_cannot_forge_entities() {
    // A client's `{"__entity": ...}` stays a record: it is no reference to an admin.
    let text = r#"permit (principal, action == Shadowcat::Action::"call_tool", resource)
when { context.arguments.as == Shadowcat::User::"admin" };"#;
    let p = load(&[("f.cedar", text)]);
    // The schema knows no entity-typed arguments; the comparison is ill-typed only
    // when the validator can tell, so load or not, the call must not pass.
    if let Ok(p) = p {
        let forged = json!({"as": {"__entity": {"type": "Shadowcat::User", "id": "admin"}}});
        assert!(!ask(&p, &alice(), Action::CallTool, Target::Tool("x".into()), Some(forged)).allowed);
    }
}

#[test]
fn bad_files_are_rejected_with_file_and_line() {
    let e = load(&[("ok.cedar", SQL), ("bad.cedar", "\n\npermit (principal, action, resource) when { principal. };")])
        .map(|_| ())
        .expect_err("refused");
    assert!(e.contains("/etc/policies/bad.cedar:3:"), "{e}");
    let typo = "permit (principal, action == Shadowcat::Action::\"call_tool\", resource)\nwhen { principal.groupz.contains(\"x\") };";
    let e = load(&[("typo.cedar", typo)]).map(|_| ()).expect_err("refused");
    assert!(e.contains("/etc/policies/typo.cedar:2:") && e.contains("groupz"), "{e}");
    let e = load(&[("u.cedar", "permit (principal == Shadowcat::Uzer::\"a\", action, resource);")])
        .map(|_| ())
        .expect_err("refused");
    assert!(e.contains("u.cedar:1:") && e.contains("Uzer"), "{e}");
    let twice = "@id(\"x\") permit (principal, action, resource);\n@id(\"x\") forbid (principal, action, resource);";
    let e = load(&[("t.cedar", twice)]).map(|_| ()).expect_err("refused");
    assert!(e.contains("t.cedar:2") && e.contains("used twice"), "{e}");
    let template = "permit (principal == ?principal, action, resource);";
    assert!(load(&[("tp.cedar", template)]).map(|_| ()).expect_err("refused").contains("templates"));
}

#[test]
fn an_empty_directory_denies_everything() {
    let p = load(&[]).expect("no files is no policies");
    assert!(p.is_empty());
    assert!(!ask(&p, &alice(), Action::CallTool, Target::Tool("echo".into()), None).allowed);
}

fn msg(v: Value) -> Message {
    Message::from_value(&v)
}

/// An upstream with three tools, resources and prompts; a call answers `{"ok": <tool>}`.
fn upstream() -> McpService {
    McpService::new(service_fn(|req: McpRequest| async move {
        let m = req.msg().cloned().ok_or_else(|| GatewayError::Internal("no message".into()))?;
        let id = m.id_key().map(id_value).unwrap_or(Value::Null);
        let result = match m.method() {
            Some("tools/list") => {
                json!({"tools": [{"name": "run_sql"}, {"name": "echo"}, {"name": "secret"}], "nextCursor": "2"})
            }
            Some("prompts/list") => json!({"prompts": [{"name": "greet"}]}),
            _ => json!({"ok": m.tool_name()}),
        };
        let messages = vec![
            msg(json!({"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///secret"}})),
            msg(json!({"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///open"}})),
            msg(json!({"jsonrpc":"2.0","id":id,"result":result})),
        ];
        Ok::<_, GatewayError>(McpReply::stream(Box::pin(futures_util::stream::iter(messages))))
    }))
}

fn guard(text: &str) -> McpService {
    let policies = load(&[("p.cedar", text)]).expect("loads");
    let routes = Arc::new(std::collections::HashMap::from([("/mcp".to_owned(), "db".to_owned())]));
    StageLayer::new(Guard { policies: Shared::new(policies), routes, made: Arc::default(), noted: false })
        .service(upstream())
}

fn request(method: &str, params: Value) -> McpRequest {
    let m = msg(json!({"jsonrpc":"2.0","id":7,"method":method,"params":params}));
    let mut req = McpRequest::message(m, "/mcp".into(), ProtocolVersion::V2025_11_25);
    let claims = json!({"sub": "alice", "groups": ["eng"]});
    req.context.extensions.insert(Principal { id: "iss alice".into(), claims: Arc::new(claims) });
    req
}

async fn messages(reply: McpReply) -> Vec<Value> {
    match reply.body {
        ReplyBody::Message(m) => vec![m.to_value().expect("json")],
        ReplyBody::Stream(s) => s.map(|m| m.to_value().expect("json")).collect().await,
        ReplyBody::Accepted => vec![],
    }
}

const STAGE_POLICIES: &str = r#"
permit (principal, action in [Shadowcat::Action::"list_tools", Shadowcat::Action::"call_tool"], resource)
when { principal.groups.contains("eng") };
forbid (principal, action == Shadowcat::Action::"call_tool", resource == Shadowcat::Tool::"secret");
permit (principal, action == Shadowcat::Action::"read_resource", resource == Shadowcat::Resource::"file:///open");
"#;

#[tokio::test]
async fn lists_show_only_what_may_be_used_and_denied_calls_look_unknown() {
    let svc = guard(STAGE_POLICIES);
    let list = messages(svc.clone().oneshot(request("tools/list", json!({}))).await.expect("list")).await;
    let last = list.last().expect("a response");
    let names: Vec<&str> =
        last["result"]["tools"].as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["run_sql", "echo"]);
    assert_eq!(last["result"]["nextCursor"], "2", "the rest of the result stays");
    // Resource updates: only the readable one is delivered.
    let uris: Vec<&str> = list.iter().filter_map(|m| m["params"]["uri"].as_str()).collect();
    assert_eq!(uris, ["file:///open"]);

    let denied =
        messages(svc.clone().oneshot(request("tools/call", json!({"name": "secret"}))).await.expect("call")).await;
    assert_eq!(denied.len(), 1, "answered without the upstream: {denied:?}");
    assert_eq!(denied[0]["error"]["code"], -32602);
    assert_eq!(denied[0]["error"]["message"], "Unknown tool: secret");
    assert_eq!(denied[0]["id"], 7);
    let allowed =
        messages(svc.clone().oneshot(request("tools/call", json!({"name": "echo"}))).await.expect("call")).await;
    assert_eq!(allowed.last().expect("result")["result"]["ok"], "echo");

    // No permit for prompts: the list is empty, a get is for an unknown prompt.
    let prompts = messages(svc.clone().oneshot(request("prompts/list", json!({}))).await.expect("list")).await;
    assert_eq!(prompts, [json!({"jsonrpc":"2.0","id":7,"result":{"prompts":[]}})]);
    let read =
        messages(svc.clone().oneshot(request("resources/read", json!({"uri": "file:///secret"}))).await.expect("read"))
            .await;
    assert_eq!(read[0]["error"]["code"], -32002);
    // Plumbing is not subject to policy.
    let ping = messages(svc.oneshot(request("ping", json!({}))).await.expect("ping")).await;
    assert!(ping.last().expect("pong")["result"].is_object());
}

#[test]
fn the_principal_comes_from_the_token_claims() {
    let s = Subject::from_claims(&json!({"sub": "svc", "azp": "robot", "scp": ["a", "b"], "groups": "ops dev"}));
    assert_eq!(s.sub, "svc");
    let p = load(&[(
        "c.cedar",
        r#"permit (principal, action == Shadowcat::Action::"list_prompts", resource)
when { principal.client_id == "robot" && principal.scopes.contains("b") && principal.groups.contains("dev") };"#,
    )])
    .expect("loads");
    assert!(ask(&p, &s, Action::ListPrompts, Target::Upstream, None).allowed);
}

#[test]
fn decisions_are_kept_by_what_the_policies_read() {
    let p = load(&[("sql.cedar", SQL)]).expect("loads");
    assert_eq!(p.reads, Some(vec![vec!["arguments".to_owned(), "query".to_owned()]]));
    let timed = r#"permit (principal, action, resource) when { context.time > 0 };"#;
    assert_eq!(load(&[("t.cedar", timed)]).expect("loads").reads, None, "time: never kept");
    let none = r#"permit (principal, action, resource) when { principal.groups.contains("eng") };"#;
    assert_eq!(load(&[("n.cedar", none)]).expect("loads").reads, Some(vec![]));

    // The same call twice is one decision; another query is another.
    let who = Arc::new(alice());
    let ask_kept = |query: &str| {
        let arguments = json!({"query": query, "other": query.len()});
        let target = Target::Tool("run_sql".into());
        let q = Query {
            subject: &who,
            action: Action::CallTool,
            target: &target,
            upstream: "db",
            route: "/mcp",
            arguments: Some(&arguments),
            protocol: "2025-11-25",
            method: "tools/call",
        };
        let entities = engine::entities(&who, &target, "db", "/mcp").expect("entities");
        p.decide_kept(&who, &q, &entities)
    };
    assert!(ask_kept("SELECT 1").allowed);
    assert!(ask_kept("SELECT 1").allowed);
    assert_eq!(p.decisions.len(), 1);
    assert!(!ask_kept("DROP TABLE t").allowed, "a kept decision never answers another query");
    assert!(ask_kept("SELECT 2").allowed);
    assert_eq!(p.decisions.len(), 3);
}
