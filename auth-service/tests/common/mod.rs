//! Shared test harness: a service on a temporary database file with a manual clock,
//! driven through the axum router with `oneshot` (no network).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use edge_auth_service::http::{router, AppState, Secret};
use edge_auth_service::service::{ManualClock, Service};
use edge_auth_service::tokens::TokenConfig;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

pub const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef0123456789";
pub const SERVICE_TOKEN: &str = "service-token-0123456789abcdef012345678";
pub const ISSUER: &str = "https://auth.test.example";
pub const AUDIENCE: &str = "edge-api";
/// A fixed start time (2026-11) so tests are reproducible; the token verifier is given the same clock.
pub const T0: i64 = 1_795_000_000;

pub struct TestApp {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub clock: Arc<ManualClock>,
    pub svc: Arc<Service>,
    pub router: Router,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl TestApp {
    pub fn new() -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("auth.db");
        let clock = Arc::new(ManualClock::new(T0));
        TestApp::open(dir, db, clock)
    }

    /// Opens (again) the same database file, as a restarted service would.
    pub fn open(dir: tempfile::TempDir, db: PathBuf, clock: Arc<ManualClock>) -> TestApp {
        let cfg = TokenConfig {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
        };
        let svc = Arc::new(Service::open(&db, Some(cfg), clock.clone()).unwrap());
        let state = AppState {
            service: svc.clone(),
            admin_token: Secret::new(ADMIN_TOKEN),
            service_token: Secret::new(SERVICE_TOKEN),
        };
        TestApp {
            dir,
            db,
            clock,
            svc,
            router: router(state),
        }
    }

    /// Drops the service and opens the file again.
    pub fn restart(self) -> TestApp {
        let TestApp {
            dir,
            db,
            clock,
            svc,
            router,
        } = self;
        drop(router);
        drop(svc);
        TestApp::open(dir, db, clock)
    }

    pub async fn send(&self, req: Request<Body>) -> Resp {
        let res = tokio::time::timeout(Duration::from_secs(20), self.router.clone().oneshot(req))
            .await
            .expect("request timed out")
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let raw = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        let body = if raw.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&raw).unwrap_or(Value::Null)
        };
        Resp {
            status,
            headers,
            body,
            raw,
        }
    }

    pub async fn call(&self, method: Method, path: &str, auth: Option<(&str, &str)>, body: Option<Value>) -> Resp {
        let mut b = Request::builder().method(method).uri(path);
        if let Some((name, value)) = auth {
            b = b.header(name, value);
        }
        let req = match body {
            Some(v) => b
                .header("content-type", "application/json")
                .body(Body::from(v.to_string()))
                .unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        self.send(req).await
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        self.call(method, path, Some(("authorization", &bearer)), body).await
    }

    pub async fn internal(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let bearer = format!("Bearer {SERVICE_TOKEN}");
        self.call(method, path, Some(("authorization", &bearer)), body).await
    }

    pub async fn sdk(&self, path: &str, api_key: &str, body: Option<Value>) -> Resp {
        self.call(Method::POST, path, Some(("x-api-key", api_key)), body).await
    }

    pub async fn create_tenant(&self, name: &str) -> Value {
        let r = self
            .admin(
                Method::POST,
                "/admin/v1/tenants",
                Some(json!({"name": name, "allowed_origins": ["https://app.acme.example"], "ip_allowlist": ["203.0.113.0/24"]})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body
    }

    /// Creates a key and returns (key_id, raw key).
    pub async fn create_key(
        &self,
        tenant: &str,
        subject: &str,
        scopes: &[&str],
        expires_in_s: Option<i64>,
    ) -> (String, String) {
        let r = self
            .admin(
                Method::POST,
                &format!("/admin/v1/tenants/{tenant}/keys"),
                Some(json!({"subject": subject, "scopes": scopes, "expires_in_s": expires_in_s, "ip_allowlist": null})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        (
            r.body["key_id"].as_str().unwrap().to_owned(),
            r.body["api_key"].as_str().unwrap().to_owned(),
        )
    }

    /// The lookup answer for `raw_key`, without its `key_hash` once checked:
    /// every answer must name the hash it answers (contract v1.1).
    pub async fn lookup_raw(&self, raw_key: &str) -> Value {
        let hash = edge_auth_service::keys::hash_secret(raw_key);
        let r = self
            .internal(
                Method::POST,
                "/internal/v1/api-keys/lookup",
                Some(json!({"key_hash": hash})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        let mut body = r.body;
        let named = body.as_object_mut().and_then(|o| o.remove("key_hash"));
        assert_eq!(named, Some(json!(hash)), "the answer names the key_hash asked about");
        body
    }

    pub async fn feed(&self, since: Option<&str>) -> Value {
        let path = match since {
            Some(c) => format!("/internal/v1/revocations?since={c}"),
            None => "/internal/v1/revocations".to_owned(),
        };
        let r = self.internal(Method::GET, &path, None).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.body
    }

    pub async fn audit(&self) -> Vec<Value> {
        let r = self.admin(Method::GET, "/admin/v1/audit?limit=1000", None).await;
        assert_eq!(r.status, StatusCode::OK);
        r.body["events"].as_array().unwrap().clone()
    }

    /// Rows of every table, to prove a refused request changed nothing (audit excluded).
    pub fn snapshot(&self) -> Vec<i64> {
        let store = self.svc.store();
        [
            "tenants",
            "api_keys",
            "sessions",
            "refresh_tokens",
            "revocation_events",
            "signing_keys",
        ]
        .iter()
        .map(|t| store.count(t).unwrap())
        .collect()
    }
}

/// An acme tenant with a key for `svc-billing` holding `orders:read orders:write`.
pub async fn app_with_key() -> (TestApp, String, String) {
    let app = TestApp::new();
    app.create_tenant("acme").await;
    let (key_id, raw) = app
        .create_key("acme", "svc-billing", &["orders:read", "orders:write"], None)
        .await;
    (app, key_id, raw)
}
