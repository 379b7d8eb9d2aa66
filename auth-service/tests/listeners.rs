//! With an edge listener (`--edge-listen`), the API is split: the edge listener serves
//! the edges' API alone (`/internal/v1/*`, the JWKS, `/health`, `/ready`), the public
//! listener everything else. One listener (the default) serves everything.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::{Method, StatusCode};
use axum::Router;
use common::*;
use edge_auth_service::http::{router_for, Api, AppState, Secret};
use serde_json::json;

/// (method, path, credential header, body): one request of every kind of route.
fn requests(key_hash: &str) -> Vec<(Method, &'static str, Option<String>, Option<serde_json::Value>)> {
    let admin = Some(format!("Bearer {ADMIN_TOKEN}"));
    let service = Some(format!("Bearer {SERVICE_TOKEN}"));
    vec![
        (
            Method::POST,
            "/internal/v1/api-keys/lookup",
            service.clone(),
            Some(json!({ "key_hash": key_hash })),
        ),
        (Method::GET, "/internal/v1/revocations", service.clone(), None),
        (Method::GET, "/internal/v1/stats", service, None),
        (Method::GET, "/.well-known/jwks.json", None, None),
        (Method::GET, "/health", None, None),
        (Method::GET, "/ready", None, None),
        (Method::GET, "/metrics", None, None),
        (Method::GET, "/admin/v1/tenants", admin.clone(), None),
        (Method::GET, "/admin/v1/audit", admin, None),
        (Method::POST, "/v1/sessions", None, Some(json!({"subject": "u"}))),
    ]
}

/// The statuses `router` answers to [`requests`] (an API key for `/v1/sessions`).
async fn statuses(router: &Router, key_hash: &str, api_key: &str) -> Vec<(&'static str, u16)> {
    let mut out = Vec::new();
    for (method, path, bearer, body) in requests(key_hash) {
        let auth = match (&bearer, path) {
            (Some(b), _) => Some(("authorization", b.as_str())),
            (None, "/v1/sessions") => Some(("x-api-key", api_key)),
            (None, _) => None,
        };
        let r = send_to(router, request(method, path, auth, body, None)).await;
        out.push((path, r.status.as_u16()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_listener_serves_the_edge_api_alone_and_the_public_one_the_rest() {
    let (app, _, raw) = app_with_key().await;
    let hash = edge_auth_service::keys::hash_secret(&raw);
    let state = AppState::new(app.svc.clone(), Secret::new(ADMIN_TOKEN), Secret::new(SERVICE_TOKEN));
    let on = |api| router_for(state.clone(), api);
    let edge = [
        ("/internal/v1/api-keys/lookup", 200),
        ("/internal/v1/revocations", 200),
        ("/internal/v1/stats", 200),
        ("/.well-known/jwks.json", 200),
        ("/health", 200),
        ("/ready", 200),
        ("/metrics", 404),
        ("/admin/v1/tenants", 404),
        ("/admin/v1/audit", 404),
        ("/v1/sessions", 404),
    ];
    assert_eq!(statuses(&on(Api::Edge), &hash, &raw).await, edge);
    let public: Vec<(&str, u16)> = edge
        .iter()
        .map(|&(path, _)| {
            let status = match path {
                p if p.starts_with("/internal/") => 404,
                "/v1/sessions" => 201,
                _ => 200,
            };
            (path, status)
        })
        .collect();
    assert_eq!(statuses(&on(Api::Public), &hash, &raw).await, public);
    let all: Vec<(&str, u16)> = public
        .iter()
        .map(|&(path, s)| (path, if path.starts_with("/internal/") { 200 } else { s }))
        .collect();
    assert_eq!(
        statuses(&on(Api::All), &hash, &raw).await,
        all,
        "one listener serves everything"
    );
    // A 404 on the edge listener is the API's own JSON error, with its headers.
    let r = send_to(
        &on(Api::Edge),
        request(Method::GET, "/admin/v1/tenants", None, None, None),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["error"], "not_found");
    assert_eq!(r.headers["edge-auth-api-version"], "1");
}
