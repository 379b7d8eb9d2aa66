//! Token sources (Authorization, a custom header, a cookie, a query
//! parameter), what goes upstream, and forged identity headers.

use std::sync::OnceLock;

use edge_auth_e2e::servers::{echoed_header, echoed_header_all, echoed_headers};
use edge_auth_e2e::tokens::{claims, key, Alg};
use edge_auth_e2e::{EchoServer, Envoy, EnvoyOptions};
use serde_json::{json, Value};

const ISS: &str = "https://app.e2e";
const CF_ISS: &str = "https://team.cloudflareaccess.com";
const AUD: &str = "app";

struct Stack {
    envoy: Envoy,
    echo: EchoServer,
}

fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        let echo = EchoServer::start();
        let es = key(Alg::ES256);
        let ed = key(Alg::EdDSA);
        let config = json!({
            "providers": [
                {
                    "name": "app", "issuer": ISS, "audiences": [AUD], "algorithms": ["ES256"],
                    "jwks": edge_auth_e2e::tokens::jwks(&[es]),
                    "token_sources": [
                        {"header": "authorization", "scheme": "Bearer"},
                        {"cookie": "session"},
                        {"query": "access_token"}
                    ],
                    "claim_headers": [
                        {"claim": "sub", "header": "x-auth-subject"},
                        {"claim": "groups", "header": "x-auth-groups"}
                    ],
                    "payload_header": "x-auth-payload"
                },
                {
                    "name": "cloudflare", "issuer": CF_ISS, "audiences": ["cf-aud-tag"], "algorithms": ["EdDSA"],
                    "jwks": edge_auth_e2e::tokens::jwks(&[ed]),
                    "token_sources": [{"header": "cf-access-jwt-assertion"}, {"cookie": "CF_Authorization"}],
                    "claim_headers": [{"claim": "email", "header": "x-auth-email"}],
                    "forward_token": true
                }
            ],
            "rules": [
                {"name": "public", "match": {"prefix": "/public/"}, "public": true},
                {"name": "cf", "match": {"prefix": "/cf/"}, "jwt": {"providers": ["cloudflare"]}},
                {"name": "app", "match": {"prefix": "/"}, "jwt": {"providers": ["app"]}}
            ]
        });
        // WebSocket upgrades are refused by Envoy itself unless the HCM allows them.
        let opts = EnvoyOptions {
            hcm: json!({"upgrade_configs": [{"upgrade_type": "websocket"}]}),
            ..EnvoyOptions::new(config, echo.port())
        };
        let envoy = Envoy::start(opts).unwrap_or_else(|e| panic!("{e}"));
        Stack { envoy, echo }
    })
}

fn app_token(sub: &str) -> String {
    let mut c = claims(ISS, AUD, sub, 300);
    c["groups"] = json!(["eng", "ops"]);
    key(Alg::ES256).sign(&c)
}

fn cf_token() -> String {
    let mut c = claims(CF_ISS, "cf-aud-tag", "cf-user-id", 300);
    c["email"] = json!("alice@example.com");
    key(Alg::EdDSA).sign(&c)
}

fn upstream(path: &str, headers: &[(&str, &str)]) -> Value {
    let r = stack().envoy.get(path, headers);
    assert_eq!(r.status, 200, "{path}: {}", r.summary());
    r.json()
}

#[test]
fn authorization_bearer_forwards_identity_and_drops_the_credential() {
    let t = app_token("alice");
    let body = upstream("/orders", &[("authorization", &format!("Bearer {t}"))]);
    assert_eq!(echoed_header(&body, "x-auth-subject").as_deref(), Some("alice"));
    assert_eq!(echoed_header(&body, "x-auth-groups").as_deref(), Some("eng,ops"));
    assert_eq!(echoed_header(&body, "x-auth-payload").as_deref(), t.split('.').nth(1));
    assert!(
        echoed_header(&body, "authorization").is_none(),
        "forward_token false removes Authorization"
    );
}

#[test]
fn custom_header_source_cloudflare_access() {
    let t = cf_token();
    let body = upstream("/cf/dashboard", &[("cf-access-jwt-assertion", &t)]);
    assert_eq!(
        echoed_header(&body, "x-auth-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        echoed_header(&body, "cf-access-jwt-assertion").as_deref(),
        Some(t.as_str()),
        "forward_token true keeps it"
    );
    // Cloudflare's cookie works too
    let body = upstream("/cf/dashboard", &[("cookie", &format!("CF_Authorization={t}"))]);
    assert_eq!(
        echoed_header(&body, "x-auth-email").as_deref(),
        Some("alice@example.com")
    );
    // a Cloudflare token is not accepted where only the app provider is, nor an app token on /cf/
    let r = stack().envoy.get(
        "/orders",
        &[
            ("cf-access-jwt-assertion", &t),
            ("authorization", &format!("Bearer {t}")),
        ],
    );
    assert_eq!(r.status, 401, "{}", r.summary());
    assert_eq!(r.json()["error_description"], "the token's issuer is not accepted here");
    let r = stack().envoy.get(
        "/cf/dashboard",
        &[("authorization", &format!("Bearer {}", app_token("a")))],
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "missing_token");
}

#[test]
fn cookie_source_removes_only_the_token_cookie() {
    let t = app_token("cookie-user");
    let body = upstream("/orders", &[("cookie", &format!("theme=dark; session={t}; lang=en"))]);
    assert_eq!(echoed_header(&body, "x-auth-subject").as_deref(), Some("cookie-user"));
    let cookie = echoed_header(&body, "cookie").unwrap_or_default();
    assert_eq!(cookie, "theme=dark; lang=en");
    // the only cookie: the header goes away entirely
    let body = upstream("/orders", &[("cookie", &format!("session={t}"))]);
    assert!(echoed_header(&body, "cookie").is_none());
}

#[test]
fn query_token_for_websocket_upgrades_is_removed_from_the_path() {
    let t = app_token("ws-user");
    // Envoy passes the upstream's answer to an upgrade without its body: look at what the upstream saw.
    let path = format!("/socket?room=7&access_token={t}&v=2");
    let headers = [
        ("upgrade", "websocket"),
        ("connection", "upgrade"),
        ("x-e2e-probe", "ws-upgrade"),
    ];
    let r = stack().envoy.get(&path, &headers);
    assert_eq!(r.status, 200, "{}", r.summary());
    let seen = stack()
        .echo
        .requests()
        .into_iter()
        .find(|q| q.header("x-e2e-probe") == Some("ws-upgrade"));
    let seen = seen.expect("the upgrade reached the upstream");
    assert_eq!(seen.path, "/socket?room=7&v=2");
    assert_eq!(seen.header("x-auth-subject"), Some("ws-user"));
    assert_eq!(seen.header("upgrade"), Some("websocket"));
    let body = upstream(&format!("/socket?access_token={t}"), &[]);
    assert_eq!(body["path"], "/socket");
    // the same parameter twice is ambiguous: 400, never the upstream
    let dup = format!("/socket?access_token={t}&access_token={t}");
    let r = stack().envoy.get(&dup, &[("x-e2e-probe", "dup-query")]);
    assert_eq!(r.status, 400, "{}", r.summary());
    assert_eq!(r.json()["error"], "invalid_request");
    assert!(!stack().echo.saw("x-e2e-probe", "dup-query"));
}

#[test]
fn sources_are_tried_in_configured_order() {
    // Authorization comes before the cookie: a bad bearer token is not passed over for an
    // empty cookie, nor for a good one (two credentials are refused, see below)
    let good = app_token("ordered");
    let r = stack()
        .envoy
        .get("/orders", &[("authorization", "Bearer a.b.c"), ("cookie", "session=")]);
    assert_eq!(r.status, 401, "{}", r.summary());
    assert_eq!(
        r.json()["error_description"],
        "the token is not a well-formed JWS compact serialization"
    );
    let r = stack().envoy.get(
        "/orders",
        &[
            ("authorization", "Bearer a.b.c"),
            ("cookie", &format!("session={good}")),
        ],
    );
    assert_eq!(r.status, 400, "{}", r.summary());
}

/// Issue 11, item 4, on JWT rules: a credential place given twice, or two credentials in two
/// places (configured on this rule or not: another provider's, `x-api-key`, a JWT-shaped query
/// value), is `400 ambiguous_credential` and never reaches the upstream. The same token in
/// several places is one credential, and every copy is removed before the request goes on.
#[test]
fn one_credential_read_one_way() {
    let s = stack();
    let t = app_token("one-way");
    let u = app_token("mallory");
    let cf = cf_token();
    let bearer = format!("Bearer {t}");
    let key = format!("sk_{}", "ab".repeat(32));
    let cases: Vec<(String, Vec<(&str, String)>)> = vec![
        (
            "/orders".into(),
            vec![("authorization", bearer.clone()), ("authorization", bearer.clone())],
        ),
        (
            "/orders".into(),
            vec![
                ("authorization", bearer.clone()),
                ("authorization", format!("Bearer {u}")),
            ],
        ),
        (
            "/orders".into(),
            vec![("authorization", format!("Bearer {t}, Bearer {u}"))],
        ),
        (
            "/orders".into(),
            vec![("authorization", bearer.clone()), ("cookie", format!("session={u}"))],
        ),
        ("/orders".into(), vec![("cookie", format!("session={t}; SESSION={t}"))]),
        (
            "/orders".into(),
            vec![("cookie", format!("session={t}")), ("cookie", "session=".into())],
        ),
        (
            format!("/orders?access_token={u}"),
            vec![("authorization", bearer.clone())],
        ),
        (format!("/orders?access_token={t}&ACCESS_TOKEN={t}"), vec![]),
        (format!("/orders?state={u}"), vec![("authorization", bearer.clone())]),
        (
            format!("/orders?api_key={key}"),
            vec![("authorization", bearer.clone())],
        ),
        (
            "/orders".into(),
            vec![("authorization", bearer.clone()), ("x-api-key", key.clone())],
        ),
        (
            "/orders".into(),
            vec![
                ("authorization", bearer.clone()),
                ("cf-access-jwt-assertion", cf.clone()),
            ],
        ),
        (
            "/orders".into(),
            vec![
                ("authorization", bearer.clone()),
                ("cookie", format!("CF_Authorization={cf}")),
            ],
        ),
        (
            "/cf/app".into(),
            vec![
                ("cf-access-jwt-assertion", cf.clone()),
                ("cookie", format!("CF_Authorization={u}")),
            ],
        ),
        (
            "/cf/app".into(),
            vec![("cf-access-jwt-assertion", cf.clone()), ("x-api-key", key.clone())],
        ),
    ];
    for (path, headers) in &cases {
        let mut h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        h.push(("x-e2e-probe", "ambiguous"));
        let r = s.envoy.get(path, &h);
        assert_eq!(r.status, 400, "{path} {headers:?}: {}", r.summary());
        assert_eq!(r.json()["error"], "invalid_request");
        assert!(!r.text().contains(&t), "the reply does not echo the token");
    }
    assert!(!s.echo.saw("x-e2e-probe", "ambiguous"));
    assert!(s.envoy.stat("wasmcustom.edge_auth.denied.ambiguous_credential") >= cases.len() as u64);

    // the same token in the header, the cookie and a query parameter: one credential, no copy
    // goes upstream (forward_token: false), the other cookies and parameters do
    let path = format!("/orders?v=1&access_token={t}&state={t}");
    let body = upstream(
        &path,
        &[
            ("authorization", &bearer),
            ("cookie", &format!("theme=dark; session={t}")),
            ("x-api-key", ""),
        ],
    );
    assert_eq!(echoed_header(&body, "x-auth-subject").as_deref(), Some("one-way"));
    assert_eq!(body["path"], "/orders?v=1");
    assert_eq!(echoed_header(&body, "cookie").as_deref(), Some("theme=dark"));
    for gone in ["authorization", "x-api-key"] {
        assert!(echoed_header(&body, gone).is_none(), "{gone} went upstream");
    }
    // Cloudflare Access: the header and the browser's cookie hold the same token; forward_token
    // true keeps both, as the rule reads both
    let cookie = format!("CF_Authorization={cf}");
    let body = upstream("/cf/app", &[("cf-access-jwt-assertion", &cf), ("cookie", &cookie)]);
    assert_eq!(
        echoed_header(&body, "x-auth-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(echoed_header(&body, "cookie").as_deref(), Some(cookie.as_str()));
    // a credential only where the rule does not read: refused, never upstream
    let r = s
        .envoy
        .get("/orders", &[("x-api-key", &key), ("x-e2e-probe", "elsewhere")]);
    assert_eq!(r.status, 401, "{}", r.summary());
    assert!(!s.echo.saw("x-e2e-probe", "elsewhere"));
    // a public rule reads nothing and leaves everything as sent
    let body = upstream(
        "/public/page",
        &[
            ("x-api-key", &key),
            ("x-api-key", "sk_other"),
            ("authorization", &bearer),
        ],
    );
    assert_eq!(echoed_header_all(&body, "x-api-key").len(), 2);
}

#[test]
fn forged_identity_headers_never_reach_the_upstream() {
    let forged: &[(&str, &str)] = &[
        ("x-auth-subject", "admin"),
        ("X-Auth-Subject", "root"),
        ("x-auth-groups", "admins"),
        ("x-auth-payload", "eyJzdWIiOiJhZG1pbiJ9"),
        ("x-auth-email", "ceo@example.com"),
    ];
    // on a public route: all of them are removed
    let body = upstream("/public/page", forged);
    for (name, _) in forged {
        assert!(
            echoed_header_all(&body, name).is_empty(),
            "{name} reached the upstream: {:?}",
            echoed_headers(&body)
        );
    }
    // on a protected route: exactly one value each, the verified one
    let t = app_token("real-user");
    let mut headers: Vec<(&str, &str)> = forged.to_vec();
    let bearer = format!("Bearer {t}");
    headers.push(("authorization", &bearer));
    let body = upstream("/orders", &headers);
    assert_eq!(echoed_header_all(&body, "x-auth-subject"), vec!["real-user"]);
    assert_eq!(echoed_header_all(&body, "x-auth-groups"), vec!["eng,ops"]);
    assert_eq!(
        echoed_header_all(&body, "x-auth-payload"),
        vec![t.split('.').nth(1).unwrap_or_default().to_owned()]
    );
    assert!(
        echoed_header_all(&body, "x-auth-email").is_empty(),
        "a header of another provider is not forwarded"
    );
    // a verified token without the claim: the forged value is still gone
    let mut c = claims(ISS, AUD, "no-groups", 300);
    c.as_object_mut().map(|m| m.remove("groups"));
    let t = key(Alg::ES256).sign(&c);
    let body = upstream(
        "/orders",
        &[("x-auth-groups", "admins"), ("authorization", &format!("Bearer {t}"))],
    );
    assert!(echoed_header_all(&body, "x-auth-groups").is_empty());
}

#[test]
fn claims_that_would_inject_headers_are_not_forwarded() {
    let mut c = claims(ISS, AUD, "inject", 300);
    c["groups"] = json!("eng\r\nx-admin: true");
    let t = key(Alg::ES256).sign(&c);
    let body = upstream("/orders", &[("authorization", &format!("Bearer {t}"))]);
    assert!(echoed_header_all(&body, "x-auth-groups").is_empty());
    assert!(echoed_header_all(&body, "x-admin").is_empty());
    assert_eq!(echoed_header(&body, "x-auth-subject").as_deref(), Some("inject"));
}

#[test]
fn traversal_is_matched_on_the_normalised_path() {
    // /public/../orders is the protected /orders route, not the public one
    let r = stack().envoy.get("/public/../orders", &[]);
    assert_eq!(r.status, 401, "{}", r.summary());
    let r = stack().envoy.get("/public/%2e%2e/orders", &[]);
    assert_eq!(r.status, 401, "{}", r.summary());
    let r = stack().envoy.get("/public/..;/orders", &[]);
    assert!(r.status == 400 || r.status == 401, "{}", r.summary());
}

#[test]
fn path_tricks_that_upstreams_read_differently_are_refused() {
    // matrix parameters and trailing dots have no single reading upstream. (Envoy's own
    // normalize_path already resolves `..`, `;` before `..` and `//` before the filter runs;
    // the core refuses those forms too, for Envoys configured without it.)
    for path in ["/orders;jsessionid=1", "/orders;x/1", "/public./x", "/orders%2e/1"] {
        let r = stack().envoy.get(path, &[("x-e2e-probe", "path-trick")]);
        assert_eq!(r.status, 400, "{path}: {}", r.summary());
        assert_eq!(r.json()["error"], "invalid_request");
    }
    assert!(!stack().echo.saw("x-e2e-probe", "path-trick"));
}

/// Issue 11, item 1: `GET /public/%252e%252e/admin/x` went upstream on the public rule, and
/// a backend that decodes once more reads `/admin/x`. Envoy's normalize_path leaves `%25`
/// alone, so the filter refuses every double or triple encoding (any `%25`), overlong UTF-8
/// and escaped control characters, on the public rule and the protected one, token or not.
#[test]
fn paths_a_second_decoder_reads_differently_are_refused() {
    let bearer = format!("Bearer {}", app_token("second-decoder"));
    let tricks = [
        "%252e%252e",
        "%252E%252E",
        "%25%32%65%25%32%65",
        "%25%32%45%25%32%45",
        "%25252e%25252e",
        "..%252f",
        "%255c..",
        "%2561dmin",
        "%c0%ae%c0%ae",
        "%e0%80%ae%e0%80%ae",
        "x%0a",
        "%252e%252e;",
    ];
    for trick in tricks {
        for path in [
            format!("/public/{trick}/orders/x"),
            format!("/public/{trick}"),
            format!("/orders/{trick}/public/x"),
        ] {
            for headers in [
                vec![("x-e2e-probe", "second-decoder")],
                vec![("x-e2e-probe", "second-decoder"), ("authorization", bearer.as_str())],
            ] {
                let r = stack().envoy.get(&path, &headers);
                assert_eq!(r.status, 400, "{path}: {}", r.summary());
                assert_eq!(r.json()["error"], "invalid_request", "{path}: {}", r.summary());
            }
        }
    }
    assert!(!stack().echo.saw("x-e2e-probe", "second-decoder"));
    // a well-formed non-ASCII name and a space still go through
    let body = upstream("/public/caf%C3%A9%20menu", &[]);
    assert_eq!(body["path"], "/public/caf%C3%A9%20menu");
}

#[test]
fn header_bytes_that_are_not_utf8_are_refused_without_harming_the_vm() {
    let s = stack();
    let addr = s.envoy.addr();
    let t = app_token("utf8");
    // Authorization, Origin-free cookie and X-Forwarded-For with a Latin-1 byte: each request is
    // refused (or served without the bad value), and the VM keeps serving afterwards.
    let raw = |head: &[u8]| {
        let mut req = b"GET /orders HTTP/1.1\r\nHost: e2e\r\n".to_vec();
        req.extend_from_slice(head);
        req.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
        edge_auth_e2e::http::raw(addr, &req)
    };
    let r = raw(b"Authorization: Bearer \xff\xfe");
    assert_eq!(r.status, 401, "{}", r.summary());
    let r = raw(b"Cookie: session=\xe9t\xe9");
    assert_eq!(r.status, 401, "{}", r.summary());
    let mut head = format!("Authorization: Bearer {t}\r\nUser-Agent: caf").into_bytes();
    head.push(0xe9);
    let r = raw(&head);
    assert_eq!(
        r.status,
        200,
        "an unrelated Latin-1 header does not matter: {}",
        r.summary()
    );
    // the worker VMs are alive: a normal request still works
    let r = s.envoy.get("/orders", &[("authorization", &format!("Bearer {t}"))]);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert!(!s.envoy.log().contains("panicked"), "a VM panicked");
}
