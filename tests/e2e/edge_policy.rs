//! Edge policy in the real Envoy: Origin allowlists with their wildcard traps,
//! CORS preflights, client address allowlists with trusted hops 0, 1 and 2
//! (spoofed and malformed X-Forwarded-For), an IPv6 client, per-rule and
//! global switches, scopes any-of/all-of and role inheritance.

use std::sync::OnceLock;

use edge_auth_e2e::servers::echoed_header;
use edge_auth_e2e::tokens::{claims, jwks, key, Alg};
use edge_auth_e2e::{http, EchoServer, Envoy, EnvoyOptions, Response};
use serde_json::{json, Value};

const ISS: &str = "https://policy.e2e";
const AUD: &str = "policy-api";

struct Stack {
    envoy: Envoy,
    echo: EchoServer,
}

fn rules() -> Value {
    json!([
        {"name": "ip0", "match": {"prefix": "/ip0/"}, "public": true, "ip": {"allow": ["127.0.0.1"]}},
        {"name": "ip0-office", "match": {"prefix": "/office/"}, "public": true, "ip": {"allow": ["10.0.0.0/8"]}},
        {"name": "ip1", "match": {"prefix": "/ip1/"}, "public": true,
         "ip": {"allow": ["198.51.100.0/24"], "deny": ["198.51.100.66"], "trusted_hops": 1}},
        {"name": "ip2", "match": {"prefix": "/ip2/"}, "public": true, "ip": {"allow": ["198.51.100.0/24"], "trusted_hops": 2}},
        {"name": "ipv6", "match": {"prefix": "/v6/"}, "public": true, "ip": {"allow": ["::1"]}},
        {"name": "ip-off", "match": {"prefix": "/ipoff/"}, "public": true, "ip": {"allow": ["10.0.0.0/8"], "enforce": false}},
        {"name": "app", "match": {"prefix": "/app/"}, "jwt": {"providers": ["p"]},
         "origin": {"allowed": ["https://app.example.com", "https://*.example.com"],
                    "cors": {"allow_methods": ["GET", "POST"], "allow_credentials": true, "max_age_s": 120,
                             "expose_headers": ["x-request-id"]}}},
        {"name": "strict", "match": {"prefix": "/strict/"}, "jwt": {"providers": ["p"]},
         "origin": {"allowed": ["https://app.example.com"], "missing": "deny", "cors": {"preflight": "pass"}}},
        {"name": "tenant", "match": {"prefix": "/tenant/"}, "jwt": {"providers": ["p"]},
         "origin": {"tenant_claim": "tenant", "cors": {}}},
        {"name": "origin-off", "match": {"prefix": "/originoff/"}, "jwt": {"providers": ["p"]},
         "origin": {"allowed": ["https://app.example.com"], "enforce": false}},
        {"name": "orders-read", "match": {"prefix": "/orders/", "methods": ["GET"]}, "jwt": {"providers": ["p"]},
         "scopes": {"any_of": ["orders:read", "orders:admin"]}},
        {"name": "orders-write", "match": {"prefix": "/orders/"}, "jwt": {"providers": ["p"]},
         "scopes": {"all_of": ["orders:read", "orders:write"]}},
        {"name": "users", "match": {"prefix": "/users/"}, "jwt": {"providers": ["p"]}, "scopes": {"any_of": ["users:delete"]}}
    ])
}

fn config(development: Value) -> Value {
    json!({
        "providers": [{
            "name": "p", "issuer": ISS, "audiences": [AUD], "algorithms": ["ES256"],
            "jwks": jwks(&[key(Alg::ES256)]),
            "scope_claims": ["scope", "permissions"],
            "role_claim": "roles",
            "claim_headers": [{"claim": "sub", "header": "x-auth-subject"}]
        }],
        "roles": {
            "viewer": {"permissions": ["orders:read"]},
            "user": {"includes": ["viewer"], "permissions": ["orders:write"]},
            "admin": {"includes": ["user"], "permissions": ["users:delete"]}
        },
        "tenants": {
            "acme": {"origins": ["https://acme.example", "https://*.acme.example"]},
            "globex": {"origins": ["https://globex.example"]}
        },
        "development": development,
        "envoy_appends_xff": true,
        "rules": rules()
    })
}

fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        let echo = EchoServer::start();
        let opts = EnvoyOptions {
            ipv6: true,
            ..EnvoyOptions::new(config(json!({})), echo.port())
        };
        let envoy = Envoy::start(opts).unwrap_or_else(|e| panic!("{e}"));
        Stack { envoy, echo }
    })
}

fn token(extra: Value) -> String {
    let mut c = claims(ISS, AUD, "alice", 300);
    for (k, v) in extra.as_object().into_iter().flatten() {
        c[k] = v.clone();
    }
    key(Alg::ES256).sign(&c)
}

fn get(path: &str, headers: &[(&str, &str)]) -> Response {
    stack().envoy.get(path, headers)
}

fn assert_forbidden(r: &Response, error: &str) {
    assert_eq!(r.status, 403, "{}", r.summary());
    assert_eq!(r.json()["error"], error, "{}", r.summary());
}

#[test]
fn origins_exact_wildcard_and_traps() {
    let bearer = format!("Bearer {}", token(json!({})));
    for ok in [
        "https://app.example.com",
        "https://APP.Example.com:443",
        "https://eu.example.com",
        "https://a.b.example.com",
    ] {
        let r = get("/app/x", &[("origin", ok), ("authorization", &bearer)]);
        assert_eq!(r.status, 200, "{ok}: {}", r.summary());
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some(ok),
            "CORS header echoes the origin as sent"
        );
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        assert!(
            r.header_all("vary").iter().any(|v| v.eq_ignore_ascii_case("origin")),
            "{:?}",
            r.headers
        );
    }
    for bad in [
        "https://example.com",
        "https://example.com.evil.net",
        "https://evil-example.com",
        "https://evilexample.com",
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://app.example.com/path",
        "https://user@app.example.com",
        "null",
        "not an origin",
    ] {
        let r = get("/app/x", &[("origin", bad), ("authorization", &bearer)]);
        assert_forbidden(&r, "origin_not_allowed");
        assert!(r.header("access-control-allow-origin").is_none());
    }
    // no Origin (server-to-server) is allowed by default, refused where the rule says so
    assert_eq!(get("/app/x", &[("authorization", &bearer)]).status, 200);
    assert_forbidden(&get("/strict/x", &[("authorization", &bearer)]), "origin_not_allowed");
    // the origin check needs no token: refused before authentication
    assert_forbidden(&get("/app/x", &[("origin", "https://evil.net")]), "origin_not_allowed");
    // a 401 to an allowed origin carries CORS headers, so the browser app can read it and refresh
    let r = get("/app/x", &[("origin", "https://app.example.com")]);
    assert_eq!(r.status, 401, "{}", r.summary());
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example.com"));
}

#[test]
fn cors_preflights_answered_passed_and_refused() {
    let s = stack();
    let preflight = |path: &str, origin: &str, method: &str, probe: &str| {
        s.envoy.request(
            "OPTIONS",
            path,
            &[
                ("origin", origin),
                ("access-control-request-method", method),
                ("x-e2e-probe", probe),
            ],
            "",
        )
    };
    let r = preflight("/app/x", "https://app.example.com", "POST", "pf-answer");
    assert_eq!(r.status, 204, "{}", r.summary());
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(r.header("access-control-max-age"), Some("120"));
    assert!(r
        .header("access-control-allow-methods")
        .unwrap_or_default()
        .contains("POST"));
    assert!(
        !s.echo.saw("x-e2e-probe", "pf-answer"),
        "an answered preflight reaches no upstream"
    );

    assert_forbidden(
        &preflight("/app/x", "https://evil.net", "POST", "pf-evil"),
        "origin_not_allowed",
    );
    assert_forbidden(
        &preflight("/app/x", "https://app.example.com", "DELETE", "pf-method"),
        "origin_not_allowed",
    );

    // pass mode: the upstream answers, and whatever looks like a credential is not passed on
    let headers = [
        ("origin", "https://app.example.com"),
        ("access-control-request-method", "GET"),
        ("authorization", "Bearer forged"),
        ("cookie", "session=forged"),
        ("x-e2e-probe", "pf-pass"),
    ];
    let r = s.envoy.request("OPTIONS", "/strict/x", &headers, "");
    assert_eq!(r.status, 200, "{}", r.summary());
    let seen = s
        .echo
        .requests()
        .into_iter()
        .find(|q| q.header("x-e2e-probe") == Some("pf-pass"));
    let seen = seen.expect("the passed preflight reached the upstream");
    assert!(
        seen.header("authorization").is_none() && seen.header("cookie").is_none(),
        "{:?}",
        seen.headers
    );
    // a "preflight" with a body is no browser's: refused rather than passed unauthenticated
    let with_body = [
        ("origin", "https://app.example.com"),
        ("access-control-request-method", "GET"),
        ("x-e2e-probe", "pf-body"),
    ];
    let r = s.envoy.request("OPTIONS", "/strict/x", &with_body, "delete everything");
    assert_eq!(r.status, 400, "{}", r.summary());
    assert!(!s.echo.saw("x-e2e-probe", "pf-body"));
    assert_forbidden(
        &preflight("/strict/x", "https://b.example.com", "GET", "pf-pass-bad"),
        "origin_not_allowed",
    );

    // tenant rules answer preflights for any configured tenant's origin
    assert_eq!(
        preflight("/tenant/x", "https://eu.acme.example", "GET", "pf-t").status,
        204
    );
    assert_forbidden(
        &preflight("/tenant/x", "https://initech.example", "GET", "pf-t2"),
        "origin_not_allowed",
    );
    assert!(s.envoy.stat("wasmcustom.edge_auth.allowed.preflight") >= 2);
}

#[test]
fn tenant_origins_come_from_the_callers_tenant() {
    let acme = format!("Bearer {}", token(json!({"tenant": "acme"})));
    let globex = format!("Bearer {}", token(json!({"tenant": "globex"})));
    let call = |bearer: &str, origin: &str| get("/tenant/x", &[("origin", origin), ("authorization", bearer)]);
    assert_eq!(call(&acme, "https://acme.example").status, 200);
    assert_eq!(call(&acme, "https://shop.acme.example").status, 200);
    assert_eq!(call(&globex, "https://globex.example").status, 200);
    assert_forbidden(&call(&acme, "https://globex.example"), "origin_not_allowed");
    assert_forbidden(&call(&globex, "https://acme.example"), "origin_not_allowed");
    let nobody = format!("Bearer {}", token(json!({})));
    assert_forbidden(&call(&nobody, "https://acme.example"), "origin_not_allowed");
}

#[test]
fn trusted_hops_zero_uses_the_peer_and_ignores_forwarded_for() {
    assert_eq!(get("/ip0/x", &[]).status, 200);
    // a client claiming to be someone else changes nothing
    assert_eq!(get("/ip0/x", &[("x-forwarded-for", "192.0.2.1")]).status, 200);
    assert_forbidden(&get("/office/x", &[]), "ip_not_allowed");
    assert_forbidden(&get("/office/x", &[("x-forwarded-for", "10.1.2.3")]), "ip_not_allowed");
    assert_forbidden(
        &get("/office/x", &[("x-forwarded-for", "10.1.2.3, 10.1.2.3")]),
        "ip_not_allowed",
    );
}

#[test]
fn trusted_hops_one_takes_the_load_balancers_entry() {
    // The test client plays the load balancer: it appends the address it saw last.
    assert_eq!(get("/ip1/x", &[("x-forwarded-for", "198.51.100.7")]).status, 200);
    // a forged left entry is the client's own text: the LB's entry decides
    assert_forbidden(
        &get("/ip1/x", &[("x-forwarded-for", "198.51.100.7, 192.0.2.50")]),
        "ip_not_allowed",
    );
    assert_eq!(
        get("/ip1/x", &[("x-forwarded-for", "192.0.2.50, 198.51.100.9")]).status,
        200
    );
    // deny wins inside the allowed range
    assert_forbidden(
        &get("/ip1/x", &[("x-forwarded-for", "198.51.100.66")]),
        "ip_not_allowed",
    );
    // a second header line appended by the LB: the lines are read in order, never the first alone
    let r = get(
        "/ip1/x",
        &[("x-forwarded-for", "198.51.100.7"), ("x-forwarded-for", "192.0.2.50")],
    );
    assert_forbidden(&r, "ip_not_allowed");
    // malformed or missing: refused, never a fallback to the peer or the leftmost entry
    for xff in ["garbage", "198.51.100.7, not-an-ip", "", " , ", "198.51.100.7:99999"] {
        assert_forbidden(&get("/ip1/x", &[("x-forwarded-for", xff)]), "ip_not_allowed");
    }
    assert_forbidden(&get("/ip1/x", &[]), "ip_not_allowed");
    // ports and brackets that proxies add are understood
    assert_eq!(get("/ip1/x", &[("x-forwarded-for", "198.51.100.7:5123")]).status, 200);
}

#[test]
fn trusted_hops_two_skip_the_cdn_and_the_load_balancer() {
    // client -> CDN (appends the client) -> LB (appends the CDN) -> Envoy (appends the LB)
    assert_eq!(
        get("/ip2/x", &[("x-forwarded-for", "198.51.100.7, 203.0.113.1")]).status,
        200
    );
    assert_eq!(
        get(
            "/ip2/x",
            &[("x-forwarded-for", "junk, 192.0.2.9, 198.51.100.7, 203.0.113.1")]
        )
        .status,
        200
    );
    assert_forbidden(
        &get("/ip2/x", &[("x-forwarded-for", "198.51.100.7, 192.0.2.9, 203.0.113.1")]),
        "ip_not_allowed",
    );
    // fewer entries than trusted hops
    assert_forbidden(&get("/ip2/x", &[("x-forwarded-for", "198.51.100.7")]), "ip_not_allowed");
    // a malformed entry inside the trusted range
    assert_forbidden(
        &get("/ip2/x", &[("x-forwarded-for", "198.51.100.7, cdn.example")]),
        "ip_not_allowed",
    );
}

#[test]
fn an_ipv6_client_on_loopback() {
    let s = stack();
    let v6 = s.envoy.addr_v6().expect("ipv6 listener");
    let r = http::request(v6, "GET", "/v6/x", &[], "");
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_forbidden(&get("/v6/x", &[]), "ip_not_allowed");
    let r = http::request(v6, "GET", "/ip0/x", &[], "");
    assert_forbidden(&r, "ip_not_allowed");
    assert!(s.envoy.stat("wasmcustom.edge_auth.denied.ip_not_allowed") >= 1);
}

#[test]
fn per_rule_switches_turn_a_check_off_loudly() {
    let s = stack();
    assert_eq!(get("/ipoff/x", &[]).status, 200);
    let bearer = format!("Bearer {}", token(json!({})));
    assert_eq!(
        get(
            "/originoff/x",
            &[("origin", "https://evil.net"), ("authorization", &bearer)]
        )
        .status,
        200
    );
    let log = s.envoy.log();
    assert!(
        log.contains("CHECK DISABLED: rules[5].ip.enforce is false"),
        "no loud log line"
    );
    assert!(log.contains("CHECK DISABLED: rules[9].origin.enforce is false"));
}

#[test]
fn global_development_switches() {
    let echo = EchoServer::start();
    let cfg = config(json!({"disable_origin_checks": true, "disable_ip_checks": true}));
    let envoy = Envoy::start(EnvoyOptions::new(cfg, echo.port())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(envoy.get("/office/x", &[]).status, 200);
    let bearer = format!("Bearer {}", token(json!({})));
    assert_eq!(
        envoy
            .get("/app/x", &[("origin", "https://evil.net"), ("authorization", &bearer)])
            .status,
        200
    );
    assert!(envoy
        .log()
        .contains("CHECK DISABLED: development.disable_origin_checks is set"));
    assert!(envoy
        .log()
        .contains("CHECK DISABLED: development.disable_ip_checks is set"));
}

#[test]
fn scopes_any_of_all_of_and_role_inheritance() {
    let call = |method: &str, path: &str, extra: Value| {
        stack().envoy.request(
            method,
            path,
            &[("authorization", &format!("Bearer {}", token(extra)))],
            "",
        )
    };
    assert_eq!(
        call("GET", "/orders/1", json!({"scope": "openid orders:read"})).status,
        200
    );
    assert_eq!(
        call("GET", "/orders/1", json!({"permissions": ["orders:admin"]})).status,
        200,
        "any_of"
    );
    let r = call("GET", "/orders/1", json!({"scope": "openid"}));
    assert_forbidden(&r, "insufficient_scope");
    let www = r.header("www-authenticate").unwrap_or_default().to_owned();
    assert!(www.contains("error=\"insufficient_scope\""), "{www}");
    assert!(www.contains("scope=\"orders:read orders:admin\""), "{www}");
    // all_of
    assert_forbidden(
        &call("POST", "/orders/1", json!({"scope": "orders:read"})),
        "insufficient_scope",
    );
    assert_eq!(
        call("POST", "/orders/1", json!({"scope": "orders:read orders:write"})).status,
        200
    );
    // roles: admin includes user includes viewer
    assert_eq!(call("POST", "/orders/1", json!({"roles": ["user"]})).status, 200);
    assert_eq!(call("POST", "/orders/1", json!({"roles": "admin"})).status, 200);
    assert_forbidden(
        &call("POST", "/orders/1", json!({"roles": ["viewer"]})),
        "insufficient_scope",
    );
    assert_eq!(call("DELETE", "/users/9", json!({"roles": ["admin"]})).status, 200);
    assert_forbidden(
        &call("DELETE", "/users/9", json!({"roles": ["user"]})),
        "insufficient_scope",
    );
    // hostile claims grant nothing
    for extra in [
        json!({"scope": "users:delete\nx"}),
        json!({"roles": [{"admin": true}]}),
        json!({"roles": "superadmin"}),
    ] {
        assert_forbidden(&call("DELETE", "/users/9", extra), "insufficient_scope");
    }
    // a valid token without the scope is 403, not 401; the identity still reached nobody
    let r = call("DELETE", "/users/9", json!({"scope": "users:read"}));
    assert_eq!(r.status, 403);
    assert!(stack().envoy.stat("wasmcustom.edge_auth.denied.insufficient_scope") >= 5);
    let ok = call("GET", "/orders/2", json!({"roles": ["viewer"]}));
    assert_eq!(echoed_header(&ok.json(), "x-auth-subject").as_deref(), Some("alice"));
    let _ = &stack().echo;
}

#[test]
fn non_utf8_forwarded_for_and_origin_are_refused_not_fatal() {
    let s = stack();
    let raw = |path: &str, head: &[u8]| {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: e2e\r\n").into_bytes();
        req.extend_from_slice(head);
        req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        http::raw(s.envoy.addr(), &req)
    };
    assert_forbidden(&raw("/ip1/x", b"X-Forwarded-For: 198.51.100.7\xff"), "ip_not_allowed");
    // a rule that reads the whole header map does not trip over an unrelated Latin-1 header
    let r = raw("/ip1/x", b"X-Forwarded-For: 198.51.100.7\r\nUser-Agent: caf\xe9");
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_forbidden(
        &raw("/app/x", b"Origin: https://app.example.com\xff"),
        "origin_not_allowed",
    );
    assert_eq!(get("/ip0/x", &[]).status, 200, "the VMs still serve");
}
