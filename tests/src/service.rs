//! The reference auth service (`edge-auth-service`) as a child process on
//! loopback, with its admin API and counters, for tests that need the real
//! service behind the edge.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{http, wait_until, Response};

/// The operators' token the test service is started with.
pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789abcdef0123456789";
/// The filter's service token the test service is started with.
pub const SERVICE_TOKEN: &str = "e2e-service-token-0123456789abcdef012345";

/// The service binary: `$EDGE_AUTH_SERVICE_BIN`, else the workspace's debug build.
/// The key-tag secret the tests share between a tagged service and its edges.
pub const KEY_TAG_SECRET: &str = "e2e-key-tag-secret-0123456789abcdef0123456789";
/// The environment variable the edges read it from (`api_keys.key_tags.secret_env`).
pub const KEY_TAG_ENV: &str = "E2E_KEY_TAG_SECRET";

pub fn service_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("EDGE_AUTH_SERVICE_BIN") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/edge-auth-service")
}

/// A running service; killed when dropped (its database directory stays, so
/// [`AuthService::start_at`] on the same directory restarts it with its data).
pub struct AuthService {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Drop for AuthService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl AuthService {
    /// Starts the service on a free port with a fresh database.
    pub fn start() -> AuthService {
        let dir = std::env::temp_dir().join(format!("edge-auth-e2e-svc-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        AuthService::start_at(free_port(), dir)
    }

    /// Starts the service on a free port with a fresh database and `env` set.
    pub fn start_with_env(env: &[(&str, &str)]) -> AuthService {
        let dir = std::env::temp_dir().join(format!("edge-auth-e2e-svc-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let port = free_port();
        let mut cmd = Command::new(service_bin());
        cmd.arg("--db").arg(dir.join("auth.db"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        AuthService::spawn(cmd, port, &format!("http://127.0.0.1:{port}"), dir)
    }

    /// Starts the service with [`KEY_TAG_SECRET`] as its key-tag secret: every key
    /// it mints is tagged (edges configure `api_keys.key_tags` with [`KEY_TAG_ENV`]).
    pub fn start_tagged() -> AuthService {
        AuthService::start_with_env(&[("EDGE_AUTH_KEY_TAG_SECRET", KEY_TAG_SECRET)])
    }

    /// Runs the service's command line on this service's database, without a
    /// key-tag secret (so a key it creates is untagged, as before key tags):
    /// its JSON output.
    pub fn cli_untagged(&self, args: &[&str]) -> Value {
        let out = Command::new(service_bin())
            .arg("--db")
            .arg(self.dir.join("auth.db"))
            .args(args)
            .env_remove("EDGE_AUTH_KEY_TAG_SECRET")
            .env_remove("EDGE_AUTH_KEY_TAG_SECRET_PREVIOUS")
            .stdin(Stdio::null())
            .output()
            .expect("run the service's command line");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    /// Starts the service on `port` with its database in `dir` (a restart keeps the data).
    pub fn start_at(port: u16, dir: PathBuf) -> AuthService {
        let mut cmd = Command::new(service_bin());
        cmd.arg("--db").arg(dir.join("auth.db"));
        AuthService::spawn(cmd, port, &format!("http://127.0.0.1:{port}"), dir)
    }

    /// Starts a replica on a free port, on the PostgreSQL database `url` (schema
    /// `schema`, created if missing), issuing tokens as `issuer`. Replicas of one
    /// database share everything: keys, sessions, signing keys, feed cursors.
    pub fn start_replica(url: &str, schema: &str, issuer: &str) -> AuthService {
        let mut cmd = Command::new(service_bin());
        cmd.env("EDGE_AUTH_DATABASE_URL", url)
            .env("EDGE_AUTH_DATABASE_SCHEMA", schema)
            .env_remove("EDGE_AUTH_DB");
        AuthService::spawn(cmd, free_port(), issuer, std::env::temp_dir())
    }

    fn spawn(mut cmd: Command, port: u16, issuer: &str, dir: PathBuf) -> AuthService {
        let bin = service_bin();
        assert!(
            bin.exists(),
            "{} is missing: build it with `cargo build -p edge-auth-service`",
            bin.display()
        );
        let child = cmd
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--issuer", issuer, "--audience", "e2e-app"])
            .env("EDGE_AUTH_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("EDGE_AUTH_SERVICE_TOKEN", SERVICE_TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the auth service");
        let svc = AuthService { child, port, dir };
        let up = wait_until(Duration::from_secs(15), || {
            http::try_request(("127.0.0.1", port), "GET", "/health", &[], "").is_ok_and(|r| r.status == 200)
        });
        assert!(up, "the auth service did not come up on {port}");
        svc
    }

    /// Stops the service now (its port and data stay for a restart).
    pub fn stop(mut self) -> (u16, PathBuf) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        (self.port, self.dir.clone())
    }

    /// A POST to the admin API.
    pub fn admin(&self, path: &str, body: Value) -> Response {
        let bearer = format!("Bearer {ADMIN_TOKEN}");
        let headers = [("authorization", bearer.as_str()), ("content-type", "application/json")];
        http::request(("127.0.0.1", self.port), "POST", path, &headers, body.to_string())
    }

    /// Creates a tenant (201 expected).
    pub fn tenant(&self, name: &str, allowed_origins: &[&str], ip_allowlist: &[&str]) {
        let r = self.admin(
            "/admin/v1/tenants",
            serde_json::json!({"name": name, "allowed_origins": allowed_origins, "ip_allowlist": ip_allowlist}),
        );
        assert_eq!(r.status, 201, "create tenant {name}: {}", r.summary());
    }

    /// Creates a key in `tenant` with `body` (subject, scopes, ...): `(api_key, key_id)`.
    pub fn key(&self, tenant: &str, body: Value) -> (String, String) {
        let r = self.admin(&format!("/admin/v1/tenants/{tenant}/keys"), body);
        assert_eq!(r.status, 201, "create key: {}", r.summary());
        let v = r.json();
        let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        (text("api_key"), text("key_id"))
    }

    /// The service's own counters (`/internal/v1/stats`, service token).
    pub fn stats(&self) -> Value {
        let bearer = format!("Bearer {SERVICE_TOKEN}");
        http::request(
            ("127.0.0.1", self.port),
            "GET",
            "/internal/v1/stats",
            &[("authorization", bearer.as_str())],
            "",
        )
        .json()
    }

    /// How many API-key lookups the service has answered.
    pub fn lookups(&self) -> u64 {
        self.stats()["api_key_lookups"].as_u64().unwrap_or(0)
    }

    /// A request with the service token (the edge's calls).
    pub fn internal(&self, method: &str, path: &str, body: &str) -> Response {
        let bearer = format!("Bearer {SERVICE_TOKEN}");
        let headers = [("authorization", bearer.as_str()), ("content-type", "application/json")];
        http::request(("127.0.0.1", self.port), method, path, &headers, body)
    }

    /// One series of the service's `/metrics` (0 if absent).
    pub fn metric(&self, series: &str) -> f64 {
        let text = http::request(("127.0.0.1", self.port), "GET", "/metrics", &[], "").text();
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}

/// The test PostgreSQL server's connection string (`EDGE_AUTH_TEST_PG_URL`; `make
/// test` starts one). Without it: `None` after a loud warning, or a failure when the
/// run requires PostgreSQL (`EDGE_AUTH_TEST_PG_REQUIRED=1` or `CI`).
pub fn test_pg_url() -> Option<String> {
    if let Some(url) = std::env::var("EDGE_AUTH_TEST_PG_URL").ok().filter(|u| !u.is_empty()) {
        return Some(url);
    }
    let required = std::env::var("EDGE_AUTH_TEST_PG_REQUIRED").is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| !v.is_empty());
    assert!(
        !required,
        "EDGE_AUTH_TEST_PG_URL is not set but PostgreSQL tests are required: run them with `make test`"
    );
    eprintln!(
        "\n*** WARNING: EDGE_AUTH_TEST_PG_URL is not set: this PostgreSQL test did NOT run. \
         `make test` starts a PostgreSQL server and runs it. ***\n"
    );
    None
}

/// A schema name no other test uses.
pub fn fresh_schema() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("e2e_{}_{nanos}", std::process::id())
}
