use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

const NOW: u64 = 1_795_000_000;
const MAX: usize = 64 * 1024;
const LIMITS: Limits = Limits { max_entries: 100 };
/// The tenant claim the reference service issues.
const TC: &str = "tenant";

fn claims(v: Value) -> Claims {
    test_claims(&v)
}

fn feed(reset: bool, cursor: &str, global: Value, subjects: Value, sessions: Value, jtis: Value) -> Vec<u8> {
    json!({
        "cursor": cursor, "reset": reset, "poll_interval_s": 5, "revoked_before": global,
        "subjects": subjects, "sessions": sessions, "jtis": jtis,
    })
    .to_string()
    .into_bytes()
}

fn apply(s: &mut RevocationState, body: &[u8]) -> Result<Applied, FeedFailure> {
    s.apply(Some(200), Some(body), MAX, &LIMITS, NOW)
}

/// The example snapshot of section 5.2.
fn snapshot() -> Vec<u8> {
    feed(
        true,
        "v1.k3vq7xw2.46",
        Value::Null,
        json!([{"subject": "user-123", "revoked_before": 1_795_000_801u64}]),
        json!([{"sid": "ses_a", "expires_at": 1_795_001_500u64},
                   {"sid": "ses_b", "expires_at": 1_795_001_600u64}]),
        json!([{"jti": "jti_a", "expires_at": 1_795_000_900u64}]),
    )
}

fn synced() -> RevocationState {
    let mut s = RevocationState::new();
    apply(&mut s, &snapshot()).unwrap();
    s
}

/// Everything observable about a state, to check that a failure changed nothing.
fn observe(s: &RevocationState) -> String {
    let mut jtis: Vec<_> = s.jtis.iter().collect();
    let mut sessions: Vec<_> = s.sessions.iter().collect();
    let mut subjects: Vec<_> = s
        .subjects
        .by_subject
        .iter()
        .map(|(sub, c)| {
            let mut scoped: Vec<_> = c.per_tenant.iter().collect();
            scoped.sort();
            format!("{sub}:{:?}:{scoped:?}", c.every_tenant)
        })
        .collect();
    let mut tenants: Vec<_> = s.tenants.by_tenant.iter().collect();
    jtis.sort();
    sessions.sort();
    subjects.sort();
    tenants.sort();
    format!(
        "{jtis:?} {sessions:?} {subjects:?} {tenants:?} {} {:?} {:?} {}",
        s.subjects.len(),
        s.revoked_before,
        s.cursor,
        s.synced
    )
}

#[test]
fn new_state_is_empty_and_unsynced() {
    let s = RevocationState::new();
    assert!(!s.is_synced());
    assert_eq!(s.cursor(), None);
    assert_eq!(s.len(), 0);
    assert!(s.is_empty());
    assert_eq!(s.poll_path("/internal/v1/revocations"), "/internal/v1/revocations");
    assert!(!s.is_revoked(&claims(json!({"sub": "user-123", "jti": "jti_a", "iat": 1})), TC));
    assert!(!s.is_revoked(&claims(json!({})), TC));
}

#[test]
fn snapshot_then_incremental_merge() {
    let mut s = RevocationState::new();
    let a = apply(&mut s, &snapshot()).unwrap();
    assert_eq!(
        a,
        Applied {
            reset: true,
            changes: 4,
            poll_interval_s: 5
        }
    );
    assert!(s.is_synced());
    assert_eq!(s.cursor(), Some("v1.k3vq7xw2.46"));
    assert_eq!(s.len(), 4);
    assert_eq!(s.global_revoked_before(), None);
    assert_eq!(
        s.poll_path("/internal/v1/revocations"),
        "/internal/v1/revocations?since=v1.k3vq7xw2.46"
    );

    let inc = feed(
        false,
        "v1.k3vq7xw2.50",
        Value::Null,
        json!([{"subject": "user-123", "revoked_before": 1_795_000_700u64},
                   {"subject": "user-456", "revoked_before": 1_795_000_010u64}]),
        json!([{"sid": "ses_c", "expires_at": NOW + 100}, {"sid": "ses_a", "expires_at": NOW + 10}]),
        json!([{"jti": "jti_b", "expires_at": NOW + 100}, {"jti": "jti_c", "expires_at": NOW + 200}]),
    );
    let a = apply(&mut s, &inc).unwrap();
    // user-456, ses_c, jti_b, jti_c are new; user-123 and ses_a are not raised
    assert_eq!(
        a,
        Applied {
            reset: false,
            changes: 4,
            poll_interval_s: 5
        }
    );
    assert_eq!(s.cursor(), Some("v1.k3vq7xw2.50"));
    assert_eq!(s.len(), 8);
    // the merge never lowers what is held
    assert_eq!(s.subjects.cutoff("user-123", None).unwrap(), 1_795_000_801);
    assert_eq!(s.sessions["ses_a"], 1_795_001_500);
    for c in [
        json!({"jti": "jti_a"}),
        json!({"jti": "jti_c"}),
        json!({"sid": "ses_b"}),
        json!({"sid": "ses_c"}),
        json!({"sub": "user-456", "iat": NOW}),
        json!({"sub": "user-123", "iat": 1_795_000_800u64}),
    ] {
        assert!(s.is_revoked(&claims(c.clone()), TC), "{c}");
    }
    assert!(!s.is_revoked(
        &claims(json!({"sub": "user-456", "iat": NOW + 10, "jti": "x", "sid": "y"})),
        TC
    ));

    // an empty increment, repeating the cursor
    let empty = feed(false, "v1.k3vq7xw2.50", Value::Null, json!([]), json!([]), json!([]));
    let a = apply(&mut s, &empty).unwrap();
    assert_eq!(a.changes, 0);
    assert_eq!(s.len(), 8);
    assert_eq!(s.cursor(), Some("v1.k3vq7xw2.50"));
}

#[test]
fn merge_raises_expiry_and_subject() {
    let mut s = synced();
    let inc = feed(
        false,
        "c2",
        Value::Null,
        json!([{"subject": "user-123", "revoked_before": 1_795_000_900u64}]),
        json!([{"sid": "ses_a", "expires_at": 1_795_009_000u64}]),
        json!([]),
    );
    assert_eq!(apply(&mut s, &inc).unwrap().changes, 2);
    assert_eq!(s.subjects.cutoff("user-123", None).unwrap(), 1_795_000_900);
    assert_eq!(s.sessions["ses_a"], 1_795_009_000);
    assert_eq!(s.len(), 4);
}

#[test]
fn duplicates_in_one_answer_keep_the_later_value() {
    let mut s = RevocationState::new();
    let body = feed(
        true,
        "c",
        Value::Null,
        json!([{"subject": "u", "revoked_before": 20}, {"subject": "u", "revoked_before": 30},
                   {"subject": "u", "revoked_before": 10}]),
        json!([{"sid": "s", "expires_at": NOW + 5}, {"sid": "s", "expires_at": NOW + 50}]),
        json!([{"jti": "j", "expires_at": NOW + 50}, {"jti": "j", "expires_at": NOW + 5}]),
    );
    assert_eq!(apply(&mut s, &body).unwrap().changes, 3);
    assert_eq!(s.subjects.cutoff("u", None).unwrap(), 30);
    assert_eq!(s.sessions["s"], NOW + 50);
    assert_eq!(s.jtis["j"], NOW + 50);
}

#[test]
fn reset_replaces_the_state() {
    let mut s = synced();
    let g = feed(false, "c2", json!(NOW), json!([]), json!([]), json!([]));
    apply(&mut s, &g).unwrap();
    assert_eq!(s.global_revoked_before(), Some(NOW));

    let snap = feed(
        true,
        "v2.other.1",
        Value::Null,
        json!([{"subject": "user-9", "revoked_before": NOW}]),
        json!([]),
        json!([{"jti": "jti_z", "expires_at": NOW + 1}]),
    );
    let a = apply(&mut s, &snap).unwrap();
    assert!(a.reset);
    assert_eq!(a.changes, 2);
    assert_eq!(s.len(), 2);
    assert_eq!(s.cursor(), Some("v2.other.1"));
    // a snapshot's null global means none: the old cut-off is gone
    assert_eq!(s.global_revoked_before(), None);
    assert!(!s.is_revoked(
        &claims(json!({"jti": "jti_a", "sid": "ses_a", "sub": "user-123", "iat": 1})),
        TC
    ));
    assert!(s.is_revoked(&claims(json!({"jti": "jti_z"})), TC));
    assert!(s.is_revoked(&claims(json!({"sub": "user-9", "iat": NOW - 1})), TC));

    // a snapshot with a global cut-off counts it as a change
    let snap = feed(true, "v2.other.2", json!(NOW), json!([]), json!([]), json!([]));
    let a = apply(&mut s, &snap).unwrap();
    assert_eq!(a.changes, 1);
    assert!(s.is_empty());
    assert_eq!(s.global_revoked_before(), Some(NOW));
}

#[test]
fn increment_without_a_cursor_is_malformed() {
    let mut s = RevocationState::new();
    let inc = feed(false, "c", Value::Null, json!([]), json!([]), json!([]));
    assert_eq!(apply(&mut s, &inc), Err(FeedFailure::Malformed));
    assert!(!s.is_synced());
    assert_eq!(s.cursor(), None);

    // after request_snapshot, too, until a snapshot has been applied
    let mut s = synced();
    s.request_snapshot();
    assert_eq!(s.cursor(), None);
    assert_eq!(s.poll_path("/internal/v1/revocations"), "/internal/v1/revocations");
    assert!(s.is_synced());
    assert_eq!(s.len(), 4, "the state is kept until the snapshot arrives");
    assert_eq!(apply(&mut s, &inc), Err(FeedFailure::Malformed));
    apply(&mut s, &feed(true, "c1", Value::Null, json!([]), json!([]), json!([]))).unwrap();
    assert!(s.is_empty());
    apply(&mut s, &inc).unwrap();
    assert_eq!(s.cursor(), Some("c"));
}

#[test]
fn cursor_is_percent_encoded() {
    let mut s = RevocationState::new();
    let cursor = "a b&c=d/e?f+g%h#i~j-k_l.m\u{e9}\"";
    apply(
        &mut s,
        &feed(true, cursor, Value::Null, json!([]), json!([]), json!([])),
    )
    .unwrap();
    assert_eq!(s.cursor(), Some(cursor));
    assert_eq!(
        s.poll_path("/internal/v1/revocations"),
        "/internal/v1/revocations?since=a%20b%26c%3Dd%2Fe%3Ff%2Bg%25h%23i~j-k_l.m%C3%A9%22"
    );
    // a base path that already has a query
    assert_eq!(
        s.poll_path("/feed?x=1"),
        "/feed?x=1&since=a%20b%26c%3Dd%2Fe%3Ff%2Bg%25h%23i~j-k_l.m%C3%A9%22"
    );

    // URL-safe cursors go as they are
    apply(
        &mut s,
        &feed(true, "v1.AZaz09-_.7", Value::Null, json!([]), json!([]), json!([])),
    )
    .unwrap();
    assert_eq!(s.poll_path("/r"), "/r?since=v1.AZaz09-_.7");

    // an empty cursor asks for a snapshot next time
    apply(&mut s, &feed(true, "", Value::Null, json!([]), json!([]), json!([]))).unwrap();
    assert_eq!(s.cursor(), Some(""));
    assert_eq!(s.poll_path("/r"), "/r");
    let inc = feed(false, "c", Value::Null, json!([]), json!([]), json!([]));
    assert_eq!(apply(&mut s, &inc), Err(FeedFailure::Malformed));
}

#[test]
fn jti_and_sid() {
    let s = synced();
    assert!(s.is_revoked(&claims(json!({"jti": "jti_a", "sub": "other", "iat": NOW})), TC));
    assert!(s.is_revoked(&claims(json!({"sid": "ses_b", "sub": "other", "iat": NOW})), TC));
    assert!(!s.is_revoked(
        &claims(json!({"jti": "jti_b", "sid": "ses_c", "sub": "other", "iat": NOW})),
        TC
    ));
    // a jti value is not a sid and vice versa
    assert!(!s.is_revoked(&claims(json!({"sid": "jti_a", "jti": "ses_a"})), TC));
    // a non-string sid matches nothing
    assert!(!s.is_revoked(&claims(json!({"sid": 1})), TC));
}

#[test]
fn subject_revoked_before_is_strict() {
    let s = synced(); // user-123 revoked before 1_795_000_801
    let rb = 1_795_000_801u64;
    assert!(s.is_revoked(&claims(json!({"sub": "user-123", "iat": rb - 1})), TC));
    assert!(!s.is_revoked(&claims(json!({"sub": "user-123", "iat": rb})), TC));
    assert!(!s.is_revoked(&claims(json!({"sub": "user-123", "iat": rb + 1})), TC));
    // another subject is not affected
    assert!(!s.is_revoked(&claims(json!({"sub": "user-124", "iat": 1})), TC));
    // fractional iat is truncated to whole seconds
    assert!(s.is_revoked(&claims(json!({"sub": "user-123", "iat": 1_795_000_800.9})), TC));
}

/// A snapshot whose only entries are `subjects` and `tenants`.
fn cutoffs(subjects: Value, tenants: Value) -> RevocationState {
    let mut v: Value = serde_json::from_slice(&feed(true, "c", Value::Null, subjects, json!([]), json!([]))).unwrap();
    v["tenants"] = tenants;
    let mut s = RevocationState::new();
    apply(&mut s, v.to_string().as_bytes()).unwrap();
    s
}

#[test]
fn a_tenants_subject_cutoff_spares_the_same_sub_in_another_tenant() {
    let s = cutoffs(
        json!([{"subject": "user-1", "tenant": "acme", "revoked_before": NOW},
                   {"subject": "user-1", "tenant": "globex", "revoked_before": NOW - 100}]),
        json!([]),
    );
    assert_eq!(s.len(), 2, "one entry per subject and tenant");
    let token = |tenant: Value, iat: u64| claims(json!({"sub": "user-1", "tenant": tenant, "iat": iat}));
    assert!(s.is_revoked(&token(json!("acme"), NOW - 50), TC));
    assert!(!s.is_revoked(&token(json!("acme"), NOW), TC), "strict");
    assert!(
        !s.is_revoked(&token(json!("globex"), NOW - 50), TC),
        "globex's own cut-off is earlier"
    );
    assert!(s.is_revoked(&token(json!("globex"), NOW - 101), TC));
    assert!(
        !s.is_revoked(&token(json!("initech"), 1), TC),
        "a tenant without an entry"
    );
    // tenants compare exactly: another spelling is another tenant
    for other in ["ACME", "Acme", "acme ", " acme", "acme\u{0}", "acm"] {
        assert!(!s.is_revoked(&token(json!(other), NOW - 50), TC), "{other:?}");
    }
    // another sub in acme is untouched
    assert!(!s.is_revoked(&claims(json!({"sub": "user-2", "tenant": "acme", "iat": 1})), TC));
}

#[test]
fn a_token_that_cannot_show_its_tenant_gets_every_tenants_cutoffs() {
    let s = cutoffs(
        json!([{"subject": "user-1", "tenant": "acme", "revoked_before": NOW},
                   {"subject": "user-1", "tenant": "globex", "revoked_before": NOW - 100}]),
        json!([]),
    );
    let mut missing = json!({"sub": "user-1", "iat": NOW - 50});
    assert!(s.is_revoked(&claims(missing.clone()), TC), "no tenant claim");
    for not_a_string in [
        json!(null),
        json!(1),
        json!(["acme"]),
        json!({"acme": true}),
        json!(true),
    ] {
        missing["tenant"] = not_a_string.clone();
        assert!(s.is_revoked(&claims(missing.clone()), TC), "{not_a_string}");
    }
    // the latest of them applies
    assert!(!s.is_revoked(&claims(json!({"sub": "user-1", "iat": NOW})), TC));
    // without iat, any cut-off revokes
    assert!(s.is_revoked(&claims(json!({"sub": "user-1", "tenant": "acme"})), TC));
    assert!(s.is_revoked(&claims(json!({"sub": "user-1"})), TC));
    assert!(!s.is_revoked(&claims(json!({"sub": "user-1", "tenant": "initech"})), TC));
}

#[test]
fn the_tenant_claim_is_the_configured_one() {
    let s = cutoffs(
        json!([{"subject": "user-1", "tenant": "acme", "revoked_before": NOW}]),
        json!([]),
    );
    let c = claims(json!({"sub": "user-1", "org": "globex", "tenant": "acme", "iat": 1}));
    assert!(!s.is_revoked(&c, "org"), "read from org, not tenant");
    assert!(s.is_revoked(&c, TC));
    let c = claims(json!({"sub": "user-1", "org": "acme", "iat": 1}));
    assert!(s.is_revoked(&c, "org"));
}

#[test]
fn an_entry_without_a_tenant_applies_in_every_tenant() {
    // an operator's cut-off (null), or a service older than 1.2 (absent)
    for entry in [
        json!({"subject": "user-1", "revoked_before": NOW}),
        json!({"subject": "user-1", "revoked_before": NOW, "tenant": null}),
    ] {
        let s = cutoffs(json!([entry]), json!([]));
        for tenant in [json!("acme"), json!("globex"), json!(null)] {
            let c = claims(json!({"sub": "user-1", "tenant": tenant, "iat": NOW - 1}));
            assert!(s.is_revoked(&c, TC), "{tenant}");
        }
        assert!(!s.is_revoked(&claims(json!({"sub": "user-1", "tenant": "acme", "iat": NOW})), TC));
    }
    // both kinds for one subject: the later applies
    let s = cutoffs(
        json!([{"subject": "u", "revoked_before": NOW - 100}, {"subject": "u", "tenant": "acme", "revoked_before": NOW}]),
        json!([]),
    );
    assert_eq!(s.len(), 2);
    assert!(s.is_revoked(&claims(json!({"sub": "u", "tenant": "acme", "iat": NOW - 50})), TC));
    assert!(!s.is_revoked(&claims(json!({"sub": "u", "tenant": "globex", "iat": NOW - 50})), TC));
    assert!(s.is_revoked(&claims(json!({"sub": "u", "tenant": "globex", "iat": NOW - 101})), TC));
}

#[test]
fn tenant_cutoffs_cover_every_token_of_the_tenant() {
    let mut s = cutoffs(json!([]), json!([{"tenant": "acme", "revoked_before": NOW}]));
    assert_eq!(s.len(), 1);
    assert!(s.is_revoked(&claims(json!({"sub": "anyone", "tenant": "acme", "iat": NOW - 1})), TC));
    assert!(!s.is_revoked(&claims(json!({"sub": "anyone", "tenant": "acme", "iat": NOW})), TC));
    assert!(!s.is_revoked(&claims(json!({"sub": "anyone", "tenant": "ACME", "iat": 1})), TC));
    assert!(!s.is_revoked(&claims(json!({"sub": "anyone", "tenant": "globex", "iat": 1})), TC));
    assert!(
        s.is_revoked(&claims(json!({"sub": "anyone", "iat": NOW - 1})), TC),
        "no tenant: fail closed"
    );
    assert!(s.is_revoked(&claims(json!({"tenant": "acme"})), TC), "no iat");
    // an increment raises it (never lowers it) and adds others
    let mut inc: Value =
        serde_json::from_slice(&feed(false, "c2", Value::Null, json!([]), json!([]), json!([]))).unwrap();
    inc["tenants"] = json!([{"tenant": "acme", "revoked_before": NOW - 10}, {"tenant": "globex", "revoked_before": NOW + 10},
                                {"tenant": "globex", "revoked_before": NOW + 5}]);
    assert_eq!(apply(&mut s, inc.to_string().as_bytes()).unwrap().changes, 1);
    assert!(s.is_revoked(&claims(json!({"tenant": "acme", "iat": NOW - 1})), TC));
    assert!(s.is_revoked(&claims(json!({"tenant": "globex", "iat": NOW + 9})), TC));
    assert_eq!(s.len(), 2);
    // a snapshot without them drops them
    apply(&mut s, &feed(true, "c3", Value::Null, json!([]), json!([]), json!([]))).unwrap();
    assert!(!s.is_revoked(&claims(json!({"tenant": "acme", "iat": 1})), TC));
    assert!(s.is_empty());
}

#[test]
fn tenant_scoped_entries_count_towards_the_limit() {
    let limits = Limits { max_entries: 3 };
    let mut s = RevocationState::new();
    let mut snap: Value = serde_json::from_slice(&feed(
        true,
        "c",
        Value::Null,
        json!([{"subject": "u", "revoked_before": NOW}, {"subject": "u", "tenant": "a", "revoked_before": NOW}]),
        json!([]),
        json!([]),
    ))
    .unwrap();
    snap["tenants"] = json!([{"tenant": "a", "revoked_before": NOW}]);
    s.apply(Some(200), Some(snap.to_string().as_bytes()), MAX, &limits, NOW)
        .unwrap();
    assert_eq!(s.len(), 3);
    // the same subject in another tenant is a new entry: over the limit
    let before = observe(&s);
    let inc = feed(
        false,
        "c2",
        Value::Null,
        json!([{"subject": "u", "tenant": "b", "revoked_before": NOW}]),
        json!([]),
        json!([]),
    );
    assert_eq!(
        s.apply(Some(200), Some(&inc), MAX, &limits, NOW),
        Err(FeedFailure::TooManyEntries)
    );
    assert_eq!(observe(&s), before);
    // entries already held are not new
    let inc = feed(
        false,
        "c2",
        Value::Null,
        json!([{"subject": "u", "tenant": "a", "revoked_before": NOW + 1},
                                                          {"subject": "u", "revoked_before": NOW + 1}]),
        json!([]),
        json!([]),
    );
    assert_eq!(s.apply(Some(200), Some(&inc), MAX, &limits, NOW).unwrap().changes, 2);
    assert_eq!(s.len(), 3);
}

#[test]
fn malformed_tenants_fail_the_poll() {
    let mut s = synced();
    let before = observe(&s);
    let with = |subjects: Value, tenants: Option<Value>| {
        let mut v: Value =
            serde_json::from_slice(&feed(false, "c9", Value::Null, subjects, json!([]), json!([]))).unwrap();
        if let Some(t) = tenants {
            v["tenants"] = t;
        }
        v.to_string()
    };
    for body in [
            with(json!([{"subject": "u", "tenant": "", "revoked_before": 1}]), None),
            with(json!([{"subject": "u", "tenant": 1, "revoked_before": 1}]), None),
            with(json!([{"subject": "u", "tenant": ["a"], "revoked_before": 1}]), None),
            with(json!([]), Some(json!(null))),
            with(json!([]), Some(json!({"tenant": "a", "revoked_before": 1}))),
            with(json!([]), Some(json!([{"tenant": "", "revoked_before": 1}]))),
            with(json!([]), Some(json!([{"tenant": null, "revoked_before": 1}]))),
            with(json!([]), Some(json!([{"tenant": "a"}]))),
            with(json!([]), Some(json!([{"tenant": "a", "revoked_before": -1}]))),
            with(json!([]), Some(json!([{"tenant": "a", "revoked_before": "1"}]))),
            with(json!([]), Some(json!(["a"]))),
            r#"{"cursor":"c9","reset":false,"poll_interval_s":5,"revoked_before":null,"subjects":[{"subject":"u","tenant":"a","tenant":"b","revoked_before":1}],"sessions":[],"jtis":[]}"#.into(),
        ] {
            assert_eq!(apply(&mut s, body.as_bytes()), Err(FeedFailure::Malformed), "{body}");
            assert_eq!(observe(&s), before, "{body}");
        }
}

#[test]
fn global_revoked_before_is_strict() {
    let mut s = synced();
    apply(&mut s, &feed(false, "c2", json!(NOW), json!([]), json!([]), json!([]))).unwrap();
    assert!(s.is_revoked(&claims(json!({"sub": "anyone", "iat": NOW - 1})), TC));
    assert!(!s.is_revoked(&claims(json!({"sub": "anyone", "iat": NOW})), TC));
    assert!(!s.is_revoked(&claims(json!({"iat": NOW + 1})), TC));
}

#[test]
fn token_without_iat_fails_closed() {
    let s = synced();
    // a cut-off for its subject: revoked
    assert!(s.is_revoked(&claims(json!({"sub": "user-123"})), TC));
    // no cut-off applies to it: not revoked
    assert!(!s.is_revoked(&claims(json!({"sub": "user-999"})), TC));
    assert!(!s.is_revoked(&claims(json!({})), TC));

    let mut s = synced();
    apply(&mut s, &feed(false, "c2", json!(1), json!([]), json!([]), json!([]))).unwrap();
    // any global cut-off, however old: revoked
    assert!(s.is_revoked(&claims(json!({"sub": "user-999"})), TC));
    assert!(s.is_revoked(&claims(json!({})), TC));
    assert!(!s.is_revoked(&claims(json!({"iat": 1})), TC));
}

#[test]
fn null_global_in_increment_keeps_the_held_value() {
    let mut s = synced();
    let g = |v: Value| feed(false, "c", v, json!([]), json!([]), json!([]));
    assert_eq!(apply(&mut s, &g(json!(NOW))).unwrap().changes, 1);
    assert_eq!(s.global_revoked_before(), Some(NOW));
    // null: unchanged
    assert_eq!(apply(&mut s, &g(Value::Null)).unwrap().changes, 0);
    assert_eq!(s.global_revoked_before(), Some(NOW));
    // an earlier value does not lower it
    assert_eq!(apply(&mut s, &g(json!(NOW - 100))).unwrap().changes, 0);
    assert_eq!(s.global_revoked_before(), Some(NOW));
    assert!(s.is_revoked(&claims(json!({"iat": NOW - 50})), TC));
    // the same value changes nothing
    assert_eq!(apply(&mut s, &g(json!(NOW))).unwrap().changes, 0);
    // a later value replaces it
    assert_eq!(apply(&mut s, &g(json!(NOW + 100))).unwrap().changes, 1);
    assert_eq!(s.global_revoked_before(), Some(NOW + 100));
    assert!(s.is_revoked(&claims(json!({"iat": NOW + 99})), TC));
}

#[test]
fn expired_entries_are_dropped_at_the_boundary() {
    let mut s = RevocationState::new();
    let body = feed(
        true,
        "c",
        Value::Null,
        json!([]),
        json!([{"sid": "s_past", "expires_at": NOW - 1}, {"sid": "s_now", "expires_at": NOW},
                   {"sid": "s_next", "expires_at": NOW + 1}]),
        json!([{"jti": "j_now", "expires_at": NOW}, {"jti": "j_next", "expires_at": NOW + 1}]),
    );
    let a = apply(&mut s, &body).unwrap();
    // expires_at <= now is not kept
    assert_eq!(a.changes, 2);
    assert_eq!(s.len(), 2);
    assert!(!s.is_revoked(&claims(json!({"sid": "s_now"})), TC));
    assert!(!s.is_revoked(&claims(json!({"jti": "j_now"})), TC));
    assert!(s.is_revoked(&claims(json!({"sid": "s_next"})), TC));
    assert!(s.is_revoked(&claims(json!({"jti": "j_next"})), TC));

    s.prune(NOW);
    assert_eq!(s.len(), 2);
    s.prune(NOW + 1);
    assert_eq!(s.len(), 0);
    assert!(!s.is_revoked(&claims(json!({"sid": "s_next"})), TC));

    // subject cut-offs carry no expiry and stay
    let mut s = synced();
    s.prune(u64::MAX);
    assert_eq!(s.len(), 1);
    assert!(s.is_revoked(&claims(json!({"sub": "user-123", "iat": 1})), TC));
}

#[test]
fn merge_prunes_and_drops_expired_entries() {
    let mut s = synced(); // jti_a until 1_795_000_900
    let later = 1_795_000_900;
    let inc = feed(
        false,
        "c2",
        Value::Null,
        json!([]),
        json!([]),
        json!([{"jti": "old", "expires_at": later}, {"jti": "new", "expires_at": later + 1}]),
    );
    let a = s.apply(Some(200), Some(&inc), MAX, &LIMITS, later).unwrap();
    assert_eq!(a.changes, 1);
    assert!(
        !s.jtis.contains_key("jti_a"),
        "held expired entries are pruned on merge"
    );
    assert!(!s.jtis.contains_key("old"));
    assert!(s.jtis.contains_key("new"));
    assert_eq!(s.len(), 4);
}

#[test]
fn failures_leave_the_state_unchanged() {
    let mut s = synced();
    apply(&mut s, &feed(false, "c2", json!(NOW), json!([]), json!([]), json!([]))).unwrap();
    let before = observe(&s);
    let ok = |extra: (&str, Value)| {
        let mut v: Value = serde_json::from_slice(&feed(
            false,
            "c3",
            Value::Null,
            json!([{"subject": "x", "revoked_before": 1}]),
            json!([{"sid": "x", "expires_at": NOW + 9}]),
            json!([{"jti": "x", "expires_at": NOW + 9}]),
        ))
        .unwrap();
        if extra.1.is_null() && extra.0.starts_with('-') {
            v.as_object_mut().unwrap().remove(&extra.0[1..]);
        } else {
            v[extra.0] = extra.1;
        }
        v.to_string()
    };
    let bad_bodies: Vec<String> = vec![
            // not JSON, not an object, the wrong structure
            String::new(),
            "not json".into(),
            "null".into(),
            "[]".into(),
            "{}".into(),
            r#"{"revocations": []}"#.into(),
            format!("{} trailing", ok(("x", json!(1)))),
            // missing fields (a null global must still be present)
            ok(("-cursor", Value::Null)),
            ok(("-reset", Value::Null)),
            ok(("-poll_interval_s", Value::Null)),
            ok(("-revoked_before", Value::Null)),
            ok(("-subjects", Value::Null)),
            ok(("-sessions", Value::Null)),
            ok(("-jtis", Value::Null)),
            // wrong types
            ok(("cursor", json!(1))),
            ok(("cursor", Value::Null)),
            ok(("reset", json!("false"))),
            ok(("reset", Value::Null)),
            ok(("poll_interval_s", json!(-1))),
            ok(("poll_interval_s", json!("5"))),
            ok(("revoked_before", json!("1795000000"))),
            ok(("revoked_before", json!(-1))),
            ok(("revoked_before", json!(1.5))),
            ok(("revoked_before", json!(1e9))),
            ok(("subjects", Value::Null)),
            ok(("subjects", json!({"subject": "x", "revoked_before": 1}))),
            ok(("subjects", json!([{"subject": "x"}]))),
            ok(("subjects", json!([{"subject": 1, "revoked_before": 1}]))),
            ok(("subjects", json!([{"subject": "x", "revoked_before": null}]))),
            ok(("subjects", json!([{"sub": "x", "revoked_before": 1}]))),
            ok(("subjects", json!(["x"]))),
            ok(("sessions", json!([{"sid": "x"}]))),
            ok(("sessions", json!([{"sid": null, "expires_at": NOW + 9}]))),
            ok(("sessions", json!([{"sid": "x", "expires_at": "soon"}]))),
            ok(("sessions", json!([{"sid": "x", "expires_at": -5}]))),
            ok(("jtis", json!([{"jti": "x", "expires_at": null}]))),
            ok(("jtis", json!([{"jti": ["x"], "expires_at": NOW + 9}]))),
            ok(("jtis", json!([null]))),
            ok(("jtis", json!("x"))),
            // a duplicated field
            r#"{"cursor":"a","cursor":"b","reset":false,"poll_interval_s":5,"revoked_before":null,"subjects":[],"sessions":[],"jtis":[]}"#.into(),
        ];
    for body in &bad_bodies {
        assert_eq!(apply(&mut s, body.as_bytes()), Err(FeedFailure::Malformed), "{body}");
        assert_eq!(observe(&s), before, "{body}");
    }
    // the base body is fine: the failures above are the changes alone
    let mut copy = synced();
    apply(
        &mut copy,
        &feed(false, "c2", Value::Null, json!([]), json!([]), json!([])),
    )
    .unwrap();
    apply(&mut copy, ok(("x", json!(1))).as_bytes()).unwrap();

    let good = ok(("x", json!(1)));
    for status in [201, 204, 304, 400, 401, 404, 500, 502, 503] {
        assert_eq!(
            s.apply(Some(status), Some(good.as_bytes()), MAX, &LIMITS, NOW),
            Err(FeedFailure::Status(status))
        );
    }
    assert_eq!(
        s.apply(None, Some(good.as_bytes()), MAX, &LIMITS, NOW),
        Err(FeedFailure::NoResponse)
    );
    assert_eq!(s.apply(None, None, MAX, &LIMITS, NOW), Err(FeedFailure::NoResponse));
    assert_eq!(s.apply(Some(200), None, MAX, &LIMITS, NOW), Err(FeedFailure::Malformed));
    assert_eq!(
        s.apply(Some(200), Some(good.as_bytes()), good.len() - 1, &LIMITS, NOW),
        Err(FeedFailure::TooLarge)
    );
    assert_eq!(observe(&s), before);

    // exactly max_bytes is fine
    s.apply(Some(200), Some(good.as_bytes()), good.len(), &LIMITS, NOW)
        .unwrap();
    assert_eq!(s.cursor(), Some("c3"));
}

#[test]
fn unknown_fields_are_ignored() {
    let mut s = synced();
    let body = json!({
        "cursor": "c2", "reset": false, "poll_interval_s": 7, "revoked_before": null, "future": {"x": [1]},
        "subjects": [{"subject": "u", "revoked_before": NOW, "tenant": "acme"}],
        "sessions": [{"sid": "s", "expires_at": NOW + 1, "reason": "logout"}],
        "jtis": [{"jti": "j", "expires_at": NOW + 1, "extra": null}],
        "api_keys": [{"key_id": "key_x"}],
    })
    .to_string();
    let a = apply(&mut s, body.as_bytes()).unwrap();
    assert_eq!(
        a,
        Applied {
            reset: false,
            changes: 3,
            poll_interval_s: 7
        }
    );
    assert_eq!(s.len(), 7);
}

#[test]
fn too_many_entries_leaves_the_state_unchanged() {
    let limits = Limits { max_entries: 5 };
    // a snapshot beyond the limit
    let mut s = synced();
    let before = observe(&s);
    let jtis: Vec<Value> = (0..6)
        .map(|i| json!({"jti": format!("j{i}"), "expires_at": NOW + 1}))
        .collect();
    let big = feed(
        true,
        "c2",
        Value::Null,
        json!([]),
        json!([]),
        Value::Array(jtis.clone()),
    );
    assert_eq!(
        s.apply(Some(200), Some(&big), MAX, &limits, NOW),
        Err(FeedFailure::TooManyEntries)
    );
    assert_eq!(observe(&s), before);
    // exactly at the limit is fine
    let five = feed(
        true,
        "c2",
        Value::Null,
        json!([]),
        json!([]),
        Value::Array(jtis[..5].to_vec()),
    );
    s.apply(Some(200), Some(&five), MAX, &limits, NOW).unwrap();
    assert_eq!(s.len(), 5);

    // an increment that would take the held state past the limit
    let mut s = synced(); // 4 entries
    let before = observe(&s);
    let two = feed(
        false,
        "c2",
        json!(NOW),
        json!([{"subject": "new", "revoked_before": NOW}]),
        json!([]),
        json!([{"jti": "j9", "expires_at": NOW + 1}]),
    );
    assert_eq!(
        s.apply(Some(200), Some(&two), MAX, &limits, NOW),
        Err(FeedFailure::TooManyEntries)
    );
    assert_eq!(observe(&s), before);
    // entries already held do not count twice
    let known = feed(
        false,
        "c2",
        Value::Null,
        json!([{"subject": "user-123", "revoked_before": NOW + 5000}]),
        json!([{"sid": "ses_a", "expires_at": NOW + 5000}]),
        json!([{"jti": "j9", "expires_at": NOW + 1}]),
    );
    assert_eq!(s.apply(Some(200), Some(&known), MAX, &limits, NOW).unwrap().changes, 3);
    assert_eq!(s.len(), 5);
    // entries that expire on merge make room
    let later = 1_795_000_900; // jti_a expires
    let one = feed(
        false,
        "c3",
        Value::Null,
        json!([]),
        json!([]),
        json!([{"jti": "j10", "expires_at": later + 1}]),
    );
    assert_eq!(
        s.apply(Some(200), Some(&one), MAX, &limits, NOW),
        Err(FeedFailure::TooManyEntries)
    );
    s.apply(Some(200), Some(&one), MAX, &limits, later).unwrap();
    assert_eq!(s.len(), 4, "jti_a and j9 expired, j10 added");
    assert_eq!(s.cursor(), Some("c3"));
}

#[test]
fn an_overflowing_increment_leads_to_a_snapshot() {
    let limits = Limits { max_entries: 5 };
    let mut s = synced(); // 4 entries, cursor held
    let held = s.cursor().map(str::to_owned);
    assert!(held.is_some());
    let jtis: Vec<Value> = (0..3)
        .map(|i| json!({"jti": format!("k{i}"), "expires_at": NOW + 100}))
        .collect();
    let increment = feed(false, "c9", Value::Null, json!([]), json!([]), Value::Array(jtis));
    let failure = s.apply(Some(200), Some(&increment), MAX, &limits, NOW).unwrap_err();
    // other failures keep the cursor: the same poll is retried
    s.on_failure(FeedFailure::NoResponse);
    s.on_failure(FeedFailure::Malformed);
    assert_eq!(s.cursor().map(str::to_owned), held);
    s.on_failure(failure);
    assert_eq!(s.cursor(), None);
    assert_eq!(s.poll_path("/internal/v1/revocations"), "/internal/v1/revocations");
    assert_eq!(s.len(), 4, "the held state stays in force until the snapshot");
    // an increment is not accepted in place of the snapshot asked for
    assert_eq!(
        s.apply(Some(200), Some(&increment), MAX, &limits, NOW),
        Err(FeedFailure::Malformed)
    );
    let snapshot = feed(
        true,
        "c10",
        Value::Null,
        json!([]),
        json!([]),
        json!([{"jti": "k0", "expires_at": NOW + 100}]),
    );
    s.apply(Some(200), Some(&snapshot), MAX, &limits, NOW).unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s.cursor(), Some("c10"));
}

#[test]
fn one_megabyte_body_is_refused_unparsed() {
    let mut s = synced();
    let before = observe(&s);
    // not JSON at all: TooLarge (not Malformed) shows it was never parsed
    let body = vec![b'x'; 1 << 20];
    assert_eq!(
        s.apply(Some(200), Some(&body), MAX, &LIMITS, NOW),
        Err(FeedFailure::TooLarge)
    );
    assert_eq!(observe(&s), before);
}

#[test]
fn failure_names() {
    assert_eq!(FeedFailure::NoResponse.name(), "no_response");
    assert_eq!(FeedFailure::Status(503).name(), "bad_status");
    assert_eq!(FeedFailure::Status(503).to_string(), "bad_status (503)");
    assert_eq!(FeedFailure::TooLarge.name(), "too_large");
    assert_eq!(FeedFailure::Malformed.name(), "malformed");
    assert_eq!(FeedFailure::TooManyEntries.to_string(), "too_many_entries");
}

#[test]
fn is_revoked_with_many_entries() {
    let mut s = RevocationState::new();
    let n = 5_000;
    let jtis: Vec<Value> = (0..n)
        .map(|i| json!({"jti": format!("j{i}"), "expires_at": NOW + 1}))
        .collect();
    let sessions: Vec<Value> = (0..n)
        .map(|i| json!({"sid": format!("s{i}"), "expires_at": NOW + 1}))
        .collect();
    let body = feed(
        true,
        "c",
        Value::Null,
        json!([]),
        Value::Array(sessions),
        Value::Array(jtis),
    );
    let limits = Limits::default();
    s.apply(Some(200), Some(&body), 1 << 20, &limits, NOW).unwrap();
    assert_eq!(s.len(), 2 * n);
    let hit = claims(json!({"jti": "j4999", "sub": "u", "iat": NOW}));
    let miss = claims(json!({"jti": "j5000", "sid": "s5000", "sub": "u", "iat": NOW}));
    for _ in 0..10_000 {
        assert!(s.is_revoked(&hit, TC));
        assert!(!s.is_revoked(&miss, TC));
    }
}
