//! Issue 12, finding 5: the service enforces the key's and the tenant's IP allowlist
//! itself on every API-key route, from the TCP peer or from the edge's signed context
//! headers (docs/upstream-context.md), never from a header a client can write.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use common::*;
use edge_auth_core::context::{render, ContextHeaders, Identity};
use edge_auth_service::edge_context::EdgeContextConfig;
use serde_json::{json, Value};

const OUTSIDE: &str = "198.51.100.7";
const INSIDE: &str = "203.0.113.9";
/// The edge's context signing key, shared with the service.
const CONTEXT_KEY: &[u8] = b"e2e-context-signing-key-32-bytes";

fn post(path: &str, headers: &[(&str, &str)], body: Value, peer: &str) -> Request<Body> {
    let mut b = Request::post(path).header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut req = b.body(Body::from(body.to_string())).unwrap();
    let addr = std::net::SocketAddr::new(peer.parse().unwrap(), 40000);
    req.extensions_mut().insert(axum::extract::ConnectInfo(addr));
    req
}

/// The context headers the edge writes for a request it admitted with `key_id`.
fn signed_by_edge(key: &[u8], key_id: &str, tenant: &str, at: i64, method: &str, path: &str) -> Vec<(String, String)> {
    let scopes: Vec<String> = vec![];
    let id = Identity {
        method: "api_key",
        subject: "svc-billing",
        tenant: Some(tenant),
        scopes: &scopes,
        key_id: Some(key_id),
        token_id: None,
    };
    render(&ContextHeaders::default(), &id, Some((key, at as u64, method, path)))
}

async fn send(router: &Router, req: Request<Body>) -> Resp {
    send_to(router, req).await
}

async fn sessions_from_outside_the_allowlist_are_refused(b: Backend) {
    // acme's allowlist is 203.0.113.0/24 (common::TestApp::create_tenant)
    let (app, key_id, raw) = app_with_key_on(b).await;
    let before = app.snapshot();
    let create = |peer: &str, extra: &[(&str, &str)]| {
        let mut headers = vec![("x-api-key", raw.as_str())];
        headers.extend_from_slice(extra);
        post("/v1/sessions", &headers, json!({"subject": "user-1"}), peer)
    };
    let r = app.send(create(OUTSIDE, &[])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
    assert_eq!(r.body["error"], "ip_not_allowed");
    // X-Forwarded-For is the client's to write: never believed
    for xff in [INSIDE, "203.0.113.1, 198.51.100.7", "127.0.0.1"] {
        let r = app.send(create(OUTSIDE, &[("x-forwarded-for", xff)])).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{xff}");
    }
    for spoof in ["x-real-ip", "forwarded", "x-client-ip", "true-client-ip"] {
        let r = app.send(create(OUTSIDE, &[(spoof, INSIDE)])).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{spoof}");
    }
    assert_eq!(app.snapshot(), before, "nothing was created");

    // from inside, also as an IPv4-mapped IPv6 peer
    assert_eq!(app.send(create(INSIDE, &[])).await.status, StatusCode::CREATED);
    let mapped = app.send(create("::ffff:203.0.113.9", &[])).await;
    assert_eq!(mapped.status, StatusCode::CREATED);

    // every API-key route, not only session creation
    let pair = mapped.body;
    for (path, body) in [
        ("/v1/sessions/refresh", json!({"refresh_token": pair["refresh_token"]})),
        ("/v1/sessions/logout", json!({"refresh_token": pair["refresh_token"]})),
        ("/v1/subjects/logout-everywhere", json!({"subject": "user-1"})),
    ] {
        let r = app.send(post(path, &[("x-api-key", &raw)], body, OUTSIDE)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
    }
    // the session survived all that: the refresh token still works from inside
    let r = app
        .send(post(
            "/v1/sessions/refresh",
            &[("x-api-key", &raw)],
            json!({"refresh_token": pair["refresh_token"]}),
            INSIDE,
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);

    // refused attempts are counted and audited in aggregate, as the key
    let events = app.audit().await;
    let refused: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "api_key.auth" && e["outcome"] == "failure" && e["peer"] == OUTSIDE)
        .collect();
    assert_eq!(refused.len(), 4, "one row per route: {events:?}");
    let mut count = 0;
    for row in refused {
        assert_eq!(row["actor"], format!("api_key:{key_id}"));
        let reasons = row["detail"]["reasons"].as_object().unwrap();
        assert_eq!(reasons.keys().collect::<Vec<_>>(), ["ip_not_allowed"]);
        count += reasons["ip_not_allowed"].as_u64().unwrap();
    }
    assert_eq!(count, 8 + 3, "every refused attempt");
}

async fn a_keys_own_allowlist_replaces_its_tenants(b: Backend) {
    let app = TestApp::on(b);
    app.create_tenant("acme").await;
    let key = |list: Value| {
        let app = &app;
        async move {
            let r = app
                .admin(
                    Method::POST,
                    "/admin/v1/tenants/acme/keys",
                    Some(json!({"subject": "svc", "ip_allowlist": list})),
                )
                .await;
            r.body["api_key"].as_str().unwrap().to_owned()
        }
    };
    let partner = key(json!(["198.51.100.0/24", "2001:db8::/32"])).await;
    let anywhere = key(json!([])).await;
    let status = |raw: &str, peer: &str| {
        let req = post("/v1/sessions", &[("x-api-key", raw)], json!({"subject": "u"}), peer);
        let app = &app;
        async move { app.send(req).await.status }
    };
    assert_eq!(status(&partner, OUTSIDE).await, StatusCode::CREATED);
    assert_eq!(status(&partner, "2001:db8::7").await, StatusCode::CREATED);
    assert_eq!(
        status(&partner, INSIDE).await,
        StatusCode::FORBIDDEN,
        "the tenant's list no longer applies"
    );
    assert_eq!(status(&partner, "2001:db9::7").await, StatusCode::FORBIDDEN);
    assert_eq!(status(&anywhere, OUTSIDE).await, StatusCode::CREATED, "[]: any address");
    assert_eq!(status(&anywhere, "::1").await, StatusCode::CREATED);
}

/// The router of `app` with the edge's context believed (signed with `keys`).
fn believing(app: &TestApp, keys: &[&[u8]]) -> Router {
    let cfg = EdgeContextConfig::new("x-edge-auth-", keys.iter().map(|k| k.to_vec()).collect(), 60).unwrap();
    app.router_with(|st| st.edge_context = Some(Arc::new(cfg)))
}

async fn the_edges_signed_context_vouches_for_the_key_and_nothing_else_does(b: Backend) {
    let (app, key_id, raw) = app_with_key_on(b).await;
    app.create_tenant("globex").await;
    let (other_id, _) = app.create_key("globex", "svc", &[], None).await;
    let router = believing(&app, &[CONTEXT_KEY]);
    // The edge (127.0.0.1, outside acme's list) forwards with the key removed and its
    // context signed: the service authenticates the key by its id and trusts the edge's
    // allowlist check.
    let through_edge = |headers: Vec<(String, String)>, path: &str, body: Value| {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        post(path, &h, body, "127.0.0.1")
    };
    let ok = signed_by_edge(CONTEXT_KEY, &key_id, "acme", T0, "POST", "/v1/sessions");
    let r = send(
        &router,
        through_edge(ok.clone(), "/v1/sessions", json!({"subject": "user-1"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // the raw key too (another edge configuration), naming the same key: fine
    let mut with_key = ok.clone();
    with_key.push(("x-api-key".into(), raw.clone()));
    let r = send(
        &router,
        through_edge(with_key, "/v1/sessions", json!({"subject": "user-1"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);

    let refused = |headers: Vec<(String, String)>, path: &'static str| {
        let req = through_edge(headers, path, json!({"subject": "user-1"}));
        let router = &router;
        async move { send(router, req).await }
    };
    let before = app.snapshot();
    // forged: signed with another key
    let forged = signed_by_edge(
        b"an-attackers-own-key-of-32-bytes",
        &key_id,
        "acme",
        T0,
        "POST",
        "/v1/sessions",
    );
    assert_eq!(refused(forged, "/v1/sessions").await.status, StatusCode::UNAUTHORIZED);
    // unsigned: the identity headers alone
    let unsigned: Vec<_> = ok
        .iter()
        .filter(|(k, _)| !k.ends_with("timestamp") && !k.ends_with("signature"))
        .cloned()
        .collect();
    let r = refused(unsigned, "/v1/sessions").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["error"], "invalid_api_key");
    // replayed: onto another route, or after the window
    let r = refused(ok.clone(), "/v1/subjects/logout-everywhere").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let stale = signed_by_edge(CONTEXT_KEY, &key_id, "acme", T0 - 61, "POST", "/v1/sessions");
    assert_eq!(refused(stale, "/v1/sessions").await.status, StatusCode::UNAUTHORIZED);
    // a genuine context for another key cannot be combined with this key
    let theirs = signed_by_edge(CONTEXT_KEY, &other_id, "globex", T0, "POST", "/v1/sessions");
    let mut mixed = theirs.clone();
    mixed.push(("x-api-key".into(), raw.clone()));
    assert_eq!(refused(mixed, "/v1/sessions").await.status, StatusCode::UNAUTHORIZED);
    // a context claiming acme for globex's key (signed: a misbehaving edge) is refused
    let wrong_tenant = signed_by_edge(CONTEXT_KEY, &other_id, "acme", T0, "POST", "/v1/sessions");
    assert_eq!(
        refused(wrong_tenant, "/v1/sessions").await.status,
        StatusCode::UNAUTHORIZED
    );
    // a header sent twice
    let mut twice = ok.clone();
    twice.push(("x-edge-auth-key-id".into(), other_id.clone()));
    assert_eq!(refused(twice, "/v1/sessions").await.status, StatusCode::UNAUTHORIZED);
    // an unknown key id
    let unknown = signed_by_edge(
        CONTEXT_KEY,
        "key_aaaaaaaaaaaaaaaaaaaaaaaaaa",
        "acme",
        T0,
        "POST",
        "/v1/sessions",
    );
    assert_eq!(refused(unknown, "/v1/sessions").await.status, StatusCode::UNAUTHORIZED);
    // the raw key from the edge's address, with no context: the peer decides
    let r = send(
        &router,
        post(
            "/v1/sessions",
            &[("x-api-key", &raw), ("x-forwarded-for", INSIDE)],
            json!({"subject": "u"}),
            "127.0.0.1",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(app.snapshot(), before, "nothing was created");

    // a revoked key is refused even with the edge's word (the edge may have cached it)
    app.admin(Method::POST, &format!("/admin/v1/keys/{key_id}/revoke"), None)
        .await;
    let again = signed_by_edge(CONTEXT_KEY, &key_id, "acme", T0, "POST", "/v1/sessions");
    assert_eq!(refused(again, "/v1/sessions").await.status, StatusCode::UNAUTHORIZED);

    // every reason is in the audit, aggregated
    let events = app.audit().await;
    let reasons: Vec<String> = events
        .iter()
        .filter(|e| e["action"] == "api_key.auth" && e["outcome"] == "failure")
        .flat_map(|e| {
            e["detail"]["reasons"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect();
    for want in [
        "context_bad_signature",
        "context_unsigned",
        "context_expired",
        "context_mismatch",
        "context_duplicated",
        "unknown",
        "ip_not_allowed",
        "revoked",
    ] {
        assert!(reasons.iter().any(|r| r == want), "{want} in {reasons:?}");
    }
}

async fn the_edges_context_is_believed_only_with_the_edges_key(b: Backend) {
    let (app, key_id, raw) = app_with_key_on(b).await;
    let ok = signed_by_edge(CONTEXT_KEY, &key_id, "acme", T0, "POST", "/v1/sessions");
    let with_edge_headers = |router: &Router, extra: Option<&str>| {
        let mut h: Vec<(&str, &str)> = ok.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if let Some(raw) = extra {
            h.push(("x-api-key", raw));
        }
        let req = post("/v1/sessions", &h, json!({"subject": "u"}), "127.0.0.1");
        let router = router.clone();
        async move { send(&router, req).await.status }
    };
    // not configured: the headers are not believed (no key: 401; the key from outside: 403)
    assert_eq!(with_edge_headers(&app.router, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(with_edge_headers(&app.router, Some(&raw)).await, StatusCode::FORBIDDEN);
    // during a rotation, the previous key is still believed; a third is not
    let rotating = believing(&app, &[b"the-next-context-signing-key-32b", CONTEXT_KEY]);
    assert_eq!(with_edge_headers(&rotating, None).await, StatusCode::CREATED);
    let other = believing(&app, &[b"the-next-context-signing-key-32b"]);
    assert_eq!(with_edge_headers(&other, None).await, StatusCode::UNAUTHORIZED);
}

backends!(
    sessions_from_outside_the_allowlist_are_refused,
    a_keys_own_allowlist_replaces_its_tenants,
    the_edges_signed_context_vouches_for_the_key_and_nothing_else_does,
    the_edges_context_is_believed_only_with_the_edges_key,
);
