//! The cache policy for API-key lookup answers, shared by every Envoy worker
//! through proxy-wasm shared data. No I/O: the shell reads and writes the
//! bytes this module names and encodes.
//!
//! The shared store has no eviction and no delete, so the cache is a fixed
//! table of `slots` entries (direct-mapped by the key hash): its size is
//! bounded by `slots` times [`MAX_ENTRY_BYTES`] however many distinct keys
//! callers invent. Each slot holds at most one answer, tagged with the hash
//! it answers, and an expired answer stays readable (for stale-if-error)
//! until another key's answer takes the slot.
//!
//! Beside each answer slot is a lookup marker: the hash a worker is asking
//! the auth service about and until when, so that the other workers wait for
//! that answer instead of asking too (coalescing across workers). Markers
//! are claimed with the store's compare-and-swap.
//!
//! Names carry the lookup endpoint's stable identity
//! ([`Shared::lookups`]: cluster, authority, lookup path, a digest of the
//! service token), never the configuration's generation: the store has no
//! delete, so names must not grow with reloads, and a reload that looks keys
//! up at the same endpoint finds its answers. Every answer carries the
//! identity of what it was cached under (the endpoint and the caps on its
//! life, [`CacheTable::new`]) and is used only by a configuration of the
//! same identity: an answer cached by another configuration is ignored,
//! never trusted, and replaced by the next answer for its slot.

use sha2::{Digest, Sha256};

use crate::api_key::{decode_cached, encode_cached, Answer, Lookup};
use crate::outbound::shared_fetch::Shared;

/// The shared tables of one configuration's lookups: their names, and the
/// identity its answers carry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CacheTable {
    /// `edge-auth.keys.<endpoint id>.`
    prefix: String,
    /// 64 hex digits: the endpoint's identity and the caps on an answer's life.
    answers: String,
}

impl CacheTable {
    /// The tables of `endpoint`, for answers capped by `max_valid_s` (a
    /// valid answer) and `negative_s` (any other) and read up to
    /// `max_response_bytes`: a configuration that would cache an answer
    /// differently does not use another's.
    pub fn new(endpoint: &Shared, max_valid_s: u64, negative_s: u64, max_response_bytes: usize) -> CacheTable {
        let d = Sha256::new()
            .chain_update(b"edge-auth key answers\n")
            .chain_update(endpoint.identity().as_bytes())
            .chain_update(max_valid_s.to_be_bytes())
            .chain_update(negative_s.to_be_bytes())
            .chain_update((max_response_bytes as u64).to_be_bytes())
            .finalize();
        CacheTable {
            prefix: endpoint.key(""),
            answers: crate::api_key::hex(&d.into()),
        }
    }

    /// The shared-data key of the answer slot for `hash`.
    pub fn entry_name(&self, hash: &str, slots: usize) -> String {
        format!("{}key.{}", self.prefix, slot(hash, slots))
    }

    /// The shared-data key of the lookup marker for `hash`.
    pub fn marker_name(&self, hash: &str, slots: usize) -> String {
        format!("{}lookup.{}", self.prefix, slot(hash, slots))
    }

    /// An answer slot's bytes: this table's answer identity, a space, the
    /// hash, a newline, then [`encode_cached`]. `None` when the entry would
    /// exceed [`MAX_ENTRY_BYTES`].
    pub fn encode_entry(&self, hash: &str, lookup: &Lookup, until: u64) -> Option<Vec<u8>> {
        let body = encode_cached(lookup, until);
        let len = self.answers.len() + 1 + hash.len() + 1 + body.len();
        if body.is_empty() || len > MAX_ENTRY_BYTES {
            return None;
        }
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(self.answers.as_bytes());
        out.push(b' ');
        out.extend_from_slice(hash.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(&body);
        Some(out)
    }

    /// The answer for `hash` in a slot's bytes and until when it may be
    /// used, whether or not that time has passed. `None` when the slot is
    /// empty, holds another key's answer or an answer of another identity,
    /// or is malformed (it is then ignored, never trusted).
    pub fn decode_entry(&self, bytes: &[u8], hash: &str) -> Option<(Lookup, u64)> {
        if bytes.len() > MAX_ENTRY_BYTES || self.answers.is_empty() {
            return None;
        }
        let rest = bytes
            .strip_prefix(self.answers.as_bytes())?
            .strip_prefix(b" ")?
            .strip_prefix(hash.as_bytes())?
            .strip_prefix(b"\n")?;
        decode_cached(rest)
    }
}

/// The largest encoded answer the shared cache stores; a larger one is used
/// for the request that asked and not cached.
pub const MAX_ENTRY_BYTES: usize = 4096;

/// The slot of `hash` (64 lower-case hex digits) in a table of `slots`.
/// Hashes are SHA-256 outputs, so their leading digits are uniform.
pub fn slot(hash: &str, slots: usize) -> usize {
    let lead = hash
        .get(..12)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0);
    usize::try_from(lead % (slots.max(1) as u64)).unwrap_or(0)
}

/// Until when (unix seconds, exclusive) an answer may be used: the service's
/// `cache_ttl_s` capped by `max_valid_s` for a valid key and by `negative_s`
/// for any other answer (`parse_lookup` already capped a valid answer by the
/// key's own `expires_at`).
pub fn cache_until(lookup: &Lookup, now: u64, max_valid_s: u64, negative_s: u64) -> u64 {
    let cap = match lookup.answer {
        Answer::Valid(_) => max_valid_s,
        _ => negative_s,
    };
    now.saturating_add(lookup.cache_ttl_s.min(cap))
}

/// A lookup marker's bytes: `<hash> <deadline ms>`.
pub fn encode_marker(hash: &str, deadline_ms: u64) -> Vec<u8> {
    format!("{hash} {deadline_ms}").into_bytes()
}

/// What a marker says about a lookup of `hash` at `now_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// Nobody is asking about this hash: the slot may be claimed.
    Free,
    /// Another worker is asking about this hash until `deadline_ms`.
    Busy { deadline_ms: u64 },
}

/// Reads a marker. An empty, malformed or expired marker, or one for another
/// hash, is [`Marker::Free`] (the slot is shared by hashes; a lookup of
/// another key does not hold this one up). A deadline is believed at most
/// `max_wait_ms` into the future, so a forged or corrupt far deadline
/// cannot park requests.
pub fn read_marker(bytes: Option<&[u8]>, hash: &str, now_ms: u64, max_wait_ms: u64) -> Marker {
    let parsed = marker_parts(bytes)
        .filter(|(h, _)| *h == hash)
        .and_then(|(_, d)| d.parse::<u64>().ok());
    match parsed {
        Some(deadline) if deadline > now_ms => Marker::Busy {
            deadline_ms: deadline.min(now_ms.saturating_add(max_wait_ms)),
        },
        _ => Marker::Free,
    }
}

/// Whether a marker names `hash`, whatever its deadline: the worker that
/// wrote it may clear it (another key's marker in the same slot is left).
pub fn marker_is_for(bytes: Option<&[u8]>, hash: &str) -> bool {
    marker_parts(bytes).is_some_and(|(h, _)| h == hash)
}

/// A marker's hash and deadline, as text.
fn marker_parts(bytes: Option<&[u8]>) -> Option<(&str, &str)> {
    bytes.and_then(|b| std::str::from_utf8(b).ok())?.split_once(' ')
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use crate::api_key::{key_hash, parse_lookup, KeyRecord};

    const NOW: u64 = 1_795_000_000;
    const H: &str = "2ef626683da91ed223b8e00ba57046fafb18e6465a481a76d5875d41fb8aba3d";

    fn valid(ttl: u64) -> Lookup {
        let record = KeyRecord::new(
            "key_mepybc6vdnwbtgbcqqchcvqb6w".into(),
            "acme".into(),
            "svc".into(),
            vec!["orders:read".into()],
            vec!["10.0.0.0/8".into()],
            vec!["https://app.acme.example".into()],
            None,
        )
        .unwrap();
        Lookup {
            answer: Answer::Valid(record),
            cache_ttl_s: ttl,
        }
    }

    #[test]
    fn slots_are_stable_and_in_range() {
        for slots in [1, 2, 7, 8192, 1_000_000] {
            let s = slot(H, slots);
            assert!(s < slots);
            assert_eq!(s, slot(H, slots));
        }
        assert_eq!(slot(H, 0), 0);
        // hostile "hashes" never panic
        assert_eq!(slot("", 10), 0);
        assert_eq!(slot("zzzzzzzzzzzzzzzz", 10), 0);
        assert_eq!(slot("é", 10), 0);
        // different keys spread over the table
        let used: std::collections::HashSet<usize> =
            (0..200).map(|i| slot(&key_hash(&format!("sk_{i:064x}")), 64)).collect();
        assert!(used.len() > 40, "{} slots used", used.len());
    }

    /// The tables of a configuration looking keys up at `cluster` with
    /// `token`, capping valid answers at `max_valid_s`.
    fn table(cluster: &str, token: &str, max_valid_s: u64) -> CacheTable {
        let doc = serde_json::json!({
            "auth_service": {"cluster": cluster, "token_env": "T"},
            "api_keys": {"max_cache_ttl_s": max_valid_s},
            "rules": [{"name": "keys", "match": {"prefix": "/"}, "api_key": {}}]
        });
        let token = token.to_owned();
        let cfg = crate::config::parse(doc.to_string().as_bytes(), &|_| Some(token.clone())).unwrap();
        cfg.api_keys.unwrap().shared_cache
    }

    const TOKEN: &str = "a-service-token-of-at-least-32-bytes!!";

    #[test]
    fn names_come_from_the_endpoint_not_the_configuration() {
        let t = table("auth", TOKEN, 300);
        let name = t.entry_name(H, 64);
        assert!(
            name.starts_with("edge-auth.keys.") && name.ends_with(&format!(".key.{}", slot(H, 64))),
            "{name}"
        );
        assert!(t.marker_name(H, 64).ends_with(&format!(".lookup.{}", slot(H, 64))));
        assert_eq!(t.entry_name(H, 1).rsplit('.').next(), Some("0"));
        // a reload with the same endpoint, another cap on answers' life: the same names
        let reloaded = table("auth", TOKEN, 60);
        assert_eq!(reloaded.entry_name(H, 64), name);
        assert_eq!(reloaded.marker_name(H, 64), t.marker_name(H, 64));
        // another cluster or service token: other names
        assert_ne!(table("auth2", TOKEN, 300).entry_name(H, 64), name);
        assert_ne!(table("auth", &format!("{TOKEN}x"), 300).entry_name(H, 64), name);
    }

    #[test]
    fn a_reload_of_the_same_identity_reuses_answers_another_identity_never_does() {
        let t = table("auth", TOKEN, 300);
        let bytes = t.encode_entry(H, &valid(300), NOW + 300).unwrap();
        // the configuration loaded again (a new generation, same identity)
        assert_eq!(
            table("auth", TOKEN, 300).decode_entry(&bytes, H),
            Some((valid(300), NOW + 300))
        );
        // same names, but another cap on a valid answer's life: not trusted
        assert_eq!(table("auth", TOKEN, 60).decode_entry(&bytes, H), None);
        // another service token (or endpoint): not trusted
        assert_eq!(table("auth", &format!("{TOKEN}x"), 300).decode_entry(&bytes, H), None);
        assert_eq!(table("other", TOKEN, 300).decode_entry(&bytes, H), None);
        // an entry in the format before identities (hash first) is ignored
        let old = [format!("{H}\n").as_bytes(), &bytes[65 + 65..]].concat();
        assert_eq!(t.decode_entry(&old, H), None);
        // a table that was never bound to an endpoint trusts nothing
        let unbound = CacheTable::default();
        assert_eq!(unbound.decode_entry(&bytes, H), None);
        assert_eq!(unbound.decode_entry(&bytes[65..], H), None);
    }

    #[test]
    fn ttl_is_capped_by_kind() {
        assert_eq!(cache_until(&valid(300), NOW, 60, 30), NOW + 60);
        assert_eq!(cache_until(&valid(10), NOW, 60, 30), NOW + 10);
        let unknown = Lookup {
            answer: Answer::Unknown,
            cache_ttl_s: 300,
        };
        assert_eq!(cache_until(&unknown, NOW, 300, 30), NOW + 30);
        assert_eq!(cache_until(&unknown, NOW, 300, 0), NOW);
        assert_eq!(cache_until(&valid(u64::MAX), u64::MAX - 1, u64::MAX, 0), u64::MAX);
    }

    #[test]
    fn entries_round_trip_only_for_their_hash() {
        let t = table("auth", TOKEN, 300);
        let bytes = t.encode_entry(H, &valid(300), NOW + 300).unwrap();
        let (lookup, until) = t.decode_entry(&bytes, H).unwrap();
        assert_eq!(lookup, valid(300));
        assert_eq!(until, NOW + 300);
        let other = key_hash("sk_0000000000000000000000000000000000000000000000000000000000000000");
        assert_eq!(t.decode_entry(&bytes, &other), None);
        // a hash that is a prefix of the stored one does not match
        assert_eq!(t.decode_entry(&bytes, &H[..63]), None);
    }

    #[test]
    fn hostile_entries_are_ignored() {
        let t = table("auth", TOKEN, 300);
        let id = &t.answers;
        let good = t.encode_entry(H, &valid(300), NOW + 300).unwrap();
        for bad in [
            Vec::new(),
            H.as_bytes().to_vec(),
            format!("{id} {H}").into_bytes(),
            format!("{id} {H}\n").into_bytes(),
            format!("{id} {H}\nnot json").into_bytes(),
            format!("{id} {H} {{}}").into_bytes(),
            format!("{id}  {H}\n{{}}").into_bytes(),
            format!("{id}{H}\n{{}}").into_bytes(),
            format!("{id} {H}\n{{\"v\":2,\"until\":1,\"lookup\":{{\"status\":\"unknown\",\"cache_ttl_s\":1}}}}")
                .into_bytes(),
            good[..good.len() - 1].to_vec(),
            [good.clone(), vec![b' '; MAX_ENTRY_BYTES]].concat(),
            vec![0xff; 100],
        ] {
            assert_eq!(t.decode_entry(&bad, H), None, "{:?}", String::from_utf8_lossy(&bad));
        }
    }

    #[test]
    fn oversized_answers_are_not_cached() {
        let many: Vec<String> = (0..400).map(|i| format!("scope{i}:read")).collect();
        let body = serde_json::json!({
            "key_hash": H, "status": "valid", "key_id": "key_x", "tenant": "t", "subject": "s",
            "scopes": many, "ip_allowlist": [], "allowed_origins": [], "expires_at": null,
            "cache_ttl_s": 300
        })
        .to_string();
        let lookup = parse_lookup(Some(200), Some(body.as_bytes()), 1 << 20, NOW, H).unwrap();
        assert_eq!(table("auth", TOKEN, 300).encode_entry(H, &lookup, NOW + 300), None);
    }

    #[test]
    fn markers() {
        let m = encode_marker(H, NOW * 1000 + 500);
        let now_ms = NOW * 1000;
        assert_eq!(
            read_marker(Some(&m), H, now_ms, 5_000),
            Marker::Busy {
                deadline_ms: now_ms + 500
            }
        );
        // expired, another hash, empty, malformed: free
        assert_eq!(read_marker(Some(&m), H, now_ms + 500, 5_000), Marker::Free);
        assert_eq!(read_marker(Some(&m), &H[1..], now_ms, 5_000), Marker::Free);
        assert_eq!(read_marker(None, H, now_ms, 5_000), Marker::Free);
        assert_eq!(read_marker(Some(b""), H, now_ms, 5_000), Marker::Free);
        assert_eq!(
            read_marker(Some(format!("{H} -1").as_bytes()), H, now_ms, 5_000),
            Marker::Free
        );
        assert_eq!(
            read_marker(Some(format!("{H}  12").as_bytes()), H, now_ms, 5_000),
            Marker::Free
        );
        assert_eq!(read_marker(Some(&[0xff, b' ', b'1']), H, now_ms, 5_000), Marker::Free);
        // whose marker it is, whatever the deadline says
        assert!(marker_is_for(Some(&m), H));
        assert!(marker_is_for(Some(format!("{H} -1").as_bytes()), H));
        assert!(!marker_is_for(Some(&m), &H[1..]));
        assert!(!marker_is_for(Some(b""), H));
        assert!(!marker_is_for(None, H));
        assert!(!marker_is_for(Some(&[0xff, b' ', b'1']), H));
        // a far-future deadline is believed only up to max_wait_ms
        let far = encode_marker(H, u64::MAX);
        assert_eq!(
            read_marker(Some(&far), H, now_ms, 5_000),
            Marker::Busy {
                deadline_ms: now_ms + 5_000
            }
        );
    }
}
