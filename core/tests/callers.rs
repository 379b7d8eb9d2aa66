//! Machines and users (docs/configuration.md, `machine_tokens` and the
//! rule's `jwt.caller` / `jwt.clients`): which tokens are machines', what a
//! rule admits, the identity a machine gets upstream, and the configuration
//! refusing what could never be met, naming the field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::collections::HashMap;

use ct_codecs::{Base64UrlSafeNoPadding, Encoder};
use edge_auth_core::config::{self, Config};
use edge_auth_core::decision::{Deny, Outcome, Verdict};
use edge_auth_core::jwt::JwtError;
use hmac::{Hmac, Mac};
use jwt_simple::prelude::*;
use serde_json::{json, Value};

mod common;
use common::{allowed, denied, raw_claims};

const NOW_S: u64 = 1_800_000_000;
const SECRET: &str = "0123456789abcdef0123456789abcdef-secret";

fn provider(name: &str, iss: &str) -> Value {
    json!({
        "name": name, "issuer": iss, "audiences": ["api"], "algorithms": ["HS256"],
        "hmac_secrets": [{"env": "SECRET", "alg": "HS256"}]
    })
}

fn doc() -> Value {
    let mut auth0 = provider("auth0", "https://tenant.eu.auth0.com/");
    auth0["machine_tokens"] = json!({"claim": "gty", "equals": "client-credentials", "client_id_claim": "azp"});
    let mut custom = provider("custom", "https://custom");
    custom["machine_tokens"] = json!({"claim": "ext.grant", "equals": "m2m", "client_id_claim": "cid"});
    json!({
        "providers": [provider("ref", "https://ref"), auth0, custom],
        "auth_service": {"cluster": "auth", "token_env": "SVC_TOKEN"},
        "api_keys": {},
        "context": {},
        "rules": [
            {"name": "machines", "match": {"prefix": "/machine/"},
             "jwt": {"providers": ["ref", "auth0", "custom"], "caller": "machine"}},
            {"name": "users", "match": {"prefix": "/user/"},
             "jwt": {"providers": ["ref", "auth0", "custom"], "caller": "user"}},
            {"name": "billing", "match": {"prefix": "/billing/"},
             "jwt": {"providers": ["ref", "auth0"], "clients": ["mc_billing", "mc_other"]}},
            {"name": "shadow", "match": {"prefix": "/shadow/"}, "mode": "shadow",
             "jwt": {"providers": ["ref"], "caller": "machine"}},
            {"name": "either", "match": {"prefix": "/either/"},
             "jwt": {"providers": ["ref"], "caller": "user"}, "api_key": {}},
            {"name": "any", "match": {"prefix": "/"}, "jwt": {"providers": ["ref", "auth0", "custom"]}}
        ]
    })
}

fn parse(doc: &Value) -> Result<Config, config::ConfigError> {
    config::parse(doc.to_string().as_bytes(), &|n| match n {
        "SECRET" => Some(SECRET.to_owned()),
        "SVC_TOKEN" => Some("service-token-service-token-0123456789".to_owned()),
        _ => None,
    })
}

fn base(iss: &str) -> Value {
    json!({"iss": iss, "aud": "api", "iat": NOW_S - 5, "exp": NOW_S + 60})
}

fn machine(client: &str) -> Value {
    let mut c = base("https://ref");
    c["sub"] = json!(client);
    c["client_id"] = json!(client);
    c["azp"] = json!(client);
    c["gty"] = json!("client-credentials");
    c
}

fn user(sub: &str) -> Value {
    let mut c = base("https://ref");
    c["sub"] = json!(sub);
    c
}

fn with(mut c: Value, f: impl FnOnce(&mut Value)) -> Value {
    f(&mut c);
    c
}

fn token(claims: Value) -> String {
    HS256Key::from_bytes(SECRET.as_bytes())
        .authenticate(raw_claims(claims))
        .unwrap()
}

/// A token signed over exactly `payload` (which serde_json could not write:
/// a claim twice).
fn token_over(payload: &str) -> String {
    let b64 = |b: &[u8]| Base64UrlSafeNoPadding::encode_to_string(b).unwrap();
    let input = format!("{}.{}", b64(br#"{"alg":"HS256","typ":"JWT"}"#), b64(payload.as_bytes()));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

fn send<'c>(cfg: &'c Config, path: &str, headers: HashMap<&'static str, String>) -> Outcome<'c> {
    common::decide_fresh(cfg, path, NOW_S * 1000, headers)
}

fn run<'c>(cfg: &'c Config, path: &str, jwt: &str) -> Outcome<'c> {
    send(cfg, path, HashMap::from([("authorization", format!("Bearer {jwt}"))]))
}

fn context(o: &Outcome<'_>) -> HashMap<String, String> {
    allowed(o).context.iter().cloned().collect()
}

#[test]
fn machine_and_user_tokens_reach_only_their_routes() {
    let cfg = parse(&doc()).unwrap();
    let m = token(machine("mc_billing"));
    let u = token(user("alice"));
    let ctx = context(&run(&cfg, "/machine/x", &m));
    assert_eq!(ctx["x-edge-auth-method"], "client");
    assert_eq!(ctx["x-edge-auth-subject"], "mc_billing");
    assert_eq!(denied(&run(&cfg, "/user/x", &m)), Deny::CallerNotAllowed);
    assert_eq!(denied(&run(&cfg, "/machine/x", &u)), Deny::CallerNotAllowed);
    let ctx = context(&run(&cfg, "/user/x", &u));
    assert_eq!(ctx["x-edge-auth-method"], "jwt");
    assert_eq!(ctx["x-edge-auth-subject"], "alice");
    // a rule without caller takes both, and still says which
    assert_eq!(context(&run(&cfg, "/x", &m))["x-edge-auth-method"], "client");
    assert_eq!(context(&run(&cfg, "/x", &u))["x-edge-auth-method"], "jwt");
    // another kind of grant marker (an Auth0 password-grant token) is a user's
    let pw = token(with(user("bob"), |c| c["gty"] = json!("password")));
    assert_eq!(context(&run(&cfg, "/user/x", &pw))["x-edge-auth-method"], "jwt");
    assert_eq!(denied(&run(&cfg, "/machine/x", &pw)), Deny::CallerNotAllowed);
}

#[test]
fn a_client_list_admits_exactly_its_clients() {
    let cfg = parse(&doc()).unwrap();
    assert!(matches!(
        run(&cfg, "/billing/x", &token(machine("mc_billing"))).verdict,
        Verdict::Allow(_)
    ));
    assert!(matches!(
        run(&cfg, "/billing/x", &token(machine("mc_other"))).verdict,
        Verdict::Allow(_)
    ));
    for refused in ["mc_reports", "MC_BILLING", "mc_billing ", "mc_billin", ""] {
        let o = run(&cfg, "/billing/x", &token(machine(refused)));
        assert_eq!(denied(&o), Deny::CallerNotAllowed, "client {refused:?}");
    }
    // a user token whose sub (and even client_id) looks like a listed client
    let lookalike = token(with(user("mc_billing"), |c| c["client_id"] = json!("mc_billing")));
    assert_eq!(denied(&run(&cfg, "/billing/x", &lookalike)), Deny::CallerNotAllowed);
    // the client id comes from azp, not sub
    let other_azp = token(with(machine("mc_billing"), |c| c["azp"] = json!("mc_reports")));
    assert_eq!(denied(&run(&cfg, "/billing/x", &other_azp)), Deny::CallerNotAllowed);
}

#[test]
fn tokens_that_are_neither_are_refused_wherever_the_caller_matters() {
    let cfg = parse(&doc()).unwrap();
    let unclear = [
        (
            "gty not a string",
            with(user("alice"), |c| c["gty"] = json!(["client-credentials"])),
        ),
        ("gty null", with(user("alice"), |c| c["gty"] = Value::Null)),
        ("gty a number", with(user("alice"), |c| c["gty"] = json!(1))),
        (
            "azp missing",
            with(machine("mc_billing"), |c| {
                c.as_object_mut().unwrap().remove("azp");
            }),
        ),
        (
            "azp not a string",
            with(machine("mc_billing"), |c| c["azp"] = json!(["mc_billing"])),
        ),
        ("azp empty", with(machine("mc_billing"), |c| c["azp"] = json!(""))),
    ];
    for (why, claims) in unclear {
        let t = token(claims);
        for path in ["/machine/x", "/user/x", "/billing/x"] {
            assert_eq!(denied(&run(&cfg, path, &t)), Deny::CallerNotAllowed, "{why} on {path}");
        }
        // where the caller does not matter it is a token like any other, not a client
        assert_eq!(context(&run(&cfg, "/x", &t))["x-edge-auth-method"], "jwt", "{why}");
    }
    // gty twice: refused before anyone asks what it says
    let twice = format!(
        r#"{{"iss":"https://ref","aud":"api","iat":{},"exp":{},"sub":"alice","gty":"password","gty":"client-credentials","azp":"mc_billing"}}"#,
        NOW_S - 5,
        NOW_S + 60
    );
    for path in ["/machine/x", "/user/x", "/x"] {
        assert_eq!(
            denied(&run(&cfg, path, &token_over(&twice))),
            Deny::Token(JwtError::Malformed)
        );
    }
}

#[test]
fn each_provider_says_how_its_machine_tokens_look() {
    let cfg = parse(&doc()).unwrap();
    let auth0 = with(base("https://tenant.eu.auth0.com/"), |c| {
        c["sub"] = json!("AbC123@clients");
        c["azp"] = json!("AbC123");
        c["gty"] = json!("client-credentials");
    });
    let ctx = context(&run(&cfg, "/machine/x", &token(auth0)));
    assert_eq!(ctx["x-edge-auth-subject"], "AbC123", "the client id, not Auth0's sub");
    let custom = with(base("https://custom"), |c| {
        c["sub"] = json!("svc");
        c["cid"] = json!("job-7");
        c["ext"] = json!({"grant": "m2m"});
    });
    let ctx = context(&run(&cfg, "/machine/x", &token(custom.clone())));
    assert_eq!(
        (ctx["x-edge-auth-method"].as_str(), ctx["x-edge-auth-subject"].as_str()),
        ("client", "job-7")
    );
    // the default marker means nothing to a provider configured otherwise
    let gty = with(custom, |c| {
        c["ext"] = json!({"grant": "interactive"});
        c["gty"] = json!("client-credentials");
    });
    assert_eq!(
        denied(&run(&cfg, "/machine/x", &token(gty.clone()))),
        Deny::CallerNotAllowed
    );
    assert!(matches!(run(&cfg, "/user/x", &token(gty)).verdict, Verdict::Allow(_)));
}

#[test]
fn shadow_and_token_or_key_rules() {
    let cfg = parse(&doc()).unwrap();
    // shadow: the refusal is reported and the request goes without identity
    let o = run(&cfg, "/shadow/x", &token(user("alice")));
    let a = allowed(&o);
    assert_eq!(a.shadow, Some(Deny::CallerNotAllowed));
    assert!(a.context.is_empty());
    let o = run(&cfg, "/shadow/x", &token(machine("mc_billing")));
    assert_eq!(allowed(&o).shadow, None);
    // token or key: the caller requirement is the token branch's
    assert_eq!(
        denied(&run(&cfg, "/either/x", &token(machine("mc_billing")))),
        Deny::CallerNotAllowed
    );
    assert!(matches!(
        run(&cfg, "/either/x", &token(user("alice"))).verdict,
        Verdict::Allow(_)
    ));
    let key = format!("sk_{}", "ab".repeat(32));
    let o = send(&cfg, "/either/x", HashMap::from([("x-api-key", key)]));
    assert!(
        !matches!(o.verdict, Verdict::Deny(_)),
        "an API key is not asked who it is: {:?}",
        o.verdict
    );
}

#[test]
fn what_could_never_be_met_is_refused_naming_the_field() {
    let jwt = |j: Value| {
        let mut d = doc();
        d["rules"][0]["jwt"] = j;
        d
    };
    let provider_edit = |m: Value| {
        let mut d = doc();
        d["providers"][0]["machine_tokens"] = m;
        d
    };
    let p = json!(["ref"]);
    let cases = [
        (
            jwt(json!({"providers": p, "caller": "user", "clients": ["mc_a"]})),
            "rules[0].jwt.clients",
        ),
        (jwt(json!({"providers": p, "clients": []})), "rules[0].jwt.clients"),
        (
            jwt(json!({"providers": p, "caller": "machine", "clients": []})),
            "rules[0].jwt.clients",
        ),
        (
            jwt(json!({"providers": p, "clients": ["mc_a", ""]})),
            "rules[0].jwt.clients[1]",
        ),
        (
            jwt(json!({"providers": p, "clients": ["mc_a", "mc_a"]})),
            "rules[0].jwt.clients[1]",
        ),
        (
            jwt(json!({"providers": p, "clients": ["mc\na"]})),
            "rules[0].jwt.clients[0]",
        ),
        (jwt(json!({"providers": p, "caller": "robot"})), "rules[0].jwt.caller"),
        (jwt(json!({"providers": p, "clients": "mc_a"})), "rules[0].jwt.clients"),
        (
            provider_edit(json!({"equals": ""})),
            "providers[0].machine_tokens.equals",
        ),
        (
            provider_edit(json!({"claim": "a..b"})),
            "providers[0].machine_tokens.claim",
        ),
        (
            provider_edit(json!({"client_id_claim": []})),
            "providers[0].machine_tokens.client_id_claim",
        ),
        (provider_edit(json!({"grant": "gty"})), "providers[0].machine_tokens"),
    ];
    for (d, field) in cases {
        match parse(&d) {
            Ok(_) => panic!("accepted: {field}"),
            Err(e) => assert!(e.field.starts_with(field), "{field}: got {} ({})", e.field, e.message),
        }
    }
    // clients with caller: machine is the same as clients alone
    let ok = jwt(json!({"providers": p, "caller": "machine", "clients": ["mc_a"]}));
    assert!(parse(&ok).is_ok());
}

#[test]
fn an_allow_says_whether_a_machine_was_let_in_with_or_without_identity_headers() {
    // what the shell counts as allowed.client rather than allowed.jwt
    let with_context = parse(&doc()).unwrap();
    let mut d = doc();
    d.as_object_mut().unwrap().remove("context");
    let without_context = parse(&d).unwrap();
    for cfg in [&with_context, &without_context] {
        assert!(allowed(&run(cfg, "/x", &token(machine("mc_billing")))).machine);
        assert!(allowed(&run(cfg, "/machine/x", &token(machine("mc_billing")))).machine);
        assert!(!allowed(&run(cfg, "/x", &token(user("alice")))).machine);
        let pw = token(with(user("bob"), |c| c["gty"] = json!("password")));
        assert!(!allowed(&run(cfg, "/x", &pw)).machine);
        // a shadow pass lets the request through as sent: no caller is vouched for
        let o = run(cfg, "/shadow/x", &token(user("alice")));
        assert!(!allowed(&o).machine && allowed(&o).shadow.is_some());
    }
    assert!(context(&run(&without_context, "/x", &token(machine("mc_billing")))).is_empty());
}
