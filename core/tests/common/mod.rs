//! Helpers shared by the core's integration tests.
#![allow(dead_code)]

use std::collections::HashMap;

use edge_auth_core::config::Config;
use edge_auth_core::decision::{decide, Allow, Attempt, Deny, Outcome, Request, State, Verdict};
use jwt_simple::prelude::JWTClaims;
use serde_json::Value;

pub mod host;
pub mod revocations;

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

/// A request that carries only a bearer token, from a fixed peer.
pub struct Bearer(pub String);

impl Request for Bearer {
    fn header(&mut self, name: &str) -> Option<String> {
        (name == "authorization").then(|| format!("Bearer {}", self.0))
    }
    fn forwarded_for(&mut self) -> Option<String> {
        None
    }
    fn peer(&mut self) -> Option<String> {
        Some("192.0.2.1:1".into())
    }
}

/// A GET of `path` carrying only `headers`, decided on a fresh worker at `now_ms`
/// (it may wait for a lookup; none is delivered).
pub fn decide_fresh<'c>(
    cfg: &'c Config,
    path: &str,
    now_ms: u64,
    headers: HashMap<&'static str, String>,
) -> Outcome<'c> {
    let attempt = Attempt {
        method: "GET",
        path,
        now_ms,
        may_await: true,
        answer: None,
    };
    decide(cfg, &mut State::new(cfg), &attempt, &mut HeaderRequest(headers))
}
