//! Tests of API-key lookups, by concern: the key format, its hash and the
//! lookup request (`format`); well-formed answers (`answers`); answers and
//! responses that fail the lookup (`failures`); the cross-worker cache
//! encoding (`cache_encoding`). The helpers below are shared.

use super::*;

use serde_json::{json, Value};

const KEY: &str = "sk_20461de3ee4a57fe3611338284344655d8b1dff13bde3406141f9ba472ba2fb1";
const KEY_HASH: &str = "2ef626683da91ed223b8e00ba57046fafb18e6465a481a76d5875d41fb8aba3d";
const NOW: u64 = 1_795_000_000;
const MAX: usize = 64 * 1024;

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

mod answers;
mod cache_encoding;
mod failures;
mod format;
