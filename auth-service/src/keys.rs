//! API keys: generation from the OS RNG, hashing, key ids, and the lookup answer.
//!
//! A raw key is `sk_` + 64 lower-case hex: 32 random bytes, or, with a key-tag
//! secret (`key_tags`), 24 random bytes and an 8-byte tag the edges check
//! offline. Only its SHA-256 (64 lower-case hex) is stored; the raw key is
//! shown once, at creation.

use edge_auth_core::api_key::tag::KeyTags;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::ids::{hex, is_base32, random_bytes};
use crate::model::{ApiKeyRow, Tenant};

/// The prefix of a raw API key.
pub const API_KEY_PREFIX: &str = "sk_";
/// The prefix of a key id.
pub const KEY_ID_PREFIX: &str = "key_";
/// The longest time an answer about a valid key may be cached by the edge.
pub const VALID_CACHE_TTL_S: i64 = 300;
/// How long past a `valid` answer's cache time an edge may still use it while its lookups
/// fail (the filter's `stale_if_error_s`, at most 3600; docs/configuration.md 3.x).
pub const EDGE_MAX_STALE_S: i64 = 3600;
/// How long the edge may cache a negative answer (unknown, revoked, expired).
pub const NEGATIVE_CACHE_TTL_S: i64 = 30;

/// A new raw API key, `sk_` + 64 hex, and the id of the secret that tagged it:
/// with `tags`, 48 random hex and the tag under the current secret; without,
/// 64 random hex and no id.
pub fn generate_api_key(tags: Option<&KeyTags>) -> Result<(String, Option<String>)> {
    Ok(match tags {
        None => (format!("{API_KEY_PREFIX}{}", hex(&random_bytes::<32>()?)), None),
        Some(t) => (
            format!("{API_KEY_PREFIX}{}", t.mint(&hex(&random_bytes::<24>()?))),
            Some(t.current().id().to_owned()),
        ),
    })
}

/// SHA-256 of a secret, as 64 lower-case hex. Used for API keys and refresh tokens.
pub fn hash_secret(raw: &str) -> String {
    hex(&Sha256::digest(raw.as_bytes()))
}

/// The 8-hex fingerprint of a stored hash: enough to tell keys apart in logs, useless to an attacker.
pub fn fingerprint(hash: &str) -> String {
    hash.chars().take(8).collect()
}

/// Whether `s` is `prefix` followed by exactly 64 lower-case hex digits.
pub fn is_prefixed_hex64(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(is_hex64)
}

/// Whether `s` is exactly 64 lower-case hex digits (a SHA-256).
pub fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `s` is a well-formed raw API key.
pub fn is_api_key(s: &str) -> bool {
    is_prefixed_hex64(s, API_KEY_PREFIX)
}

/// Whether `s` looks like a key id (`key_` + 26 base32).
pub fn is_key_id(s: &str) -> bool {
    s.strip_prefix(KEY_ID_PREFIX)
        .is_some_and(|r| r.len() == 26 && is_base32(r))
}

/// The status of a key at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    Valid,
    Revoked,
    Expired,
}

/// When a key stops being valid: its expiry, or for a rotated key its rotation
/// deadline, whichever is earlier.
pub fn effective_expiry(key: &ApiKeyRow) -> Option<i64> {
    match (key.expires_at, key.rotation_deadline) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The status of `key` at `now`: revoked wins over expired.
pub fn key_status(key: &ApiKeyRow, now: i64) -> KeyStatus {
    if key.revoked_at.is_some() {
        KeyStatus::Revoked
    } else if effective_expiry(key).is_some_and(|e| e <= now) {
        KeyStatus::Expired
    } else {
        KeyStatus::Valid
    }
}

/// The answer to `POST /internal/v1/api-keys/lookup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum LookupAnswer {
    Valid {
        key_id: String,
        tenant: String,
        subject: String,
        scopes: Vec<String>,
        ip_allowlist: Vec<String>,
        allowed_origins: Vec<String>,
        expires_at: Option<i64>,
        cache_ttl_s: i64,
        /// When the answer was computed (taken before the read, so never
        /// later than the state it reports; contract 1.3): the edge compares
        /// it with the feed's key cut-offs.
        answered_at: i64,
    },
    Unknown {
        cache_ttl_s: i64,
    },
    Revoked {
        key_id: String,
        cache_ttl_s: i64,
    },
    Expired {
        key_id: String,
        cache_ttl_s: i64,
    },
}

impl LookupAnswer {
    /// The answer's `status` value.
    pub fn status(&self) -> &'static str {
        match self {
            LookupAnswer::Valid { .. } => "valid",
            LookupAnswer::Unknown { .. } => "unknown",
            LookupAnswer::Revoked { .. } => "revoked",
            LookupAnswer::Expired { .. } => "expired",
        }
    }
}

/// Builds the lookup answer for a key found (or not) by its hash.
pub fn lookup_answer(found: Option<(ApiKeyRow, Tenant)>, now: i64) -> LookupAnswer {
    let Some((key, tenant)) = found else {
        return LookupAnswer::Unknown {
            cache_ttl_s: NEGATIVE_CACHE_TTL_S,
        };
    };
    // A disabled tenant's keys are refused as revoked (the contract's statuses are fixed).
    let status = match key_status(&key, now) {
        KeyStatus::Valid if tenant.disabled_at.is_some() => KeyStatus::Revoked,
        s => s,
    };
    match status {
        KeyStatus::Revoked => LookupAnswer::Revoked {
            key_id: key.key_id,
            cache_ttl_s: NEGATIVE_CACHE_TTL_S,
        },
        KeyStatus::Expired => LookupAnswer::Expired {
            key_id: key.key_id,
            cache_ttl_s: NEGATIVE_CACHE_TTL_S,
        },
        KeyStatus::Valid => {
            let expires_at = effective_expiry(&key);
            let cache_ttl_s = match expires_at {
                Some(e) => (e - now).clamp(1, VALID_CACHE_TTL_S),
                None => VALID_CACHE_TTL_S,
            };
            LookupAnswer::Valid {
                ip_allowlist: key.ip_allowlist.clone().unwrap_or(tenant.ip_allowlist),
                allowed_origins: tenant.allowed_origins,
                key_id: key.key_id,
                tenant: key.tenant,
                subject: key.subject,
                scopes: key.scopes,
                expires_at,
                cache_ttl_s,
                answered_at: now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn api_keys_have_the_contract_format_and_are_unique() {
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let (k, tag) = generate_api_key(None).unwrap();
            assert!(is_api_key(&k), "{k}");
            assert_eq!(k.len(), 67);
            assert_eq!(tag, None);
            assert!(seen.insert(k));
        }
    }

    #[test]
    fn tagged_keys_keep_the_format_and_verify_at_the_edge() {
        use edge_auth_core::api_key::tag::{TagCheck, TagSecret};
        let secret = |s: &str| TagSecret::new(s.as_bytes()).unwrap();
        let tags = KeyTags::new(secret("tag-0123456789abcdef0123456789abcdef"), None).unwrap();
        let other = KeyTags::new(secret("other-0123456789abcdef0123456789abcd"), None).unwrap();
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let (k, id) = generate_api_key(Some(&tags)).unwrap();
            assert!(is_api_key(&k), "{k}");
            assert_eq!(id.as_deref(), Some(tags.current().id()));
            assert_eq!(tags.check(&k[3..]), TagCheck::Current);
            assert_eq!(other.check(&k[3..]), TagCheck::Invalid);
            assert!(seen.insert(k));
        }
        // keys minted without tags do not verify (with overwhelming probability)
        let (k, _) = generate_api_key(None).unwrap();
        assert_eq!(tags.check(&k[3..]), TagCheck::Invalid);
    }

    #[test]
    fn key_ids_are_26_base32() {
        let id = crate::ids::new_id(KEY_ID_PREFIX).unwrap();
        assert!(is_key_id(&id), "{id}");
        assert_eq!(id.len(), 4 + 26);
        assert_ne!(id, crate::ids::new_id(KEY_ID_PREFIX).unwrap());
    }

    #[test]
    fn hashing_is_sha256_hex() {
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_hex64(&hash_secret("x")));
        assert_eq!(fingerprint(&hash_secret("abc")), "ba7816bf");
    }

    #[test]
    fn malformed_keys_and_hashes_are_refused() {
        assert!(!is_api_key("sk_"));
        assert!(!is_api_key(&format!("sk_{}", "A".repeat(64))));
        assert!(!is_api_key(&format!("pk_{}", "a".repeat(64))));
        assert!(!is_hex64(&"a".repeat(63)));
        assert!(!is_hex64(&"g".repeat(64)));
    }
}
