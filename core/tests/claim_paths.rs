//! Nested claim paths (docs/configuration.md 3.7, "Claim paths") in every
//! place a claim is named: required claims, claim headers, scope and role
//! claims, the tenant of tenant origins and of the identity headers; and the
//! configuration refusing paths that are malformed or ambiguous, naming the
//! field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::collections::HashMap;

use edge_auth_core::config::{self, Config};
use edge_auth_core::decision::{Deny, Outcome, Verdict};
use edge_auth_core::jwt::JwtError;
use jwt_simple::prelude::*;
use serde_json::{json, Value};

mod common;
use common::raw_claims;

const NOW_S: u64 = 1_800_000_000;
const SECRET: &str = "0123456789abcdef0123456789abcdef-secret";

fn doc() -> Value {
    json!({
        "providers": [{
            "name": "kc", "issuer": "https://kc", "audiences": ["api"], "algorithms": ["HS256"],
            "hmac_secrets": [{"env": "SECRET", "alg": "HS256"}],
            "required_claims": [
                {"name": "realm_access.roles", "one_of": ["member"]},
                {"name": ["https://example.com/claims", "tenant"]}
            ],
            "claim_headers": [
                {"claim": "resource_access.my-app.roles", "header": "x-app-roles"},
                {"claim": "https://example\\.com/claims.tenant", "header": "x-tenant"},
                {"claim": "a\\.b", "header": "x-literal"}
            ],
            "scope_claims": ["resource_access.my-app.scopes"],
            "role_claim": "realm_access.roles"
        }],
        "roles": {"member": {"permissions": ["orders:read"]}},
        "tenants": {"acme": {"origins": ["https://acme.example"]}},
        "context": {"tenant_claim": ["https://example.com/claims", "tenant"]},
        "rules": [
            {"name": "orders", "match": {"prefix": "/orders/"}, "jwt": {"providers": ["kc"]},
             "scopes": {"all_of": ["orders:read", "orders:list"]}},
            {"name": "tenant", "match": {"prefix": "/tenant/"}, "jwt": {"providers": ["kc"]},
             "origin": {"tenant_claim": "https://example\\.com/claims.tenant"}},
            {"name": "api", "match": {"prefix": "/"}, "jwt": {"providers": ["kc"]}}
        ]
    })
}

fn parse(doc: &Value) -> Result<Config, config::ConfigError> {
    config::parse(doc.to_string().as_bytes(), &|n| {
        (n == "SECRET").then(|| SECRET.to_owned())
    })
}

fn claims() -> Value {
    json!({
        "iss": "https://kc", "aud": "api", "sub": "alice", "iat": NOW_S - 5, "exp": NOW_S + 60,
        "realm_access": {"roles": ["member"]},
        "resource_access": {"my-app": {"roles": ["editor", "viewer"], "scopes": ["orders:list"]},
                            "other": {"scopes": ["orders:delete"]}},
        "https://example.com/claims": {"tenant": "acme"},
        "a.b": "literal",
        "a": {"b": "nested"}
    })
}

fn token(claims: Value) -> String {
    HS256Key::from_bytes(SECRET.as_bytes())
        .authenticate(raw_claims(claims))
        .unwrap()
}

fn run<'c>(cfg: &'c Config, path: &str, claims: Value, origin: Option<&str>) -> Outcome<'c> {
    let mut headers = HashMap::from([("authorization", format!("Bearer {}", token(claims)))]);
    if let Some(o) = origin {
        headers.insert("origin", o.to_owned());
    }
    common::decide_fresh(cfg, path, NOW_S * 1000, headers)
}

fn denial<'c>(o: &Outcome<'c>) -> Deny<'c> {
    match &o.verdict {
        Verdict::Deny(d) => *d,
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn edit(f: impl Fn(&mut Value)) -> Value {
    let mut c = claims();
    f(&mut c);
    c
}

#[test]
fn nested_claims_feed_required_claims_headers_scopes_roles_and_the_tenant() {
    let cfg = parse(&doc()).unwrap();
    let o = run(&cfg, "/x", claims(), None);
    let Verdict::Allow(a) = &o.verdict else {
        panic!("{:?}", o.verdict)
    };
    let t = a.token.as_ref().unwrap();
    let h: HashMap<_, _> = t.headers.iter().cloned().collect();
    assert_eq!(h["x-app-roles"], "editor,viewer", "resource_access.<client>.roles");
    assert_eq!(h["x-tenant"], "acme", "https://example.com/claims -> tenant");
    assert_eq!(h["x-literal"], "literal", "a\\.b is the claim named a.b, not a -> b");
    let ctx: HashMap<_, _> = a.context.iter().cloned().collect();
    assert_eq!(ctx["x-edge-auth-tenant"], "acme", "context.tenant_claim as an array");

    // required claims: nested value mismatched, missing, or the parent not an object
    let mismatch = edit(|c| c["realm_access"]["roles"] = json!(["guest"]));
    assert_eq!(
        denial(&run(&cfg, "/x", mismatch, None)),
        Deny::Token(JwtError::ClaimMismatch)
    );
    let missing = edit(|c| c["https://example.com/claims"] = json!({"other": 1}));
    assert_eq!(
        denial(&run(&cfg, "/x", missing, None)),
        Deny::Token(JwtError::MissingClaim)
    );
    let flat = edit(|c| {
        c["https://example.com/claims.tenant"] = json!("acme");
        c.as_object_mut().unwrap().remove("https://example.com/claims");
    });
    assert_eq!(
        denial(&run(&cfg, "/x", flat, None)),
        Deny::Token(JwtError::MissingClaim),
        "a top-level name with a dot is not the nested path"
    );
    let not_object = edit(|c| c["realm_access"] = json!("member"));
    assert_eq!(
        denial(&run(&cfg, "/x", not_object, None)),
        Deny::Token(JwtError::MissingClaim)
    );

    // scopes from a nested scope claim, permissions from nested roles: both needed
    assert!(matches!(
        run(&cfg, "/orders/1", claims(), None).verdict,
        Verdict::Allow(_)
    ));
    let other_client = edit(|c| c["resource_access"]["my-app"]["scopes"] = json!([]));
    assert_eq!(
        denial(&run(&cfg, "/orders/1", other_client, None)).name(),
        "insufficient_scope",
        "another client's scopes do not count"
    );

    // tenant origins from a nested tenant claim
    let tenant = |c: Value, origin| run(&cfg, "/tenant/x", c, Some(origin));
    assert!(matches!(
        tenant(claims(), "https://acme.example").verdict,
        Verdict::Allow(_)
    ));
    assert_eq!(
        denial(&tenant(claims(), "https://globex.example")),
        Deny::OriginNotAllowed
    );
    let no_tenant = edit(|c| c["https://example.com/claims"]["tenant"] = json!(["acme"]));
    assert_eq!(
        denial(&tenant(no_tenant, "https://acme.example")),
        Deny::OriginNotAllowed,
        "a tenant that is not a string names no tenant"
    );
}

#[test]
fn malformed_and_ambiguous_paths_are_refused_naming_the_field() {
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "providers[0].required_claims[0].name",
            Box::new(|d| d["providers"][0]["required_claims"][0]["name"] = json!("a..b")),
        ),
        (
            "providers[0].required_claims[1].name",
            Box::new(|d| d["providers"][0]["required_claims"][1]["name"] = json!([])),
        ),
        (
            "providers[0].claim_headers[0].claim",
            Box::new(|d| d["providers"][0]["claim_headers"][0]["claim"] = json!("a\\x")),
        ),
        (
            "providers[0].claim_headers[1].claim",
            Box::new(|d| d["providers"][0]["claim_headers"][1]["claim"] = json!("https://example.com/claims.tenant")),
        ),
        (
            "providers[0].scope_claims[0]",
            Box::new(|d| d["providers"][0]["scope_claims"][0] = json!(".scope")),
        ),
        (
            "providers[0].role_claim",
            Box::new(|d| d["providers"][0]["role_claim"] = json!(["realm_access", ""])),
        ),
        (
            "context.tenant_claim",
            Box::new(|d| d["context"]["tenant_claim"] = json!("tenant.")),
        ),
        (
            "rules[1].origin.tenant_claim",
            Box::new(|d| d["rules"][1]["origin"]["tenant_claim"] = json!("https://example.com/t")),
        ),
    ];
    for (field, f) in cases {
        let mut d = doc();
        f(&mut d);
        let e = parse(&d).unwrap_err();
        assert_eq!(e.field, field, "{e}");
    }
    // auth_service.tenant_claim is compiled the same way
    let mut d = doc();
    d["auth_service"] = json!({"cluster": "auth", "token_env": "SECRET", "tenant_claim": "org..id"});
    let e = parse(&d).unwrap_err();
    assert_eq!(e.field, "auth_service.tenant_claim", "{e}");
    d["auth_service"]["tenant_claim"] = json!("org.id");
    parse(&d).unwrap();
}
