use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

// ---- parse_lookup: the four statuses --------------------------------------

#[test]
fn proxy_answers_are_told_from_the_services() {
    assert!(is_proxy_answer(Some(504), Some("text/plain")));
    assert!(is_proxy_answer(Some(503), None));
    assert!(!is_proxy_answer(Some(503), Some("application/json")));
    assert!(!is_proxy_answer(Some(504), Some("Application/JSON; charset=utf-8")));
    assert!(!is_proxy_answer(Some(500), Some("text/plain")));
    assert!(!is_proxy_answer(Some(200), None));
    assert!(!is_proxy_answer(None, None));
}

#[test]
fn parses_valid_contract_example() {
    let l = parse_value(&valid_json()).unwrap();
    assert_eq!(l.cache_ttl_s, 300);
    assert_eq!(l.answer, Answer::Valid(example_record()));
    let Answer::Valid(r) = &l.answer else { panic!() };
    assert_eq!(r.key_id, "key_mepybc6vdnwbtgbcqqchcvqb6w");
    assert_eq!(r.tenant, "acme");
    assert_eq!(r.subject, "svc-billing");
    assert_eq!(r.scopes, vec!["orders:read"]);
    assert!(r.ip_allowlist.contains("203.0.113.9".parse().unwrap()));
    assert!(!r.ip_allowlist.contains("198.51.100.1".parse().unwrap()));
    let o = crate::policy::origin::Origin::parse("https://app.acme.example").unwrap();
    assert!(r.allowed_origins.matches(&o));
    assert_eq!(r.expires_at, Some(1_824_536_000));
    assert_eq!(l.answer.status(), "valid");
}

#[test]
fn parses_valid_with_empty_lists_and_no_expiry() {
    let mut v = valid_json();
    v["scopes"] = json!([]);
    v["ip_allowlist"] = json!([]);
    v["allowed_origins"] = json!([]);
    v["expires_at"] = Value::Null;
    let l = parse_value(&v).unwrap();
    assert_eq!(l.cache_ttl_s, 300);
    let Answer::Valid(r) = l.answer else { panic!() };
    assert!(r.scopes.is_empty() && r.ip_allowlist.is_empty() && r.allowed_origins.is_empty());
    assert_eq!(r.expires_at, None);
}

#[test]
fn parses_valid_with_ipv6_wildcards_and_many_scopes() {
    let mut v = valid_json();
    v["scopes"] = json!(["orders:read", "orders:write", "https://x.example/scope"]);
    v["ip_allowlist"] = json!(["2001:db8::/32", "192.0.2.7", "::1"]);
    v["allowed_origins"] = json!(["https://*.acme.example", "http://localhost:8080"]);
    let Answer::Valid(r) = parse_value(&v).unwrap().answer else {
        panic!()
    };
    assert_eq!(r.scopes.len(), 3);
    assert!(r.ip_allowlist.contains("2001:db8::5".parse().unwrap()));
    assert!(r.ip_allowlist.contains("192.0.2.7".parse().unwrap()));
    assert_eq!(r.allowed_origins.patterns().len(), 2);
    assert_eq!(r.ip_allowlist_raw, strings(&["2001:db8::/32", "192.0.2.7", "::1"]));
}

#[test]
fn parses_negative_contract_examples() {
    let l = parse_bound(r#"{"status": "unknown", "cache_ttl_s": 30}"#).unwrap();
    assert_eq!(
        l,
        Lookup {
            answer: Answer::Unknown,
            cache_ttl_s: 30
        }
    );
    let l =
        parse_bound(r#"{"status": "revoked", "key_id": "key_mepybc6vdnwbtgbcqqchcvqb6w", "cache_ttl_s": 30}"#).unwrap();
    assert_eq!(
        l,
        Lookup {
            answer: Answer::Revoked {
                key_id: "key_mepybc6vdnwbtgbcqqchcvqb6w".into()
            },
            cache_ttl_s: 30
        }
    );
    let l =
        parse_bound(r#"{"status": "expired", "key_id": "key_mepybc6vdnwbtgbcqqchcvqb6w", "cache_ttl_s": 30}"#).unwrap();
    assert_eq!(
        l,
        Lookup {
            answer: Answer::Expired {
                key_id: "key_mepybc6vdnwbtgbcqqchcvqb6w".into()
            },
            cache_ttl_s: 30
        }
    );
    assert_eq!(l.answer.status(), "expired");
}

#[test]
fn ignores_unknown_fields_and_whitespace() {
    let mut v = valid_json();
    v["new_field"] = json!({"nested": [1, 2, 3]});
    v["another"] = Value::Null;
    assert_eq!(parse_value(&v).unwrap().answer, Answer::Valid(example_record()));
    let l = parse_bound("\n  {\"status\":\"unknown\",\"cache_ttl_s\":30,\"key_id\":null,\"hint\":\"x\"}  \n").unwrap();
    assert_eq!(l.answer, Answer::Unknown);
    // Fields a status does not need are not required, but are type-checked.
    assert!(parse_bound(r#"{"status":"unknown","cache_ttl_s":30,"tenant":"acme"}"#).is_ok());
    assert_eq!(
        parse_str(r#"{"status":"unknown","cache_ttl_s":30,"tenant":5}"#),
        Err(LookupFailure::Malformed)
    );
}

/// Issue 11, item 2: an answer is used only for the key it names. A v1
/// answer (no `key_hash`) or one for another key, of any status, is
/// refused as [`LookupFailure::Unbound`], counted as `malformed`.
#[test]
fn answers_are_bound_to_the_key_hash_asked_about() {
    let other = key_hash("sk_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    let answers = [
        valid_json(),
        json!({"key_hash": KEY_HASH, "status": "unknown", "cache_ttl_s": 30}),
        json!({"key_hash": KEY_HASH, "status": "revoked", "key_id": "key_mepybc6vdnwbtgbcqqchcvqb6w", "cache_ttl_s": 30}),
        json!({"key_hash": KEY_HASH, "status": "expired", "key_id": "key_mepybc6vdnwbtgbcqqchcvqb6w", "cache_ttl_s": 30}),
    ];
    for answer in answers {
        let status = answer["status"].clone();
        assert!(parse_value(&answer).is_ok(), "{status}: control");
        let unbound = |key_hash: Option<Value>| {
            let mut v = answer.clone();
            match key_hash {
                Some(h) => v["key_hash"] = h,
                None => {
                    v.as_object_mut().unwrap().remove("key_hash");
                }
            }
            parse_value(&v)
        };
        for (wrong, what) in [
            (None, "a v1 answer"),
            (Some(json!(other)), "another key's hash"),
            (Some(Value::Null), "null"),
            (Some(json!(KEY_HASH.to_ascii_uppercase())), "upper case"),
            (Some(json!(format!(" {KEY_HASH}"))), "a space"),
            (Some(json!(&KEY_HASH[..63])), "one digit short"),
            (Some(json!(format!("{KEY_HASH}0"))), "one digit long"),
            (Some(json!(KEY)), "the raw key"),
            (Some(json!("")), "empty"),
        ] {
            assert_eq!(unbound(wrong), Err(LookupFailure::Unbound), "{status}: {what}");
        }
        for wrong in [json!(5), json!([KEY_HASH]), json!({"h": KEY_HASH})] {
            assert_eq!(
                unbound(Some(wrong.clone())),
                Err(LookupFailure::Malformed),
                "{status}: {wrong}"
            );
        }
        // the same answer asked about for another key
        let body = answer.to_string();
        assert_eq!(
            parse_lookup(Some(200), Some(body.as_bytes()), MAX, NOW, &other),
            Err(LookupFailure::Unbound),
            "{status}"
        );
    }
    // two key_hash fields (the right one and another): malformed, never the first or the last
    for body in [
        format!(r#"{{"key_hash":"{KEY_HASH}","key_hash":"{other}","status":"unknown","cache_ttl_s":30}}"#),
        format!(r#"{{"key_hash":"{other}","key_hash":"{KEY_HASH}","status":"unknown","cache_ttl_s":30}}"#),
        format!(r#"{{"key_hash":"{KEY_HASH}","key_hash":"{KEY_HASH}","status":"unknown","cache_ttl_s":30}}"#),
    ] {
        assert_eq!(parse_str(&body), Err(LookupFailure::Malformed), "{body}");
    }
    // a malformed answer stays malformed, bound or not
    assert_eq!(
        parse_str(r#"{"status":"suspended","cache_ttl_s":30}"#),
        Err(LookupFailure::Malformed)
    );
    assert_eq!(LookupFailure::Unbound.name(), "malformed");
    assert!(LookupFailure::Unbound.to_string().contains("v1.1"));
}

#[test]
fn cache_ttl_zero_is_accepted() {
    let l = parse_bound(r#"{"status":"unknown","cache_ttl_s":0}"#).unwrap();
    assert_eq!(l.cache_ttl_s, 0);
}

// ---- expiry capping -------------------------------------------------------

#[test]
fn valid_ttl_is_capped_by_expiry() {
    // The contract's rotation example, by the edge's clock.
    let mut v = valid_json();
    v["expires_at"] = json!(1_795_086_400u64);
    v["cache_ttl_s"] = json!(300);
    let at = |v: &Value, now| parse_lookup(Some(200), Some(v.to_string().as_bytes()), MAX, now, KEY_HASH).unwrap();
    assert_eq!(at(&v, 1_795_000_000).cache_ttl_s, 300);
    assert_eq!(at(&v, 1_795_086_300).cache_ttl_s, 100);
    assert_eq!(at(&v, 1_795_086_399).cache_ttl_s, 1);
    assert!(matches!(at(&v, 1_795_086_399).answer, Answer::Valid(_)));
    // At or after expires_at by the edge's clock: expired, whatever the service said.
    for now in [1_795_086_400, 1_795_086_401, u64::MAX] {
        let l = at(&v, now);
        assert_eq!(
            l.answer,
            Answer::Expired {
                key_id: "key_mepybc6vdnwbtgbcqqchcvqb6w".into()
            }
        );
        assert_eq!(l.cache_ttl_s, 300);
    }
    // A service ttl below the remaining time is kept.
    v["cache_ttl_s"] = json!(5);
    assert_eq!(at(&v, 1_795_000_000).cache_ttl_s, 5);
}

#[test]
fn expiry_does_not_apply_to_negative_answers() {
    let body = bound(r#"{"status":"unknown","cache_ttl_s":30}"#);
    let l = parse_lookup(Some(200), Some(body.as_bytes()), MAX, u64::MAX, KEY_HASH).unwrap();
    assert_eq!(l.cache_ttl_s, 30);
}
