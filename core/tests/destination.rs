//! Rules bound to where the request goes: hosts and Envoy routes, through
//! the configuration and the decision. No proxy involved.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use edge_auth_core::config::{self, Config, ConfigError};
use edge_auth_core::decision::{decide, Attempt, Deny, Request, State, Verdict};
use serde_json::{json, Value};

const SECRET: &str = "0123456789abcdef0123456789abcdef-secret";

fn doc() -> Value {
    json!({
        "providers": [{
            "name": "hs", "issuer": "https://hs", "audiences": ["api"], "algorithms": ["HS256"],
            "hmac_secrets": [{"env": "SECRET", "alg": "HS256"}]
        }],
        "rules": [
            {"name": "admin-route", "match": {"route_name": "admin"}, "jwt": {"providers": ["hs"]}},
            {"name": "strict-routes", "match": {"route_metadata": {"filter": "edge_auth", "key": "policy", "equals": "strict"}},
             "jwt": {"providers": ["hs"]}},
            {"name": "api-host", "match": {"hosts": ["api.example.com"], "prefix": "/v1/"}, "jwt": {"providers": ["hs"]}},
            {"name": "tenants", "match": {"hosts": ["*.tenants.example.com", "[::1]"]}, "jwt": {"providers": ["hs"]}},
            {"name": "rest", "match": {"prefix": "/"}, "public": true}
        ]
    })
}

fn parse(v: &Value) -> Result<Config, ConfigError> {
    config::parse(v.to_string().as_bytes(), &|n| {
        (n == "SECRET").then(|| SECRET.to_owned())
    })
}

/// A request's facts, and the names of those the decision read.
#[derive(Default)]
struct Facts {
    headers: Vec<(&'static str, String)>,
    route_name: Option<String>,
    metadata: Vec<((&'static str, &'static str), String)>,
    read: Vec<String>,
}

impl Facts {
    fn host(h: &str) -> Facts {
        Facts {
            headers: vec![(":authority", h.to_owned())],
            ..Facts::default()
        }
    }
}

impl Request for Facts {
    fn header(&mut self, name: &str) -> Option<String> {
        self.header_all(name).into_iter().next()
    }
    fn header_all(&mut self, name: &str) -> Vec<String> {
        self.read.push(name.to_owned());
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
    fn forwarded_for(&mut self) -> Option<String> {
        None
    }
    fn peer(&mut self) -> Option<String> {
        None
    }
    fn route_name(&mut self) -> Option<String> {
        self.read.push("route_name".into());
        self.route_name.clone()
    }
    fn route_metadata(&mut self, filter: &str, key: &str) -> Option<String> {
        self.read.push(format!("metadata {filter} {key}"));
        self.metadata
            .iter()
            .find(|((f, k), _)| *f == filter && *k == key)
            .map(|(_, v)| v.clone())
    }
}

/// The rule that allowed the request, or the refusal.
fn decide_on(cfg: &Config, facts: &mut Facts, path: &str) -> Result<String, String> {
    let mut st = State::new(cfg);
    let attempt = Attempt {
        method: "GET",
        path,
        now_ms: 1_800_000_000_000,
        may_await: false,
        answer: None,
    };
    match decide(cfg, &mut st, &attempt, facts).verdict {
        Verdict::Allow(a) => Ok(a.rule.to_owned()),
        Verdict::Deny(Deny::BadAuthority(why)) => Err(format!("400 {why}")),
        Verdict::Deny(d) => Err(d.name().to_owned()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rules_match_hosts_and_routes_first_match_wins() {
    let cfg = parse(&doc()).unwrap();
    let run = |mut f: Facts, path: &str| decide_on(&cfg, &mut f, path);
    // the first two rules need a token: no token is a refusal, which shows which rule matched
    let named = Facts {
        route_name: Some("admin".into()),
        ..Facts::host("api.example.com")
    };
    assert_eq!(run(named, "/v1/x"), Err("missing_token".into()));
    let strict = Facts {
        metadata: vec![(("edge_auth", "policy"), "strict".into())],
        ..Facts::host("www.example.com")
    };
    assert_eq!(run(strict, "/anything"), Err("missing_token".into()));
    let lax = Facts {
        metadata: vec![(("edge_auth", "policy"), "Strict".into())],
        route_name: Some("admin2".into()),
        ..Facts::host("www.example.com")
    };
    assert_eq!(run(lax, "/anything"), Ok("rest".into()));
    assert_eq!(
        run(Facts::host("API.example.com:443"), "/v1/x"),
        Err("missing_token".into())
    );
    assert_eq!(
        run(Facts::host("api.example.com."), "/v1/x"),
        Err("missing_token".into())
    );
    assert_eq!(run(Facts::host("api.example.com"), "/v2/x"), Ok("rest".into()));
    assert_eq!(run(Facts::host("api.example.org"), "/v1/x"), Ok("rest".into()));
    assert_eq!(
        run(Facts::host("a.b.tenants.example.com"), "/"),
        Err("missing_token".into())
    );
    assert_eq!(run(Facts::host("tenants.example.com"), "/"), Ok("rest".into()));
    assert_eq!(run(Facts::host("[0::1]:10000"), "/"), Err("missing_token".into()));
}

#[test]
fn hostile_authorities_get_400_before_any_rule() {
    let cfg = parse(&doc()).unwrap();
    for (headers, why) in [
        (vec![], "the request has no host"),
        (vec![(":authority", "")], "the request has no host"),
        (
            vec![(":authority", "api.example.com"), (":authority", "api.example.com")],
            "the request names more than one host",
        ),
        (
            vec![(":authority", "www.example.com"), ("host", "api.example.com")],
            "the request names more than one host",
        ),
        (vec![(":authority", "evil@api.example.com")], "userinfo in host"),
        (vec![(":authority", "api.example.com:")], "invalid port in host"),
        (vec![(":authority", "api.example.com:99999")], "invalid port in host"),
        (vec![(":authority", "api.example.com..")], "invalid host name"),
        (vec![(":authority", "127.1")], "invalid host name"),
        (vec![(":authority", "[fe80::1%25eth0]")], "invalid host name"),
        (vec![(":authority", "api.example.com\u{fffd}")], "invalid host name"),
    ] {
        let mut f = Facts {
            headers: headers.iter().map(|(n, v)| (*n, v.to_string())).collect(),
            ..Facts::default()
        };
        // even on a path only the public catch-all would match
        assert_eq!(
            decide_on(&cfg, &mut f, "/public"),
            Err(format!("400 {why}")),
            "{headers:?}"
        );
    }
}

/// A report-only filter still refuses an authority it cannot read one way: like a bad
/// path, it is refused before any rule (and so any rule's mode) is chosen.
#[test]
fn a_hostile_authority_is_refused_in_shadow_too() {
    let mut d = doc();
    d["mode"] = json!("shadow");
    let cfg = parse(&d).unwrap();
    for headers in [
        vec![(":authority", "api.example.com"), (":authority", "evil.example.com")],
        vec![(":authority", "evil@api.example.com")],
        vec![],
    ] {
        let mut f = Facts {
            headers: headers.iter().map(|(n, v)| (*n, v.to_string())).collect(),
            ..Facts::default()
        };
        let why = decide_on(&cfg, &mut f, "/v1/x");
        assert!(
            why.as_ref().is_err_and(|w| w.starts_with("400 ")),
            "{headers:?}: {why:?}"
        );
    }
    // the control: a readable host on a rule that would refuse is let through in shadow
    assert_eq!(
        decide_on(&cfg, &mut Facts::host("api.example.com"), "/v1/x"),
        Ok("api-host".into())
    );
}

#[test]
fn destination_facts_are_read_only_when_a_rule_needs_them() {
    let mut v = doc();
    v["rules"] = json!([{"name": "all", "match": {"prefix": "/"}, "public": true}]);
    let cfg = parse(&v).unwrap();
    let mut f = Facts::host("garbage@@");
    assert_eq!(decide_on(&cfg, &mut f, "/x"), Ok("all".into()));
    assert!(f.read.is_empty(), "read {:?}", f.read);

    v["rules"] = json!([
        {"name": "h", "match": {"hosts": ["a.example"]}, "public": true},
        {"name": "all", "match": {"prefix": "/"}, "public": true}
    ]);
    let cfg = parse(&v).unwrap();
    let mut f = Facts::host("a.example");
    assert_eq!(decide_on(&cfg, &mut f, "/x"), Ok("h".into()));
    assert!(
        !f.read.iter().any(|r| r == "route_name" || r.starts_with("metadata")),
        "{:?}",
        f.read
    );

    // two rules comparing one metadata key read it once
    v["rules"] = json!([
        {"name": "m1", "match": {"route_metadata": {"filter": "f", "key": "k", "equals": "1"}}, "public": true},
        {"name": "m2", "match": {"route_metadata": {"filter": "f", "key": "k", "equals": "2"}}, "public": true}
    ]);
    let cfg = parse(&v).unwrap();
    let mut f = Facts {
        metadata: vec![(("f", "k"), "2".into())],
        ..Facts::default()
    };
    assert_eq!(decide_on(&cfg, &mut f, "/x"), Ok("m2".into()));
    assert_eq!(f.read, vec!["metadata f k".to_string()]);
}

#[test]
fn bad_destination_fields_are_named() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({"hosts": []}), "rules[0].match.hosts"),
        (json!({"hosts": ["a.example", "*"]}), "rules[0].match.hosts[1]"),
        (json!({"hosts": ["a.example:443"]}), "rules[0].match.hosts[0]"),
        (json!({"hosts": ["a.*.example"]}), "rules[0].match.hosts[0]"),
        (json!({"hosts": ["a.example."]}), "rules[0].match.hosts[0]"),
        (json!({"hosts": ["A.example", "a.example"]}), "rules[0].match.hosts[1]"),
        (json!({"hosts": ["user@a.example"]}), "rules[0].match.hosts[0]"),
        (json!({"hosts": "a.example"}), "rules[0].match.hosts"),
        (json!({"route_name": ""}), "rules[0].match.route_name"),
        (json!({"route_name": "a\nb"}), "rules[0].match.route_name"),
        (json!({"route_name": "x".repeat(257)}), "rules[0].match.route_name"),
        (
            json!({"route_metadata": {"filter": "", "key": "k", "equals": "v"}}),
            "rules[0].match.route_metadata.filter",
        ),
        (
            json!({"route_metadata": {"filter": "f", "key": "k\u{0}", "equals": "v"}}),
            "rules[0].match.route_metadata.key",
        ),
        (
            json!({"route_metadata": {"filter": "f", "key": "k", "equals": ""}}),
            "rules[0].match.route_metadata.equals",
        ),
        (
            json!({"route_metadata": {"filter": "f", "key": "k"}}),
            "rules[0].match.route_metadata",
        ),
        (
            json!({"route_metadata": {"filter": "f", "key": "k", "equals": "v", "value": "v"}}),
            "rules[0].match.route_metadata",
        ),
        (json!({"methods": ["GET"]}), "rules[0].match"),
        (json!({}), "rules[0].match"),
    ];
    for (matcher, field) in cases {
        let mut v = doc();
        v["rules"] = json!([{"name": "r", "match": matcher, "public": true}]);
        let e = parse(&v).expect_err(&format!("{matcher} accepted"));
        assert!(e.field.starts_with(field), "{matcher}: {e}");
        assert!(e.to_string().contains(field), "{e}");
    }
}
