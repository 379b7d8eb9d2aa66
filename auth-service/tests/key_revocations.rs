//! API-key revocations in the revocation feed (contract 1.3, docs/auth-service-api.md
//! 5.6): a revoked key, a tenant's revoke-all and the global revoke-all each publish one
//! entry, in the transaction of the revocation and its audit; lookups carry `answered_at`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::json;
use sha2::{Digest, Sha256};

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Until when a key revocation at `t` stays in the feed: `t + 1` (its `revoked_before`)
/// plus the longest cache time of a valid answer (300 s), plus the longest an edge may
/// serve it stale while lookups fail (3600 s), plus the edges' leeway (60 s).
fn key_expiry(t: i64) -> i64 {
    t + 1 + 300 + 3600 + 60
}

async fn a_revoked_key_enters_the_feed_once_by_id_and_hash(b: Backend) {
    let app = TestApp::on(b);
    app.create_tenant("acme").await;
    let (key_id, raw) = app.create_key("acme", "svc-a", &[], None).await;
    let (_, other) = app.create_key("acme", "svc-b", &[], None).await;
    let before = app.feed(None).await;
    assert_eq!(before["api_keys"], json!([]));
    assert_eq!(before["api_key_tenants"], json!([]));
    assert_eq!(before["api_keys_revoked_before"], json!(null));
    let c0 = before["cursor"].as_str().unwrap().to_owned();

    let r = app
        .admin(Method::POST, &format!("/admin/v1/keys/{key_id}/revoke"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let entry = json!([{"key_id": key_id, "key_hash": sha256_hex(&raw), "expires_at": key_expiry(T0)}]);
    let snap = app.feed(None).await;
    assert_eq!(snap["api_keys"], entry);
    let inc = app.feed(Some(&c0)).await;
    assert_eq!(inc["reset"], false);
    assert_eq!(inc["api_keys"], entry, "the increment after the revocation carries it");
    let c1 = inc["cursor"].as_str().unwrap().to_owned();
    assert_ne!(c1, c0);
    // revoking it again publishes nothing
    app.clock.advance(5);
    let r = app
        .admin(Method::POST, &format!("/admin/v1/keys/{key_id}/revoke"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let inc = app.feed(Some(&c1)).await;
    assert_eq!(inc["api_keys"], json!([]));
    assert_eq!(inc["cursor"], c1.as_str());
    // an unknown key publishes nothing either
    let r = app
        .admin(
            Method::POST,
            "/admin/v1/keys/key_aaaaaaaaaaaaaaaaaaaaaaaaaa/revoke",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(app.feed(Some(&c1)).await["cursor"], c1.as_str());
    // the other key is still valid and not in the feed
    assert_eq!(app.lookup_raw(&other).await["status"], "valid");
    // the entry lasts while an edge may hold an answer computed before it
    app.clock.advance(key_expiry(T0) - T0 - 5 - 1);
    assert_eq!(app.feed(None).await["api_keys"], entry);
    app.clock.advance(1);
    assert_eq!(app.feed(None).await["api_keys"], json!([]));
}

async fn revoke_all_publishes_one_cut_off_per_tenant_or_globally(b: Backend) {
    let app = TestApp::on(b);
    app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    for i in 0..5 {
        app.create_key("acme", &format!("svc-{i}"), &[], None).await;
    }
    let (_, g1) = app.create_key("globex", "svc-g", &[], None).await;
    let c0 = app.feed(None).await["cursor"].as_str().unwrap().to_owned();

    let r = app
        .admin(Method::POST, "/admin/v1/tenants/acme/keys/revoke-all", None)
        .await;
    assert_eq!(r.body["keys_revoked"], 5);
    let f = app.feed(None).await;
    assert_eq!(f["api_keys"], json!([]), "one cut-off, not one entry per key");
    assert_eq!(
        f["api_key_tenants"],
        json!([{"tenant": "acme", "revoked_before": T0 + 1}])
    );
    assert_eq!(f["api_keys_revoked_before"], json!(null));
    assert_eq!(f["tenants"], json!([]), "the tenant's tokens are not cut off");
    assert_eq!(f["revoked_before"], json!(null));
    let inc = app.feed(Some(&c0)).await;
    assert_eq!(inc["api_key_tenants"], f["api_key_tenants"]);
    // an unknown tenant: 404 and nothing published
    let c1 = inc["cursor"].as_str().unwrap().to_owned();
    let r = app
        .admin(Method::POST, "/admin/v1/tenants/nope/keys/revoke-all", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(app.feed(Some(&c1)).await["cursor"], c1.as_str());

    // a lookup answers with the second it was computed in
    app.clock.advance(10);
    let answer = app.lookup_raw(&g1).await;
    assert_eq!(answer["status"], "valid");
    assert_eq!(answer["answered_at"], T0 + 10);

    let r = app.admin(Method::POST, "/admin/v1/keys/revoke-all", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let f = app.feed(Some(&c1)).await;
    assert_eq!(f["api_keys_revoked_before"], T0 + 11);
    assert_eq!(f["api_key_tenants"], json!([]));
    assert_eq!(f["revoked_before"], json!(null), "access tokens are not cut off");
    // a key made afterwards is answered after the cut-off
    app.clock.advance(1);
    let (_, fresh) = app.create_key("globex", "svc-new", &[], None).await;
    let answer = app.lookup_raw(&fresh).await;
    assert_eq!(answer["status"], "valid");
    assert!(answer["answered_at"].as_i64().unwrap() >= T0 + 11);
    // the cut-offs leave the snapshot once no edge can hold an earlier answer
    app.clock.advance(key_expiry(T0 + 10) - (T0 + 11) - 1);
    let f = app.feed(None).await;
    assert_eq!(f["api_keys_revoked_before"], T0 + 11);
    assert_eq!(f["api_key_tenants"], json!([]), "acme's, from T0, expired first");
    app.clock.advance(1);
    assert_eq!(app.feed(None).await["api_keys_revoked_before"], json!(null));

    // audited as before, with the event in the same transaction
    let events = app.audit().await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e["action"] == "key.revoke_all" && e["outcome"] == "success")
            .count(),
        2
    );
}

backends!(
    a_revoked_key_enters_the_feed_once_by_id_and_hash,
    revoke_all_publishes_one_cut_off_per_tenant_or_globally,
);
