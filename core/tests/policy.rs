//! Edge policy decisions: client address, Origin and CORS preflight, tenant
//! origins, scopes and roles. No proxy involved.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::collections::HashMap;

use edge_auth_core::config::{self, Config};
use edge_auth_core::decision::{decide, Attempt, Deny, Outcome, Request, State, Verdict};
use edge_auth_core::response;
use jwt_simple::prelude::*;

mod common;
use common::raw_claims;
use serde_json::{json, Value};

const NOW_S: u64 = 1_800_000_000;
const NOW: u64 = NOW_S * 1000;
const SECRET: &str = "0123456789abcdef0123456789abcdef-policy";

fn config_with(extra: Value) -> Result<Config, config::ConfigError> {
    let mut doc = json!({
        "providers": [{
            "name": "p", "issuer": "https://p", "audiences": ["api"], "algorithms": ["HS256"],
            "hmac_secrets": [{"env": "SECRET", "alg": "HS256"}],
            "scope_claims": ["scope", "permissions"],
            "role_claim": "roles"
        }],
        "roles": {
            "viewer": {"permissions": ["orders:read"]},
            "user": {"includes": ["viewer"], "permissions": ["orders:write"]},
            "admin": {"includes": ["user"], "permissions": ["users:delete"]}
        },
        "envoy_appends_xff": true,
        "tenants": {
            "acme": {"origins": ["https://acme.example", "https://*.acme.example"]},
            "globex": {"origins": ["https://globex.example"]}
        },
        "rules": [
            {"name": "office", "match": {"prefix": "/office/"}, "public": true,
             "ip": {"allow": ["10.0.0.0/8", "2001:db8::/32"], "deny": ["10.66.0.0/16"]}},
            {"name": "behind-lb", "match": {"prefix": "/lb/"}, "public": true,
             "ip": {"allow": ["198.51.100.0/24"], "trusted_hops": 1}},
            {"name": "behind-two", "match": {"prefix": "/two/"}, "public": true,
             "ip": {"allow": ["198.51.100.0/24"], "trusted_hops": 2}},
            {"name": "app", "match": {"prefix": "/app/"}, "jwt": {"providers": ["p"]},
             "origin": {"allowed": ["https://app.example.com", "https://*.example.com"],
                        "cors": {"allow_methods": ["GET", "POST"], "allow_headers": ["authorization", "content-type"],
                                 "max_age_s": 300, "allow_credentials": true}}},
            {"name": "strict", "match": {"prefix": "/strict/"}, "jwt": {"providers": ["p"]},
             "origin": {"allowed": ["https://app.example.com"], "missing": "deny", "cors": {"preflight": "pass"}}},
            {"name": "tenant", "match": {"prefix": "/tenant/"}, "jwt": {"providers": ["p"]},
             "origin": {"tenant_claim": "tenant", "cors": {}}},
            {"name": "read", "match": {"prefix": "/orders/", "methods": ["GET"]}, "jwt": {"providers": ["p"]},
             "scopes": {"any_of": ["orders:read", "orders:admin"]}},
            {"name": "write", "match": {"prefix": "/orders/"}, "jwt": {"providers": ["p"]},
             "scopes": {"all_of": ["orders:read", "orders:write"]}},
            {"name": "users", "match": {"prefix": "/users/"}, "jwt": {"providers": ["p"]},
             "scopes": {"any_of": ["users:delete"]}}
        ]
    });
    for (k, v) in extra.as_object().unwrap() {
        doc[k] = v.clone();
    }
    config::parse(doc.to_string().as_bytes(), &|n| {
        (n == "SECRET").then(|| SECRET.to_owned())
    })
}

fn config() -> Config {
    config_with(json!({})).unwrap()
}

fn token(extra: Value) -> String {
    let mut claims = json!({"iss": "https://p", "aud": "api", "sub": "alice", "iat": NOW_S - 5, "exp": NOW_S + 60});
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    let c = raw_claims(claims);
    HS256Key::from_bytes(SECRET.as_bytes()).authenticate(c).unwrap()
}

struct Req {
    headers: HashMap<&'static str, String>,
    peer: Option<String>,
    xff: Option<String>,
    body: bool,
}

impl Req {
    fn new(headers: &[(&'static str, &str)]) -> Req {
        Req {
            headers: headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            peer: Some("10.1.2.3:5000".into()),
            xff: None,
            body: false,
        }
    }
    fn with_body(mut self) -> Req {
        self.body = true;
        self
    }
    fn peer(mut self, p: &str) -> Req {
        self.peer = Some(p.into());
        self
    }
    fn xff(mut self, x: &str) -> Req {
        self.xff = Some(x.into());
        self
    }
    fn bearer(mut self, t: &str) -> Req {
        self.headers.insert("authorization", format!("Bearer {t}"));
        self
    }
}

impl Request for Req {
    fn header(&mut self, name: &str) -> Option<String> {
        self.headers.get(name).cloned()
    }
    fn forwarded_for(&mut self) -> Option<String> {
        self.xff.clone()
    }
    fn peer(&mut self) -> Option<String> {
        self.peer.clone()
    }
    fn has_body(&mut self) -> bool {
        self.body
    }
}

fn run<'c>(cfg: &'c Config, method: &str, path: &str, mut req: Req) -> Outcome<'c> {
    let mut st = State::new(cfg);
    let attempt = Attempt {
        method,
        path,
        now_ms: NOW,
        may_await: true,
        answer: None,
    };
    decide(cfg, &mut st, &attempt, &mut req)
}

fn allowed(o: &Outcome<'_>) -> bool {
    matches!(o.verdict, Verdict::Allow(_))
}

fn denial<'c>(o: &Outcome<'c>) -> Deny<'c> {
    match &o.verdict {
        Verdict::Deny(d) => *d,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn ip_allow_and_deny_lists() {
    let cfg = config();
    assert!(allowed(&run(&cfg, "GET", "/office/x", Req::new(&[]))));
    assert_eq!(
        denial(&run(&cfg, "GET", "/office/x", Req::new(&[]).peer("10.66.1.1:1"))),
        Deny::IpNotAllowed,
        "deny wins"
    );
    assert_eq!(
        denial(&run(&cfg, "GET", "/office/x", Req::new(&[]).peer("192.0.2.1:1"))),
        Deny::IpNotAllowed
    );
    assert!(allowed(&run(
        &cfg,
        "GET",
        "/office/x",
        Req::new(&[]).peer("[2001:db8::7]:1")
    )));
    assert!(
        allowed(&run(
            &cfg,
            "GET",
            "/office/x",
            Req::new(&[]).peer("[::ffff:10.9.9.9]:1")
        )),
        "mapped IPv4"
    );
    assert_eq!(
        denial(&run(&cfg, "GET", "/office/x", Req::new(&[]).peer("[::1]:1"))),
        Deny::IpNotAllowed
    );
    let mut no_peer = Req::new(&[]);
    no_peer.peer = None;
    assert_eq!(
        denial(&run(&cfg, "GET", "/office/x", no_peer)),
        Deny::IpNotAllowed,
        "no address: fail closed"
    );
    // with zero trusted hops, X-Forwarded-For cannot help
    assert_eq!(
        denial(&run(
            &cfg,
            "GET",
            "/office/x",
            Req::new(&[]).peer("192.0.2.1:1").xff("10.1.1.1, 192.0.2.1")
        )),
        Deny::IpNotAllowed
    );
}

#[test]
fn trusted_hops_pick_the_right_forwarded_entry() {
    let cfg = config();
    // Envoy appended the peer (the load balancer 203.0.113.9) after the LB's own entry.
    let lb = |xff: &str| Req::new(&[]).peer("203.0.113.9:443").xff(xff);
    assert!(allowed(&run(&cfg, "GET", "/lb/x", lb("198.51.100.7, 203.0.113.9"))));
    // a client-forged left entry is ignored; the LB's entry decides
    assert_eq!(
        denial(&run(&cfg, "GET", "/lb/x", lb("198.51.100.7, 192.0.2.66, 203.0.113.9"))),
        Deny::IpNotAllowed
    );
    assert!(allowed(&run(
        &cfg,
        "GET",
        "/lb/x",
        lb("6.6.6.6, 198.51.100.8, 203.0.113.9")
    )));
    // fewer entries than trusted hops, garbage in the trusted range: refused
    assert_eq!(
        denial(&run(&cfg, "GET", "/two/x", lb("198.51.100.7, 203.0.113.9"))),
        Deny::IpNotAllowed
    );
    assert_eq!(
        denial(&run(&cfg, "GET", "/lb/x", lb("not-an-ip, 203.0.113.9"))),
        Deny::IpNotAllowed
    );
    assert_eq!(
        denial(&run(&cfg, "GET", "/lb/x", Req::new(&[]).peer("203.0.113.9:1"))),
        Deny::IpNotAllowed
    );
    // two hops
    assert!(allowed(&run(
        &cfg,
        "GET",
        "/two/x",
        lb("1.1.1.1, 198.51.100.20, 203.0.113.1, 203.0.113.9")
    )));
    assert_eq!(
        denial(&run(
            &cfg,
            "GET",
            "/two/x",
            lb("198.51.100.20, 192.0.2.1, 203.0.113.1, 203.0.113.9")
        )),
        Deny::IpNotAllowed
    );
}

/// Issue 11, item 3: under Envoy's default HCM (`use_remote_address: false`) a spoofed
/// X-Forwarded-For becomes `source.address`, written with port 0. A rule without trusted
/// hops refuses it rather than check a client-written address, and says once what the
/// operator should change; so does a rule told `envoy_appends_xff: true`. A rule counting
/// hops with `envoy_appends_xff: false` reads the nearest proxy's entry, as configured.
#[test]
fn an_address_envoy_took_from_x_forwarded_for_is_never_checked_as_the_peer() {
    let cfg = config();
    // the client wrote `X-Forwarded-For: 10.1.2.3` (in the office range) and Envoy made it the peer
    let spoofed = || Req::new(&[]).peer("10.1.2.3:0").xff("10.1.2.3");
    let o = run(&cfg, "GET", "/office/x", spoofed());
    assert_eq!(denial(&o), Deny::IpNotAllowed);
    let notice = o.notice.expect("the operator is told why");
    assert!(
        notice.contains("use_remote_address") && notice.contains("trusted_hops"),
        "{notice}"
    );
    for peer in ["[2001:db8::7]:0", "[::ffff:10.9.9.9]:0"] {
        let o = run(&cfg, "GET", "/office/x", Req::new(&[]).peer(peer));
        assert_eq!(denial(&o), Deny::IpNotAllowed, "{peer}");
        assert!(o.notice.is_some(), "{peer}");
    }
    // the same address from a real connection: allowed, nothing to say
    let o = run(&cfg, "GET", "/office/x", Req::new(&[]).peer("10.1.2.3:40000"));
    assert!(allowed(&o));
    assert_eq!(o.notice, None);
    // a refusal the client causes carries no notice
    let o = run(&cfg, "GET", "/office/x", Req::new(&[]).peer("192.0.2.1:1"));
    assert_eq!((denial(&o), o.notice), (Deny::IpNotAllowed, None));
    // envoy_appends_xff: true, but Envoy took the peer from the header: refused, with a notice
    let o = run(
        &cfg,
        "GET",
        "/lb/x",
        Req::new(&[]).peer("198.51.100.7:0").xff("198.51.100.7"),
    );
    assert_eq!(denial(&o), Deny::IpNotAllowed);
    assert!(o.notice.is_some_and(|n| n.contains("envoy_appends_xff")));
    // envoy_appends_xff: true and an entry that is not the peer: Envoy did not append it
    let o = run(
        &cfg,
        "GET",
        "/lb/x",
        Req::new(&[]).peer("203.0.113.9:1").xff("198.51.100.7"),
    );
    assert_eq!(denial(&o), Deny::IpNotAllowed);
    assert!(o.notice.is_some_and(|n| n.contains("skip_xff_append")));
    // use_remote_address: false done right: the hop is counted in the rule
    let plain = config_with(json!({"envoy_appends_xff": false})).unwrap();
    let lb = |xff: &str| Req::new(&[]).peer("198.51.100.7:0").xff(xff);
    assert!(allowed(&run(&plain, "GET", "/lb/x", lb("6.6.6.6, 198.51.100.7"))));
    let o = run(&plain, "GET", "/lb/x", lb("198.51.100.7, 6.6.6.6"));
    assert_eq!((denial(&o), o.notice), (Deny::IpNotAllowed, None));
    assert_eq!(denial(&run(&plain, "GET", "/office/x", spoofed())), Deny::IpNotAllowed);
}

#[test]
fn origins_exact_wildcard_and_traps() {
    let cfg = config();
    let t = token(json!({}));
    let with_origin = |o: &str| run(&cfg, "GET", "/app/x", Req::new(&[("origin", o)]).bearer(&t));
    for ok in [
        "https://app.example.com",
        "https://APP.example.com:443",
        "https://a.example.com",
        "https://a.b.example.com",
    ] {
        assert!(allowed(&with_origin(ok)), "{ok}");
    }
    for bad in [
        "https://example.com",
        "https://example.com.evil.net",
        "https://evil-example.com",
        "https://aexample.com",
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://app.example.com/",
        "null",
        "garbage",
        "https://app.example.com@evil.net",
    ] {
        assert_eq!(denial(&with_origin(bad)), Deny::OriginNotAllowed, "{bad}");
    }
    // missing Origin: allowed by default (server-to-server), refused on the strict rule
    assert!(allowed(&run(&cfg, "GET", "/app/x", Req::new(&[]).bearer(&t))));
    assert_eq!(
        denial(&run(&cfg, "GET", "/strict/x", Req::new(&[]).bearer(&t))),
        Deny::OriginNotAllowed
    );
    // the Origin check comes before the token: a bad origin without a token is 403, not 401
    assert_eq!(
        denial(&run(&cfg, "GET", "/app/x", Req::new(&[("origin", "https://evil.net")]))),
        Deny::OriginNotAllowed
    );
    // an allowed origin gets CORS headers on the response
    let o = with_origin("https://a.example.com");
    assert!(allowed(&o));
    let cors: HashMap<_, _> = o.cors.unwrap().into_iter().collect();
    assert_eq!(cors["access-control-allow-origin"], "https://a.example.com");
    assert_eq!(cors["access-control-allow-credentials"], "true");
    // a refusal to an allowed origin carries them too, so the browser app can read its 401
    let o = run(&cfg, "GET", "/app/x", Req::new(&[("origin", "https://a.example.com")]));
    assert_eq!(denial(&o), Deny::MissingToken);
    assert!(o.cors.is_some());
    // never to an origin that is not allowed
    let o = run(&cfg, "GET", "/app/x", Req::new(&[("origin", "https://evil.net")]));
    assert!(o.cors.is_none());
}

#[test]
fn cors_preflight_answered_passed_or_refused() {
    let cfg = config();
    let pre = |path: &str, origin: &str, method: &str| {
        run(
            &cfg,
            "OPTIONS",
            path,
            Req::new(&[("origin", origin), ("access-control-request-method", method)]),
        )
    };
    let Verdict::Preflight(h) = pre("/app/x", "https://app.example.com", "POST").verdict else {
        panic!("not answered")
    };
    let h: HashMap<_, _> = h.into_iter().collect();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-max-age"], "300");
    assert!(h["access-control-allow-methods"].contains("POST"));
    assert_eq!(
        denial(&pre("/app/x", "https://evil.net", "POST")),
        Deny::OriginNotAllowed
    );
    assert_eq!(
        denial(&pre("/app/x", "https://app.example.com", "DELETE")),
        Deny::OriginNotAllowed,
        "method not allowed"
    );
    // pass mode: an allowed preflight goes upstream without a token, marked so its credentials are stripped
    let o = pre("/strict/x", "https://app.example.com", "GET");
    assert!(matches!(o.verdict, Verdict::Allow(ref a) if a.token.is_none() && a.preflight));
    assert!(cfg.credential_headers.iter().any(|h| h == "authorization"));
    assert_eq!(
        denial(&pre("/strict/x", "https://other.example.com", "GET")),
        Deny::OriginNotAllowed
    );
    // an OPTIONS without Access-Control-Request-Method is an ordinary request: it needs a token
    let o = run(
        &cfg,
        "OPTIONS",
        "/app/x",
        Req::new(&[("origin", "https://app.example.com")]),
    );
    assert_eq!(denial(&o), Deny::MissingToken);
    // tenant rules answer preflights for any tenant's origin
    assert!(matches!(
        pre("/tenant/x", "https://w.acme.example", "GET").verdict,
        Verdict::Preflight(_)
    ));
    assert_eq!(
        denial(&pre("/tenant/x", "https://initech.example", "GET")),
        Deny::OriginNotAllowed
    );
}

#[test]
fn tenant_origins_follow_the_token() {
    let cfg = config();
    let acme = token(json!({"tenant": "acme"}));
    let globex = token(json!({"tenant": "globex"}));
    let none = token(json!({}));
    let call = |t: &str, origin: &str| run(&cfg, "GET", "/tenant/x", Req::new(&[("origin", origin)]).bearer(t));
    assert!(allowed(&call(&acme, "https://acme.example")));
    assert!(allowed(&call(&acme, "https://eu.acme.example")));
    assert!(allowed(&call(&globex, "https://globex.example")));
    assert_eq!(
        denial(&call(&acme, "https://globex.example")),
        Deny::OriginNotAllowed,
        "another tenant's origin"
    );
    assert_eq!(denial(&call(&globex, "https://acme.example")), Deny::OriginNotAllowed);
    assert_eq!(
        denial(&call(&none, "https://acme.example")),
        Deny::OriginNotAllowed,
        "no tenant claim"
    );
    let unknown = token(json!({"tenant": "initech"}));
    assert_eq!(denial(&call(&unknown, "https://acme.example")), Deny::OriginNotAllowed);
    let weird = token(json!({"tenant": ["acme"]}));
    assert_eq!(
        denial(&call(&weird, "https://acme.example")),
        Deny::OriginNotAllowed,
        "tenant must be a string"
    );
}

#[test]
fn scopes_any_all_and_role_inheritance() {
    let cfg = config();
    let call = |method: &str, path: &str, claims: Value| run(&cfg, method, path, Req::new(&[]).bearer(&token(claims)));
    assert!(allowed(&call(
        "GET",
        "/orders/1",
        json!({"scope": "profile orders:read"})
    )));
    assert!(
        allowed(&call("GET", "/orders/1", json!({"permissions": ["orders:admin"]}))),
        "any_of"
    );
    let d = denial(&call("GET", "/orders/1", json!({"scope": "profile"})));
    assert!(matches!(d, Deny::InsufficientScope(_)));
    let reply = response::reply(d, "edge-auth");
    assert_eq!(reply.status, 403);
    let www = &reply.headers.iter().find(|(n, _)| *n == "www-authenticate").unwrap().1;
    assert!(
        www.contains("error=\"insufficient_scope\"") && www.contains("scope=\"orders:read orders:admin\""),
        "{www}"
    );
    // all_of
    assert!(matches!(
        denial(&call("POST", "/orders/1", json!({"scope": "orders:read"}))),
        Deny::InsufficientScope(_)
    ));
    assert!(allowed(&call(
        "POST",
        "/orders/1",
        json!({"scope": "orders:read orders:write"})
    )));
    // roles: user includes viewer; admin includes user
    assert!(allowed(&call("POST", "/orders/1", json!({"roles": ["user"]}))));
    assert!(allowed(&call("POST", "/orders/1", json!({"roles": "admin"}))));
    assert!(matches!(
        denial(&call("POST", "/orders/1", json!({"roles": ["viewer"]}))),
        Deny::InsufficientScope(_)
    ));
    assert!(allowed(&call("DELETE", "/users/7", json!({"roles": ["admin"]}))));
    assert!(matches!(
        denial(&call("DELETE", "/users/7", json!({"roles": ["user"]}))),
        Deny::InsufficientScope(_)
    ));
    // hostile scope claims grant nothing
    for claims in [
        json!({"scope": "orders:read\torders:write"}),
        json!({"scope": ["orders:read"]}),
        json!({"permissions": "users:deleted"}),
        json!({"roles": ["root"]}),
        json!({"roles": [{"admin": true}]}),
    ] {
        let o = call("DELETE", "/users/7", claims.clone());
        assert!(matches!(denial(&o), Deny::InsufficientScope(_)), "{claims}");
    }
}

#[test]
fn policy_configuration_errors_name_the_field() {
    let cases = [
        (
            json!({"roles": {"a": {"includes": ["b"]}, "b": {"includes": ["a"]}}}),
            "roles.",
        ),
        (json!({"roles": {"a": {"includes": ["missing"]}}}), "roles.a"),
        (
            json!({"tenants": {"t": {"origins": ["https://*.com"]}}}),
            "tenants.t.origins[0]",
        ),
        (
            json!({"rules": [{"name": "r", "match": {"prefix": "/"}, "public": true, "ip": {"allow": ["10.0.0.1/8"]}}]}),
            "rules[0].ip.allow[0]",
        ),
        (
            json!({"rules": [{"name": "r", "match": {"prefix": "/"}, "public": true, "ip": {}}]}),
            "rules[0].ip",
        ),
        (
            json!({"rules": [{"name": "r", "match": {"prefix": "/"}, "public": true, "ip": {"allow": ["::1"], "trusted_hops": 99}}]}),
            "rules[0].ip.trusted_hops",
        ),
        (
            json!({"rules": [{"name": "r", "match": {"prefix": "/"}, "public": true, "origin": {"allowed": ["https://a*.x.com"]}}]}),
            "rules[0].origin.allowed[0]",
        ),
        (
            json!({"rules": [{"name": "r", "match": {"prefix": "/"}, "public": true, "origin": {"allowed": []}}]}),
            "rules[0].origin.allowed",
        ),
        (
            json!({"rules": [{"name": "r", "match": {"prefix": "/"}, "public": true, "origin": {"tenant_claim": "t"}}]}),
            "rules[0].origin.tenant_claim",
        ),
        (
            json!({"rules": [{"name": "r", "match": {"prefix": "/"}, "public": true, "scopes": {"any_of": ["a"]}}]}),
            "rules[0].scopes",
        ),
        (
            json!({"rules": [{"name": "r", "match": {"prefix": "/"}, "jwt": {"providers": ["p"]}, "scopes": {"any_of": ["a b"]}}]}),
            "rules[0].scopes.any_of[0]",
        ),
        (
            json!({"rules": [{"name": "r", "match": {"prefix": "/"}, "jwt": {"providers": ["p"]}, "scopes": {"any_of": ["a"], "all_of": ["b"]}}]}),
            "rules[0].scopes",
        ),
        (
            json!({"rules": [{"name": "r", "match": {"prefix": "/"}, "public": true, "origin": {"allowed": ["https://a.com"], "null": "maybe"}}]}),
            "rules[0].origin.null",
        ),
        (
            json!({"rules": [{"name": "r", "match": {"prefix": "/"}, "public": true, "origin": {"allowed": ["https://a.com"], "cors": {"allow_methods": ["get"]}}}]}),
            "rules[0].origin.cors.allow_methods[0]",
        ),
        (json!({"development": {"disable_everything": true}}), "development"),
        (json!({"tenants": {"t": {"origins": []}}}), "tenants.t.origins"),
        (
            json!({"rules": [{"name": "r", "match": {"prefix": "/"}, "public": true, "origin": {"allowed": ["https://a.com"], "cors": {"allow_methods": []}}}]}),
            "rules[0].origin.cors.allow_methods",
        ),
        // header names that are not header names (they were also Cors::check's cases)
        (
            json!({"rules": [{"name": "r", "match": {"prefix": "/"}, "public": true, "origin": {"allowed": ["https://a.com"], "cors": {"expose_headers": ["x\r\ny"]}}}]}),
            "rules[0].origin.cors.expose_headers[0]",
        ),
        (
            json!({"rules": [{"name": "r", "match": {"prefix": "/"}, "public": true, "origin": {"allowed": ["https://a.com"], "cors": {"allow_headers": [""]}}}]}),
            "rules[0].origin.cors.allow_headers[0]",
        ),
    ];
    for (extra, field) in cases {
        let e = config_with(extra.clone()).expect_err(&extra.to_string());
        assert!(e.to_string().contains(field), "expected `{field}` in: {e}");
    }
}

/// A browser's preflight never has a body: one that has is refused (400)
/// rather than passed upstream unauthenticated. An answered preflight never
/// reaches the upstream, so its body does not matter.
#[test]
fn a_preflight_with_a_body_is_not_passed_upstream() {
    let cfg = config();
    let pre = |path: &str, req: Req| {
        let req = Req {
            headers: [
                ("origin", "https://app.example.com".to_owned()),
                ("access-control-request-method", "GET".to_owned()),
                ("authorization", "Bearer not-a-token".to_owned()),
            ]
            .into_iter()
            .collect(),
            ..req
        };
        run(&cfg, "OPTIONS", path, req)
    };
    let o = pre("/strict/x", Req::new(&[]).with_body());
    assert_eq!(denial(&o), Deny::PreflightWithBody);
    assert!(o.cors.is_none());
    assert_eq!(response::reply(Deny::PreflightWithBody, "r").status, 400);
    // without a body it passes (the shell removes every credential header)
    let o = pre("/strict/x", Req::new(&[]));
    let Verdict::Allow(a) = &o.verdict else {
        panic!("{:?}", o.verdict)
    };
    assert!(a.preflight);
    // answered at the edge: the body goes nowhere
    assert!(matches!(
        pre("/app/x", Req::new(&[]).with_body()).verdict,
        Verdict::Preflight(_)
    ));
    // an ordinary request with a body is decided on its credential
    let o = run(
        &cfg,
        "POST",
        "/strict/x",
        Req::new(&[("origin", "https://app.example.com")]).with_body(),
    );
    assert_eq!(denial(&o), Deny::MissingToken);
}

#[test]
fn configurations_that_let_everything_through_or_nothing_are_warned_about() {
    let empty = config::parse(b"{}", &|_| None).unwrap();
    assert_eq!(empty.warnings, ["no rules and no providers: every request is denied"]);
    let public_default = config_with(json!({"default_rule": {"public": true}})).unwrap();
    assert_eq!(
        public_default.warnings,
        ["default_rule is public: requests no rule matches go upstream unauthenticated"]
    );
    let everything = config::parse(
        json!({"default_rule": {"public": true}, "development": {"disable_ip_checks": true}})
            .to_string()
            .as_bytes(),
        &|_| None,
    )
    .unwrap();
    // (a public default rule lets requests through: not "every request is denied")
    assert_eq!(
        everything.warnings,
        [
            "CHECK DISABLED: development.disable_ip_checks is set: no rule checks client addresses",
            "default_rule is public: requests no rule matches go upstream unauthenticated",
        ]
    );
    assert!(config().warnings.is_empty());
}

#[test]
fn switching_checks_off_is_loud_and_effective() {
    let cfg = config_with(json!({"development": {"disable_origin_checks": true, "disable_ip_checks": true}})).unwrap();
    assert_eq!(cfg.warnings.len(), 2, "{:?}", cfg.warnings);
    assert!(allowed(&run(
        &cfg,
        "GET",
        "/office/x",
        Req::new(&[]).peer("192.0.2.1:1")
    )));
    let t = token(json!({}));
    assert!(allowed(&run(
        &cfg,
        "GET",
        "/app/x",
        Req::new(&[("origin", "https://evil.net")]).bearer(&t)
    )));

    let per_rule = config_with(json!({"rules": [
        {"name": "r", "match": {"prefix": "/"}, "public": true, "ip": {"allow": ["10.0.0.0/8"], "enforce": false}}
    ]}))
    .unwrap();
    assert_eq!(per_rule.warnings.len(), 1);
    assert!(per_rule.warnings[0].contains("rules[0].ip"));
    assert!(allowed(&run(&per_rule, "GET", "/x", Req::new(&[]).peer("192.0.2.1:1"))));
}
