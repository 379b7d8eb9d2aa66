use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

use super::providers::decode_secret;
use crate::token_source::TokenSource;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn env(name: &str) -> Option<String> {
    match name {
        "HS_SECRET" => Some(SECRET.into()),
        "SHORT" => Some("short".into()),
        "HEX" => Some("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff".into()),
        _ => None,
    }
}

fn base() -> Value {
    json!({
        "providers": [{
            "name": "demo",
            "issuer": "https://issuer.example",
            "audiences": ["api"],
            "algorithms": ["HS256"],
            "hmac_secrets": [{"env": "HS_SECRET", "alg": "HS256"}],
            "claim_headers": [{"claim": "sub", "header": "X-Auth-Subject"}],
            "payload_header": "x-jwt-payload"
        }],
        "rules": [
            {"name": "health", "match": {"path": "/health"}, "public": true},
            {"name": "api", "match": {"prefix": "/api/", "methods": ["GET"]}, "jwt": {"providers": ["demo"]}}
        ]
    })
}

fn parse_value(v: &Value) -> Result<Config, ConfigError> {
    parse(v.to_string().as_bytes(), &env)
}

/// Applies `edit` to a copy of the base config and returns the error it causes.
fn error_of(edit: impl FnOnce(&mut Value)) -> ConfigError {
    let mut v = base();
    edit(&mut v);
    parse_value(&v).expect_err("config should be refused")
}

#[test]
fn base_config_compiles() {
    let c = parse_value(&base()).unwrap();
    assert_eq!(c.providers.len(), 1);
    assert_eq!(c.providers[0].static_keys.len(), 1);
    assert_eq!(
        c.written_headers,
        vec!["x-auth-subject".to_string(), "x-jwt-payload".to_string()]
    );
    assert_eq!(c.max_token_bytes, 8192);
    assert!(c.providers[0].require_expiration);
    assert_eq!(c.providers[0].leeway_s, 60);
    assert!(!c.providers[0].forward_token);
    assert_eq!(
        c.providers[0].sources,
        vec![TokenSource::Header {
            name: "authorization".into(),
            scheme: Some("Bearer".into())
        }]
    );
}

#[test]
fn errors_name_the_field() {
    type Edit = Box<dyn FnOnce(&mut Value)>;
    let cases: Vec<(Edit, &str)> = vec![
        (Box::new(|v| v["bogus"] = json!(1)), "bogus"),
        (Box::new(|v| v["providers"][0]["audience"] = json!("x")), "audience"),
        (
            Box::new(|v| v["providers"][0]["algorithms"] = json!(["HS256", "none"])),
            "providers[0].algorithms[1]",
        ),
        (
            Box::new(|v| v["providers"][0]["algorithms"] = json!(["HS999"])),
            "providers[0].algorithms[0]",
        ),
        (
            Box::new(|v| v["providers"][0]["algorithms"] = json!(["HS256", "RS256"])),
            "providers[0].algorithms[1]",
        ),
        (
            Box::new(|v| v["providers"][0]["hmac_secrets"][0]["env"] = json!("MISSING")),
            "providers[0].hmac_secrets[0].env",
        ),
        (
            Box::new(|v| v["providers"][0]["hmac_secrets"][0]["env"] = json!("SHORT")),
            "providers[0].hmac_secrets[0].env",
        ),
        (
            Box::new(|v| v["providers"][0]["hmac_secrets"][0]["alg"] = json!("RS256")),
            "providers[0].hmac_secrets[0].alg",
        ),
        (
            Box::new(|v| v["providers"][0]["audiences"] = json!([])),
            "providers[0].audiences",
        ),
        (
            Box::new(|v| v["providers"][0]["leeway_s"] = json!(3600)),
            "providers[0].leeway_s",
        ),
        (
            Box::new(|v| v["providers"][0]["leeway_s"] = json!(-1)),
            "providers[0].leeway_s",
        ),
        (
            Box::new(|v| v["providers"][0]["jwks"] = json!({"keys": [{"kty": "oct", "k": "AA"}]})),
            "providers[0].jwks",
        ),
        (
            Box::new(|v| v["providers"][0]["pem_keys"] = json!([{"alg": "HS256", "pem": "x"}])),
            "providers[0].pem_keys[0].pem",
        ),
        (
            Box::new(|v| v["providers"][0]["claim_headers"][0]["header"] = json!("authorization")),
            "providers[0].claim_headers[0].header",
        ),
        (
            Box::new(|v| v["providers"][0]["claim_headers"][0]["header"] = json!("bad header")),
            "providers[0].claim_headers[0].header",
        ),
        (
            Box::new(|v| v["providers"][0]["token_sources"] = json!([{"header": "x-auth-subject"}])),
            "providers[0].token_sources",
        ),
        (
            Box::new(|v| v["providers"][0]["token_sources"] = json!([{"cookie": "a", "query": "b"}])),
            "providers[0].token_sources[0]",
        ),
        (
            Box::new(|v| v["providers"][0]["token_sources"] = json!([{"query": "a b"}])),
            "providers[0].token_sources[0].query",
        ),
        (
            Box::new(|v| v["providers"][0]["remote_jwks"] = json!({"cluster": "c", "path": "jwks"})),
            "providers[0].remote_jwks.path",
        ),
        (
            Box::new(|v| v["providers"][0]["remote_jwks"] = json!({"cluster": "c", "path": "/j", "timeout_ms": 5})),
            "providers[0].remote_jwks.timeout_ms",
        ),
        (
            Box::new(|v| v["providers"][0]["remote_jwks"] = json!({"path": "/j"})),
            "providers[0].remote_jwks",
        ),
        (
            Box::new(|v| {
                let p = v["providers"][0].clone();
                v["providers"].as_array_mut().unwrap().push(p)
            }),
            "providers[1].name",
        ),
        (
            Box::new(|v| v["rules"][1]["jwt"]["providers"] = json!(["nope"])),
            "rules[1].jwt.providers[0]",
        ),
        (Box::new(|v| v["rules"][1]["public"] = json!(true)), "rules[1]"),
        (Box::new(|v| v["rules"][0]["public"] = json!(false)), "rules[0]"),
        (
            Box::new(|v| v["rules"][0]["match"] = json!({"path": "/a", "prefix": "/b"})),
            "rules[0].match",
        ),
        (
            Box::new(|v| v["rules"][0]["match"] = json!({"path": "/a/../b"})),
            "rules[0].match.path",
        ),
        (
            Box::new(|v| v["rules"][0]["match"]["methods"] = json!(["get"])),
            "rules[0].match.methods[0]",
        ),
        (Box::new(|v| v["rules"][1]["name"] = json!("health")), "rules[1].name"),
        (Box::new(|v| v["max_token_bytes"] = json!(10)), "max_token_bytes"),
        (Box::new(|v| v["realm"] = json!("a\"b")), "realm"),
        (
            Box::new(|v| v["default_rule"] = json!({"jwt": {"providers": []}})),
            "default_rule.jwt.providers",
        ),
    ];
    for (edit, field) in cases {
        let e = error_of(edit);
        let text = e.to_string();
        assert!(text.contains(field), "expected `{field}` in: {text}");
    }
}

#[test]
fn providers_need_a_provider_field_name() {
    // the path of a missing required field is its parent; the message names the field
    let e = error_of(|v| {
        v["providers"][0].as_object_mut().unwrap().remove("issuer");
    });
    assert!(e.to_string().contains("issuer"), "{e}");
}

#[test]
fn malformed_documents_are_refused() {
    for doc in [
        "",
        "   ",
        "{",
        "[]",
        "null",
        "{\"providers\": 5}",
        "{} {}",
        "{\"rules\":[]}x",
    ] {
        assert!(parse(doc.as_bytes(), &env).is_err(), "{doc:?}");
    }
    assert!(parse(b"{}", &env).is_ok());
}

#[test]
fn secret_encodings() {
    assert_eq!(decode_secret("AAEC", SecretEncoding::Base64), Some(vec![0, 1, 2]));
    assert_eq!(decode_secret("+/8=", SecretEncoding::Base64), Some(vec![0xfb, 0xff]));
    assert_eq!(decode_secret("0aff", SecretEncoding::Hex), Some(vec![0x0a, 0xff]));
    assert_eq!(decode_secret("0af", SecretEncoding::Hex), None);
    assert_eq!(decode_secret("zz", SecretEncoding::Hex), None);
    assert_eq!(decode_secret("é1", SecretEncoding::Hex), None);
    let mut v = base();
    v["providers"][0]["hmac_secrets"][0] = json!({"env": "HEX", "alg": "HS256", "encoding": "hex"});
    assert!(parse_value(&v).is_ok());
    v["providers"][0]["hmac_secrets"][0]["encoding"] = json!("rot13");
    assert!(parse_value(&v).unwrap_err().to_string().contains("encoding"));
}

#[test]
fn remote_only_provider_needs_no_static_keys() {
    let mut v = base();
    let p = v["providers"][0].as_object_mut().unwrap();
    p.remove("hmac_secrets");
    p.insert("algorithms".into(), json!(["RS256", "ES256"]));
    p.insert("remote_jwks".into(), json!({"cluster": "idp", "path": "/jwks"}));
    let c = parse_value(&v).unwrap();
    let r = c.providers[0].remote.as_ref().unwrap();
    assert_eq!(r.authority, "idp");
    assert_eq!(r.refresh_interval_s, 300);
    assert_eq!(r.min_refetch_interval_s, 30);
}

#[test]
fn shared_token_slots_are_bounded() {
    assert_eq!(parse_value(&base()).unwrap().token_cache_shared_slots, 8192);
    for (slots, ok) in [(0, true), (1, true), (100_000, true), (100_001, false)] {
        let mut v = base();
        v["token_cache"] = json!({"shared_slots": slots});
        match parse_value(&v) {
            Ok(c) => {
                assert!(ok, "{slots}");
                assert_eq!(c.token_cache_shared_slots, slots);
                assert_eq!(c.token_cache_entries, 4096);
            }
            Err(e) => {
                assert!(!ok, "{slots}: {e}");
                assert_eq!(e.field, "token_cache.shared_slots");
            }
        }
    }
    let e = error_of(|v| v["token_cache"] = json!({"shared_slots": -1}));
    assert_eq!(e.field, "token_cache.shared_slots");
    let e = error_of(|v| v["token_cache"] = json!({"shared": 1}));
    assert!(e.message.contains("unknown field"), "{e}");
}

#[test]
fn rule_names_are_metric_safe() {
    // a rule's name is part of its metric names: edge_auth.rule.<name>.allowed
    let long = "r".repeat(65);
    for bad in [
        "a.b",
        "a b",
        "orders/read",
        "ünïcode",
        "tab\t",
        "{rule}",
        "a\"b",
        "default_rule",
        long.as_str(),
    ] {
        let e = error_of(|v| v["rules"][1]["name"] = json!(bad));
        assert!(e.to_string().contains("rules[1].name"), "{bad:?}: {e}");
    }
    for good in ["api", "orders-read", "Orders_2", "default-rule", "none"] {
        let mut v = base();
        v["rules"][1]["name"] = json!(good);
        parse_value(&v).unwrap_or_else(|e| panic!("{good:?}: {e}"));
    }
    let mut v = base();
    v["rules"][1]["name"] = json!("r".repeat(64));
    parse_value(&v).unwrap();
}
