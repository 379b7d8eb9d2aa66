use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

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
