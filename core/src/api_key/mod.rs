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
pub mod budget;
pub mod revocations;
pub mod shared_cache;
pub mod tag;

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
    /// When the service computed the answer (unix seconds, the service's
    /// clock; contract 1.3). `None`: a service older than 1.3. Compared with
    /// the feed's key cut-offs ([`revocations::KeyRevocations`]).
    pub answered_at: Option<u64>,
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
            answered_at: None,
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
    /// Not asked: the client spent its budget of uncached lookups
    /// (`api_keys.lookup_budget`); one is available again in `retry_after_s`.
    /// Counted apart (`api_key.lookup_budget_exceeded`), not as a failed lookup.
    OverBudget { retry_after_s: u64 },
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
            LookupFailure::OverBudget { .. } => "over_budget",
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
            LookupFailure::OverBudget { .. } => f.write_str("the client spent its budget of key lookups"),
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
    /// When the service computed the answer (contract 1.3); kept with a
    /// valid answer only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    answered_at: Option<u64>,
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
            .map(|r| {
                Answer::Valid(KeyRecord {
                    answered_at: self.answered_at,
                    ..r
                })
            }),
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
            answered_at: None,
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
                w.answered_at = r.answered_at;
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
mod tests;
