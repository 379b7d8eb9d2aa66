//! JWT validation in the real Envoy: every algorithm with a good and a
//! tampered token, every rejection reason, and the counters in /stats.

use std::sync::OnceLock;

use edge_auth_e2e::tokens::{self, claims, key, sign_with_header, unsigned, Alg, TestKey};
use edge_auth_e2e::{EchoServer, Envoy, EnvoyOptions, Response};
use serde_json::{json, Value};

const HS_ISS: &str = "https://hs.e2e";
const RSA_ISS: &str = "https://rsa.e2e";
const EC_ISS: &str = "https://ec.e2e";
const KC_ISS: &str = "https://kc.e2e";
const AUD: &str = "e2e-api";

struct Stack {
    envoy: Envoy,
    echo: EchoServer,
}

fn env_name(alg: Alg) -> String {
    format!("E2E_SECRET_{}", alg.name())
}

/// One Envoy for the whole file: three providers covering all thirteen
/// algorithms, keys from the environment (HMAC), PEM (RSA, ES512) and inline
/// JWKS (EC/EdDSA).
fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        let echo = EchoServer::start();
        let hs = [Alg::HS256, Alg::HS384, Alg::HS512];
        let rsa = [Alg::RS256, Alg::RS384, Alg::RS512, Alg::PS256, Alg::PS384, Alg::PS512];
        let ec = [Alg::ES256, Alg::ES384, Alg::ES512, Alg::EdDSA];
        let config = json!({
            "providers": [
                {
                    "name": "hs", "issuer": HS_ISS, "audiences": [AUD],
                    "algorithms": hs.iter().map(|a| a.name()).collect::<Vec<_>>(),
                    "hmac_secrets": hs.iter().map(|a| json!({
                        "env": env_name(*a), "alg": a.name(), "kid": key(*a).kid(), "encoding": "base64"
                    })).collect::<Vec<_>>(),
                    "max_lifetime_s": 3600,
                    "required_claims": [{"name": "sub"}],
                    "claim_headers": [{"claim": "sub", "header": "x-auth-subject"}]
                },
                {
                    "name": "rsa", "issuer": RSA_ISS, "audiences": [AUD, "other-api"],
                    "algorithms": rsa.iter().map(|a| a.name()).collect::<Vec<_>>(),
                    "pem_keys": rsa.iter().map(|a| json!({
                        "alg": a.name(), "kid": key(*a).kid(), "pem": key(*a).public_pem().expect("public pem")
                    })).collect::<Vec<_>>(),
                    "claim_headers": [{"claim": "sub", "header": "x-auth-subject"}]
                },
                {
                    "name": "ec", "issuer": EC_ISS, "audiences": [AUD],
                    "algorithms": ec.iter().map(|a| a.name()).collect::<Vec<_>>(),
                    "jwks": tokens::jwks(&ec.iter().map(|a| key(*a)).collect::<Vec<_>>()),
                    // the ES512 key again, as a PEM under another kid
                    "pem_keys": [{"alg": "ES512", "kid": "es512-pem", "pem": key(Alg::ES512).public_pem().expect("public pem")}],
                    "leeway_s": 5,
                    "claim_headers": [{"claim": "sub", "header": "x-auth-subject"}]
                },
                {
                    // nested claim paths (docs/configuration.md 3.7), Keycloak-style
                    "name": "kc", "issuer": KC_ISS, "audiences": [AUD], "algorithms": ["HS256"],
                    "hmac_secrets": [{"env": env_name(Alg::HS256), "alg": "HS256", "kid": key(Alg::HS256).kid(), "encoding": "base64"}],
                    "required_claims": [{"name": "realm_access.roles", "one_of": ["member"]}],
                    "claim_headers": [
                        {"claim": "resource_access.my-app.roles", "header": "x-app-roles"},
                        {"claim": ["https://example.com/claims", "tenant"], "header": "x-tenant"}
                    ],
                    "scope_claims": ["resource_access.my-app.scopes"],
                    "role_claim": "realm_access.roles"
                }
            ],
            "roles": {"member": {"permissions": ["orders:read"]}},
            "tenants": {"acme": {"origins": ["https://acme.example"]}},
            "rules": [
                {"name": "health", "match": {"path": "/health"}, "public": true},
                {"name": "api", "match": {"prefix": "/api/"}, "jwt": {"providers": ["hs", "rsa", "ec"]}},
                {"name": "kc-orders", "match": {"prefix": "/kc/orders/"}, "jwt": {"providers": ["kc"]},
                 "scopes": {"all_of": ["orders:read", "orders:list"]}},
                {"name": "kc-tenant", "match": {"prefix": "/kc/tenant/"}, "jwt": {"providers": ["kc"]},
                 "origin": {"tenant_claim": "https://example\\.com/claims.tenant"}},
                {"name": "kc", "match": {"prefix": "/kc/"}, "jwt": {"providers": ["kc"]}}
            ]
        });
        let mut opts = EnvoyOptions::new(config, echo.port());
        for a in hs {
            let secret = key(a).secret_b64url().expect("hmac secret");
            opts = opts.env(&env_name(a), &secret);
        }
        let envoy = Envoy::start(opts).unwrap_or_else(|e| panic!("{e}"));
        Stack { envoy, echo }
    })
}

fn issuer(alg: Alg) -> &'static str {
    match alg {
        Alg::HS256 | Alg::HS384 | Alg::HS512 => HS_ISS,
        Alg::ES256 | Alg::ES384 | Alg::ES512 | Alg::EdDSA => EC_ISS,
        _ => RSA_ISS,
    }
}

fn call(token: &str) -> Response {
    stack()
        .envoy
        .get("/api/resource", &[("authorization", &format!("Bearer {token}"))])
}

/// Asserts a 401 invalid_token with `description`, a JSON body that does not
/// echo the token, and no request reaching the upstream.
fn assert_refused(token: &str, description: &str) {
    let s = stack();
    let id = probe();
    let bearer = format!("Bearer {token}");
    let r = s
        .envoy
        .get("/api/resource", &[("authorization", &bearer), ("x-e2e-probe", &id)]);
    assert_eq!(r.status, 401, "{}", r.summary());
    let www = r.header("www-authenticate").unwrap_or_default().to_owned();
    assert!(www.starts_with("Bearer realm=\"edge-auth\""), "{www}");
    assert!(www.contains("error=\"invalid_token\""), "{www}");
    let body = r.json();
    assert_eq!(body["error"], "invalid_token", "{body}");
    assert_eq!(body["error_description"], description, "{body}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    if token.len() > 8 {
        assert!(!r.text().contains(token), "the reply echoes the token");
    }
    assert!(
        !s.echo.saw("x-e2e-probe", &id),
        "a refused request reached the upstream"
    );
}

/// A unique value for the `x-e2e-probe` header, to tell whether this very
/// request reached the shared upstream.
fn probe() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("probe-{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

fn tamper_signature(token: &str) -> String {
    let (head, sig) = token.rsplit_once('.').expect("three parts");
    let mut sig = tokens::b64url_decode(sig).expect("b64 signature");
    let mid = sig.len() / 2;
    sig[mid] ^= 0x01;
    format!("{head}.{}", tokens::b64url(&sig))
}

fn tamper_payload(token: &str, key: &TestKey) -> String {
    let (header, mut payload) = tokens::decode_unverified(token).expect("decodable");
    payload["sub"] = json!("mallory");
    let sig = token.rsplit('.').next().unwrap_or_default();
    let _ = key;
    format!(
        "{}.{}.{sig}",
        tokens::b64url(header.to_string().as_bytes()),
        tokens::b64url(payload.to_string().as_bytes())
    )
}

#[test]
fn every_algorithm_accepts_a_good_token_and_refuses_a_tampered_one() {
    let s = stack();
    for alg in Alg::ALL {
        let k = key(alg);
        let good = k.sign(&claims(issuer(alg), AUD, &format!("user-{}", alg.name()), 300));
        let r = call(&good);
        assert_eq!(r.status, 200, "{}: {}", alg.name(), r.summary());
        let body = r.json();
        let subject = edge_auth_e2e::servers::echoed_header(&body, "x-auth-subject");
        assert_eq!(
            subject.as_deref(),
            Some(format!("user-{}", alg.name()).as_str()),
            "{}",
            alg.name()
        );
        assert!(
            edge_auth_e2e::servers::echoed_header(&body, "authorization").is_none(),
            "credential removed upstream"
        );

        assert_refused(&tamper_signature(&good), "the token's signature is invalid");
        assert_refused(&tamper_payload(&good, k), "the token's signature is invalid");
    }
    // ES512 with its key from a PEM (`pem_keys`) as well as from the JWKS
    let pem = key(Alg::ES512).with_kid("es512-pem");
    let good = pem.sign(&claims(EC_ISS, AUD, "user-es512-pem", 300));
    assert_eq!(call(&good).status, 200, "{}", call(&good).summary());
    assert_refused(&tamper_signature(&good), "the token's signature is invalid");
    assert!(s.envoy.stat("wasmcustom.edge_auth.allowed.jwt") >= 14);
    assert!(s.envoy.stat("wasmcustom.edge_auth.denied.bad_signature") >= 27);
}

#[test]
fn each_rejection_reason_is_refused_with_its_own_description() {
    let hs = key(Alg::HS256);
    let rs = key(Alg::RS256);
    let es = key(Alg::ES256);
    let now = edge_auth_e2e::now() as i64;
    let with = |k: &TestKey, edit: &dyn Fn(&mut Value)| {
        let mut c = claims(issuer(k.alg()), AUD, "alice", 300);
        edit(&mut c);
        k.sign(&c)
    };

    assert_refused(&with(hs, &|c| c["exp"] = json!(now - 120)), "the token has expired");
    assert_refused(&with(es, &|c| c["exp"] = json!(now - 6)), "the token has expired");
    assert_refused(&with(es, &|c| c["nbf"] = json!(now + 60)), "the token is not valid yet");
    assert_refused(
        &with(es, &|c| c["iat"] = json!(now + 60)),
        "the token was issued in the future",
    );
    assert_refused(
        &with(rs, &|c| c["aud"] = json!("someone-else")),
        "the token is not meant for this audience",
    );
    assert_refused(
        &with(rs, &|c| c["iss"] = json!("https://evil.example")),
        "the token's issuer is not accepted here",
    );
    assert_refused(
        &with(hs, &|c| {
            c.as_object_mut().map(|m| m.remove("exp"));
        }),
        "the token has no expiration time",
    );
    assert_refused(
        &with(hs, &|c| c["exp"] = json!(now + 7200)),
        "the token's lifetime is longer than allowed",
    );
    assert_refused(
        &with(hs, &|c| {
            c.as_object_mut().map(|m| m.remove("sub"));
        }),
        "the token lacks a required claim",
    );

    // alg none, in several spellings, signed or not
    let good_claims = claims(HS_ISS, AUD, "alice", 300);
    for alg in ["none", "None", "NONE"] {
        assert_refused(
            &unsigned(&json!({"alg": alg, "typ": "JWT"}), &good_claims),
            "the token is not a well-formed JWS compact serialization",
        );
        let t = format!("{}AAAA", unsigned(&json!({"alg": alg}), &good_claims));
        assert_refused(&t, "unsigned tokens (alg none) are not accepted");
    }
    // an algorithm the provider does not allow (HS256 with the RSA issuer), including the
    // classic confusion: the RSA public key PEM used as the HMAC secret
    let pem = rs.public_pem().expect("pem");
    let confused_key = TestKey::hmac(Alg::HS256, rs.kid(), pem.as_bytes());
    assert_refused(
        &confused_key.sign(&claims(RSA_ISS, AUD, "alice", 300)),
        "the token's algorithm is not allowed for its issuer",
    );
    // an HS256 token naming the RSA key's kid at the HMAC issuer: no key of that alg has that kid
    assert_refused(
        &confused_key.sign(&claims(HS_ISS, AUD, "alice", 300)),
        "the token's key id is unknown",
    );
    // an algorithm edge-auth does not implement at all
    assert_refused(
        &sign_with_header(&json!({"alg": "HS1"}), &good_claims, hs),
        "the token's algorithm is not supported",
    );
    // crit header
    assert_refused(
        &sign_with_header(
            &json!({"alg": "HS256", "kid": hs.kid(), "crit": ["b64"], "b64": false}),
            &good_claims,
            hs,
        ),
        "the token has critical header extensions that are not understood",
    );
    // a key or key location in the header (RFC 7515 embedded keys), on a token signed with the
    // provider's own key: refused before any signature work (issue 11, item 7)
    let es_jwk = es.jwk();
    for (name, value) in [
        (
            "jwk",
            json!({"kty": "oct", "k": tokens::b64url(&hs.secret().unwrap_or_default())}),
        ),
        ("jwk", es_jwk),
        ("jku", json!("https://attacker.example/jwks.json")),
        ("x5u", json!("https://attacker.example/cert.pem")),
        ("x5c", json!(["MIIBszCCAVmgAwIBAgIU"])),
    ] {
        let mut header = json!({"alg": "HS256", "typ": "JWT", "kid": hs.kid()});
        header[name] = value;
        assert_refused(
            &sign_with_header(&header, &good_claims, hs),
            "the token is not a well-formed JWS compact serialization",
        );
    }
    // unknown kid on a provider without remote keys
    assert_refused(
        &hs.sign_with_kid(Some("nobody"), &good_claims),
        "the token's key id is unknown",
    );
    // garbage, oversized, wrong segment counts
    for garbage in ["abc", "a.b", "a.b.c.d", "x.y.z", "eyJhbGciOiJIUzI1NiJ9.!!!.AAAA"] {
        assert_refused(garbage, "the token is not a well-formed JWS compact serialization");
    }
    let mut big = claims(HS_ISS, AUD, "alice", 300);
    big["pad"] = json!("x".repeat(9000));
    assert_refused(&hs.sign(&big), "the token is too large");
}

#[test]
fn missing_or_unusable_credentials_get_401_without_error_code() {
    let s = stack();
    for headers in [
        vec![],
        vec![("authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l")],
        vec![("authorization", "Bearer")],
    ] {
        let r = s.envoy.get("/api/resource", &headers);
        assert_eq!(r.status, 401, "{}", r.summary());
        assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"edge-auth\""));
        assert_eq!(r.json()["error"], "missing_token");
    }
    // two credentials in one header (how Envoy joins two lines): ambiguous, not a token
    let t = key(Alg::HS256).sign(&claims(HS_ISS, AUD, "alice", 300));
    let r = s.envoy.get(
        "/api/resource",
        &[("authorization", &format!("Bearer {t}, Bearer {t}"))],
    );
    assert_eq!(r.status, 400, "{}", r.summary());
    assert_eq!(r.json()["error"], "invalid_request");
    // the scheme is case-insensitive
    let r = s
        .envoy
        .get("/api/resource", &[("authorization", &format!("bEaReR {t}"))]);
    assert_eq!(r.status, 200, "{}", r.summary());
    // public routes need nothing
    assert_eq!(s.envoy.get("/health", &[]).status, 200);
    // no rule matches: 403, never the upstream
    let id = probe();
    let bearer = format!("Bearer {t}");
    let r = s
        .envoy
        .get("/elsewhere", &[("authorization", &bearer), ("x-e2e-probe", &id)]);
    assert_eq!(r.status, 403, "{}", r.summary());
    assert_eq!(r.json()["error"], "access_denied");
    assert!(!s.echo.saw("x-e2e-probe", &id));
}

#[test]
fn repeated_tokens_are_served_from_the_cache() {
    let s = stack();
    let t = key(Alg::ES384).sign(&claims(EC_ISS, AUD, "cache-user", 300));
    let hits_before = s.envoy.stat("wasmcustom.edge_auth.token_cache.hit");
    for _ in 0..10 {
        assert_eq!(call(&t).status, 200);
    }
    // two workers: each verifies once at most, the rest are cache hits
    let hits = s.envoy.stat("wasmcustom.edge_auth.token_cache.hit") - hits_before;
    assert!(hits >= 8, "only {hits} cache hits for 10 requests on 2 workers");
    // a token that expires is never served from the cache afterwards
    let now = edge_auth_e2e::now() as i64;
    let mut c = claims(EC_ISS, AUD, "short", 300);
    c["exp"] = json!(now + 2);
    let short = key(Alg::ES256).sign(&c);
    assert_eq!(call(&short).status, 200);
    assert_eq!(call(&short).status, 200);
    std::thread::sleep(std::time::Duration::from_millis(7_100)); // past exp + 5 s leeway
    assert_refused(&short, "the token has expired");
}

#[test]
fn metrics_are_visible_in_stats_and_prometheus() {
    let s = stack();
    let t = key(Alg::HS512).sign(&claims(HS_ISS, AUD, "m", 300));
    assert_eq!(call(&t).status, 200);
    assert_eq!(call("nope").status, 401);
    assert_eq!(s.envoy.get("/health", &[]).status, 200);
    let stats = s.envoy.stats();
    for name in [
        "allowed.jwt",
        "allowed.public",
        "denied.malformed_token",
        "denied.expired",
        "denied.missing_token",
        "token_cache.hit",
        "token_cache.miss",
        "jwks.fetch_ok",
        "jwks.fetch_failed",
    ] {
        assert!(
            stats.contains_key(&format!("wasmcustom.edge_auth.{name}")),
            "missing {name}"
        );
    }
    assert!(s.envoy.stat("wasmcustom.edge_auth.allowed.public") >= 1);
    assert!(s.envoy.stat("wasmcustom.edge_auth.denied.malformed_token") >= 1);
    let prom = s.envoy.prometheus();
    assert!(
        prom.contains("edge_auth_allowed_jwt"),
        "prometheus output lacks the filter's counters"
    );
}

/// The filter names the implementation that verifies RS/PS/ES256 signatures
/// when it is configured: `edge-auth`, or `RustCrypto` for a build with the
/// `rustcrypto-verify` feature. `make test` also runs this test and
/// [`every_algorithm_accepts_a_good_token_and_refuses_a_tampered_one`]
/// against such a build, with `EDGE_AUTH_EXPECT_VERIFIERS=RustCrypto`.
#[test]
fn the_log_names_the_signature_verifiers_of_the_build() {
    let s = stack();
    let expected = std::env::var("EDGE_AUTH_EXPECT_VERIFIERS").unwrap_or_else(|_| "edge-auth".to_owned());
    let line = format!("(RS/PS/ES256 signatures verified by {expected})");
    assert!(
        s.envoy.wait_for_log(&line, std::time::Duration::from_secs(5)),
        "no {line:?} in Envoy's log:\n{}",
        s.envoy.log_tail(40)
    );
}

/// Nested claim paths in the real Envoy: a required claim, claim headers,
/// scope and role claims, and the tenant of tenant origins, all read from
/// objects inside the token (Keycloak's `realm_access.roles`,
/// `resource_access.<client>.roles`, a namespaced claim holding `tenant`).
#[test]
fn nested_claim_paths_in_every_place() {
    let s = stack();
    let hs = key(Alg::HS256);
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = claims(KC_ISS, AUD, "kc-user", 300);
        c["realm_access"] = json!({"roles": ["member"]});
        c["resource_access"] = json!({"my-app": {"roles": ["editor", "viewer"], "scopes": ["orders:list"]}});
        c["https://example.com/claims"] = json!({"tenant": "acme"});
        edit(&mut c);
        format!("Bearer {}", hs.sign(&c))
    };
    let good = with(&|_| {});
    let r = s.envoy.get("/kc/x", &[("authorization", &good)]);
    assert_eq!(r.status, 200, "{}", r.summary());
    let body = r.json();
    let echoed = |name| edge_auth_e2e::servers::echoed_header(&body, name);
    assert_eq!(echoed("x-app-roles").as_deref(), Some("editor,viewer"));
    assert_eq!(echoed("x-tenant").as_deref(), Some("acme"));

    // required claim: a nested value that does not match, or a flat look-alike
    let guest = with(&|c| c["realm_access"]["roles"] = json!(["guest"]));
    let r = s.envoy.get("/kc/x", &[("authorization", &guest)]);
    assert_eq!(
        (r.status, r.json()["error_description"].clone()),
        (401, json!("a required claim has a value that is not accepted")),
        "{}",
        r.summary()
    );
    let flat = with(&|c| {
        c.as_object_mut().map(|m| m.remove("realm_access"));
        c["realm_access.roles"] = json!(["member"]);
    });
    assert_eq!(s.envoy.get("/kc/x", &[("authorization", &flat)]).status, 401);

    // scopes from the nested scope claim plus the nested roles' permissions
    assert_eq!(s.envoy.get("/kc/orders/1", &[("authorization", &good)]).status, 200);
    let no_scope = with(&|c| c["resource_access"]["my-app"]["scopes"] = json!([]));
    assert_eq!(s.envoy.get("/kc/orders/1", &[("authorization", &no_scope)]).status, 403);

    // the tenant's origins, the tenant read from the namespaced claim
    let from = |origin| {
        s.envoy
            .get("/kc/tenant/x", &[("authorization", &good), ("origin", origin)])
            .status
    };
    assert_eq!(from("https://acme.example"), 200);
    assert_eq!(from("https://globex.example"), 403);
}
