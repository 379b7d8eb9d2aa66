//! Rollout in the real Envoy (two workers), with the built filter and the
//! reference auth service: a report-only (shadow) rule lets every request
//! through, counts its would-be refusals apart and forwards identity only
//! for a would-be allow, beside a rule that still enforces; a rule that
//! accepts a token or an API key takes either, applies its scopes to the
//! one accepted, says which in the identity headers, and refuses both (400).
//! Each rule counts what it decided (`edge_auth.rule.<name>.*`). A token-or-key
//! rule's `origin` checks a token against the rule's origins, a key against its own.

use std::sync::OnceLock;
use std::time::Duration;

use edge_auth_e2e::context::FORGED;
use edge_auth_e2e::servers::echoed_header;
use edge_auth_e2e::service::{AuthService, SERVICE_TOKEN};
use edge_auth_e2e::tokens::{claims, jwks, key, Alg};
use edge_auth_e2e::{EchoServer, Envoy, EnvoyOptions, Response};
use serde_json::{json, Value};

const ISS: &str = "https://rollout.e2e";
/// The origin the `either-web` rule allows tokens from (tenant `acme` allows its keys none).
const APP: &str = "https://app.rollout.e2e";

struct Stack {
    envoy: Envoy,
    echo: EchoServer,
    /// Keys with scopes `orders:read`, and `orders:read orders:write`.
    reader: String,
    writer: String,
    _svc: AuthService,
}

fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        let svc = AuthService::start();
        svc.tenant("acme", &[], &[]);
        let (reader, _) = svc.key("acme", json!({"subject": "svc-reader", "scopes": ["orders:read"]}));
        let (writer, _) = svc.key(
            "acme",
            json!({"subject": "svc-writer", "scopes": ["orders:read", "orders:write"]}),
        );
        let echo = EchoServer::start();
        let jwt = json!({"providers": ["p"]});
        let config = json!({
            "providers": [{
                "name": "p", "issuer": ISS, "audiences": ["api"], "algorithms": ["ES256"],
                "jwks": jwks(&[key(Alg::ES256)]),
                "token_sources": [{"header": "authorization", "scheme": "Bearer"}, {"header": "x-token"}]
            }],
            "auth_service": {"cluster": "auth", "token_env": "E2E_SERVICE_TOKEN", "timeout_ms": 500},
            "api_keys": {"sources": [{"header": "x-api-key"}, {"header": "authorization", "scheme": "ApiKey"}]},
            "context": {},
            "rules": [
                {"name": "either", "match": {"prefix": "/either/"}, "jwt": jwt, "api_key": {},
                 "scopes": {"any_of": ["orders:read"]}},
                {"name": "either-write", "match": {"prefix": "/either-write/"}, "jwt": jwt, "api_key": {},
                 "scopes": {"all_of": ["orders:write"]}},
                {"name": "shadow", "match": {"prefix": "/shadow/"}, "jwt": jwt, "mode": "shadow",
                 "scopes": {"any_of": ["orders:read"]}},
                {"name": "shadow-key", "match": {"prefix": "/shadow-key/"}, "api_key": {}, "mode": "shadow"},
                {"name": "enforced", "match": {"prefix": "/enforced/"}, "jwt": jwt},
                // only the per-rule counters' test sends requests here
                {"name": "counted", "match": {"prefix": "/counted/"}, "jwt": jwt},
                {"name": "counted-shadow", "match": {"prefix": "/counted-shadow/"}, "jwt": jwt, "mode": "shadow"},
                {"name": "either-web", "match": {"prefix": "/either-web/"}, "jwt": jwt, "api_key": {},
                 "origin": {"allowed": [APP], "cors": {}}}
            ]
        });
        let mut opts = EnvoyOptions::new(config, echo.port())
            .cluster("auth", svc.port)
            .env("E2E_SERVICE_TOKEN", SERVICE_TOKEN);
        // the shadow denials' log lines are at debug level, as refusals are
        opts.component_log_level = Some("wasm:debug".into());
        let envoy = Envoy::start(opts).unwrap_or_else(|e| panic!("{e}"));
        Stack {
            envoy,
            echo,
            reader,
            writer,
            _svc: svc,
        }
    })
}

fn token(scope: &str) -> String {
    let mut c = claims(ISS, "api", "alice", 300);
    c["scope"] = json!(scope);
    key(Alg::ES256).sign(&c)
}

fn stat(name: &str) -> u64 {
    stack()
        .envoy
        .try_stat(&format!("wasmcustom.edge_auth.{name}"))
        .unwrap_or(0)
}

/// A request with the forged identity headers a client might add.
fn get(path: &str, headers: &[(&str, &str)]) -> Response {
    let all: Vec<(&str, &str)> = headers.iter().chain(FORGED).copied().collect();
    stack().envoy.get(path, &all)
}

fn passed(r: &Response) -> Value {
    assert_eq!(r.status, 200, "{}", r.summary());
    r.json()
}

fn method(echoed: &Value) -> Option<String> {
    echoed_header(echoed, "x-edge-auth-method")
}

#[test]
fn a_shadow_rule_lets_would_be_refusals_through_without_identity_and_counts_them_apart() {
    let s = stack();
    let before = s.echo.hits();
    let garbage = "Bearer eyJ.not-a.token";
    // would-be 401 (missing, malformed) and 403 (scope): all reach the upstream
    let echoed = passed(&get("/shadow/a", &[]));
    assert_eq!(method(&echoed), None, "no identity for a would-be denial");
    assert_eq!(
        echoed_header(&echoed, "x-edge-auth-subject"),
        None,
        "a forged header went up"
    );
    let echoed = passed(&get("/shadow/b", &[("authorization", garbage)]));
    assert_eq!(method(&echoed), None);
    assert_eq!(
        echoed_header(&echoed, "authorization").as_deref(),
        Some(garbage),
        "a would-be denial goes upstream as sent"
    );
    let echoed = passed(&get(
        "/shadow/c",
        &[("authorization", &format!("Bearer {}", token("other")))],
    ));
    assert_eq!(method(&echoed), None);
    // an unknown key on a shadow key rule: looked up, refused in shadow, passed
    let unknown = format!("sk_{}", "ab".repeat(32));
    let echoed = passed(&get("/shadow-key/d", &[("x-api-key", &unknown)]));
    assert_eq!(method(&echoed), None);
    // a would-be allow forwards the identity, as an enforced allow would
    let echoed = passed(&get(
        "/shadow/e",
        &[("authorization", &format!("Bearer {}", token("orders:read")))],
    ));
    assert_eq!(method(&echoed).as_deref(), Some("jwt"));
    assert_eq!(echoed_header(&echoed, "x-edge-auth-subject").as_deref(), Some("alice"));
    assert_eq!(
        echoed_header(&echoed, "authorization"),
        None,
        "the token is emptied as when enforced"
    );
    assert!(s.echo.hits() >= before + 5);

    assert!(stat("shadow_denied.missing_token") >= 1);
    assert!(stat("shadow_denied.malformed_token") >= 1);
    assert!(stat("shadow_denied.insufficient_scope") >= 1);
    assert!(stat("shadow_denied.api_key_unknown") >= 1);
    // logged with the rule and a fingerprint, never the credential
    let line = "shadow denied reason=malformed_token rule=shadow credential=";
    assert!(
        s.envoy.wait_for_log(line, Duration::from_secs(5)),
        "{}",
        s.envoy.log_tail(20)
    );
    assert!(!s.envoy.log().contains("eyJ.not-a.token"));
    assert!(s
        .envoy
        .log()
        .contains("CHECK DISABLED: rules[2] is report-only (mode: shadow)"));
    // no other test of this file makes these real refusals
    for reason in ["malformed_token", "api_key_unknown"] {
        assert_eq!(
            stat(&format!("denied.{reason}")),
            0,
            "{reason} counted as a real refusal"
        );
    }
}

#[test]
fn an_enforced_rule_beside_a_shadow_one_still_enforces() {
    let before = stat("denied.missing_token");
    let r = get("/enforced/x", &[]);
    assert_eq!(r.status, 401, "{}", r.summary());
    assert!(stat("denied.missing_token") > before);
    // a path refused as dangerous is refused on a shadow rule too
    let r = get("/shadow/..%2fenforced/x", &[]);
    assert_eq!(r.status, 400, "{}", r.summary());
    let echoed = passed(&get(
        "/enforced/y",
        &[("authorization", &format!("Bearer {}", token("")))],
    ));
    assert_eq!(method(&echoed).as_deref(), Some("jwt"));
}

#[test]
fn a_token_or_a_key_rule_takes_either_and_applies_its_scopes() {
    let s = stack();
    let read_token = format!("Bearer {}", token("orders:read"));
    // a token
    let echoed = passed(&get("/either/1", &[("authorization", &read_token)]));
    assert_eq!(method(&echoed).as_deref(), Some("jwt"));
    assert_eq!(echoed_header(&echoed, "x-edge-auth-subject").as_deref(), Some("alice"));
    // a key, in either key place
    let echoed = passed(&get("/either/2", &[("x-api-key", &s.reader)]));
    assert_eq!(method(&echoed).as_deref(), Some("api_key"));
    assert_eq!(
        echoed_header(&echoed, "x-edge-auth-subject").as_deref(),
        Some("svc-reader")
    );
    assert_eq!(echoed_header(&echoed, "x-api-key"), None);
    let echoed = passed(&get("/either/3", &[("authorization", &format!("ApiKey {}", s.writer))]));
    assert_eq!(method(&echoed).as_deref(), Some("api_key"));
    // scopes of whichever was accepted
    let r = get("/either-write/1", &[("authorization", &read_token)]);
    assert_eq!(r.status, 403, "{}", r.summary());
    let r = get("/either-write/2", &[("x-api-key", &s.reader)]);
    assert_eq!(r.status, 403, "{}", r.summary());
    assert_eq!(r.json()["error"], "insufficient_scope");
    let write_token = format!("Bearer {}", token("orders:write"));
    assert_eq!(
        method(&passed(&get("/either-write/3", &[("authorization", &write_token)]))).as_deref(),
        Some("jwt")
    );
    assert_eq!(
        method(&passed(&get("/either-write/4", &[("x-api-key", &s.writer)]))).as_deref(),
        Some("api_key")
    );
    // neither: 401 offering both schemes
    let r = get("/either/4", &[]);
    assert_eq!(r.status, 401, "{}", r.summary());
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains("ApiKey "),
        "{challenge}"
    );
    assert!(stat("denied.missing_credential") >= 1);
}

#[test]
fn a_token_and_a_key_or_two_of_one_kind_are_refused_as_ambiguous() {
    let s = stack();
    let t = token("orders:read");
    let bearer = format!("Bearer {t}");
    let (api_reader, api_writer) = (format!("ApiKey {}", s.reader), format!("ApiKey {}", s.writer));
    let other = token("orders:write");
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("authorization", &bearer), ("x-api-key", &s.reader)],
        vec![("x-token", &t), ("authorization", &api_reader)],
        vec![("x-api-key", &s.reader), ("x-api-key", &s.writer)],
        vec![("x-api-key", &s.reader), ("authorization", &api_writer)],
        vec![("authorization", &bearer), ("x-token", &other)],
        vec![("x-api-key", &s.reader), ("x-token", "garbage")],
    ];
    for headers in &cases {
        let r = get("/either/x", headers);
        assert_eq!(r.status, 400, "{headers:?}: {}", r.summary());
        assert_eq!(r.json()["error"], "invalid_request");
        assert!(!String::from_utf8_lossy(&r.body).contains(&s.reader));
    }
    assert!(stat("denied.ambiguous_credential") >= cases.len() as u64);
    // an empty place beside a key holds nothing: the key is accepted, the empty place emptied
    let echoed = passed(&get(
        "/either/y",
        &[("authorization", "Bearer"), ("x-api-key", &s.reader)],
    ));
    assert_eq!(method(&echoed).as_deref(), Some("api_key"));
    assert_eq!(echoed_header(&echoed, "authorization"), None);
}

#[test]
fn each_rule_counts_what_it_allowed_denied_and_would_have_denied() {
    let counted = |rule: &str| ["allowed", "denied", "shadow_denied"].map(|v| stat(&format!("rule.{rule}.{v}")));
    // defined at configure time: present (at zero) before any request
    for rule in ["counted", "counted-shadow", "either", "shadow-key"] {
        for v in ["allowed", "denied", "shadow_denied"] {
            let name = format!("wasmcustom.edge_auth.rule.{rule}.{v}");
            assert!(stack().envoy.try_stat(&name).is_some(), "{name} is not defined");
        }
    }
    let bearer = format!("Bearer {}", token(""));
    passed(&get("/counted/a", &[("authorization", &bearer)]));
    assert_eq!(get("/counted/b", &[]).status, 401);
    assert_eq!(get("/counted/c", &[("authorization", "Bearer eyJ.no.t")]).status, 401);
    passed(&get("/counted-shadow/a", &[("authorization", &bearer)]));
    passed(&get("/counted-shadow/b", &[]));
    passed(&get("/counted-shadow/c", &[]));
    // refused before a rule is chosen, or by no rule: no rule's counter moves
    assert_eq!(get("/counted/..%2fcounted-shadow/x", &[]).status, 400);
    assert_eq!(get("/nowhere", &[]).status, 403);
    assert_eq!(counted("counted"), [1, 2, 0]);
    assert_eq!(counted("counted-shadow"), [1, 0, 2]);
}

#[test]
fn a_token_or_key_rule_checks_a_tokens_origin_against_the_rule_and_a_keys_against_the_key() {
    let s = stack();
    let bearer = format!("Bearer {}", token("orders:read"));
    let r = get("/either-web/1", &[("authorization", &bearer), ("origin", APP)]);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));
    let r = get(
        "/either-web/2",
        &[("authorization", &bearer), ("origin", "https://evil.example")],
    );
    assert_eq!(r.status, 403, "{}", r.summary());
    assert_eq!(r.json()["error"], "origin_not_allowed");
    assert_eq!(r.header("access-control-allow-origin"), None);
    // a key: its tenant allows no origin, so the rule's own list does not let it in from APP
    let r = get("/either-web/3", &[("x-api-key", &s.reader), ("origin", APP)]);
    assert_eq!(r.status, 403, "{}", r.summary());
    assert_eq!(r.json()["error"], "origin_not_allowed");
    // without Origin (server to server) both pass
    let echoed = passed(&get("/either-web/4", &[("x-api-key", &s.reader)]));
    assert_eq!(method(&echoed).as_deref(), Some("api_key"));
    let echoed = passed(&get("/either-web/5", &[("authorization", &bearer)]));
    assert_eq!(method(&echoed).as_deref(), Some("jwt"));
    // a preflight is answered on the origin alone
    let r = s.envoy.request(
        "OPTIONS",
        "/either-web/6",
        &[("origin", APP), ("access-control-request-method", "GET")],
        b"",
    );
    assert_eq!(r.status, 204, "{}", r.summary());
}
