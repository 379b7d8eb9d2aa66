//! Authentication of the admin and internal APIs, input validation (4xx and no
//! change), the audit trail, and the response conventions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::*;
use edge_auth_service::http::Secret;
use serde_json::{json, Value};

async fn admin_needs_the_admin_token(b: Backend) {
    let app = TestApp::on(b);
    let wrong_len = format!("Bearer {}", &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1]);
    let wrong_char = format!("Bearer {}x", &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1]);
    let service = format!("Bearer {SERVICE_TOKEN}");
    let basic = format!("Basic {ADMIN_TOKEN}");
    let cases: Vec<Option<(&str, &str)>> = vec![
        None,
        Some(("authorization", "Bearer")),
        Some(("authorization", &wrong_len)),
        Some(("authorization", &wrong_char)),
        Some(("authorization", &service)),
        Some(("authorization", &basic)),
        Some(("x-api-key", ADMIN_TOKEN)),
    ];
    for auth in cases {
        for (method, path) in [
            (Method::GET, "/admin/v1/tenants"),
            (Method::POST, "/admin/v1/revoke-all"),
            (Method::GET, "/admin/v1/audit"),
        ] {
            let r = app.call(method, path, auth, None).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path} {auth:?}");
            assert_eq!(r.body["error"], "invalid_admin_token");
            assert_eq!(r.headers["edge-auth-api-version"], "1");
        }
    }
    // Nothing happened, and failures were audited without the presented token.
    assert_eq!(app.feed(None).await["revoked_before"], json!(null));
    // Audited in aggregate (contract 1.2): one row per route template and client, with the count.
    let events = app.audit().await;
    let failures: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["action"] == "admin.auth" && e["outcome"] == "failure")
        .collect();
    assert!(failures.len() <= 3, "one row per route: {failures:?}");
    assert!(
        failures
            .iter()
            .map(|e| e["detail"]["count"].as_u64().unwrap())
            .sum::<u64>()
            >= 21
    );
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains(&ADMIN_TOKEN[..20]));
    assert!(!text.contains(&SERVICE_TOKEN[..20]));
    // Case-insensitive scheme.
    let r = app
        .call(
            Method::GET,
            "/admin/v1/tenants",
            Some(("authorization", &format!("bearer {ADMIN_TOKEN}"))),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[test]
fn secrets_compare_whole_values() {
    let s = Secret::new(ADMIN_TOKEN);
    assert!(s.matches(ADMIN_TOKEN));
    assert!(!s.matches(""));
    assert!(!s.matches(&ADMIN_TOKEN[..10]));
    assert!(!s.matches(&format!("{ADMIN_TOKEN}x")));
    assert!(!format!("{s:?}").contains(ADMIN_TOKEN));
}

/// A rollover: the previous admin and service tokens are accepted next to the new ones
/// (and counted, so the operator sees when the old ones are no longer used); nothing else is.
async fn previous_tokens_are_accepted_during_a_rollover(b: Backend) {
    let app = TestApp::on(b);
    const NEW_ADMIN: &str = "new-admin-token-0123456789abcdef0123456789";
    const NEW_SERVICE: &str = "new-service-token-0123456789abcdef0123456";
    let router = app.router_with(|st| {
        st.admin_token = Secret::rolling(NEW_ADMIN, Some(ADMIN_TOKEN));
        st.service_token = Secret::rolling(NEW_SERVICE, Some(SERVICE_TOKEN));
    });
    let get = |path: &str, token: &str| {
        let req = request(
            Method::GET,
            path,
            Some(("authorization", &format!("Bearer {token}"))),
            None,
            None,
        );
        let router = router.clone();
        async move { send_to(&router, req).await.status }
    };
    for (path, new, old, other) in [
        ("/admin/v1/tenants", NEW_ADMIN, ADMIN_TOKEN, NEW_SERVICE),
        ("/internal/v1/revocations", NEW_SERVICE, SERVICE_TOKEN, NEW_ADMIN),
    ] {
        assert_eq!(get(path, new).await, StatusCode::OK, "{path}");
        assert_eq!(get(path, old).await, StatusCode::OK, "{path}: the previous one");
        assert_eq!(
            get(path, other).await,
            StatusCode::UNAUTHORIZED,
            "{path}: the other kind's"
        );
        assert_eq!(get(path, &format!("{new}x")).await, StatusCode::UNAUTHORIZED);
        assert_eq!(get(path, "").await, StatusCode::UNAUTHORIZED);
    }
    let m = &app.svc.metrics;
    assert_eq!(m.previous_token_uses.get(&["admin"]), 1);
    assert_eq!(m.previous_token_uses.get(&["service"]), 1);
    // without a previous token, the old one is refused
    let router = app.router_with(|st| st.admin_token = Secret::new(NEW_ADMIN));
    let req = request(
        Method::GET,
        "/admin/v1/tenants",
        Some(("authorization", &format!("Bearer {ADMIN_TOKEN}"))),
        None,
        None,
    );
    assert_eq!(send_to(&router, req).await.status, StatusCode::UNAUTHORIZED);
}

async fn internal_needs_the_service_token(b: Backend) {
    let (app, _, raw) = app_with_key_on(b).await;
    let hash = edge_auth_service::keys::hash_secret(&raw);
    let admin = format!("Bearer {ADMIN_TOKEN}");
    for auth in [
        None,
        Some(("authorization", admin.as_str())),
        Some(("authorization", "Bearer nope")),
    ] {
        let r = app
            .call(
                Method::POST,
                "/internal/v1/api-keys/lookup",
                auth,
                Some(json!({"key_hash": hash})),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.body,
            json!({"error": "invalid_service_token", "error_description": r.body["error_description"]})
        );
        for path in ["/internal/v1/revocations", "/internal/v1/stats"] {
            let r = app.call(Method::GET, path, auth, None).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED);
            assert_eq!(r.body["error"], "invalid_service_token");
        }
    }
    let stats = app.internal(Method::GET, "/internal/v1/stats", None).await.body;
    assert_eq!(
        stats,
        json!({"api_key_lookups": 0, "revocation_polls": 0}),
        "refused calls are not counted"
    );
}

async fn public_endpoints(b: Backend) {
    let app = TestApp::on(b);
    let r = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"status": "ok"}));
    assert_eq!(r.headers["edge-auth-api-version"], "1");
    let r = app.call(Method::GET, "/nope", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["error"], "not_found");
    assert_eq!(r.headers["edge-auth-api-version"], "1");
    let r = app.call(Method::DELETE, "/health", None, None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.body["error"], "method_not_allowed");
}

async fn raw_admin(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> (StatusCode, Value) {
    let mut b = Request::post(path).header("authorization", format!("Bearer {ADMIN_TOKEN}"));
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    let r = app.send(b.body(body.into()).unwrap()).await;
    (r.status, r.body)
}

async fn bad_input_is_refused_and_changes_nothing(b: Backend) {
    let (app, key_id, _) = app_with_key_on(b).await;
    let before = app.snapshot();
    let json_ct = Some("application/json");
    let cases: Vec<(&str, Option<&str>, Vec<u8>, u16)> = vec![
        ("/admin/v1/tenants", json_ct, b"{not json".to_vec(), 400),
        ("/admin/v1/tenants", json_ct, br#"{"name":"x","bogus":1}"#.to_vec(), 400),
        ("/admin/v1/tenants", json_ct, br#"{"name":5}"#.to_vec(), 400),
        ("/admin/v1/tenants", json_ct, br#"["ok",[],[]]"#.to_vec(), 400),
        ("/admin/v1/tenants", json_ct, br#""ok""#.to_vec(), 400),
        ("/admin/v1/tenants", json_ct, br#"{"name":"Bad Name"}"#.to_vec(), 400),
        (
            "/admin/v1/tenants",
            json_ct,
            br#"{"name":"ok","allowed_origins":["*"]}"#.to_vec(),
            400,
        ),
        (
            "/admin/v1/tenants",
            json_ct,
            br#"{"name":"ok","allowed_origins":["https://a.example/path"]}"#.to_vec(),
            400,
        ),
        (
            "/admin/v1/tenants",
            json_ct,
            br#"{"name":"ok","ip_allowlist":["10.0.0.1/8"]}"#.to_vec(),
            400,
        ),
        (
            "/admin/v1/tenants",
            json_ct,
            br#"{"name":"ok","ip_allowlist":["nope"]}"#.to_vec(),
            400,
        ),
        ("/admin/v1/tenants", json_ct, br#"{"name":"acme"}"#.to_vec(), 409),
        ("/admin/v1/tenants", json_ct, b"".to_vec(), 400),
        (
            "/admin/v1/tenants",
            Some("text/plain"),
            br#"{"name":"ok"}"#.to_vec(),
            415,
        ),
        ("/admin/v1/tenants", None, br#"{"name":"ok"}"#.to_vec(), 415),
        (
            "/admin/v1/tenants/acme/keys",
            json_ct,
            br#"{"subject":"s","scopes":["a b"]}"#.to_vec(),
            400,
        ),
        (
            "/admin/v1/tenants/acme/keys",
            json_ct,
            br#"{"subject":"s","scopes":"a"}"#.to_vec(),
            400,
        ),
        (
            "/admin/v1/tenants/acme/keys",
            json_ct,
            br#"{"subject":"","scopes":[]}"#.to_vec(),
            400,
        ),
        (
            "/admin/v1/tenants/acme/keys",
            json_ct,
            br#"{"subject":"s","expires_in_s":0}"#.to_vec(),
            400,
        ),
        (
            "/admin/v1/tenants/acme/keys",
            json_ct,
            br#"{"subject":"s","expires_in_s":-5}"#.to_vec(),
            400,
        ),
        (
            "/admin/v1/tenants/acme/keys",
            json_ct,
            br#"{"subject":"s","ip_allowlist":["300.0.0.0/8"]}"#.to_vec(),
            400,
        ),
        (
            "/admin/v1/tenants/acme/keys",
            json_ct,
            br#"{"subject":"s","key_hash":"00"}"#.to_vec(),
            400,
        ),
        (
            "/admin/v1/tenants/ghost/keys",
            json_ct,
            br#"{"subject":"s"}"#.to_vec(),
            404,
        ),
        ("/admin/v1/revoke-all", json_ct, br#"{"now":1}"#.to_vec(), 400),
        ("/admin/v1/signing-keys/rotate", json_ct, b"[]".to_vec(), 400),
    ];
    for (path, ct, body, status) in cases {
        let shown = String::from_utf8_lossy(&body).into_owned();
        let (got, b) = raw_admin(&app, path, ct, body).await;
        assert_eq!(got.as_u16(), status, "{path} {shown}: {b}");
        assert!(b["error"].is_string() && b["error_description"].is_string(), "{b}");
    }
    let rotate = format!("/admin/v1/keys/{key_id}/rotate");
    for body in [
        r#"{"grace_s":-1}"#,
        r#"{"grace_s":99999999999}"#,
        r#"{"grace_s":"1"}"#,
        r#"{"grace":1}"#,
    ] {
        let (got, b) = raw_admin(&app, &rotate, json_ct, body.to_owned()).await;
        assert_eq!(got, StatusCode::BAD_REQUEST, "{body}: {b}");
    }
    assert_eq!(app.snapshot(), before, "refused requests changed nothing");
    let list = app.admin(Method::GET, "/admin/v1/tenants/acme/keys", None).await.body;
    assert_eq!(list["keys"][0]["status"], "valid");
    assert_eq!(list["keys"][0]["rotation_deadline"], json!(null));
}

async fn oversized_bodies_are_413(b: Backend) {
    let app = TestApp::on(b);
    let big = format!(r#"{{"name":"acme","allowed_origins":["{}"]}}"#, "a".repeat(70 * 1024));
    let (status, body) = raw_admin(&app, "/admin/v1/tenants", Some("application/json"), big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"], "request_too_large");
    let r = app.admin(Method::GET, "/admin/v1/tenants", None).await;
    assert_eq!(r.body, json!({"tenants": []}));
    // Bad query values.
    let r = app.admin(Method::GET, "/admin/v1/audit?limit=abc", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app.admin(Method::GET, "/admin/v1/audit?limit=0", None).await;
    assert_eq!(r.status, StatusCode::OK, "limits are clamped into 1..=1000");
    assert_eq!(r.body["events"].as_array().unwrap().len(), 1);
}

async fn tenants_are_created_normalised_and_listed(b: Backend) {
    let app = TestApp::on(b);
    let r = app
        .admin(
            Method::POST,
            "/admin/v1/tenants",
            Some(json!({"name": "acme", "allowed_origins": ["HTTPS://App.Acme.Example:443", "https://*.acme.example"], "ip_allowlist": ["2001:db8::/32"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(
        r.body["allowed_origins"],
        json!(["https://app.acme.example", "https://*.acme.example"])
    );
    assert_eq!(r.body["created_at"], T0);
    let list = app.admin(Method::GET, "/admin/v1/tenants", None).await.body;
    assert_eq!(list["tenants"], json!([r.body]));
}

async fn audit_trail_records_actions_without_secrets(b: Backend) {
    let (app, key_id, raw) = app_with_key_on(b).await;
    let s = app.open_session(&raw, "user-1").await;
    let rt = s["refresh_token"].as_str().unwrap().to_owned();
    let at = s["access_token"].as_str().unwrap().to_owned();
    let s2 = app.refresh(&raw, &rt).await.body;
    app.refresh(&raw, &rt).await;
    app.sdk(
        "/v1/sessions",
        &format!("sk_{}", "f".repeat(64)),
        Some(json!({"subject": "x"})),
    )
    .await;
    let rotated = app
        .admin(Method::POST, &format!("/admin/v1/keys/{key_id}/rotate"), None)
        .await
        .body;
    app.admin(Method::POST, "/admin/v1/signing-keys/rotate", None).await;
    app.call(
        Method::GET,
        "/admin/v1/tenants",
        Some(("authorization", "Bearer wrong")),
        None,
    )
    .await;
    // The edge's forwarded address is recorded.
    let req = Request::post("/admin/v1/revoke-all")
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("x-forwarded-for", "198.51.100.7")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::OK);

    let events = app.audit().await;
    let has = |action: &str, outcome: &str| events.iter().any(|e| e["action"] == action && e["outcome"] == outcome);
    for (action, outcome) in [
        ("tenant.create", "success"),
        ("key.create", "success"),
        ("key.rotate", "success"),
        ("signing_key.rotate", "success"),
        ("revoke_all", "success"),
        ("api_key.auth", "success"),
        ("api_key.auth", "failure"),
        ("session.create", "success"),
        ("session.refresh", "success"),
        ("session.refresh_reuse", "failure"),
        ("admin.auth", "failure"),
    ] {
        assert!(has(action, outcome), "missing {action} {outcome}");
    }
    let revoke_all = events.iter().find(|e| e["action"] == "revoke_all").unwrap();
    assert_eq!(revoke_all["forwarded_for"], "198.51.100.7");
    assert_eq!(revoke_all["actor"], "admin");
    assert!(revoke_all["ts"].is_i64());
    let created = events.iter().find(|e| e["action"] == "session.create").unwrap();
    assert_eq!(created["actor"], format!("api_key:{key_id}"));
    // Events are newest first.
    assert!(events[0]["id"].as_i64() > events[1]["id"].as_i64());

    let text = serde_json::to_string(&events).unwrap();
    let secrets = [
        raw.clone(),
        raw[3..].to_owned(),
        rt.clone(),
        at.clone(),
        s2["refresh_token"].as_str().unwrap().to_owned(),
        rotated["api_key"].as_str().unwrap().to_owned(),
        edge_auth_service::keys::hash_secret(&raw),
        ADMIN_TOKEN.to_owned(),
    ];
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "secret in the audit trail");
    }
}

backends!(
    previous_tokens_are_accepted_during_a_rollover,
    tenants_are_updated,
    a_disabled_tenant_is_refused_everywhere,
    admin_needs_the_admin_token,
    internal_needs_the_service_token,
    public_endpoints,
    bad_input_is_refused_and_changes_nothing,
    oversized_bodies_are_413,
    tenants_are_created_normalised_and_listed,
    audit_trail_records_actions_without_secrets,
);

/// Tenants can be updated: the lists are validated as at creation and lookups answer
/// with the new ones at once.
async fn tenants_are_updated(b: Backend) {
    let (app, _, raw) = app_with_key_on(b).await;
    let patch = |path: &str, body: serde_json::Value| {
        let req = request(
            Method::PATCH,
            path,
            Some(("authorization", &format!("Bearer {ADMIN_TOKEN}"))),
            Some(body),
            None,
        );
        let router = app.router.clone();
        async move { send_to(&router, req).await }
    };
    let r = patch(
        "/admin/v1/tenants/acme",
        json!({"ip_allowlist": ["198.51.100.0/24", "203.0.113.0/24"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["ip_allowlist"], json!(["198.51.100.0/24", "203.0.113.0/24"]));
    assert_eq!(r.body["allowed_origins"], json!(["https://app.acme.example"]), "kept");
    let r = patch(
        "/admin/v1/tenants/acme",
        json!({"allowed_origins": ["https://NEW.acme.example"]}),
    )
    .await;
    assert_eq!(
        r.body["allowed_origins"],
        json!(["https://new.acme.example"]),
        "normalised"
    );
    let answer = app.lookup_raw(&raw).await;
    assert_eq!(answer["allowed_origins"], json!(["https://new.acme.example"]));
    assert_eq!(answer["ip_allowlist"], json!(["198.51.100.0/24", "203.0.113.0/24"]));
    for bad in [
        json!({}),
        json!({"ip_allowlist": ["203.0.113.1/24"]}),
        json!({"allowed_origins": ["*"]}),
        json!({"allowed_origins": null, "ip_allowlist": null}),
        json!({"name": "other"}),
        json!({"ip_allowlist": "10.0.0.0/8"}),
    ] {
        let r = patch("/admin/v1/tenants/acme", bad.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(
        patch("/admin/v1/tenants/nope", json!({"ip_allowlist": []}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let got = app.admin(Method::GET, "/admin/v1/tenants/acme", None).await;
    assert_eq!(got.body["allowed_origins"], json!(["https://new.acme.example"]));
    assert_eq!(got.body["disabled_at"], serde_json::Value::Null);
    let events = app.audit().await;
    let updates: Vec<_> = events.iter().filter(|e| e["action"] == "tenant.update").collect();
    assert_eq!(updates.iter().filter(|e| e["outcome"] == "success").count(), 2);
    assert!(updates.iter().any(|e| e["outcome"] == "failure"));
}

/// A disabled tenant: its keys answer `revoked` and are refused, its sessions cannot be
/// created or refreshed, and the feed cuts off its live access tokens (one entry, not
/// one per session). Another tenant is untouched. Enabling it again lets its keys work.
async fn a_disabled_tenant_is_refused_everywhere(b: Backend) {
    let (app, _, raw) = app_with_key_on(b).await;
    app.create_tenant("globex").await;
    let (_, other) = app.create_key("globex", "svc", &[], None).await;
    let s1 = app.open_session(&raw, "u1").await;
    let s2 = app.open_session(&other, "u1").await;
    let cursor = app.feed(None).await["cursor"].as_str().unwrap().to_owned();
    app.clock.advance(7);

    let r = app.admin(Method::POST, "/admin/v1/tenants/acme/disable", None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["disabled_at"], T0 + 7);
    assert_eq!(r.body["sessions_revoked"], 1);
    assert_eq!(app.lookup_raw(&raw).await["status"], "revoked");
    assert_eq!(app.lookup_raw(&other).await["status"], "valid");
    let r = app.sdk("/v1/sessions", &raw, Some(json!({"subject": "u2"}))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let refresh = |key: String, s: &serde_json::Value| {
        let body = json!({"refresh_token": s["refresh_token"]});
        let app = &app;
        async move { app.sdk("/v1/sessions/refresh", &key, Some(body)).await.status }
    };
    assert_eq!(refresh(raw.clone(), &s1).await, StatusCode::UNAUTHORIZED);
    assert_eq!(refresh(other.clone(), &s2).await, StatusCode::OK);
    let inc = app.feed(Some(&cursor)).await;
    assert_eq!(inc["tenants"], json!([{"tenant": "acme", "revoked_before": T0 + 8}]));
    assert_eq!(inc["sessions"], json!([]), "the cut-off covers the tenant's sessions");
    assert_eq!(app.feed(None).await["tenants"], inc["tenants"]);

    // again: nothing new
    let head = app.feed(None).await["cursor"].clone();
    let r = app.admin(Method::POST, "/admin/v1/tenants/acme/disable", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["disabled_at"], T0 + 7, "the first disabling holds");
    assert_eq!(app.feed(None).await["cursor"], head);
    assert_eq!(
        app.admin(Method::POST, "/admin/v1/tenants/nope/disable", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    // enabled again: the keys work, what the disabling ended stays ended
    app.clock.advance(1);
    let r = app.admin(Method::POST, "/admin/v1/tenants/acme/enable", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["disabled_at"], serde_json::Value::Null);
    assert_eq!(app.lookup_raw(&raw).await["status"], "valid");
    assert_eq!(refresh(raw.clone(), &s1).await, StatusCode::UNAUTHORIZED);
    let r = app.sdk("/v1/sessions", &raw, Some(json!({"subject": "u2"}))).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let actions: Vec<_> = app
        .audit()
        .await
        .iter()
        .map(|e| format!("{}:{}", e["action"].as_str().unwrap(), e["outcome"].as_str().unwrap()))
        .collect();
    for want in [
        "tenant.disable:success",
        "tenant.disable:failure",
        "tenant.enable:success",
    ] {
        assert!(actions.iter().any(|a| a == want), "{want}");
    }
}
