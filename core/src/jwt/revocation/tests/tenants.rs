use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

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
