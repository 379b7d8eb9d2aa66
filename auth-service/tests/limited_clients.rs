//! A client over its failed-authentication limit is answered `429` before routing
//! (`http::gate`), through the real server on loopback: the same answer as before,
//! for every route that needs a credential, while open routes and valid tokens from
//! the same address still pass, and other addresses are not affected. The refusals
//! are counted in the audit aggregate under route templates, and in the metrics.
//! (127.0.0.2 and 127.0.0.3 are two clients: loopback answers all of 127/8.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::Method;
use common::*;
use edge_auth_service::http::{serve, serve_api, Api, AppState, HttpConfig, Secret};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};

type Headers<'a> = &'a [(&'a str, &'a str)];

struct Reply {
    status: u16,
    head: String,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// A connection to `addr` from the loopback address `source`.
async fn connect_from(source: &str, addr: SocketAddr) -> tokio::net::TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// One request from `source` over a new connection.
async fn http(addr: SocketAddr, source: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut s = connect_from(source, addr).await;
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 0\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut raw))
        .await
        .expect("no answer")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    Reply {
        status: head.split(' ').nth(1).unwrap().parse().unwrap(),
        head: head.to_owned(),
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

/// `app`'s service behind the real HTTP server on 127.0.0.1; stops when the test ends.
async fn served(app: &TestApp) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::new(app.svc.clone(), Secret::new(ADMIN_TOKEN), Secret::new(SERVICE_TOKEN));
    tokio::spawn(serve(listener, state, std::future::pending()));
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_client_gets_429_before_routing_and_valid_tokens_still_pass() {
    let app = TestApp::strict(Backend::Sqlite);
    app.create_tenant("acme").await;
    let (_, raw_key) = app.create_key("acme", "svc", &[], None).await;
    let addr = served(&app).await;
    let (limited, other) = ("127.0.0.2", "127.0.0.3");
    let wrong = [("authorization", "Bearer wrong")];
    for _ in 0..3 {
        let r = http(addr, limited, "GET", "/admin/v1/tenants", &wrong).await;
        assert_eq!(r.status, 401);
    }
    // From now on every route that needs a credential answers 429, whatever the path.
    let long = format!("/admin/v1/keys/{}/revoke", "a".repeat(16_000));
    let api_key = [("x-api-key", raw_key.as_str())];
    let cases: [(&str, &str, Headers); 7] = [
        ("POST", long.as_str(), &wrong),
        ("GET", "/admin/v1/tenants", &[]),
        ("GET", "/admin/v1/no-such-thing", &wrong),
        ("GET", "/admin/v1/revoke-all", &wrong),
        ("GET", "/internal/v1/revocations", &wrong),
        ("POST", "/v1/sessions", &api_key),
        (
            "POST",
            "/internal/v1/api-keys/lookup",
            &[("authorization", "Bearer not-the-service-token")],
        ),
    ];
    for (method, path, headers) in cases {
        let r = http(addr, limited, method, path, headers).await;
        assert_eq!(r.status, 429, "{method} {}", &path[..path.len().min(40)]);
        let e = edge_auth_service::Error::RateLimited { retry_after_s: 2 };
        assert_eq!(r.body, json!({"error": e.code(), "error_description": e.description()}));
        assert_eq!(
            r.header("retry-after").as_deref(),
            Some("2"),
            "one failure back in 2 s at 0.5/s"
        );
        assert_eq!(r.header("content-type").as_deref(), Some("application/json"));
        assert_eq!(r.header("edge-auth-api-version").as_deref(), Some("1"));
        assert_eq!(r.header("x-request-id").map(|v| v.len()), Some(24));
    }
    let tagged = http(addr, limited, "GET", "/admin/v1/tenants", &[("x-request-id", "edge-7")]).await;
    assert_eq!(tagged.header("x-request-id").as_deref(), Some("edge-7"));

    // Open routes, valid tokens, and other clients are not affected.
    for open in ["/health", "/ready", "/metrics", "/.well-known/jwks.json"] {
        assert_eq!(http(addr, limited, "GET", open, &[]).await.status, 200, "{open}");
    }
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let r = http(addr, limited, "GET", "/admin/v1/tenants", &[("authorization", &admin)]).await;
    assert_eq!(r.status, 200);
    let service = format!("Bearer {SERVICE_TOKEN}");
    let r = http(
        addr,
        limited,
        "GET",
        "/internal/v1/revocations",
        &[("authorization", &service)],
    )
    .await;
    assert_eq!(r.status, 200);
    let r = http(addr, other, "GET", "/admin/v1/tenants", &wrong).await;
    assert_eq!(r.status, 401, "another address is not limited");

    // Counted: in the audit aggregate under route templates, and in the metrics.
    let events = app.audit().await;
    let row = |action: &str, target: &str| -> Value {
        events
            .iter()
            .find(|e| e["action"] == action && e["target"] == target && e["peer"] == limited)
            .unwrap_or_else(|| panic!("no {action} row for {target}: {events:?}"))
            .clone()
    };
    assert_eq!(
        row("admin.auth", "/admin/v1/keys/{key_id}/revoke")["detail"]["reasons"],
        json!({"rate_limited": 1})
    );
    assert_eq!(
        row("admin.auth", "/admin/*")["detail"]["count"],
        1,
        "an unknown admin path"
    );
    assert_eq!(
        row("admin.auth", "/admin/v1/tenants")["detail"]["reasons"],
        json!({"wrong": 3, "rate_limited": 2})
    );
    assert_eq!(
        row("service.auth", "/internal/v1/api-keys/lookup")["detail"]["count"],
        1
    );
    assert_eq!(
        row("api_key.auth", "/v1/sessions")["detail"]["reasons"],
        json!({"rate_limited": 1})
    );
    let everything = serde_json::to_string(&events).unwrap();
    assert!(!everything.contains(&"a".repeat(100)), "no path was written");
    let text = String::from_utf8(app.call(Method::GET, "/metrics", None, None).await.raw).unwrap();
    for series in [
        "auth_token_validations_total{kind=\"admin\",result=\"rate_limited\"} 5\n",
        "auth_token_validations_total{kind=\"service\",result=\"rate_limited\"} 2\n",
        "auth_api_key_validations_total{result=\"rate_limited\"} 1\n",
    ] {
        assert!(text.contains(series), "{series} in {text}");
    }
    // The guard has the refusals per client, for the aggregated log line.
    let refused = app.svc.guard.take_refused();
    assert_eq!(refused.clients, vec![(limited.to_owned(), 8)]);
}

/// The limit recovers at its rate: a limited client that waits may fail (401) again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_client_recovers_at_the_refill_rate() {
    let app = TestApp::strict(Backend::Sqlite);
    let addr = served(&app).await;
    let wrong = [("authorization", "Bearer wrong")];
    for _ in 0..3 {
        http(addr, "127.0.0.2", "GET", "/admin/v1/audit", &wrong).await;
    }
    assert_eq!(
        http(addr, "127.0.0.2", "GET", "/admin/v1/audit", &wrong).await.status,
        429
    );
    app.clock.advance(2);
    assert_eq!(
        http(addr, "127.0.0.2", "GET", "/admin/v1/audit", &wrong).await.status,
        401
    );
    assert_eq!(
        http(addr, "127.0.0.2", "GET", "/admin/v1/audit", &wrong).await.status,
        429
    );
}

/// `app`'s service behind the real HTTP server for `api` on 127.0.0.1, with a short
/// header timeout (how long a limited client's connection is held on the public listener).
async fn served_as(app: &TestApp, api: Api, header_timeout: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut state = AppState::new(app.svc.clone(), Secret::new(ADMIN_TOKEN), Secret::new(SERVICE_TOKEN));
    state.http = std::sync::Arc::new(HttpConfig {
        header_timeout,
        ..HttpConfig::default()
    });
    tokio::spawn(serve_api(listener, state, api, std::future::pending()));
    addr
}

/// A request from `source` over a new connection, and every byte the service sent
/// back before the connection ended (a reset counts as its end).
async fn raw_exchange(addr: SocketAddr, source: &str, request: &str) -> (Vec<u8>, bool) {
    let mut s = connect_from(source, addr).await;
    s.write_all(request.as_bytes()).await.unwrap();
    // Nothing comes while the connection is held: give it time to come if it would.
    let mut first = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), s.read(&mut first)).await;
    let mut raw = Vec::new();
    let held = early.is_err();
    if let Ok(Ok(n)) = early {
        raw.extend_from_slice(&first[..n]);
    }
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut rest))
        .await
        .expect("the connection ends");
    raw.extend_from_slice(&rest);
    (raw, held)
}

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).map(|v| v.trim().parse().unwrap()))
        .unwrap_or(0)
}

/// On the public listener of a split deployment, a limited client is not served: its
/// new connections are held unread until the header timeout, then reset, and a 429 on
/// a connection it opened earlier closes that connection. The edges' listener, on the
/// same service, still serves the same address's valid service token, and other
/// addresses are served on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_client_is_not_served_on_the_public_listener() {
    let app = TestApp::strict(Backend::Sqlite);
    let public = served_as(&app, Api::Public, Duration::from_secs(2)).await;
    let edge = served_as(&app, Api::Edge, Duration::from_secs(2)).await;
    let (limited, other) = ("127.0.0.2", "127.0.0.3");
    let wrong = [("authorization", "Bearer wrong")];
    // A keep-alive connection opened while the client is still within its budget.
    let mut early = connect_from(limited, public).await;
    for _ in 0..3 {
        assert_eq!(
            http(public, limited, "GET", "/admin/v1/tenants", &wrong).await.status,
            401
        );
    }
    early
        .write_all(b"GET /admin/v1/tenants HTTP/1.1\r\nhost: x\r\nauthorization: Bearer wrong\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), early.read_to_end(&mut answer))
        .await
        .expect("the connection is closed after its 429")
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");

    // New connections from the limited address: nothing is read or answered, a valid
    // admin token and an open route included, until the connection is reset.
    let admin = format!("Bearer {ADMIN_TOKEN}");
    for request in [
        "GET /admin/v1/tenants HTTP/1.1\r\nhost: x\r\nauthorization: Bearer wrong\r\n\r\n".to_owned(),
        format!("GET /admin/v1/tenants HTTP/1.1\r\nhost: x\r\nauthorization: {admin}\r\n\r\n"),
        "GET /health HTTP/1.1\r\nhost: x\r\n\r\n".to_owned(),
    ] {
        let (raw, held) = raw_exchange(public, limited, &request).await;
        assert!(
            held && raw.is_empty(),
            "{request:?} got {:?}",
            String::from_utf8_lossy(&raw)
        );
    }
    // Another address is served on the public listener; the limited one on the edges'.
    let r = http(public, other, "GET", "/admin/v1/tenants", &[("authorization", &admin)]).await;
    assert_eq!(r.status, 200);
    let service = format!("Bearer {SERVICE_TOKEN}");
    let r = http(
        edge,
        limited,
        "GET",
        "/internal/v1/revocations",
        &[("authorization", &service)],
    )
    .await;
    assert_eq!(r.status, 200, "the edges' listener reads and serves a valid token");
    let mut kept = connect_from(limited, edge).await;
    kept.write_all(b"GET /internal/v1/revocations HTTP/1.1\r\nhost: x\r\nauthorization: Bearer wrong\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(20), kept.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "answered");
        head.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 429"), "{head}");
    assert!(
        !head.contains("connection: close"),
        "the edges' listener keeps its connections: {head}"
    );

    // Counted: the held connections in the metrics and in the client's refusals (logged),
    // not in the audit (nothing of them was read).
    let text = String::from_utf8(app.call(Method::GET, "/metrics", None, None).await.raw).unwrap();
    assert_eq!(
        metric(&text, "auth_http_connections_refused_total{reason=\"limited\"}"),
        3,
        "{text}"
    );
    let refused = app.svc.guard.take_refused();
    assert_eq!(refused.clients, vec![(limited.to_owned(), 5)], "3 held, 2 answered 429");
}

/// A head over the size limit (`431`, refused by the HTTP layer before any routing)
/// counts against its client's budget: a client sending only those is limited like
/// one failing authentication, on every listener; others are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_count_against_their_client() {
    let app = TestApp::strict(Backend::Sqlite);
    let addr = served(&app).await;
    let huge = format!("/admin/v1/keys/{}/revoke", "a".repeat(60_000));
    let request = format!("GET {huge} HTTP/1.1\r\nhost: x\r\n\r\n");
    for _ in 0..3 {
        let (raw, _) = raw_exchange(addr, "127.0.0.4", &request).await;
        let text = String::from_utf8_lossy(&raw);
        assert!(raw.is_empty() || text.starts_with("HTTP/1.1 431"), "{text}");
    }
    let wrong = [("authorization", "Bearer wrong")];
    let r = http(addr, "127.0.0.4", "GET", "/admin/v1/tenants", &wrong).await;
    assert_eq!(r.status, 429, "limited by its oversized heads");
    let r = http(addr, "127.0.0.5", "GET", "/admin/v1/tenants", &wrong).await;
    assert_eq!(r.status, 401, "another address is not");
    let text = String::from_utf8(app.call(Method::GET, "/metrics", None, None).await.raw).unwrap();
    assert_eq!(
        metric(&text, "auth_http_connections_refused_total{reason=\"too_large\"}"),
        3
    );
    let events = app.audit().await;
    assert!(
        !events
            .iter()
            .any(|e| e["peer"] == "127.0.0.4" && e["action"] != "admin.auth"),
        "the oversized heads are not audited: {events:?}"
    );
}
