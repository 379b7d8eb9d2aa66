//! Storage: round-trips, persistence across restarts, idempotent migrations.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use edge_auth_service::store::{ApiKeyRow, Store, Tenant, SCHEMA_VERSION};
use serde_json::json;

fn tenant(name: &str) -> Tenant {
    Tenant {
        name: name.into(),
        allowed_origins: vec!["https://a.example".into()],
        ip_allowlist: vec!["10.0.0.0/8".into()],
        created_at: 5,
    }
}

fn key(id: &str, tenant: &str, hash: &str) -> ApiKeyRow {
    ApiKeyRow {
        key_id: id.into(),
        tenant: tenant.into(),
        subject: "svc".into(),
        key_hash: hash.into(),
        scopes: vec!["a".into(), "b:c".into()],
        ip_allowlist: Some(vec!["192.0.2.7".into()]),
        created_at: 10,
        expires_at: Some(100),
        rotated_at: None,
        rotation_deadline: None,
        replaced_by: None,
        revoked_at: None,
    }
}

#[test]
fn rows_round_trip() {
    let mut s = Store::open_in_memory().unwrap();
    s.insert_tenant(&tenant("acme")).unwrap();
    assert_eq!(s.tenant("acme").unwrap(), Some(tenant("acme")));
    assert_eq!(s.tenant("nope").unwrap(), None);
    let e = s.insert_tenant(&tenant("acme")).unwrap_err();
    assert_eq!(e.status, 409);

    let k = key("key_a", "acme", &"1".repeat(64));
    s.insert_key(&k).unwrap();
    assert_eq!(s.key_by_id("key_a").unwrap(), Some(k.clone()));
    let (found, t) = s.key_by_hash(&"1".repeat(64)).unwrap().unwrap();
    assert_eq!(found, k);
    assert_eq!(t, tenant("acme"));
    assert!(s.key_by_hash(&"2".repeat(64)).unwrap().is_none());
    // A key for a tenant that does not exist is refused by the foreign key.
    assert!(s.insert_key(&key("key_b", "ghost", &"3".repeat(64))).is_err());
    // Duplicate hash refused.
    assert!(s.insert_key(&key("key_c", "acme", &"1".repeat(64))).is_err());
    assert_eq!(s.keys_of_tenant("acme").unwrap().len(), 1);
}

#[test]
fn migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let mut s = Store::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    let instance = s.instance_id().unwrap();
    s.migrate().unwrap();
    s.migrate().unwrap();
    assert_eq!(s.migrations_applied().unwrap(), SCHEMA_VERSION);
    s.insert_tenant(&tenant("acme")).unwrap();
    drop(s);
    for _ in 0..3 {
        let s = Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(s.migrations_applied().unwrap(), SCHEMA_VERSION);
        assert_eq!(s.instance_id().unwrap(), instance, "the instance id is kept");
        assert_eq!(s.tenants().unwrap().len(), 1);
    }
}

#[cfg(unix)]
#[test]
fn database_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    drop(Store::open(&path).unwrap());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test]
async fn data_survives_a_restart() {
    let (app, key_id, raw) = app_with_key().await;
    let jwks_before = app.call(Method::GET, "/.well-known/jwks.json", None, None).await.body;
    let pair = app.sdk("/v1/sessions", &raw, Some(json!({"subject": "user-1"}))).await;
    assert_eq!(pair.status, StatusCode::CREATED);
    let sid = pair.body["session_id"].as_str().unwrap().to_owned();
    let rt = pair.body["refresh_token"].as_str().unwrap().to_owned();
    app.admin(Method::POST, "/admin/v1/subjects/user-9/revoke", None).await;
    let cursor = app.feed(None).await["cursor"].as_str().unwrap().to_owned();

    let app = app.restart();
    // Tenants, keys, the signing key, sessions, refresh tokens and revocations are all still there.
    let tenants = app.admin(Method::GET, "/admin/v1/tenants", None).await.body;
    assert_eq!(tenants["tenants"][0]["name"], "acme");
    let lookup = app.lookup_raw(&raw).await;
    assert_eq!(lookup["status"], "valid");
    assert_eq!(lookup["key_id"], key_id.as_str());
    let jwks_after = app.call(Method::GET, "/.well-known/jwks.json", None, None).await.body;
    assert_eq!(jwks_before, jwks_after, "the signing key is not regenerated on restart");
    let feed = app.feed(Some(&cursor)).await;
    assert_eq!(feed["reset"], false, "a cursor stays valid across restarts");
    let snap = app.feed(None).await;
    assert_eq!(snap["subjects"][0]["subject"], "user-9");
    let refreshed = app
        .sdk("/v1/sessions/refresh", &raw, Some(json!({"refresh_token": rt})))
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{:?}", refreshed.body);
    assert_eq!(refreshed.body["session_id"], sid.as_str());
}

#[tokio::test]
async fn a_cursor_from_another_database_resets() {
    let a = TestApp::new();
    let b = TestApp::new();
    a.admin(Method::POST, "/admin/v1/revoke-all", None).await;
    for _ in 0..3 {
        b.admin(Method::POST, "/admin/v1/revoke-all", None).await;
    }
    let cursor = a.feed(None).await["cursor"].as_str().unwrap().to_owned();
    let feed = b.feed(Some(&cursor)).await;
    assert_eq!(feed["reset"], true);
}
