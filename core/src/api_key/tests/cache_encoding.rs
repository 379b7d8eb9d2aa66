use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

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
