//! API keys: creation, listing, lookup answers for every state, rotation, revocation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use edge_auth_service::keys::{hash_secret, is_api_key, is_key_id};
use edge_auth_service::store;
use serde_json::json;

async fn created_key_is_shown_once_and_listing_has_no_secret(b: Backend) {
    let (app, key_id, raw) = app_with_key_on(b).await;
    assert!(is_api_key(&raw), "{raw}");
    assert!(is_key_id(&key_id), "{key_id}");
    let list = app.admin(Method::GET, "/admin/v1/tenants/acme/keys", None).await;
    assert_eq!(list.status, StatusCode::OK);
    let text = String::from_utf8(list.raw.clone()).unwrap();
    assert!(!text.contains(&raw), "the raw key is never listed");
    assert!(!text.contains(&raw[3..]));
    assert!(!text.contains(&hash_secret(&raw)), "nor its hash");
    assert!(!text.contains("api_key\""));
    let k = &list.body["keys"][0];
    assert_eq!(k["key_id"], key_id.as_str());
    assert_eq!(k["status"], "valid");
    assert_eq!(k["subject"], "svc-billing");
    assert_eq!(k["fingerprint"], &hash_secret(&raw)[..8]);
    // And the database holds only the hash.
    let stored = sync(|| {
        app.svc
            .db()
            .read(|c| edge_auth_service::store::keys_of_tenant(c, "acme"))
    })
    .unwrap();
    let count_raw = stored.iter().filter(|k| k.key_hash == hash_secret(&raw)).count();
    assert_eq!(count_raw, 1);
    if b == Backend::Sqlite {
        let bytes = std::fs::read(&app.db).unwrap();
        let wal = std::fs::read(app.db.with_extension("db-wal")).unwrap_or_default();
        for file in [&bytes, &wal] {
            assert!(
                !file.windows(raw.len()).any(|w| w == raw.as_bytes()),
                "raw key found in the database file"
            );
        }
    }
    // No column of any key row holds the raw key (either engine).
    let rows = format!("{stored:?}");
    assert!(!rows.contains(&raw[3..]), "raw key found in a stored row");
}

async fn lookup_valid_key(b: Backend) {
    let (app, key_id, raw) = app_with_key_on(b).await;
    let a = app.lookup_raw(&raw).await;
    assert_eq!(
        a,
        json!({
            "status": "valid",
            "key_id": key_id,
            "tenant": "acme",
            "subject": "svc-billing",
            "scopes": ["orders:read", "orders:write"],
            "ip_allowlist": ["203.0.113.0/24"],
            "allowed_origins": ["https://app.acme.example"],
            "expires_at": null,
            "cache_ttl_s": 300,
            "answered_at": T0
        })
    );
}

async fn lookup_uses_the_keys_own_allowlist_and_expiry(b: Backend) {
    let app = TestApp::on(b);
    app.create_tenant("acme").await;
    let r = app
        .post_key(
            "acme",
            json!({"subject": "svc", "scopes": ["x"], "expires_in_s": 100, "ip_allowlist": ["192.0.2.7"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let raw = r.body["api_key"].as_str().unwrap();
    assert_eq!(r.body["expires_at"], T0 + 100);
    let a = app.lookup_raw(raw).await;
    assert_eq!(a["ip_allowlist"], json!(["192.0.2.7"]));
    assert_eq!(a["expires_at"], T0 + 100);
    assert_eq!(a["cache_ttl_s"], 100, "min(300, seconds until expiry)");
    app.clock.advance(99);
    assert_eq!(app.lookup_raw(raw).await["cache_ttl_s"], 1);
    app.clock.advance(1);
    let a = app.lookup_raw(raw).await;
    assert_eq!(a["status"], "expired");
    assert_eq!(a["cache_ttl_s"], 30);
    assert_eq!(a["key_id"], r.body["key_id"]);
}

async fn lookup_unknown_and_revoked(b: Backend) {
    let (app, key_id, raw) = app_with_key_on(b).await;
    assert_eq!(
        app.lookup_raw("sk_nope").await,
        json!({"status": "unknown", "cache_ttl_s": 30})
    );
    let r = app
        .admin(Method::POST, &format!("/admin/v1/keys/{key_id}/revoke"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "revoked");
    assert_eq!(
        app.lookup_raw(&raw).await,
        json!({"status": "revoked", "key_id": key_id, "cache_ttl_s": 30})
    );
    // Revoking again is idempotent; rotating a revoked key is a conflict.
    assert_eq!(
        app.admin(Method::POST, &format!("/admin/v1/keys/{key_id}/revoke"), None)
            .await
            .status,
        StatusCode::OK
    );
    let r = app
        .admin(
            Method::POST,
            &format!("/admin/v1/keys/{key_id}/rotate"),
            Some(json!({"grace_s": 10})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // Unknown keys: 404.
    let r = app.admin(Method::POST, "/admin/v1/keys/key_unknown/revoke", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["error"], "not_found");
}

async fn rotated_key_stays_valid_until_its_deadline(b: Backend) {
    let (app, old_id, old_raw) = app_with_key_on(b).await;
    let r = app
        .admin(
            Method::POST,
            &format!("/admin/v1/keys/{old_id}/rotate"),
            Some(json!({"grace_s": 600})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let new_raw = r.body["api_key"].as_str().unwrap().to_owned();
    let new_id = r.body["key_id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, old_id);
    assert_ne!(new_raw, old_raw);
    assert_eq!(
        r.body["scopes"],
        json!(["orders:read", "orders:write"]),
        "the new key inherits the old one's grants"
    );

    let old = app.lookup_raw(&old_raw).await;
    assert_eq!(old["status"], "valid");
    assert_eq!(
        old["expires_at"],
        T0 + 600,
        "a rotated key's expires_at is its deadline"
    );
    assert_eq!(old["cache_ttl_s"], 300);
    let new = app.lookup_raw(&new_raw).await;
    assert_eq!(new["status"], "valid");
    assert_eq!(new["expires_at"], json!(null));

    // The old key still authenticates SDK calls during the grace period.
    let s = app.sdk("/v1/sessions", &old_raw, Some(json!({"subject": "u"}))).await;
    assert_eq!(s.status, StatusCode::CREATED);

    // Rotating it again is refused.
    let again = app
        .admin(Method::POST, &format!("/admin/v1/keys/{old_id}/rotate"), None)
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    app.clock.advance(600);
    let old = app.lookup_raw(&old_raw).await;
    assert_eq!(old, json!({"status": "expired", "key_id": old_id, "cache_ttl_s": 30}));
    assert_eq!(app.lookup_raw(&new_raw).await["status"], "valid");
    let s = app.sdk("/v1/sessions", &old_raw, Some(json!({"subject": "u"}))).await;
    assert_eq!(s.status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.body["error"], "invalid_api_key");

    let list = app.admin(Method::GET, "/admin/v1/tenants/acme/keys", None).await.body;
    let old_meta = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == old_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(old_meta["status"], "expired");
    assert_eq!(old_meta["replaced_by"], new_id.as_str());
    assert_eq!(old_meta["rotation_deadline"], T0 + 600);
}

async fn rotation_without_body_uses_a_day_of_grace(b: Backend) {
    let (app, old_id, old_raw) = app_with_key_on(b).await;
    let r = app
        .admin(Method::POST, &format!("/admin/v1/keys/{old_id}/rotate"), None)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(app.lookup_raw(&old_raw).await["expires_at"], T0 + 86_400);
}

async fn malformed_lookups_are_400(b: Backend) {
    let (app, _, raw) = app_with_key_on(b).await;
    for body in [
        json!({"key_hash": raw}),
        json!({"key_hash": hash_secret(&raw).to_uppercase()}),
        json!({"key_hash": &hash_secret(&raw)[..63]}),
        json!({"key_hash": 5}),
        json!({"key_hash": hash_secret(&raw), "extra": 1}),
        json!({}),
    ] {
        let r = app
            .internal(Method::POST, "/internal/v1/api-keys/lookup", Some(body.clone()))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.body["error"], "invalid_request");
    }
    let stats = app.internal(Method::GET, "/internal/v1/stats", None).await.body;
    assert_eq!(stats["api_key_lookups"], 0, "malformed requests are not lookups");
    app.lookup_raw(&raw).await;
    app.lookup_raw(&raw).await;
    let stats = app.internal(Method::GET, "/internal/v1/stats", None).await.body;
    assert_eq!(stats, json!({"api_key_lookups": 2, "revocation_polls": 0}));
}

async fn sdk_accepts_both_key_headers_and_refuses_bad_keys(b: Backend) {
    let (app, _, raw) = app_with_key_on(b).await;
    let body = json!({"subject": "user-1"}).to_string();
    let with = |name: &'static str, value: String| {
        axum::http::Request::post("/v1/sessions")
            .header(name, value)
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.clone()))
            .unwrap()
    };
    assert_eq!(
        app.send(with("authorization", format!("ApiKey {raw}"))).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        app.send(with("x-api-key", raw.clone())).await.status,
        StatusCode::CREATED
    );
    for bad in [
        format!("Bearer {raw}"),
        "ApiKey sk_123".into(),
        format!("ApiKey sk_{}", "0".repeat(64)),
    ] {
        let r = app.send(with("authorization", bad)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.body["error"], "invalid_api_key");
    }
    let r = app
        .call(Method::POST, "/v1/sessions", None, Some(json!({"subject": "u"})))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

/// Contract v1.1: every lookup answer names the `key_hash` it answers, whatever its status,
/// so that the edge can refuse an answer meant for another key. (`lookup_raw` asserts the
/// answer's `key_hash` is the one asked about, then takes it out.)
async fn every_lookup_answer_names_the_key_hash_it_answers(b: Backend) {
    let (app, key_id, raw) = app_with_key_on(b).await;
    assert_eq!(app.lookup_raw(&raw).await["status"], "valid");
    let unknown = "sk_0000000000000000000000000000000000000000000000000000000000000000";
    assert_eq!(app.lookup_raw(unknown).await["status"], "unknown");
    let r = app
        .admin(Method::POST, &format!("/admin/v1/keys/{key_id}/revoke"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(app.lookup_raw(&raw).await["status"], "revoked");
}

/// The emergency switch for API keys: every key of a tenant, then every key, answers
/// `revoked` to the edge's lookups and is refused by the SDK endpoints; audited.
async fn revoke_all_keys_per_tenant_and_globally(b: Backend) {
    let app = TestApp::on(b);
    app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    let (_, a1) = app.create_key("acme", "svc-a", &[], None).await;
    let (a2_id, a2) = app.create_key("acme", "svc-b", &[], None).await;
    let (_, g1) = app.create_key("globex", "svc-g", &[], None).await;
    app.admin(Method::POST, &format!("/admin/v1/keys/{a2_id}/revoke"), None)
        .await;
    let status = |raw: String| {
        let app = &app;
        async move { app.lookup_raw(&raw).await["status"].clone() }
    };

    let r = app
        .admin(Method::POST, "/admin/v1/tenants/acme/keys/revoke-all", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["keys_revoked"], 1, "a2 was revoked already");
    assert_eq!(r.body["tenant"], "acme");
    assert_eq!(status(a1.clone()).await, "revoked");
    assert_eq!(status(a2.clone()).await, "revoked");
    assert_eq!(status(g1.clone()).await, "valid", "another tenant's keys are untouched");
    let r = app.sdk("/v1/sessions", &a1, Some(json!({"subject": "u"}))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.sdk("/v1/sessions", &g1, Some(json!({"subject": "u"}))).await.status,
        StatusCode::CREATED
    );
    let r = app
        .admin(Method::POST, "/admin/v1/tenants/nope/keys/revoke-all", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let r = app.admin(Method::POST, "/admin/v1/keys/revoke-all", None).await;
    assert_eq!(r.body["keys_revoked"], 1);
    assert_eq!(r.body["tenant"], serde_json::Value::Null);
    assert_eq!(status(g1.clone()).await, "revoked");
    // not a standing ban: a key made afterwards works
    let (_, fresh) = app.create_key("globex", "svc-g", &[], None).await;
    assert_eq!(status(fresh).await, "valid");
    // only the admin token may do it
    let r = app
        .call(
            Method::POST,
            "/admin/v1/keys/revoke-all",
            Some(("authorization", "Bearer x")),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let events = app.audit().await;
    let done: Vec<_> = events.iter().filter(|e| e["action"] == "key.revoke_all").collect();
    assert_eq!(done.len(), 3, "two successes and the unknown tenant's failure");
    assert!(done.iter().any(|e| e["outcome"] == "failure" && e["target"] == "nope"));
    assert!(done
        .iter()
        .any(|e| e["outcome"] == "success" && e["target"] == "acme" && e["detail"]["keys_revoked"] == 1));
}

/// Keys record when they were last used: lookups and SDK requests only note it in
/// memory; a batch writes it (coarsely: once a minute per key at most), never backwards.
async fn keys_record_when_they_were_last_used(b: Backend) {
    let (app, key_id, raw) = app_with_key_on(b).await;
    let last_used = || {
        let app = &app;
        async move {
            app.admin(Method::GET, "/admin/v1/tenants/acme/keys", None).await.body["keys"][0]["last_used_at"].clone()
        }
    };
    let flush = || sync(|| app.svc.flush_key_usage()).unwrap();
    assert_eq!(last_used().await, serde_json::Value::Null);
    assert_eq!(app.lookup_raw(&raw).await["status"], "valid");
    assert_eq!(last_used().await, serde_json::Value::Null, "the lookup wrote nothing");
    assert_eq!(flush(), 1);
    assert_eq!(last_used().await, T0);
    app.clock.advance(30);
    app.lookup_raw(&raw).await;
    assert_eq!(flush(), 0, "used within the last minute: not noted again");
    app.clock.advance(31);
    app.lookup_raw(&raw).await;
    assert_eq!(flush(), 1);
    assert_eq!(last_used().await, T0 + 61);
    // the SDK endpoints count too
    app.clock.advance(200);
    let r = app.sdk("/v1/sessions", &raw, Some(json!({"subject": "u"}))).await;
    assert_eq!(r.status, StatusCode::CREATED);
    flush();
    assert_eq!(last_used().await, T0 + 261);
    // another replica's older note does not move it back
    sync(|| {
        app.svc
            .db()
            .write(|c| store::record_key_use(c, &[(key_id.clone(), T0 + 5)]))
    })
    .unwrap();
    assert_eq!(last_used().await, T0 + 261);
    // unknown and revoked keys note nothing
    app.admin(Method::POST, &format!("/admin/v1/keys/{key_id}/revoke"), None)
        .await;
    app.clock.advance(100);
    app.lookup_raw(&raw).await;
    app.lookup_raw(&format!("sk_{}", "0".repeat(64))).await;
    assert_eq!(flush(), 0);
}

/// With a key-tag secret, every key minted (admin API, rotation) carries a tag the
/// edge verifies offline, and the listing says which keys are tagged, by which secret.
async fn new_keys_are_tagged_and_listed_as_such(b: Backend) {
    use edge_auth_core::api_key::tag::{KeyTags, TagCheck, TagSecret};
    use edge_auth_service::service::Options;
    let secret = |s: &str| TagSecret::new(s.as_bytes()).unwrap();
    let (current, old) = (
        "tag-0123456789abcdef0123456789abcdef",
        "old-0123456789abcdef0123456789abcdef",
    );
    let tags = KeyTags::new(secret(current), Some(secret(old))).unwrap();
    let app = TestApp::with_options(
        b,
        Options {
            key_tags: Some(tags.clone()),
            ..Options::default()
        },
    );
    app.create_tenant("acme").await;
    let r = app.post_key("acme", json!({"subject": "svc"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let raw = r.body["api_key"].as_str().unwrap().to_owned();
    let key_id = r.body["key_id"].as_str().unwrap().to_owned();
    assert!(is_api_key(&raw), "{raw}");
    assert_eq!(
        tags.check(&raw[3..]),
        TagCheck::Current,
        "minted with the current secret"
    );
    let only_old = KeyTags::new(secret(old), None).unwrap();
    assert_eq!(only_old.check(&raw[3..]), TagCheck::Invalid);
    assert_eq!(r.body["tagged"], true);
    assert_eq!(r.body["tag_secret_id"], secret(current).id());
    // looked up as any key
    assert_eq!(app.lookup_raw(&raw).await["status"], "valid");
    // a rotation mints a tagged key too
    let rotated = app
        .admin(
            Method::POST,
            &format!("/admin/v1/keys/{key_id}/rotate"),
            Some(json!({"grace_s": 60})),
        )
        .await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{:?}", rotated.body);
    let new_raw = rotated.body["api_key"].as_str().unwrap();
    assert_eq!(tags.check(&new_raw[3..]), TagCheck::Current);
    assert_eq!(rotated.body["tagged"], true);
    // both keys listed as tagged by the current secret
    let list = app.admin(Method::GET, "/admin/v1/tenants/acme/keys", None).await;
    let keys = list.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    for k in keys {
        assert_eq!(
            (k["tagged"].clone(), k["tag_secret_id"].clone()),
            (json!(true), json!(secret(current).id()))
        );
    }
    let untagged = TestApp::on(b);
    untagged.create_tenant("acme").await;
    let r = untagged.post_key("acme", json!({"subject": "svc"})).await;
    assert_eq!(
        (r.body["tagged"].clone(), r.body["tag_secret_id"].clone()),
        (json!(false), json!(null))
    );
    assert_eq!(tags.check(&r.body["api_key"].as_str().unwrap()[3..]), TagCheck::Invalid);
    let list = untagged.admin(Method::GET, "/admin/v1/tenants/acme/keys", None).await;
    assert_eq!(list.body["keys"][0]["tagged"], false);
}

backends!(
    new_keys_are_tagged_and_listed_as_such,
    every_lookup_answer_names_the_key_hash_it_answers,
    keys_record_when_they_were_last_used,
    revoke_all_keys_per_tenant_and_globally,
    created_key_is_shown_once_and_listing_has_no_secret,
    lookup_valid_key,
    lookup_uses_the_keys_own_allowlist_and_expiry,
    lookup_unknown_and_revoked,
    rotated_key_stays_valid_until_its_deadline,
    rotation_without_body_uses_a_day_of_grace,
    malformed_lookups_are_400,
    sdk_accepts_both_key_headers_and_refuses_bad_keys,
);
