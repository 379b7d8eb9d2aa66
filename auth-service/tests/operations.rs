//! What operators watch: `/metrics` (Prometheus text), `/ready` (the database
//! answers), and `503 temporarily_unavailable` rather than a hang or a 500 when the
//! database cannot be reached.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use edge_auth_service::db::{Conn, DbConfig, Location};
use edge_auth_service::http::{router, AppState, Secret};
use edge_auth_service::service::{Options, Service};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no series {series}"))
        .parse()
        .unwrap()
}

async fn metrics_count_what_the_service_does(b: Backend) {
    let (app, _, raw) = app_with_key_on(b).await;
    app.lookup_raw(&raw).await;
    app.lookup_raw(&format!("sk_{}", "1".repeat(64))).await;
    let feed = app.feed(None).await;
    app.feed(feed["cursor"].as_str()).await;
    let s = app.open_session(&raw, "u").await;
    app.sdk("/v1/sessions", &raw, Some(json!({"subject": "u", "scopes": ["nope"]})))
        .await;
    app.sdk(
        "/v1/sessions",
        &format!("sk_{}", "2".repeat(64)),
        Some(json!({"subject": "u"})),
    )
    .await;
    let rt = s["refresh_token"].as_str().unwrap();
    app.refresh(&raw, &rt).await;
    app.call(
        Method::GET,
        "/admin/v1/tenants",
        Some(("authorization", "Bearer wrong")),
        None,
    )
    .await;

    let r = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(r.raw).unwrap();
    let m = |series: &str| metric(&text, series);
    assert_eq!(m("auth_api_key_lookups_total{status=\"valid\"}"), 1.0);
    assert_eq!(m("auth_api_key_lookups_total{status=\"unknown\"}"), 1.0);
    assert_eq!(m("auth_api_key_lookup_duration_seconds_count"), 2.0);
    assert_eq!(m("auth_revocation_feed_requests_total{answer=\"snapshot\"}"), 1.0);
    assert_eq!(m("auth_revocation_feed_requests_total{answer=\"incremental\"}"), 1.0);
    assert_eq!(m("auth_revocation_feed_duration_seconds_count"), 2.0);
    assert_eq!(m("auth_session_creations_total{result=\"created\"}"), 1.0);
    assert_eq!(m("auth_session_creations_total{result=\"refused\"}"), 1.0);
    assert_eq!(m("auth_api_key_validations_total{result=\"valid\"}"), 3.0);
    assert_eq!(m("auth_api_key_validations_total{result=\"invalid\"}"), 1.0);
    assert_eq!(
        m("auth_token_validations_total{kind=\"refresh\",result=\"valid\"}"),
        1.0
    );
    assert_eq!(
        m("auth_token_validations_total{kind=\"admin\",result=\"invalid\"}"),
        1.0
    );
    assert!(m("auth_token_validations_total{kind=\"admin\",result=\"valid\"}") >= 2.0);
    assert!(m("auth_token_validation_duration_seconds_count{kind=\"service\"}") >= 4.0);
    assert!(m("auth_http_requests_total{class=\"2xx\"}") >= 6.0);
    assert!(m("auth_http_requests_total{class=\"4xx\"}") >= 3.0);
    assert!(m("auth_audit_failures_pending") >= 2.0, "counted, not yet written");
    app.audit().await;
    let text = String::from_utf8(app.call(Method::GET, "/metrics", None, None).await.raw).unwrap();
    assert_eq!(metric(&text, "auth_audit_failures_pending"), 0.0);
    assert!(metric(&text, "auth_audit_failure_rows_total") >= 2.0);
}

async fn ready_when_the_database_answers(b: Backend) {
    let app = TestApp::on(b);
    let r = app.call(Method::GET, "/ready", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"status": "ready"}));
    assert_eq!(r.headers["edge-auth-api-version"], "1");
}

/// PostgreSQL goes away (its role may no longer log in, its connections are ended):
/// `/ready` and lookups answer 503 `temporarily_unavailable` at once, and the service
/// recovers by itself when the database is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_is_503_and_recovers() {
    let Some(url) = pg_url() else { return };
    let admin = TestApp::on(Backend::Postgres);
    let role = fresh_schema().replace("t_", "r_");
    let run = |sql: String| sync(|| admin.svc.db().write(|c: &mut dyn Conn| c.batch(&sql))).unwrap();
    run(format!("CREATE ROLE {role} LOGIN SUPERUSER"));
    let mut config = DbConfig::new(Location::Postgres {
        url: format!("{url}&user={role}"),
        schema: Some(fresh_schema()),
    });
    config.busy_timeout = Duration::from_secs(1);
    let clock = Arc::new(edge_auth_service::ManualClock::new(T0));
    let svc = Arc::new(sync(|| Service::open_with(&config, Options::default(), clock)).unwrap());
    let app = router(AppState::new(
        svc.clone(),
        Secret::new(ADMIN_TOKEN),
        Secret::new(SERVICE_TOKEN),
    ));
    let ready = || async { send_to(&app, request(Method::GET, "/ready", None, None, None)).await };
    let bearer = format!("Bearer {SERVICE_TOKEN}");
    let lookup = || async {
        let body = json!({"key_hash": "a".repeat(64)});
        send_to(
            &app,
            request(
                Method::POST,
                "/internal/v1/api-keys/lookup",
                Some(("authorization", &bearer)),
                Some(body),
                None,
            ),
        )
        .await
    };
    assert_eq!(ready().await.status, StatusCode::OK);
    assert_eq!(lookup().await.status, StatusCode::OK);

    run(format!(
        "ALTER ROLE {role} NOLOGIN; SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
    ));
    // A connection ended under it fails the request it was serving; then no new one can be made.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(lookup().await.status);
    }
    assert!(
        statuses.iter().all(|s| *s == StatusCode::SERVICE_UNAVAILABLE),
        "{statuses:?}"
    );
    let r = lookup().await;
    assert_eq!(r.body["error"], "temporarily_unavailable");
    let r = ready().await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body["error"], "temporarily_unavailable");

    run(format!("ALTER ROLE {role} LOGIN"));
    assert_eq!(ready().await.status, StatusCode::OK, "recovered without a restart");
    assert_eq!(lookup().await.status, StatusCode::OK);
    sync(|| drop(svc));
}

backends!(metrics_count_what_the_service_does, ready_when_the_database_answers);
