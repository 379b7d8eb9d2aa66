//! Bad configurations: Envoy refuses them, and the filter's log line names
//! the field at fault.

use edge_auth_e2e::tokens::{key, Alg};
use edge_auth_e2e::{Envoy, EnvoyOptions};
use serde_json::{json, Value};

fn provider() -> Value {
    json!({
        "name": "p", "issuer": "https://p.e2e", "audiences": ["a"], "algorithms": ["HS256"],
        "hmac_secrets": [{"env": "E2E_CFG_SECRET", "alg": "HS256"}]
    })
}

fn refused(config: Value, env: &[(&str, &str)], field: &str) {
    let mut opts = EnvoyOptions::new(config, 1);
    for (k, v) in env {
        opts = opts.env(k, v);
    }
    let log = Envoy::start_expect_failure(opts);
    let line = log
        .lines()
        .find(|l| l.contains("edge-auth: configuration refused"))
        .unwrap_or_else(|| panic!("no refusal line in the log:\n{log}"));
    assert!(line.contains(field), "the refusal does not name `{field}`: {line}");
}

const SECRET: (&str, &str) = ("E2E_CFG_SECRET", "0123456789abcdef0123456789abcdef");

#[test]
fn unknown_field_is_refused() {
    let mut p = provider();
    p["audience"] = json!("typo");
    refused(json!({"providers": [p]}), &[SECRET], "audience");
}

#[test]
fn unknown_algorithm_is_refused() {
    let mut p = provider();
    p["algorithms"] = json!(["HS256", "HS999"]);
    refused(json!({"providers": [p]}), &[SECRET], "providers[0].algorithms[1]");
}

#[test]
fn bad_key_is_refused() {
    let mut p = provider();
    p["algorithms"] = json!(["HS256", "ES256"]);
    p["pem_keys"] = json!([{"alg": "ES256", "pem": "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----"}]);
    refused(json!({"providers": [p]}), &[SECRET], "providers[0].pem_keys[0].pem");
    // an RSA JWK offered for an EC-only provider
    let mut p = provider();
    p["algorithms"] = json!(["HS256", "ES256"]);
    let mut jwk = key(Alg::RS256).jwk();
    jwk["alg"] = json!("RS256");
    p["jwks"] = json!({"keys": [jwk]});
    refused(json!({"providers": [p]}), &[SECRET], "providers[0].jwks");
}

#[test]
fn malformed_json_is_refused() {
    let mut opts = EnvoyOptions::new(json!({}), 1);
    let mut bootstrap = opts.bootstrap().unwrap_or_else(|e| panic!("{e}"));
    // Replace the configuration string itself with broken JSON.
    let text = bootstrap
        .to_string()
        .replace("\"value\":\"{}\"", "\"value\":\"{\\\"providers\\\": [\"");
    assert_ne!(
        text,
        bootstrap.to_string(),
        "configuration value not found in the bootstrap"
    );
    bootstrap = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    opts.startup_timeout = std::time::Duration::from_secs(20);
    let log = match Envoy::start_with_bootstrap(&opts, &bootstrap) {
        Ok(envoy) => panic!("Envoy accepted malformed JSON:\n{}", envoy.log()),
        Err(e) => e.0,
    };
    assert!(log.contains("edge-auth: configuration refused"), "{log}");
}

#[test]
fn missing_secret_in_the_environment_is_refused() {
    refused(
        json!({"providers": [provider()]}),
        &[],
        "providers[0].hmac_secrets[0].env",
    );
}

#[test]
fn weak_secret_and_rule_errors_are_refused() {
    refused(
        json!({"providers": [provider()]}),
        &[("E2E_CFG_SECRET", "short")],
        "providers[0].hmac_secrets[0].env",
    );
    refused(
        json!({"providers": [provider()], "rules": [{"name": "r", "match": {"prefix": "/"}, "jwt": {"providers": ["nope"]}}]}),
        &[SECRET],
        "rules[0].jwt.providers[0]",
    );
}
