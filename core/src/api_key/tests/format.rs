use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

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
