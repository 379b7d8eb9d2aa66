//! Issue 16 part 3, the basic path: an egress edge-auth filter (two workers)
//! injects a token it obtained from the REAL reference auth service's
//! `POST /oauth/token` (client credentials, HTTP Basic) for a matched host,
//! and leaves another host untouched. The upstream sees exactly one
//! `authorization: Bearer <jwt>` even when the client sent its own; 40
//! requests on fresh connections cost one token request at the service;
//! Envoy's log (the filter at debug level) has neither the secret nor the token.
//! The issuer's bad days (503/429/401, refresh) are tested in another file.

use std::time::Duration;

use edge_auth_e2e::servers::{echoed_header, echoed_header_all};
use edge_auth_e2e::service::AuthService;
use edge_auth_e2e::tokens::decode_unverified;
use edge_auth_e2e::{EchoServer, Envoy, EnvoyOptions};
use serde_json::json;

const SECRET_ENV: &str = "BILLING_CLIENT_SECRET";
/// The service's count of answered 2xx requests.
const SERVICE_2XX: &str = "auth_http_requests_total{class=\"2xx\"}";

#[test]
fn the_egress_filter_injects_one_service_token_fetched_once_per_envoy() {
    let svc = AuthService::start();
    svc.tenant("acme", &[], &[]);
    let r = svc.admin(
        "/admin/v1/tenants/acme/clients",
        json!({"audiences": ["e2e-app"], "scopes": ["billing:run"]}),
    );
    assert_eq!(r.status, 201, "{}", r.summary());
    let client = r.json();
    let client_id = client["client_id"].as_str().unwrap_or_default().to_owned();
    let secret = client["client_secret"].as_str().unwrap_or_default().to_owned();
    assert!(!client_id.is_empty() && !secret.is_empty());
    // what reading the count costs itself (0 or 1 answered request)
    let before = svc.metric(SERVICE_2XX);
    let answered_before = svc.metric(SERVICE_2XX);
    let per_read = answered_before - before;

    let echo = EchoServer::start();
    let config = json!({
        "egress_tokens": [{
            "name": "billing",
            "match": {"hosts": ["billing.internal", "*.billing.internal"]},
            "token_endpoint": {"cluster": "auth", "path": "/oauth/token", "timeout_ms": 2000},
            "client_id": client_id,
            "client_secret_env": SECRET_ENV,
            "audience": "e2e-app",
            "scopes": ["billing:run"]
        }]
    });
    let mut opts = EnvoyOptions::new(config, echo.port())
        .cluster("auth", svc.port)
        .env(SECRET_ENV, &secret);
    opts.concurrency = 2;
    opts.component_log_level = Some("wasm:debug".into());
    let envoy = Envoy::start(opts).unwrap_or_else(|e| panic!("{e}"));

    // 40 requests on fresh connections (both workers), each with the client's own authorization
    let mut tokens = Vec::new();
    for i in 0..40 {
        let host = if i % 2 == 0 {
            "billing.internal"
        } else {
            "api.billing.internal:8443"
        };
        let r = envoy.get(
            "/v1/invoices",
            &[
                ("host", host),
                ("authorization", "Bearer client-forged"),
                ("Authorization", "Basic Y2xpZW50OnNlY3JldA=="),
            ],
        );
        assert_eq!(r.status, 200, "{}", r.summary());
        let sent = echoed_header_all(&r.json(), "authorization");
        assert_eq!(sent.len(), 1, "exactly one authorization upstream: {sent:?}");
        let token = sent[0]
            .strip_prefix("Bearer ")
            .unwrap_or_else(|| panic!("{sent:?}"))
            .to_owned();
        tokens.push(token);
    }
    let token = tokens[0].clone();
    assert!(tokens.iter().all(|t| *t == token), "one token for every worker");
    let (_, claims) = decode_unverified(&token).unwrap_or_else(|| panic!("not a JWT: {token}"));
    assert_eq!(claims["sub"].as_str(), Some(client_id.as_str()), "{claims}");
    let aud = &claims["aud"];
    assert!(
        aud == "e2e-app" || aud.as_array().is_some_and(|a| a.contains(&json!("e2e-app"))),
        "{claims}"
    );

    // another host: untouched, the client's header goes as sent
    let r = envoy.get(
        "/v1/other",
        &[("host", "other.internal"), ("authorization", "Bearer client-own")],
    );
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(
        echoed_header(&r.json(), "authorization").as_deref(),
        Some("Bearer client-own")
    );

    // one token request at the service, from one worker
    let answered = svc.metric(SERVICE_2XX) - answered_before - per_read;
    assert_eq!(answered, 1.0, "one token request answered by the service");
    // (a fetch sent by the VM Envoy configures on its main thread before the clusters are
    // initialised never leaves Envoy: counted as sent, given up after its deadline)
    let sent = envoy.stat("wasmcustom.edge_auth.egress.token_fetch_sent");
    assert!((1..=2).contains(&sent), "{sent} token requests sent");
    assert_eq!(envoy.stat("wasmcustom.edge_auth.egress.token_fetch_ok"), 1);
    assert_eq!(
        envoy.stat("cluster.auth.upstream_rq_total"),
        1,
        "Envoy sent the service one request"
    );
    assert_eq!(envoy.stat("wasmcustom.edge_auth.egress.injected"), 40);
    assert_eq!(envoy.stat("wasmcustom.edge_auth.egress.unmatched"), 1);
    assert_eq!(envoy.stat("wasmcustom.edge_auth.egress.refused_unavailable"), 0);
    assert!(envoy.stat("wasmcustom.edge_auth.egress.token_ttl_s") > 0);

    // the filter logged at debug level, and never the secret or the token
    assert!(
        envoy.wait_for_log("egress token billing: token ", Duration::from_secs(5)),
        "the debug line names the token by fingerprint"
    );
    let log = envoy.log();
    assert!(!log.contains(&secret), "the secret is in Envoy's log");
    assert!(!log.contains(&token), "the token is in Envoy's log");
    let signature = token.rsplit('.').next().unwrap_or_default();
    assert!(!log.contains(signature), "the token's signature is in Envoy's log");
}
