use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

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
