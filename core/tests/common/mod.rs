//! Helpers shared by the core's integration tests.
#![allow(dead_code)]

pub mod proxy;

use std::collections::HashMap;

use edge_auth_core::decision::{Allow, Deny, Outcome, Request, Verdict};
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

/// The allow of an outcome (panics on any other verdict).
pub fn allowed<'a, 'c>(o: &'a Outcome<'c>) -> &'a Allow<'c> {
    match &o.verdict {
        Verdict::Allow(a) => a,
        other => panic!("expected an allow, got {other:?}"),
    }
}

/// The refusal of an outcome (panics on any other verdict).
pub fn denied<'c>(o: &Outcome<'c>) -> Deny<'c> {
    match &o.verdict {
        Verdict::Deny(d) => *d,
        other => panic!("expected a denial, got {other:?}"),
    }
}

/// A request that is only its headers, from a fixed peer with no X-Forwarded-For.
pub struct HeaderRequest(pub HashMap<&'static str, String>);

impl Request for HeaderRequest {
    fn header(&mut self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
    fn forwarded_for(&mut self) -> Option<String> {
        None
    }
    fn peer(&mut self) -> Option<String> {
        Some("192.0.2.1:40000".into())
    }
}
