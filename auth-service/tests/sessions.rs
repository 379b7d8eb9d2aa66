//! The SDK flow: sessions, access tokens (verified with the JWKS), refresh, reuse
//! detection, logout, logout-everywhere, admin revocations, signing-key rotation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use edge_auth_service::tokens::{is_refresh_token, AccessClaims};
use edge_auth_service::Clock;
use jwt_simple::prelude::*;
use serde_json::{json, Value};

async fn jwks(app: &TestApp) -> Value {
    let r = app.call(Method::GET, "/.well-known/jwks.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["cache-control"], "max-age=60");
    r.body
}

/// Verifies `token` with the JWKS key named by its header, as the edge would.
fn verify(jwks: &Value, token: &str, now: i64) -> Result<JWTClaims<AccessClaims>, String> {
    let meta = Token::decode_metadata(token).map_err(|e| e.to_string())?;
    assert_eq!(meta.algorithm(), "ES256");
    let kid = meta.key_id().ok_or("no kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .ok_or("kid not in the JWKS")?;
    let pk = ES256PublicKey::from_jwk(&jwk.to_string()).map_err(|e| e.to_string())?;
    let options = VerificationOptions {
        allowed_issuers: Some(HashSet::from([ISSUER.to_owned()])),
        allowed_audiences: Some(HashSet::from([AUDIENCE.to_owned()])),
        time_tolerance: Some(Duration::from_secs(0)),
        artificial_time: Some(UnixTimeStamp::from_secs(now as u64)),
        ..Default::default()
    };
    pk.verify_token::<AccessClaims>(token, Some(options))
        .map_err(|e| e.to_string())
}

async fn session_tokens_carry_the_contract_claims(b: Backend) {
    let (app, _, raw) = app_with_key_on(b).await;
    let r = app
        .sdk(
            "/v1/sessions",
            &raw,
            Some(json!({"subject": "user-123", "scopes": ["orders:read"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.headers["edge-auth-api-version"], "1");
    let b = &r.body;
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(b["expires_in"], 900);
    assert_eq!(b["refresh_expires_in"], 604_800);
    assert!(is_refresh_token(b["refresh_token"].as_str().unwrap()));
    let sid = b["session_id"].as_str().unwrap();
    assert!(sid.starts_with("ses_"));

    let token = b["access_token"].as_str().unwrap();
    let claims = verify(&jwks(&app).await, token, T0).unwrap();
    assert_eq!(claims.subject.as_deref(), Some("user-123"));
    assert_eq!(claims.issuer.as_deref(), Some(ISSUER));
    assert_eq!(claims.custom.tenant, "acme");
    assert_eq!(claims.custom.scope, "orders:read");
    assert_eq!(claims.custom.sid, sid);
    assert!(claims.jwt_id.as_deref().is_some_and(|j| !j.is_empty()));
    assert_eq!(claims.issued_at.unwrap().as_secs(), T0 as u64);
    assert_eq!(claims.expires_at.unwrap().as_secs(), T0 as u64 + 900);

    // The raw payload has exactly the contract's claims.
    let payload = token.split('.').nth(1).unwrap();
    let payload: Value =
        serde_json::from_slice(&Base64UrlSafeNoPadding::decode_to_vec(payload, None).unwrap()).unwrap();
    let mut names: Vec<&str> = payload.as_object().unwrap().keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["aud", "exp", "iat", "iss", "jti", "roles", "scope", "sid", "sub", "tenant"]
    );
    assert_eq!(payload["roles"], json!([]), "none asked for, none given");
    assert_eq!(payload["aud"], AUDIENCE);

    // Expired after 900 s.
    assert!(verify(&jwks(&app).await, token, T0 + 901).is_err());

    // Scopes omitted: the key's scopes.
    let r = app
        .sdk("/v1/sessions", &raw, Some(json!({"subject": "user-123"})))
        .await;
    let claims = verify(&jwks(&app).await, r.body["access_token"].as_str().unwrap(), T0).unwrap();
    assert_eq!(claims.custom.scope, "orders:read orders:write");
}

/// Roles: a key grants at most the roles it was given; the session's roles are in every
/// access token of the session (`roles` claim, refresh included).
async fn sessions_carry_the_roles_their_key_may_grant(b: Backend) {
    let app = TestApp::on(b);
    app.create_tenant("acme").await;
    let r = app
        .post_key(
            "acme",
            json!({"subject": "svc", "scopes": ["docs:read"], "roles": ["viewer", "editor", "viewer"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["roles"], json!(["viewer", "editor"]), "deduplicated, order kept");
    let raw = r.body["api_key"].as_str().unwrap().to_owned();
    for bad in [json!(["has space"]), json!([""]), json!("viewer"), json!(["a\"b"])] {
        let r = app.post_key("acme", json!({"subject": "svc", "roles": bad})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }

    let r = app
        .sdk("/v1/sessions", &raw, Some(json!({"subject": "u", "roles": ["editor"]})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let claims = verify(&jwks(&app).await, r.body["access_token"].as_str().unwrap(), T0).unwrap();
    assert_eq!(claims.custom.roles, vec!["editor".to_string()]);
    let refreshed = app.refresh(&raw, &r.body["refresh_token"]).await;
    let claims = verify(&jwks(&app).await, refreshed.body["access_token"].as_str().unwrap(), T0).unwrap();
    assert_eq!(claims.custom.roles, vec!["editor".to_string()], "kept on refresh");

    let before = app.snapshot();
    for (roles, status) in [
        (json!(["admin"]), StatusCode::BAD_REQUEST),
        (json!(["viewer", "admin"]), StatusCode::BAD_REQUEST),
        (json!(["Viewer"]), StatusCode::BAD_REQUEST),
        (json!(["view er"]), StatusCode::BAD_REQUEST),
        (json!("viewer"), StatusCode::BAD_REQUEST),
    ] {
        let r = app
            .sdk("/v1/sessions", &raw, Some(json!({"subject": "u", "roles": roles})))
            .await;
        assert_eq!(r.status, status, "{roles}");
    }
    let r = app
        .sdk("/v1/sessions", &raw, Some(json!({"subject": "u", "roles": ["admin"]})))
        .await;
    assert_eq!(r.body["error"], "invalid_scope");
    assert_eq!(app.snapshot(), before, "nothing was created");
    // a key without grantable roles grants none
    let (_, plain) = app.create_key("acme", "svc", &[], None).await;
    let r = app
        .sdk(
            "/v1/sessions",
            &plain,
            Some(json!({"subject": "u", "roles": ["viewer"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // rotation keeps what the key may grant
    let listed = app.admin(Method::GET, "/admin/v1/tenants/acme/keys", None).await.body;
    let with_roles = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["roles"] != json!([]))
        .unwrap();
    let key_id = with_roles["key_id"].as_str().unwrap().to_owned();
    let rotated = app
        .admin(Method::POST, &format!("/admin/v1/keys/{key_id}/rotate"), None)
        .await;
    assert_eq!(rotated.body["roles"], json!(["viewer", "editor"]));
    let created = app
        .audit()
        .await
        .into_iter()
        .find(|e| e["action"] == "session.create")
        .unwrap();
    assert_eq!(created["detail"]["roles"], json!(["editor"]));
}

async fn scopes_beyond_the_key_are_refused(b: Backend) {
    let (app, _, raw) = app_with_key_on(b).await;
    let before = app.snapshot();
    let r = app
        .sdk(
            "/v1/sessions",
            &raw,
            Some(json!({"subject": "u", "scopes": ["orders:read", "admin"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["error"], "invalid_scope");
    for body in [
        json!({"subject": ""}),
        json!({"subject": "a b"}),
        json!({"subject": "u", "scopes": ["a b"]}),
        json!({"subject": 1}),
        json!({"subject": "u", "x": 1}),
        json!([]),
    ] {
        let r = app.sdk("/v1/sessions", &raw, Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
    }
    assert_eq!(app.snapshot(), before, "nothing was created");
}

async fn refresh_rotates_and_reuse_revokes_the_session(b: Backend) {
    let (app, _, raw) = app_with_key_on(b).await;
    let first = app.open_session(&raw, "user-1").await;
    let sid = first["session_id"].as_str().unwrap().to_owned();
    let rt1 = first["refresh_token"].as_str().unwrap().to_owned();

    app.clock.advance(60);
    let second = app.refresh(&raw, &rt1).await;
    assert_eq!(second.status, StatusCode::OK, "{:?}", second.body);
    assert_eq!(second.body["session_id"], sid.as_str());
    assert_eq!(second.body["refresh_expires_in"], 604_800 - 60);
    let rt2 = second.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2);
    let claims = verify(
        &jwks(&app).await,
        second.body["access_token"].as_str().unwrap(),
        T0 + 60,
    )
    .unwrap();
    assert_eq!(claims.custom.sid, sid);
    assert_eq!(claims.issued_at.unwrap().as_secs(), (T0 + 60) as u64);

    // The new one works once more.
    let third = app.refresh(&raw, &rt2).await;
    assert_eq!(third.status, StatusCode::OK);
    let rt3 = third.body["refresh_token"].as_str().unwrap().to_owned();

    let cursor = app.feed(None).await["cursor"].as_str().unwrap().to_owned();
    // Presenting the spent rt1 again: invalid_grant, and the whole session is revoked.
    let reuse = app.refresh(&raw, &rt1).await;
    assert_eq!(reuse.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reuse.body["error"], "invalid_grant");
    let live = app.refresh(&raw, &rt3).await;
    assert_eq!(
        live.status,
        StatusCode::UNAUTHORIZED,
        "the live token of a revoked session is dead too"
    );
    let feed = app.feed(Some(&cursor)).await;
    assert_eq!(feed["reset"], false);
    assert_eq!(
        feed["sessions"],
        json!([{"sid": sid, "expires_at": app.clock.now() + 900 + 60}]),
        "until its last token's exp plus the edges' leeway"
    );

    let events = app.audit().await;
    assert!(events
        .iter()
        .any(|e| e["action"] == "session.refresh_reuse" && e["target"] == sid.as_str()));
    let text = serde_json::to_string(&events).unwrap();
    for secret in [&rt1, &rt2, &rt3, &raw] {
        assert!(!text.contains(secret.as_str()), "a secret reached the audit trail");
    }
}

async fn refresh_failures(b: Backend) {
    let (app, _, raw) = app_with_key_on(b).await;
    let pair = app.open_session(&raw, "user-1").await;
    let rt = pair["refresh_token"].as_str().unwrap();
    // Malformed: 400. Unknown: 401 invalid_grant.
    let r = app.refresh(&raw, &"rt_x").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = app
        .sdk(
            "/v1/sessions/refresh",
            &raw,
            Some(json!({"refresh_token": format!("rt_{}", "0".repeat(64))})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["error"], "invalid_grant");
    // Another tenant's key cannot use it (and does not spend it).
    app.create_tenant("other").await;
    let (_, other_raw) = app.create_key("other", "svc", &["orders:read"], None).await;
    let r = app.refresh(&other_raw, &rt).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app.refresh(&raw, &rt).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the other tenant's attempt neither spent it nor revoked the session"
    );
    let rt = r.body["refresh_token"].as_str().unwrap().to_owned();
    // Session expiry (7 days) ends refreshing.
    app.clock.advance(604_800);
    let r = app.refresh(&raw, &rt).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

async fn logout_with_refresh_token_or_access_token(b: Backend) {
    let (app, _, raw) = app_with_key_on(b).await;
    let a = app.open_session(&raw, "user-1").await;
    let r = app
        .sdk(
            "/v1/sessions/logout",
            &raw,
            Some(json!({"refresh_token": a["refresh_token"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    assert!(r.raw.is_empty());
    let r = app.refresh(&raw, &a["refresh_token"]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let b = app.open_session(&raw, "user-2").await;
    let req = calls::logout_request(&raw, b["access_token"].as_str().unwrap(), None);
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    let r = app.refresh(&raw, &b["refresh_token"]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let feed = app.feed(None).await;
    let sids: Vec<&str> = feed["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sid"].as_str().unwrap())
        .collect();
    assert!(sids.contains(&a["session_id"].as_str().unwrap()));
    assert!(sids.contains(&b["session_id"].as_str().unwrap()));
    let claims = verify(&jwks(&app).await, b["access_token"].as_str().unwrap(), T0).unwrap();
    assert_eq!(
        feed["jtis"],
        json!([{"jti": claims.jwt_id.unwrap(), "expires_at": T0 + 900 + 60}]),
        "until the token's exp plus the edges' leeway"
    );

    // Neither: 400. A forged bearer token: 401.
    let r = app.sdk("/v1/sessions/logout", &raw, None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let req = calls::logout_request(&raw, "eyJhbGciOiJFUzI1NiJ9.e30.AAAA", None);
    assert_eq!(app.send(req).await.status, StatusCode::UNAUTHORIZED);
}

async fn logout_everywhere_revokes_the_subject_in_the_keys_tenant(b: Backend) {
    let (app, _, raw) = app_with_key_on(b).await;
    let a = app.open_session(&raw, "user-1").await;
    let b = app.open_session(&raw, "user-1").await;
    let c = app.open_session(&raw, "user-2").await;
    app.clock.advance(5);
    let r = app
        .sdk(
            "/v1/subjects/logout-everywhere",
            &raw,
            Some(json!({"subject": "user-1"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.body);
    for s in [&a, &b] {
        let r = app.refresh(&raw, &s["refresh_token"]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let r = app.refresh(&raw, &c["refresh_token"]).await;
    assert_eq!(r.status, StatusCode::OK, "another subject is untouched");
    let feed = app.feed(None).await;
    assert_eq!(
        feed["subjects"],
        json!([{"subject": "user-1", "revoked_before": T0 + 6, "tenant": "acme"}]),
        "scoped to the key's tenant"
    );
    assert_eq!(
        feed["sessions"],
        json!([]),
        "the subject's cut-off covers its sessions' tokens"
    );
    // A new session afterwards works.
    app.clock.advance(1);
    let d = app.sdk("/v1/sessions", &raw, Some(json!({"subject": "user-1"}))).await;
    assert_eq!(d.status, StatusCode::CREATED);
    let claims = verify(&jwks(&app).await, d.body["access_token"].as_str().unwrap(), T0 + 6).unwrap();
    assert!(
        claims.issued_at.unwrap().as_secs() >= (T0 + 6) as u64,
        "not covered by revoked_before"
    );
}

/// Finding 4: tenant A's logout-everywhere for a subject leaves tenant B's user with the
/// same subject alone, in the service and in what the feed tells the edge.
async fn logout_everywhere_leaves_another_tenants_same_subject_alone(b: Backend) {
    let (app, _, acme) = app_with_key_on(b).await;
    app.create_tenant("globex").await;
    let (_, globex) = app.create_key("globex", "svc-web", &[], None).await;
    let session = |key: String| {
        let app = &app;
        async move {
            let r = app.sdk("/v1/sessions", &key, Some(json!({"subject": "user-1"}))).await;
            assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
            r.body
        }
    };
    let in_acme = session(acme.clone()).await;
    let in_globex = session(globex.clone()).await;
    let cursor = app.feed(None).await["cursor"].as_str().unwrap().to_owned();
    app.clock.advance(5);
    let r = app
        .sdk(
            "/v1/subjects/logout-everywhere",
            &acme,
            Some(json!({"subject": "user-1"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    let refresh = |key: String, s: &serde_json::Value| {
        let body = json!({"refresh_token": s["refresh_token"]});
        let app = &app;
        async move { app.sdk("/v1/sessions/refresh", &key, Some(body)).await.status }
    };
    assert_eq!(refresh(acme.clone(), &in_acme).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        refresh(globex.clone(), &in_globex).await,
        StatusCode::OK,
        "globex's user-1 keeps its session"
    );
    let want = json!([{"subject": "user-1", "revoked_before": T0 + 6, "tenant": "acme"}]);
    assert_eq!(app.feed(None).await["subjects"], want);
    let inc = app.feed(Some(&cursor)).await;
    assert_eq!(inc["subjects"], want, "the increment is scoped too");

    // globex does the same: a second entry, for globex only
    let r = app
        .sdk(
            "/v1/subjects/logout-everywhere",
            &globex,
            Some(json!({"subject": "user-1"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let subjects = app.feed(None).await["subjects"].clone();
    assert_eq!(
        subjects,
        json!([{"subject": "user-1", "revoked_before": T0 + 6, "tenant": "acme"},
               {"subject": "user-1", "revoked_before": T0 + 6, "tenant": "globex"}])
    );

    // the operator's revocations: every tenant (no tenant), or one tenant
    app.clock.advance(10);
    let r = app.admin(Method::POST, "/admin/v1/subjects/user-2/revoke", None).await;
    assert_eq!(r.body["tenant"], serde_json::Value::Null);
    let r = app
        .admin(Method::POST, "/admin/v1/tenants/globex/subjects/user-3/revoke", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["tenant"], "globex");
    let r = app
        .admin(Method::POST, "/admin/v1/tenants/nope/subjects/user-3/revoke", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let subjects = app.feed(None).await["subjects"].clone();
    let of = |name: &str| -> Vec<serde_json::Value> {
        subjects
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["subject"] == name)
            .map(|e| e["tenant"].clone())
            .collect()
    };
    assert_eq!(of("user-2"), vec![serde_json::Value::Null]);
    assert_eq!(of("user-3"), vec![json!("globex")]);
}

async fn admin_revocations_and_revoke_all(b: Backend) {
    let (app, _, raw) = app_with_key_on(b).await;
    let a = app.open_session(&raw, "user-1").await;
    let b = app.open_session(&raw, "user-2").await;
    let c = app.open_session(&raw, "user-3").await;

    let sid = a["session_id"].as_str().unwrap();
    let r = app
        .admin(Method::POST, &format!("/admin/v1/sessions/{sid}/revoke"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        app.admin(Method::POST, "/admin/v1/sessions/ses_nope/revoke", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let r = app.admin(Method::POST, "/admin/v1/subjects/user-2/revoke", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["sessions_revoked"], 1);

    app.clock.advance(10);
    let r = app.admin(Method::POST, "/admin/v1/revoke-all", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["revoked_before"], T0 + 11, "the current second plus one");
    assert_eq!(r.body["sessions_revoked"], 1, "only c was still live");
    for s in [&a, &b, &c] {
        let r = app.refresh(&raw, &s["refresh_token"]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let feed = app.feed(None).await;
    assert_eq!(feed["revoked_before"], T0 + 11);
    assert_eq!(
        feed["sessions"],
        json!([{"sid": sid, "expires_at": T0 + 960}]),
        "only the session revoked on its own: the cut-offs cover the others"
    );
}

async fn signing_key_rotation_keeps_the_old_key_for_the_token_lifetime(b: Backend) {
    let (app, _, raw) = app_with_key_on(b).await;
    let before = jwks(&app).await;
    assert_eq!(before["keys"].as_array().unwrap().len(), 1);
    let k = &before["keys"][0];
    assert_eq!(
        (
            k["kty"].as_str(),
            k["crv"].as_str(),
            k["alg"].as_str(),
            k["use"].as_str()
        ),
        (Some("EC"), Some("P-256"), Some("ES256"), Some("sig"))
    );
    assert!(k.get("d").is_none(), "no private part");
    let old_kid = k["kid"].as_str().unwrap().to_owned();
    let old_token = app.open_session(&raw, "u").await["access_token"].clone();

    app.clock.advance(100);
    let r = app.admin(Method::POST, "/admin/v1/signing-keys/rotate", None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["previous_kid"], old_kid.as_str());
    let new_kid = r.body["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);

    let after = jwks(&app).await;
    let kids: Vec<&str> = after["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(
        kids,
        [new_kid.as_str(), old_kid.as_str()],
        "current first, the retired one kept"
    );
    // Old tokens still verify; new ones are signed with the new key.
    verify(&after, old_token.as_str().unwrap(), T0 + 100).unwrap();
    let new_token = app.open_session(&raw, "u").await["access_token"].clone();
    let meta = Token::decode_metadata(new_token.as_str().unwrap()).unwrap();
    assert_eq!(meta.key_id(), Some(new_kid.as_str()));
    verify(&after, new_token.as_str().unwrap(), T0 + 100).unwrap();

    // 15 minutes after retirement the old key leaves the JWKS.
    app.clock.advance(899);
    assert_eq!(jwks(&app).await["keys"].as_array().unwrap().len(), 2);
    app.clock.advance(1);
    let later = jwks(&app).await;
    assert_eq!(later["keys"].as_array().unwrap().len(), 1);
    assert_eq!(later["keys"][0]["kid"], new_kid.as_str());
}

async fn concurrent_refreshes_of_one_token_let_exactly_one_through(b: Backend) {
    let (app, _, raw) = app_with_key_on(b).await;
    let pair = app.open_session(&raw, "user-1").await;
    let rt = pair["refresh_token"].as_str().unwrap().to_owned();
    let ctx = edge_auth_service::audit::Ctx::new("test", Some(DEFAULT_PEER.into()), None);
    let absent = edge_auth_service::edge_context::EdgeContext::Absent;
    let key = sync(|| {
        app.svc
            .authenticate_api_key(&ctx, "/v1/sessions/refresh", Some(&raw), &absent)
    })
    .unwrap();
    // Half the refreshes on another replica of the same database.
    let (replica, _) = app.replica();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let svc = if i % 2 == 0 { app.svc.clone() } else { replica.clone() };
            let key = key.clone();
            let rt = rt.clone();
            std::thread::spawn(move || {
                svc.refresh(&key, edge_auth_service::service::RefreshRequest { refresh_token: rt })
                    .is_ok()
            })
        })
        .collect();
    let ok = handles.into_iter().map(|h| h.join().unwrap()).filter(|ok| *ok).count();
    assert_eq!(ok, 1, "exactly one refresh wins; the others are reuse");
    let sid = pair["session_id"].as_str().unwrap();
    let session = sync(|| app.svc.db().read(|c| edge_auth_service::store::session(c, sid)))
        .unwrap()
        .unwrap();
    assert!(session.revoked_at.is_some(), "reuse revoked the session");
}

async fn secret_bearing_responses_are_not_cached_and_logout_refuses_two_credentials(b: Backend) {
    let (app, key_id, raw) = app_with_key_on(b).await;
    let r = app.sdk("/v1/sessions", &raw, Some(json!({"subject": "u"}))).await;
    assert_eq!(r.headers["cache-control"], "no-store");
    let header: Value = serde_json::from_slice(
        &Base64UrlSafeNoPadding::decode_to_vec(
            r.body["access_token"].as_str().unwrap().split('.').next().unwrap(),
            None,
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "JWT");
    assert!(header["kid"].is_string());
    let rt = r.body["refresh_token"].clone();
    let refreshed = app.refresh(&raw, &rt).await;
    assert_eq!(refreshed.headers["cache-control"], "no-store");
    let k = app.post_key("acme", json!({"subject": "s"})).await;
    assert_eq!(k.headers["cache-control"], "no-store");
    let k = app
        .admin(Method::POST, &format!("/admin/v1/keys/{key_id}/rotate"), None)
        .await;
    assert_eq!(k.headers["cache-control"], "no-store");

    let pair = refreshed.body;
    let body = json!({"refresh_token": pair["refresh_token"]});
    let req = calls::logout_request(&raw, pair["access_token"].as_str().unwrap(), Some(&body));
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    let again = app.refresh(&raw, &pair["refresh_token"]).await;
    assert_eq!(again.status, StatusCode::OK, "the refused logout changed nothing");
}

backends!(
    session_tokens_carry_the_contract_claims,
    scopes_beyond_the_key_are_refused,
    refresh_rotates_and_reuse_revokes_the_session,
    refresh_failures,
    logout_with_refresh_token_or_access_token,
    sessions_carry_the_roles_their_key_may_grant,
    logout_everywhere_revokes_the_subject_in_the_keys_tenant,
    logout_everywhere_leaves_another_tenants_same_subject_alone,
    admin_revocations_and_revoke_all,
    signing_key_rotation_keeps_the_old_key_for_the_token_lifetime,
    concurrent_refreshes_of_one_token_let_exactly_one_through,
    secret_bearing_responses_are_not_cached_and_logout_refuses_two_credentials,
);
