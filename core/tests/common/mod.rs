//! Helpers shared by the core's integration tests.
#![allow(dead_code)]

use jwt_simple::prelude::JWTClaims;
use serde_json::Value;

/// Claims that are exactly `claims` as JSON: no registered claim is added or
/// changed by jwt-simple, so tests control every field (and can break them).
pub fn raw_claims(claims: Value) -> JWTClaims<Value> {
    JWTClaims {
        issued_at: None,
        expires_at: None,
        invalid_before: None,
        issuer: None,
        subject: None,
        audiences: None,
        jwt_id: None,
        nonce: None,
        custom: claims,
    }
}
