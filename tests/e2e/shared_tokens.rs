//! Verified tokens shared by the workers of one Envoy (docs/configuration.md
//! 4.6): with four workers, each distinct token costs one signature
//! verification per Envoy however many connections (and so workers) it
//! arrives on, and a token whose `kid` a JWKS refresh withdrew is refused
//! on every worker.

use std::time::Duration;

use edge_auth_e2e::tokens::{claims, jwks, Alg, TestKey};
use edge_auth_e2e::{EchoServer, Envoy, EnvoyOptions, JwksServer};
use serde_json::json;

const ISS: &str = "https://idp.shared.e2e";
const AUD: &str = "shared-api";
const VERIFICATIONS: &str = "wasmcustom.edge_auth.jwt.signature_verifications";
const SHARED_HITS: &str = "wasmcustom.edge_auth.token_cache.shared_hit";

#[test]
fn one_signature_verification_per_token_per_envoy_and_withdrawn_kids_refused_everywhere() {
    let a = TestKey::generate(Alg::ES256, "shared-a");
    let b = TestKey::generate(Alg::ES256, "shared-b");
    let echo = EchoServer::start();
    let server = JwksServer::start(&jwks(&[&a]));
    let config = json!({
        "providers": [{
            "name": "idp", "issuer": ISS, "audiences": [AUD], "algorithms": ["ES256"],
            "remote_jwks": {"cluster": "jwks", "path": "/jwks", "timeout_ms": 1000,
                            "refresh_interval_s": 1, "min_refetch_interval_s": 1}
        }],
        "rules": [{"name": "api", "match": {"prefix": "/"}, "jwt": {"providers": ["idp"]}}],
        "token_cache": {"shared_slots": 1024}
    });
    let opts = EnvoyOptions {
        concurrency: 4,
        ..EnvoyOptions::new(config, echo.port()).cluster("jwks", server.port())
    };
    let envoy = Envoy::start(opts).unwrap_or_else(|e| panic!("{e}"));
    let call = |token: &str| envoy.get("/resource", &[("authorization", &format!("Bearer {token}"))]);
    // every worker has its keys before the count starts
    assert!(
        envoy
            .wait_for_stat("wasmcustom.edge_auth.jwks.fetch_ok", Duration::from_secs(10), |n| n
                >= 4)
            .is_some(),
        "the workers did not fetch their keys"
    );

    // N distinct tokens, each sent one after the other on many fresh connections:
    // the kernel spreads connections over the four workers.
    const N: u64 = 6;
    const SENDS: usize = 12;
    let tokens: Vec<String> = (0..N)
        .map(|i| a.sign(&claims(ISS, AUD, &format!("user-{i}"), 300)))
        .collect();
    let before = envoy.stat(VERIFICATIONS);
    for _ in 0..SENDS {
        for t in &tokens {
            let r = call(t);
            assert_eq!(r.status, 200, "{}", r.summary());
        }
    }
    let verified = envoy.stat(VERIFICATIONS) - before;
    let shared = envoy.stat(SHARED_HITS);
    assert_eq!(
        verified, N,
        "signature verifications for {N} tokens on 4 workers ({shared} shared hits)"
    );
    assert!(shared >= 1, "no token reached a second worker: the test proves nothing");

    // The issuer withdraws a's kid: every worker's next refresh drops it, and
    // neither its own cache nor the shared table may accept a's tokens again.
    server.set_jwks(&jwks(&[&b]));
    let old = &tokens[0];
    let refused = edge_auth_e2e::settles(Duration::from_secs(10), || call(old).status == 401);
    assert!(refused, "a token of the withdrawn kid is still accepted");
    for i in 0..24 {
        let r = call(old);
        assert_eq!(r.status, 401, "request {i}: {}", r.summary());
        assert_eq!(r.json()["error_description"], "the token's key id is unknown");
    }
    // b's tokens are verified and shared as before
    let fresh = b.sign(&claims(ISS, AUD, "after", 300));
    let before = envoy.stat(VERIFICATIONS);
    for _ in 0..SENDS {
        assert_eq!(call(&fresh).status, 200);
    }
    assert_eq!(envoy.stat(VERIFICATIONS) - before, 1);
}
