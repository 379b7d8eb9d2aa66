use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

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
        "webhooks": [{"key_id": "key_x"}],
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
