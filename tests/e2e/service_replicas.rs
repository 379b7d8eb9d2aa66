//! Two replicas of the reference auth service on one PostgreSQL database, both
//! behind the Envoy cluster the filter uses (round robin): API-key lookups,
//! sessions whose tokens the edge verifies, parallel refreshes of one refresh
//! token split across the replicas (exactly one succeeds), the revocation cursor
//! valid on either replica (the edge polls A, then B: no snapshot after its first,
//! nothing missed, nothing repeated), and a revocation made on A refused at the edge.
//!
//! Needs `EDGE_AUTH_TEST_PG_URL` (`make test` starts a PostgreSQL server).

use std::time::Duration;

use edge_auth_e2e::service::{fresh_schema, test_pg_url, AuthService, SERVICE_TOKEN};
use edge_auth_e2e::{wait_until, EchoServer, Envoy, EnvoyOptions, Response};
use serde_json::{json, Value};

const ISSUER: &str = "http://auth.replicas.e2e";

fn post(svc: &AuthService, path: &str, key: &str, body: Value) -> Response {
    let headers = [("x-api-key", key), ("content-type", "application/json")];
    edge_auth_e2e::http::request(("127.0.0.1", svc.port), "POST", path, &headers, body.to_string())
}

/// The filter's configuration: keys and tokens checked against cluster "auth".
fn config() -> Value {
    json!({
        "auth_service": {"cluster": "auth", "token_env": "E2E_SERVICE_TOKEN", "timeout_ms": 1000,
                         "revocation_poll_s": 1, "revocation_max_staleness_s": 10},
        "api_keys": {"sources": [{"header": "x-api-key"}]},
        "providers": [{
            "name": "svc", "issuer": ISSUER, "audiences": ["e2e-app"], "algorithms": ["ES256"],
            "check_revocation": true,
            "remote_jwks": {"cluster": "auth", "path": "/.well-known/jwks.json", "min_refetch_interval_s": 1}
        }],
        "rules": [
            {"name": "orders", "match": {"prefix": "/orders"}, "api_key": {}},
            {"name": "user", "match": {"prefix": "/api/"}, "jwt": {"providers": ["svc"]}}
        ]
    })
}

/// Envoy whose cluster "auth" has both replicas as endpoints.
fn envoy(echo: &EchoServer, a: &AuthService, b: &AuthService) -> Envoy {
    let opts = EnvoyOptions::new(config(), echo.port())
        .cluster("auth", a.port)
        .env("E2E_SERVICE_TOKEN", SERVICE_TOKEN);
    let mut bootstrap = opts.bootstrap().unwrap_or_else(|e| panic!("{e}"));
    let clusters = bootstrap["static_resources"]["clusters"]
        .as_array_mut()
        .expect("clusters");
    let auth = clusters
        .iter_mut()
        .find(|c| c["name"] == "auth")
        .expect("the auth cluster");
    let endpoint =
        |port: u16| json!({"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}});
    auth["lb_policy"] = json!("ROUND_ROBIN");
    auth["load_assignment"]["endpoints"][0]["lb_endpoints"] = json!([endpoint(a.port), endpoint(b.port)]);
    Envoy::start_with_bootstrap(&opts, &bootstrap).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn two_replicas_on_one_postgresql_serve_one_edge() {
    let Some(url) = test_pg_url() else { return };
    let schema = fresh_schema();
    let a = AuthService::start_replica(&url, &schema, ISSUER);
    let b = AuthService::start_replica(&url, &schema, ISSUER);
    a.tenant("acme", &[], &[]);
    // Keys made on either replica; each key's first lookup goes to one replica or the other.
    let keys: Vec<String> = (0..8)
        .map(|i| {
            let svc = if i % 2 == 0 { &a } else { &b };
            svc.key("acme", json!({"subject": format!("svc-{i}"), "scopes": []})).0
        })
        .collect();
    let echo = EchoServer::start();
    let edge = envoy(&echo, &a, &b);

    // Key lookups: every key passes, looked up by both replicas between them.
    for key in &keys {
        let r = edge.get("/orders/1", &[("x-api-key", key)]);
        assert_eq!(r.status, 200, "{}", r.summary());
    }
    assert!(
        a.lookups() > 0 && b.lookups() > 0,
        "lookups reached both replicas: {} and {}",
        a.lookups(),
        b.lookups()
    );
    assert_eq!(a.lookups() + b.lookups(), keys.len() as u64, "one lookup per key");
    let unknown = format!("sk_{}", "3".repeat(64));
    assert_eq!(edge.get("/orders/1", &[("x-api-key", &unknown)]).status, 401);

    // Sessions: made on B, verified at the edge with the signing key both replicas share.
    let key = &keys[0];
    let created = post(&b, "/v1/sessions", key, json!({"subject": "user-1"}));
    assert_eq!(created.status, 201, "{}", created.summary());
    let session = created.json();
    let access = session["access_token"].as_str().unwrap_or_default().to_owned();
    let refresh = session["refresh_token"].as_str().unwrap_or_default().to_owned();
    let user = |token: &str| {
        edge.get("/api/x", &[("authorization", &format!("Bearer {token}"))])
            .status
    };
    assert!(
        wait_until(Duration::from_secs(10), || user(&access) == 200),
        "the edge accepts B's token"
    );
    // Each of the edge's pollers has had its first answer (a snapshot) by now.
    let polls = |answer: &str| {
        let series = format!("auth_revocation_feed_requests_total{{answer=\"{answer}\"}}");
        a.metric(&series) + b.metric(&series)
    };
    let poll_ok = || edge.stat("wasmcustom.edge_auth.revocation.poll_ok");
    assert!(wait_until(Duration::from_secs(10), || poll_ok() >= 4));
    let (snapshots_before, polls_before) = (polls("snapshot"), poll_ok());

    // Parallel refreshes of one refresh token, half on A and half on B: exactly one wins.
    let results: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let svc = if i % 2 == 0 { &a } else { &b };
                let refresh = refresh.clone();
                s.spawn(move || post(svc, "/v1/sessions/refresh", key, json!({"refresh_token": refresh})).status)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    assert_eq!(results.iter().filter(|s| **s == 200).count(), 1, "{results:?}");
    assert!(results.iter().all(|s| *s == 200 || *s == 401), "{results:?}");

    // The cursor, polled by hand: from A, then B, then A.
    let feed = |svc: &AuthService, since: Option<&str>| {
        let path = match since {
            Some(c) => format!("/internal/v1/revocations?since={c}"),
            None => "/internal/v1/revocations".to_owned(),
        };
        svc.internal("GET", &path, "").json()
    };
    let first = feed(&a, None);
    let cursor = first["cursor"].as_str().unwrap_or_default().to_owned();
    let other = post(&a, "/v1/sessions", key, json!({"subject": "user-2"})).json();
    let other_sid = other["session_id"].as_str().unwrap_or_default().to_owned();
    let other_access = other["access_token"].as_str().unwrap_or_default().to_owned();
    assert!(wait_until(Duration::from_secs(10), || user(&other_access) == 200));
    let revoked = a.admin(&format!("/admin/v1/sessions/{other_sid}/revoke"), json!({}));
    assert_eq!(revoked.status, 200, "{}", revoked.summary());
    let from_b = feed(&b, Some(&cursor));
    assert_eq!(from_b["reset"], false, "A's cursor is valid on B");
    assert_eq!(from_b["sessions"].as_array().map(Vec::len), Some(1));
    assert_eq!(from_b["sessions"][0]["sid"], other_sid.as_str());
    let again = feed(&a, from_b["cursor"].as_str());
    assert_eq!(again["reset"], false);
    assert_eq!(again["sessions"], json!([]), "nothing repeated");

    // The revocation made on A is refused at the edge, which polls A and B in turn.
    assert!(
        edge_auth_e2e::settles(Duration::from_secs(10), || user(&other_access) == 401),
        "the session revoked on A is refused at the edge"
    );
    let reused = session["session_id"].as_str().unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(10), || user(&access) == 401),
        "the session {reused} revoked by refresh reuse is refused too"
    );
    // The edge polled both replicas in turn with the cursors they gave: after its first
    // answers, every one was incremental (the only snapshot since is the hand-made `first`).
    assert!(wait_until(Duration::from_secs(15), || poll_ok() >= polls_before + 8));
    let incremental = "auth_revocation_feed_requests_total{answer=\"incremental\"}";
    assert!(a.metric(incremental) >= 2.0 && b.metric(incremental) >= 2.0);
    assert_eq!(
        polls("snapshot"),
        snapshots_before + 1.0,
        "no snapshot after the first polls"
    );
}
