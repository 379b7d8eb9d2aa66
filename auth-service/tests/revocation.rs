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
    let s1 = app.open_session(&raw, "user-1").await;
    let s2 = app.open_session(&raw, "user-2").await;
    let sid1 = s1["session_id"].as_str().unwrap();
    let sid2 = s2["session_id"].as_str().unwrap();
    app.admin(Method::POST, &format!("/admin/v1/sessions/{sid1}/revoke"), None)
        .await;
    let snap = app.feed(None).await;
    assert_eq!(snap["reset"], true);
    assert_eq!(
        snap["sessions"],
        json!([{"sid": sid1, "expires_at": T0 + 900 + 60}]),
        "until its last token's exp plus the edges' leeway, not the session's end"
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
    assert_eq!(inc["sessions"], json!([{"sid": sid2, "expires_at": T0 + 3 + 900 + 60}]));
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
    let s = app.open_session(&raw, "user-1").await;
    let req = calls::logout_request(&raw, s["access_token"].as_str().unwrap(), None);
    assert_eq!(app.send(req).await.status, StatusCode::NO_CONTENT);
    app.admin(Method::POST, "/admin/v1/subjects/user-9/revoke", None).await;
    app.admin(Method::POST, "/admin/v1/revoke-all", None).await;
    let f = app.feed(None).await;
    assert_eq!(f["jtis"].as_array().unwrap().len(), 1);
    assert_eq!(f["subjects"].as_array().unwrap().len(), 1);
    assert_eq!(f["revoked_before"], T0 + 1, "the current second plus one");
    // Entries last while a token they cover can be accepted at an edge: its exp (at most
    // T0 + 900 for tokens issued until T0) plus the edges' leeway (60 s by default).
    app.clock.advance(959);
    let f = app.feed(None).await;
    assert_eq!(f["jtis"].as_array().unwrap().len(), 1);
    assert_eq!(f["sessions"].as_array().unwrap().len(), 1);
    app.clock.advance(1);
    let f = app.feed(None).await;
    assert_eq!(f["jtis"], json!([]), "the jti's token is past exp + leeway");
    assert_eq!(f["sessions"], json!([]), "so is the session's last token");
    assert_eq!(
        f["subjects"].as_array().unwrap().len(),
        1,
        "iat < T0 + 1 tokens live until T0 + 900, accepted until T0 + 960"
    );
    app.clock.advance(1);
    let f = app.feed(None).await;
    assert_eq!(f["subjects"], json!([]));
    assert_eq!(f["revoked_before"], json!(null));
}

/// Issue 12, finding 6: the edge's defaults (max_response_bytes, max_revocation_entries)
/// as the core's configuration gives them when nothing is set.
fn edge_defaults() -> (usize, usize) {
    let doc = json!({"auth_service": {"cluster": "auth", "token_env": "T"}, "rules": []});
    let token = "t".repeat(32);
    let cfg = edge_auth_core::config::parse(doc.to_string().as_bytes(), &|_| Some(token.clone())).unwrap();
    let svc = cfg.auth_service.unwrap();
    (svc.max_response_bytes, svc.max_revocation_entries)
}

/// Issue 12, finding 6: after 100,000 live sessions are revoked (all at once, or by
/// their subjects' logout everywhere), the snapshot a new edge gets fits its defaults:
/// the cut-offs cover the sessions, which are not listed one by one.
async fn the_snapshot_after_revoking_100000_sessions_fits_the_edges_defaults(b: Backend) {
    let (app, key_id, _) = app_with_key_on(b).await;
    const N: i64 = 100_000;
    // 100,000 sessions of 1,000 subjects, written in one statement (the API would take minutes).
    sync(|| {
        app.svc.db().write(|c| {
            c.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
                 INSERT INTO sessions (sid, tenant, subject, scopes, key_id, created_at, expires_at) \
                 SELECT 'ses_zzzzzzzzzzzzzzzzzzz' || CAST(1000000 + i AS TEXT), 'acme', \
                        'user-' || CAST(i % 1000 AS TEXT), '[]', ?2, ?3, ?4 FROM n",
                edge_auth_service::vals![N, &key_id, T0, T0 + 604_800],
            )
        })
    })
    .unwrap();
    assert_eq!(app.count("sessions"), N);
    let (max_bytes, max_entries) = edge_defaults();

    // Half of the subjects log out everywhere, then the operator revokes everything.
    for i in 0..500 {
        let r = app
            .admin(
                Method::POST,
                &format!("/admin/v1/tenants/acme/subjects/user-{i}/revoke"),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let r = app.admin(Method::POST, "/admin/v1/revoke-all", None).await;
    assert_eq!(r.body["sessions_revoked"], N / 2);
    let snap = app.feed(None).await;
    let bytes = serde_json::to_vec(&snap).unwrap().len();
    let entries = ["subjects", "sessions", "jtis", "tenants"]
        .iter()
        .map(|k| snap[k].as_array().unwrap().len())
        .sum::<usize>();
    assert!(bytes <= max_bytes, "{bytes} bytes > the edge's {max_bytes}");
    assert!(entries <= max_entries, "{entries} entries > the edge's {max_entries}");
    assert_eq!(snap["sessions"], json!([]), "the cut-offs cover every session");
    assert_eq!(entries, 500, "one entry per subject");
    assert_eq!(snap["revoked_before"], T0 + 1);
    // the sessions are revoked all the same: none can be refreshed (checked in the sessions tests)
    let live: i64 = sync(|| {
        app.svc.db().read(|c| {
            c.query_one("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL", &[])?
                .int(0)
        })
    })
    .unwrap();
    assert_eq!(live, 0);
}

/// Sessions and refresh tokens are deleted once no token of theirs can be accepted
/// (the table's growth is bounded by the session lifetime); live ones stay.
async fn retention_deletes_ended_sessions_and_their_refresh_tokens(b: Backend) {
    let (app, _, raw) = app_with_key_on(b).await;
    let old = app.open_session(&raw, "u").await;
    let r = app.refresh(&raw, &old["refresh_token"]).await;
    assert_eq!(r.status, StatusCode::OK);
    app.clock.advance(604_000);
    let young = app.open_session(&raw, "u").await;
    assert_eq!((app.count("sessions"), app.count("refresh_tokens")), (2, 3));
    // the old session ends at T0 + 604800; its last token is accepted until + 960
    app.clock.set(T0 + 604_800 + 960);
    sync(|| app.svc.enforce_retention()).unwrap();
    assert_eq!((app.count("sessions"), app.count("refresh_tokens")), (2, 3), "not yet");
    app.clock.advance(1);
    sync(|| app.svc.enforce_retention()).unwrap();
    assert_eq!((app.count("sessions"), app.count("refresh_tokens")), (1, 1));
    let r = app.refresh(&raw, &young["refresh_token"]).await;
    assert_eq!(r.status, StatusCode::OK, "the live session is kept");
}

backends!(
    empty_snapshot,
    snapshot_then_incremental,
    unknown_cursors_reset,
    entries_leave_the_snapshot_when_they_expire,
    the_snapshot_after_revoking_100000_sessions_fits_the_edges_defaults,
    retention_deletes_ended_sessions_and_their_refresh_tokens,
);
