//! JWT inspection, claim checks and signature verification.
//!
//! The order is deliberate: the token's shape, header and claims are checked
//! first (cheap, and enough to refuse garbage, `alg: none`, foreign issuers and
//! expired tokens), and signature work comes last, with only the keys bound to
//! the token's algorithm and `kid`. Each key checks the signature over the
//! token's bytes as sent ([`crate::jwt::keys::BoundKey::verify_token`]); no
//! library re-parses the token.

use std::fmt;

use serde_json::{Map, Value};

use crate::b64;
use crate::claim_path::ClaimPath;
use crate::jwt::keys::{Algorithm, BoundKey, KeyFingerprint, KeySet};
use crate::policy::scopes::{Grants, RoleHierarchy, ScopeSource};

pub mod discovery;
pub mod keys;
mod provider;
pub mod refresh;
pub mod revocation;
pub mod shared_tokens;

pub use provider::{ClaimHeader, Provider, RemoteJwks, RequiredClaim};

/// Why a token was refused. Each maps to a metric and an error description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwtError {
    /// Not three base64url parts, or a header/payload that is not a JSON object.
    Malformed,
    /// Longer than `max_token_bytes`.
    TooLarge,
    /// `alg: none` (any spelling): unsigned tokens are never accepted.
    AlgNone,
    /// An `alg` edge-auth does not implement.
    UnsupportedAlg,
    /// An `alg` the provider does not allow.
    AlgNotAllowed,
    /// A `crit` header: edge-auth implements no JWS extensions.
    CritHeader,
    /// No provider of the route has this `iss`.
    UnknownIssuer,
    /// The `kid` is not among the provider's keys.
    UnknownKid,
    /// No key of the provider is bound to the token's algorithm.
    NoKey,
    /// The provider's remote keys were never fetched.
    KeysUnavailable,
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    MissingExpiration,
    LifetimeTooLong,
    BadAudience,
    MissingClaim,
    ClaimMismatch,
}

impl JwtError {
    /// A description for the client. Never contains the token or a claim value.
    pub fn description(self) -> &'static str {
        match self {
            JwtError::Malformed => "the token is not a well-formed JWS compact serialization",
            JwtError::TooLarge => "the token is too large",
            JwtError::AlgNone => "unsigned tokens (alg none) are not accepted",
            JwtError::UnsupportedAlg => "the token's algorithm is not supported",
            JwtError::AlgNotAllowed => "the token's algorithm is not allowed for its issuer",
            JwtError::CritHeader => "the token has critical header extensions that are not understood",
            JwtError::UnknownIssuer => "the token's issuer is not accepted here",
            JwtError::UnknownKid => "the token's key id is unknown",
            JwtError::NoKey => "no key is available for the token's algorithm",
            JwtError::KeysUnavailable => "the issuer's signing keys are not available yet",
            JwtError::BadSignature => "the token's signature is invalid",
            JwtError::Expired => "the token has expired",
            JwtError::NotYetValid => "the token is not valid yet",
            JwtError::IssuedInFuture => "the token was issued in the future",
            JwtError::MissingExpiration => "the token has no expiration time",
            JwtError::LifetimeTooLong => "the token's lifetime is longer than allowed",
            JwtError::BadAudience => "the token is not meant for this audience",
            JwtError::MissingClaim => "the token lacks a required claim",
            JwtError::ClaimMismatch => "a required claim has a value that is not accepted",
        }
    }
}

// The stable names, used in metrics (`denied.<name>`) and logs.
named!(JwtError {
    Malformed => "malformed_token",
    TooLarge => "token_too_large",
    AlgNone => "alg_none",
    UnsupportedAlg => "unsupported_alg",
    AlgNotAllowed => "alg_not_allowed",
    CritHeader => "crit_header",
    UnknownIssuer => "unknown_issuer",
    UnknownKid => "unknown_kid",
    NoKey => "no_key",
    KeysUnavailable => "keys_unavailable",
    BadSignature => "bad_signature",
    Expired => "expired",
    NotYetValid => "not_yet_valid",
    IssuedInFuture => "issued_in_future",
    MissingExpiration => "missing_exp",
    LifetimeTooLong => "lifetime_too_long",
    BadAudience => "bad_audience",
    MissingClaim => "missing_claim",
    ClaimMismatch => "claim_mismatch",
});

impl fmt::Display for JwtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Claims of a token, with the registered time claims decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    map: Map<String, Value>,
    pub exp: Option<u64>,
    pub nbf: Option<u64>,
    pub iat: Option<u64>,
}

impl Claims {
    fn from_map(map: Map<String, Value>) -> Result<Claims, JwtError> {
        // Registered claims have fixed types (RFC 7519 4.1); a token that
        // breaks them is malformed, whatever its signature.
        for name in ["iss", "sub", "jti", "nonce"] {
            if map.get(name).is_some_and(|v| !v.is_string()) {
                return Err(JwtError::Malformed);
            }
        }
        match map.get("aud") {
            None | Some(Value::String(_)) => {}
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
            Some(_) => return Err(JwtError::Malformed),
        }
        Ok(Claims {
            exp: time_claim(&map, "exp")?,
            nbf: time_claim(&map, "nbf")?,
            iat: time_claim(&map, "iat")?,
            map,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.map.get(name)
    }

    /// The claim at `path` (top-level or nested, [`crate::claim_path`]).
    pub fn at(&self, path: &ClaimPath) -> Option<&Value> {
        path.lookup(&self.map)
    }

    /// The claim at `path` if it is a string.
    pub fn str_at(&self, path: &ClaimPath) -> Option<&str> {
        self.at(path).and_then(Value::as_str)
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.map.get(name).and_then(Value::as_str)
    }

    pub fn iss(&self) -> Option<&str> {
        self.str("iss")
    }

    pub fn map(&self) -> &Map<String, Value> {
        &self.map
    }
}

/// A NumericDate (RFC 7519 section 2): a non-negative number, fractions allowed.
fn time_claim(map: &Map<String, Value>, name: &str) -> Result<Option<u64>, JwtError> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(v) = n.as_u64() {
                Ok(Some(v))
            } else {
                match n.as_f64() {
                    // `as` saturates: 1e300 becomes u64::MAX, which is fine for "far future".
                    Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f as u64)),
                    _ => Err(JwtError::Malformed),
                }
            }
        }
        Some(_) => Err(JwtError::Malformed),
    }
}

/// A token whose shape and header are valid; nothing is verified yet.
#[derive(Debug)]
pub struct Inspected<'a> {
    pub token: &'a str,
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub claims: Claims,
    /// The payload segment as sent (base64url of the claims JSON).
    pub payload_b64: &'a str,
}

/// Largest header segment accepted; real JOSE headers are well under 1 KiB.
const MAX_HEADER_B64: usize = 2048;

/// Header parameters that carry a key or a key's location (RFC 7515
/// 4.1.2 to 4.1.6): a token with any of them, whatever the value, is
/// malformed. Thumbprints (`x5t`, `x5t#S256`) name a key like `kid` and are
/// ignored.
pub const EMBEDDED_KEY_HEADERS: [&str; 4] = ["jwk", "jku", "x5c", "x5u"];

fn is_b64url(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks a token's shape and header and decodes its claims, without any
/// signature work.
pub fn inspect(token: &str, max_bytes: usize) -> Result<Inspected<'_>, JwtError> {
    if token.len() > max_bytes {
        return Err(JwtError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Malformed);
    };
    if h.len() > MAX_HEADER_B64 || !is_b64url(h) || !is_b64url(p) || !is_b64url(s) {
        return Err(JwtError::Malformed);
    }
    let header = b64::decode_url(h).ok_or(JwtError::Malformed)?;
    let header = crate::json_object::parse_object(&header).map_err(|_| JwtError::Malformed)?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) if a.eq_ignore_ascii_case("none") => return Err(JwtError::AlgNone),
        Some(Value::String(a)) => Algorithm::from_name(a).ok_or(JwtError::UnsupportedAlg)?,
        _ => return Err(JwtError::Malformed),
    };
    if header.contains_key("crit") {
        return Err(JwtError::CritHeader);
    }
    // RFC 7515 4.1.2 to 4.1.6: a key, or where to fetch one, named by the token itself. The
    // filter verifies only with the provider's keys, so such a header is never needed; it is
    // what embedded-key forgeries carry (a token signed with the key it brings), and an
    // upstream library that honours it must not be handed the token.
    if EMBEDDED_KEY_HEADERS.iter().any(|h| header.contains_key(*h)) {
        return Err(JwtError::Malformed);
    }
    // RFC 7519 5.1: when present, `typ` says JWT (or an explicit `+jwt` type such as `at+jwt`).
    match header.get("typ") {
        None => {}
        Some(Value::String(typ)) if typ.eq_ignore_ascii_case("jwt") || typ.to_ascii_lowercase().ends_with("+jwt") => {}
        Some(_) => return Err(JwtError::Malformed),
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) if k.len() <= 256 => Some(k.clone()),
        Some(_) => return Err(JwtError::Malformed),
    };
    let payload = b64::decode_url(p).ok_or(JwtError::Malformed)?;
    let map = crate::json_object::parse_object(&payload).map_err(|_| JwtError::Malformed)?;
    let claims = Claims::from_map(map)?;
    Ok(Inspected {
        token,
        alg,
        kid,
        claims,
        payload_b64: p,
    })
}

/// Checks the claims against the provider, at `now` (unix seconds, the host's clock).
pub fn check_claims(claims: &Claims, p: &Provider, now: u64) -> Result<(), JwtError> {
    if claims.iss() != Some(p.issuer.as_str()) {
        return Err(JwtError::UnknownIssuer);
    }
    let leeway = p.leeway_s;
    match claims.exp {
        Some(exp) if now >= exp.saturating_add(leeway) => return Err(JwtError::Expired),
        None if p.require_expiration => return Err(JwtError::MissingExpiration),
        _ => {}
    }
    if claims.nbf.is_some_and(|nbf| now.saturating_add(leeway) < nbf) {
        return Err(JwtError::NotYetValid);
    }
    if claims.iat.is_some_and(|iat| now.saturating_add(leeway) < iat) {
        return Err(JwtError::IssuedInFuture);
    }
    if let Some(max) = p.max_lifetime_s {
        match (claims.iat, claims.exp) {
            (Some(iat), Some(exp)) if exp.saturating_sub(iat) <= max => {}
            _ => return Err(JwtError::LifetimeTooLong),
        }
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => p.audiences.iter().any(|x| x == a),
        Some(Value::Array(list)) => list
            .iter()
            .any(|a| a.as_str().is_some_and(|a| p.audiences.iter().any(|x| x == a))),
        _ => false,
    };
    if !aud_ok {
        return Err(JwtError::BadAudience);
    }
    for rc in &p.required_claims {
        let value = match claims.at(&rc.name) {
            None | Some(Value::Null) => return Err(JwtError::MissingClaim),
            Some(v) => v,
        };
        if let Some(accepted) = &rc.one_of {
            let ok = match value {
                Value::Array(items) => items.iter().any(|i| accepted.contains(i)),
                v => accepted.contains(v),
            };
            if !ok {
                return Err(JwtError::ClaimMismatch);
            }
        }
    }
    Ok(())
}

/// At most this many keys are tried for a token without `kid`: a JWKS with
/// many keys must not turn one request into many signature checks.
pub const MAX_KEYS_TRIED: usize = 4;

/// Verifies the signature with the keys bound to the token's algorithm (and
/// `kid`, when it names one). `keysets` are the provider's static and remote
/// keys. `Ok`: the fingerprint of the key that verified it.
pub fn verify_signature(t: &Inspected<'_>, p: &Provider, keysets: &[&KeySet]) -> Result<KeyFingerprint, JwtError> {
    find_key(t, p, keysets, |key| key.verify_token(t.token))
}

/// Whether the key named `fingerprint` is among the keys that
/// [`verify_signature`] would try for this token now (the same algorithm,
/// `kid` and [`MAX_KEYS_TRIED`] rules), without any signature work: a token
/// that key verified before needs no second verification while it is.
pub fn holds_key(t: &Inspected<'_>, p: &Provider, keysets: &[&KeySet], fingerprint: &KeyFingerprint) -> bool {
    find_key(t, p, keysets, |key| key.fingerprint() == fingerprint).is_ok()
}

/// The fingerprint of the first of the token's candidate keys that
/// `accepts`, trying at most [`MAX_KEYS_TRIED`]; the refusal
/// [`verify_signature`] gives otherwise.
fn find_key(
    t: &Inspected<'_>,
    p: &Provider,
    keysets: &[&KeySet],
    mut accepts: impl FnMut(&BoundKey) -> bool,
) -> Result<KeyFingerprint, JwtError> {
    if !p.algorithms.contains(&t.alg) {
        return Err(JwtError::AlgNotAllowed);
    }
    if let Some(kid) = t.kid.as_deref() {
        if !keysets.iter().any(|s| s.has_kid(kid)) {
            return Err(JwtError::UnknownKid);
        }
    }
    let mut tried = 0;
    for key in keysets.iter().flat_map(|s| s.candidates(t.alg, t.kid.as_deref())) {
        if tried == MAX_KEYS_TRIED {
            break;
        }
        tried += 1;
        if accepts(key) {
            return Ok(*key.fingerprint());
        }
    }
    if tried == 0 {
        Err(JwtError::NoKey)
    } else {
        Err(JwtError::BadSignature)
    }
}

/// Renders a claim as a header value: strings as they are, numbers and
/// booleans as JSON, arrays of those joined by `,`. Objects, nulls, values
/// with control characters and values over 4 KiB are not forwarded (`None`).
pub fn claim_header_value(v: &Value) -> Option<String> {
    fn scalar(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
    let out = match v {
        Value::Array(items) => {
            let parts: Option<Vec<String>> = items.iter().map(scalar).collect();
            let parts = parts?;
            // ["a,b"] and ["a", "b"] would read the same: refuse the former
            if parts.iter().any(|p| p.contains(',')) {
                return None;
            }
            parts.join(",")
        }
        v => scalar(v)?,
    };
    let safe = out.len() <= 4096
        && out
            .bytes()
            .all(|b| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80);
    safe.then_some(out)
}

impl Grants {
    /// The grants of a verified token's `claims` (here rather than in
    /// `policy::scopes`, which knows nothing of JWTs).
    pub fn from_claims(claims: &Claims, source: &ScopeSource, roles: &RoleHierarchy) -> Grants {
        Grants::from_claim_values(|path| claims.at(path), source, roles)
    }
}

#[cfg(test)]
mod tests;
