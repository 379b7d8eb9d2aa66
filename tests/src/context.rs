//! The identity context headers the filter writes upstream, as a backend
//! sees them in the echo server's answer: the forged copies a client might
//! send, and verification of the signature as docs/upstream-context.md
//! tells a backend to do it.

use edge_auth_core::context::{verify, ContextHeaders};
use serde_json::Value;

use crate::servers::echoed_headers;

/// Client-sent copies of every context header (the default prefix), with
/// values the filter never writes: each must be stripped or replaced.
pub const FORGED: &[(&str, &str)] = &[
    ("x-edge-auth-method", "forged"),
    ("X-Edge-Auth-Subject", "admin"),
    ("x-edge-auth-tenant", "other"),
    ("x-edge-auth-scopes", "everything"),
    ("x-edge-auth-key-id", "key_forgedforgedforgedforgedfo"),
    ("x-edge-auth-token-id", "forged-jti"),
    ("x-edge-auth-timestamp", "1"),
    ("x-edge-auth-signature", "v1=00"),
];

/// Verifies the context headers of an echoed request (`{"path", "headers"}`)
/// with `key`, as a backend would for a request with `method`. A header that
/// arrived twice counts as missing: a backend never picks one of two.
pub fn verify_echoed(body: &Value, key: &[u8], method: &str) -> Result<(), String> {
    let seen = echoed_headers(body);
    let path = body["path"].as_str().unwrap_or_default().to_owned();
    let get = |name: &str| {
        let mut all = seen.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let first = all.next().map(|(_, v)| v.clone());
        if all.next().is_some() {
            None
        } else {
            first
        }
    };
    verify(&ContextHeaders::default(), get, key, crate::now(), 60, method, &path).map_err(|e| e.to_string())
}
