//! Finding 1 of issue 12 (and the rate limit): what an unauthenticated caller can
//! make the service write is bounded. Failed authentications are counted per client,
//! limited, and audited as one row per action, route template and client, whatever
//! their number or the length of the path; audit retention is enforced.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use edge_auth_service::guard::GuardConfig;
use edge_auth_service::service::{Options, Retention};
use serde_json::{json, Value};

async fn send_as(app: &TestApp, method: Method, path: &str, auth: Option<(&str, &str)>, peer: &str) -> Resp {
    app.send(request(method, path, auth, None, Some(peer))).await
}

fn failure_rows<'a>(events: &'a [Value], action: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["action"] == action && e["outcome"] == "failure")
        .collect()
}

fn counted(rows: &[&Value]) -> u64 {
    rows.iter().map(|e| e["detail"]["count"].as_u64().unwrap()).sum()
}

/// A 60,000-character path with a wrong admin token writes one short row: the route
/// template, never the path. (On a3a08b9 the whole path went into the row.)
async fn a_long_path_with_a_bad_token_writes_a_bounded_row(b: Backend) {
    let app = TestApp::on(b);
    let long = format!("/admin/v1/keys/{}/revoke", "a".repeat(60_000));
    for _ in 0..3 {
        let r = send_as(
            &app,
            Method::POST,
            &long,
            Some(("authorization", "Bearer nope")),
            "198.51.100.1",
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.body["error"], "invalid_admin_token");
    }
    let events = app.audit().await;
    let rows = failure_rows(&events, "admin.auth");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["target"], "/admin/v1/keys/{key_id}/revoke");
    assert_eq!(rows[0]["peer"], "198.51.100.1");
    assert_eq!(rows[0]["detail"]["count"], 3);
    assert_eq!(rows[0]["detail"]["reasons"], json!({"wrong": 3}));
    let size = serde_json::to_string(&rows[0]).unwrap().len();
    assert!(size < 512, "the row is small: {size} bytes");
    let everything = serde_json::to_string(&events).unwrap();
    assert!(
        !everything.contains(&"a".repeat(100)),
        "no part of the path was written"
    );
}

/// N failed authentications of every kind write O(1) rows (per kind, route and client),
/// with the exact count. (On a3a08b9: one row each.)
async fn many_bad_credentials_write_a_constant_number_of_rows(b: Backend) {
    let app = TestApp::on(b);
    let before = app.count("audit_events");
    let peers = ["192.0.2.1", "192.0.2.2"];
    let bad_key = format!("sk_{}", "0".repeat(64));
    for i in 0..300 {
        let peer = peers[i % 2];
        let wrong = format!("Bearer wrong-{i}");
        let auth = Some(("authorization", wrong.as_str()));
        send_as(&app, Method::GET, "/admin/v1/tenants", auth, peer).await;
        send_as(&app, Method::GET, "/internal/v1/revocations", auth, peer).await;
        send_as(&app, Method::GET, "/admin/v1/audit", None, peer).await;
        let r = app
            .send(request(
                Method::POST,
                "/v1/sessions",
                Some(("x-api-key", &bad_key)),
                Some(json!({"subject": "x"})),
                Some(peer),
            ))
            .await;
        assert!(matches!(r.status.as_u16(), 401 | 429), "{}", r.status);
    }
    let events = app.audit().await;
    let admin = failure_rows(&events, "admin.auth");
    let service = failure_rows(&events, "service.auth");
    let api_key = failure_rows(&events, "api_key.auth");
    assert_eq!(admin.len(), 4, "2 routes x 2 clients: {admin:?}");
    assert_eq!(service.len(), 2);
    assert_eq!(api_key.len(), 2);
    assert_eq!(counted(&admin), 600);
    assert_eq!(counted(&service), 300);
    assert_eq!(counted(&api_key), 300);
    let written = app.count("audit_events") - before;
    assert!(written <= 8, "{written} rows for 1,200 failures");
    // 100 failures per client, then 429: the later attempts are counted as limited.
    let reasons = &api_key[0]["detail"]["reasons"];
    assert!(reasons["rate_limited"].as_u64().unwrap() > 0, "{reasons}");
}

fn strict(b: Backend) -> TestApp {
    TestApp::with_options(
        b,
        Options {
            guard: GuardConfig {
                burst: 3,
                per_s: 1.0,
                ..GuardConfig::default()
            },
            ..Options::default()
        },
    )
}

/// After its burst of failures a client gets 429 with Retry-After, other clients do
/// not; a valid admin or service token still passes; an API key from a limited client
/// is refused before it is looked up; the client recovers at the refill rate.
async fn failed_authentication_is_rate_limited_per_client(b: Backend) {
    let app = strict(b);
    app.create_tenant("acme").await;
    let (_, raw) = app.create_key("acme", "svc", &[], None).await;
    let limited = "203.0.113.5";
    let bearer = |path: &'static str, token: String, peer: &'static str| {
        let app = &app;
        async move {
            let auth = format!("Bearer {token}");
            send_as(app, Method::GET, path, Some(("authorization", &auth)), peer).await
        }
    };
    let wrong = || bearer("/admin/v1/tenants", "x".to_owned(), limited);
    for _ in 0..3 {
        let r = wrong().await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.headers["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    }
    let r = wrong().await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.body["error"], "too_many_requests");
    assert_eq!(r.headers["retry-after"], "1");
    let other = bearer("/admin/v1/tenants", "x".to_owned(), "203.0.113.6").await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED, "another client is not limited");
    let ok = bearer("/admin/v1/tenants", ADMIN_TOKEN.to_owned(), limited).await;
    assert_eq!(ok.status, StatusCode::OK, "a valid admin token always passes");
    let ok = bearer("/internal/v1/revocations", SERVICE_TOKEN.to_owned(), limited).await;
    assert_eq!(ok.status, StatusCode::OK, "a valid service token always passes");
    let sdk = app
        .send(request(
            Method::POST,
            "/v1/sessions",
            Some(("x-api-key", &raw)),
            Some(json!({"subject": "u"})),
            Some(limited),
        ))
        .await;
    assert_eq!(
        sdk.status,
        StatusCode::TOO_MANY_REQUESTS,
        "API keys of a limited client are not looked up"
    );
    app.clock.advance(1);
    assert_eq!(
        wrong().await.status,
        StatusCode::UNAUTHORIZED,
        "one failure regained after a second"
    );
    assert_eq!(wrong().await.status, StatusCode::TOO_MANY_REQUESTS);
    let metrics = app.call(Method::GET, "/metrics", None, None).await;
    let text = String::from_utf8(metrics.raw).unwrap();
    assert!(
        text.contains("auth_token_validations_total{kind=\"admin\",result=\"rate_limited\"} 2\n"),
        "{text}"
    );
    assert!(text.contains("auth_api_key_validations_total{result=\"rate_limited\"} 1\n"));
}

/// Refresh tokens presented by a valid key are counted and limited like credentials.
async fn bad_refresh_tokens_are_counted_and_limited(b: Backend) {
    let app = strict(b);
    app.create_tenant("acme").await;
    let (key_id, raw) = app.create_key("acme", "svc", &[], None).await;
    let peer = "203.0.113.20"; // inside the tenant's allowlist
    let mut statuses = Vec::new();
    for i in 0..5 {
        let rt = format!("rt_{:064x}", i);
        let r = app
            .send(request(
                Method::POST,
                "/v1/sessions/refresh",
                Some(("x-api-key", &raw)),
                Some(json!({"refresh_token": rt})),
                Some(peer),
            ))
            .await;
        statuses.push(r.status.as_u16());
    }
    assert_eq!(
        statuses,
        [401, 401, 401, 429, 429],
        "3 failures, then limited before any database work"
    );
    let events = app.audit().await;
    let rows = failure_rows(&events, "session.refresh");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["actor"], format!("api_key:{key_id}"));
    assert_eq!(rows[0]["target"], "/v1/sessions/refresh");
    assert_eq!(rows[0]["detail"]["count"], 3);
    let limited = failure_rows(&events, "api_key.auth");
    assert_eq!(counted(&limited), 2, "the limited attempts are counted");
    assert_eq!(limited[0]["detail"]["reasons"], json!({"rate_limited": 2}));
}

/// Retention deletes audit events past their age or beyond the row cap, oldest first.
async fn audit_retention_enforces_age_and_row_count(b: Backend) {
    let app = TestApp::with_options(
        b,
        Options {
            retention: Retention {
                max_age_s: 3600,
                max_rows: 10,
            },
            ..Options::default()
        },
    );
    for i in 0..8 {
        app.create_tenant(&format!("old-{i}")).await;
    }
    app.clock.advance(3601);
    for i in 0..5 {
        app.create_tenant(&format!("new-{i}")).await;
    }
    let total = app.count("audit_events");
    assert!(total >= 13, "{total}");
    let deleted = sync(|| app.svc.enforce_retention()).unwrap();
    let left = app.audit().await;
    assert_eq!(deleted as i64, total - left.len() as i64);
    assert_eq!(left.len(), 5, "only the events younger than the maximum age");
    assert!(left.iter().all(|e| e["target"].as_str().unwrap().starts_with("new-")));
    for i in 0..12 {
        app.create_tenant(&format!("more-{i}")).await;
    }
    sync(|| app.svc.enforce_retention()).unwrap();
    let left = app.audit().await;
    assert_eq!(left.len(), 10, "at most the row cap, the newest kept");
    assert_eq!(left[0]["target"], "more-11");
}

backends!(
    a_long_path_with_a_bad_token_writes_a_bounded_row,
    many_bad_credentials_write_a_constant_number_of_rows,
    failed_authentication_is_rate_limited_per_client,
    bad_refresh_tokens_are_counted_and_limited,
    audit_retention_enforces_age_and_row_count,
);
