//! Storage: round-trips, persistence across restarts, idempotent migrations.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use edge_auth_service::db::{Database, DbConfig, Location};
use edge_auth_service::model::{ApiKeyRow, Tenant};
use edge_auth_service::store::{self, SCHEMA_VERSION};
use edge_auth_service::{Error, Service};
use serde_json::json;

fn tenant(name: &str) -> Tenant {
    Tenant {
        name: name.into(),
        allowed_origins: vec!["https://a.example".into()],
        ip_allowlist: vec!["10.0.0.0/8".into()],
        created_at: 5,
        disabled_at: None,
    }
}

fn key(id: &str, tenant: &str, hash: &str) -> ApiKeyRow {
    ApiKeyRow {
        key_id: id.into(),
        tenant: tenant.into(),
        subject: "svc".into(),
        key_hash: hash.into(),
        scopes: vec!["a".into(), "b:c".into()],
        roles: vec!["viewer".into()],
        ip_allowlist: Some(vec!["192.0.2.7".into()]),
        created_at: 10,
        expires_at: Some(100),
        rotated_at: None,
        rotation_deadline: None,
        replaced_by: None,
        revoked_at: None,
        last_used_at: None,
        tag_secret_id: None,
    }
}

fn database(b: Backend, dir: &tempfile::TempDir) -> (Database, DbConfig) {
    let config = DbConfig::new(location(b, dir));
    (Database::open(&config).unwrap(), config)
}

async fn rows_round_trip(b: Backend) {
    sync(|| rows_round_trip_sync(b));
}

fn rows_round_trip_sync(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = database(b, &dir);
    db.write(|c| store::insert_tenant(c, &tenant("acme"))).unwrap();
    assert_eq!(db.read(|c| store::tenant(c, "acme")).unwrap(), Some(tenant("acme")));
    assert_eq!(db.read(|c| store::tenant(c, "nope")).unwrap(), None);
    let e = db.write(|c| store::insert_tenant(c, &tenant("acme"))).unwrap_err();
    assert!(matches!(e, Error::Conflict(_)), "{e}");

    let k = key("key_a", "acme", &"1".repeat(64));
    db.write(|c| store::insert_key(c, &k)).unwrap();
    assert_eq!(db.read(|c| store::key_by_id(c, "key_a")).unwrap(), Some(k.clone()));
    let (found, t) = db.read(|c| store::key_by_hash(c, &"1".repeat(64))).unwrap().unwrap();
    assert_eq!(found, k);
    assert_eq!(t, tenant("acme"));
    assert!(db.read(|c| store::key_by_hash(c, &"2".repeat(64))).unwrap().is_none());
    // A key for a tenant that does not exist is refused by the foreign key.
    assert!(db
        .write(|c| store::insert_key(c, &key("key_b", "ghost", &"3".repeat(64))))
        .is_err());
    // Duplicate hash refused.
    assert!(db
        .write(|c| store::insert_key(c, &key("key_c", "acme", &"1".repeat(64))))
        .is_err());
    assert_eq!(db.read(|c| store::keys_of_tenant(c, "acme")).unwrap().len(), 1);
    // A failed write changes nothing: the tenant inserted before the failure is rolled back.
    let e = db.write(|c| {
        store::insert_tenant(c, &tenant("rolled-back"))?;
        store::insert_key(c, &key("key_d", "ghost", &"4".repeat(64)))
    });
    assert!(e.is_err());
    assert_eq!(db.read(|c| store::tenant(c, "rolled-back")).unwrap(), None);
}

async fn migrations_are_idempotent(b: Backend) {
    sync(|| migrations_are_idempotent_sync(b));
}

fn migrations_are_idempotent_sync(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (db, config) = database(b, &dir);
    assert_eq!(db.read(store::schema_version).unwrap(), SCHEMA_VERSION);
    let instance = db.read(store::instance_id).unwrap();
    db.write(|c| store::insert_tenant(c, &tenant("acme"))).unwrap();
    drop(db);
    for _ in 0..3 {
        let db = Database::open(&config).unwrap();
        assert_eq!(db.read(store::schema_version).unwrap(), SCHEMA_VERSION);
        assert_eq!(db.read(store::migrations_applied).unwrap(), SCHEMA_VERSION);
        assert_eq!(
            db.read(store::instance_id).unwrap(),
            instance,
            "the instance id is kept"
        );
        assert_eq!(db.read(store::tenants).unwrap().len(), 1);
    }
}

/// Replicas starting at once on a new database: each migration runs once, one
/// instance id, one signing key.
async fn replicas_migrate_once_when_started_together(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let config = DbConfig::new(location(b, &dir));
    let clock = std::sync::Arc::new(edge_auth_service::ManualClock::new(T0));
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let (config, clock, barrier) = (config.clone(), clock.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let svc = Service::open(&config, None, clock).unwrap();
                let instance = svc.db().read(store::instance_id).unwrap();
                let jwks = svc.jwks().unwrap();
                (instance, jwks)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    sync(|| {
        let db = Database::open(&config).unwrap();
        assert_eq!(db.read(store::migrations_applied).unwrap(), SCHEMA_VERSION);
        assert!(
            results.iter().all(|r| r == &results[0]),
            "one instance id and one signing key: {results:?}"
        );
        assert_eq!(db.read(|c| store::count(c, "signing_keys")).unwrap(), 1);
    });
}

#[cfg(unix)]
#[test]
fn database_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    drop(Database::open(&DbConfig::new(Location::Sqlite(path.clone()))).unwrap());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

async fn data_survives_a_restart(b: Backend) {
    let (app, key_id, raw) = app_with_key_on(b).await;
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

async fn a_cursor_from_another_database_resets(b: Backend) {
    let a = TestApp::on(b);
    let b = TestApp::on(b);
    a.admin(Method::POST, "/admin/v1/revoke-all", None).await;
    for _ in 0..3 {
        b.admin(Method::POST, "/admin/v1/revoke-all", None).await;
    }
    let cursor = a.feed(None).await["cursor"].as_str().unwrap().to_owned();
    let feed = b.feed(Some(&cursor)).await;
    assert_eq!(feed["reset"], true);
}

backends!(
    rows_round_trip,
    migrations_are_idempotent,
    replicas_migrate_once_when_started_together,
    data_survives_a_restart,
    a_cursor_from_another_database_resets,
);
