//! The demo stack's plugin configuration (envoy/envoy.yaml, what `make run`
//! loads) is accepted by the real parser, so the demo cannot rot unnoticed.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use edge_auth_core::config;
use edge_auth_core::policy::routes::Requirement;

/// The JSON block under `configuration: value: |` in envoy/envoy.yaml.
fn demo_plugin_configuration() -> String {
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../envoy/envoy.yaml")).unwrap();
    let start = yaml.find("value: |").expect("a plugin configuration block");
    let lines = yaml[start..].lines().skip(1).filter(|l| !l.trim().is_empty());
    let first = lines.clone().next().expect("a first line");
    let indent = first.len() - first.trim_start().len();
    lines
        .take_while(|l| l.len() - l.trim_start().len() >= indent)
        .map(|l| &l[indent..])
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_demo_configuration_parses() {
    let json = demo_plugin_configuration();
    let cfg = config::parse(json.as_bytes(), &|_| {
        Some("demo-secret-0123456789abcdef0123456789".into())
    })
    .unwrap_or_else(|e| panic!("envoy/envoy.yaml: {e}"));
    assert!(cfg.api_keys.is_some());
    assert!(cfg.context.is_some());
    let kinds: Vec<&Requirement> = cfg.routes.rules().iter().map(|r| &r.policy.requirement).collect();
    assert!(kinds.iter().any(|r| matches!(r, Requirement::ApiKey { .. })));
    assert!(kinds.iter().any(|r| matches!(r, Requirement::Jwt { .. })));
}
