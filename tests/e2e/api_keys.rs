//! API keys at the edge, against the real Envoy (two workers), the built
//! filter and the reference auth service: lookups, the cross-worker cache,
//! coalescing, key records driving IP/origin/scope checks, and identity
//! context upstream.

use std::time::Duration;

use edge_auth_e2e::servers::{echoed_header, echoed_headers};
use edge_auth_e2e::service::{AuthService, SERVICE_TOKEN};
use edge_auth_e2e::{wait_until, EchoServer, Envoy, EnvoyOptions, Response};
use serde_json::{json, Value};

struct Stack {
    envoy: Envoy,
    echo: EchoServer,
    svc: AuthService,
}

/// The filter's configuration for keys looked up at the service on `cluster` "auth".
fn config(extra_rules: Value) -> Value {
    let mut rules = vec![
        json!({"name": "health", "match": {"path": "/health"}, "public": true}),
        json!({"name": "orders", "match": {"prefix": "/orders"}, "api_key": {},
               "scopes": {"any_of": ["orders:read"]}}),
        json!({"name": "browser", "match": {"prefix": "/browser"}, "api_key": {},
               "origin": {"allowed": []}}),
    ];
    if let Value::Array(more) = extra_rules {
        rules.extend(more);
    }
    rules.push(json!({"name": "api", "match": {"prefix": "/"}, "api_key": {}}));
    json!({
        "auth_service": {"cluster": "auth", "token_env": "E2E_SERVICE_TOKEN", "timeout_ms": 500},
        "api_keys": {"sources": [{"header": "x-api-key"}, {"header": "authorization", "scheme": "ApiKey"},
                                 {"query": "api_key"}]},
        "context": {},
        "rules": rules
    })
}

fn start_with(svc: AuthService, config: Value) -> Stack {
    let echo = EchoServer::start();
    let opts = EnvoyOptions::new(config, echo.port())
        .cluster("auth", svc.port)
        .env("E2E_SERVICE_TOKEN", SERVICE_TOKEN);
    let envoy = Envoy::start(opts).unwrap_or_else(|e| panic!("{e}"));
    Stack { envoy, echo, svc }
}

fn call(s: &Stack, path: &str, key: &str) -> Response {
    s.envoy.get(path, &[("x-api-key", key)])
}

#[test]
fn a_valid_key_passes_once_looked_up_and_never_goes_upstream() {
    let svc = AuthService::start();
    svc.tenant("acme", &["https://app.acme.example"], &[]);
    let (key, key_id) = svc.key("acme", json!({"subject": "svc-billing", "scopes": ["orders:read"]}));
    let s = start_with(svc, config(json!([])));

    let r = call(&s, "/orders/1", &key);
    assert_eq!(r.status, 200, "{}", r.summary());
    let echoed = r.json();
    for (name, value) in echoed_headers(&echoed) {
        assert!(!value.contains(&key), "the key went upstream in {name}");
    }
    assert_eq!(echoed_header(&echoed, "x-api-key"), None);
    assert_eq!(echoed_header(&echoed, "x-edge-auth-method").as_deref(), Some("api_key"));
    assert_eq!(
        echoed_header(&echoed, "x-edge-auth-subject").as_deref(),
        Some("svc-billing")
    );
    assert_eq!(echoed_header(&echoed, "x-edge-auth-tenant").as_deref(), Some("acme"));
    assert_eq!(
        echoed_header(&echoed, "x-edge-auth-key-id").as_deref(),
        Some(key_id.as_str())
    );

    // Authorization: ApiKey and the query parameter work too; the query key is cut from the path
    let r = s.envoy.get("/orders/2", &[("authorization", &format!("apikey {key}"))]);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(echoed_header(&r.json(), "authorization"), None);
    let r = s.envoy.get(&format!("/orders/3?a=1&api_key={key}&b=2"), &[]);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.json()["path"], "/orders/3?a=1&b=2");

    // steady state: many requests, on both workers, and still one lookup at the service
    for i in 0..40 {
        assert_eq!(call(&s, &format!("/orders/{i}"), &key).status, 200);
    }
    assert_eq!(s.svc.lookups(), 1, "one Envoy asks once per key");
    assert!(s.envoy.stat("wasmcustom.edge_auth.allowed.api_key") >= 43);
    assert_eq!(s.envoy.stat("wasmcustom.edge_auth.api_key.lookups"), 1);
}

#[test]
fn unknown_and_malformed_keys_are_refused_and_never_reach_the_upstream() {
    let svc = AuthService::start();
    svc.tenant("acme", &[], &[]);
    let s = start_with(svc, config(json!([])));

    let unknown = format!("sk_{}", "ab".repeat(32));
    let r = call(&s, "/x", &unknown);
    assert_eq!(r.status, 401, "{}", r.summary());
    assert_eq!(r.json()["error"], "invalid_token");
    assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("ApiKey ")));
    assert!(!String::from_utf8_lossy(&r.body).contains(&unknown));
    // the negative answer is cached: no second lookup
    assert_eq!(call(&s, "/x", &unknown).status, 401);
    assert_eq!(s.svc.lookups(), 1);

    // malformed keys: refused at the edge without a lookup
    for bad in [
        format!("sk_{}", "AB".repeat(32)),
        format!("sk_{}", "a".repeat(63)),
        format!("sk_{}", "a".repeat(65)),
        format!("pk_{}", "a".repeat(64)),
        "eyJhbGciOiJIUzI1NiJ9.e30.sig".to_owned(),
    ] {
        let r = call(&s, "/x", &bad);
        assert_eq!(r.status, 401, "{bad}: {}", r.summary());
        assert_eq!(r.json()["error_description"], "the API key is malformed");
    }
    let r = s.envoy.get("/x", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "missing_token");
    assert_eq!(s.svc.lookups(), 1, "malformed keys cost no lookup");
    assert_eq!(s.echo.hits(), 0);
    assert!(s.envoy.stat("wasmcustom.edge_auth.denied.api_key_malformed") >= 5);
    assert!(s.envoy.stat("wasmcustom.edge_auth.denied.api_key_unknown") >= 2);
}

#[test]
fn concurrent_first_requests_share_one_lookup() {
    let svc = AuthService::start();
    svc.tenant("acme", &[], &[]);
    let (key, _) = svc.key("acme", json!({"subject": "svc", "scopes": []}));
    let s = start_with(svc, config(json!([])));
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let (s, key) = (&s, &key);
                scope.spawn(move || call(s, &format!("/c/{i}"), key).status)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(s.svc.lookups(), 1, "16 concurrent first requests, one lookup");
    let waited = wait_until(Duration::from_secs(2), || {
        s.envoy.stat("wasmcustom.edge_auth.api_key.coalesced")
            + s.envoy.stat("wasmcustom.edge_auth.api_key.cache_hit_shared")
            >= 1
    });
    assert!(waited);
}
