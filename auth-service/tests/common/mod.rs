//! Shared test harness: a service on a temporary SQLite file or a fresh PostgreSQL
//! schema, with a manual clock, driven through the axum router with `oneshot` (no
//! network).
//!
//! PostgreSQL comes from `EDGE_AUTH_TEST_PG_URL` (`make test` starts a throw-away
//! server and sets it). Without it, the PostgreSQL variants say so loudly and pass;
//! with `EDGE_AUTH_TEST_PG_REQUIRED=1` or `CI` set, they fail instead.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use edge_auth_service::db::{DbConfig, Location};
use edge_auth_service::guard::GuardConfig;
use edge_auth_service::http::{router, AppState, Secret};
use edge_auth_service::service::{ManualClock, Options, Service};
use edge_auth_service::store;
use edge_auth_service::tokens::TokenConfig;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

pub mod calls;

pub const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef0123456789";
pub const SERVICE_TOKEN: &str = "service-token-0123456789abcdef012345678";
pub const ISSUER: &str = "https://auth.test.example";
pub const AUDIENCE: &str = "edge-api";
/// A fixed start time (2026-11) so tests are reproducible; the token verifier is given the same clock.
pub const T0: i64 = 1_795_000_000;
/// The environment variable with the test PostgreSQL server's connection string.
pub const PG_URL_ENV: &str = "EDGE_AUTH_TEST_PG_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The test server's connection string; `None` (after a loud warning) when it is not
/// set, a failure when the run requires PostgreSQL.
pub fn pg_url() -> Option<String> {
    if let Some(url) = std::env::var(PG_URL_ENV).ok().filter(|u| !u.is_empty()) {
        return Some(url);
    }
    let required = std::env::var("EDGE_AUTH_TEST_PG_REQUIRED").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| !v.is_empty());
    assert!(
        !required,
        "{PG_URL_ENV} is not set but PostgreSQL tests are required: run them with `make test`"
    );
    eprintln!(
        "\n*** WARNING: {PG_URL_ENV} is not set: this PostgreSQL test did NOT run. \
         `make test` starts a PostgreSQL server and runs it. ***\n"
    );
    None
}

/// Runs blocking database work from an async test (the PostgreSQL client runs its
/// own small runtime, which may not start inside the test's).
pub fn sync<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// A fresh schema name, so each test has a database of its own.
pub fn fresh_schema() -> String {
    let b: [u8; 8] = edge_auth_service::ids::random_bytes().unwrap();
    format!("t_{}", edge_auth_service::ids::hex(&b))
}

/// A database location for `backend` in `dir` (SQLite) or a fresh schema (PostgreSQL).
pub fn location(backend: Backend, dir: &tempfile::TempDir) -> Location {
    match backend {
        Backend::Sqlite => Location::Sqlite(dir.path().join("auth.db")),
        Backend::Postgres => Location::Postgres {
            url: pg_url().expect("PostgreSQL tests run only when the server is set"),
            schema: Some(fresh_schema()),
        },
    }
}

/// `backends!(a, b)`: runs `async fn a(b: Backend)` once on SQLite (`sqlite::a`) and
/// once on PostgreSQL (`postgres::a`).
#[macro_export]
macro_rules! backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if $crate::common::pg_url().is_some() {
                        super::$name($crate::common::Backend::Postgres).await
                    }
                }
            )*
        }
    };
}

pub struct TestApp {
    pub dir: tempfile::TempDir,
    /// The SQLite file (meaningless on PostgreSQL).
    pub db: PathBuf,
    pub config: DbConfig,
    pub backend: Backend,
    pub clock: Arc<ManualClock>,
    pub options: Options,
    pub svc: Arc<Service>,
    pub router: Router,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: Vec<u8>,
}

pub fn token_config() -> TokenConfig {
    TokenConfig {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
    }
}

impl TestApp {
    /// On SQLite.
    pub fn new() -> TestApp {
        TestApp::on(Backend::Sqlite)
    }

    pub fn on(backend: Backend) -> TestApp {
        TestApp::with_options(backend, Options::default())
    }

    /// An app whose failed-credential allowance is small (a burst of 3, one more
    /// every 2 s), for the tests of what happens when it runs out.
    pub fn strict(backend: Backend) -> TestApp {
        TestApp::with_options(
            backend,
            Options {
                guard: GuardConfig {
                    burst: 3,
                    per_s: 0.5,
                    ..GuardConfig::default()
                },
                ..Options::default()
            },
        )
    }

    pub fn with_options(backend: Backend, options: Options) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let config = DbConfig::new(location(backend, &dir));
        let clock = Arc::new(ManualClock::new(T0));
        TestApp::open(dir, config, backend, clock, options)
    }

    /// Opens (again) the same database, as a restarted service (or another replica) would.
    pub fn open(
        dir: tempfile::TempDir,
        config: DbConfig,
        backend: Backend,
        clock: Arc<ManualClock>,
        options: Options,
    ) -> TestApp {
        let opts = Options {
            tokens: Some(token_config()),
            ..options.clone()
        };
        // Service logs (warnings and errors) go to the test's captured output.
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_test_writer()
            .try_init();
        let svc = Arc::new(sync(|| Service::open_with(&config, opts, clock.clone())).unwrap());
        let state = AppState::new(svc.clone(), Secret::new(ADMIN_TOKEN), Secret::new(SERVICE_TOKEN));
        let db = match &config.location {
            Location::Sqlite(p) => p.clone(),
            Location::Postgres { .. } => PathBuf::new(),
        };
        TestApp {
            dir,
            db,
            config,
            backend,
            clock,
            options,
            svc,
            router: router(state),
        }
    }

    /// Drops the service and opens the database again.
    pub fn restart(self) -> TestApp {
        let TestApp {
            dir,
            config,
            backend,
            clock,
            options,
            svc,
            router,
            ..
        } = self;
        drop(router);
        sync(|| drop(svc));
        TestApp::open(dir, config, backend, clock, options)
    }

    /// A second service on the same database (another replica), sharing the clock.
    pub fn replica(&self) -> (Arc<Service>, Router) {
        let opts = Options {
            tokens: Some(token_config()),
            ..self.options.clone()
        };
        let svc = Arc::new(sync(|| Service::open_with(&self.config, opts, self.clock.clone())).unwrap());
        let state = AppState::new(svc.clone(), Secret::new(ADMIN_TOKEN), Secret::new(SERVICE_TOKEN));
        (svc, router(state))
    }

    /// The router with something of its state changed (the edge's context, say).
    pub fn router_with(&self, f: impl FnOnce(&mut AppState)) -> Router {
        let mut state = AppState::new(self.svc.clone(), Secret::new(ADMIN_TOKEN), Secret::new(SERVICE_TOKEN));
        f(&mut state);
        router(state)
    }

    pub async fn send(&self, req: Request<Body>) -> Resp {
        send_to(&self.router, req).await
    }

    pub async fn call(&self, method: Method, path: &str, auth: Option<(&str, &str)>, body: Option<Value>) -> Resp {
        self.send(request(method, path, auth, body, None)).await
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
        feed_of(&self.router, since).await
    }

    pub async fn audit(&self) -> Vec<Value> {
        let r = self.admin(Method::GET, "/admin/v1/audit?limit=1000", None).await;
        assert_eq!(r.status, StatusCode::OK);
        r.body["events"].as_array().unwrap().clone()
    }

    /// Rows of `table`.
    pub fn count(&self, table: &str) -> i64 {
        sync(|| self.svc.db().read(|c| store::count(c, table))).unwrap()
    }

    /// Rows of every table, to prove a refused request changed nothing (audit excluded).
    pub fn snapshot(&self) -> Vec<i64> {
        [
            "tenants",
            "api_keys",
            "sessions",
            "refresh_tokens",
            "revocation_events",
            "signing_keys",
        ]
        .iter()
        .map(|t| self.count(t))
        .collect()
    }
}

/// The TCP peer of a request that names none: inside the test tenants' allowlist
/// (`203.0.113.0/24`). A real server always knows its peer.
pub const DEFAULT_PEER: &str = "203.0.113.7";

/// A request as if it came from the TCP peer `peer` ([`DEFAULT_PEER`] if `None`).
pub fn request(
    method: Method,
    path: &str,
    auth: Option<(&str, &str)>,
    body: Option<Value>,
    peer: Option<&str>,
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some((name, value)) = auth {
        b = b.header(name, value);
    }
    let mut req = match body {
        Some(v) => b
            .header("content-type", "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    };
    let peer = peer.unwrap_or(DEFAULT_PEER);
    let addr = match peer.parse::<std::net::IpAddr>().unwrap() {
        std::net::IpAddr::V4(a) => SocketAddr::from((a, 40000)),
        std::net::IpAddr::V6(a) => SocketAddr::from((a, 40000)),
    };
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

pub async fn send_to(router: &Router, mut req: Request<Body>) -> Resp {
    if req.extensions().get::<ConnectInfo<SocketAddr>>().is_none() {
        let addr: SocketAddr = format!("{DEFAULT_PEER}:40000").parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(addr));
    }
    let res = tokio::time::timeout(Duration::from_secs(20), router.clone().oneshot(req))
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

/// A feed poll on `router` with the service token.
pub async fn feed_of(router: &Router, since: Option<&str>) -> Value {
    let path = match since {
        Some(c) => format!("/internal/v1/revocations?since={c}"),
        None => "/internal/v1/revocations".to_owned(),
    };
    let bearer = format!("Bearer {SERVICE_TOKEN}");
    let r = send_to(
        router,
        request(Method::GET, &path, Some(("authorization", &bearer)), None, None),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.body
}

/// An acme tenant with a key for `svc-billing` holding `orders:read orders:write`.
pub async fn app_with_key_on(backend: Backend) -> (TestApp, String, String) {
    let app = TestApp::on(backend);
    app.create_tenant("acme").await;
    let (key_id, raw) = app
        .create_key("acme", "svc-billing", &["orders:read", "orders:write"], None)
        .await;
    (app, key_id, raw)
}

/// [`app_with_key_on`] SQLite.
pub async fn app_with_key() -> (TestApp, String, String) {
    app_with_key_on(Backend::Sqlite).await
}
