//! Field paths and the checks every feature shares: errors naming the
//! field at fault, ranges, header names and authorities.

use std::fmt::Display;

use super::ConfigError;
use crate::claim_path::{ClaimPath, RawClaimPath};

/// The error for the field at `field` (its path, e.g. `providers[0].issuer`).
pub(super) fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// A claim path as written at `field`, compiled ([`ClaimPath`]).
pub(super) fn claim_path(raw: &RawClaimPath, field: impl Into<String>) -> Result<ClaimPath, ConfigError> {
    ClaimPath::compile(raw).map_err(|m| err(field, m))
}

/// `value` if it is within `lo..=hi`; else the field's error, which names the range.
pub(super) fn range<T: PartialOrd + Display>(
    value: T,
    lo: T,
    hi: T,
    field: impl Into<String>,
) -> Result<T, ConfigError> {
    if lo <= value && value <= hi {
        Ok(value)
    } else {
        Err(err(field, format!("must be between {lo} and {hi}")))
    }
}

/// An absolute request path without a query, as the filter sends to a cluster.
pub(super) fn query_free_path(path: &str, field: impl Into<String>) -> Result<(), ConfigError> {
    if !path.starts_with('/') || path.bytes().any(|b| b <= 0x20 || b == 0x7f || b == b'?') {
        return Err(err(field, "must be an absolute path without a query"));
    }
    Ok(())
}

/// Headers the filter must never write: they would change how the request is
/// routed or framed, or carry credentials.
pub(super) const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "authorization",
    "cookie",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-request-id",
    "x-envoy-original-path",
];

/// The `:authority` of calls to a cluster: as configured, else the cluster's name.
pub(super) fn authority(configured: Option<String>, cluster: &str, at: &str) -> Result<String, ConfigError> {
    let authority = configured.unwrap_or_else(|| cluster.to_owned());
    if authority.is_empty() || authority.bytes().any(|b| b <= 0x20 || b == 0x7f) {
        return Err(err(format!("{at}.authority"), "must be a host name"));
    }
    Ok(authority)
}

/// Lower-cases and checks an HTTP header name (RFC 9110 token, no pseudo-headers).
pub(super) fn header_name(h: &str) -> Option<String> {
    let ok = !h.is_empty()
        && h.len() <= 128
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    ok.then(|| h.to_ascii_lowercase())
}

pub(super) fn written_header_name(h: &str, at: &str) -> Result<String, ConfigError> {
    let name = header_name(h).ok_or_else(|| err(at, format!("\"{h}\" is not a header name")))?;
    if RESERVED_HEADERS.contains(&name.as_str()) || name.starts_with("x-envoy-") {
        return Err(err(at, format!("\"{name}\" cannot be written by the filter")));
    }
    Ok(name)
}
