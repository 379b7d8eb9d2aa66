//! Remote JWKS through an Envoy cluster: first fetch, key rotation at the
//! issuer without a restart, failures that keep the last good keys, rate
//! limiting of unknown-kid refetches, and a provider whose keys never came.

use std::net::TcpListener;
use std::time::Duration;

use edge_auth_e2e::tokens::{claims, jwks, Alg, TestKey};
use edge_auth_e2e::{wait_until, EchoServer, Envoy, EnvoyOptions, JwksServer};
use serde_json::json;

const ISS: &str = "https://idp.e2e";
const AUD: &str = "remote-api";

struct Stack {
    envoy: Envoy,
    echo: EchoServer,
    jwks: JwksServer,
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

fn start(initial: &[&TestKey], refresh_s: u64) -> Stack {
    let echo = EchoServer::start();
    let server = JwksServer::start(&jwks(initial));
    let config = json!({
        "providers": [
            {
                "name": "idp", "issuer": ISS, "audiences": [AUD], "algorithms": ["ES256", "RS256"],
                "remote_jwks": {"cluster": "jwks", "path": "/.well-known/jwks.json", "timeout_ms": 1000,
                                "refresh_interval_s": refresh_s, "min_refetch_interval_s": 1},
                "claim_headers": [{"claim": "sub", "header": "x-auth-subject"}]
            },
            {
                "name": "dead", "issuer": "https://dead.e2e", "audiences": [AUD], "algorithms": ["ES256"],
                "remote_jwks": {"cluster": "dead", "path": "/jwks", "timeout_ms": 500}
            }
        ],
        "rules": [
            {"name": "dead", "match": {"prefix": "/dead/"}, "jwt": {"providers": ["dead"]}},
            {"name": "api", "match": {"prefix": "/"}, "jwt": {"providers": ["idp"]}}
        ]
    });
    let opts = EnvoyOptions::new(config, echo.port())
        .cluster("jwks", server.port())
        .cluster("dead", closed_port());
    let envoy = Envoy::start(opts).unwrap_or_else(|e| panic!("{e}"));
    Stack {
        envoy,
        echo,
        jwks: server,
    }
}

fn call(s: &Stack, token: &str) -> edge_auth_e2e::Response {
    s.envoy
        .get("/resource", &[("authorization", &format!("Bearer {token}"))])
}

fn token(k: &TestKey, sub: &str) -> String {
    k.sign(&claims(ISS, AUD, sub, 300))
}

#[test]
fn keys_are_fetched_and_rotation_needs_no_restart() {
    let a = TestKey::generate(Alg::ES256, "rot-a");
    let b = TestKey::generate(Alg::ES256, "rot-b");
    let s = start(&[&a], 3600);

    let r = call(&s, &token(&a, "alice"));
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(
        edge_auth_e2e::servers::echoed_header(&r.json(), "x-auth-subject").as_deref(),
        Some("alice")
    );
    assert!(s.jwks.hits() >= 1);

    // The issuer rotates: b replaces a. A token naming b makes the filter refetch
    // (once the 1 s rate limit since the first on-demand fetch has passed) and wait for it.
    s.jwks.set_jwks(&jwks(&[&b]));
    std::thread::sleep(Duration::from_millis(1_100));
    for i in 0..4 {
        let r = call(&s, &token(&b, &format!("bob-{i}")));
        assert_eq!(r.status, 200, "request {i} with the new key: {}", r.summary());
    }
    // a's tokens stop working on every worker once each has refetched (cache dropped with the key).
    // Each worker has its own keys and refetches only when it meets b's kid, and the kernel picks
    // the worker per connection, so keep offering fresh b tokens until every worker has seen one.
    let a_token = token(&a, "alice-again");
    let mut round = 0;
    let gone = wait_until(Duration::from_secs(20), || {
        std::thread::sleep(Duration::from_millis(1_100));
        round += 1;
        for i in 0..4 {
            let r = call(&s, &token(&b, &format!("bob-{round}-{i}")));
            assert_eq!(
                r.status,
                200,
                "round {round}, request {i} with the new key: {}",
                r.summary()
            );
        }
        (0..4).all(|_| call(&s, &a_token).status == 401)
    });
    assert!(gone, "tokens of the withdrawn key are still accepted");
    let r = call(&s, &a_token);
    assert_eq!(r.json()["error_description"], "the token's key id is unknown");
    assert!(s.envoy.stat("wasmcustom.edge_auth.jwks.fetch_ok") >= 2);
    assert!(s.envoy.stat("wasmcustom.edge_auth.jwks.request_waits") >= 1);
}

#[test]
fn unknown_kid_refetches_are_rate_limited() {
    let a = TestKey::generate(Alg::ES256, "rl-a");
    let s = start(&[&a], 3600);
    assert_eq!(call(&s, &token(&a, "warm")).status, 200);
    std::thread::sleep(Duration::from_millis(1_100));
    let before = s.jwks.hits();
    let stranger = TestKey::generate(Alg::ES256, "unknown");
    let t = token(&stranger, "mallory");
    let started = std::time::Instant::now();
    for _ in 0..20 {
        let r = call(&s, &t);
        assert_eq!(r.status, 401, "{}", r.summary());
        assert_eq!(r.json()["error_description"], "the token's key id is unknown");
    }
    let fetched = s.jwks.hits() - before;
    // at most one on-demand fetch per worker per second (plus the main thread's instance)
    let seconds = started.elapsed().as_secs() + 1;
    assert!(
        fetched as u64 <= 3 * seconds,
        "{fetched} JWKS fetches for 20 unknown-kid requests in {seconds} s"
    );
    assert_eq!(s.echo.hits(), 1, "only the warm-up request reached the upstream");
}

#[test]
fn failed_refreshes_keep_the_last_good_keys_and_recover() {
    let a = TestKey::generate(Alg::RS256, "fail-a");
    let s = start(&[&a], 1);
    assert_eq!(call(&s, &token(&a, "before")).status, 200);

    for (i, breakage) in ["status 500", "garbage body", "no usable key"].iter().enumerate() {
        match i {
            0 => s.jwks.set_status(500),
            1 => s.jwks.set_response(200, "<html>not a jwks</html>"),
            _ => s.jwks.set_response(200, r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#),
        }
        let failed_before = s.envoy.stat("wasmcustom.edge_auth.jwks.fetch_failed");
        let counted = s
            .envoy
            .wait_for_stat("wasmcustom.edge_auth.jwks.fetch_failed", Duration::from_secs(10), |v| {
                v > failed_before
            });
        assert!(counted.is_some(), "{breakage}: no failed fetch counted");
        // fresh tokens (not cached) still verify with the last good key
        let r = call(&s, &token(&a, &format!("during-{i}")));
        assert_eq!(r.status, 200, "{breakage}: {}", r.summary());
    }
    s.jwks.set_jwks(&jwks(&[&a]));
    let ok_before = s.envoy.stat("wasmcustom.edge_auth.jwks.fetch_ok");
    let recovered = s
        .envoy
        .wait_for_stat("wasmcustom.edge_auth.jwks.fetch_ok", Duration::from_secs(15), |v| {
            v > ok_before
        });
    assert!(
        recovered.is_some(),
        "no successful fetch after the JWKS server recovered"
    );
    assert_eq!(call(&s, &token(&a, "after")).status, 200);
}

#[test]
fn a_provider_whose_keys_never_arrived_gets_401_not_a_crash() {
    let a = TestKey::generate(Alg::ES256, "dead-a");
    let s = start(&[&a], 3600);
    let t = a.sign(&claims("https://dead.e2e", AUD, "nobody", 300));
    for _ in 0..3 {
        let r = s.envoy.get("/dead/x", &[("authorization", &format!("Bearer {t}"))]);
        assert_eq!(r.status, 401, "{}", r.summary());
        assert_eq!(
            r.json()["error_description"],
            "the issuer's signing keys are not available yet"
        );
    }
    assert!(s.envoy.stat("wasmcustom.edge_auth.denied.keys_unavailable") >= 3);
    // the VM is alive: the healthy provider (whose JWKS holds a) still works
    assert_eq!(call(&s, &token(&a, "x")).status, 200);
    let r = s.envoy.get("/resource", &[]);
    assert_eq!(r.status, 401);
    assert!(s.envoy.stat("wasmcustom.edge_auth.jwks.fetch_failed") >= 1);
}
