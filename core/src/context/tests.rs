use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::collections::HashMap;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_700_000_000;

fn scopes() -> Vec<String> {
    vec!["orders:read".to_string(), "orders:write".to_string()]
}

fn identity(scopes: &[String]) -> Identity<'_> {
    Identity {
        method: "jwt",
        subject: "user-42",
        tenant: Some("acme"),
        scopes,
        key_id: None,
        token_id: Some("tok-9f2c"),
    }
}

fn map(headers: &[(String, String)]) -> HashMap<String, String> {
    headers.iter().cloned().collect()
}

fn check(
    h: &ContextHeaders,
    m: &HashMap<String, String>,
    now: u64,
    method: &str,
    path: &str,
) -> Result<(), VerifyError> {
    verify(h, |n| m.get(n).cloned(), KEY, now, 300, method, path)
}

fn signed_map() -> (ContextHeaders, HashMap<String, String>) {
    let h = ContextHeaders::default();
    let s = scopes();
    let out = render(&h, &identity(&s), Some((KEY, NOW, "GET", "/orders/7?x=1")));
    (h, map(&out))
}

#[test]
fn prefix_validation() {
    assert_eq!(ContextHeaders::new("x-edge-auth-").unwrap(), ContextHeaders::default());
    let h = ContextHeaders::new("x-gw_").unwrap();
    assert_eq!(h.timestamp(), "x-gw_timestamp");
    for bad in ["", "X-Edge-", "x edge-", "x:edge-", "x-edge-\n", "é-", &"a".repeat(65)] {
        assert!(ContextHeaders::new(bad).is_err(), "{bad:?}");
    }
    assert!(ContextHeaders::new(&"a".repeat(64)).is_ok());
}

#[test]
fn names_lists_every_header() {
    let h = ContextHeaders::default();
    let names: Vec<&str> = h.names().collect();
    assert_eq!(
        names,
        [
            "x-edge-auth-method",
            "x-edge-auth-subject",
            "x-edge-auth-tenant",
            "x-edge-auth-scopes",
            "x-edge-auth-key-id",
            "x-edge-auth-token-id",
            "x-edge-auth-timestamp",
            "x-edge-auth-signature",
        ]
    );
    // Everything render can emit is in names().
    let s = scopes();
    let id = Identity {
        key_id: Some("k1"),
        ..identity(&s)
    };
    for (name, _) in render(&h, &id, Some((KEY, NOW, "GET", "/"))) {
        assert!(names.contains(&name.as_str()), "{name}");
    }
}

#[test]
fn render_unsigned() {
    let h = ContextHeaders::default();
    let s = scopes();
    let out = render(&h, &identity(&s), None);
    let expect: Vec<(String, String)> = [
        ("x-edge-auth-method", "jwt"),
        ("x-edge-auth-subject", "user-42"),
        ("x-edge-auth-tenant", "acme"),
        ("x-edge-auth-scopes", "orders:read orders:write"),
        ("x-edge-auth-token-id", "tok-9f2c"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(out, expect);
}

#[test]
fn render_minimal_api_key() {
    let h = ContextHeaders::new("x-gw-").unwrap();
    let id = Identity {
        method: "api_key",
        subject: "svc-billing",
        tenant: None,
        scopes: &[],
        key_id: Some("ak_123"),
        token_id: None,
    };
    let out = render(&h, &id, None);
    assert_eq!(
        out,
        vec![
            ("x-gw-method".to_string(), "api_key".to_string()),
            ("x-gw-subject".to_string(), "svc-billing".to_string()),
            ("x-gw-key-id".to_string(), "ak_123".to_string()),
        ]
    );
}

#[test]
fn render_signed_adds_timestamp_and_signature() {
    let (_, m) = signed_map();
    assert_eq!(m.len(), 7);
    assert_eq!(m["x-edge-auth-timestamp"], NOW.to_string());
    let sig = &m["x-edge-auth-signature"];
    assert!(sig.starts_with("v1="));
    assert_eq!(sig.len(), 3 + 64);
    assert!(sig[3..]
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
}

#[test]
fn header_safety() {
    assert!(is_header_safe("user 42"));
    assert!(is_header_safe("a~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./"));
    for bad in ["", " lead", "trail ", "a\nb", "a\rb", "a\tb", "a\0b", "a\u{7f}b", "né"] {
        assert!(!is_header_safe(bad), "{bad:?}");
    }
}

#[test]
fn unsafe_values_are_left_out_and_signed_as_absent() {
    let h = ContextHeaders::default();
    let s = vec![
        "ok".to_string(),
        "bad\nscope".to_string(),
        "two words".to_string(),
        "".to_string(),
        "fine".to_string(),
    ];
    let id = Identity {
        method: "jwt",
        subject: "evil\r\nx-admin: 1",
        tenant: Some("acmé"),
        scopes: &s,
        key_id: Some(" k"),
        token_id: Some("t\u{0}"),
    };
    let out = render(&h, &id, Some((KEY, NOW, "GET", "/")));
    let m = map(&out);
    assert_eq!(m.get("x-edge-auth-subject"), None);
    assert_eq!(m.get("x-edge-auth-tenant"), None);
    assert_eq!(m.get("x-edge-auth-key-id"), None);
    assert_eq!(m.get("x-edge-auth-token-id"), None);
    assert_eq!(m["x-edge-auth-scopes"], "ok fine");
    for (name, value) in &out {
        assert!(is_header_safe(value), "{name}: {value:?}");
    }
    assert_eq!(check(&h, &m, NOW, "GET", "/"), Ok(()));

    // No scope qualifies: no scopes header.
    let s = vec!["a b".to_string(), "\u{1}".to_string()];
    let out = render(&h, &identity(&s), None);
    assert!(out.iter().all(|(n, _)| n != "x-edge-auth-scopes"));
}

#[test]
fn unsafe_request_line_is_not_signed() {
    let h = ContextHeaders::default();
    let s = scopes();
    for (method, path) in [("GET", "/a\nb"), ("GE\rT", "/"), ("GET", ""), ("", "/")] {
        let m = map(&render(&h, &identity(&s), Some((KEY, NOW, method, path))));
        assert_eq!(m.get("x-edge-auth-signature"), None);
        assert_eq!(m.get("x-edge-auth-timestamp"), None);
        assert_eq!(m["x-edge-auth-subject"], "user-42");
    }
}

#[test]
fn verify_accepts_what_render_signed() {
    let (h, m) = signed_map();
    assert_eq!(check(&h, &m, NOW, "GET", "/orders/7?x=1"), Ok(()));
    // Within the window on both sides.
    assert_eq!(check(&h, &m, NOW + 300, "GET", "/orders/7?x=1"), Ok(()));
    assert_eq!(check(&h, &m, NOW - MAX_FUTURE_SKEW_S, "GET", "/orders/7?x=1"), Ok(()));
    // A custom prefix round-trips too.
    let h = ContextHeaders::new("x-gw-").unwrap();
    let s = scopes();
    let m = map(&render(&h, &identity(&s), Some((KEY, NOW, "POST", "/"))));
    assert!(m.contains_key("x-gw-signature"));
    assert_eq!(check(&h, &m, NOW, "POST", "/"), Ok(()));
}

#[test]
fn verify_rejects_changed_removed_or_added_values() {
    let (h, m) = signed_map();
    let ok = |m: &HashMap<String, String>| check(&h, m, NOW, "GET", "/orders/7?x=1");
    for name in h.signed() {
        // Change (or add, for the absent key-id).
        let mut t = m.clone();
        let changed = format!("{}x", t.get(name).cloned().unwrap_or_default());
        t.insert(name.to_string(), changed);
        assert_eq!(ok(&t), Err(VerifyError::BadSignature), "change {name}");
        // Remove (present ones).
        if m.contains_key(name) {
            let mut t = m.clone();
            t.remove(name);
            assert_eq!(ok(&t), Err(VerifyError::BadSignature), "remove {name}");
        }
    }
    // Moving a value between headers.
    let mut t = m.clone();
    let tenant = t.remove("x-edge-auth-tenant").unwrap();
    t.insert("x-edge-auth-key-id".to_string(), tenant);
    assert_eq!(ok(&t), Err(VerifyError::BadSignature));
    // Reordering scopes.
    let mut t = m.clone();
    t.insert("x-edge-auth-scopes".to_string(), "orders:write orders:read".to_string());
    assert_eq!(ok(&t), Err(VerifyError::BadSignature));
    // Changing the timestamp.
    let mut t = m.clone();
    t.insert("x-edge-auth-timestamp".to_string(), (NOW - 1).to_string());
    assert_eq!(ok(&t), Err(VerifyError::BadSignature));
    // Same value, leading zero: the signed string differs.
    let mut t = m.clone();
    t.insert("x-edge-auth-timestamp".to_string(), format!("0{NOW}"));
    assert_eq!(ok(&t), Err(VerifyError::BadSignature));
    // An unsafe value is refused before any MAC work.
    let mut t = m.clone();
    t.insert("x-edge-auth-subject".to_string(), "user-42\n".to_string());
    assert_eq!(ok(&t), Err(VerifyError::UnsafeValue));
}

#[test]
fn verify_rejects_another_request_line() {
    let (h, m) = signed_map();
    assert_eq!(
        check(&h, &m, NOW, "POST", "/orders/7?x=1"),
        Err(VerifyError::BadSignature)
    );
    assert_eq!(
        check(&h, &m, NOW, "get", "/orders/7?x=1"),
        Err(VerifyError::BadSignature)
    );
    assert_eq!(
        check(&h, &m, NOW, "GET", "/orders/8?x=1"),
        Err(VerifyError::BadSignature)
    );
    assert_eq!(check(&h, &m, NOW, "GET", "/orders/7"), Err(VerifyError::BadSignature));
    assert_eq!(
        check(&h, &m, NOW, "GET", "/orders/7?x=1\n"),
        Err(VerifyError::UnsafeValue)
    );
}

#[test]
fn verify_enforces_the_time_window() {
    let (h, m) = signed_map();
    let path = "/orders/7?x=1";
    assert_eq!(check(&h, &m, NOW + 301, "GET", path), Err(VerifyError::Expired));
    assert_eq!(check(&h, &m, u64::MAX, "GET", path), Err(VerifyError::Expired));
    assert_eq!(
        check(&h, &m, NOW - MAX_FUTURE_SKEW_S - 1, "GET", path),
        Err(VerifyError::FromTheFuture)
    );
    assert_eq!(check(&h, &m, 0, "GET", path), Err(VerifyError::FromTheFuture));
    // max_age 0: only the signing second itself (and the skew ahead).
    assert_eq!(verify(&h, |n| m.get(n).cloned(), KEY, NOW, 0, "GET", path), Ok(()));
    assert_eq!(
        verify(&h, |n| m.get(n).cloned(), KEY, NOW + 1, 0, "GET", path),
        Err(VerifyError::Expired)
    );
}

#[test]
fn verify_rejects_wrong_key() {
    let (h, m) = signed_map();
    let get = |n: &str| m.get(n).cloned();
    let other = b"0123456789abcdef0123456789abcdeF";
    assert_eq!(
        verify(&h, get, other, NOW, 300, "GET", "/orders/7?x=1"),
        Err(VerifyError::BadSignature)
    );
    assert_eq!(
        verify(&h, get, &KEY[..31], NOW, 300, "GET", "/orders/7?x=1"),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn verify_rejects_missing_or_malformed_timestamp_and_signature() {
    let (h, m) = signed_map();
    let run = |t: &HashMap<String, String>| check(&h, t, NOW, "GET", "/orders/7?x=1");
    let with = |name: &str, value: Option<&str>| {
        let mut t = m.clone();
        match value {
            Some(v) => t.insert(name.to_string(), v.to_string()),
            None => t.remove(name),
        };
        t
    };
    let sig = m["x-edge-auth-signature"].clone();
    let hexpart = &sig[3..];
    assert_eq!(
        run(&with("x-edge-auth-signature", None)),
        Err(VerifyError::MissingSignature)
    );
    for bad in [
        "".to_string(),
        hexpart.to_string(),
        format!("v2={hexpart}"),
        format!("V1={hexpart}"),
        format!("v1:{hexpart}"),
        format!("v1= {hexpart}"),
        format!("v1={}", hexpart.to_uppercase()),
        format!("v1={}", &hexpart[..62]),
        format!("v1={hexpart}00"),
        format!("v1={hexpart},v1={hexpart}"),
        format!("v1={}zz", &hexpart[..62]),
    ] {
        assert_eq!(
            run(&with("x-edge-auth-signature", Some(&bad))),
            Err(VerifyError::MalformedSignature),
            "{bad:?}"
        );
    }
    // Well-formed but wrong.
    let flipped = format!(
        "v1={}{}",
        &hexpart[..63],
        if hexpart.ends_with('0') { '1' } else { '0' }
    );
    assert_eq!(
        run(&with("x-edge-auth-signature", Some(&flipped))),
        Err(VerifyError::BadSignature)
    );

    assert_eq!(
        run(&with("x-edge-auth-timestamp", None)),
        Err(VerifyError::MissingTimestamp)
    );
    for bad in [
        "",
        "-1",
        "+1700000000",
        "1700000000.0",
        " 1700000000",
        "0x1",
        "99999999999999999999999",
    ] {
        assert_eq!(
            run(&with("x-edge-auth-timestamp", Some(bad))),
            Err(VerifyError::MalformedTimestamp),
            "{bad:?}"
        );
    }
}

#[test]
fn unsigned_request_fails_verification() {
    let h = ContextHeaders::default();
    let s = scopes();
    let m = map(&render(&h, &identity(&s), None));
    assert_eq!(check(&h, &m, NOW, "GET", "/"), Err(VerifyError::MissingTimestamp));
}

#[test]
fn hex_round_trip() {
    let bytes: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37)).collect();
    let s = hex(&bytes);
    assert_eq!(unhex::<32>(&s).unwrap().to_vec(), bytes);
    assert_eq!(hex(&[0x00, 0xff, 0x0a]), "00ff0a");
}

/// RFC 4231 test case 2, as a check on the HMAC wiring.
#[test]
fn hmac_sha256_rfc4231_case_2() {
    let m = mac(b"Jefe", "what do ya want for nothing?").unwrap();
    assert_eq!(
        hex(&m.finalize().into_bytes()),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

/// The worked example in docs/upstream-context.md: keep the two in step.
#[test]
fn documented_example() {
    let h = ContextHeaders::default();
    let key = b"edge-auth-example-key-32-bytes!!";
    assert_eq!(key.len(), 32);
    let s = vec!["orders:read".to_string(), "orders:write".to_string()];
    let id = Identity {
        method: "jwt",
        subject: "user-42",
        tenant: Some("acme"),
        scopes: &s,
        key_id: None,
        token_id: Some("tok-9f2c"),
    };
    let (now, method, path) = (1_700_000_000, "GET", "/orders/7?expand=items");
    let canonical = canonical_string(
        &h,
        "1700000000",
        ["jwt", "user-42", "acme", "orders:read orders:write", "", "tok-9f2c"],
        method,
        path,
    );
    assert_eq!(
        canonical,
        "v1\n\
             1700000000\n\
             x-edge-auth-method:jwt\n\
             x-edge-auth-subject:user-42\n\
             x-edge-auth-tenant:acme\n\
             x-edge-auth-scopes:orders:read orders:write\n\
             x-edge-auth-key-id:\n\
             x-edge-auth-token-id:tok-9f2c\n\
             :method:GET\n\
             :path:/orders/7?expand=items\n"
    );
    let out = map(&render(&h, &id, Some((key, now, method, path))));
    let signature = format!("v1={}", hex(&mac(key, &canonical).unwrap().finalize().into_bytes()));
    assert_eq!(out["x-edge-auth-signature"], signature);
    assert_eq!(verify(&h, |n| out.get(n).cloned(), key, now, 300, method, path), Ok(()));
    assert_eq!(
        signature,
        "v1=f445033b035dce713e70e4266b5cbb6adeec2c49f8cae2bc9382f6caceacb3a4"
    );
}
