//! Envoy's own egress token injection, the peer of edge-auth's `egress_tokens`
//! (issue 16 part 3): `envoy.filters.http.credential_injector` with the
//! `envoy.http.injected_credentials.oauth2` client-credentials extension, run
//! against the fake issuer through the same scenarios as
//! tests/e2e/egress_resilience.rs. What is asserted here is what Envoy 1.40
//! really does; docs/egress-tokens.md compares the two from these facts.
//!
//! One Envoy (two workers), two egress listeners:
//! * `peer`: the injector against an issuer that works at first (tokens of 4 s,
//!   refresh retried every 1 s), then answers 503, 429 with `Retry-After: 30`,
//!   too slowly (past the 0.5 s timeout), 401 `invalid_client`, then works again;
//! * `peer_cold`: the injector against an issuer that answers 503 from the
//!   start (no token ever obtained), then works.

use std::time::{Duration, Instant};

use edge_auth_e2e::egress::add_peer_listener;
use edge_auth_e2e::issuer::{FakeIssuer, IssuerMode, StampedUpstream};
use edge_auth_e2e::{http, wait_until, Envoy, EnvoyOptions};

const SECRET: &str = "peer-s3cret:with/odd=chars&more+plus%25";
const LIFETIME: Duration = Duration::from_secs(4);

struct Peer {
    envoy: Envoy,
    issuer: FakeIssuer,
    cold_issuer: FakeIssuer,
    upstream: StampedUpstream,
}

impl Peer {
    fn start() -> Peer {
        let issuer = FakeIssuer::start("peer", LIFETIME);
        let cold_issuer = FakeIssuer::start("cold", LIFETIME);
        cold_issuer.set_mode(IssuerMode::Unavailable);
        let upstream = StampedUpstream::start();
        let opts = EnvoyOptions::without_wasm(upstream.port())
            .cluster("peer_issuer", issuer.port())
            .cluster("cold_issuer", cold_issuer.port());
        let mut bootstrap = opts.bootstrap().expect("bootstrap");
        add_peer_listener(
            &mut bootstrap,
            "peer",
            "peer_issuer",
            "peer-client",
            "peer-secret",
            SECRET,
        );
        add_peer_listener(
            &mut bootstrap,
            "peer_cold",
            "cold_issuer",
            "cold-client",
            "peer-secret",
            SECRET,
        );
        let envoy = Envoy::start_with_bootstrap(&opts, &bootstrap).expect("envoy starts");
        Peer {
            envoy,
            issuer,
            cold_issuer,
            upstream,
        }
    }

    fn get(&self, listener: &str, headers: &[(&str, &str)]) -> http::Response {
        let addr = self.envoy.listener_addr(listener).expect("listener address");
        http::request(addr, "GET", "/billing/invoices", headers, b"")
    }

    /// The `Authorization` the upstream received for a request through `peer`.
    fn injected(&self) -> String {
        let r = self.get("peer", &[]);
        assert_eq!(r.status, 200, "{}", r.summary());
        r.json()["authorization"].as_str().unwrap_or_default().to_string()
    }

    fn counter(&self, listener: &str, name: &str) -> u64 {
        self.envoy
            .try_stat(&format!("http.{listener}.credential_injector.{name}"))
            .unwrap_or(0)
    }
}

/// The peer's whole life in one Envoy: inject, refresh at half life, a bad day at
/// the issuer (503, 429, 401), the token's expiry, and recovery.
#[test]
fn credential_injector_through_a_bad_day() {
    let p = Peer::start();

    // Injects: one token request for the whole Envoy (two workers), the scope, and
    // the token as a bearer credential replacing the one the client sent
    // (overwrite: true).
    assert!(p.issuer.wait_for_issued(1, Duration::from_secs(5)), "no token request");
    let first = p.issuer.last_issued().expect("a token");
    let r = p.get("peer", &[("authorization", "Bearer client-sent")]);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.json()["authorization"], format!("Bearer {}", first.token));
    assert_eq!(r.json()["copies"], 1);
    let req = &p.issuer.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/oauth/token");
    assert_eq!(req.param("grant_type"), Some("client_credentials"));
    assert_eq!(req.param("scope"), Some("billing:read"));
    // The client id and secret travel in the form body (client_secret_post), not
    // HTTP Basic, properly form-encoded.
    assert_eq!(req.param("client_id"), Some("peer-client"));
    assert_eq!(req.param("client_secret"), Some(SECRET));
    assert_eq!(req.basic, None);
    assert_eq!(req.header("authorization"), None);
    assert!(wait_until(Duration::from_secs(2), || p.counter("peer", "injected") >= 1));
    assert_eq!(
        p.counter("peer", "oauth2.token_requested"),
        1,
        "one fetch per Envoy, not per worker"
    );

    // Refreshes at half the lifetime (expires_in / 2), not configurable.
    assert!(
        p.issuer.wait_for_issued(2, LIFETIME + Duration::from_secs(3)),
        "no refresh"
    );
    let second = p.issuer.last_issued().expect("a token");
    let gap = second.issued_at - first.issued_at;
    assert!(
        gap >= Duration::from_millis(1500) && gap <= Duration::from_millis(3500),
        "refresh {gap:?} after the first token (lifetime {LIFETIME:?})"
    );
    assert!(wait_until(Duration::from_secs(2), || p.injected()
        == format!("Bearer {}", second.token)));

    // 503 from the issuer: retried every token_fetch_retry_interval (1 s, fixed,
    // no backoff). The last token is injected until it expires; the first failed
    // retry after its expiry clears it ("Cached token has expired, clearing it"),
    // and from then on requests are refused with 401: an expired token reaches
    // the upstream at most for about one retry interval.
    p.issuer.set_mode(IssuerMode::Unavailable);
    let t503 = Instant::now();
    let mut statuses = Vec::new();
    while Instant::now() < second.expires_at() + Duration::from_millis(2500) {
        let r = p.get("peer", &[]);
        statuses.push((Instant::now(), r.status));
        if r.status == 200 {
            assert_eq!(r.json()["authorization"], format!("Bearer {}", second.token));
        } else {
            assert_eq!((r.status, r.text().as_str()), (401, "Failed to inject credential."));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        statuses.iter().any(|(at, s)| *at < second.expires_at() && *s == 200),
        "served while the token was valid: {statuses:?}"
    );
    let settled = second.expires_at() + Duration::from_millis(1500);
    assert!(
        statuses.iter().filter(|(at, _)| *at >= settled).all(|(_, s)| *s == 401),
        "refused once the token expired: {statuses:?}"
    );
    for (at, t) in p.issuer.expired_uses(&p.upstream.seen()) {
        assert!(
            at < t.expires_at() + Duration::from_millis(1500),
            "expired token long after expiry"
        );
    }
    let attempts = p.issuer.requests_since(t503);
    let window = t503.elapsed().as_secs();
    assert!(
        attempts as u64 + 1 >= window && attempts as u64 <= window + 2,
        "{attempts} attempts in {window} s of 503: one per second, no backoff"
    );
    assert!(p.counter("peer", "oauth2.token_fetch_failed_on_bad_response_code") >= 2);

    // 429 with Retry-After: 30: the header is ignored, the fixed interval goes on.
    p.issuer.set_mode(IssuerMode::TooManyRequests { retry_after_s: 30 });
    let t429 = Instant::now();
    std::thread::sleep(Duration::from_millis(3200));
    let attempts = p.issuer.requests_since(t429);
    assert!(attempts >= 2, "{attempts} attempts in 3.2 s after Retry-After: 30");

    // An issuer slower than the token endpoint's timeout (0.5 s): each attempt
    // times out, and the next follows one interval later.
    p.issuer.set_mode(IssuerMode::Slow {
        delay: Duration::from_millis(1500),
    });
    let bad_before = p.counter("peer", "oauth2.token_fetch_failed_on_bad_response_code");
    let tslow = Instant::now();
    std::thread::sleep(Duration::from_millis(3200));
    let attempts = p.issuer.requests_since(tslow);
    assert!(
        attempts >= 2,
        "{attempts} attempts in 3.2 s of an issuer slower than the timeout"
    );
    // A timeout counts as a bad response code (the local 504), not a stream reset.
    assert!(p.counter("peer", "oauth2.token_fetch_failed_on_bad_response_code") >= bad_before + 2);
    assert_eq!(p.counter("peer", "oauth2.token_fetch_failed_on_stream_reset"), 0);

    // 401 invalid_client: the same fixed-interval retries (no stop, no distinct
    // refusal: requests get the same 401 as any other failure).
    p.issuer.set_mode(IssuerMode::InvalidClient);
    let t401 = Instant::now();
    std::thread::sleep(Duration::from_millis(3200));
    let attempts = p.issuer.requests_since(t401);
    assert!(attempts >= 2, "{attempts} attempts in 3.2 s of 401 invalid_client");
    let r = p.get("peer", &[]);
    assert_eq!((r.status, r.text().as_str()), (401, "Failed to inject credential."));
    // Each failed attempt logs at ERROR, the issuer's answer included.
    let log = p.envoy.log();
    assert!(
        log.matches("Oauth response body: {\"error\":\"invalid_client\"")
            .count()
            >= 2
    );
    assert!(
        log.matches("onGetAccessTokenFailure: Failed to get access token")
            .count()
            >= 4
    );

    // Recovery: the next retry gets a fresh token.
    let issued = p.issuer.issued().len();
    p.issuer.set_mode(IssuerMode::Issue);
    assert!(
        p.issuer.wait_for_issued(issued + 1, Duration::from_secs(4)),
        "no recovery"
    );
    let fresh = p.issuer.last_issued().expect("a token");
    assert!(wait_until(Duration::from_secs(2), || p.injected()
        == format!("Bearer {}", fresh.token)));

    // Never a token obtained: requests are refused with 401 and a text body
    // (not 503), without waiting for a fetch; then served once the issuer answers.
    let r = p.get("peer_cold", &[]);
    assert_eq!(r.status, 401, "{}", r.summary());
    assert_eq!(r.text(), "Failed to inject credential.");
    assert!(p.counter("peer_cold", "failed") >= 1);
    let before = p.upstream.hits();
    p.cold_issuer.set_mode(IssuerMode::Issue);
    assert!(
        p.cold_issuer.wait_for_issued(1, Duration::from_secs(4)),
        "cold issuer never asked again"
    );
    let cold = p.cold_issuer.last_issued().expect("a token");
    assert!(wait_until(Duration::from_secs(2), || p.get("peer_cold", &[]).status == 200));
    assert!(p.upstream.hits() > before);
    assert!(p
        .upstream
        .seen()
        .iter()
        .any(|(_, a)| *a == format!("Bearer {}", cold.token)));

    // Neither the secret nor any token in Envoy's log (info level).
    let log = p.envoy.log();
    assert!(!log.contains(SECRET), "the client secret is in Envoy's log");
    for t in p.issuer.issued().iter().chain(p.cold_issuer.issued().iter()) {
        assert!(!log.contains(&t.token), "a token is in Envoy's log");
    }
}
