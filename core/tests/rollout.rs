//! Rollout through the core: report-only (shadow) rules and filters, and
//! rules that accept a token or an API key. No proxy involved.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::collections::HashMap;

use edge_auth_core::api_key::{key_hash, parse_lookup, LookupFailure};
use edge_auth_core::config::{self, Config};
use edge_auth_core::decision::{decide, Allow, Attempt, Deny, KeyAnswer, KeyRefusal, Outcome, Request, State, Verdict};
use edge_auth_core::jwt::JwtError;
use edge_auth_core::response::reply;
use jwt_simple::prelude::*;
use serde_json::{json, Value};

mod common;
use common::{allowed, denied, raw_claims};

const NOW_S: u64 = 1_800_000_000;
const NOW: u64 = NOW_S * 1000;
const SECRET: &str = "0123456789abcdef0123456789abcdef-secret";
const KEY: &str = "sk_20461de3ee4a57fe3611338284344655d8b1dff13bde3406141f9ba472ba2fb1";
const KEY2: &str = "sk_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn doc() -> Value {
    json!({
        "providers": [{
            "name": "hs", "issuer": "https://hs", "audiences": ["api"], "algorithms": ["HS256"],
            "hmac_secrets": [{"env": "SECRET", "alg": "HS256"}],
            "token_sources": [{"header": "authorization", "scheme": "Bearer"}, {"cookie": "tok"}, {"header": "x-token"}]
        }],
        "auth_service": {"cluster": "auth", "token_env": "SVC_TOKEN"},
        "api_keys": {"sources": [{"header": "x-api-key"}, {"header": "authorization", "scheme": "ApiKey"}]},
        "context": {},
        "rules": [
            {"name": "either", "match": {"prefix": "/either/"}, "jwt": {"providers": ["hs"]}, "api_key": {},
             "scopes": {"any_of": ["orders:read"]}},
            {"name": "either-write", "match": {"prefix": "/either-write/"}, "jwt": {"providers": ["hs"]}, "api_key": {},
             "scopes": {"all_of": ["orders:write"]}},
            {"name": "shadow", "match": {"prefix": "/shadow/"}, "jwt": {"providers": ["hs"]}, "mode": "shadow",
             "scopes": {"any_of": ["orders:read"]}},
            {"name": "shadow-ip", "match": {"prefix": "/shadow-ip/"}, "jwt": {"providers": ["hs"]}, "mode": "shadow",
             "ip": {"deny": ["192.0.2.0/24"]}},
            {"name": "shadow-key", "match": {"prefix": "/shadow-key/"}, "api_key": {}, "mode": "shadow"},
            {"name": "shadow-web", "match": {"prefix": "/shadow-web/"}, "jwt": {"providers": ["hs"]}, "mode": "shadow",
             "origin": {"allowed": ["https://app.example"], "cors": {}}},
            {"name": "enforced", "match": {"prefix": "/api/"}, "jwt": {"providers": ["hs"]}, "mode": "enforce"}
        ]
    })
}

fn env(name: &str) -> Option<String> {
    match name {
        "SECRET" => Some(SECRET.into()),
        "SVC_TOKEN" => Some("svc-0123456789abcdef0123456789abcdef".into()),
        _ => None,
    }
}

fn parse(d: &Value) -> Result<Config, config::ConfigError> {
    config::parse(d.to_string().as_bytes(), &env)
}

fn config_with(f: impl FnOnce(&mut Value)) -> Config {
    let mut d = doc();
    f(&mut d);
    parse(&d).unwrap()
}

fn token(scope: &str) -> String {
    let c = raw_claims(json!({
        "iss": "https://hs", "aud": "api", "sub": "alice", "scope": scope, "iat": NOW_S - 5, "exp": NOW_S + 60
    }));
    HS256Key::from_bytes(SECRET.as_bytes()).authenticate(c).unwrap()
}

fn bearer(scope: &str) -> String {
    format!("Bearer {}", token(scope))
}

/// A key's lookup answer with these scopes.
fn key_answer(key: &str, scopes: &[&str]) -> KeyAnswer {
    let hash = key_hash(key);
    let body = json!({
        "status": "valid", "key_id": "key_mepybc6vdnwbtgbcqqchcvqb6w", "tenant": "acme",
        "subject": "svc-billing", "scopes": scopes, "ip_allowlist": [], "allowed_origins": [],
        "expires_at": null, "cache_ttl_s": 300, "key_hash": hash
    });
    let lookup = parse_lookup(Some(200), Some(body.to_string().as_bytes()), 64 * 1024, NOW_S, &hash).unwrap();
    KeyAnswer {
        hash,
        result: Ok(lookup),
    }
}

struct Req(Vec<(&'static str, String)>);

impl Request for Req {
    fn header(&mut self, name: &str) -> Option<String> {
        self.header_all(name).into_iter().next()
    }
    fn header_all(&mut self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }
    fn forwarded_for(&mut self) -> Option<String> {
        None
    }
    fn peer(&mut self) -> Option<String> {
        Some("192.0.2.1:40000".into())
    }
}

fn run<'c>(
    cfg: &'c Config,
    st: &mut State,
    method: &str,
    path: &str,
    headers: &[(&'static str, &str)],
    answer: Option<&KeyAnswer>,
) -> Outcome<'c> {
    let attempt = Attempt {
        method,
        path,
        now_ms: NOW,
        may_await: answer.is_none(),
        answer,
    };
    let mut req = Req(headers.iter().map(|(n, v)| (*n, v.to_string())).collect());
    decide(cfg, st, &attempt, &mut req)
}

fn get<'c>(cfg: &'c Config, path: &str, headers: &[(&'static str, &str)]) -> Outcome<'c> {
    run(cfg, &mut State::new(cfg), "GET", path, headers, None)
}

/// A shadow pass: allowed upstream as sent, no identity, the would-be refusal named.
fn shadow_denied<'c>(o: &Outcome<'c>) -> Deny<'c> {
    let a = allowed(o);
    assert!(
        a.context.is_empty() && a.token.is_none() && a.key.is_none(),
        "identity for a would-be denial: {a:?}"
    );
    assert_eq!(a.remove_headers.names().count(), 0, "a shadow pass is not edited");
    assert!(a.cookie.is_none() && a.path.is_none() && !a.preflight);
    a.shadow.unwrap_or_else(|| panic!("not a shadow denial: {a:?}"))
}

fn context(a: &Allow<'_>) -> HashMap<String, String> {
    a.context.iter().cloned().collect()
}

// =============================================================================
// Shadow mode
// =============================================================================

#[test]
fn mode_is_parsed_strictly_and_said_at_configure_time() {
    let cfg = parse(&doc()).unwrap();
    let shadow: Vec<&str> = cfg
        .routes
        .rules()
        .iter()
        .filter(|r| r.policy.shadow)
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(shadow, ["shadow", "shadow-ip", "shadow-key", "shadow-web"]);
    assert!(!cfg.shadow);
    assert!(
        cfg.warnings.iter().any(|w| w.contains("rules[2] is report-only")),
        "{:?}",
        cfg.warnings
    );
    for bad in [json!("Shadow"), json!("report"), json!(true), json!("")] {
        let mut d = doc();
        d["rules"][2]["mode"] = bad.clone();
        let e = parse(&d).unwrap_err();
        assert_eq!(e.field, "rules[2].mode", "{bad}: {e:?}");
        let mut d = doc();
        d["mode"] = bad.clone();
        assert_eq!(parse(&d).unwrap_err().field, "mode", "{bad}");
    }
    let whole = config_with(|d| d["mode"] = json!("shadow"));
    assert!(whole.shadow);
    assert!(whole
        .warnings
        .iter()
        .any(|w| w.contains("the whole filter is report-only")));
    let mut d = doc();
    d["default_rule"] = json!({"jwt": {"providers": ["hs"]}, "mode": "shadow"});
    assert!(parse(&d).unwrap().routes.default_rule().unwrap().shadow);
}

#[test]
fn a_shadow_allow_is_an_allow_with_identity() {
    let cfg = parse(&doc()).unwrap();
    let b = bearer("orders:read");
    let o = get(&cfg, "/shadow/x", &[("authorization", &b)]);
    let a = allowed(&o);
    assert_eq!(a.shadow, None);
    assert!(a.token.is_some());
    assert_eq!(context(a).get("x-edge-auth-subject").map(String::as_str), Some("alice"));
    assert_eq!(
        a.remove_headers.names().collect::<Vec<_>>(),
        ["authorization"],
        "edited as an enforced allow"
    );
}

#[test]
fn every_refusal_kind_of_a_shadow_rule_passes_without_identity() {
    let cfg = parse(&doc()).unwrap();
    let (no_scope, garbage) = (bearer("other"), "Bearer eyJ.not.atoken".to_owned());
    // 401: missing and invalid tokens
    assert_eq!(shadow_denied(&get(&cfg, "/shadow/x", &[])), Deny::MissingToken);
    let o = get(&cfg, "/shadow/x", &[("authorization", &garbage)]);
    assert_eq!(shadow_denied(&o), Deny::Token(JwtError::Malformed));
    assert!(
        o.credential.is_some(),
        "the log still gets the credential's fingerprint"
    );
    // 403: scopes, client address
    assert!(matches!(
        shadow_denied(&get(&cfg, "/shadow/x", &[("authorization", &no_scope)])),
        Deny::InsufficientScope(_)
    ));
    let ok = bearer("orders:read");
    assert_eq!(
        shadow_denied(&get(&cfg, "/shadow-ip/x", &[("authorization", &ok)])),
        Deny::IpNotAllowed
    );
    // 403: origin (no CORS headers for an origin the rule refuses)
    let o = get(
        &cfg,
        "/shadow-web/x",
        &[("authorization", &ok), ("origin", "https://evil.example")],
    );
    assert_eq!(shadow_denied(&o), Deny::OriginNotAllowed);
    assert!(o.cors.is_none());
    // an allowed origin's CORS headers still go on the response of a would-be 401
    let o = get(&cfg, "/shadow-web/x", &[("origin", "https://app.example")]);
    assert_eq!(shadow_denied(&o), Deny::MissingToken);
    assert!(o.cors.is_some());
    // 400: two credentials (the upstream gets them as before the filter, vouched for by nothing)
    let o = get(&cfg, "/shadow/x", &[("authorization", &ok), ("x-api-key", KEY)]);
    assert_eq!(shadow_denied(&o), Deny::AmbiguousCredential);
    let o = get(&cfg, "/shadow/x", &[("authorization", &ok), ("authorization", &ok)]);
    assert_eq!(shadow_denied(&o), Deny::AmbiguousCredential);
}

#[test]
fn a_shadow_key_rule_still_waits_for_the_lookup_and_reports_a_fail_closed_503() {
    let cfg = parse(&doc()).unwrap();
    let mut st = State::new(&cfg);
    let h = [("x-api-key", KEY)];
    let o = run(&cfg, &mut st, "GET", "/shadow-key/x", &h, None);
    assert!(
        matches!(o.verdict, Verdict::AwaitLookup { .. }),
        "every check runs: {:?}",
        o.verdict
    );
    let failed = KeyAnswer {
        hash: key_hash(KEY),
        result: Err(LookupFailure::NoResponse),
    };
    let o = run(&cfg, &mut st, "GET", "/shadow-key/x", &h, Some(&failed));
    assert_eq!(shadow_denied(&o), Deny::KeyServiceUnavailable);
    assert_eq!(reply(Deny::KeyServiceUnavailable, "r").status, 503);
    // a valid answer: an allow with the key's identity
    let o = run(
        &cfg,
        &mut st,
        "GET",
        "/shadow-key/x",
        &h,
        Some(&key_answer(KEY, &["a"])),
    );
    let a = allowed(&o);
    assert_eq!(a.shadow, None);
    assert_eq!(
        context(a).get("x-edge-auth-method").map(String::as_str),
        Some("api_key")
    );
    // a malformed key is a shadow 401
    let o = get(&cfg, "/shadow-key/x", &[("x-api-key", "sk_short")]);
    assert_eq!(shadow_denied(&o), Deny::ApiKey(KeyRefusal::Malformed));
}

#[test]
fn a_path_refused_as_dangerous_stays_refused_in_shadow() {
    let cfg = config_with(|d| d["mode"] = json!("shadow"));
    for path in [
        "/shadow/..%2fapi/x",
        "/shadow/a%00b",
        "shadow/x",
        "/shadow/%zz",
        "/shadow/%2561",
    ] {
        assert!(
            matches!(denied(&get(&cfg, path, &[])), Deny::BadPath(_)),
            "{path} must stay refused"
        );
    }
}

#[test]
fn an_enforced_rule_beside_a_shadow_one_still_enforces() {
    let cfg = parse(&doc()).unwrap();
    assert_eq!(denied(&get(&cfg, "/api/x", &[])), Deny::MissingToken);
    assert_eq!(denied(&get(&cfg, "/nowhere", &[])), Deny::NoRule);
}

#[test]
fn a_shadow_filter_reports_every_rule_and_the_unmatched() {
    let cfg = config_with(|d| d["mode"] = json!("shadow"));
    assert_eq!(shadow_denied(&get(&cfg, "/api/x", &[])), Deny::MissingToken);
    assert_eq!(shadow_denied(&get(&cfg, "/nowhere", &[])), Deny::NoRule);
    assert_eq!(allowed(&get(&cfg, "/nowhere", &[])).rule, "none");
    let b = bearer("");
    assert!(allowed(&get(&cfg, "/api/x", &[("authorization", &b)])).token.is_some());
    // a preflight answered at the edge is still answered
    let o = run(
        &cfg,
        &mut State::new(&cfg),
        "OPTIONS",
        "/shadow-web/x",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "GET"),
        ],
        None,
    );
    assert!(matches!(o.verdict, Verdict::Preflight(_)));
}

// =============================================================================
// A token or a key
// =============================================================================

#[test]
fn a_rule_with_both_requirements_is_a_token_or_key_rule() {
    let cfg = parse(&doc()).unwrap();
    let r = &cfg.routes.rules()[0];
    assert!(matches!(
        r.policy.requirement,
        edge_auth_core::policy::routes::Requirement::JwtOrApiKey { .. }
    ));
    // a public rule takes neither; an origin block needs origins (or a tenant claim), as on a jwt rule
    let mut d = doc();
    d["rules"][0]["public"] = json!(true);
    assert_eq!(parse(&d).unwrap_err().field, "rules[0]");
    let mut d = doc();
    d["rules"][0]["origin"] = json!({"allowed": []});
    assert_eq!(parse(&d).unwrap_err().field, "rules[0].origin.allowed");
    let mut d = doc();
    d["rules"][0]["jwt"] = json!({"providers": ["nope"]});
    assert_eq!(parse(&d).unwrap_err().field, "rules[0].jwt.providers[0]");
    let mut d = doc();
    d["rules"][0]["api_key"] = json!({"stale_if_error_s": 3601});
    assert_eq!(parse(&d).unwrap_err().field, "rules[0].api_key.stale_if_error_s");
    let mut d = doc();
    d.as_object_mut().unwrap().remove("api_keys");
    d["rules"] = json!([d["rules"][0].clone()]);
    assert_eq!(parse(&d).unwrap_err().field, "rules[0].api_key");
}

#[test]
fn a_token_is_accepted_with_its_scopes_and_says_jwt() {
    let cfg = parse(&doc()).unwrap();
    let b = bearer("orders:read");
    let o = get(&cfg, "/either/x", &[("authorization", &b)]);
    let a = allowed(&o);
    assert!(a.token.is_some() && a.key.is_none());
    assert_eq!(context(a).get("x-edge-auth-method").map(String::as_str), Some("jwt"));
    // the token's scopes are what the rule checks
    assert!(matches!(
        denied(&get(&cfg, "/either-write/x", &[("authorization", &b)])),
        Deny::InsufficientScope(_)
    ));
    let t = token("orders:write");
    assert!(allowed(&get(&cfg, "/either-write/x", &[("x-token", &t)]))
        .token
        .is_some());
    let o = get(&cfg, "/either/x", &[("authorization", "Bearer eyJ.bad.token")]);
    assert_eq!(denied(&o), Deny::Token(JwtError::Malformed));
    // a key-shaped value in a token source is a token, and fails as one (no lookup)
    let o = get(&cfg, "/either/x", &[("x-token", KEY)]);
    assert_eq!(denied(&o), Deny::Token(JwtError::Malformed));
}

#[test]
fn a_key_is_accepted_with_its_scopes_and_says_api_key() {
    let cfg = parse(&doc()).unwrap();
    let mut st = State::new(&cfg);
    let o = run(&cfg, &mut st, "GET", "/either/x", &[("x-api-key", KEY)], None);
    assert!(matches!(o.verdict, Verdict::AwaitLookup { .. }));
    let answer = key_answer(KEY, &["orders:read"]);
    let o = run(&cfg, &mut st, "GET", "/either/x", &[("x-api-key", KEY)], Some(&answer));
    let a = allowed(&o);
    assert!(a.key.is_some() && a.token.is_none());
    assert_eq!(
        context(a).get("x-edge-auth-method").map(String::as_str),
        Some("api_key")
    );
    assert_eq!(a.remove_headers.names().collect::<Vec<_>>(), ["x-api-key"]);
    // the key's scopes are what the rule checks (now from this worker's cache)
    let o = run(&cfg, &mut st, "GET", "/either-write/x", &[("x-api-key", KEY)], None);
    assert!(matches!(denied(&o), Deny::InsufficientScope(_)));
    // the key in the Authorization header, ApiKey scheme
    let auth = format!("ApiKey {KEY}");
    let o = run(&cfg, &mut st, "GET", "/either/x", &[("authorization", &auth)], None);
    assert!(allowed(&o).key.is_some());
    // an unknown-format key is refused as a key, not tried as a token
    let o = get(&cfg, "/either/x", &[("x-api-key", "not-a-key")]);
    assert_eq!(denied(&o), Deny::ApiKey(KeyRefusal::Malformed));
}

#[test]
fn neither_is_a_401_that_offers_both_schemes() {
    let cfg = parse(&doc()).unwrap();
    for headers in [
        vec![],
        vec![("authorization", "Bearer")],
        vec![("x-api-key", "")],
        vec![("authorization", "Basic dXNlcjpwdw==")],
    ] {
        assert_eq!(
            denied(&get(&cfg, "/either/x", &headers)),
            Deny::MissingCredential,
            "{headers:?}"
        );
    }
    let r = reply(Deny::MissingCredential, "edge");
    assert_eq!(r.status, 401);
    let challenge = &r.headers.iter().find(|(n, _)| *n == "www-authenticate").unwrap().1;
    assert_eq!(challenge, "Bearer realm=\"edge\", ApiKey realm=\"edge\"");
    assert!(!r.body.contains("sk_"));
}

#[test]
fn both_kinds_or_two_of_one_kind_are_ambiguous() {
    let cfg = parse(&doc()).unwrap();
    let (b, t) = (bearer("orders:read"), token("orders:read"));
    let (api, api2) = (format!("ApiKey {KEY}"), format!("ApiKey {KEY2}"));
    let (other, two, cookie) = (token("other"), format!("{KEY},{KEY2}"), format!("tok={t}"));
    let cases: Vec<Vec<(&'static str, &str)>> = vec![
        // a token and a key
        vec![("authorization", &b), ("x-api-key", KEY)],
        vec![("x-token", &t), ("authorization", &api)],
        vec![("cookie", &cookie), ("x-api-key", KEY)],
        // two tokens from different sources, two key headers, a header twice
        vec![("authorization", &b), ("x-token", &other)],
        vec![("x-api-key", KEY), ("authorization", &api2)],
        vec![("x-api-key", KEY), ("x-api-key", KEY)],
        vec![("x-api-key", &two)],
        // one valid and one garbage
        vec![("authorization", &b), ("x-api-key", "garbage")],
        vec![("x-api-key", KEY), ("authorization", "Bearer garbage")],
        vec![("x-api-key", KEY), ("x-token", "garbage")],
    ];
    for headers in &cases {
        let o = get(&cfg, "/either/x", headers);
        assert_eq!(denied(&o), Deny::AmbiguousCredential, "{headers:?}");
        assert_eq!(reply(Deny::AmbiguousCredential, "r").status, 400);
    }
    // the same value in a token place and a key place: refused, not guessed at
    let o = get(&cfg, "/either/x", &[("x-token", KEY), ("x-api-key", KEY)]);
    assert_eq!(denied(&o), Deny::AmbiguousCredential);
    // in the query too
    let o = get(&cfg, &format!("/either/x?k={KEY}"), &[("authorization", &b)]);
    assert_eq!(denied(&o), Deny::AmbiguousCredential);
}

#[test]
fn an_empty_place_beside_a_credential_holds_nothing_and_is_emptied() {
    let cfg = parse(&doc()).unwrap();
    let mut st = State::new(&cfg);
    let answer = key_answer(KEY, &["orders:read"]);
    let h = [("authorization", "Bearer "), ("x-api-key", KEY)];
    let o = run(&cfg, &mut st, "GET", "/either/x", &h, Some(&answer));
    let a = allowed(&o);
    assert!(a.key.is_some());
    let mut removed: Vec<&str> = a.remove_headers.names().collect();
    removed.sort_unstable();
    assert_eq!(removed, ["authorization", "x-api-key"]);
    let b = bearer("orders:read");
    let o = get(&cfg, "/either/x", &[("authorization", &b), ("x-api-key", "")]);
    assert!(allowed(&o).token.is_some());
}

// =============================================================================
// The rule that decided (per-rule metrics)
// =============================================================================

#[test]
fn every_outcome_names_the_rule_that_decided_it() {
    let cfg = parse(&doc()).unwrap();
    let b = bearer("orders:read");
    // an enforced rule: allowed and denied
    let o = get(&cfg, "/api/x", &[("authorization", &b)]);
    assert!(allowed(&o).shadow.is_none());
    assert_eq!(o.rule, Some("enforced"));
    let o = get(&cfg, "/api/x", &[]);
    assert_eq!((denied(&o), o.rule), (Deny::MissingToken, Some("enforced")));
    // a shadow rule: a shadow allow and a shadow denial
    let o = get(&cfg, "/shadow/x", &[("authorization", &b)]);
    assert!(allowed(&o).shadow.is_none());
    assert_eq!(o.rule, Some("shadow"));
    let o = get(&cfg, "/shadow/x", &[("authorization", &bearer("other"))]);
    assert!(matches!(shadow_denied(&o), Deny::InsufficientScope(_)));
    assert_eq!(o.rule, Some("shadow"));
    let o = get(&cfg, "/shadow-ip/x", &[("authorization", &b)]);
    assert_eq!((shadow_denied(&o), o.rule), (Deny::IpNotAllowed, Some("shadow-ip")));
    // a refusal before the requirement (the rule's origin check) names the rule too
    let o = get(
        &cfg,
        "/shadow-web/x",
        &[("authorization", &b), ("origin", "https://evil.example")],
    );
    assert_eq!(
        (shadow_denied(&o), o.rule),
        (Deny::OriginNotAllowed, Some("shadow-web"))
    );
    // nothing matched and no default: no rule decided it
    let o = get(&cfg, "/nowhere", &[]);
    assert_eq!((denied(&o), o.rule), (Deny::NoRule, None));
    // refused before any rule is chosen
    let o = get(&cfg, "/api/..%2fx", &[("authorization", &b)]);
    assert!(matches!(denied(&o), Deny::BadPath(_)));
    assert_eq!(o.rule, None);
}

#[test]
fn a_token_or_key_rule_is_named_whichever_way_in() {
    let cfg = parse(&doc()).unwrap();
    let mut st = State::new(&cfg);
    let b = bearer("orders:read");
    let o = get(&cfg, "/either/x", &[("authorization", &b)]);
    assert!(allowed(&o).token.is_some());
    assert_eq!(o.rule, Some("either"));
    // a key: the wait for the lookup and the decision after it
    let o = run(&cfg, &mut st, "GET", "/either/x", &[("x-api-key", KEY)], None);
    assert!(matches!(o.verdict, Verdict::AwaitLookup { .. }));
    let answer = key_answer(KEY, &["orders:read"]);
    let o = run(&cfg, &mut st, "GET", "/either/x", &[("x-api-key", KEY)], Some(&answer));
    assert!(allowed(&o).key.is_some());
    assert_eq!(o.rule, Some("either"));
    let o = run(&cfg, &mut st, "GET", "/either-write/x", &[("x-api-key", KEY)], None);
    assert!(matches!(denied(&o), Deny::InsufficientScope(_)));
    assert_eq!(o.rule, Some("either-write"));
    // refusals of the rule's own: neither, and both kinds
    let o = get(&cfg, "/either/x", &[]);
    assert_eq!((denied(&o), o.rule), (Deny::MissingCredential, Some("either")));
    let o = get(&cfg, "/either/x", &[("authorization", &b), ("x-api-key", KEY)]);
    assert_eq!((denied(&o), o.rule), (Deny::AmbiguousCredential, Some("either")));
}

#[test]
fn the_default_rule_and_a_shadow_filter_name_their_rule() {
    let cfg = config_with(|d| d["default_rule"] = json!({"jwt": {"providers": ["hs"]}}));
    let o = get(&cfg, "/elsewhere", &[]);
    assert_eq!((denied(&o), o.rule), (Deny::MissingToken, Some("default_rule")));
    let b = bearer("");
    let o = get(&cfg, "/elsewhere", &[("authorization", &b)]);
    assert!(allowed(&o).token.is_some());
    assert_eq!(o.rule, Some("default_rule"));
    // a shadow filter: every rule's would-be refusal is named; the unmatched is not a rule
    let cfg = config_with(|d| d["mode"] = json!("shadow"));
    let o = get(&cfg, "/api/x", &[]);
    assert_eq!((shadow_denied(&o), o.rule), (Deny::MissingToken, Some("enforced")));
    let o = get(&cfg, "/nowhere", &[]);
    assert_eq!((shadow_denied(&o), o.rule), (Deny::NoRule, None));
    // a path refused as dangerous stays refused, and by no rule
    let o = get(&cfg, "/api/a%00b", &[]);
    assert!(matches!(denied(&o), Deny::BadPath(_)));
    assert_eq!(o.rule, None);
}

// =============================================================================
// Origin on a token-or-key rule: each credential as on a rule of its kind
// =============================================================================

const APP: &str = "https://app.example";

/// `either` with an origin block: tokens from `APP` only; keys from their own origins.
fn web_either(origin: Value) -> Config {
    config_with(|d| d["rules"][0]["origin"] = origin)
}

/// A key's answer whose record allows these origins.
fn key_answer_from(key: &str, origins: &[&str]) -> KeyAnswer {
    let hash = key_hash(key);
    let body = json!({
        "status": "valid", "key_id": "key_mepybc6vdnwbtgbcqqchcvqb6w", "tenant": "acme",
        "subject": "svc-web", "scopes": ["orders:read"], "ip_allowlist": [], "allowed_origins": origins,
        "expires_at": null, "cache_ttl_s": 300, "key_hash": hash
    });
    let lookup = parse_lookup(Some(200), Some(body.to_string().as_bytes()), 64 * 1024, NOW_S, &hash).unwrap();
    KeyAnswer {
        hash,
        result: Ok(lookup),
    }
}

/// A key request after its lookup answered `answer`.
fn key_from<'c>(cfg: &'c Config, origin: Option<&str>, answer: &KeyAnswer) -> Outcome<'c> {
    let mut headers = vec![("x-api-key", KEY)];
    headers.extend(origin.map(|o| ("origin", o)));
    run(cfg, &mut State::new(cfg), "GET", "/either/x", &headers, Some(answer))
}

#[test]
fn a_token_on_a_token_or_key_rule_is_checked_against_the_rules_origins() {
    let cfg = web_either(json!({"allowed": [APP], "cors": {}}));
    let b = bearer("orders:read");
    let o = get(&cfg, "/either/x", &[("authorization", &b), ("origin", APP)]);
    assert!(allowed(&o).token.is_some());
    assert!(o.cors.is_some(), "an allowed origin reads the answer");
    for bad in [
        "https://evil.example",
        "null",
        "https://app.example.evil",
        "not an origin",
        "https://APP.example:443/x",
    ] {
        let o = get(&cfg, "/either/x", &[("authorization", &b), ("origin", bad)]);
        assert_eq!(denied(&o), Deny::OriginNotAllowed, "{bad}");
        assert!(o.cors.is_none());
    }
    // no Origin: not a browser, as on a jwt rule (missing: allow)
    assert!(allowed(&get(&cfg, "/either/x", &[("authorization", &b)]))
        .token
        .is_some());
    // a 401 an allowed origin can read (so the app can refresh); a refused origin cannot
    let o = get(&cfg, "/either/x", &[("origin", APP)]);
    assert_eq!(denied(&o), Deny::MissingCredential);
    assert!(o.cors.is_some());
    let o = get(&cfg, "/either/x", &[("origin", "https://evil.example")]);
    assert_eq!(denied(&o), Deny::OriginNotAllowed);
    // two credentials are refused as ambiguous before any origin is looked at
    let o = get(
        &cfg,
        "/either/x",
        &[
            ("authorization", &b),
            ("x-api-key", KEY),
            ("origin", "https://evil.example"),
        ],
    );
    assert_eq!(denied(&o), Deny::AmbiguousCredential);
    // missing: deny refuses a token request without Origin too
    let strict = web_either(json!({"allowed": [APP], "missing": "deny"}));
    assert_eq!(
        denied(&get(&strict, "/either/x", &[("authorization", &b)])),
        Deny::OriginNotAllowed
    );
}

#[test]
fn a_key_on_a_token_or_key_rule_is_checked_against_its_own_origins() {
    let cfg = web_either(json!({"allowed": [APP], "cors": {}}));
    let from_app = key_answer_from(KEY, &[APP]);
    let from_nowhere = key_answer_from(KEY, &[]);
    let other = key_answer_from(KEY, &["https://other.example"]);
    let o = key_from(&cfg, Some(APP), &from_app);
    assert!(allowed(&o).key.is_some());
    assert!(o.cors.is_some());
    // the rule's `allowed` does not admit a key: the key's own origins decide
    assert_eq!(
        denied(&key_from(&cfg, Some(APP), &from_nowhere)),
        Deny::OriginNotAllowed
    );
    assert_eq!(denied(&key_from(&cfg, Some(APP), &other)), Deny::OriginNotAllowed);
    let o = key_from(&cfg, Some("https://other.example"), &other);
    assert!(allowed(&o).key.is_some(), "a key's own origin, not in the rule's list");
    // Origin: null never matches a key's origins, whatever `null` says
    let lax = web_either(json!({"allowed": [APP], "null": "allow"}));
    assert_eq!(denied(&key_from(&lax, Some("null"), &from_app)), Deny::OriginNotAllowed);
    assert!(allowed(&get(
        &lax,
        "/either/x",
        &[("authorization", &bearer("orders:read")), ("origin", "null")]
    ))
    .token
    .is_some());
    // no Origin: a server-to-server key is not asked about origins
    assert!(allowed(&key_from(&cfg, None, &from_nowhere)).key.is_some());
    // a key that is refused for its origin gets no CORS headers; scopes still apply after it
    assert!(key_from(&cfg, Some(APP), &from_nowhere).cors.is_none());
}

#[test]
fn a_preflight_on_a_token_or_key_rule_is_answered_on_the_origin_alone() {
    let cfg = web_either(json!({"allowed": [APP], "cors": {}}));
    let preflight = |origin: &'static str| {
        run(
            &cfg,
            &mut State::new(&cfg),
            "OPTIONS",
            "/either/x",
            &[("origin", origin), ("access-control-request-method", "GET")],
            None,
        )
    };
    assert!(matches!(preflight(APP).verdict, Verdict::Preflight(_)));
    assert_eq!(denied(&preflight("https://evil.example")), Deny::OriginNotAllowed);
    // the enforce switch turns the whole block off: any origin, no CORS
    let off = web_either(json!({"allowed": [APP], "enforce": false}));
    let o = get(
        &off,
        "/either/x",
        &[
            ("authorization", &bearer("orders:read")),
            ("origin", "https://evil.example"),
        ],
    );
    assert!(allowed(&o).token.is_some() && o.cors.is_none());
}

#[test]
fn a_token_or_key_rule_takes_a_tenant_claim_for_its_tokens() {
    let mut d = doc();
    d["tenants"] = json!({"acme": {"origins": ["https://acme.example"]}});
    d["rules"][0]["origin"] = json!({"tenant_claim": "tenant"});
    let cfg = parse(&d).unwrap();
    let tok = |tenant: &str| {
        let c = raw_claims(json!({
            "iss": "https://hs", "aud": "api", "sub": "alice", "scope": "orders:read", "tenant": tenant,
            "iat": NOW_S - 5, "exp": NOW_S + 60
        }));
        format!(
            "Bearer {}",
            HS256Key::from_bytes(SECRET.as_bytes()).authenticate(c).unwrap()
        )
    };
    let o = get(
        &cfg,
        "/either/x",
        &[("authorization", &tok("acme")), ("origin", "https://acme.example")],
    );
    assert!(allowed(&o).token.is_some());
    let o = get(
        &cfg,
        "/either/x",
        &[("authorization", &tok("other")), ("origin", "https://acme.example")],
    );
    assert_eq!(denied(&o), Deny::OriginNotAllowed);
    // a key is still judged by its own origins
    let o = key_from(&cfg, Some("https://acme.example"), &key_answer_from(KEY, &[]));
    assert_eq!(denied(&o), Deny::OriginNotAllowed);
}
