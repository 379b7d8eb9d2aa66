//! Findings 2 and 7 of issue 12, and the feed across replicas, on both engines:
//! reads never wait for a writer; an action is never acknowledged without its
//! audit record; the revocation cursor skips and repeats nothing when writers on
//! several replicas commit in any order.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use common::*;
use edge_auth_service::audit::Ctx;
use edge_auth_service::db::Conn;
use edge_auth_service::model::{NewRevocation, RevocationKind, SessionRow, Tenant};
use edge_auth_service::store;
use edge_auth_service::Clock as _;
use serde_json::{json, Value};

/// Holds a write transaction open (it has written a tenant and a feed event) until
/// the returned sender is used or dropped. Returns once the transaction is open.
fn hold_writer(app: &TestApp) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (inside_tx, inside_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let svc = app.svc.clone();
    let now = app.clock.now();
    let handle = std::thread::spawn(move || {
        svc.db()
            .write(|c| {
                let t = Tenant {
                    name: "held".into(),
                    allowed_origins: vec![],
                    ip_allowlist: vec![],
                    created_at: now,
                    disabled_at: None,
                };
                store::insert_tenant(c, &t)?;
                let event = NewRevocation {
                    kind: RevocationKind::Subject,
                    value: Some("held-subject".into()),
                    tenant: None,
                    revoked_before: Some(now + 1),
                    expires_at: now + 901,
                    key_hash: None,
                };
                store::insert_events(c, &[event], now)?;
                let _ = inside_tx.send(());
                let _ = release_rx.recv_timeout(Duration::from_secs(30));
                Ok(())
            })
            .unwrap();
    });
    inside_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the writer started");
    (release_tx, handle)
}

/// Waits (bounded) until `svc` has a write transaction started and not finished.
async fn until_writing(svc: &edge_auth_service::Service) {
    let waited = Instant::now();
    while svc.metrics.db_writes_in_flight.get() == 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the second writer never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Finding 2: a writer holding the write lock does not delay lookups or feed polls.
/// (On a3a08b9 every read waited for the one lock the writer held.)
async fn lookups_and_polls_do_not_wait_for_a_held_writer(b: Backend) {
    let (app, key_id, raw) = app_with_key_on(b).await;
    let before = app.feed(None).await;
    let (release, writer) = hold_writer(&app);
    // Another writer queues behind the held one (it needs the feed's head): it must not
    // hold up reads either.
    let svc = app.svc.clone();
    let queued = std::thread::spawn(move || svc.admin_revoke_subject(&Ctx::cli(), "queued-subject", None));
    until_writing(&app.svc).await;
    let started = Instant::now();
    let lookup = tokio::time::timeout(Duration::from_secs(3), app.lookup_raw(&raw))
        .await
        .expect("a lookup completes while a writer holds the write lock");
    assert_eq!(lookup["status"], "valid");
    assert_eq!(lookup["key_id"], key_id.as_str());
    let feed = tokio::time::timeout(Duration::from_secs(3), app.feed(before["cursor"].as_str()))
        .await
        .expect("a feed poll completes while a writer holds the write lock");
    assert_eq!(feed["reset"], false);
    assert_eq!(feed["subjects"], json!([]), "the uncommitted event is not visible");
    assert_eq!(
        feed["cursor"], before["cursor"],
        "the cursor does not pass the writer in flight"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        app.svc.metrics.db_writes_in_flight.get(),
        1,
        "the second writer is still waiting"
    );
    release.send(()).unwrap();
    writer.join().unwrap();
    sync(|| queued.join().unwrap()).unwrap();
    let after = app.feed(before["cursor"].as_str()).await;
    assert_eq!(
        after["subjects"][0]["subject"], "held-subject",
        "then the events arrive"
    );
    assert_eq!(after["subjects"][1]["subject"], "queued-subject");
}

fn tenant_request(name: &str) -> edge_auth_service::service::TenantRequest {
    edge_auth_service::service::TenantRequest {
        name: name.into(),
        allowed_origins: vec![],
        ip_allowlist: vec![],
    }
}

/// Finding 2 as it was seen: another process (the CLI, say) holds SQLite's write lock,
/// one of the service's writes waits for it (busy timeout), and a lookup goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_lookups_do_not_wait_for_a_writer_stuck_on_another_process() {
    let (app, _, raw) = app_with_key().await;
    let other = rusqlite::Connection::open(&app.db).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let svc = app.svc.clone();
    let stuck = std::thread::spawn(move || svc.create_tenant(&Ctx::cli(), tenant_request("stuck")));
    until_writing(&app.svc).await;
    let started = Instant::now();
    let lookup = tokio::time::timeout(Duration::from_secs(2), app.lookup_raw(&raw))
        .await
        .expect("the lookup does not queue behind the stuck writer");
    assert_eq!(lookup["status"], "valid");
    assert!(started.elapsed() < Duration::from_secs(2));
    other.execute_batch("COMMIT").unwrap();
    sync(|| stuck.join().unwrap()).unwrap();
}

/// Makes every audit insert fail (a trigger), as a full disk or a broken table would.
fn break_audit(app: &TestApp) {
    let sql = match app.backend {
        Backend::Sqlite => {
            "CREATE TRIGGER audit_refused BEFORE INSERT ON audit_events \
             BEGIN SELECT RAISE(ABORT, 'audit refused'); END;"
        }
        Backend::Postgres => {
            "CREATE FUNCTION audit_refused() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$ \
             LANGUAGE plpgsql; \
             CREATE TRIGGER audit_refused BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION audit_refused();"
        }
    };
    sync(|| app.svc.db().write(|c: &mut dyn Conn| c.batch(sql))).unwrap();
}

/// Finding 7: when the audit record cannot be written, the action fails and changes
/// nothing. (On a3a08b9 the record was dropped and the action acknowledged.)
async fn an_action_fails_when_its_audit_record_cannot_be_written(b: Backend) {
    let (app, _, raw) = app_with_key_on(b).await;
    let session = app.sdk("/v1/sessions", &raw, Some(json!({"subject": "user-1"}))).await;
    assert_eq!(session.status, StatusCode::CREATED);
    let rt = session.body["refresh_token"].as_str().unwrap().to_owned();
    let feed = app.feed(None).await;
    break_audit(&app);
    let before = app.snapshot();

    let r = app
        .admin(Method::POST, "/admin/v1/tenants", Some(json!({"name": "unaudited"})))
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{:?}", r.body);
    assert_eq!(r.body["error"], "internal_error");
    let r = app.admin(Method::POST, "/admin/v1/revoke-all", None).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    let r = app.sdk("/v1/sessions", &raw, Some(json!({"subject": "user-2"}))).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    let r = app
        .sdk("/v1/sessions/refresh", &raw, Some(json!({"refresh_token": rt})))
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);

    assert_eq!(app.snapshot(), before, "nothing changed");
    let after = app.feed(feed["cursor"].as_str()).await;
    assert_eq!(after["revoked_before"], Value::Null, "revoke-all did not happen");
    assert_eq!(after["cursor"], feed["cursor"]);
    // The refresh token was not spent: once the audit works again, it refreshes.
    let fixed = match b {
        Backend::Sqlite => "DROP TRIGGER audit_refused",
        Backend::Postgres => "DROP TRIGGER audit_refused ON audit_events",
    };
    sync(|| app.svc.db().write(|c: &mut dyn Conn| c.batch(fixed))).unwrap();
    let r = app
        .sdk("/v1/sessions/refresh", &raw, Some(json!({"refresh_token": rt})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
}

/// Inserts `n` live sessions of `subject` directly (fast set-up).
fn sessions(app: &TestApp, subject: &str, n: usize) -> Vec<String> {
    let now = app.clock.now();
    (0..n)
        .map(|i| {
            let row = SessionRow {
                sid: format!("ses_{subject}_{i}"),
                tenant: "acme".into(),
                subject: subject.into(),
                scopes: vec![],
                roles: vec![],
                key_id: "key_x".into(),
                created_at: now,
                expires_at: now + 3600,
                revoked_at: None,
            };
            let hash = edge_auth_service::keys::hash_secret(&row.sid);
            sync(|| app.svc.db().write(|c| store::insert_session(c, &row, &hash))).unwrap();
            row.sid
        })
        .collect()
}

/// What an edge holds after applying a feed answer.
#[derive(Default, Debug)]
struct Edge {
    cursor: Option<String>,
    sessions: BTreeSet<String>,
    subjects: BTreeSet<String>,
    /// Entries received more than once in increments.
    repeated: Vec<String>,
}

impl Edge {
    fn apply(&mut self, f: &Value) {
        assert!(
            self.cursor.is_none() || f["reset"] == false,
            "a valid cursor from another replica was answered with a reset: {f}"
        );
        for s in f["sessions"].as_array().unwrap() {
            let sid = s["sid"].as_str().unwrap().to_owned();
            if !self.sessions.insert(sid.clone()) {
                self.repeated.push(sid);
            }
        }
        for s in f["subjects"].as_array().unwrap() {
            let subject = s["subject"].as_str().unwrap().to_owned();
            if !self.subjects.insert(subject.clone()) {
                self.repeated.push(subject);
            }
        }
        self.cursor = Some(f["cursor"].as_str().unwrap().to_owned());
    }
}

/// Writers on two replicas revoke sessions and subjects at once while an edge polls
/// the replicas in turn: every revocation arrives exactly once, and a cursor from one
/// replica is valid on the other.
async fn the_feed_across_replicas_misses_and_repeats_nothing(b: Backend) {
    let app = TestApp::on(b);
    app.create_tenant("acme").await;
    let (replica, replica_router) = app.replica();
    let singles = sessions(&app, "single", 60);
    let groups: Vec<String> = (0..6).map(|i| format!("group-{i}")).collect();
    for g in &groups {
        sessions(&app, g, 8);
    }
    let start = app.feed(None).await;
    let mut edge = Edge::default();
    edge.apply(&start);

    let writers: Vec<_> = (0..4)
        .map(|w| {
            let svc = if w % 2 == 0 { app.svc.clone() } else { replica.clone() };
            let mine: Vec<String> = singles.iter().skip(w).step_by(4).cloned().collect();
            let group = groups.iter().skip(w).step_by(4).cloned().collect::<Vec<_>>();
            std::thread::spawn(move || {
                let ctx = Ctx::cli();
                for (i, sid) in mine.iter().enumerate() {
                    svc.admin_revoke_session(&ctx, sid).unwrap();
                    if i % 5 == 0 {
                        if let Some(g) = group.get(i / 5) {
                            svc.admin_revoke_subject(&ctx, g, None).unwrap();
                        }
                    }
                }
            })
        })
        .collect();
    let routers = [app.router.clone(), replica_router];
    let mut turn = 0;
    while writers.iter().any(|w| !w.is_finished()) {
        let f = feed_of(&routers[turn % 2], edge.cursor.as_deref()).await;
        edge.apply(&f);
        turn += 1;
    }
    for w in writers {
        w.join().unwrap();
    }
    let last = feed_of(&routers[turn % 2], edge.cursor.as_deref()).await;
    edge.apply(&last);
    assert!(turn >= 2, "the edge polled while the writers wrote");
    assert!(edge.repeated.is_empty(), "repeated entries: {:?}", edge.repeated);

    let snapshot = app.feed(None).await;
    let all_sessions: BTreeSet<String> = snapshot["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sid"].as_str().unwrap().to_owned())
        .collect();
    let all_subjects: BTreeSet<String> = snapshot["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subject"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        all_sessions.len(),
        60,
        "the groups' sessions are covered by their subject cut-offs"
    );
    assert_eq!(all_subjects.len(), 6);
    assert_eq!(edge.sessions, all_sessions, "every session revocation arrived");
    assert_eq!(edge.subjects, all_subjects, "every subject revocation arrived");
    assert_eq!(last["cursor"], snapshot["cursor"]);
}

/// Writers that commit out of order: the first to take an id commits last. The feed
/// never passes the one in flight, so the edge gets both, once each.
async fn an_event_committed_late_is_not_skipped(b: Backend) {
    let app = TestApp::on(b);
    app.create_tenant("acme").await;
    let (replica, replica_router) = app.replica();
    let sid = sessions(&app, "late", 1).remove(0);
    let before = app.feed(None).await;
    let (release, writer) = hold_writer(&app);
    // A second writer, on the other replica, queues behind the first.
    let second = {
        let replica = replica.clone();
        std::thread::spawn(move || replica.admin_revoke_session(&Ctx::cli(), &sid))
    };
    until_writing(&replica).await;
    let mid = feed_of(&replica_router, before["cursor"].as_str()).await;
    assert_eq!(mid["reset"], false);
    assert_eq!(
        (mid["subjects"].clone(), mid["sessions"].clone()),
        (json!([]), json!([]))
    );
    assert_eq!(mid["cursor"], before["cursor"], "nothing committed yet");
    release.send(()).unwrap();
    writer.join().unwrap();
    sync(|| second.join().unwrap()).unwrap();
    let after = app.feed(mid["cursor"].as_str()).await;
    assert_eq!(after["reset"], false);
    assert_eq!(after["subjects"][0]["subject"], "held-subject");
    assert_eq!(after["sessions"][0]["sid"], "ses_late_0");
    let again = feed_of(&replica_router, after["cursor"].as_str()).await;
    assert_eq!(
        (again["subjects"].clone(), again["sessions"].clone()),
        (json!([]), json!([]))
    );
}

/// Two services on one database share instance id and cursors; another database's cursor resets.
async fn cursors_name_the_database_not_the_process(b: Backend) {
    let app = TestApp::on(b);
    let (_, replica_router) = app.replica();
    app.admin(Method::POST, "/admin/v1/subjects/u1/revoke", None).await;
    let a = app.feed(None).await;
    let from_b = feed_of(&replica_router, a["cursor"].as_str()).await;
    assert_eq!(from_b["reset"], false);
    assert_eq!(from_b["cursor"], a["cursor"]);
    let other = TestApp::on(b);
    assert_eq!(other.feed(a["cursor"].as_str()).await["reset"], true);
}

backends!(
    lookups_and_polls_do_not_wait_for_a_held_writer,
    an_action_fails_when_its_audit_record_cannot_be_written,
    the_feed_across_replicas_misses_and_repeats_nothing,
    an_event_committed_late_is_not_skipped,
    cursors_name_the_database_not_the_process,
);
