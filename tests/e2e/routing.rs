//! Rules bound to where the request goes, in the real Envoy: one Envoy with
//! two virtual hosts (`api.example.com` and a catch-all) and named routes,
//! one of them carrying `filter_metadata.edge_auth.policy`. Rules match the
//! host (exact, wildcard, any port, a trailing dot), Envoy's route name and
//! the route's metadata; hostile authorities get `400 bad_authority`.

use std::sync::OnceLock;
use std::time::Duration;

use edge_auth_e2e::envoy::UPSTREAM_CLUSTER;
use edge_auth_e2e::servers::echoed_header;
use edge_auth_e2e::tokens::{claims, jwks, key, Alg};
use edge_auth_e2e::{EchoServer, Envoy, EnvoyOptions, Response};
use serde_json::{json, Value};

const ISS: &str = "https://routing.e2e";
const AUD: &str = "routing-api";

struct Stack {
    envoy: Envoy,
    _echo: EchoServer,
}

fn config() -> Value {
    json!({
        "providers": [{
            "name": "p", "issuer": ISS, "audiences": [AUD], "algorithms": ["ES256"],
            "jwks": jwks(&[key(Alg::ES256)]),
            "claim_headers": [{"claim": "sub", "header": "x-auth-subject"}]
        }],
        "rules": [
            {"name": "admin-route", "match": {"route_name": "admin"}, "jwt": {"providers": ["p"]},
             "scopes": {"any_of": ["admin"]}},
            {"name": "strict-routes", "match": {"route_metadata": {"filter": "edge_auth", "key": "policy", "equals": "strict"}},
             "jwt": {"providers": ["p"]}, "scopes": {"any_of": ["reports"]}},
            {"name": "api-host", "match": {"hosts": ["api.example.com"]}, "jwt": {"providers": ["p"]}},
            {"name": "tenant-hosts", "match": {"hosts": ["*.tenants.example.com"], "prefix": "/app/"},
             "jwt": {"providers": ["p"]}},
            {"name": "rest", "match": {"prefix": "/"}, "public": true}
        ]
    })
}

fn route(name: &str, prefix: &str, metadata: Option<Value>) -> Value {
    let mut r = json!({"name": name, "match": {"prefix": prefix}, "route": {"cluster": UPSTREAM_CLUSTER}});
    if let Some(m) = metadata {
        r["metadata"] = json!({"filter_metadata": {"edge_auth": m}});
    }
    r
}

/// Two virtual hosts: `api.example.com` (any port) with the routes `admin`
/// (`/admin/`) and `api`; everything else with `reports` (`/reports/`,
/// metadata `policy: strict`), `plain` (`/plain/`, metadata `policy: lax`)
/// and `www`.
fn route_config() -> Value {
    json!({
        "name": "local",
        "virtual_hosts": [
            {"name": "api", "domains": ["api.example.com", "api.example.com:*"],
             "routes": [route("admin", "/admin/", None), route("api", "/", None)]},
            {"name": "www", "domains": ["*"],
             "routes": [
                route("reports", "/reports/", Some(json!({"policy": "strict"}))),
                route("plain", "/plain/", Some(json!({"policy": "lax", "other": "strict"}))),
                route("www", "/", None)
             ]}
        ]
    })
}

fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        let echo = EchoServer::start();
        let opts = EnvoyOptions {
            hcm: json!({"route_config": route_config()}),
            ..EnvoyOptions::new(config(), echo.port())
        };
        let envoy = Envoy::start(opts).unwrap_or_else(|e| panic!("{e}"));
        Stack { envoy, _echo: echo }
    })
}

fn bearer(scope: &str) -> String {
    let mut c = claims(ISS, AUD, "alice", 300);
    c["scope"] = json!(scope);
    format!("Bearer {}", key(Alg::ES256).sign(&c))
}

fn at(host: &str, path: &str, authorization: Option<&str>) -> Response {
    let mut headers = vec![("host", host), ("x-auth-subject", "forged")];
    if let Some(a) = authorization {
        headers.push(("authorization", a));
    }
    stack().envoy.get(path, &headers)
}

fn subject(r: &Response) -> Option<String> {
    echoed_header(&r.json(), "x-auth-subject")
}

fn assert_status(r: &Response, status: u16, error: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.summary());
    if let Some(e) = error {
        assert_eq!(r.json()["error"], e, "{}", r.summary());
    }
}

#[test]
fn host_rules_exact_wildcard_any_port_and_trailing_dot() {
    let token = bearer("");
    // api.example.com needs a token on every path, at any port and spelling
    for host in ["api.example.com", "API.Example.COM:10000", "api.example.com:443"] {
        assert_status(&at(host, "/x", None), 401, Some("missing_token"));
        let ok = at(host, "/x", Some(&token));
        assert_status(&ok, 200, None);
        assert_eq!(subject(&ok).as_deref(), Some("alice"), "{host}");
    }
    // Envoy routes the trailing-dot spelling to the catch-all virtual host,
    // but it names the same host: the api-host rule still applies
    assert_status(&at("api.example.com.", "/x", None), 401, Some("missing_token"));
    // other hosts fall through to the public rule, with no forged identity forwarded
    for host in [
        "www.example.com",
        "api.example.com.evil",
        "xapi.example.com",
        "127.0.0.1",
    ] {
        let r = at(host, "/x", None);
        assert_status(&r, 200, None);
        assert_eq!(subject(&r), None, "{host}");
    }
    // the wildcard covers one label or more, not the bare name
    for host in ["a.tenants.example.com", "a.b.tenants.example.com:8080"] {
        assert_status(&at(host, "/app/x", None), 401, Some("missing_token"));
        assert_status(&at(host, "/app/x", Some(&token)), 200, None);
        assert_status(&at(host, "/other", None), 200, None);
    }
    assert_status(&at("tenants.example.com", "/app/x", None), 200, None);
}

#[test]
fn route_name_rules_follow_envoys_routing() {
    let plain = bearer("");
    let admin = bearer("admin");
    // the route `admin` exists on the api virtual host only
    assert_status(
        &at("api.example.com", "/admin/users", Some(&plain)),
        403,
        Some("insufficient_scope"),
    );
    let ok = at("api.example.com", "/admin/users", Some(&admin));
    assert_status(&ok, 200, None);
    assert_eq!(subject(&ok).as_deref(), Some("alice"));
    // the same path on another host is Envoy's `www` route: the public rule
    let r = at("www.example.com", "/admin/users", None);
    assert_status(&r, 200, None);
    assert_eq!(subject(&r), None);
    // and another path on the api host is the api-host rule, without the admin scope
    assert_status(&at("api.example.com", "/users", Some(&plain)), 200, None);
}

#[test]
fn route_metadata_rules_read_the_selected_route() {
    let plain = bearer("");
    let reports = bearer("reports");
    assert_status(&at("www.example.com", "/reports/q1", None), 401, Some("missing_token"));
    assert_status(
        &at("www.example.com", "/reports/q1", Some(&plain)),
        403,
        Some("insufficient_scope"),
    );
    let ok = at("www.example.com", "/reports/q1", Some(&reports));
    assert_status(&ok, 200, None);
    assert_eq!(subject(&ok).as_deref(), Some("alice"));
    // `policy: lax` (and `strict` under another key) is not a match
    assert_status(&at("www.example.com", "/plain/x", None), 200, None);
    // a route without metadata is not a match either
    assert_status(&at("www.example.com", "/other", None), 200, None);
    // /reports/ on the api host is Envoy's `api` route, without the metadata
    assert_status(&at("api.example.com", "/reports/q1", Some(&plain)), 200, None);
}

#[test]
fn hostile_authorities_are_refused_with_400() {
    let envoy = &stack().envoy;
    let before = envoy.try_stat("edge_auth.denied.bad_authority").unwrap_or(0);
    // hosts Envoy passes on and the filter cannot read one way
    for (host, why) in [
        ("127.1", "invalid host name"),
        ("0x7f.0.0.1", "invalid host name"),
        ("api.example.com..", "invalid host name"),
        ("api.example.com:", "invalid port in host"),
        ("api.example.com:99999", "invalid port in host"),
    ] {
        let r = at(host, "/x", None);
        assert_status(&r, 400, Some("invalid_request"));
        assert_eq!(r.json()["error_description"], why, "{host}");
    }
    let counted = envoy.wait_for_stat("edge_auth.denied.bad_authority", Duration::from_secs(5), |n| {
        n >= before + 5
    });
    assert!(
        counted.is_some(),
        "{:?}",
        envoy.try_stat("edge_auth.denied.bad_authority")
    );
    // refused by Envoy or by the filter, never served
    for host in ["evil@api.example.com", "api.example.com@evil", "[::1", "a b", ""] {
        let r = at(host, "/x", None);
        assert_eq!(r.status, 400, "{host:?}: {}", r.summary());
    }
    // two Host lines
    let r = envoy.get("/x", &[("host", "www.example.com"), ("host", "api.example.com")]);
    assert_eq!(r.status, 400, "{}", r.summary());
}
