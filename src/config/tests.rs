use super::*;

#[test]
fn embedded_default_loads() {
    let c = Config::embedded_default().expect("default is valid");
    assert_eq!(c.server.listen, "127.0.0.1:8080");
    assert_eq!(c.effective_routes()[0].path, "/mcp");
    assert!(matches!(c.upstreams.get("demo"), Some(UpstreamConfig::Stdio(_))));
}

#[test]
fn unknown_key_names_line_and_key() {
    let yaml = "server:\n  listen: 127.0.0.1:1\n  lisen: 2\nupstreams:\n  a:\n    stdio: {command: x}\n";
    let err = Config::from_yaml(yaml, "test.yaml").expect_err("unknown key");
    let text = err.to_string();
    assert!(text.starts_with("test.yaml: "), "{text}");
    assert!(text.contains("lisen"), "{text}");
    assert!(text.contains('3'), "line number missing: {text}");
}

#[test]
fn refuses_non_loopback_unless_allowed() {
    let yaml = "server: {listen: 0.0.0.0:8080}\nupstreams: {a: {stdio: {command: x}}}\n";
    let err = Config::from_yaml(yaml, "t").expect_err("non-loopback");
    assert!(err.to_string().contains("allow_non_loopback"), "{err}");
    let yaml = "server: {listen: 0.0.0.0:8080, allow_non_loopback: true}\nupstreams: {a: {stdio: {command: x}}}\n";
    Config::from_yaml(yaml, "t").expect("allowed");
}

#[test]
fn validates_references() {
    let yaml = "routes: [{path: /mcp, upstream: b}]\nupstreams: {a: {stdio: {command: x}}}\n";
    assert!(Config::from_yaml(yaml, "t").expect_err("bad route").to_string().contains("routes[0].upstream"));
    let yaml = "upstreams: {a: {stdio: {command: x, warm: 5, max_sessions: 2}}}\n";
    assert!(Config::from_yaml(yaml, "t").expect_err("warm").to_string().contains("upstreams.a.stdio.warm"));
    let yaml = "upstreams: {a: {http: {url: 'ftp://x'}}}\n";
    assert!(Config::from_yaml(yaml, "t").expect_err("url").to_string().contains("http.url"));
    let yaml =
        "upstreams: {a: {http: {url: 'http://x/mcp', headers: {Authorization: {env: SHADOWCAT_TEST_UNSET_VAR}}}}}\n";
    let err = Config::from_yaml(yaml, "t").expect_err("env");
    assert!(err.to_string().contains("SHADOWCAT_TEST_UNSET_VAR"), "{err}");
}

#[test]
fn max_header_bytes_is_at_least_what_hyper_takes() {
    let yaml = "server: {max_header_bytes: 4096}\nupstreams: {a: {stdio: {command: x}}}\n";
    let err = Config::from_yaml(yaml, "t").expect_err("too small").to_string();
    assert!(err.contains("server.max_header_bytes: must be at least 8192"), "{err}");
    let yaml = "server: {max_header_bytes: 65536}\nupstreams: {a: {stdio: {command: x}}}\n";
    assert_eq!(Config::from_yaml(yaml, "t").expect("valid").server.max_header_bytes, 65536);
}

#[test]
fn durations_and_stage_options_parse() {
    let yaml = "server: {session_idle_timeout: 90s}\npipeline: [{access_log: {level: debug}}]\n\
                upstreams: {a: {stdio: {command: x, request_timeout: 250ms}}}\n";
    let c = Config::from_yaml(yaml, "t").expect("valid");
    assert_eq!(c.server.session_idle_timeout, std::time::Duration::from_secs(90));
    let specs = c.stage_specs().expect("specs");
    assert_eq!(specs[0].name, "access_log");
    let yaml = "server: {session_idle_timeout: soon}\nupstreams: {a: {stdio: {command: x}}}\n";
    assert!(Config::from_yaml(yaml, "t").expect_err("bad duration").to_string().contains("soon"));
}

#[test]
fn every_example_in_config_dir_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("config dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
            seen += 1;
        }
    }
    assert!(seen >= 1, "no examples found in {}", dir.display());
}

#[test]
fn era_pool_and_bridge_keys_are_checked() {
    let ok = "upstreams: {a: {stdio: {command: x, era: modern, pool: {min: 0, max: 2, idle_timeout: 1m}}}}\nbridge: {state_ttl: 30s, cache_scope: public}\n";
    let c = Config::from_yaml(ok, "t").expect("valid");
    assert_eq!(c.bridge.cache_scope, crate::config::CacheScope::Public);
    assert_eq!(c.bridge.state_ttl, std::time::Duration::from_secs(30));
    for (bad, needle) in [
        ("upstreams: {a: {stdio: {command: x, era: sideways}}}\n", "sideways"),
        ("upstreams: {a: {http: {url: 'http://h/mcp', pool: {maximum: 2}}}}\n", "maximum"),
        ("upstreams: {a: {stdio: {command: x}}}\nbridge: {cache_scope: shared}\n", "shared"),
        ("upstreams: {a: {stdio: {command: x}}}\nbridge: {state_ttl: later}\n", "later"),
    ] {
        let e = Config::from_yaml(bad, "t").expect_err(bad).to_string();
        assert!(e.contains(needle), "{bad}: {e}");
    }
}
