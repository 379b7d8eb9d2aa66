//! End-to-end tests of the core's decision: route, token sources, cache,
//! remote keys, forwarding edits. No proxy involved.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::cell::RefCell;
use std::collections::HashMap;

use edge_auth_core::b64;
use edge_auth_core::config::{self, Config};
use edge_auth_core::decision::{decide, Attempt, Deny, Outcome, Request, State, Verdict};
use edge_auth_core::jwt::refresh::parse_response;
use edge_auth_core::jwt::JwtError;
use jwt_simple::prelude::*;

mod common;
use common::raw_claims;
use serde_json::{json, Value};

const NOW_S: u64 = 1_800_000_000;
const NOW: u64 = NOW_S * 1000;
const SECRET: &str = "0123456789abcdef0123456789abcdef-secret";

fn config() -> Config {
    let doc = json!({
        "providers": [
            {
                "name": "hs", "issuer": "https://hs", "audiences": ["api"], "algorithms": ["HS256"],
                "hmac_secrets": [{"env": "SECRET", "alg": "HS256"}],
                "leeway_s": 30,
                "token_sources": [
                    {"header": "authorization", "scheme": "Bearer"},
                    {"cookie": "tok"},
                    {"query": "access_token"}
                ],
                "claim_headers": [{"claim": "sub", "header": "x-auth-subject"}, {"claim": "roles", "header": "x-auth-roles"}],
                "payload_header": "x-auth-payload"
            },
            {
                "name": "cf", "issuer": "https://team.cloudflareaccess.com", "audiences": ["aud-tag"], "algorithms": ["HS256"],
                "hmac_secrets": [{"env": "SECRET", "alg": "HS256"}],
                "token_sources": [{"header": "cf-access-jwt-assertion"}],
                "claim_headers": [{"claim": "email", "header": "x-auth-email"}],
                "forward_token": true
            },
            {
                "name": "remote", "issuer": "https://idp", "audiences": ["api"], "algorithms": ["ES256"],
                "remote_jwks": {"cluster": "idp", "path": "/jwks", "min_refetch_interval_s": 30}
            }
        ],
        "rules": [
            {"name": "health", "match": {"path": "/health"}, "public": true},
            {"name": "cf", "match": {"prefix": "/cf/"}, "jwt": {"providers": ["cf"]}},
            {"name": "remote", "match": {"prefix": "/remote/"}, "jwt": {"providers": ["remote"]}},
            {"name": "api", "match": {"prefix": "/api/"}, "jwt": {"providers": ["hs", "cf"]}}
        ]
    });
    config::parse(doc.to_string().as_bytes(), &|n| {
        (n == "SECRET").then(|| SECRET.to_owned())
    })
    .unwrap()
}

fn hs(claims: Value) -> String {
    let c = raw_claims(claims);
    HS256Key::from_bytes(SECRET.as_bytes()).authenticate(c).unwrap()
}

fn claims(iss: &str, aud: &str) -> Value {
    json!({"iss": iss, "aud": aud, "sub": "alice", "email": "a@example.com", "roles": ["r1", "r2"], "iat": NOW_S - 5, "exp": NOW_S + 60})
}

/// Runs a decision with the given headers, recording which facts were read.
struct Req {
    /// In order; a name may repeat (two header lines).
    headers: Vec<(&'static str, String)>,
    peer: Option<String>,
    read: RefCell<Vec<String>>,
}

impl Req {
    fn new(headers: &[(&'static str, &str)]) -> Req {
        Req {
            headers: headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            peer: Some("192.0.2.1:40000".into()),
            read: RefCell::new(vec![]),
        }
    }

    fn run<'c>(
        &self,
        cfg: &'c Config,
        st: &mut State,
        method: &str,
        path: &str,
        now: u64,
        may_await: bool,
    ) -> Outcome<'c> {
        let attempt = Attempt {
            method,
            path,
            now_ms: now,
            may_await,
            answer: None,
        };
        decide(cfg, st, &attempt, &mut Facts(self))
    }
}

struct Facts<'a>(&'a Req);

impl Request for Facts<'_> {
    fn header(&mut self, name: &str) -> Option<String> {
        self.header_all(name).into_iter().next()
    }

    fn header_all(&mut self, name: &str) -> Vec<String> {
        self.0.read.borrow_mut().push(name.to_owned());
        self.0
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn forwarded_for(&mut self) -> Option<String> {
        self.0.read.borrow_mut().push("x-forwarded-for".to_owned());
        let all: Vec<&str> = self
            .0
            .headers
            .iter()
            .filter(|(n, _)| *n == "x-forwarded-for")
            .map(|(_, v)| v.as_str())
            .collect();
        (!all.is_empty()).then(|| all.join(","))
    }

    fn peer(&mut self) -> Option<String> {
        self.0.read.borrow_mut().push("peer".to_owned());
        self.0.peer.clone()
    }
}

fn denied<'c>(o: &Outcome<'c>) -> Deny<'c> {
    match &o.verdict {
        Verdict::Deny(d) => *d,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn public_route_reads_no_header() {
    let cfg = config();
    let mut st = State::new(&cfg);
    let r = Req::new(&[("authorization", "Bearer garbage")]);
    let o = r.run(&cfg, &mut st, "GET", "/health", NOW, true);
    assert!(matches!(o.verdict, Verdict::Allow(ref a) if a.token.is_none() && a.rule == "health"));
    assert!(r.read.borrow().is_empty(), "{:?}", r.read.borrow());
}

#[test]
fn bearer_token_allowed_forwarded_and_cached() {
    let cfg = config();
    let mut st = State::new(&cfg);
    let token = hs(claims("https://hs", "api"));
    let r = Req::new(&[("authorization", &format!("bearer {token}"))]);
    let o = r.run(&cfg, &mut st, "GET", "/api/x", NOW, true);
    assert_eq!(o.cache, Some(false));
    let Verdict::Allow(a) = o.verdict else {
        panic!("{:?}", o.verdict)
    };
    assert_eq!(a.rule, "api");
    assert_eq!(
        a.remove_headers.names().collect::<Vec<_>>(),
        ["authorization"],
        "forward_token defaults to false"
    );
    let t = a.token.unwrap();
    let h: HashMap<_, _> = t.headers.iter().cloned().collect();
    assert_eq!(h["x-auth-subject"], "alice");
    assert_eq!(h["x-auth-roles"], "r1,r2");
    assert_eq!(h["x-auth-payload"], token.split('.').nth(1).unwrap());
    assert_eq!(
        r.read.borrow().as_slice(),
        ["authorization", "x-api-key", "cf-access-jwt-assertion", "cookie"],
        "the credential places are read, no other header"
    );

    let again = r.run(&cfg, &mut st, "GET", "/api/y", NOW + 1000, true);
    assert_eq!(again.cache, Some(true));
    assert!(matches!(again.verdict, Verdict::Allow(_)));
}

#[test]
fn cache_never_outlives_exp() {
    let cfg = config();
    let mut st = State::new(&cfg);
    let token = hs(claims("https://hs", "api"));
    let r = Req::new(&[("authorization", &format!("Bearer {token}"))]);
    assert!(matches!(
        r.run(&cfg, &mut st, "GET", "/api/", NOW, true).verdict,
        Verdict::Allow(_)
    ));
    // past exp but within leeway: not from cache, verified again (and still valid)
    let o = r.run(&cfg, &mut st, "GET", "/api/", NOW + 61_000, true);
    assert_eq!(o.cache, Some(false));
    assert!(matches!(o.verdict, Verdict::Allow(_)));
    // past exp + leeway: expired
    let o = r.run(&cfg, &mut st, "GET", "/api/", NOW + 91_000, true);
    assert_eq!(denied(&o), Deny::Token(JwtError::Expired));
}

#[test]
fn tokens_are_bound_to_their_provider_and_source() {
    let cfg = config();
    let mut st = State::new(&cfg);
    let cf = hs(claims("https://team.cloudflareaccess.com", "aud-tag"));
    // the Cloudflare token in its own header on the cf route: allowed, forwarded as is
    let r = Req::new(&[("cf-access-jwt-assertion", &cf)]);
    let Verdict::Allow(a) = r.run(&cfg, &mut st, "GET", "/cf/app", NOW, true).verdict else {
        panic!()
    };
    assert!(
        a.remove_headers.names().next().is_none(),
        "forward_token: true keeps the header"
    );
    // the same token in Authorization: the cf provider does not read Authorization
    let r = Req::new(&[("authorization", &format!("Bearer {cf}"))]);
    assert_eq!(
        denied(&r.run(&cfg, &mut st, "GET", "/api/x", NOW, true)),
        Deny::Token(JwtError::UnknownIssuer)
    );
    assert_eq!(
        denied(&r.run(&cfg, &mut st, "GET", "/cf/app", NOW, true)),
        Deny::MissingToken
    );
    // an hs token on the cf-only route, in cf's header
    let h = hs(claims("https://hs", "api"));
    let r = Req::new(&[("cf-access-jwt-assertion", &h)]);
    assert_eq!(
        denied(&r.run(&cfg, &mut st, "GET", "/cf/app", NOW, true)),
        Deny::Token(JwtError::UnknownIssuer)
    );
    // a cached hs token (verified on /api) is not accepted on the cf route either
    let r = Req::new(&[("authorization", &format!("Bearer {h}"))]);
    assert!(matches!(
        r.run(&cfg, &mut st, "GET", "/api/x", NOW, true).verdict,
        Verdict::Allow(_)
    ));
    assert_eq!(
        denied(&r.run(&cfg, &mut st, "GET", "/cf/app", NOW, true)),
        Deny::MissingToken
    );
}

#[test]
fn cookie_and_query_sources() {
    let cfg = config();
    let mut st = State::new(&cfg);
    let t = hs(claims("https://hs", "api"));
    let r = Req::new(&[("cookie", &format!("a=1; tok={t}; b=2"))]);
    let Verdict::Allow(a) = r.run(&cfg, &mut st, "GET", "/api/x", NOW, true).verdict else {
        panic!()
    };
    let cookie = a.cookie.expect("credential cookie removed");
    assert!(
        !cookie.contains(&t) && cookie.contains("a=1") && cookie.contains("b=2"),
        "{cookie}"
    );

    let r = Req::new(&[]);
    let Verdict::Allow(a) = r
        .run(
            &cfg,
            &mut st,
            "GET",
            &format!("/api/ws?x=1&access_token={t}&y=2"),
            NOW,
            true,
        )
        .verdict
    else {
        panic!()
    };
    assert_eq!(a.path.as_deref(), Some("/api/ws?x=1&y=2"));
    let dup = format!("/api/ws?access_token={t}&access_token={t}");
    assert_eq!(
        denied(&r.run(&cfg, &mut st, "GET", &dup, NOW, true)),
        Deny::AmbiguousCredential
    );
    // Authorization comes first in the configured order (when nothing else carries a credential)
    let r = Req::new(&[("authorization", "Bearer not.a.jwt"), ("cookie", "tok=")]);
    let o = r.run(&cfg, &mut st, "GET", "/api/ws?access_token=", NOW, true);
    assert_eq!(denied(&o), Deny::Token(JwtError::Malformed));
    // a second credential in another source is ambiguous, not passed over (issue 11, item 4)
    let o = r.run(&cfg, &mut st, "GET", &format!("/api/ws?access_token={t}"), NOW, true);
    assert_eq!(denied(&o), Deny::AmbiguousCredential);
}

#[test]
fn hostile_requests() {
    let cfg = config();
    let mut st = State::new(&cfg);
    let r = Req::new(&[]);
    assert_eq!(
        denied(&r.run(&cfg, &mut st, "GET", "/api/x", NOW, true)),
        Deny::MissingToken
    );
    assert_eq!(
        denied(&r.run(&cfg, &mut st, "GET", "/nothing", NOW, true)),
        Deny::NoRule
    );
    assert!(matches!(
        denied(&r.run(&cfg, &mut st, "GET", "/api/%2e%2e/%2fhealth", NOW, true)),
        Deny::BadPath(_)
    ));
    assert!(matches!(
        denied(&r.run(&cfg, &mut st, "GET", "api", NOW, true)),
        Deny::BadPath(_)
    ));
    // traversal onto the public route is matched as the route it resolves to
    let o = r.run(&cfg, &mut st, "GET", "/api/../health", NOW, true);
    assert!(matches!(o.verdict, Verdict::Allow(ref a) if a.rule == "health"));
    let o = r.run(&cfg, &mut st, "GET", "/health/../api/x", NOW, true);
    assert_eq!(denied(&o), Deny::MissingToken);
    for bad in ["Bearer", "Bearer ", "Bearer a b", "Basic YWxhZGRpbjpvcGVu"] {
        let r = Req::new(&[("authorization", bad)]);
        assert_eq!(
            denied(&r.run(&cfg, &mut st, "GET", "/api/x", NOW, true)),
            Deny::MissingToken,
            "{bad}"
        );
    }
    // a comma is two credentials (it is how Envoy joins two Authorization lines)
    for bad in ["Bearer a,b", "Bearer a, Bearer b", "Basic x, Bearer y"] {
        let r = Req::new(&[("authorization", bad)]);
        assert_eq!(
            denied(&r.run(&cfg, &mut st, "GET", "/api/x", NOW, true)),
            Deny::AmbiguousCredential,
            "{bad}"
        );
    }
    let huge = format!("Bearer {}", "A".repeat(70_000));
    let r = Req::new(&[("authorization", &huge)]);
    assert_eq!(
        denied(&r.run(&cfg, &mut st, "GET", "/api/x", NOW, true)),
        Deny::Token(JwtError::TooLarge)
    );
}

/// Issue 11, item 4: one credential, read one way, on a JWT rule. Every place the
/// configuration names (any provider's source, `x-api-key`, `authorization`) and any
/// credential-shaped query value counts, whether this rule reads it or not.
#[test]
fn a_second_credential_or_copy_is_ambiguous_on_jwt_rules() {
    let cfg = config();
    let mut st = State::new(&cfg);
    let t = hs(claims("https://hs", "api"));
    let u = hs(json!({"iss": "https://hs", "aud": "api", "sub": "mallory", "iat": NOW_S - 5, "exp": NOW_S + 60}));
    let cf = hs(claims("https://team.cloudflareaccess.com", "aud-tag"));
    let key = format!("sk_{}", "ab".repeat(32));
    let bearer = format!("Bearer {t}");
    let cases: Vec<(String, Vec<(&'static str, String)>)> = vec![
        // twice in one place
        (
            "/api/x".into(),
            vec![("authorization", bearer.clone()), ("authorization", bearer.clone())],
        ),
        (
            "/api/x".into(),
            vec![
                ("authorization", bearer.clone()),
                ("Authorization", format!("Bearer {u}")),
            ],
        ),
        (
            "/api/x".into(),
            vec![("authorization", format!("Bearer {t}, Bearer {u}"))],
        ),
        ("/api/x".into(), vec![("cookie", format!("tok={t}; tok={u}"))]),
        ("/api/x".into(), vec![("cookie", format!("tok={t}; TOK={t}"))]),
        (
            "/api/x".into(),
            vec![("cookie", format!("tok={t}")), ("cookie", "tok=".into())],
        ),
        (format!("/api/x?access_token={t}&Access_Token={u}"), vec![]),
        // two places, read by the rule or not
        (
            "/api/x".into(),
            vec![("authorization", bearer.clone()), ("cookie", format!("tok={u}"))],
        ),
        (
            format!("/api/x?access_token={u}"),
            vec![("authorization", bearer.clone())],
        ),
        (
            "/api/x".into(),
            vec![("authorization", bearer.clone()), ("x-api-key", key.clone())],
        ),
        (
            "/api/x".into(),
            vec![
                ("authorization", bearer.clone()),
                ("cf-access-jwt-assertion", cf.clone()),
            ],
        ),
        (
            "/cf/x".into(),
            vec![
                ("cf-access-jwt-assertion", cf.clone()),
                ("authorization", bearer.clone()),
            ],
        ),
        (
            "/cf/x".into(),
            vec![
                ("cf-access-jwt-assertion", cf.clone()),
                ("x-api-key", "anything".into()),
            ],
        ),
        (format!("/api/x?state={u}"), vec![("authorization", bearer.clone())]),
        (format!("/api/x?api_key={key}"), vec![("authorization", bearer.clone())]),
    ];
    for (path, headers) in cases {
        let h: Vec<(&'static str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let r = Req::new(&h);
        let o = r.run(&cfg, &mut st, "GET", &path, NOW, true);
        assert_eq!(denied(&o), Deny::AmbiguousCredential, "{path} {headers:?}");
        assert_eq!(o.cache, None, "refused before any token work: {path}");
    }
    // a credential only in a place the rule does not read: refused, never upstream
    let r = Req::new(&[("x-api-key", key.as_str())]);
    assert_eq!(
        denied(&r.run(&cfg, &mut st, "GET", "/api/x", NOW, true)),
        Deny::MissingToken
    );
    let r = Req::new(&[("cookie", &format!("TOK={t}"))]);
    assert_eq!(
        denied(&r.run(&cfg, &mut st, "GET", "/api/x", NOW, true)),
        Deny::MissingToken
    );
    // the same token in two places is one credential; every copy is removed upstream
    let r = Req::new(&[
        ("authorization", bearer.as_str()),
        ("cookie", &format!("a=1; tok={t}")),
        ("x-api-key", ""),
    ]);
    let path = format!("/api/x?v=1&access_token={t}&state={t}");
    let Verdict::Allow(a) = r.run(&cfg, &mut st, "GET", &path, NOW, true).verdict else {
        panic!("the same token twice is allowed")
    };
    assert_eq!(
        a.remove_headers.names().collect::<Vec<_>>(),
        ["authorization", "x-api-key"]
    );
    assert_eq!(a.cookie.as_deref(), Some("a=1"));
    assert_eq!(a.path.as_deref(), Some("/api/x?v=1"));
    // forward_token: true keeps what the rule reads, and only that
    let r = Req::new(&[("cf-access-jwt-assertion", cf.as_str()), ("x-api-key", "")]);
    let Verdict::Allow(a) = r.run(&cfg, &mut st, "GET", &format!("/cf/x?t={cf}"), NOW, true).verdict else {
        panic!()
    };
    assert_eq!(a.remove_headers.names().collect::<Vec<_>>(), ["x-api-key"]);
    assert_eq!(a.path.as_deref(), Some("/cf/x"));
}

/// Issue 11, item 1: paths a second decoder reads differently are refused
/// before any rule is chosen, so a public rule cannot admit them and a
/// protected one cannot be reached through them, with or without a token.
#[test]
fn paths_a_second_decoder_reads_differently_are_refused_on_every_rule() {
    let cfg = config();
    let mut st = State::new(&cfg);
    let token = hs(claims("https://hs", "api"));
    let bearer = format!("Bearer {token}");
    for raw in [
        "/health/%252e%252e/api/x",
        "/health%252f..%252fapi/x",
        "/api/%252E%252E/health",
        "/api/x/%25%32%65%25%32%65/health",
        "/api/x/%25%32%45%25%32%45/health",
        "/health/%25252e%25252e/api/x",
        "/api/%2561dmin",
        "/health/%c0%ae%c0%ae/api/x",
        "/api/x%0a",
        "/api/x/%252e%252e;/health",
    ] {
        for headers in [vec![], vec![("authorization", bearer.as_str())]] {
            let r = Req::new(&headers);
            let d = denied(&r.run(&cfg, &mut st, "GET", raw, NOW, true));
            assert!(matches!(d, Deny::BadPath(_)), "{raw}: {d:?}");
            assert!(r.read.borrow().is_empty(), "{raw}: nothing is read");
        }
    }
}

fn es_jwks(kp: &ES256KeyPair, kid: &str) -> Value {
    let raw = kp.public_key().public_key().to_bytes_uncompressed();
    json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
        "x": b64::encode_url(&raw[1..33]), "y": b64::encode_url(&raw[33..65])}]})
}

fn es(kp: &ES256KeyPair) -> String {
    let c = raw_claims(claims("https://idp", "api"));
    kp.sign(c).unwrap()
}

#[test]
fn remote_keys_await_rotate_and_rate_limit() {
    let cfg = config();
    let mut st = State::new(&cfg);
    let k1 = ES256KeyPair::generate().with_key_id("k1");
    let k2 = ES256KeyPair::generate().with_key_id("k2");
    let t1 = es(&k1);
    let r = Req::new(&[("authorization", &format!("Bearer {t1}"))]);

    // no keys yet: the first request starts a fetch, the next joins it
    let o = r.run(&cfg, &mut st, "GET", "/remote/a", NOW, true);
    assert!(
        matches!(
            o.verdict,
            Verdict::AwaitKeys {
                provider: 2,
                dispatch: true
            }
        ),
        "{:?}",
        o.verdict
    );
    let o = r.run(&cfg, &mut st, "GET", "/remote/a", NOW, true);
    assert!(matches!(
        o.verdict,
        Verdict::AwaitKeys {
            provider: 2,
            dispatch: false
        }
    ));
    // the fetch fails: waiters decide again without waiting
    st.remote[2].fail(NOW + 10, cfg.providers[2].remote.as_ref().unwrap());
    assert_eq!(
        denied(&r.run(&cfg, &mut st, "GET", "/remote/a", NOW + 10, false)),
        Deny::Token(JwtError::KeysUnavailable)
    );

    // keys arrive
    let (set, _) = parse_response(
        Some(200),
        Some(es_jwks(&k1, "k1").to_string().as_bytes()),
        &cfg.providers[2],
    )
    .unwrap();
    st.install_keys(&cfg, 2, set, NOW + 20);
    assert!(matches!(
        r.run(&cfg, &mut st, "GET", "/remote/a", NOW + 20, true).verdict,
        Verdict::Allow(_)
    ));

    // a token with a new kid within the rate limit window: refused at once
    let t2 = es(&k2);
    let r2 = Req::new(&[("authorization", &format!("Bearer {t2}"))]);
    assert_eq!(
        denied(&r2.run(&cfg, &mut st, "GET", "/remote/a", NOW + 1_000, true)),
        Deny::Token(JwtError::UnknownKid)
    );
    // after the window: it triggers a refetch; the issuer rotated to k2 only
    let o = r2.run(&cfg, &mut st, "GET", "/remote/a", NOW + 31_000, true);
    assert!(matches!(o.verdict, Verdict::AwaitKeys { dispatch: true, .. }));
    let (set, _) = parse_response(
        Some(200),
        Some(es_jwks(&k2, "k2").to_string().as_bytes()),
        &cfg.providers[2],
    )
    .unwrap();
    st.install_keys(&cfg, 2, set, NOW + 31_500);
    assert!(matches!(
        r2.run(&cfg, &mut st, "GET", "/remote/a", NOW + 31_500, false).verdict,
        Verdict::Allow(_)
    ));
    // k1 was withdrawn: its cached token is dropped and it is no longer accepted
    assert_eq!(
        denied(&r.run(&cfg, &mut st, "GET", "/remote/a", NOW + 32_000, false)),
        Deny::Token(JwtError::UnknownKid)
    );
}

#[test]
fn only_the_exact_cached_token_is_served_from_cache() {
    let cfg = config();
    let mut st = State::new(&cfg);
    let good = hs(claims("https://hs", "api"));
    let req = |t: &str| Req::new(&[("authorization", &format!("Bearer {t}"))]);
    assert_eq!(
        req(&good).run(&cfg, &mut st, "GET", "/api/x", NOW, true).cache,
        Some(false)
    );
    assert_eq!(
        req(&good).run(&cfg, &mut st, "GET", "/api/x", NOW, true).cache,
        Some(true)
    );
    // Near misses of the cached token: one character changed anywhere, a
    // character appended or removed. None is a cache hit; each is verified
    // (and refused) on its own.
    let last = good.len() - 1;
    let flip = |i: usize| {
        let mut b = good.clone().into_bytes();
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    };
    for t in [
        flip(0),
        flip(good.len() / 2),
        flip(last),
        format!("{good}A"),
        good[..last].to_owned(),
    ] {
        let o = req(&t).run(&cfg, &mut st, "GET", "/api/x", NOW, true);
        assert_eq!(o.cache, Some(false), "{t}");
        assert!(
            matches!(o.verdict, Verdict::Deny(Deny::Token(_))),
            "{t}: {:?}",
            o.verdict
        );
    }
    assert_eq!(st.cache.len(), 1);
    assert_eq!(
        req(&good).run(&cfg, &mut st, "GET", "/api/x", NOW, true).cache,
        Some(true)
    );
}

#[test]
fn a_refused_token_is_logged_by_fingerprint_only() {
    let cfg = config();
    let mut st = State::new(&cfg);
    let good = hs(claims("https://hs", "api"));
    let bad = format!("{good}x");
    let o = Req::new(&[("authorization", &format!("Bearer {bad}"))]).run(&cfg, &mut st, "GET", "/api/x", NOW, true);
    let credential = o.credential.as_ref().unwrap();
    assert_eq!(credential.digest(), edge_auth_core::cache::token_key(&bad));
    assert_eq!(
        credential.fingerprint(),
        edge_auth_core::decision::fingerprint(&edge_auth_core::cache::token_key(&bad))
    );
    let shown = format!("{o:?}");
    assert!(!shown.contains(&bad[bad.len() - 20..]), "{shown}");
    assert!(shown.contains(&credential.fingerprint()), "{shown}");
    // An allowed request carries no credential: nothing to hash.
    let o = Req::new(&[("authorization", &format!("Bearer {good}"))]).run(&cfg, &mut st, "GET", "/api/x", NOW, true);
    assert!(matches!(o.verdict, Verdict::Allow(_)));
    assert!(o.credential.is_none());
}

#[test]
fn refused_signatures_are_remembered_until_keys_change() {
    let cfg = config();
    let mut st = State::new(&cfg);
    let good = hs(claims("https://hs", "api"));
    let (head, sig) = good.rsplit_once('.').unwrap();
    // same header and claims, another (wrong) signature of the same length
    let flipped = if sig.starts_with('A') { 'B' } else { 'A' };
    let bad = format!("{head}.{flipped}{}", &sig[1..]);
    let req = |t: &str| Req::new(&[("authorization", &format!("Bearer {t}"))]);

    for i in 0..3 {
        let o = req(&bad).run(&cfg, &mut st, "GET", "/api/x", NOW + i, true);
        assert_eq!(denied(&o), Deny::Token(JwtError::BadSignature), "attempt {i}");
    }
    assert_eq!(st.rejected.len(), 1, "one refusal remembered, not one per attempt");
    // the remembered refusal is bound to its provider: a route of another provider decides afresh
    let o = Req::new(&[("cf-access-jwt-assertion", &bad)]).run(&cfg, &mut st, "GET", "/cf/x", NOW, true);
    assert_eq!(denied(&o), Deny::Token(JwtError::UnknownIssuer));
    // the genuine token is not affected
    assert!(matches!(
        req(&good).run(&cfg, &mut st, "GET", "/api/x", NOW, true).verdict,
        Verdict::Allow(_)
    ));
    // remembered for REJECTED_CACHE_S only
    let later = NOW + edge_auth_core::decision::REJECTED_CACHE_S * 1000;
    assert_eq!(
        denied(&req(&bad).run(&cfg, &mut st, "GET", "/api/x", later, true)),
        Deny::Token(JwtError::BadSignature)
    );
    // new keys forget every remembered refusal (a new key might verify it)
    let kp = ES256KeyPair::generate().with_key_id("k1");
    let (set, _) = parse_response(
        Some(200),
        Some(es_jwks(&kp, "k1").to_string().as_bytes()),
        &cfg.providers[2],
    )
    .unwrap();
    st.install_keys(&cfg, 2, set, later);
    assert_eq!(st.rejected.len(), 0);
}
