//! API-key revocations pushed through the revocation feed (contract 1.3): with the real
//! service and the real Envoy (two workers), a key answer cached for 300 s stops working
//! within a poll interval when the key is revoked, when its tenant's keys are all revoked,
//! and when every key is revoked (the emergency switches), and a key the feed lists is
//! refused without a lookup. One Envoy for the whole file.

use std::time::Duration;

use edge_auth_e2e::service::{AuthService, SERVICE_TOKEN};
use edge_auth_e2e::{Envoy, EnvoyOptions};
use serde_json::json;

/// An edge that takes API keys on `/api/` (answers cached up to 300 s), polls the feed every
/// second, and passes allowed requests to the service (which answers 404).
fn edge(svc: &AuthService) -> Envoy {
    let config = json!({
        "auth_service": {"cluster": "auth", "token_env": "E2E_SERVICE_TOKEN", "timeout_ms": 500,
                         "revocation_poll_s": 1, "revocation_max_staleness_s": 3},
        "api_keys": {"sources": [{"header": "x-api-key"}], "max_cache_ttl_s": 300},
        "rules": [{"name": "keys", "match": {"prefix": "/api/"}, "api_key": {}}]
    });
    let opts = EnvoyOptions::new(config, svc.port)
        .cluster("auth", svc.port)
        .env("E2E_SERVICE_TOKEN", SERVICE_TOKEN);
    Envoy::start(opts).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn revoked_keys_are_refused_within_a_poll_one_by_one_per_tenant_and_globally() {
    let svc = AuthService::start();
    svc.tenant("acme", &[], &[]);
    svc.tenant("globex", &[], &[]);
    let (one, one_id) = svc.key("acme", json!({"subject": "svc-1", "scopes": []}));
    let (two, _) = svc.key("acme", json!({"subject": "svc-2", "scopes": []}));
    let (other, _) = svc.key("globex", json!({"subject": "svc-g", "scopes": []}));
    let envoy = edge(&svc);
    let status = |key: &str| envoy.get("/api/x", &[("x-api-key", key)]).status;
    let reason = |key: &str| envoy.get("/api/x", &[("x-api-key", key)]).json()["error_description"].clone();
    // Both workers answer in turn: several answers in a row must agree. The bound is the
    // poll interval (1 s) plus one poll and a tick; 5 s leaves room for a loaded machine,
    // and is far below the 300 s the cached answers would otherwise live.
    let settles = |key: &str, want: u16| edge_auth_e2e::settles(Duration::from_secs(5), || status(key) == want);
    for k in [&one, &two, &other] {
        assert!(settles(k, 404), "a valid key passes (and its answer is cached)");
    }
    let lookups = svc.lookups();

    // The age of the state the workers serve: written each tick once a poll succeeded, and
    // within a poll interval (1 s) plus an answer while the feed is healthy.
    let age = || envoy.stat("wasmcustom.edge_auth.revocation.state_age_ms");
    assert!(
        edge_auth_e2e::wait_until(Duration::from_secs(3), || age() > 0),
        "revocation.state_age_ms is never written"
    );
    for _ in 0..5 {
        let a = age();
        assert!(
            a <= 1_800,
            "revocation.state_age_ms {a} with a healthy feed polled every second"
        );
        std::thread::sleep(Duration::from_millis(150));
    }

    // one key
    let r = svc.admin(&format!("/admin/v1/keys/{one_id}/revoke"), json!({}));
    assert_eq!(r.status, 200, "{}", r.summary());
    let t = std::time::Instant::now();
    assert!(settles(&one, 401), "the revoked key is refused within a poll");
    eprintln!("one key refused at every worker after {:?}", t.elapsed());
    assert_eq!(reason(&one), "the API key has been revoked");
    assert_eq!(status(&two), 404, "another key of the tenant is untouched");
    assert_eq!(svc.lookups(), lookups, "refused from the feed, without a lookup");

    // every key of a tenant
    let r = svc.admin("/admin/v1/tenants/acme/keys/revoke-all", json!({}));
    assert_eq!(r.status, 200, "{}", r.summary());
    assert!(settles(&two, 401), "a tenant's revoke-all reaches the cached answers");
    assert_eq!(status(&other), 404, "another tenant's key is untouched");

    // every key (the global emergency switch)
    let r = svc.admin("/admin/v1/keys/revoke-all", json!({}));
    assert_eq!(r.status, 200, "{}", r.summary());
    assert!(
        settles(&other, 401),
        "the global revoke-all reaches every tenant's keys"
    );

    // a key made after the cut-off (the next second) works
    std::thread::sleep(Duration::from_millis(1_100));
    let (fresh, _) = svc.key("globex", json!({"subject": "svc-new", "scopes": []}));
    assert!(settles(&fresh, 404), "keys created after a revoke-all work");
    assert!(envoy.stat("wasmcustom.edge_auth.denied.api_key_revoked") >= 3);
}
