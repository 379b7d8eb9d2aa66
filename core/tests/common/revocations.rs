//! What the revocation-poll tests send and check: a feed snapshot or delta
//! revoking token ids, and an HS256 token with a token id for the `hs`
//! provider (issuer `https://hs`, audience `api`, secret [`SECRET`]).

use jwt_simple::prelude::*;
use serde_json::{json, Value};

use super::host::NOW_S;
use super::raw_claims;

/// The `hs` provider's HMAC secret (the environment variable `SECRET`).
pub const SECRET: &str = "0123456789abcdef0123456789abcdef-secret";

/// A feed answer at `cursor` (a snapshot when `reset`) revoking the token ids
/// `jtis` for an hour, and nothing else.
pub fn jti_feed(cursor: &str, reset: bool, poll_interval_s: u64, jtis: &[&str]) -> Value {
    let jtis: Vec<Value> = jtis
        .iter()
        .map(|j| json!({"jti": j, "expires_at": NOW_S + 3600}))
        .collect();
    json!({"cursor": cursor, "reset": reset, "poll_interval_s": poll_interval_s, "revoked_before": null,
        "subjects": [], "sessions": [], "jtis": jtis})
}

/// An `hs` token for `alice` with token id `jti`, valid for the next hour.
pub fn hs_token(jti: &str) -> String {
    let c = raw_claims(json!({"iss": "https://hs", "aud": "api", "sub": "alice", "jti": jti,
        "iat": NOW_S - 5, "exp": NOW_S + 3600}));
    HS256Key::from_bytes(SECRET.as_bytes()).authenticate(c).unwrap()
}
