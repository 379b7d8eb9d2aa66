//! The revocation feed: snapshots, incremental changes with cursors, expiry.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::json;

async fn empty_snapshot(b: Backend) {
    let app = TestApp::on(b);
    let f = app.feed(None).await;
    assert_eq!(f["reset"], true);
    assert_eq!(f["poll_interval_s"], 5);
    assert_eq!(f["revoked_before"], json!(null));
    assert_eq!(f["subjects"], json!([]));
    assert_eq!(f["sessions"], json!([]));
    assert_eq!(f["jtis"], json!([]));
    assert_eq!(f["tenants"], json!([]));
    assert!(f["cursor"].as_str().is_some_and(|c| !c.is_empty()));
    // The same cursor again: nothing new, no reset.
    let g = app.feed(f["cursor"].as_str()).await;
    assert_eq!(g["reset"], false);
    assert_eq!(g["cursor"], f["cursor"]);
}

async fn snapshot_then_incremental(b: Backend) {
    let (app, _, raw) = app_with_key_on(b).await;
    let s1 = app
        .sdk("/v1/sessions", &raw, Some(json!({"subject": "user-1"})))
        .await
        .body;
    let s2 = app
        .sdk("/v1/sessions", &raw, Some(json!({"subject": "user-2"})))
        .await
        .body;
    let sid1 = s1["session_id"].as_str().unwrap();
    let sid2 = s2["session_id"].as_str().unwrap();
    app.admin(Method::POST, &format!("/admin/v1/sessions/{sid1}/revoke"), None)
        .await;
    let snap = app.feed(None).await;
    assert_eq!(snap["reset"], true);
    assert_eq!(
        snap["sessions"],
        json!([{"sid": sid1, "expires_at": T0 + 604_800 + 900}])
    );
    let c1 = snap["cursor"].as_str().unwrap().to_owned();

    // Nothing changed: empty incremental.
    let inc = app.feed(Some(&c1)).await;
    assert_eq!(inc["reset"], false);
    assert_eq!(inc["sessions"], json!([]));
    assert_eq!(inc["cursor"], c1.as_str());

    // Changes after the cursor, and only them.
    app.clock.advance(3);
    app.admin(Method::POST, &format!("/admin/v1/sessions/{sid2}/revoke"), None)
        .await;
    app.admin(Method::POST, "/admin/v1/subjects/user-7/revoke", None).await;
    let inc = app.feed(Some(&c1)).await;
    assert_eq!(inc["reset"], false);
    assert_eq!(
        inc["sessions"],
        json!([{"sid": sid2, "expires_at": T0 + 604_800 + 900}])
    );
    assert_eq!(
        inc["subjects"],
        json!([{"subject": "user-7", "revoked_before": T0 + 4, "tenant": null}]),
        "an operator's cut-off covers every tenant"
    );
    assert_eq!(inc["revoked_before"], json!(null));
    let c2 = inc["cursor"].as_str().unwrap().to_owned();
    assert_ne!(c1, c2);

    app.admin(Method::POST, "/admin/v1/revoke-all", None).await;
    let inc = app.feed(Some(&c2)).await;
    assert_eq!(inc["revoked_before"], T0 + 4);
    assert_eq!(inc["subjects"], json!([]));

    // A full snapshot has everything still in force.
    let snap = app.feed(None).await;
    assert_eq!(snap["sessions"].as_array().unwrap().len(), 2);
    assert_eq!(snap["subjects"].as_array().unwrap().len(), 1);
    assert_eq!(snap["revoked_before"], T0 + 4);

    let stats = app.internal(Method::GET, "/internal/v1/stats", None).await.body;
    assert_eq!(stats["revocation_polls"], 5);
}

async fn unknown_cursors_reset(b: Backend) {
    let app = TestApp::on(b);
    app.admin(Method::POST, "/admin/v1/subjects/u/revoke", None).await;
    let good = app.feed(None).await["cursor"].as_str().unwrap().to_owned();
    let (prefix, id) = good.rsplit_once('.').unwrap();
    let id: i64 = id.parse().unwrap();
    for bad in [
        "garbage".to_owned(),
        format!("{prefix}.{}", id + 1),
        format!("v1.iother.{id}"),
        "x".repeat(500),
        String::new(),
    ] {
        let f = app.feed(Some(&bad)).await;
        assert_eq!(f["reset"], true, "{bad}");
        assert_eq!(
            f["subjects"].as_array().unwrap().len(),
            1,
            "a reset carries the full snapshot"
        );
    }
}

async fn entries_leave_the_snapshot_when_they_expire(b: Backend) {
    let (app, _, raw) = app_with_key_on(b).await;
    let s = app
        .sdk("/v1/sessions", &raw, Some(json!({"subject": "user-1"})))
        .await
        .body;
    let req = axum::http::Request::post("/v1/sessions/logout")
        .header("x-api-key", &raw)
        .header(
            "authorization",
            format!("Bearer {}", s["access_token"].as_str().unwrap()),
        )
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::NO_CONTENT);
    app.admin(Method::POST, "/admin/v1/subjects/user-9/revoke", None).await;
    app.admin(Method::POST, "/admin/v1/revoke-all", None).await;
    let f = app.feed(None).await;
    assert_eq!(f["jtis"].as_array().unwrap().len(), 1);
    assert_eq!(f["subjects"].as_array().unwrap().len(), 1);
    assert_eq!(f["revoked_before"], T0 + 1, "the current second plus one");
    // After the access-token lifetime, the jti, subject and global entries can no longer matter.
    app.clock.advance(900);
    let f = app.feed(None).await;
    assert_eq!(f["jtis"], json!([]), "the jti's token expired");
    assert_eq!(
        f["subjects"].as_array().unwrap().len(),
        1,
        "iat < T0 + 1 tokens live until T0 + 901"
    );
    app.clock.advance(1);
    let f = app.feed(None).await;
    assert_eq!(f["subjects"], json!([]));
    assert_eq!(f["revoked_before"], json!(null));
    assert_eq!(
        f["sessions"].as_array().unwrap().len(),
        1,
        "the session entry lasts until the session's end"
    );
    app.clock.advance(604_800);
    assert_eq!(app.feed(None).await["sessions"], json!([]));
}

backends!(
    empty_snapshot,
    snapshot_then_incremental,
    unknown_cursors_reset,
    entries_leave_the_snapshot_when_they_expire,
);
