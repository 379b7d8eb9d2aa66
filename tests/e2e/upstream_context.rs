//! Identity headers for the upstream: client-sent copies are stripped on
//! every route, the edge writes the verified identity, and the signature
//! verifies the way docs/upstream-context.md tells a backend to check it.

use std::sync::OnceLock;

use edge_auth_e2e::context::{self, FORGED};
use edge_auth_e2e::servers::{echoed_header, echoed_header_all};
use edge_auth_e2e::tokens::{claims, jwks, key, Alg};
use edge_auth_e2e::{EchoServer, Envoy, EnvoyOptions};
use serde_json::{json, Value};

const ISS: &str = "https://ctx.e2e";
const SIGNING_KEY: &str = "e2e-context-signing-key-0123456789abcdef";

struct Stack {
    envoy: Envoy,
    _echo: EchoServer,
}

fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        let echo = EchoServer::start();
        let config = json!({
            "context": {"signing_key_env": "E2E_CONTEXT_KEY"},
            "providers": [{
                "name": "p", "issuer": ISS, "audiences": ["ctx"], "algorithms": ["ES256"],
                "jwks": jwks(&[key(Alg::ES256)]),
                "token_sources": [{"header": "authorization", "scheme": "Bearer"}, {"query": "access_token"}]
            }],
            "rules": [
                {"name": "public", "match": {"prefix": "/public/"}, "public": true},
                {"name": "app", "match": {"prefix": "/"}, "jwt": {"providers": ["p"]}}
            ]
        });
        let opts = EnvoyOptions::new(config, echo.port()).env("E2E_CONTEXT_KEY", SIGNING_KEY);
        let envoy = Envoy::start(opts).unwrap_or_else(|e| panic!("{e}"));
        Stack { envoy, _echo: echo }
    })
}

fn token() -> String {
    let mut c = claims(ISS, "ctx", "alice", 300);
    c["tenant"] = json!("acme");
    c["jti"] = json!("tok-123");
    c["scope"] = json!("orders:read orders:write");
    key(Alg::ES256).sign(&c)
}

/// Verifies an echoed request's context headers as a backend would.
fn verify_echo(body: &Value, method: &str) -> Result<(), String> {
    context::verify_echoed(body, SIGNING_KEY.as_bytes(), method)
}

#[test]
fn forged_context_headers_are_stripped_on_public_routes() {
    let r = stack().envoy.get("/public/x", FORGED);
    assert_eq!(r.status, 200, "{}", r.summary());
    let body = r.json();
    for (name, _) in FORGED {
        assert!(echoed_header_all(&body, name).is_empty(), "{name} reached the upstream");
    }
}

#[test]
fn the_verified_identity_goes_upstream_signed() {
    let t = token();
    let mut headers = FORGED.to_vec();
    let bearer = format!("Bearer {t}");
    headers.push(("authorization", &bearer));
    let r = stack().envoy.get("/orders/7?expand=items", &headers);
    assert_eq!(r.status, 200, "{}", r.summary());
    let body = r.json();
    assert_eq!(echoed_header_all(&body, "x-edge-auth-subject"), vec!["alice"]);
    assert_eq!(echoed_header(&body, "x-edge-auth-tenant").as_deref(), Some("acme"));
    assert_eq!(echoed_header(&body, "x-edge-auth-method").as_deref(), Some("jwt"));
    assert_eq!(
        echoed_header(&body, "x-edge-auth-scopes").as_deref(),
        Some("orders:read orders:write")
    );
    assert_eq!(echoed_header(&body, "x-edge-auth-token-id").as_deref(), Some("tok-123"));
    assert_eq!(echoed_header_all(&body, "x-edge-auth-signature").len(), 1);
    verify_echo(&body, "GET").unwrap_or_else(|e| panic!("the signature does not verify: {e}"));

    // what a backend must refuse: the same headers replayed with another identity, method or path
    let mut tampered = body.clone();
    if let Some(list) = tampered["headers"].as_array_mut() {
        for h in list.iter_mut() {
            if h[0] == "x-edge-auth-subject" {
                h[1] = json!("admin");
            }
        }
    }
    assert!(verify_echo(&tampered, "GET").is_err());
    assert!(verify_echo(&body, "DELETE").is_err());
    let mut moved = body.clone();
    moved["path"] = json!("/admin");
    assert!(verify_echo(&moved, "GET").is_err());
}

#[test]
fn the_signature_covers_the_path_the_upstream_sees() {
    // the query token is removed from the path; the signature is over what the upstream receives
    let r = stack()
        .envoy
        .get(&format!("/socket?room=1&access_token={}", token()), &[]);
    assert_eq!(r.status, 200, "{}", r.summary());
    let body = r.json();
    assert_eq!(body["path"], "/socket?room=1");
    verify_echo(&body, "GET").unwrap_or_else(|e| panic!("the signature does not verify: {e}"));
}
