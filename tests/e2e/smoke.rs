//! Smoke tests: the harness on its own (Envoy without the filter), then the
//! filter loaded with an all-public configuration.

use std::time::Duration;

use edge_auth_e2e::servers::{echoed_header, echoed_header_all};
use edge_auth_e2e::{http, tokens, Alg, EchoServer, Envoy, EnvoyOptions, JwksServer};
use serde_json::json;

/// Harness self-check, independent of the filter: Envoy starts from the
/// generated bootstrap, routes to the echo upstream (IPv4 and IPv6 listener),
/// raw requests work, and stats are parsed.
#[test]
fn harness_envoy_without_filter_routes_to_echo() {
    let echo = EchoServer::start();
    let envoy = Envoy::start(EnvoyOptions {
        ipv6: true,
        ..EnvoyOptions::without_wasm(echo.port())
    })
    .expect("envoy (no filter) starts");

    let r = http::request(
        envoy.addr(),
        "GET",
        "/hello?x=1",
        &[("X-Test", "a"), ("x-test", "b")],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.summary());
    let body = r.json();
    assert_eq!(body["method"], "GET");
    assert_eq!(body["path"], "/hello?x=1");
    assert_eq!(echoed_header_all(&body, "x-test"), vec!["a", "b"]);
    // use_remote_address: the peer is trusted as the client. (For a loopback
    // peer Envoy writes the host's own address into x-forwarded-for.)
    assert_eq!(
        echoed_header(&body, "x-envoy-external-address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(echoed_header_all(&body, "x-forwarded-for").len(), 1);
    assert_eq!(echo.hits(), 1);

    // normalize_path + merge_slashes reach the upstream.
    let r = envoy.get("//a/./b/../c", &[]);
    assert_eq!(r.json()["path"], "/a/c");

    // IPv6 listener.
    let v6 = envoy.addr_v6().expect("ipv6 listener");
    assert_eq!(http::get(v6, "/six").json()["path"], "/six");

    // A malformed request is refused by Envoy and never reaches the upstream.
    let before = echo.hits();
    let r = http::raw(
        envoy.addr(),
        b"GET /bad HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    );
    assert_eq!(r.status, 400, "{}", r.summary());
    assert_eq!(echo.hits(), before);

    // Keep-alive on the downstream connection.
    let mut conn = http::Conn::connect(envoy.addr()).expect("connect");
    for i in 0..3 {
        let r = conn
            .send("POST", &format!("/k{i}"), &[], "body")
            .expect("keep-alive request");
        assert_eq!(r.json()["body"], "body");
    }

    let served = envoy
        .wait_for_stat("cluster.upstream.upstream_rq_200", Duration::from_secs(5), |v| v >= 6)
        .expect("upstream_rq_200 counted");
    assert!(served >= 6, "{served}");
    assert!(envoy.stat("http.ingress.downstream_rq_4xx") >= 1);
    assert!(envoy.stats().contains_key("server.live"));
    assert!(envoy.prometheus().contains("envoy_cluster_upstream_rq"));
    assert!(envoy.log().contains("starting main dispatch loop"));
}

/// The filter loads and an all-public rule lets a request through to the upstream.
#[test]
fn filter_with_public_rule_forwards_to_upstream() {
    let echo = EchoServer::start();
    let config = json!({
        "providers": [],
        "rules": [{"name": "all", "match": {"prefix": "/"}, "public": true}],
    });
    let envoy = Envoy::start(EnvoyOptions::new(config, echo.port())).expect("envoy with edge_auth starts");
    let r = envoy.get("/hello", &[]);
    assert_eq!(r.status, 200, "{}", r.summary());
    let body = r.json();
    assert_eq!(body["path"], "/hello");
    assert_eq!(echo.hits(), 1);
}

/// `make build` removes the exports of the callbacks the filter leaves to
/// the SDK, so Envoy never enters the VM for them; the ones it implements
/// stay. Requests and responses with bodies, chunked bodies and trailers
/// still pass through whole.
#[test]
fn unused_callbacks_are_not_exported_and_bodies_pass_whole() {
    let wasm = std::fs::read(edge_auth_e2e::envoy::default_wasm().expect("the built filter")).expect("read the filter");
    let exports = edge_auth_wasm_trim::export_names(&wasm).expect("a wasm module");
    for name in edge_auth_wasm_trim::UNUSED_CALLBACKS {
        assert!(
            !exports.iter().any(|e| e == name),
            "{name} is still exported: run `make build`"
        );
    }
    for name in [
        "proxy_on_vm_start",
        "proxy_on_configure",
        "proxy_on_context_create",
        "proxy_on_request_headers",
        "proxy_on_response_headers",
        "proxy_on_http_call_response",
        "proxy_on_tick",
        "proxy_on_delete",
        "proxy_on_memory_allocate",
    ] {
        assert!(exports.iter().any(|e| e == name), "{name} is not exported");
    }

    let echo = EchoServer::start();
    let config = json!({
        "providers": [],
        "rules": [{"name": "all", "match": {"prefix": "/"}, "public": true}],
    });
    let envoy = Envoy::start(EnvoyOptions::new(config, echo.port())).expect("envoy with edge_auth starts");
    let big: String = (0..100_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    let r = http::request(envoy.addr(), "POST", "/upload", &[("content-type", "text/plain")], &big);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.json()["body"], big.as_str());
    let r = http::raw(
        envoy.addr(),
        b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.json()["body"], "hello world");
}

/// A configuration the filter refuses stops Envoy, and the log says why.
#[test]
fn filter_refuses_unknown_config_field() {
    let log = Envoy::start_expect_failure(EnvoyOptions::new(json!({"rules": [], "no_such_field": 1}), 1));
    assert!(log.contains("no_such_field"), "log does not name the field:\n{log}");
}

/// The harness plumbing through the real filter: an HMAC secret reaches the VM
/// through `env` (host_env_keys), a remote JWKS is fetched from a JwksServer
/// through an extra cluster, and tokens from `tokens` verify.
#[test]
fn filter_plumbing_env_secret_and_remote_jwks() {
    let echo = EchoServer::start();
    let es = tokens::key(Alg::ES256);
    let jwks = JwksServer::start(&tokens::jwks(&[es]));
    let hs = tokens::key(Alg::HS256);
    let secret_hex: String = hs.secret().unwrap().iter().map(|b| format!("{b:02x}")).collect();
    let config = json!({
        "providers": [
            {
                "name": "hmac",
                "issuer": "https://hmac.test",
                "audiences": ["api"],
                "algorithms": ["HS256"],
                "hmac_secrets": [{"env": "E2E_HS256_SECRET", "alg": "HS256", "encoding": "hex", "kid": hs.kid()}],
            },
            {
                "name": "remote",
                "issuer": "https://remote.test",
                "audiences": ["api"],
                "algorithms": ["ES256"],
                "remote_jwks": {"cluster": "jwks", "path": "/jwks.json"},
            },
        ],
        "rules": [{"name": "all", "match": {"prefix": "/"}, "jwt": {"providers": ["hmac", "remote"]}}],
    });
    let envoy = Envoy::start(
        EnvoyOptions::new(config, echo.port())
            .cluster("jwks", jwks.port())
            .env("E2E_HS256_SECRET", &secret_hex),
    )
    .expect("envoy with edge_auth starts");

    let r = envoy.get("/private", &[]);
    assert_eq!(r.status, 401, "{}", r.summary());
    assert_eq!(echo.hits(), 0);

    let token = hs.sign(&tokens::claims("https://hmac.test", "api", "hmac-user", 300));
    let bearer = format!("Bearer {token}");
    let r = envoy.get("/private", &[("authorization", &bearer)]);
    assert_eq!(r.status, 200, "{}", r.summary());

    assert!(
        jwks.wait_for_hits(1, Duration::from_secs(10)),
        "the JWKS was never fetched"
    );
    assert_eq!(jwks.last_request().unwrap().path, "/jwks.json");
    let token = es.sign(&tokens::claims("https://remote.test", "api", "remote-user", 300));
    let bearer = format!("Bearer {token}");
    let mut last = None;
    let ok = edge_auth_e2e::wait_until(Duration::from_secs(5), || {
        let r = envoy.get("/private", &[("authorization", &bearer)]);
        let ok = r.status == 200;
        last = Some(r);
        ok
    });
    assert!(ok, "{}", last.map(|r| r.summary()).unwrap_or_default());
    assert_eq!(echo.hits(), 2);
}
