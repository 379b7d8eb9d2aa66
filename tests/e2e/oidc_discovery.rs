//! OpenID Connect discovery in the real Envoy: a provider configured with
//! its discovery document (served by a test server through an Envoy
//! cluster) gets its keys from the document's `jwks_uri`, fetched through
//! the same cluster; a provider whose document names another issuer (a
//! trailing slash) never gets keys, and its tokens are refused.

use std::sync::OnceLock;
use std::time::Duration;

use edge_auth_e2e::servers::echoed_header;
use edge_auth_e2e::tokens::{claims, jwks, Alg, TestKey};
use edge_auth_e2e::{settles, EchoServer, Envoy, EnvoyOptions, Reply, Response, TestServer};
use serde_json::{json, Value};

const AUD: &str = "oidc-api";
const GOOD_ISS: &str = "https://idp.e2e/realms/good";
const BAD_ISS: &str = "https://idp.e2e/realms/bad";
const AUTHORITY: &str = "idp.e2e";

struct Stack {
    envoy: Envoy,
    idp: TestServer,
    key: TestKey,
    _echo: EchoServer,
}

fn document(issuer: &str, jwks_uri: &str) -> Value {
    json!({
        "issuer": issuer,
        "jwks_uri": jwks_uri,
        "authorization_endpoint": format!("{issuer}/protocol/openid-connect/auth"),
        "id_token_signing_alg_values_supported": ["ES256"]
    })
}

fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        let key = TestKey::generate(Alg::ES256, "oidc-1");
        let keys = jwks(&[&key]);
        let idp = TestServer::start(move |req| {
            if req.header("host") != Some(AUTHORITY) {
                return Reply::new(421);
            }
            match req.path_only() {
                "/realms/good/.well-known/openid-configuration" => Reply::json(
                    200,
                    &document(GOOD_ISS, "https://idp.e2e/realms/good/protocol/openid-connect/certs"),
                ),
                "/realms/good/protocol/openid-connect/certs" | "/realms/bad/certs" => Reply::json(200, &keys),
                // the issuer with a trailing slash: another issuer
                "/realms/bad/.well-known/openid-configuration" => Reply::json(
                    200,
                    &document(&format!("{BAD_ISS}/"), "https://idp.e2e/realms/bad/certs"),
                ),
                _ => Reply::new(404),
            }
        });
        let provider = |name: &str, iss: &str| {
            json!({
                "name": name, "issuer": iss, "audiences": [AUD], "algorithms": ["ES256"],
                "remote_jwks": {"cluster": "idp", "authority": AUTHORITY, "timeout_ms": 1000,
                                "discovery": format!("/realms/{name}/.well-known/openid-configuration"),
                                "refresh_interval_s": 3600, "min_refetch_interval_s": 1},
                "claim_headers": [{"claim": "sub", "header": "x-auth-subject"}]
            })
        };
        let config = json!({
            "providers": [provider("good", GOOD_ISS), provider("bad", BAD_ISS)],
            "rules": [
                {"name": "good", "match": {"prefix": "/good/"}, "jwt": {"providers": ["good"]}},
                {"name": "bad", "match": {"prefix": "/bad/"}, "jwt": {"providers": ["bad"]}}
            ]
        });
        let echo = EchoServer::start();
        let opts = EnvoyOptions::new(config, echo.port()).cluster("idp", idp.port());
        let envoy = Envoy::start(opts).unwrap_or_else(|e| panic!("{e}"));
        Stack {
            envoy,
            idp,
            key,
            _echo: echo,
        }
    })
}

fn call(path: &str, iss: &str) -> Response {
    let s = stack();
    let token = s.key.sign(&claims(iss, AUD, "alice", 300));
    s.envoy.get(path, &[("authorization", &format!("Bearer {token}"))])
}

#[test]
fn keys_come_from_the_documents_jwks_uri() {
    let s = stack();
    assert!(
        settles(Duration::from_secs(10), || call("/good/x", GOOD_ISS).status == 200),
        "{}",
        call("/good/x", GOOD_ISS).summary()
    );
    let r = call("/good/x", GOOD_ISS);
    assert_eq!(echoed_header(&r.json(), "x-auth-subject").as_deref(), Some("alice"));
    let paths: Vec<String> = s.idp.requests().iter().map(|r| r.path_only().to_owned()).collect();
    assert!(
        paths
            .iter()
            .any(|p| p == "/realms/good/.well-known/openid-configuration"),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p == "/realms/good/protocol/openid-connect/certs"),
        "{paths:?}"
    );
    assert!(s.envoy.stat("edge_auth.jwks.discovery_ok") >= 1);
    // a token of another issuer is still refused on this rule
    assert_eq!(call("/good/x", BAD_ISS).status, 401);
}

#[test]
fn a_document_naming_another_issuer_is_refused_and_its_tokens_fail_closed() {
    let s = stack();
    let failed = s
        .envoy
        .wait_for_stat("edge_auth.jwks.discovery_failed", Duration::from_secs(10), |n| n >= 1);
    assert!(failed.is_some(), "{}", s.envoy.log_tail(40));
    assert!(settles(Duration::from_secs(5), || {
        let r = call("/bad/x", BAD_ISS);
        r.status == 401 && r.json()["error_description"] == "the issuer's signing keys are not available yet"
    }));
    assert!(
        !s.idp.requests().iter().any(|r| r.path_only() == "/realms/bad/certs"),
        "the JWKS of a refused document is never fetched"
    );
    assert!(
        s.envoy.log().contains("is not the provider's issuer"),
        "{}",
        s.envoy.log_tail(40)
    );
}
