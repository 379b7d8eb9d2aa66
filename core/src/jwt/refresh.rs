//! Remote JWKS: when to fetch, how to read the answer, what to keep on failure.
//!
//! A provider's remote keys are fetched at start, every `refresh_interval_s`,
//! and on demand when a token names an unknown `kid` (at most once per
//! `min_refetch_interval_s`). A failed fetch keeps the last good key set and is
//! retried with exponential backoff. Times here are milliseconds of the host clock.

use crate::jwt::keys::{parse_jwks, KeySet, SkippedKey};
use crate::jwt::{Provider, RemoteJwks};

/// First retry delay after a failed fetch; doubled on each further failure.
pub const BACKOFF_INITIAL_MS: u64 = 1_000;
/// Retry delay ceiling (also capped by the refresh interval).
pub const BACKOFF_MAX_MS: u64 = 60_000;
/// Extra time past the fetch timeout before an unanswered fetch counts as failed.
const IN_FLIGHT_GRACE_MS: u64 = 1_000;

/// What a request that needs a fresh key set should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDemand {
    /// A fetch is already under way: wait for it.
    Join,
    /// Start a fetch now and wait for it.
    Start,
    /// A fetch was made too recently: answer with what is known.
    RateLimited,
}

/// The remote key set of one provider and its fetch schedule.
#[derive(Debug, Default)]
pub struct RemoteKeys {
    keys: Option<KeySet>,
    /// Bumped whenever the key set is replaced.
    generation: u64,
    next_fetch_ms: u64,
    in_flight_until_ms: Option<u64>,
    failures: u32,
    last_on_demand_ms: Option<u64>,
}

impl RemoteKeys {
    /// No keys yet; the first fetch is due at once.
    pub fn new() -> RemoteKeys {
        RemoteKeys::default()
    }

    /// The last good key set, `None` until a fetch has succeeded.
    pub fn keys(&self) -> Option<&KeySet> {
        self.keys.as_ref()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn in_flight(&self) -> bool {
        self.in_flight_until_ms.is_some()
    }

    /// When the fetch under way counts as failed if unanswered (`None`: no fetch under way).
    pub fn deadline_ms(&self) -> Option<u64> {
        self.in_flight_until_ms
    }

    /// Whether the scheduled fetch (first, periodic or retry) is due.
    pub fn due(&self, now_ms: u64) -> bool {
        self.in_flight_until_ms.is_none() && now_ms >= self.next_fetch_ms
    }

    /// Marks a fetch as started.
    /// With discovery, the fetch may be two calls (document, then JWKS).
    pub fn start(&mut self, now_ms: u64, policy: &RemoteJwks) {
        let calls = if policy.discovery { 2 } else { 1 };
        self.in_flight_until_ms = Some(now_ms.saturating_add(policy.timeout_ms * calls + IN_FLIGHT_GRACE_MS));
    }

    /// What a request with an unknown `kid` (or a provider without keys) may do.
    pub fn on_demand(&self, now_ms: u64, policy: &RemoteJwks) -> OnDemand {
        if self.in_flight_until_ms.is_some() {
            return OnDemand::Join;
        }
        let min_gap = policy.min_refetch_interval_s.saturating_mul(1000);
        match self.last_on_demand_ms {
            Some(last) if now_ms < last.saturating_add(min_gap) => OnDemand::RateLimited,
            _ => OnDemand::Start,
        }
    }

    /// Marks an on-demand fetch as started (it counts against the rate limit).
    pub fn start_on_demand(&mut self, now_ms: u64, policy: &RemoteJwks) {
        self.last_on_demand_ms = Some(now_ms);
        self.start(now_ms, policy);
    }

    /// A good key set arrived: it replaces the previous one.
    pub fn succeed(&mut self, keys: KeySet, now_ms: u64, policy: &RemoteJwks) {
        self.keys = Some(keys);
        self.generation += 1;
        self.failures = 0;
        self.in_flight_until_ms = None;
        self.next_fetch_ms = now_ms.saturating_add(policy.refresh_interval_s.saturating_mul(1000));
    }

    /// The fetch failed: keep the last good keys, retry after a backoff.
    pub fn fail(&mut self, now_ms: u64, policy: &RemoteJwks) {
        self.failures = self.failures.saturating_add(1);
        self.in_flight_until_ms = None;
        self.next_fetch_ms = now_ms.saturating_add(backoff_ms(self.failures, policy));
    }

    /// Fails a fetch that outlived its deadline (its answer was lost, or the
    /// request that started it went away). Returns whether it did.
    pub fn expire(&mut self, now_ms: u64, policy: &RemoteJwks) -> bool {
        match self.in_flight_until_ms {
            Some(deadline) if now_ms >= deadline => {
                self.fail(now_ms, policy);
                true
            }
            _ => false,
        }
    }
}

/// Delay before retry number `failures` (1 = first retry).
pub fn backoff_ms(failures: u32, policy: &RemoteJwks) -> u64 {
    let cap = BACKOFF_MAX_MS
        .min(policy.refresh_interval_s.saturating_mul(1000))
        .max(BACKOFF_INITIAL_MS);
    let shift = failures.saturating_sub(1).min(16);
    BACKOFF_INITIAL_MS.saturating_mul(1 << shift).min(cap)
}

/// Reads a JWKS response. Anything but a 200 with a JWKS holding at least one
/// usable key is a failure (the caller keeps its last good set). Keys that
/// cannot be used are skipped and reported.
pub fn parse_response(
    status: Option<u16>,
    body: Option<&[u8]>,
    p: &Provider,
) -> Result<(KeySet, Vec<SkippedKey>), String> {
    let max = p.remote.as_ref().map_or(0, |r| r.max_response_bytes);
    let body = ok_body(status, body, max, "response")?;
    let doc: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let (set, skipped) = parse_jwks(&doc, &p.algorithms, false).map_err(|e| e.0)?;
    if set.is_empty() {
        return Err(format!(
            "no usable key among {} ({} skipped)",
            skipped.len(),
            skipped.len()
        ));
    }
    Ok((set, skipped))
}

/// The body of a 200 answer of at most `max` bytes (`what`: its name in the
/// error), as a remote JWKS or a discovery document must be.
pub(crate) fn ok_body<'b>(
    status: Option<u16>,
    body: Option<&'b [u8]>,
    max: usize,
    what: &str,
) -> Result<&'b [u8], String> {
    match status {
        Some(200) => {}
        Some(s) => return Err(format!("status {s}")),
        None => return Err("no response (timeout, reset or unknown cluster)".into()),
    }
    let body = body.unwrap_or_default();
    if body.len() > max {
        return Err(format!(
            "{what} of {} bytes exceeds max_response_bytes {max}",
            body.len()
        ));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use crate::b64;
    use crate::config;
    use jwt_simple::prelude::*;
    use serde_json::json;

    fn provider() -> Provider {
        let doc = json!({"providers": [{
            "name": "idp", "issuer": "https://idp", "audiences": ["a"], "algorithms": ["ES256"],
            "remote_jwks": {"cluster": "idp", "path": "/jwks", "timeout_ms": 1000,
                "refresh_interval_s": 600, "min_refetch_interval_s": 10, "max_response_bytes": 2048}
        }]});
        config::parse(doc.to_string().as_bytes(), &|_| None)
            .unwrap()
            .providers
            .remove(0)
    }

    fn jwks() -> String {
        let kp = ES256KeyPair::generate();
        let raw = kp.public_key().public_key().to_bytes_uncompressed();
        json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "k", "x": b64::encode_url(&raw[1..33]), "y": b64::encode_url(&raw[33..65])},
            {"kty": "RSA", "kid": "skipped", "n": "AQAB", "e": "AQAB"}
        ]})
        .to_string()
    }

    #[test]
    fn schedule_success_refresh_and_backoff() {
        let p = provider();
        let policy = p.remote.as_ref().unwrap();
        let mut r = RemoteKeys::new();
        assert!(r.due(0));
        r.start(0, policy);
        assert!(!r.due(0) && r.in_flight());
        assert!(!r.expire(1_999, policy));
        assert!(r.expire(2_000, policy), "timeout + grace");
        assert_eq!(r.failures(), 1);
        assert!(!r.due(2_999));
        assert!(r.due(3_000), "first retry after 1 s");
        r.start(3_000, policy);
        r.fail(3_100, policy);
        assert!(r.due(5_100) && !r.due(5_099), "second retry after 2 s");
        for i in 0..20 {
            r.fail(10_000 + i, policy);
        }
        assert!(
            r.due(10_019 + BACKOFF_MAX_MS) && !r.due(10_018 + BACKOFF_MAX_MS),
            "capped"
        );
        let (set, _) = parse_response(Some(200), Some(jwks().as_bytes()), &p).unwrap();
        r.succeed(set, 100_000, policy);
        assert_eq!(r.generation(), 1);
        assert_eq!(r.failures(), 0);
        assert!(r.keys().unwrap().has_kid("k"));
        assert!(!r.due(100_000 + 599_999) && r.due(100_000 + 600_000));
        // a failure afterwards keeps the good keys
        r.start(700_000, policy);
        r.fail(700_001, policy);
        assert!(r.keys().unwrap().has_kid("k"));
    }

    #[test]
    fn on_demand_is_rate_limited_and_joins_in_flight() {
        let p = provider();
        let policy = p.remote.as_ref().unwrap();
        let mut r = RemoteKeys::new();
        assert_eq!(r.on_demand(0, policy), OnDemand::Start);
        r.start_on_demand(0, policy);
        assert_eq!(r.on_demand(5, policy), OnDemand::Join);
        r.fail(10, policy);
        assert_eq!(r.on_demand(9_999, policy), OnDemand::RateLimited);
        assert_eq!(r.on_demand(10_000, policy), OnDemand::Start);
    }

    #[test]
    fn hostile_responses_fail() {
        let p = provider();
        assert!(parse_response(None, None, &p).is_err());
        assert!(parse_response(Some(500), Some(jwks().as_bytes()), &p).is_err());
        assert!(parse_response(Some(200), None, &p).is_err());
        assert!(parse_response(Some(200), Some(b"<html>"), &p).is_err());
        assert!(parse_response(Some(200), Some(b"{\"keys\": []}"), &p).is_err());
        assert!(parse_response(
            Some(200),
            Some(b"{\"keys\": [{\"kty\": \"oct\", \"k\": \"AAAA\"}]}"),
            &p
        )
        .is_err());
        let big = format!("{{\"keys\": [], \"pad\": \"{}\"}}", "x".repeat(4096));
        assert!(parse_response(Some(200), Some(big.as_bytes()), &p)
            .unwrap_err()
            .contains("max_response_bytes"));
        let (set, skipped) = parse_response(Some(200), Some(jwks().as_bytes()), &p).unwrap();
        assert_eq!((set.len(), skipped.len()), (1, 1));
    }
}
