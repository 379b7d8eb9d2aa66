//! API-key revocations in the feed (contract 1.3, section 5.6): keys revoked
//! by hash or id, tenants' key cut-offs, the global key cut-off; merging,
//! expiry, limits and hostile entries.
use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

use crate::api_key::KeyRecord;

const HASH_A: &str = "2ef626683da91ed223b8e00ba57046fafb18e6465a481a76d5875d41fb8aba3d";
const HASH_B: &str = "0000000000000000000000000000000000000000000000000000000000000001";

/// A feed with only key entries (`reset` and `cursor` as given).
fn key_feed(reset: bool, cursor: &str, keys: Value, tenants: Value, global: Value) -> Vec<u8> {
    let mut v: Value =
        serde_json::from_slice(&feed(reset, cursor, Value::Null, json!([]), json!([]), json!([]))).unwrap();
    v["api_keys"] = keys;
    v["api_key_tenants"] = tenants;
    v["api_keys_revoked_before"] = global;
    v.to_string().into_bytes()
}

fn record(tenant: &str, answered_at: Option<u64>) -> KeyRecord {
    let mut r = KeyRecord::new(
        "key_mepybc6vdnwbtgbcqqchcvqb6w".into(),
        tenant.into(),
        "svc".into(),
        vec![],
        vec![],
        vec![],
        None,
    )
    .unwrap();
    r.answered_at = answered_at;
    r
}

fn snapshot_of(keys: Value, tenants: Value, global: Value) -> RevocationState {
    let mut s = RevocationState::new();
    apply(&mut s, &key_feed(true, "c1", keys, tenants, global)).unwrap();
    s
}

#[test]
fn a_key_is_listed_by_its_hash_or_its_id() {
    let s = snapshot_of(
        json!([{"key_hash": HASH_A, "expires_at": NOW + 360},
               {"key_id": "key_b", "expires_at": NOW + 360},
               {"key_hash": HASH_B, "key_id": "key_c", "expires_at": NOW + 360}]),
        json!([]),
        Value::Null,
    );
    let k = s.keys();
    assert_eq!(s.len(), 4, "two hashes and two ids");
    assert!(k.lists_hashes());
    assert!(k.lists(Some(HASH_A), None));
    assert!(k.lists(None, Some("key_b")));
    assert!(k.lists(Some(HASH_B), None) && k.lists(None, Some("key_c")));
    assert!(!k.lists(Some(&HASH_A.to_uppercase()), None), "hashes compare exactly");
    assert!(!k.lists(None, Some("KEY_B")));
    assert!(!k.lists(None, None));
    assert!(!k.lists(Some(&"f".repeat(64)), Some("key_x")));
}

#[test]
fn tenant_and_global_cut_offs_refuse_answers_computed_before_them() {
    let s = snapshot_of(
        json!([]),
        json!([{"tenant": "acme", "revoked_before": NOW}]),
        Value::Null,
    );
    let k = s.keys();
    assert!(k.predates_cut_off(&record("acme", Some(NOW - 1))));
    assert!(!k.predates_cut_off(&record("acme", Some(NOW))), "strict");
    assert!(
        !k.predates_cut_off(&record("acme", Some(NOW + 10))),
        "a key answered after"
    );
    assert!(
        !k.predates_cut_off(&record("globex", Some(NOW - 1000))),
        "another tenant"
    );
    for other in ["ACME", "acme ", "acm", " acme"] {
        assert!(!k.predates_cut_off(&record(other, Some(1))), "{other:?}");
    }
    assert!(
        k.predates_cut_off(&record("acme", None)),
        "an answer without answered_at (a service older than 1.3) fails closed"
    );
    assert!(!k.predates_cut_off(&record("globex", None)), "no cut-off applies to it");
    assert!(!k.lists_hashes());

    let g = snapshot_of(json!([]), json!([]), json!(NOW));
    assert_eq!(g.keys().global_cut_off(), Some(NOW));
    assert_eq!(g.len(), 0, "the global cut-off is not an entry");
    for tenant in ["acme", "globex", "x"] {
        assert!(g.keys().predates_cut_off(&record(tenant, Some(NOW - 1))));
        assert!(!g.keys().predates_cut_off(&record(tenant, Some(NOW))));
    }
    let both = snapshot_of(
        json!([]),
        json!([{"tenant": "acme", "revoked_before": NOW + 5}]),
        json!(NOW),
    );
    assert_eq!(both.keys().cut_off("acme"), Some(NOW + 5), "the later of the two");
    assert_eq!(both.keys().cut_off("globex"), Some(NOW));
}

#[test]
fn increments_add_keys_and_only_raise_cut_offs() {
    let mut s = snapshot_of(
        json!([{"key_hash": HASH_A, "expires_at": NOW + 100}]),
        json!([{"tenant": "acme", "revoked_before": NOW}]),
        json!(NOW - 10),
    );
    let a = apply(
        &mut s,
        &key_feed(
            false,
            "c2",
            json!([{"key_id": "key_b", "expires_at": NOW + 50}, {"key_hash": HASH_A, "expires_at": NOW + 200}]),
            json!([{"tenant": "acme", "revoked_before": NOW - 100}, {"tenant": "globex", "revoked_before": NOW}]),
            json!(NOW - 20),
        ),
    )
    .unwrap();
    assert_eq!(a.changes, 3, "key_b, HASH_A's later expiry, globex");
    assert_eq!(s.keys().cut_off("acme"), Some(NOW), "never lowered");
    assert_eq!(s.keys().global_cut_off(), Some(NOW - 10), "never lowered");
    assert!(s.keys().lists(None, Some("key_b")));
    // null leaves the global cut-off; absent fields (an older service) too
    apply(&mut s, &key_feed(false, "c3", json!([]), json!([]), Value::Null)).unwrap();
    apply(&mut s, &feed(false, "c4", Value::Null, json!([]), json!([]), json!([]))).unwrap();
    assert_eq!(s.keys().global_cut_off(), Some(NOW - 10));
    assert!(s.keys().lists(Some(HASH_A), None));
    // a snapshot replaces everything
    apply(&mut s, &key_feed(true, "c5", json!([]), json!([]), Value::Null)).unwrap();
    assert_eq!(s.keys().global_cut_off(), None);
    assert!(!s.keys().lists(Some(HASH_A), Some("key_b")));
    assert_eq!(s.keys().cut_off("acme"), None);
}

#[test]
fn revoked_keys_leave_the_state_at_their_expiry() {
    let mut s = snapshot_of(
        json!([{"key_hash": HASH_A, "expires_at": NOW + 10},
               {"key_hash": HASH_B, "expires_at": NOW},
               {"key_id": "key_old", "expires_at": NOW - 1}]),
        json!([]),
        Value::Null,
    );
    assert_eq!(s.len(), 1, "entries already expired are not taken");
    assert!(!s.keys().lists(Some(HASH_B), Some("key_old")));
    s.prune(NOW + 9);
    assert!(s.keys().lists(Some(HASH_A), None));
    s.prune(NOW + 10);
    assert!(!s.keys().lists(Some(HASH_A), None));
    assert!(!s.keys().lists_hashes());
}

#[test]
fn key_entries_count_towards_the_entry_limit() {
    let keys: Vec<Value> = (0..LIMITS.max_entries + 1)
        .map(|i| json!({"key_id": format!("key_{i}"), "expires_at": NOW + 100}))
        .collect();
    let mut s = synced();
    let before = observe(&s);
    let body = key_feed(true, "big", json!(keys), json!([]), Value::Null);
    assert_eq!(apply(&mut s, &body), Err(FeedFailure::TooManyEntries));
    assert_eq!(observe(&s), before);
    // an increment that would pass the limit with what is held
    let held = s.len();
    let keys: Vec<Value> = (0..LIMITS.max_entries + 1 - held)
        .map(|i| json!({"key_hash": format!("{i:064x}"), "expires_at": NOW + 100}))
        .collect();
    let body = key_feed(false, "more", json!(keys), json!([]), Value::Null);
    assert_eq!(apply(&mut s, &body), Err(FeedFailure::TooManyEntries));
    assert_eq!(observe(&s), before, "state and cursor unchanged");
}

#[test]
fn hostile_key_entries_are_malformed_and_change_nothing() {
    let bad_keys = [
        json!([{"expires_at": NOW + 10}]),
        json!([{"key_hash": null, "key_id": null, "expires_at": NOW + 10}]),
        json!([{"key_hash": HASH_A.to_uppercase(), "expires_at": NOW + 10}]),
        json!([{"key_hash": &HASH_A[..63], "expires_at": NOW + 10}]),
        json!([{"key_hash": format!("{HASH_A}0"), "expires_at": NOW + 10}]),
        json!([{"key_hash": format!("sk_{}", &HASH_A[3..]), "expires_at": NOW + 10}]),
        json!([{"key_id": "", "expires_at": NOW + 10}]),
        json!([{"key_id": "k".repeat(257), "expires_at": NOW + 10}]),
        json!([{"key_id": 7, "expires_at": NOW + 10}]),
        json!([{"key_id": "key_a"}]),
        json!([{"key_id": "key_a", "expires_at": -1}]),
        json!([{"key_id": "key_a", "expires_at": 1.5}]),
        json!({"key_id": "key_a", "expires_at": NOW}),
        json!("key_a"),
    ];
    for keys in bad_keys {
        let mut s = synced();
        let before = observe(&s);
        let body = key_feed(false, "x", keys.clone(), json!([]), Value::Null);
        assert_eq!(apply(&mut s, &body), Err(FeedFailure::Malformed), "{keys}");
        assert_eq!(observe(&s), before, "{keys}");
    }
    let bad_tenants = [
        json!([{"tenant": "", "revoked_before": NOW}]),
        json!([{"tenant": "acme"}]),
        json!([{"tenant": null, "revoked_before": NOW}]),
        json!([{"revoked_before": NOW}]),
        json!([{"tenant": "acme", "revoked_before": "1"}]),
    ];
    for tenants in bad_tenants {
        let mut s = synced();
        let before = observe(&s);
        let body = key_feed(false, "x", json!([]), tenants.clone(), Value::Null);
        assert_eq!(apply(&mut s, &body), Err(FeedFailure::Malformed), "{tenants}");
        assert_eq!(observe(&s), before, "{tenants}");
    }
    for global in [json!(-5), json!("1"), json!(1.5), json!([1])] {
        let mut s = synced();
        let body = key_feed(false, "x", json!([]), json!([]), global.clone());
        assert_eq!(apply(&mut s, &body), Err(FeedFailure::Malformed), "{global}");
    }
}

#[test]
fn duplicated_key_entries_count_once() {
    let s = snapshot_of(
        json!([{"key_hash": HASH_A, "expires_at": NOW + 10},
               {"key_hash": HASH_A, "expires_at": NOW + 30},
               {"key_hash": HASH_A, "expires_at": NOW + 20}]),
        json!([{"tenant": "acme", "revoked_before": NOW - 5}, {"tenant": "acme", "revoked_before": NOW}]),
        Value::Null,
    );
    assert_eq!(s.len(), 2);
    assert_eq!(s.keys().cut_off("acme"), Some(NOW));
    let mut s = s;
    s.prune(NOW + 29);
    assert!(s.keys().lists(Some(HASH_A), None), "the latest expiry won");
}
