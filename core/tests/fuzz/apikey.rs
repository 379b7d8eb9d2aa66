//! API-key lookup answers from the auth service (`api_key::parse_lookup`) and
//! the cross-worker cache entries made from them (`api_key::encode_cached`,
//! `api_key::decode_cached`).
//!
//! Properties: a body over the limit is `too_large`; an answer is used only
//! for the `key_hash` it names (contract v1.1); a `valid` answer's key
//! is not expired by the edge's clock, is cached no longer than it lives,
//! and has a non-empty `key_id`, `tenant` and `subject` without control
//! characters and only valid scope tokens; a cache entry of an answer
//! decodes to that answer (and never outlives the key); and any bytes read
//! from the cache decode without panicking, to something that encodes back
//! to itself.

use edge_auth_core::api_key::{decode_cached, encode_cached, parse_lookup, Answer, Lookup, LookupFailure};
use edge_auth_core::policy::scopes::valid_scope_token;

use super::engine::{Checked, Rng, Target};
use super::json::{any_value, hostile_string, object, J};

const MAX: usize = 16_384;
const NOW: u64 = 1_800_000_000;
/// The `key_hash` the edge asks about (the generator's answers carry it, mostly).
const ASKED: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn list(rng: &mut Rng, good: &[&str]) -> J {
    J::Arr(
        (0..rng.count(2, 80))
            .map(|_| {
                if rng.one_in(6) {
                    J::s(hostile_string(rng))
                } else {
                    J::s(*rng.pick(good))
                }
            })
            .collect(),
    )
}

fn generate(rng: &mut Rng) -> Vec<u8> {
    let status = rng.word(&[
        "valid", "valid", "valid", "unknown", "revoked", "expired", "VALID", "", "pending",
    ]);
    let expires = match rng.below(6) {
        0 => J::Raw("null".into()),
        1 => J::n(NOW),
        2 => J::n(NOW - 1),
        3 => J::n(u64::MAX),
        _ => J::n(NOW + rng.below(100_000) as u64),
    };
    let fields = vec![
        ("status", J::s(status)),
        ("cache_ttl_s", J::n(*rng.pick(&[0u64, 1, 30, 300, 86_400, u64::MAX]))),
        (
            "key_id",
            J::s(if rng.one_in(4) {
                hostile_string(rng)
            } else {
                "key_01hx".to_owned()
            }),
        ),
        (
            "tenant",
            J::s(if rng.one_in(6) {
                hostile_string(rng)
            } else {
                "acme".to_owned()
            }),
        ),
        (
            "subject",
            J::s(if rng.one_in(6) {
                hostile_string(rng)
            } else {
                "svc".to_owned()
            }),
        ),
        ("scopes", list(rng, &["orders:read", "orders:write", "a", "x.y"])),
        (
            "ip_allowlist",
            list(
                rng,
                &["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::ffff:10.0.0.0/104"],
            ),
        ),
        (
            "allowed_origins",
            list(
                rng,
                &[
                    "https://app.example.com",
                    "https://*.example.com",
                    "http://localhost:8080",
                ],
            ),
        ),
        ("expires_at", expires),
        ("key_hash", J::s("0".repeat(64))),
    ];
    let doc = object(rng, fields);
    let text = if rng.one_in(30) {
        any_value(rng, 0).text()
    } else {
        doc.text()
    };
    text.into_bytes()
}

fn check_cache_roundtrip(l: &Lookup) -> Result<(), String> {
    let until = match &l.answer {
        Answer::Valid(r) => r
            .expires_at
            .map_or(NOW + l.cache_ttl_s.min(3600), |exp| exp.min(NOW + l.cache_ttl_s)),
        _ => NOW + 60,
    };
    let bytes = encode_cached(l, until);
    match decode_cached(&bytes) {
        Some((back, u)) if back == *l && u == until => Ok(()),
        other => Err(format!("the cache entry of {l:?} decodes to {other:?}")),
    }
}

pub fn check(body: &[u8]) -> Checked {
    // anything read from the shared cache: no panic, and what decodes re-encodes to itself
    if let Some((l, until)) = decode_cached(body) {
        match decode_cached(&encode_cached(&l, until)) {
            Some((again, u)) if again == l && u == until => {}
            other => return Err(format!("a decoded cache entry re-encodes to {other:?}")),
        }
    }
    let result = parse_lookup(Some(200), Some(body), MAX, NOW, ASKED);
    if body.len() > MAX {
        return match result {
            Err(e) if e.name() == "too_large" => Ok("too_large".into()),
            other => Err(format!("{} bytes gave {other:?}", body.len())),
        };
    }
    let l = match result {
        Ok(l) => l,
        Err(e) => return Ok(format!("err:{}:{}", e.name(), e == LookupFailure::Unbound)),
    };
    // bound to its question: the same answer to the lookup of another key is never used
    let other = format!("1{}", &ASKED[1..]);
    if !matches!(
        parse_lookup(Some(200), Some(body), MAX, NOW, &other),
        Err(LookupFailure::Unbound)
    ) {
        return Err("an answer was accepted for a key_hash it does not name".into());
    }
    if let Answer::Valid(r) = &l.answer {
        if let Some(exp) = r.expires_at {
            if exp <= NOW || l.cache_ttl_s > exp - NOW {
                return Err(format!("valid until {exp}, cached for {} s at {NOW}", l.cache_ttl_s));
            }
        }
        for (field, v) in [("key_id", &r.key_id), ("tenant", &r.tenant), ("subject", &r.subject)] {
            if v.is_empty() || v.chars().any(char::is_control) {
                return Err(format!("{field} {v:?} accepted"));
            }
        }
        if let Some(s) = r.scopes.iter().find(|s| !valid_scope_token(s)) {
            return Err(format!("scope {s:?} accepted"));
        }
        if r.ip_allowlist_raw.is_empty() != r.ip_allowlist.is_empty()
            || r.allowed_origins_raw.len() != r.allowed_origins.patterns().len()
        {
            return Err("the parsed lists differ from the raw ones".into());
        }
    }
    check_cache_roundtrip(&l)?;
    Ok(format!("ok:{}", l.answer.status()))
}

pub fn target() -> Target {
    let seeds = [
        r#"{"status":"valid","cache_ttl_s":300,"key_id":"key_01","tenant":"acme","subject":"svc","scopes":["orders:read"],"ip_allowlist":[],"allowed_origins":[],"expires_at":null}"#,
        r#"{"status":"unknown","cache_ttl_s":30}"#,
        r#"{"status":"revoked","cache_ttl_s":30,"key_id":"key_01"}"#,
        r#"{"v":1,"until":1800000100,"lookup":{"status":"unknown","cache_ttl_s":30}}"#,
    ];
    Target {
        name: "api_key_answer",
        bounded_execs: 30_000,
        max_len: 4 * MAX,
        seeds: seeds.iter().map(|s| s.as_bytes().to_vec()).collect(),
        dictionary: super::json::dictionary(),
        generate: Box::new(generate),
        check: Box::new(check),
    }
}
