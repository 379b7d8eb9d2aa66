//! API keys, the filter's side: the key format, the hash sent to the auth
//! service, the lookup request body, strict parsing of the service's answer
//! and the encoding of answers for the cross-worker cache. No I/O.
//!
//! The contract is docs/auth-service-api.md, section 4. The raw key never
//! leaves the edge: [`key_hash`] is what the service is asked about and what
//! answers are cached under.
//!
//! Every answer is hostile input until validated: [`parse_lookup`] refuses
//! anything it cannot use as [`LookupFailure::Malformed`] (or another
//! failure), and the caller fails closed on every failure. A failure is never
//! cached.

pub mod breaker;
pub mod shared_cache;

use serde::{Deserialize, Deserializer, Serialize};

use crate::cache::token_key;
use crate::policy::ip::IpList;
use crate::policy::origin::OriginList;
use crate::policy::scopes::valid_scope_token;

/// The accepted key format: `prefix` followed by exactly `hex_len` lower-case
/// hex digits (default `sk_` + 64, the contract's format).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFormat {
    /// The literal prefix, compared byte for byte (case-sensitive).
    pub prefix: String,
    /// The exact number of hex digits after the prefix.
    pub hex_len: usize,
}

impl Default for KeyFormat {
    fn default() -> Self {
        KeyFormat {
            prefix: "sk_".to_owned(),
            hex_len: 64,
        }
    }
}

impl KeyFormat {
    /// Whether `key` is, exactly as received, `prefix` followed by `hex_len`
    /// characters `0-9a-f`. No trimming and no case folding: upper-case hex,
    /// whitespace, any other character or another length is refused. Not
    /// constant-time (the format is public; the key's value is not compared).
    pub fn accepts(&self, key: &str) -> bool {
        key.len() == self.prefix.len().saturating_add(self.hex_len)
            && key
                .strip_prefix(self.prefix.as_str())
                .is_some_and(|hex| hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
    }
}

/// SHA-256 over the bytes of the raw key string (prefix included, nothing
/// added), as 64 lower-case hex digits: exactly the contract's `key_hash`
/// (section 4.3). It is the hex form of [`crate::cache::token_key`] of the key.
pub fn key_hash(key: &str) -> String {
    hex(&token_key(key))
}

/// A SHA-256 digest as 64 lower-case hex digits.
pub fn hex(digest: &[u8; 32]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// Whether an HTTP call's answer came from the proxy rather than the service:
/// Envoy answers a call that timed out, or whose connection failed, itself,
/// with 504 or 503 and a plain-text body, while the service always answers
/// JSON. Such an answer is "no response" ([`LookupFailure::NoResponse`]).
pub fn is_proxy_answer(status: Option<u16>, content_type: Option<&str>) -> bool {
    matches!(status, Some(503 | 504))
        && !content_type.is_some_and(|c| {
            c.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        })
}

/// The lookup request body: `{"key_hash":"<hash>"}`.
pub fn lookup_body(hash: &str) -> String {
    serde_json::json!({ "key_hash": hash }).to_string()
}

/// A validated lookup answer.
// One answer per lookup, moved into a cache entry: the size of `Valid` does
// not matter, and an unboxed record keeps matching simple.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The key is valid (and, by the edge's clock, not yet expired).
    Valid(KeyRecord),
    /// No key has this hash.
    Unknown,
    /// The key was revoked. Final.
    Revoked {
        /// The key's public identifier (safe to log).
        key_id: String,
    },
    /// The key expired or passed its rotation deadline. Final.
    Expired {
        /// The key's public identifier (safe to log).
        key_id: String,
    },
}

impl Answer {
    /// The contract's `status` value for this answer.
    pub fn status(&self) -> &'static str {
        match self {
            Answer::Valid(_) => "valid",
            Answer::Unknown => "unknown",
            Answer::Revoked { .. } => "revoked",
            Answer::Expired { .. } => "expired",
        }
    }
}

/// What a `valid` answer says about a key.
///
/// `ip_allowlist` and `allowed_origins` are the parsed lists the filter
/// applies; `ip_allowlist_raw` and `allowed_origins_raw` are the entries as
/// the service sent them, kept because [`IpList`] does not expose its source
/// strings and the cross-worker cache must re-serialise the record. Build a
/// record with [`KeyRecord::new`] so that the two always agree; the cache
/// decoder re-parses the raw lists, so a decoded record is validated exactly
/// like a fresh answer.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    /// The key's public identifier, `key_` + 26 base32 characters (opaque).
    pub key_id: String,
    /// The key's tenant.
    pub tenant: String,
    /// Whom the key stands for, within the tenant.
    pub subject: String,
    /// The scopes the key grants (valid scope tokens; may be empty).
    pub scopes: Vec<String>,
    /// Client networks allowed to use the key; empty allows any address.
    pub ip_allowlist: IpList,
    /// Browser origins allowed to use the key; empty allows no origin.
    pub allowed_origins: OriginList,
    /// When the key stops being valid (unix seconds); `None`: never.
    pub expires_at: Option<u64>,
    /// `ip_allowlist` as received, for re-serialisation.
    pub ip_allowlist_raw: Vec<String>,
    /// `allowed_origins` as received, for re-serialisation.
    pub allowed_origins_raw: Vec<String>,
}

impl KeyRecord {
    /// Validates and builds a record. Refuses an empty `key_id`, `tenant` or
    /// `subject` or one with control characters, a scope that is not a valid
    /// scope token, and list entries [`IpList::parse`] or
    /// [`OriginList::parse`] refuse. The error is a short message (it never
    /// quotes a value from the answer beyond a list entry or scope).
    pub fn new(
        key_id: String,
        tenant: String,
        subject: String,
        scopes: Vec<String>,
        ip_allowlist: Vec<String>,
        allowed_origins: Vec<String>,
        expires_at: Option<u64>,
    ) -> Result<KeyRecord, String> {
        check_name("key_id", &key_id)?;
        check_name("tenant", &tenant)?;
        check_name("subject", &subject)?;
        if let Some(i) = scopes.iter().position(|s| !valid_scope_token(s)) {
            return Err(format!("scopes[{i}] is not a valid scope token"));
        }
        let ips = IpList::parse(&ip_allowlist).map_err(|(i, m)| format!("ip_allowlist[{i}]: {m}"))?;
        let origins = OriginList::parse(&allowed_origins).map_err(|(i, m)| format!("allowed_origins[{i}]: {m}"))?;
        Ok(KeyRecord {
            key_id,
            tenant,
            subject,
            scopes,
            ip_allowlist: ips,
            allowed_origins: origins,
            expires_at,
            ip_allowlist_raw: ip_allowlist,
            allowed_origins_raw: allowed_origins,
        })
    }
}

/// Refuses an empty identifier or one with control characters (these values
/// end up in logs and headers).
fn check_name(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{field} is empty"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{field} contains control characters"));
    }
    Ok(())
}

/// A validated answer and how long it may be cached.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup {
    /// The answer.
    pub answer: Answer,
    /// Seconds the answer may be cached from now, as the service allowed it
    /// (for a valid answer, never past its `expires_at`). Not yet capped by
    /// the filter's configured maximum: the caller applies that.
    pub cache_ttl_s: u64,
}

/// Why an answer could not be used. Every case fails closed at the caller,
/// and none is cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupFailure {
    /// No response: timeout, connection reset, unknown cluster.
    NoResponse,
    /// A status other than 200 (`401` means the filter's service token is
    /// wrong; a 5xx means the service could not answer).
    Status(u16),
    /// The body is larger than the configured limit.
    TooLarge,
    /// The body is missing, not JSON, or breaks the contract.
    Malformed,
    /// A well-formed answer whose `key_hash` is missing (a contract v1
    /// service) or is not the hash asked about (an answer for another key,
    /// from the service or anything between it and the edge). Counted as
    /// `malformed`.
    Unbound,
    /// Not asked: the circuit breaker is open after repeated failures.
    CircuitOpen,
    /// Not asked: too many distinct keys are already waiting for lookups.
    Busy,
}

impl LookupFailure {
    /// Every name [`LookupFailure::name`] returns, for defining metrics up front.
    pub const ALL_NAMES: [&'static str; 6] = ["timeout", "status", "too_large", "malformed", "circuit_open", "busy"];

    /// A fixed name for metrics and logs: one of [`LookupFailure::ALL_NAMES`].
    pub fn name(&self) -> &'static str {
        match self {
            LookupFailure::NoResponse => "timeout",
            LookupFailure::Status(_) => "status",
            LookupFailure::TooLarge => "too_large",
            LookupFailure::Malformed | LookupFailure::Unbound => "malformed",
            LookupFailure::CircuitOpen => "circuit_open",
            LookupFailure::Busy => "busy",
        }
    }
}

impl std::fmt::Display for LookupFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupFailure::NoResponse => f.write_str("the auth service did not answer"),
            LookupFailure::Status(s) => write!(f, "the auth service answered with status {s}"),
            LookupFailure::TooLarge => f.write_str("the auth service's answer is too large"),
            LookupFailure::Malformed => f.write_str("the auth service's answer is malformed"),
            LookupFailure::Unbound => f.write_str(
                "the auth service's answer does not name the key_hash asked about (a contract v1 \
                 service, which must be upgraded to v1.1, or an answer for another key)",
            ),
            LookupFailure::CircuitOpen => f.write_str("the auth service is failing (circuit open)"),
            LookupFailure::Busy => f.write_str("too many key lookups are under way"),
        }
    }
}

impl std::error::Error for LookupFailure {}

/// A lookup answer on the wire (and inside a cache entry). Every field but
/// `status` and `cache_ttl_s` is optional here; [`Wire::validate`] decides
/// what each status requires. Unknown fields are ignored (v1 may add fields);
/// wrong types and duplicate fields are refused by serde.
#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    /// The hash the answer is for (contract v1.1). Checked by
    /// [`parse_lookup`] against the hash asked about; not kept in the
    /// shared cache, whose entries carry the hash in front.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_hash: Option<String>,
    status: String,
    cache_ttl_s: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip_allowlist: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allowed_origins: Option<Vec<String>>,
    /// `None`: absent; `Some(None)`: `null` (never expires).
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    expires_at: Option<Option<u64>>,
}

/// Tells a present `null` (`Some(None)`) from an absent field (`None`, by
/// `#[serde(default)]`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(d).map(Some)
}

impl Wire {
    /// The answer this wire form states, validated. No clock is applied.
    fn validate(self) -> Option<Answer> {
        let key_id = || self.key_id.clone().filter(|k| check_name("key_id", k).is_ok());
        match self.status.as_str() {
            "unknown" => Some(Answer::Unknown),
            "revoked" => Some(Answer::Revoked { key_id: key_id()? }),
            "expired" => Some(Answer::Expired { key_id: key_id()? }),
            "valid" => KeyRecord::new(
                self.key_id?,
                self.tenant?,
                self.subject?,
                self.scopes?,
                self.ip_allowlist?,
                self.allowed_origins?,
                self.expires_at?,
            )
            .ok()
            .map(Answer::Valid),
            _ => None,
        }
    }

    fn from_lookup(lookup: &Lookup) -> Wire {
        let mut w = Wire {
            key_hash: None,
            status: lookup.answer.status().to_owned(),
            cache_ttl_s: lookup.cache_ttl_s,
            key_id: None,
            tenant: None,
            subject: None,
            scopes: None,
            ip_allowlist: None,
            allowed_origins: None,
            expires_at: None,
        };
        match &lookup.answer {
            Answer::Unknown => {}
            Answer::Revoked { key_id } | Answer::Expired { key_id } => w.key_id = Some(key_id.clone()),
            Answer::Valid(r) => {
                w.key_id = Some(r.key_id.clone());
                w.tenant = Some(r.tenant.clone());
                w.subject = Some(r.subject.clone());
                w.scopes = Some(r.scopes.clone());
                w.ip_allowlist = Some(r.ip_allowlist_raw.clone());
                w.allowed_origins = Some(r.allowed_origins_raw.clone());
                w.expires_at = Some(r.expires_at);
            }
        }
        w
    }
}

/// Whether the first non-whitespace byte opens a JSON object. serde's derived
/// struct deserialisation also accepts a JSON array; the contract says object.
fn starts_object(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r')) == Some(&b'{')
}

/// Parses the service's answer to the lookup of `key_hash`.
///
/// `status` is the HTTP status (`None`: no response), `body` the response
/// body (`None`: none), `max_bytes` the largest body accepted, `now` the
/// edge's clock (unix seconds), `key_hash` the hash the edge asked about.
///
/// Strict, as the contract's section 7 requires: no response is
/// [`LookupFailure::NoResponse`], any status but 200 is
/// [`LookupFailure::Status`], a body over `max_bytes` is
/// [`LookupFailure::TooLarge`], and everything else that cannot be used is
/// [`LookupFailure::Malformed`]: no body, not UTF-8, not a JSON object, an unknown
/// `status`, `cache_ttl_s` missing or not a non-negative integer, a field of
/// the wrong type, a duplicate field, and for `revoked`/`expired` a missing
/// `key_id`; for `valid` any missing field (`expires_at` must be present,
/// `null` for never), an empty `key_id`/`tenant`/`subject` or one with
/// control characters, a scope that is not a valid scope token, or a list
/// entry the edge cannot parse. Unknown extra fields are ignored.
///
/// An answer that is well-formed but does not carry `key_hash` exactly as
/// asked (contract v1.1: a v1 service sends none) is
/// [`LookupFailure::Unbound`]: nothing ties it to the key asked about, so it
/// is never used, whatever its status. That check comes last, so every other
/// defect is reported as [`LookupFailure::Malformed`].
///
/// A valid answer is never cached past its `expires_at`: the returned
/// `cache_ttl_s` is `min(cache_ttl_s, expires_at - now)`. A valid answer with
/// `expires_at <= now` (the edge's clock is ahead of the service's) is
/// returned as [`Answer::Expired`] with the service's `cache_ttl_s`, since
/// an expired key never becomes valid again. The caller still caps
/// `cache_ttl_s` by its configured maximum.
pub fn parse_lookup(
    status: Option<u16>,
    body: Option<&[u8]>,
    max_bytes: usize,
    now: u64,
    key_hash: &str,
) -> Result<Lookup, LookupFailure> {
    match status {
        None => return Err(LookupFailure::NoResponse),
        Some(200) => {}
        Some(s) => return Err(LookupFailure::Status(s)),
    }
    let body = body.ok_or(LookupFailure::Malformed)?;
    if body.len() > max_bytes {
        return Err(LookupFailure::TooLarge);
    }
    // serde_json skips ignored fields without checking their UTF-8; the
    // contract says bodies are UTF-8, so check the whole body.
    let body = std::str::from_utf8(body).map_err(|_| LookupFailure::Malformed)?;
    if !starts_object(body.as_bytes()) {
        return Err(LookupFailure::Malformed);
    }
    let mut wire: Wire = serde_json::from_str(body).map_err(|_| LookupFailure::Malformed)?;
    let cache_ttl_s = wire.cache_ttl_s;
    let bound = wire.key_hash.take();
    let answer = wire.validate().ok_or(LookupFailure::Malformed)?;
    if bound.as_deref() != Some(key_hash) {
        return Err(LookupFailure::Unbound);
    }
    Ok(match answer {
        Answer::Valid(r) => match r.expires_at {
            Some(exp) if exp <= now => Lookup {
                answer: Answer::Expired { key_id: r.key_id },
                cache_ttl_s,
            },
            Some(exp) => Lookup {
                cache_ttl_s: cache_ttl_s.min(exp - now),
                answer: Answer::Valid(r),
            },
            None => Lookup {
                answer: Answer::Valid(r),
                cache_ttl_s,
            },
        },
        answer => Lookup { answer, cache_ttl_s },
    })
}

/// The encoding version written by [`encode_cached`].
const CACHE_VERSION: u64 = 1;

/// A cross-worker cache entry: `{"v":1,"until":<unix s>,"lookup":{<wire answer>}}`.
/// The lookup is in the service's own wire format, so decoding re-runs the
/// same validation as a fresh answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CacheEntry {
    v: u64,
    until: u64,
    lookup: Wire,
}

/// Encodes `lookup` and its absolute cache expiry (`expires_at`, unix
/// seconds, exclusive) for proxy-wasm shared data. The encoding is JSON:
/// `{"v":1,"until":<expires_at>,"lookup":{...}}`, where `lookup` is the
/// answer in the contract's wire format (a valid answer carries its raw
/// lists) with its `cache_ttl_s`.
pub fn encode_cached(lookup: &Lookup, expires_at: u64) -> Vec<u8> {
    let entry = CacheEntry {
        v: CACHE_VERSION,
        until: expires_at,
        lookup: Wire::from_lookup(lookup),
    };
    // Serialising these types cannot fail; an empty value would decode to None.
    serde_json::to_vec(&entry).unwrap_or_default()
}

/// Decodes an entry written by [`encode_cached`]: the lookup and its absolute
/// expiry. Never panics; returns `None` for anything malformed: not JSON,
/// another version, unknown fields in the envelope, an answer that fails the
/// validation of [`parse_lookup`] (invalid UTF-8 included), or a valid answer whose cache expiry lies
/// past the key's own `expires_at`. The caller checks the expiry against its
/// clock.
pub fn decode_cached(bytes: &[u8]) -> Option<(Lookup, u64)> {
    let text = std::str::from_utf8(bytes).ok()?;
    if !starts_object(bytes) {
        return None;
    }
    let entry: CacheEntry = serde_json::from_str(text).ok()?;
    if entry.v != CACHE_VERSION {
        return None;
    }
    let cache_ttl_s = entry.lookup.cache_ttl_s;
    let answer = entry.lookup.validate()?;
    if let Answer::Valid(KeyRecord {
        expires_at: Some(exp), ..
    }) = &answer
    {
        if entry.until > *exp {
            return None;
        }
    }
    Some((Lookup { answer, cache_ttl_s }, entry.until))
}

#[cfg(test)]
mod tests {
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
        let l = parse_bound(r#"{"status": "revoked", "key_id": "key_mepybc6vdnwbtgbcqqchcvqb6w", "cache_ttl_s": 30}"#)
            .unwrap();
        assert_eq!(
            l,
            Lookup {
                answer: Answer::Revoked {
                    key_id: "key_mepybc6vdnwbtgbcqqchcvqb6w".into()
                },
                cache_ttl_s: 30
            }
        );
        let l = parse_bound(r#"{"status": "expired", "key_id": "key_mepybc6vdnwbtgbcqqchcvqb6w", "cache_ttl_s": 30}"#)
            .unwrap();
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
        let l =
            parse_bound("\n  {\"status\":\"unknown\",\"cache_ttl_s\":30,\"key_id\":null,\"hint\":\"x\"}  \n").unwrap();
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
        let err401 =
            br#"{"error": "invalid_service_token", "error_description": "the service token is missing or wrong"}"#;
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
}
