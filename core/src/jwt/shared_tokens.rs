//! Verified tokens shared by every Envoy worker, through proxy-wasm shared
//! data: a token whose signature one worker verified is accepted by the
//! others without a second signature verification. No I/O: the decision
//! reads and writes the bytes this module names and encodes.
//!
//! The shared store has no delete and no eviction, so the table is a fixed
//! number of slots (`token_cache.shared_slots`), direct-mapped by the
//! token's SHA-256: however many tokens anyone invents, it holds at most
//! that many entries of [`ENTRY_BYTES`] each, and its names never depend on
//! the configuration (a reload adds no names). An entry is written only
//! after a signature verified, and records:
//!
//! - the token's full SHA-256, compared on read: a token that only shares
//!   the slot finds nothing;
//! - the provider's identity ([`provider_identity`]: issuer, algorithms,
//!   remote JWKS location), compared with the reader's provider for the
//!   token, so an entry of another provider or configuration is ignored;
//! - the fingerprint of the key that verified it: the reader trusts the
//!   entry only while that very key is among the keys it would try for the
//!   token ([`crate::jwt::holds_key`]), so a withdrawn `kid`, or a key
//!   replaced under its `kid`, ends it at once on every worker;
//! - its horizon: the token's `exp`, and never more than
//!   [`crate::decision::MAX_CACHE_S`] after the verification.
//!
//! A hit skips the signature check only: the token is still inspected and
//! every claim checked. Anything else in a slot (another token, another
//! provider, a past horizon, a horizon further than the cache's bound,
//! malformed bytes) is ignored and the signature verified.

use sha2::{Digest, Sha256};

use crate::cache::CacheKey;
use crate::jwt::keys::KeyFingerprint;
use crate::jwt::Provider;

/// The most slots `token_cache.shared_slots` may configure.
pub const MAX_SLOTS: usize = 100_000;

/// A provider's identity in the table (see [`provider_identity`]).
pub type ProviderId = [u8; 16];

/// Entry format tag, and its version.
const MAGIC: &[u8; 4] = b"eat1";

/// The size of an entry: tag, token digest, provider, key, horizon.
pub const ENTRY_BYTES: usize = 4 + 32 + 16 + 16 + 8;

/// The shared-data name of the slot of a token with this SHA-256.
pub fn slot_name(digest: &CacheKey, slots: usize) -> String {
    let mut lead = [0u8; 8];
    lead.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    let slot = u64::from_be_bytes(lead) % (slots.max(1) as u64);
    format!("edge-auth.jwt.{slot}")
}

/// What a provider trusts, named: its issuer, its algorithms and where its
/// remote keys come from (its keys are checked apart, by fingerprint).
pub fn provider_identity(p: &Provider) -> ProviderId {
    let mut h = Sha256::new();
    let mut part = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    part(b"edge-auth provider");
    part(p.issuer.as_bytes());
    for alg in &p.algorithms {
        part(alg.name().as_bytes());
    }
    if let Some(r) = &p.remote {
        part(r.cluster.as_bytes());
        part(r.path.as_bytes());
    }
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(d.get(..16).unwrap_or(&[0; 16]));
    out
}

/// One verified token, as a slot holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The token's SHA-256.
    pub digest: CacheKey,
    pub provider: ProviderId,
    /// The key that verified the token.
    pub key: KeyFingerprint,
    /// Until when (unix seconds, exclusive) the entry may be used.
    pub horizon: u64,
}

impl Entry {
    pub fn encode(&self) -> [u8; ENTRY_BYTES] {
        let mut out = [0u8; ENTRY_BYTES];
        let parts: [&[u8]; 5] = [
            MAGIC,
            &self.digest,
            &self.provider,
            &self.key,
            &self.horizon.to_be_bytes(),
        ];
        let mut at = 0;
        for p in parts {
            if let Some(dst) = out.get_mut(at..at + p.len()) {
                dst.copy_from_slice(p);
            }
            at += p.len();
        }
        out
    }

    /// An entry from a slot's bytes; `None` unless they are exactly one.
    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        if bytes.len() != ENTRY_BYTES {
            return None;
        }
        let rest = bytes.strip_prefix(MAGIC.as_slice())?;
        let (digest, rest) = rest.split_first_chunk::<32>()?;
        let (provider, rest) = rest.split_first_chunk::<16>()?;
        let (key, rest) = rest.split_first_chunk::<16>()?;
        let horizon = u64::from_be_bytes(*rest.first_chunk::<8>()?);
        Some(Entry {
            digest: *digest,
            provider: *provider,
            key: *key,
            horizon,
        })
    }
}

/// The key fingerprint and horizon a slot's bytes vouch with for the token
/// with this digest, of this provider, at `now`: `None` unless the slot
/// holds exactly this token's entry for this provider, still before its
/// horizon, and a horizon no later than the token's `exp` nor than
/// `max_cache_s` from now (a later one was not written by this filter's
/// rules and is not believed).
pub fn vouched(
    bytes: &[u8],
    digest: &CacheKey,
    provider: &ProviderId,
    exp: Option<u64>,
    now: u64,
    max_cache_s: u64,
) -> Option<(KeyFingerprint, u64)> {
    let e = Entry::decode(bytes)?;
    let believable = e.horizon <= now.saturating_add(max_cache_s) && exp.is_none_or(|exp| e.horizon <= exp);
    (e.digest == *digest && e.provider == *provider && now < e.horizon && believable).then_some((e.key, e.horizon))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use crate::cache::token_key;

    const NOW: u64 = 1_800_000_000;

    fn entry() -> Entry {
        Entry {
            digest: token_key("a.b.c"),
            provider: [7; 16],
            key: [9; 16],
            horizon: NOW + 60,
        }
    }

    #[test]
    fn entries_round_trip() {
        let e = entry();
        let bytes = e.encode();
        assert_eq!(bytes.len(), ENTRY_BYTES);
        assert_eq!(Entry::decode(&bytes), Some(e));
        assert_eq!(
            vouched(&bytes, &e.digest, &e.provider, Some(NOW + 60), NOW, 300),
            Some((e.key, e.horizon))
        );
    }

    #[test]
    fn only_the_same_token_provider_and_time_are_vouched_for() {
        let e = entry();
        let bytes = e.encode();
        let check = |digest: &CacheKey, provider: &ProviderId, exp: Option<u64>, now: u64| {
            vouched(&bytes, digest, provider, exp, now, 300)
        };
        // another token in the same slot (even one sharing the digest's first half)
        let mut other = e.digest;
        other[31] ^= 1;
        assert_eq!(check(&other, &e.provider, None, NOW), None);
        // another provider (or configuration of it)
        assert_eq!(check(&e.digest, &[8; 16], None, NOW), None);
        // at and past the horizon
        assert_eq!(check(&e.digest, &e.provider, None, NOW + 60), None);
        assert!(check(&e.digest, &e.provider, None, NOW + 59).is_some());
        // a horizon past the token's exp, or further than the cache's bound: not believed
        assert_eq!(check(&e.digest, &e.provider, Some(NOW + 59), NOW), None);
        assert_eq!(vouched(&bytes, &e.digest, &e.provider, None, NOW, 59), None);
        assert!(vouched(&bytes, &e.digest, &e.provider, None, NOW, 60).is_some());
    }

    #[test]
    fn garbage_is_never_an_entry() {
        let good = entry().encode();
        let mut wrong_tag = good;
        wrong_tag[0] = b'x';
        let far = Entry {
            horizon: u64::MAX,
            ..entry()
        }
        .encode();
        for bad in [
            &[][..],
            &good[..ENTRY_BYTES - 1],
            &[good.as_slice(), b"x"].concat(),
            &wrong_tag,
            &[0u8; ENTRY_BYTES],
            &[0xffu8; ENTRY_BYTES],
            b"edge-auth",
        ] {
            assert_eq!(
                vouched(bad, &entry().digest, &entry().provider, None, NOW, 300),
                None,
                "{bad:?}"
            );
        }
        assert_eq!(vouched(&far, &entry().digest, &entry().provider, None, NOW, 300), None);
    }

    #[test]
    fn slots_are_fixed_names_in_range() {
        let d = token_key("a.b.c");
        for slots in [1, 2, 7, 8192, MAX_SLOTS] {
            let name = slot_name(&d, slots);
            let n: usize = name.strip_prefix("edge-auth.jwt.").unwrap().parse().unwrap();
            assert!(n < slots);
            assert_eq!(name, slot_name(&d, slots));
        }
        assert_eq!(slot_name(&d, 0), "edge-auth.jwt.0");
        let used: std::collections::HashSet<String> =
            (0..400).map(|i| slot_name(&token_key(&format!("t{i}")), 64)).collect();
        assert!(used.len() > 50, "{} slots used", used.len());
    }
}
