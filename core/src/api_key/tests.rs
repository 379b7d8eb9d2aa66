use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

const KEY: &str = "sk_20461de3ee4a57fe3611338284344655d8b1dff13bde3406141f9ba472ba2fb1";
const KEY_HASH: &str = "2ef626683da91ed223b8e00ba57046fafb18e6465a481a76d5875d41fb8aba3d";
const NOW: u64 = 1_795_000_000;
const MAX: usize = 64 * 1024;

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

fn valid_json() -> Value {
    json!({
        "key_hash": KEY_HASH,
        "status": "valid",
        "key_id": "key_mepybc6vdnwbtgbcqqchcvqb6w",
        "tenant": "acme",
        "subject": "svc-billing",
        "scopes": ["orders:read"],
        "ip_allowlist": ["203.0.113.0/24"],
        "allowed_origins": ["https://app.acme.example"],
        "expires_at": 1_824_536_000u64,
        "cache_ttl_s": 300
    })
}

fn parse_value(v: &Value) -> Result<Lookup, LookupFailure> {
    parse_lookup(Some(200), Some(v.to_string().as_bytes()), MAX, NOW, KEY_HASH)
}

/// `s` as sent, for bodies that are refused before their `key_hash` matters.
fn parse_str(s: &str) -> Result<Lookup, LookupFailure> {
    parse_lookup(Some(200), Some(s.as_bytes()), MAX, NOW, KEY_HASH)
}

/// `s` with `"key_hash":"<KEY_HASH>",` put first in its object, as a
/// contract v1.1 service answers.
fn bound(s: &str) -> String {
    s.replacen('{', &format!("{{\"key_hash\":\"{KEY_HASH}\","), 1)
}

/// A well-formed answer body, bound to KEY_HASH.
fn parse_bound(s: &str) -> Result<Lookup, LookupFailure> {
    parse_str(&bound(s))
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn example_record() -> KeyRecord {
    KeyRecord::new(
        "key_mepybc6vdnwbtgbcqqchcvqb6w".into(),
        "acme".into(),
        "svc-billing".into(),
        strings(&["orders:read"]),
        strings(&["203.0.113.0/24"]),
        strings(&["https://app.acme.example"]),
        Some(1_824_536_000),
    )
    .unwrap()
}

// ---- key format -------------------------------------------------------

#[test]
fn format_accepts_contract_keys() {
    let f = KeyFormat::default();
    assert_eq!(
        f,
        KeyFormat {
            prefix: "sk_".into(),
            hex_len: 64
        }
    );
    assert!(f.accepts(KEY));
    assert!(f.accepts(&format!("sk_{}", "0".repeat(64))));
    assert!(f.accepts(&format!("sk_{}", "f".repeat(64))));
    assert!(f.accepts(&format!("sk_{}", "0123456789abcdef".repeat(4))));
}

#[test]
fn format_refuses_everything_else() {
    let f = KeyFormat::default();
    let hex = &KEY[3..];
    let refused = [
        String::new(),
        "sk_".to_string(),
        format!("pk_{hex}"),
        format!("SK_{hex}"),
        format!("sk-{hex}"),
        format!("sk{hex}"),
        hex.to_string(),
        format!("sk_{}", hex.to_uppercase()),
        format!("sk_{}A", &hex[..63]),
        format!("sk_{}", &hex[..63]),
        format!("sk_{hex}0"),
        format!("sk_{}g", &hex[..63]),
        format!("sk_{}-", &hex[..63]),
        format!("sk_{}é", &hex[..62]),
        format!("sk_{}é", &hex[..63]),
        format!("sk_{}\u{0660}", &hex[..62]),
        format!(" {KEY}"),
        format!("{KEY} "),
        format!("{KEY}\n"),
        format!("sk_{} ", &hex[..63]),
        format!("sk_{}\0", &hex[..63]),
        format!("Bearer {KEY}"),
        format!("sk_{}", "a".repeat(10 * 1024)),
        "x".repeat(10 * 1024),
    ];
    for k in &refused {
        assert!(!f.accepts(k), "accepted {k:?}");
    }
}

#[test]
fn format_is_configurable() {
    let f = KeyFormat {
        prefix: "ek_live_".into(),
        hex_len: 32,
    };
    assert!(f.accepts(&format!("ek_live_{}", "a1".repeat(16))));
    assert!(!f.accepts(&format!("ek_live_{}", "a1".repeat(17))));
    assert!(!f.accepts(KEY));
    // A huge hex_len cannot overflow the length computation.
    let f = KeyFormat {
        prefix: "sk_".into(),
        hex_len: usize::MAX,
    };
    assert!(!f.accepts(KEY));
}

// ---- key hash and request body ------------------------------------------

#[test]
fn key_hash_matches_contract_vector() {
    // printf %s sk_20461de3...2fb1 | sha256sum
    assert_eq!(key_hash(KEY), KEY_HASH);
    // printf %s sk_000...000 | sha256sum
    assert_eq!(
        key_hash(&format!("sk_{}", "0".repeat(64))),
        "0d7f11803834307e0a89dbf3e61485c9aa4e1564ad5c0ff0b4807d4bdc333824"
    );
    // printf %s '' | sha256sum
    assert_eq!(
        key_hash(""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    // With a trailing newline it is another hash (the contract's "common mistake").
    assert!(key_hash(&format!("{KEY}\n")).starts_with("674c7dc4"));
    let h = key_hash(KEY);
    assert_eq!(h.len(), 64);
    assert!(h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
}

#[test]
fn lookup_body_is_the_contract_request() {
    let body = lookup_body(KEY_HASH);
    assert_eq!(body, format!("{{\"key_hash\":\"{KEY_HASH}\"}}"));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v, json!({ "key_hash": KEY_HASH }));
    // Escaped, whatever the caller passes.
    let v: Value = serde_json::from_str(&lookup_body("a\"b\\c")).unwrap();
    assert_eq!(v["key_hash"], "a\"b\\c");
}

// ---- parse_lookup: the four statuses --------------------------------------

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

// ---- failures ---------------------------------------------------------------

#[test]
fn failures_by_status_and_body() {
    let ok = bound(r#"{"status":"unknown","cache_ttl_s":30}"#);
    let ok = ok.as_bytes();
    assert_eq!(
        parse_lookup(None, Some(ok), MAX, NOW, KEY_HASH),
        Err(LookupFailure::NoResponse)
    );
    assert_eq!(
        parse_lookup(None, None, MAX, NOW, KEY_HASH),
        Err(LookupFailure::NoResponse)
    );
    let err401 = br#"{"error": "invalid_service_token", "error_description": "the service token is missing or wrong"}"#;
    assert_eq!(
        parse_lookup(Some(401), Some(err401), MAX, NOW, KEY_HASH),
        Err(LookupFailure::Status(401))
    );
    for s in [100, 201, 204, 301, 304, 400, 403, 404, 500, 502, 503, 504] {
        assert_eq!(
            parse_lookup(Some(s), Some(ok), MAX, NOW, KEY_HASH),
            Err(LookupFailure::Status(s))
        );
    }
    assert_eq!(
        parse_lookup(Some(200), None, MAX, NOW, KEY_HASH),
        Err(LookupFailure::Malformed)
    );
    assert_eq!(
        parse_lookup(Some(200), Some(b""), MAX, NOW, KEY_HASH),
        Err(LookupFailure::Malformed)
    );
    assert_eq!(
        parse_lookup(Some(200), Some(ok), ok.len(), NOW, KEY_HASH).map(|l| l.answer),
        Ok(Answer::Unknown)
    );
    assert_eq!(
        parse_lookup(Some(200), Some(ok), ok.len() - 1, NOW, KEY_HASH),
        Err(LookupFailure::TooLarge)
    );
    let big = format!(r#"{{"status":"unknown","cache_ttl_s":30,"pad":"{}"}}"#, "x".repeat(MAX));
    assert_eq!(
        parse_lookup(Some(200), Some(big.as_bytes()), MAX, NOW, KEY_HASH),
        Err(LookupFailure::TooLarge)
    );
    // Oversized garbage is too large, not malformed: the size is checked first.
    assert_eq!(
        parse_lookup(Some(200), Some(&vec![0xff; MAX + 1]), MAX, NOW, KEY_HASH),
        Err(LookupFailure::TooLarge)
    );
}

#[test]
fn failure_names() {
    assert_eq!(LookupFailure::NoResponse.name(), "timeout");
    assert_eq!(LookupFailure::Status(401).name(), "status");
    assert_eq!(LookupFailure::TooLarge.name(), "too_large");
    assert_eq!(LookupFailure::Malformed.name(), "malformed");
    assert_eq!(
        LookupFailure::Status(503).to_string(),
        "the auth service answered with status 503"
    );
}

#[test]
fn non_json_and_non_objects_are_malformed() {
    for body in [
        "null",
        "[]",
        r#"["valid", 300]"#,
        r#"["unknown", 30]"#,
        "\"unknown\"",
        "30",
        "true",
        "not json",
        "{",
        r#"{"status":"unknown","cache_ttl_s":30"#,
        r#"{"status":"unknown","cache_ttl_s":30}garbage"#,
        r#"{"status":"unknown","cache_ttl_s":30}{}"#,
        "\u{feff}{\"status\":\"unknown\",\"cache_ttl_s\":30}",
        "{}",
    ] {
        assert_eq!(parse_str(body), Err(LookupFailure::Malformed), "{body}");
    }
    let invalid_utf8 = b"{\"status\":\"unknown\",\"cache_ttl_s\":30,\"x\":\"\xff\"}";
    assert_eq!(
        parse_lookup(Some(200), Some(invalid_utf8), MAX, NOW, KEY_HASH),
        Err(LookupFailure::Malformed)
    );
}

#[test]
fn status_and_ttl_are_strict() {
    for body in [
        r#"{"cache_ttl_s":30}"#,
        r#"{"status":null,"cache_ttl_s":30}"#,
        r#"{"status":1,"cache_ttl_s":30}"#,
        r#"{"status":"UNKNOWN","cache_ttl_s":30}"#,
        r#"{"status":"Valid","cache_ttl_s":30}"#,
        r#"{"status":"suspended","cache_ttl_s":30}"#,
        r#"{"status":"","cache_ttl_s":30}"#,
        r#"{"status":"unknown "," cache_ttl_s":30}"#,
        r#"{"status":"unknown"}"#,
        r#"{"status":"unknown","cache_ttl_s":null}"#,
        r#"{"status":"unknown","cache_ttl_s":-1}"#,
        r#"{"status":"unknown","cache_ttl_s":30.0}"#,
        r#"{"status":"unknown","cache_ttl_s":30.5}"#,
        r#"{"status":"unknown","cache_ttl_s":"30"}"#,
        r#"{"status":"unknown","cache_ttl_s":1e2}"#,
        r#"{"status":"unknown","cache_ttl_s":18446744073709551616}"#,
        r#"{"status":"unknown","status":"valid","cache_ttl_s":30}"#,
        r#"{"status":"unknown","cache_ttl_s":30,"cache_ttl_s":300}"#,
    ] {
        assert_eq!(parse_str(body), Err(LookupFailure::Malformed), "{body}");
    }
}

#[test]
fn revoked_and_expired_need_a_key_id() {
    for status in ["revoked", "expired"] {
        for key_id in [
            None,
            Some(Value::Null),
            Some(json!(7)),
            Some(json!("")),
            Some(json!("key\n1")),
        ] {
            let mut v = json!({"status": status, "cache_ttl_s": 30});
            if let Some(k) = key_id {
                v["key_id"] = k;
            }
            assert_eq!(parse_value(&v), Err(LookupFailure::Malformed), "{v}");
        }
    }
}

#[test]
fn valid_needs_every_field() {
    for field in [
        "key_id",
        "tenant",
        "subject",
        "scopes",
        "ip_allowlist",
        "allowed_origins",
        "expires_at",
        "cache_ttl_s",
    ] {
        let mut v = valid_json();
        v.as_object_mut().unwrap().remove(field);
        assert_eq!(parse_value(&v), Err(LookupFailure::Malformed), "without {field}");
        if field != "expires_at" {
            let mut v = valid_json();
            v[field] = Value::Null;
            assert_eq!(parse_value(&v), Err(LookupFailure::Malformed), "{field}: null");
        }
    }
}

#[test]
fn valid_fields_have_strict_types() {
    let cases: [(&str, Value); 17] = [
        ("key_id", json!(1)),
        ("key_id", json!(["key_x"])),
        ("tenant", json!(true)),
        ("tenant", json!({"name": "acme"})),
        ("subject", json!(12)),
        ("scopes", json!("orders:read")),
        ("scopes", json!([1])),
        ("scopes", json!([null])),
        ("scopes", json!([["orders:read"]])),
        ("scopes", json!({"0": "orders:read"})),
        ("ip_allowlist", json!("203.0.113.0/24")),
        ("ip_allowlist", json!([203])),
        ("allowed_origins", json!("https://app.acme.example")),
        ("allowed_origins", json!([{"origin": "https://app.acme.example"}])),
        ("expires_at", json!("1824536000")),
        ("expires_at", json!(-1)),
        ("expires_at", json!(1.8e9)),
    ];
    for (field, value) in cases {
        let mut v = valid_json();
        v[field] = value;
        assert_eq!(parse_value(&v), Err(LookupFailure::Malformed), "{v}");
    }
}

#[test]
fn valid_fields_have_valid_values() {
    let cases: [(&str, Value); 22] = [
        ("key_id", json!("")),
        ("tenant", json!("")),
        ("subject", json!("")),
        ("tenant", json!("acme\r\nx-injected: 1")),
        ("subject", json!("svc\u{0000}")),
        ("scopes", json!([""])),
        ("scopes", json!(["orders read"])),
        ("scopes", json!(["orders:read", "a\"b"])),
        ("scopes", json!(["back\\slash"])),
        ("scopes", json!(["caf\u{e9}"])),
        ("scopes", json!(["x".repeat(257)])),
        ("ip_allowlist", json!(["203.0.113.7/24"])),
        ("ip_allowlist", json!(["203.0.113.0/33"])),
        ("ip_allowlist", json!([""])),
        ("ip_allowlist", json!([" 203.0.113.0/24"])),
        ("ip_allowlist", json!(["fe80::1%eth0"])),
        ("ip_allowlist", json!(["[2001:db8::1]:443"])),
        ("ip_allowlist", json!(["203.0.113.0/24", "not-an-ip"])),
        ("allowed_origins", json!(["*"])),
        ("allowed_origins", json!(["null"])),
        ("allowed_origins", json!(["https://app.acme.example/"])),
        ("allowed_origins", json!(["https://*.com"])),
    ];
    for (field, value) in cases {
        let mut v = valid_json();
        v[field] = value;
        assert_eq!(parse_value(&v), Err(LookupFailure::Malformed), "{v}");
    }
    for origin in [
        "ftp://app.acme.example",
        "https://user@app.acme.example",
        "https://*.192.0.2.1",
        "app.acme.example",
    ] {
        let mut v = valid_json();
        v["allowed_origins"] = json!([origin]);
        assert_eq!(parse_value(&v), Err(LookupFailure::Malformed), "{origin}");
    }
}

#[test]
fn key_record_new_reports_the_bad_entry() {
    let e = KeyRecord::new(
        "key_x".into(),
        "acme".into(),
        "svc".into(),
        vec![],
        strings(&["10.0.0.0/8", "10.0.0.1/8"]),
        vec![],
        None,
    )
    .unwrap_err();
    assert!(e.starts_with("ip_allowlist[1]"), "{e}");
    let e = KeyRecord::new(
        "key_x".into(),
        "acme".into(),
        "svc".into(),
        strings(&["a b"]),
        vec![],
        vec![],
        None,
    )
    .unwrap_err();
    assert!(e.starts_with("scopes[0]"), "{e}");
    let e = KeyRecord::new(
        "key_x".into(),
        "acme".into(),
        "svc".into(),
        vec![],
        vec![],
        strings(&["*"]),
        None,
    )
    .unwrap_err();
    assert!(e.starts_with("allowed_origins[0]"), "{e}");
}

// ---- cross-worker cache encoding ------------------------------------------

fn all_lookups() -> Vec<Lookup> {
    let mut no_expiry = example_record();
    no_expiry.expires_at = None;
    let mut v = valid_json();
    v["scopes"] = json!([]);
    v["ip_allowlist"] = json!(["2001:db8::/32", "::ffff:10.0.0.0/104", "192.0.2.7"]);
    v["allowed_origins"] = json!(["https://*.acme.example:8443", "HTTPS://APP.ACME.EXAMPLE:443"]);
    let Answer::Valid(odd) = parse_value(&v).unwrap().answer else {
        panic!()
    };
    vec![
        Lookup {
            answer: Answer::Valid(example_record()),
            cache_ttl_s: 300,
        },
        Lookup {
            answer: Answer::Valid(no_expiry),
            cache_ttl_s: 0,
        },
        Lookup {
            answer: Answer::Valid(odd),
            cache_ttl_s: 17,
        },
        Lookup {
            answer: Answer::Unknown,
            cache_ttl_s: 30,
        },
        Lookup {
            answer: Answer::Revoked { key_id: "key_a".into() },
            cache_ttl_s: 30,
        },
        Lookup {
            answer: Answer::Expired { key_id: "key_b".into() },
            cache_ttl_s: u64::MAX,
        },
    ]
}

#[test]
fn cache_round_trip() {
    for l in all_lookups() {
        let until = NOW + 300;
        let bytes = encode_cached(&l, until);
        assert_eq!(
            decode_cached(&bytes),
            Some((l.clone(), until)),
            "{}",
            String::from_utf8_lossy(&bytes)
        );
        // Every prefix of an entry is refused.
        for n in 0..bytes.len() {
            assert_eq!(decode_cached(&bytes[..n]), None, "prefix of {n} bytes");
        }
    }
}

#[test]
fn cache_encoding_is_versioned_json() {
    let bytes = encode_cached(
        &Lookup {
            answer: Answer::Unknown,
            cache_ttl_s: 30,
        },
        42,
    );
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        v,
        json!({"v": 1, "until": 42, "lookup": {"status": "unknown", "cache_ttl_s": 30}})
    );
    let bytes = encode_cached(
        &Lookup {
            answer: Answer::Valid(example_record()),
            cache_ttl_s: 300,
        },
        NOW + 300,
    );
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let mut lookup = valid_json();
    lookup["cache_ttl_s"] = json!(300);
    // the slot's first line carries the hash (key_cache): the entry does not repeat it
    lookup.as_object_mut().unwrap().remove("key_hash");
    assert_eq!(v, json!({"v": 1, "until": NOW + 300, "lookup": lookup}));
}

#[test]
fn cache_refuses_garbage() {
    let good = |lookup: Value| json!({"v": 1, "until": NOW, "lookup": lookup});
    let valid_lookup = valid_json();
    assert!(decode_cached(good(valid_lookup.clone()).to_string().as_bytes()).is_some());
    let mut bad: Vec<Vec<u8>> = vec![
        vec![],
        b"\0".to_vec(),
        vec![0xff; 64],
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{}".to_vec(),
        json!([1, NOW, {"status": "unknown", "cache_ttl_s": 30}])
            .to_string()
            .into_bytes(),
        json!({"v": 2, "until": NOW, "lookup": {"status": "unknown", "cache_ttl_s": 30}})
            .to_string()
            .into_bytes(),
        json!({"v": 0, "until": NOW, "lookup": {"status": "unknown", "cache_ttl_s": 30}})
            .to_string()
            .into_bytes(),
        json!({"until": NOW, "lookup": {"status": "unknown", "cache_ttl_s": 30}})
            .to_string()
            .into_bytes(),
        json!({"v": 1, "lookup": {"status": "unknown", "cache_ttl_s": 30}})
            .to_string()
            .into_bytes(),
        json!({"v": 1, "until": -1, "lookup": {"status": "unknown", "cache_ttl_s": 30}})
            .to_string()
            .into_bytes(),
        json!({"v": 1, "until": NOW}).to_string().into_bytes(),
        json!({"v": 1, "until": NOW, "lookup": null}).to_string().into_bytes(),
        json!({"v": 1, "until": NOW, "lookup": {"status": "unknown", "cache_ttl_s": 30}, "x": 1})
            .to_string()
            .into_bytes(),
        good(json!({"status": "maybe", "cache_ttl_s": 30}))
            .to_string()
            .into_bytes(),
        good(json!({"status": "revoked", "cache_ttl_s": 30}))
            .to_string()
            .into_bytes(),
        good(json!({"status": "unknown"})).to_string().into_bytes(),
    ];
    for (field, value) in [
        ("ip_allowlist", json!(["10.0.0.1/8"])),
        ("allowed_origins", json!(["*"])),
        ("scopes", json!(["a b"])),
        ("tenant", json!("")),
        ("expires_at", json!("soon")),
    ] {
        let mut l = valid_lookup.clone();
        l[field] = value;
        bad.push(good(l).to_string().into_bytes());
    }
    let mut l = valid_lookup.clone();
    l.as_object_mut().unwrap().remove("expires_at");
    bad.push(good(l).to_string().into_bytes());
    // A valid answer cached past its key's expiry.
    bad.push(
        json!({"v": 1, "until": 1_824_536_001u64, "lookup": valid_lookup})
            .to_string()
            .into_bytes(),
    );
    for b in &bad {
        assert_eq!(decode_cached(b), None, "{}", String::from_utf8_lossy(b));
    }
    // Exactly at the key's expiry is still consistent (expiry is exclusive).
    let at_expiry = json!({"v": 1, "until": 1_824_536_000u64, "lookup": valid_json()});
    assert!(decode_cached(at_expiry.to_string().as_bytes()).is_some());
}

#[test]
fn cache_decode_never_panics_on_mutations() {
    let bytes = encode_cached(
        &Lookup {
            answer: Answer::Valid(example_record()),
            cache_ttl_s: 300,
        },
        NOW + 300,
    );
    let mut seed: u32 = 0x1234_5678;
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x20, 0x80, 0xff] {
            let mut m = bytes.clone();
            m[i] ^= flip;
            let _ = decode_cached(&m);
        }
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let mut m = bytes.clone();
        m.truncate(i);
        m.extend_from_slice(&seed.to_le_bytes());
        let _ = decode_cached(&m);
    }
}
