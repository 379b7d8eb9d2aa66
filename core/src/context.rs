//! The identity the edge forwards upstream, as request headers, optionally
//! signed so a backend can check they came from the edge.
//!
//! The filter strips every header named by [`ContextHeaders::names`] from the
//! client's request, then sets the ones [`render`] returns. With a signing key
//! it adds a timestamp and an HMAC-SHA256 signature over a canonical string
//! (see [`canonical_string`]) that covers every context header (absent ones
//! as empty), the timestamp, and the request's method and path, so a
//! signature cannot be moved onto another request line or survive a header
//! being added, changed or removed. [`verify`] is what a backend runs;
//! `docs/upstream-context.md` describes the format for backend developers.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The default header-name prefix.
pub const DEFAULT_PREFIX: &str = "x-edge-auth-";

/// The signature scheme tag: the first line of the canonical string and the
/// prefix of the signature header's value.
pub const SCHEME: &str = "v1";

/// How far in the future (seconds) [`verify`] accepts a timestamp, to absorb
/// clock skew between the edge and the backend.
pub const MAX_FUTURE_SKEW_S: u64 = 60;

/// Longest accepted prefix, in bytes.
const MAX_PREFIX_LEN: usize = 64;

/// The identity the edge established for a request.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    /// How the request authenticated: `"jwt"`, `"client"` (a machine
    /// client's token) or `"api_key"`.
    pub method: &'a str,
    /// The principal: the token's `sub` (a machine's: its client id), or
    /// the API key's subject.
    pub subject: &'a str,
    /// The tenant, when the credential names one.
    pub tenant: Option<&'a str>,
    /// Granted scopes, forwarded space-joined in this order.
    pub scopes: &'a [String],
    /// The API key's id (or the JWT's `kid`), when known.
    pub key_id: Option<&'a str>,
    /// The token's id (`jti`), when known.
    pub token_id: Option<&'a str>,
}

/// The names of the context headers: a prefix followed by `method`,
/// `subject`, `tenant`, `scopes`, `key-id`, `token-id`, `timestamp` and
/// `signature`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextHeaders {
    method: String,
    subject: String,
    tenant: String,
    scopes: String,
    key_id: String,
    token_id: String,
    timestamp: String,
    signature: String,
}

impl Default for ContextHeaders {
    fn default() -> Self {
        Self::with_prefix(DEFAULT_PREFIX)
    }
}

impl ContextHeaders {
    /// The header names under `prefix`, which must be 1 to 64 bytes of
    /// lower-case ASCII letters, digits, `-` and `_` (HTTP/2 header names are
    /// lower-case), for example `"x-edge-auth-"`.
    pub fn new(prefix: &str) -> Result<Self, String> {
        if prefix.is_empty() {
            return Err("the context header prefix must not be empty".to_string());
        }
        if prefix.len() > MAX_PREFIX_LEN {
            return Err(format!(
                "the context header prefix is longer than {MAX_PREFIX_LEN} bytes"
            ));
        }
        if let Some(c) = prefix
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "the context header prefix {prefix:?} contains {c:?}: only lower-case ASCII letters, digits, '-' and '_' are allowed"
            ));
        }
        Ok(Self::with_prefix(prefix))
    }

    fn with_prefix(prefix: &str) -> Self {
        let name = |suffix: &str| format!("{prefix}{suffix}");
        ContextHeaders {
            method: name("method"),
            subject: name("subject"),
            tenant: name("tenant"),
            scopes: name("scopes"),
            key_id: name("key-id"),
            token_id: name("token-id"),
            timestamp: name("timestamp"),
            signature: name("signature"),
        }
    }

    /// Every header [`render`] may write. The filter removes all of them from
    /// the client's request before setting the rendered ones, so a client can
    /// never supply (or pre-supply) any of them.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.signed().into_iter().chain([self.timestamp(), self.signature()])
    }

    /// The identity headers covered by the signature, in canonical order:
    /// method, subject, tenant, scopes, key-id, token-id.
    pub fn signed(&self) -> [&str; 6] {
        [
            &self.method,
            &self.subject,
            &self.tenant,
            &self.scopes,
            &self.key_id,
            &self.token_id,
        ]
    }

    /// The name of the timestamp header (unix seconds).
    pub fn timestamp(&self) -> &str {
        &self.timestamp
    }

    /// The name of the signature header (`v1=<hex>`).
    pub fn signature(&self) -> &str {
        &self.signature
    }
}

/// Whether `value` may be forwarded as a context header value: non-empty,
/// printable ASCII (0x20 to 0x7E) only, and no leading or trailing space
/// (proxies trim those, which would break the signature). A context value
/// that fails this is left out of [`render`]'s output, exactly as if absent.
pub fn is_header_safe(value: &str) -> bool {
    !value.is_empty()
        && value.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
}

/// Whether a request method or path may enter the canonical string: non-empty
/// and free of ASCII control characters.
fn is_request_line_safe(value: &str) -> bool {
    !value.is_empty() && !value.bytes().any(|b| b < 0x20 || b == 0x7f)
}

/// The scopes value: the header-safe scopes without spaces, space-joined in
/// the given order; `None` when none qualify.
fn scopes_value(scopes: &[String]) -> Option<String> {
    let mut out = String::new();
    for scope in scopes.iter().filter(|s| is_header_safe(s) && !s.contains(' ')) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(scope);
    }
    (!out.is_empty()).then_some(out)
}

/// The string the signature is computed over (UTF-8 bytes):
///
/// ```text
/// v1\n
/// <timestamp>\n
/// <prefix>method:<value>\n
/// <prefix>subject:<value>\n
/// <prefix>tenant:<value>\n
/// <prefix>scopes:<value>\n
/// <prefix>key-id:<value>\n
/// <prefix>token-id:<value>\n
/// :method:<request method>\n
/// :path:<request path>\n
/// ```
///
/// `values` are the six signed headers' values in [`ContextHeaders::signed`]
/// order, `""` for an absent header. Every line, the last included, ends in
/// a single `\n`.
pub fn canonical_string(h: &ContextHeaders, timestamp: &str, values: [&str; 6], method: &str, path: &str) -> String {
    let mut s = String::with_capacity(256);
    s.push_str(SCHEME);
    s.push('\n');
    s.push_str(timestamp);
    s.push('\n');
    for (name, value) in h.signed().into_iter().zip(values) {
        s.push_str(name);
        s.push(':');
        s.push_str(value);
        s.push('\n');
    }
    s.push_str(":method:");
    s.push_str(method);
    s.push('\n');
    s.push_str(":path:");
    s.push_str(path);
    s.push('\n');
    s
}

fn mac(key: &[u8], message: &str) -> Option<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    mac.update(message.as_bytes());
    Some(mac)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Decodes exactly `2 * N` lower-case hex digits (also used for key tags).
pub(crate) fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    fn digit(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    if bytes.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

/// The headers to set upstream for `id`, as `(name, value)` pairs.
///
/// Optional fields that are `None`, and values that are not
/// [header-safe](is_header_safe), are left out; so is the scopes header when
/// no scope qualifies (a scope containing a space or an unsafe character is
/// dropped on its own). A caller that requires a subject should check
/// [`is_header_safe`] on it before deciding to allow the request.
///
/// With `signing = Some((key, now, method, path))`, also sets the timestamp
/// header to `now` (unix seconds) and the signature header to
/// `v1=<lower-case hex HMAC-SHA256(key, canonical string)>`, where `method`
/// and `path` are the request's `:method` and `:path` exactly as the upstream
/// will receive them (path with its query string). If `method` or `path`
/// contains a control character no timestamp or signature is set, so a
/// verifying backend rejects the request. Keys must be at least 32 bytes; the
/// caller validates that.
pub fn render(h: &ContextHeaders, id: &Identity, signing: Option<(&[u8], u64, &str, &str)>) -> Vec<(String, String)> {
    let scopes = scopes_value(id.scopes);
    let values: [Option<&str>; 6] = [
        Some(id.method),
        Some(id.subject),
        id.tenant,
        scopes.as_deref(),
        id.key_id,
        id.token_id,
    ]
    .map(|v| v.filter(|v| is_header_safe(v)));

    let mut out: Vec<(String, String)> = h
        .signed()
        .into_iter()
        .zip(values)
        .filter_map(|(name, value)| value.map(|v| (name.to_string(), v.to_string())))
        .collect();

    if let Some((key, now, method, path)) = signing {
        if is_request_line_safe(method) && is_request_line_safe(path) {
            let timestamp = now.to_string();
            let canonical = canonical_string(h, &timestamp, values.map(|v| v.unwrap_or("")), method, path);
            if let Some(mac) = mac(key, &canonical) {
                let signature = format!("{SCHEME}={}", hex(&mac.finalize().into_bytes()));
                out.push((h.timestamp().to_string(), timestamp));
                out.push((h.signature().to_string(), signature));
            }
        }
    }
    out
}

/// Why [`verify`] refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// No timestamp header.
    MissingTimestamp,
    /// The timestamp header is not a decimal number of seconds.
    MalformedTimestamp,
    /// No signature header.
    MissingSignature,
    /// The signature header is not `v1=` followed by 64 lower-case hex digits.
    MalformedSignature,
    /// A context header value, or the request's method or path, contains
    /// characters the edge never signs (control characters, for instance).
    UnsafeValue,
    /// The timestamp is more than the maximum age in the past.
    Expired,
    /// The timestamp is more than [`MAX_FUTURE_SKEW_S`] in the future.
    FromTheFuture,
    /// The signature does not match: wrong key, or a signed value differs.
    BadSignature,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VerifyError::MissingTimestamp => "missing timestamp header",
            VerifyError::MalformedTimestamp => "malformed timestamp header",
            VerifyError::MissingSignature => "missing signature header",
            VerifyError::MalformedSignature => "malformed signature header",
            VerifyError::UnsafeValue => "a signed value contains characters the edge never signs",
            VerifyError::Expired => "timestamp too old",
            VerifyError::FromTheFuture => "timestamp too far in the future",
            VerifyError::BadSignature => "signature mismatch",
        })
    }
}

impl std::error::Error for VerifyError {}

/// Checks a request's context headers as a backend would: `get` returns a
/// header's value (`None` when absent; a backend should reject a request
/// carrying any context header more than once), `key` is the signing key,
/// `now` the backend's unix time in seconds, and `method` and `path` the
/// request's method and path as the backend received them.
///
/// Accepts when the timestamp is at most `max_age_s` seconds old and at most
/// [`MAX_FUTURE_SKEW_S`] seconds ahead of `now`, and the signature matches
/// (compared in constant time). A present but empty header counts as absent.
pub fn verify(
    h: &ContextHeaders,
    get: impl Fn(&str) -> Option<String>,
    key: &[u8],
    now: u64,
    max_age_s: u64,
    method: &str,
    path: &str,
) -> Result<(), VerifyError> {
    let timestamp = get(h.timestamp()).ok_or(VerifyError::MissingTimestamp)?;
    if timestamp.is_empty() || timestamp.len() > 20 || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::MalformedTimestamp);
    }
    let ts: u64 = timestamp.parse().map_err(|_| VerifyError::MalformedTimestamp)?;

    let signature = get(h.signature()).ok_or(VerifyError::MissingSignature)?;
    let expected = signature
        .strip_prefix(SCHEME)
        .and_then(|s| s.strip_prefix('='))
        .and_then(unhex::<32>)
        .ok_or(VerifyError::MalformedSignature)?;

    if !is_request_line_safe(method) || !is_request_line_safe(path) {
        return Err(VerifyError::UnsafeValue);
    }
    let owned: Vec<String> = h
        .signed()
        .into_iter()
        .map(|name| get(name).unwrap_or_default())
        .collect();
    let mut values = [""; 6];
    for (slot, value) in values.iter_mut().zip(&owned) {
        if !value.is_empty() && !is_header_safe(value) {
            return Err(VerifyError::UnsafeValue);
        }
        *slot = value;
    }

    if ts > now.saturating_add(MAX_FUTURE_SKEW_S) {
        return Err(VerifyError::FromTheFuture);
    }
    if now.saturating_sub(ts) > max_age_s {
        return Err(VerifyError::Expired);
    }

    let canonical = canonical_string(h, &timestamp, values, method, path);
    let mac = mac(key, &canonical).ok_or(VerifyError::BadSignature)?;
    mac.verify_slice(&expected).map_err(|_| VerifyError::BadSignature)
}

#[cfg(test)]
mod tests;
