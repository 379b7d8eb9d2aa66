//! The binary: `serve` refuses to start without its secrets; admin commands work on
//! the database file; a real server on 127.0.0.1:0 answers over TCP and sees the peer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_edge-auth-service");
const ADMIN: &str = "cli-admin-token-0123456789abcdef0123456789";
const SERVICE: &str = "cli-service-token-0123456789abcdef012345678";

fn run(db: &Path, args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("EDGE_AUTH_ADMIN_TOKEN")
        .env_remove("EDGE_AUTH_SERVICE_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    out
}

fn json_out(out: &Output) -> Value {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn serve_args(db: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--issuer",
        "https://auth.cli.test",
        "--audience",
        "api",
        "--db",
    ])
    .arg(db)
    .env_remove("EDGE_AUTH_ADMIN_TOKEN")
    .env_remove("EDGE_AUTH_SERVICE_TOKEN")
    .stdin(Stdio::null());
    c
}

/// Waits for a short-lived process with a deadline; kills it if it overstays.
fn wait_exit(mut child: Child, limit: Duration) -> (bool, String) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            return (status.success(), err);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn serve_refuses_to_start_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    let cases: [(Option<&str>, Option<&str>, &str); 4] = [
        (None, None, "EDGE_AUTH_ADMIN_TOKEN is not set"),
        (Some(ADMIN), None, "EDGE_AUTH_SERVICE_TOKEN is not set"),
        (Some("too-short"), Some(SERVICE), "shorter than 32"),
        (Some(ADMIN), Some("short-service-token"), "shorter than 32"),
    ];
    for (admin, service, message) in cases {
        let mut c = serve_args(&db);
        if let Some(a) = admin {
            c.env("EDGE_AUTH_ADMIN_TOKEN", a);
        }
        if let Some(s) = service {
            c.env("EDGE_AUTH_SERVICE_TOKEN", s);
        }
        let child = c.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let (ok, err) = wait_exit(child, Duration::from_secs(20));
        assert!(!ok, "serve started without valid secrets");
        assert!(err.contains(message), "{err}");
        assert!(
            !err.contains("too-short") && !err.contains("short-service-token"),
            "a secret was printed: {err}"
        );
    }
}

#[test]
fn admin_commands_work_on_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.db");
    let t = json_out(&run(
        &db,
        &[
            "tenant",
            "create",
            "acme",
            "--origin",
            "https://app.acme.example",
            "--ip",
            "203.0.113.0/24",
        ],
    ));
    assert_eq!(t["name"], "acme");
    let bad = run(&db, &["tenant", "create", "Bad Name"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid_request"));
    let k = json_out(&run(
        &db,
        &[
            "key",
            "create",
            "--tenant",
            "acme",
            "--subject",
            "svc",
            "--scope",
            "orders:read",
        ],
    ));
    let raw = k["api_key"].as_str().unwrap().to_owned();
    let key_id = k["key_id"].as_str().unwrap().to_owned();
    let list = run(&db, &["key", "list", "--tenant", "acme"]);
    assert!(!String::from_utf8_lossy(&list.stdout).contains(&raw));
    assert_eq!(json_out(&list)["keys"][0]["key_id"], key_id.as_str());
    let rotated = json_out(&run(&db, &["key", "rotate", &key_id, "--grace-s", "60"]));
    assert_eq!(rotated["scopes"], json!(["orders:read"]));
    let revoked = json_out(&run(&db, &["key", "revoke", rotated["key_id"].as_str().unwrap()]));
    assert_eq!(revoked["status"], "revoked");
    json_out(&run(&db, &["subject", "revoke", "user-1"]));
    json_out(&run(&db, &["revoke-all"]));
    let sk = json_out(&run(&db, &["signing-key", "rotate"]));
    assert!(
        sk["previous_kid"].is_string(),
        "a key was created at first open, then rotated"
    );
    assert!(!run(&db, &["session", "revoke", "ses_missing"]).status.success());
    let audit = run(&db, &["audit", "--limit", "50"]);
    let text = String::from_utf8_lossy(&audit.stdout).into_owned();
    assert!(!text.contains(&raw));
    let events = json_out(&audit);
    assert!(events["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "key.create" && e["actor"] == "cli"));
    assert!(!run(&db, &["tenant", "list"]).stdout.is_empty());
    // No --db: a clear error.
    let out = Command::new(BIN)
        .args(["tenant", "list"])
        .env_remove("EDGE_AUTH_DB")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--db"));
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 request over loopback with bounded timeouts. Returns (status, body).
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&Value>) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("content-type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status: u16 = resp.split(' ').nth(1).unwrap().parse().unwrap();
    let (head, rest) = resp.split_once("\r\n\r\n").unwrap();
    assert!(head.to_ascii_lowercase().contains("edge-auth-api-version: 1"), "{head}");
    (status, serde_json::from_str(rest).unwrap_or(Value::Null))
}

#[test]
fn real_server_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    json_out(&run(&db, &["tenant", "create", "acme"]));
    let k = json_out(&run(
        &db,
        &["key", "create", "--tenant", "acme", "--subject", "svc", "--scope", "a"],
    ));
    let raw = k["api_key"].as_str().unwrap().to_owned();

    let mut child = serve_args(&db)
        .env("EDGE_AUTH_ADMIN_TOKEN", ADMIN)
        .env("EDGE_AUTH_SERVICE_TOKEN", SERVICE)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let server = Server(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(30)).expect("no startup line");
    assert!(!line.contains(ADMIN) && !line.contains(SERVICE));
    let port: u16 = line
        .split("http://127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected startup line {line}"));

    assert_eq!(http(port, "GET", "/health", &[], None), (200, json!({"status": "ok"})));
    let svc_auth = format!("Bearer {SERVICE}");
    let hash = edge_auth_service::keys::hash_secret(&raw);
    let (status, body) = http(
        port,
        "POST",
        "/internal/v1/api-keys/lookup",
        &[("authorization", &svc_auth)],
        Some(&json!({"key_hash": hash})),
    );
    assert_eq!(status, 200);
    assert_eq!(body["status"], "valid");
    let (status, pair) = http(
        port,
        "POST",
        "/v1/sessions",
        &[("x-api-key", &raw), ("x-forwarded-for", "198.51.100.9")],
        Some(&json!({"subject": "u"})),
    );
    assert_eq!(status, 201, "{pair}");
    let (status, _) = http(
        port,
        "GET",
        "/admin/v1/audit",
        &[("authorization", "Bearer wrong")],
        None,
    );
    assert_eq!(status, 401);
    let admin_auth = format!("Bearer {ADMIN}");
    let (status, events) = http(
        port,
        "GET",
        "/admin/v1/audit?limit=10",
        &[("authorization", &admin_auth)],
        None,
    );
    assert_eq!(status, 200);
    let created = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "session.create")
        .unwrap()
        .clone();
    assert_eq!(created["peer"], "127.0.0.1");
    assert_eq!(created["forwarded_for"], "198.51.100.9");
    drop(server);
}
