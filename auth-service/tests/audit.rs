//! The audit log read in pages and filtered by time, tenant, action, outcome and actor;
//! followed with a cursor that never skips an event, even one committed late by
//! another replica (PostgreSQL hands out ids before commit).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::mpsc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::*;
use edge_auth_service::audit::Ctx;
use edge_auth_service::model::NewAudit;
use edge_auth_service::service::TenantRequest;
use edge_auth_service::store;
use edge_auth_service::Clock;
use serde_json::{json, Value};

async fn page(app: &TestApp, query: &str) -> Value {
    let r = app.admin(Method::GET, &format!("/admin/v1/audit?{query}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{query}: {:?}", r.body);
    r.body
}

fn ids(events: &Value) -> Vec<i64> {
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect()
}

async fn pages_and_filters(b: Backend) {
    let app = TestApp::on(b);
    app.create_tenant("acme").await;
    app.clock.advance(100);
    app.create_tenant("globex").await;
    app.create_key("acme", "svc-a", &[], None).await;
    app.clock.advance(100);
    let (_, gkey) = app.create_key("globex", "svc-g", &[], None).await;
    app.admin(Method::POST, "/admin/v1/tenants/nope/disable", None).await;
    app.sdk("/v1/sessions", &gkey, Some(json!({"subject": "u"}))).await;
    let all = page(&app, "limit=1000").await;
    let all_ids = ids(&all["events"]);
    assert!(all_ids.len() >= 8, "{all_ids:?}");
    assert!(all_ids.windows(2).all(|w| w[0] > w[1]), "newest first");
    assert_eq!(all["next"], Value::Null, "nothing older");

    // newest first, three at a time: every event once, in order
    let mut seen = Vec::new();
    let mut query = "limit=3".to_owned();
    loop {
        let p = page(&app, &query).await;
        seen.extend(ids(&p["events"]));
        match p["next"].as_str() {
            Some(next) => query = format!("limit=3&before={next}"),
            None => break,
        }
    }
    assert_eq!(seen, all_ids);

    // filters
    let by = |q: &'static str| {
        let app = &app;
        async move { page(app, q).await["events"].as_array().unwrap().clone() }
    };
    let acme = by("tenant=acme").await;
    assert!(
        !acme.is_empty() && acme.iter().all(|e| e["tenant"] == "acme"),
        "{acme:?}"
    );
    assert!(acme.iter().any(|e| e["action"] == "tenant.create"));
    assert!(acme.iter().any(|e| e["action"] == "key.create"));
    let globex = by("tenant=globex").await;
    assert!(
        globex.iter().any(|e| e["action"] == "session.create"),
        "SDK events carry the key's tenant"
    );
    assert!(globex.iter().any(|e| e["action"] == "api_key.auth"));
    let creates = by("action=key.create").await;
    assert_eq!(creates.len(), 2);
    let failures = by("outcome=failure").await;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["target"], "nope");
    let early = page(&app, &format!("until={}", T0 + 100)).await["events"]
        .as_array()
        .unwrap()
        .clone();
    assert!(early.iter().all(|e| e["ts"].as_i64().unwrap() < T0 + 100));
    assert!(early.iter().any(|e| e["target"] == "acme"));
    let window = page(
        &app,
        &format!("since={}&until={}&action=tenant.create", T0 + 100, T0 + 101),
    )
    .await;
    assert_eq!(window["events"].as_array().unwrap().len(), 1);
    assert_eq!(window["events"][0]["target"], "globex");
    let admin = by("actor=admin&tenant=globex&action=key.create").await;
    assert_eq!(admin.len(), 1);

    // following the log: oldest first from the beginning, then only what is new
    let first = page(&app, "after=a.0.0&limit=1000").await;
    let mut forward = ids(&first["events"]);
    forward.reverse();
    assert_eq!(forward, all_ids, "the same events, oldest first");
    let cursor = first["next"].as_str().unwrap().to_owned();
    let again = page(&app, &format!("after={cursor}")).await;
    assert_eq!(again["events"], json!([]));
    assert_eq!(again["next"], cursor.as_str(), "the cursor to poll with again");
    app.create_tenant("initech").await;
    let new = page(&app, &format!("after={cursor}")).await;
    assert_eq!(new["events"][0]["target"], "initech");

    // hostile queries
    for bad in [
        "before=a.0.0&after=a.0.0",
        "before=garbage",
        "after=a.1",
        "after=a.-1.5",
        "after=a.1.99999999999999999999",
        "after=b.1.1",
        "limit=-1",
        "since=soon",
        "color=red",
    ] {
        let r = app.admin(Method::GET, &format!("/admin/v1/audit?{bad}"), None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    // a filter that matches nothing is an empty page, not an error
    assert_eq!(by("tenant=nobody").await, Vec::<Value>::new());
}

/// Two writers commit out of order: the first to take an audit id commits last. A
/// follower that read in between gets both afterwards, in order, once each. (Without
/// the horizon, it would have been given the second, and its cursor would have passed
/// the first for good.)
async fn an_event_committed_late_is_not_skipped(b: Backend) {
    let app = TestApp::on(b);
    let (replica, _) = app.replica();
    let start = page(&app, "after=a.0.0&limit=1000").await["next"]
        .as_str()
        .unwrap()
        .to_owned();
    let (inside_tx, inside_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let svc = app.svc.clone();
    let now = app.clock.now();
    let held = std::thread::spawn(move || {
        svc.db()
            .write(|c| {
                store::lock_for_audit(c)?;
                let e = NewAudit {
                    ts: now,
                    actor: "test".into(),
                    action: "held.first".into(),
                    outcome: "success".into(),
                    ..NewAudit::default()
                };
                store::insert_audit(c, &e)?;
                let _ = inside_tx.send(());
                let _ = release_rx.recv_timeout(Duration::from_secs(30));
                Ok(())
            })
            .unwrap();
    });
    inside_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let second = std::thread::spawn(move || {
        let req = TenantRequest {
            name: "second".into(),
            allowed_origins: vec![],
            ip_allowlist: vec![],
        };
        replica.create_tenant(&Ctx::cli(), req).unwrap();
    });
    let mut second = Some(second);
    if b == Backend::Postgres {
        // PostgreSQL: the second commits now, with a higher id and transaction.
        let s = second.take().unwrap();
        sync(|| s.join().unwrap());
    } else {
        // SQLite: one writer; the second waits for the first.
        std::thread::sleep(Duration::from_millis(200));
    }
    let mid = page(&app, &format!("after={start}")).await;
    assert_eq!(mid["events"], json!([]), "nothing is final yet: {mid}");
    assert_eq!(mid["next"], start.as_str());
    release_tx.send(()).unwrap();
    sync(|| held.join().unwrap());
    if let Some(s) = second {
        sync(|| s.join().unwrap());
    }
    let after = page(&app, &format!("after={start}")).await;
    let actions: Vec<&str> = after["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["held.first", "tenant.create"]);
    let done = page(&app, &format!("after={}", after["next"].as_str().unwrap())).await;
    assert_eq!(done["events"], json!([]), "nothing twice");
}

backends!(pages_and_filters, an_event_committed_late_is_not_skipped);
