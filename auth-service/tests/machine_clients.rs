//! Machine clients and the client-credentials grant (`POST /oauth/token`), on SQLite
//! and PostgreSQL: the admin API, the token and its claims, every way a request can
//! be wrong, secret rotation, disabling and deleting (with their feed entries), and
//! the limits on failed client authentication.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use base64::Engine;
use common::*;
use edge_auth_service::clients::ClientClaims;
use edge_auth_service::{store, tokens, Clock};
use jwt_simple::prelude::*;
use serde_json::{json, Value};

backends!(
    clients_are_managed_through_the_admin_api_and_audited,
    a_client_obtains_a_signed_token_with_form_or_json_and_either_method,
    hostile_token_requests_are_refused_with_rfc_6749_errors,
    a_rotated_secret_works_until_its_deadline,
    disabled_and_deleted_clients_are_refused_and_cut_off_in_the_feed,
    failed_client_authentication_is_limited_per_address_and_per_client,
    a_disabled_client_enabled_again_gets_new_tokens_and_its_old_ones_stay_cut_off,
    enabling_what_cannot_be_enabled_is_refused_or_changes_nothing,
    a_clients_token_lifetime_is_set_at_creation_updated_and_bounded,
    long_lived_client_tokens_stay_cut_off_and_verifiable_for_their_lifetime,
);

const FORM: &str = "application/x-www-form-urlencoded";

/// A token request: `body` with `content_type`, optional headers, from `peer`.
async fn token_req(app: &TestApp, content_type: &str, body: &str, headers: &[(&str, &str)], peer: &str) -> Resp {
    let mut b = Request::builder()
        .method(Method::POST)
        .uri("/oauth/token")
        .header("content-type", content_type);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut req = b.body(Body::from(body.to_owned())).unwrap();
    let addr: std::net::SocketAddr = format!("{peer}:40000").parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    app.send(req).await
}

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

/// A form body from the default peer.
async fn form(app: &TestApp, body: &str) -> Resp {
    token_req(app, FORM, body, &[], DEFAULT_PEER).await
}

/// `client_secret_post` with a form body from the default peer.
async fn post_token(app: &TestApp, id: &str, secret: &str, extra: &str) -> Resp {
    let body = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}{extra}");
    form(app, &body).await
}

/// `POST /admin/v1/clients/{id}/rotate` with `body`.
async fn rotate(app: &TestApp, id: &str, body: Option<Value>) -> Resp {
    app.admin(Method::POST, &format!("/admin/v1/clients/{id}/rotate"), body)
        .await
}

/// Creates a client; returns (client_id, secret, the answer's body).
async fn create_client(app: &TestApp, tenant: &str, body: Value) -> (String, String, Value) {
    let r = app
        .admin(Method::POST, &format!("/admin/v1/tenants/{tenant}/clients"), Some(body))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    (
        r.body["client_id"].as_str().unwrap().to_owned(),
        r.body["client_secret"].as_str().unwrap().to_owned(),
        r.body,
    )
}

async fn billing_client(app: &TestApp) -> (String, String) {
    let (id, secret, _) = create_client(
        app,
        "acme",
        json!({"audiences": [AUDIENCE, "billing-api"], "scopes": ["billing:read", "billing:write"]}),
    )
    .await;
    (id, secret)
}

/// Verifies `token` with the service's current signing key, at the test clock.
fn verify(app: &TestApp, token: &str, audience: &str) -> JWTClaims<ClientClaims> {
    let key = sync(|| app.svc.db().read(store::current_signing_key)).unwrap().unwrap();
    let pk = tokens::key_pair(&key).unwrap().public_key();
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from([ISSUER.to_string()])),
        allowed_audiences: Some(HashSet::from([audience.to_string()])),
        artificial_time: Some(UnixTimeStamp::from_secs(app.clock.now() as u64)),
        ..Default::default()
    };
    pk.verify_token::<ClientClaims>(token, Some(options)).unwrap()
}

fn assert_invalid_client(r: &Resp, what: &str) {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {:?}", r.body);
    assert_eq!(r.body["error"], "invalid_client", "{what}");
    assert!(
        r.headers["www-authenticate"].to_str().unwrap().starts_with("Basic "),
        "{what}"
    );
}

fn assert_error(r: &Resp, status: StatusCode, code: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {:?}", r.body);
    assert_eq!(r.body["error"], code, "{what}");
}

async fn clients_are_managed_through_the_admin_api_and_audited(b: Backend) {
    let app = TestApp::on(b);
    app.create_tenant("acme").await;
    let (id, secret, created) = create_client(
        &app,
        "acme",
        json!({"audiences": ["billing-api", "billing-api"], "scopes": ["a", "b"], "ip_allowlist": ["198.51.100.0/24"]}),
    )
    .await;
    assert!(id.starts_with("mc_") && id.len() == 29, "{id}");
    assert!(secret.starts_with("cs_") && secret.len() == 67, "{secret}");
    assert_eq!(created["audiences"], json!(["billing-api"]), "duplicates removed");
    assert_eq!(created["status"], "active");
    let hash = edge_auth_service::keys::hash_secret(&secret);
    assert_eq!(created["fingerprint"], &hash[..8]);

    // Listing and reading never show the secret or its hash.
    let list = app.admin(Method::GET, "/admin/v1/tenants/acme/clients", None).await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.body["clients"].as_array().unwrap().len(), 1);
    let one = app.admin(Method::GET, &format!("/admin/v1/clients/{id}"), None).await;
    assert_eq!(one.body["ip_allowlist"], json!(["198.51.100.0/24"]));
    for r in [&list, &one] {
        let text = String::from_utf8_lossy(&r.raw);
        assert!(!text.contains(&secret) && !text.contains(&hash), "{text}");
    }

    // Invalid input, an unknown tenant or client.
    for bad in [
        json!({"scopes": ["a"]}),
        json!({"audiences": []}),
        json!({"audiences": ["a b"]}),
        json!({"audiences": ["a"], "scopes": ["a b"]}),
        json!({"audiences": ["a"], "ip_allowlist": ["not-an-ip"]}),
        json!({"audiences": ["a"], "other": 1}),
    ] {
        let r = app
            .admin(Method::POST, "/admin/v1/tenants/acme/clients", Some(bad.clone()))
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", &bad.to_string());
    }
    let r = app
        .admin(
            Method::POST,
            "/admin/v1/tenants/nope/clients",
            Some(json!({"audiences": ["a"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app.admin(Method::GET, "/admin/v1/clients/mc_unknown", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // The admin token is required.
    let r = app
        .call(Method::GET, "/admin/v1/tenants/acme/clients", None, None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let r = rotate(&app, &id, Some(json!({"grace_s": 60}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let rotated = r.body["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(rotated, secret);
    assert_eq!(r.body["previous_secret_deadline"], T0 + 60);
    let r = rotate(&app, &id, Some(json!({"grace_s": -1}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app
        .admin(Method::POST, &format!("/admin/v1/clients/{id}/disable"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "disabled");
    let r = app
        .admin(Method::DELETE, &format!("/admin/v1/clients/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(app.count("machine_clients"), 0);
    let r = app
        .admin(Method::DELETE, &format!("/admin/v1/clients/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Each action is audited, in the client's tenant, without any secret.
    let events = app.audit().await;
    for action in ["client.create", "client.rotate", "client.disable", "client.delete"] {
        let e = events
            .iter()
            .find(|e| e["action"] == action && e["outcome"] == "success")
            .unwrap_or_else(|| panic!("no {action}"));
        assert_eq!(e["tenant"], "acme", "{action}");
        assert_eq!(e["actor"], "admin");
    }
    let text = serde_json::to_string(&events).unwrap();
    for s in [
        &secret,
        &rotated,
        &hash,
        &edge_auth_service::keys::hash_secret(&rotated),
    ] {
        assert!(!text.contains(s.as_str()));
    }
    assert!(events
        .iter()
        .any(|e| e["action"] == "client.rotate" && e["outcome"] == "failure"));
}

async fn a_client_obtains_a_signed_token_with_form_or_json_and_either_method(b: Backend) {
    let app = TestApp::on(b);
    app.create_tenant("acme").await;
    let (id, secret) = billing_client(&app).await;

    // client_secret_post, form.
    let r = post_token(&app, &id, &secret, "").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.headers["pragma"], "no-cache");
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], 900);
    assert_eq!(r.body["scope"], "billing:read billing:write");
    let claims = verify(&app, r.body["access_token"].as_str().unwrap(), AUDIENCE);
    assert_eq!(claims.subject.as_deref(), Some(id.as_str()));
    assert_eq!(claims.custom.client_id, id);
    assert_eq!(claims.custom.azp, id);
    assert_eq!(claims.custom.gty, "client-credentials");
    assert_eq!(claims.custom.tenant, "acme");
    assert_eq!(claims.custom.scope, "billing:read billing:write");
    assert_eq!(claims.issued_at.unwrap().as_secs(), T0 as u64);
    assert_eq!(claims.expires_at.unwrap().as_secs(), (T0 + 900) as u64);
    let jti1 = claims.jwt_id.clone().unwrap();

    // HTTP Basic, a narrower scope and another of its audiences.
    let r = token_req(
        &app,
        FORM,
        "grant_type=client_credentials&scope=billing%3Aread&audience=billing-api",
        &[("authorization", &basic(&id, &secret))],
        DEFAULT_PEER,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["scope"], "billing:read");
    let claims = verify(&app, r.body["access_token"].as_str().unwrap(), "billing-api");
    assert_eq!(claims.custom.scope, "billing:read");
    assert_ne!(claims.jwt_id.unwrap(), jti1, "each token has its own jti");

    // JSON body, as Auth0 takes it.
    let body = json!({"grant_type": "client_credentials", "client_id": id, "client_secret": secret, "audience": AUDIENCE, "scope": "billing:write"});
    let r = token_req(&app, "application/json", &body.to_string(), &[], DEFAULT_PEER).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["scope"], "billing:write");

    // Each token issued is audited, as the client, in its tenant, without the token.
    let events = app.audit().await;
    let issued: Vec<_> = events
        .iter()
        .filter(|e| e["action"] == "client.token" && e["outcome"] == "success")
        .collect();
    assert_eq!(issued.len(), 3);
    assert_eq!(issued[0]["actor"], format!("client:{id}"));
    assert_eq!(issued[0]["tenant"], "acme");
    assert_eq!(issued[0]["detail"]["secret"], "current");
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains(&secret) && !text.contains("eyJ"));
}

async fn hostile_token_requests_are_refused_with_rfc_6749_errors(b: Backend) {
    let app = TestApp::on(b);
    app.create_tenant("acme").await;
    let (id, secret) = billing_client(&app).await;
    let (other, other_secret) = billing_client(&app).await;
    let good = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}");

    // Wrong secret, another client's secret, unknown and malformed client ids.
    assert_invalid_client(&post_token(&app, &id, "cs_wrong", "").await, "wrong secret");
    assert_invalid_client(
        &post_token(&app, &id, &other_secret, "").await,
        "another client's secret",
    );
    assert_invalid_client(&post_token(&app, &other, &secret, "").await, "secret of the first");
    assert_invalid_client(
        &post_token(&app, "mc_aaaaaaaaaaaaaaaaaaaaaaaaaa", &secret, "").await,
        "unknown client",
    );
    assert_invalid_client(
        &post_token(&app, "x%27%20OR%201%3D1", &secret, "").await,
        "malformed id",
    );
    let long = "x".repeat(300);
    assert_invalid_client(&post_token(&app, &id, &long, "").await, "oversized secret");
    // No credentials at all, or half of them.
    let r = form(&app, "grant_type=client_credentials").await;
    assert_invalid_client(&r, "no credentials");
    let r = form(&app, &format!("grant_type=client_credentials&client_id={id}")).await;
    assert_invalid_client(&r, "no secret");

    // Malformed Basic headers.
    for auth in [
        "Basic".to_owned(),
        "Basic %%%".to_owned(),
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(&id)),
        format!("Bearer {secret}"),
        basic(&id, "cs%zz"),
    ] {
        let r = token_req(
            &app,
            FORM,
            "grant_type=client_credentials",
            &[("authorization", &auth)],
            DEFAULT_PEER,
        )
        .await;
        assert_invalid_client(&r, &auth);
    }
    let r = token_req(
        &app,
        FORM,
        "grant_type=client_credentials",
        &[("authorization", &basic(&id, "cs_wrong"))],
        DEFAULT_PEER,
    )
    .await;
    assert_invalid_client(&r, "wrong secret in Basic");

    // Both methods at once; parameters twice; a client_id in the body that is not Basic's.
    let r = token_req(
        &app,
        FORM,
        &good,
        &[("authorization", &basic(&id, &secret))],
        DEFAULT_PEER,
    )
    .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "Basic and client_secret_post",
    );
    let r = token_req(
        &app,
        FORM,
        &format!("grant_type=client_credentials&client_id={other}"),
        &[("authorization", &basic(&id, &secret))],
        DEFAULT_PEER,
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", "two client ids");
    for dup in [
        format!("{good}&client_secret={secret}"),
        format!("{good}&client_id={id}"),
        format!("{good}&scope=billing%3Aread&scope=billing%3Awrite"),
        format!("{good}&grant_type=client_credentials"),
        format!("{good}&audience=a&audience={AUDIENCE}"),
    ] {
        let r = form(&app, &dup).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", &dup);
    }
    let dup_json = format!(
        r#"{{"grant_type":"client_credentials","client_id":"{id}","client_secret":"cs_wrong","client_secret":"{secret}"}}"#
    );
    let r = token_req(&app, "application/json", &dup_json, &[], DEFAULT_PEER).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", "JSON duplicate");

    // Wrong grant, no grant, wrong content type, a body too large.
    let r = form(&app, &good.replace("client_credentials", "password")).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "unsupported_grant_type", "password grant");
    let r = form(&app, &good.replace("grant_type=client_credentials&", "")).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", "no grant_type");
    for ct in ["text/plain", "multipart/form-data; boundary=x", "application/xml"] {
        let r = token_req(&app, ct, &good, &[], DEFAULT_PEER).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", ct);
    }
    let big = format!("{good}&pad={}", "a".repeat(5000));
    let r = form(&app, &big).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "request_too_large", "oversized body");

    // Authenticated, but asking for more than it has.
    let r = post_token(&app, &id, &secret, "&scope=billing%3Aread+admin").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_scope", "scope escalation");
    let r = post_token(&app, &id, &secret, "&scope=billing%3Aread++billing%3Awrite").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_scope", "malformed scope");
    let r = post_token(&app, &id, &secret, "&audience=https%3A%2F%2Fother.example").await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_target", "audience not allowed");
    // From an address outside the tenant's allowlist (the client has none of its own).
    let r = token_req(&app, FORM, &good, &[], "198.51.100.9").await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "unauthorized_client",
        "address not allowed",
    );

    // A disabled tenant's clients get nothing.
    app.admin(Method::POST, "/admin/v1/tenants/acme/disable", None).await;
    assert_invalid_client(&post_token(&app, &id, &secret, "").await, "tenant disabled");
    app.admin(Method::POST, "/admin/v1/tenants/acme/enable", None).await;
    assert_eq!(post_token(&app, &id, &secret, "").await.status, StatusCode::OK);

    // Nothing was issued for a refused request; refusals are audited without secrets.
    let events = app.audit().await;
    let issued = events
        .iter()
        .filter(|e| e["action"] == "client.token" && e["outcome"] == "success")
        .count();
    assert_eq!(issued, 1);
    let refused: Vec<_> = events
        .iter()
        .filter(|e| e["action"] == "client.token" && e["outcome"] == "failure")
        .map(|e| e["detail"]["reason"].as_str().unwrap().to_owned())
        .collect();
    for reason in ["scope_not_allowed", "audience_not_allowed", "ip_not_allowed"] {
        assert!(refused.iter().any(|r| r == reason), "{reason}: {refused:?}");
    }
    let failures: Vec<_> = events
        .iter()
        .filter(|e| e["action"] == "client.auth" && e["outcome"] == "failure")
        .collect();
    let reasons: Vec<String> = failures
        .iter()
        .flat_map(|e| e["detail"]["reasons"].as_object().unwrap().keys().cloned())
        .collect();
    for reason in ["wrong_secret", "unknown", "malformed", "tenant_disabled"] {
        assert!(reasons.iter().any(|r| r == reason), "{reason}: {reasons:?}");
    }
    assert!(failures.iter().all(|e| e["target"] == "/oauth/token"));
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains(&secret) && !text.contains(&other_secret) && !text.contains("OR 1"));
}

async fn a_rotated_secret_works_until_its_deadline(b: Backend) {
    let app = TestApp::on(b);
    app.create_tenant("acme").await;
    let (id, old) = billing_client(&app).await;
    let r = rotate(&app, &id, Some(json!({"grace_s": 60}))).await;
    let new = r.body["client_secret"].as_str().unwrap().to_owned();

    app.clock.set(T0 + 59);
    assert_eq!(
        post_token(&app, &id, &old, "").await.status,
        StatusCode::OK,
        "old, before the deadline"
    );
    assert_eq!(post_token(&app, &id, &new, "").await.status, StatusCode::OK, "new");
    app.clock.set(T0 + 60);
    assert_invalid_client(&post_token(&app, &id, &old, "").await, "old, at the deadline");
    assert_eq!(post_token(&app, &id, &new, "").await.status, StatusCode::OK);
    let view = app.admin(Method::GET, &format!("/admin/v1/clients/{id}"), None).await;
    assert_eq!(view.body["previous_secret_deadline"], Value::Null);

    // Rotating again drops the secret rotated out before, at once.
    let r = rotate(&app, &id, Some(json!({"grace_s": 600}))).await;
    let newest = r.body["client_secret"].as_str().unwrap().to_owned();
    let r = rotate(&app, &id, None).await;
    assert_eq!(r.body["previous_secret_deadline"], T0 + 60 + 86_400, "a day by default");
    assert_invalid_client(&post_token(&app, &id, &new, "").await, "two rotations ago");
    assert_eq!(post_token(&app, &id, &newest, "").await.status, StatusCode::OK);

    let events = app.audit().await;
    let used: Vec<_> = events
        .iter()
        .filter(|e| e["action"] == "client.token" && e["outcome"] == "success")
        .map(|e| e["detail"]["secret"].as_str().unwrap().to_owned())
        .collect();
    assert!(used.contains(&"previous".to_owned()) && used.contains(&"current".to_owned()));
}

async fn disabled_and_deleted_clients_are_refused_and_cut_off_in_the_feed(b: Backend) {
    let app = TestApp::on(b);
    app.create_tenant("acme").await;
    let (id, secret) = billing_client(&app).await;
    let (gone, gone_secret) = billing_client(&app).await;
    assert_eq!(post_token(&app, &id, &secret, "").await.status, StatusCode::OK);
    let cursor = app.feed(None).await["cursor"].as_str().unwrap().to_owned();

    app.clock.advance(5);
    let r = app
        .admin(Method::POST, &format!("/admin/v1/clients/{id}/disable"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["disabled_at"], T0 + 5);
    // The client's tokens (sub = client id, in its tenant) are cut off in the feed.
    let inc = app.feed(Some(&cursor)).await;
    assert_eq!(
        inc["subjects"],
        json!([{"subject": id, "tenant": "acme", "revoked_before": T0 + 6}])
    );
    let cursor = inc["cursor"].as_str().unwrap().to_owned();
    assert_invalid_client(&post_token(&app, &id, &secret, "").await, "disabled");
    // Disabling again changes nothing and publishes nothing; nor can it be rotated.
    let r = app
        .admin(Method::POST, &format!("/admin/v1/clients/{id}/disable"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = rotate(&app, &id, None).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(app.feed(Some(&cursor)).await["subjects"], json!([]));

    // Deleting an enabled client cuts its tokens off too; deleting a disabled one adds nothing.
    app.clock.advance(5);
    let r = app
        .admin(Method::DELETE, &format!("/admin/v1/clients/{gone}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["revoked_before"], T0 + 11);
    let r = app
        .admin(Method::DELETE, &format!("/admin/v1/clients/{id}"), None)
        .await;
    assert_eq!(r.body["revoked_before"], Value::Null);
    let inc = app.feed(Some(&cursor)).await;
    assert_eq!(
        inc["subjects"],
        json!([{"subject": gone, "tenant": "acme", "revoked_before": T0 + 11}])
    );
    assert_invalid_client(&post_token(&app, &gone, &gone_secret, "").await, "deleted");
    assert_invalid_client(&post_token(&app, &id, &secret, "").await, "deleted after disabled");
}

async fn failed_client_authentication_is_limited_per_address_and_per_client(b: Backend) {
    let app = TestApp::strict(b);
    app.create_tenant("acme").await;
    let (id, secret) = billing_client(&app).await;
    let (other, other_secret) = billing_client(&app).await;
    let wrong = |peer: &'static str, client: String| {
        let body = format!("grant_type=client_credentials&client_id={client}&client_secret=cs_wrong");
        let app = &app;
        async move { token_req(app, FORM, &body, &[], peer).await }
    };

    // Per address: three failures from one address, then 429 there, for any client,
    // even with the right secret; another address is not affected.
    for _ in 0..3 {
        assert_invalid_client(
            &wrong("203.0.113.10", "mc_aaaaaaaaaaaaaaaaaaaaaaaaaa".into()).await,
            "unknown",
        );
    }
    let r = wrong("203.0.113.10", "mc_aaaaaaaaaaaaaaaaaaaaaaaaaa".into()).await;
    assert_error(
        &r,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
        "address limited",
    );
    assert_eq!(r.headers["retry-after"], "2");
    let good = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}");
    let r = token_req(&app, FORM, &good, &[], "203.0.113.10").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        token_req(&app, FORM, &good, &[], "203.0.113.11").await.status,
        StatusCode::OK
    );

    // Per client id: three wrong secrets for `other` from three addresses, then `other`
    // is refused from a fourth address; `id` is not.
    for peer in ["203.0.113.20", "203.0.113.21", "203.0.113.22"] {
        assert_invalid_client(&wrong(peer, other.clone()).await, "wrong secret");
    }
    let r = wrong("203.0.113.23", other.clone()).await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "too_many_requests", "client limited");
    let right = format!("grant_type=client_credentials&client_id={other}&client_secret={other_secret}");
    assert_eq!(
        token_req(&app, FORM, &right, &[], "203.0.113.24").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        token_req(&app, FORM, &good, &[], "203.0.113.24").await.status,
        StatusCode::OK
    );
    // Tokens come back with time.
    app.clock.advance(2);
    assert_eq!(
        token_req(&app, FORM, &right, &[], "203.0.113.24").await.status,
        StatusCode::OK
    );

    // Failures are audited in aggregate: counted per client address, the client id only
    // for clients that exist, never the secret presented.
    let events = app.audit().await;
    let rows: Vec<_> = events
        .iter()
        .filter(|e| e["action"] == "client.auth" && e["outcome"] == "failure")
        .collect();
    let count = |actor: &str| -> u64 {
        rows.iter()
            .filter(|e| e["actor"] == actor)
            .map(|e| e["detail"]["count"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(count("anonymous"), 5, "{rows:?}");
    assert_eq!(count(&format!("client:{other}")), 5, "{rows:?}");
    assert!(rows.len() <= 10, "bounded: {}", rows.len());
    assert!(!serde_json::to_string(&events).unwrap().contains("cs_wrong"));
}

/// `POST /admin/v1/clients/{id}/{action}` (no body).
async fn client_action(app: &TestApp, id: &str, action: &str) -> Resp {
    app.admin(Method::POST, &format!("/admin/v1/clients/{id}/{action}"), None)
        .await
}

async fn a_disabled_client_enabled_again_gets_new_tokens_and_its_old_ones_stay_cut_off(b: Backend) {
    let app = TestApp::on(b);
    app.create_tenant("acme").await;
    let (id, secret) = billing_client(&app).await;
    let r = post_token(&app, &id, &secret, "").await;
    let old = verify(&app, r.body["access_token"].as_str().unwrap(), AUDIENCE);
    let cursor = app.feed(None).await["cursor"].as_str().unwrap().to_owned();

    app.clock.advance(5);
    assert_eq!(client_action(&app, &id, "disable").await.status, StatusCode::OK);
    let cut_off = json!([{"subject": id, "tenant": "acme", "revoked_before": T0 + 6}]);
    assert_eq!(app.feed(Some(&cursor)).await["subjects"], cut_off);
    // In the second of the disabling, a new token would still be covered by the cut-off.
    let r = client_action(&app, &id, "enable").await;
    assert_error(
        &r,
        StatusCode::CONFLICT,
        "conflict",
        "enabled in the second it was disabled",
    );
    assert_invalid_client(&post_token(&app, &id, &secret, "").await, "still disabled");

    app.clock.advance(1);
    let r = client_action(&app, &id, "enable").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["status"], "active");
    assert_eq!(r.body["disabled_at"], Value::Null);
    // The cut-off is not undone: still in the snapshot, and nothing new is published.
    let snapshot = app.feed(None).await;
    assert_eq!(snapshot["subjects"], cut_off);
    let head = app.feed(Some(&cursor)).await;
    assert_eq!(head["subjects"], cut_off, "the increment since before the disabling");
    // The old token is covered by it (iat < revoked_before); a new one is not.
    assert!(old.issued_at.unwrap().as_secs() < (T0 + 6) as u64);
    let r = post_token(&app, &id, &secret, "").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let new = verify(&app, r.body["access_token"].as_str().unwrap(), AUDIENCE);
    assert_eq!(new.issued_at.unwrap().as_secs(), (T0 + 6) as u64);

    // Audited in the client's tenant, with the cut-off that stays.
    let events = app.audit().await;
    let e = events
        .iter()
        .find(|e| e["action"] == "client.enable" && e["outcome"] == "success")
        .expect("client.enable");
    assert_eq!(e["tenant"], "acme");
    assert_eq!(e["target"], id.as_str());
    assert_eq!(e["detail"]["already_enabled"], false);
    assert_eq!(e["detail"]["revoked_before"], T0 + 6);
    assert!(events
        .iter()
        .any(|e| e["action"] == "client.enable" && e["outcome"] == "failure"));

    // Disabled again later: a new cut-off, covering the new token too.
    app.clock.advance(10);
    assert_eq!(client_action(&app, &id, "disable").await.status, StatusCode::OK);
    let subjects = app.feed(None).await["subjects"].clone();
    assert_eq!(
        subjects,
        json!([{"subject": id, "tenant": "acme", "revoked_before": T0 + 17}])
    );
    assert!(new.issued_at.unwrap().as_secs() < (T0 + 17) as u64);
}

async fn enabling_what_cannot_be_enabled_is_refused_or_changes_nothing(b: Backend) {
    let app = TestApp::on(b);
    app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    let (id, secret) = billing_client(&app).await;
    let (theirs, _, _) = create_client(&app, "globex", json!({"audiences": [AUDIENCE]})).await;
    app.clock.advance(2);
    assert_eq!(client_action(&app, &theirs, "disable").await.status, StatusCode::OK);
    let cursor = app.feed(None).await["cursor"].as_str().unwrap().to_owned();

    // An enabled client, twice: unchanged, nothing published.
    for _ in 0..2 {
        let r = client_action(&app, &id, "enable").await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.body["status"], "active");
    }
    assert_eq!(post_token(&app, &id, &secret, "").await.status, StatusCode::OK);
    // Another tenant's client stays disabled whatever is done to acme's.
    let r = app
        .admin(Method::GET, &format!("/admin/v1/clients/{theirs}"), None)
        .await;
    assert_eq!(r.body["status"], "disabled");
    // Enabling it is audited in its own tenant.
    app.clock.advance(1);
    let r = client_action(&app, &theirs, "enable").await;
    assert_eq!((r.status, r.body["tenant"].clone()), (StatusCode::OK, json!("globex")));
    let r = client_action(&app, &theirs, "enable").await;
    assert_eq!(r.status, StatusCode::OK);
    let events = app.audit().await;
    let enables: Vec<_> = events
        .iter()
        .filter(|e| e["action"] == "client.enable" && e["target"] == theirs.as_str())
        .collect();
    assert_eq!(enables.len(), 2);
    assert!(enables.iter().all(|e| e["tenant"] == "globex"));
    assert_eq!(
        enables
            .iter()
            .filter(|e| e["detail"]["already_enabled"] == true)
            .count(),
        1
    );
    assert_eq!(app.feed(Some(&cursor)).await["subjects"], json!([]));

    // A deleted client, an unknown or malformed id: 404, and nothing comes back.
    assert_eq!(
        app.admin(Method::DELETE, &format!("/admin/v1/clients/{theirs}"), None)
            .await
            .status,
        StatusCode::OK
    );
    let long = format!("mc_{}", "a".repeat(5000));
    for bad in [theirs.as_str(), "mc_aaaaaaaaaaaaaaaaaaaaaaaaaa", "nope", long.as_str()] {
        let r = client_action(&app, bad, "enable").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{bad}: {:?}", r.body);
    }
    assert_eq!(app.count("machine_clients"), 1);
    // A body with a field, or no admin token, is refused.
    let r = app
        .admin(
            Method::POST,
            &format!("/admin/v1/clients/{id}/enable"),
            Some(json!({"force": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    let r = app
        .call(Method::POST, &format!("/admin/v1/clients/{id}/enable"), None, None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // A client of a disabled tenant can be enabled, and still gets nothing.
    assert_eq!(client_action(&app, &id, "disable").await.status, StatusCode::OK);
    assert_eq!(
        app.admin(Method::POST, "/admin/v1/tenants/acme/disable", None)
            .await
            .status,
        StatusCode::OK
    );
    app.clock.advance(2);
    assert_eq!(client_action(&app, &id, "enable").await.status, StatusCode::OK);
    assert_invalid_client(&post_token(&app, &id, &secret, "").await, "tenant disabled");
}

/// A token for the client, and its `expires_in`, `exp - iat`.
async fn token_lifetime_of(app: &TestApp, id: &str, secret: &str) -> (i64, i64) {
    let r = post_token(app, id, secret, "").await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let c = verify(app, r.body["access_token"].as_str().unwrap(), AUDIENCE);
    let lifetime = c.expires_at.unwrap().as_secs() - c.issued_at.unwrap().as_secs();
    (r.body["expires_in"].as_i64().unwrap(), lifetime as i64)
}

async fn a_clients_token_lifetime_is_set_at_creation_updated_and_bounded(b: Backend) {
    let app = TestApp::on(b);
    app.create_tenant("acme").await;
    let (short, short_secret) = billing_client(&app).await;
    let (id, secret, created) =
        create_client(&app, "acme", json!({"audiences": [AUDIENCE], "token_lifetime_s": 3600})).await;
    assert_eq!(created["token_lifetime_s"], 3600);
    assert_eq!(token_lifetime_of(&app, &id, &secret).await, (3600, 3600));
    // Left out: 900, as before lifetimes could be set.
    let r = app
        .admin(Method::GET, &format!("/admin/v1/clients/{short}"), None)
        .await;
    assert_eq!(r.body["token_lifetime_s"], 900);
    assert_eq!(token_lifetime_of(&app, &short, &short_secret).await, (900, 900));

    // Out of bounds, or not an integer: refused at creation and in updates.
    for bad in [
        json!(59),
        json!(0),
        json!(-900),
        json!(86_401),
        json!(i64::MAX),
        json!(u64::MAX),
        json!(900.5),
        json!("900"),
        json!(null),
        json!([900]),
    ] {
        let body = json!({"audiences": [AUDIENCE], "token_lifetime_s": bad.clone()});
        let r = app
            .admin(Method::POST, "/admin/v1/tenants/acme/clients", Some(body))
            .await;
        // `null` at creation is the default; everything else is refused.
        if bad.is_null() {
            assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
            assert_eq!(r.body["token_lifetime_s"], 900);
            continue;
        }
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", &bad.to_string());
        let r = app
            .admin(
                Method::PATCH,
                &format!("/admin/v1/clients/{id}"),
                Some(json!({"token_lifetime_s": bad.clone()})),
            )
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", &bad.to_string());
    }
    // An update says what it changes, and only that.
    for bad in [
        json!({}),
        json!({"token_lifetime_s": 120, "scopes": ["x"]}),
        json!({"status": "active"}),
    ] {
        let r = app
            .admin(Method::PATCH, &format!("/admin/v1/clients/{id}"), Some(bad.clone()))
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request", &bad.to_string());
    }
    let r = app
        .admin(
            Method::PATCH,
            "/admin/v1/clients/mc_aaaaaaaaaaaaaaaaaaaaaaaaaa",
            Some(json!({"token_lifetime_s": 120})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(token_lifetime_of(&app, &id, &secret).await, (3600, 3600), "unchanged");

    // The bounds themselves, then a change for the tokens issued from now on.
    for ok in [60, 86_400, 120] {
        let r = app
            .admin(
                Method::PATCH,
                &format!("/admin/v1/clients/{id}"),
                Some(json!({"token_lifetime_s": ok})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        assert_eq!(r.body["token_lifetime_s"], ok);
        assert_eq!(token_lifetime_of(&app, &id, &secret).await, (ok, ok));
    }
    let r = app.admin(Method::GET, "/admin/v1/tenants/acme/clients", None).await;
    let listed = r.body["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(listed["token_lifetime_s"], 120);
    // A disabled client's lifetime can be changed; it still gets nothing.
    assert_eq!(client_action(&app, &short, "disable").await.status, StatusCode::OK);
    let r = app
        .admin(
            Method::PATCH,
            &format!("/admin/v1/clients/{short}"),
            Some(json!({"token_lifetime_s": 60})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["status"].clone()),
        (StatusCode::OK, json!("disabled"))
    );
    assert_invalid_client(&post_token(&app, &short, &short_secret, "").await, "disabled");

    // Audited with the value before, in the client's tenant.
    let events = app.audit().await;
    let updates: Vec<_> = events
        .iter()
        .filter(|e| e["action"] == "client.update" && e["outcome"] == "success" && e["target"] == id.as_str())
        .collect();
    assert_eq!(updates.len(), 3);
    assert!(updates.iter().all(|e| e["tenant"] == "acme"));
    assert!(updates
        .iter()
        .any(|e| e["detail"] == json!({"token_lifetime_s": 60, "previous_token_lifetime_s": 3600})));
    assert!(events
        .iter()
        .any(|e| e["action"] == "client.update" && e["outcome"] == "failure"));
    let created_event = events
        .iter()
        .find(|e| e["action"] == "client.create" && e["detail"]["client_id"] == id.as_str())
        .unwrap();
    assert_eq!(created_event["detail"]["token_lifetime_s"], 3600);
}

async fn long_lived_client_tokens_stay_cut_off_and_verifiable_for_their_lifetime(b: Backend) {
    let app = TestApp::on(b);
    app.create_tenant("acme").await;
    app.create_tenant("globex").await;
    // Cut-offs made while every client's tokens lived 900 s: they would end at T0 + 961...
    assert_eq!(
        app.admin(Method::POST, "/admin/v1/tenants/globex/disable", None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.admin(Method::POST, "/admin/v1/revoke-all", None).await.status,
        StatusCode::OK
    );
    // ...but a client with longer tokens extends them (a client of globex, enabled again,
    // could have been issued such tokens before they were made).
    let (id, secret, _) = create_client(
        &app,
        "acme",
        json!({"audiences": [AUDIENCE], "token_lifetime_s": 86_400}),
    )
    .await;
    let r = post_token(&app, &id, &secret, "").await;
    let token = r.body["access_token"].as_str().unwrap().to_owned();
    let kid = Token::decode_metadata(&token).unwrap().key_id().unwrap().to_owned();
    // Lowered afterwards: the token it has keeps its day.
    let r = app
        .admin(
            Method::PATCH,
            &format!("/admin/v1/clients/{id}"),
            Some(json!({"token_lifetime_s": 60})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        app.admin(Method::POST, "/admin/v1/signing-keys/rotate", None)
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(client_action(&app, &id, "disable").await.status, StatusCode::OK);
    let jwks_kids = |app: &TestApp| {
        let app = app.router.clone();
        async move {
            let r = send_to(
                &app,
                Request::get("/.well-known/jwks.json").body(Body::empty()).unwrap(),
            )
            .await;
            r.body["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    // The cut-off and the retired key last as long as the token can be accepted: its
    // exp (T0 + 86400) plus the edges' leeway (60 s).
    for (at, in_force) in [(T0 + 1000, true), (T0 + 86_400 + 60, true), (T0 + 86_400 + 62, false)] {
        app.clock.set(at);
        let subjects = app.feed(None).await["subjects"].clone();
        assert_eq!(
            subjects.as_array().unwrap().len(),
            usize::from(in_force),
            "at {at}: {subjects}"
        );
        let feed = app.feed(None).await;
        if in_force {
            assert_eq!(subjects[0]["revoked_before"], T0 + 1);
            assert_eq!(feed["revoked_before"], T0 + 1, "at {at}");
            assert_eq!(feed["tenants"].as_array().unwrap().len(), 1, "at {at}");
        } else {
            assert_eq!(
                (feed["revoked_before"].clone(), feed["tenants"].clone()),
                (json!(null), json!([]))
            );
        }
        if at == T0 + 1000 {
            assert!(jwks_kids(&app).await.contains(&kid), "at {at}");
        }
    }
    assert!(
        !jwks_kids(&app).await.contains(&kid),
        "retired and past every token's lifetime"
    );
}
