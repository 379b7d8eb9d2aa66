//! The reference auth service behind the real Envoy and filter: sessions are
//! created through the edge with an API key, their ES256 access tokens are
//! verified at the edge against the service's own JWKS (including after a
//! signing-key rotation), and logout makes the refresh token useless.

use std::time::Duration;

use edge_auth_e2e::service::{AuthService, SERVICE_TOKEN};
use edge_auth_e2e::{wait_until, Envoy, EnvoyOptions, Response};
use serde_json::{json, Value};

fn start_service() -> AuthService {
    AuthService::start()
}

fn admin(svc: &AuthService, path: &str, body: Value) -> Response {
    svc.admin(path, body)
}

fn post(envoy: &Envoy, path: &str, key: &str, body: Value) -> Response {
    let headers = [("x-api-key", key), ("content-type", "application/json")];
    envoy.request("POST", path, &headers, body.to_string())
}

#[test]
fn sessions_from_the_service_are_verified_at_the_edge() {
    let svc = start_service();
    assert_eq!(
        admin(
            &svc,
            "/admin/v1/tenants",
            json!({"name": "acme", "allowed_origins": ["https://app.acme.example"], "ip_allowlist": []})
        )
        .status,
        201
    );
    let key = admin(
        &svc,
        "/admin/v1/tenants/acme/keys",
        json!({"subject": "svc-web", "scopes": ["orders:read"]}),
    );
    assert_eq!(key.status, 201, "{}", key.summary());
    let api_key = key.json()["api_key"].as_str().unwrap_or_default().to_owned();
    assert!(api_key.starts_with("sk_") && api_key.len() == 67);

    // The service is the upstream: SDK routes pass the edge (public, loopback only) and the
    // service checks the key; user routes need a token from the service's JWKS.
    let config = json!({
        "envoy_appends_xff": true,
        "providers": [{
            "name": "svc", "issuer": format!("http://127.0.0.1:{}", svc.port), "audiences": ["e2e-app"],
            "algorithms": ["ES256"],
            "remote_jwks": {"cluster": "auth", "path": "/.well-known/jwks.json", "min_refetch_interval_s": 1},
            "required_claims": [{"name": "tenant"}, {"name": "sid"}],
            "claim_headers": [{"claim": "sub", "header": "x-auth-subject"}]
        }],
        "rules": [
            {"name": "sdk", "match": {"prefix": "/v1/"}, "public": true, "ip": {"allow": ["127.0.0.1", "::1"]}},
            {"name": "user", "match": {"prefix": "/api/"}, "jwt": {"providers": ["svc"]},
             "origin": {"allowed": ["https://app.acme.example"]}, "scopes": {"any_of": ["orders:read"]}}
        ]
    });
    let envoy =
        Envoy::start(EnvoyOptions::new(config, svc.port).cluster("auth", svc.port)).unwrap_or_else(|e| panic!("{e}"));

    // a session through the edge
    let created = post(&envoy, "/v1/sessions", &api_key, json!({"subject": "user-123"}));
    assert_eq!(created.status, 201, "{}", created.summary());
    let session = created.json();
    let access = session["access_token"].as_str().unwrap_or_default().to_owned();
    let refresh = session["refresh_token"].as_str().unwrap_or_default().to_owned();
    // a wrong key is refused by the service, through the edge
    let bad_key = format!("sk_{}", "0".repeat(64));
    assert_eq!(
        post(&envoy, "/v1/sessions", &bad_key, json!({"subject": "x"})).status,
        401
    );

    // the access token passes the edge: the service answers (404: it has no /api routes),
    // not the filter (401/403)
    let user = |token: &str| {
        let bearer = format!("Bearer {token}");
        envoy.get(
            "/api/orders",
            &[("authorization", &bearer), ("origin", "https://app.acme.example")],
        )
    };
    let r = user(&access);
    assert_eq!(r.status, 404, "{}", r.summary());
    assert!(
        r.header("edge-auth-api-version").is_some(),
        "the answer came from the service"
    );
    let tampered = format!("{}.AAAA", access.rsplit_once('.').map(|(h, _)| h).unwrap_or_default());
    assert_eq!(user(&tampered).status, 401);

    // signing-key rotation: a token signed with the new key is accepted after an unknown-kid refetch
    assert_eq!(admin(&svc, "/admin/v1/signing-keys/rotate", json!({})).status, 201);
    std::thread::sleep(Duration::from_millis(1_100));
    let fresh = post(&envoy, "/v1/sessions", &api_key, json!({"subject": "user-456"}));
    let fresh_token = fresh.json()["access_token"].as_str().unwrap_or_default().to_owned();
    assert_ne!(
        edge_auth_e2e::tokens::decode_unverified(&fresh_token).map(|(h, _)| h["kid"].clone()),
        edge_auth_e2e::tokens::decode_unverified(&access).map(|(h, _)| h["kid"].clone()),
        "rotation changes the kid"
    );
    assert_eq!(
        user(&fresh_token).status,
        404,
        "the new key is fetched from the service's JWKS"
    );
    assert_eq!(
        user(&access).status,
        404,
        "the retired key stays in the JWKS for the token lifetime"
    );

    // logout through the edge; the refresh token is then refused
    assert_eq!(
        post(
            &envoy,
            "/v1/sessions/logout",
            &api_key,
            json!({"refresh_token": refresh})
        )
        .status,
        204
    );
    let again = post(
        &envoy,
        "/v1/sessions/refresh",
        &api_key,
        json!({"refresh_token": refresh}),
    );
    assert_eq!(again.status, 401, "{}", again.summary());
    assert!(envoy.stat("wasmcustom.edge_auth.jwks.fetch_ok") >= 2);
}

/// An edge whose user routes take the service's tokens, checked against its feed (polled
/// every second, stale after 3 s); `/v1/` and `/oauth/token` pass to the service.
fn revoking_edge(svc: &AuthService) -> Envoy {
    let config = json!({
        "auth_service": {"cluster": "auth", "token_env": "E2E_SERVICE_TOKEN", "timeout_ms": 500,
                         "revocation_poll_s": 1, "revocation_max_staleness_s": 3},
        "providers": [{
            "name": "svc", "issuer": format!("http://127.0.0.1:{}", svc.port), "audiences": ["e2e-app"],
            "algorithms": ["ES256"], "check_revocation": true, "max_lifetime_s": 900,
            "remote_jwks": {"cluster": "auth", "path": "/.well-known/jwks.json", "min_refetch_interval_s": 1}
        }],
        "rules": [
            {"name": "sdk", "match": {"prefix": "/v1/"}, "public": true},
            {"name": "oauth", "match": {"path": "/oauth/token", "methods": ["POST"]}, "public": true},
            {"name": "user", "match": {"prefix": "/api/"}, "jwt": {"providers": ["svc"]}}
        ]
    });
    let opts = EnvoyOptions::new(config, svc.port)
        .cluster("auth", svc.port)
        .env("E2E_SERVICE_TOKEN", SERVICE_TOKEN);
    Envoy::start(opts).unwrap_or_else(|e| panic!("{e}"))
}

/// A user route called with `token`.
fn user_call(envoy: &Envoy, token: &str) -> Response {
    envoy.get("/api/x", &[("authorization", &format!("Bearer {token}"))])
}

/// Each worker polls on its own, every second: waits until several answers in a row agree,
/// then confirms after every worker has certainly polled again.
fn settles(check: &dyn Fn() -> bool) -> bool {
    let agree = || (0..edge_auth_e2e::IN_A_ROW).all(|_| check());
    wait_until(Duration::from_secs(10), agree) && {
        std::thread::sleep(Duration::from_millis(1_500));
        agree()
    }
}

#[test]
fn revocations_reach_the_edge_within_the_poll_interval_and_an_outage_fails_closed() {
    let svc = start_service();
    let tenant = admin(
        &svc,
        "/admin/v1/tenants",
        json!({"name": "acme", "allowed_origins": [], "ip_allowlist": []}),
    );
    assert_eq!(tenant.status, 201, "{}", tenant.summary());
    let key = admin(
        &svc,
        "/admin/v1/tenants/acme/keys",
        json!({"subject": "svc-web", "scopes": []}),
    );
    let api_key = key.json()["api_key"].as_str().unwrap_or_default().to_owned();
    let envoy = revoking_edge(&svc);
    let session = |subject: &str| {
        let r = post(&envoy, "/v1/sessions", &api_key, json!({"subject": subject}));
        assert_eq!(r.status, 201, "{}", r.summary());
        let v = r.json();
        let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        (text("access_token"), text("refresh_token"))
    };
    let call = |token: &str| user_call(&envoy, token);
    let status = |token: &str| call(token).status;
    let becomes = |token: &str, want: u16| settles(&|| status(token) == want);

    let (alice, alice_refresh) = session("alice");
    let (bob, _) = session("bob");
    assert!(becomes(&alice, 404), "a valid token passes once the first poll arrived");
    assert_eq!(status(&bob), 404);

    // logout: the session is revoked at the edge within the poll interval
    let logout = post(
        &envoy,
        "/v1/sessions/logout",
        &api_key,
        json!({"refresh_token": alice_refresh}),
    );
    assert_eq!(logout.status, 204, "{}", logout.summary());
    assert!(becomes(&alice, 401), "the logged-out session's token is refused");
    assert_eq!(call(&alice).json()["error_description"], "the token has been revoked");
    assert_eq!(status(&bob), 404, "other sessions are untouched");

    // logout-everywhere for a subject
    let everywhere = post(
        &envoy,
        "/v1/subjects/logout-everywhere",
        &api_key,
        json!({"subject": "bob"}),
    );
    assert_eq!(everywhere.status, 204, "{}", everywhere.summary());
    assert!(becomes(&bob, 401));

    // emergency revoke-all: every token issued until now
    let (carol, _) = session("carol");
    assert!(becomes(&carol, 404));
    let all = admin(&svc, "/admin/v1/revoke-all", json!({}));
    assert!(all.status == 200 || all.status == 204, "{}", all.summary());
    assert!(becomes(&carol, 401), "revoke-all reaches the edge");
    std::thread::sleep(Duration::from_millis(2_100));
    let (dave, _) = session("dave");
    assert!(becomes(&dave, 404), "tokens issued after the revoke-all pass");
    assert!(envoy.stat("wasmcustom.edge_auth.denied.revoked") >= 3);
    assert!(envoy.stat("wasmcustom.edge_auth.revocation.poll_ok") >= 3);

    // The service goes away: once the state is stale, such tokens are refused (503 from the
    // filter), never admitted. (The upstream being the stopped service, Envoy itself also
    // answers 503 until then: look for the filter's JSON.)
    let (port, dir) = svc.stop();
    let filter_refuses = || {
        let r = call(&dave);
        r.status == 503 && r.try_json().is_ok_and(|v| v["error"] == "temporarily_unavailable")
    };
    assert!(settles(&filter_refuses), "a stale revocation state fails closed");
    assert!(envoy.stat("wasmcustom.edge_auth.revocation.poll_failed") >= 1);

    // it comes back (same database): the edge recovers by itself, and old revocations still hold
    let _svc = AuthService::start_at(port, dir);
    assert!(becomes(&dave, 404), "recovery after the service returns");
    assert!(becomes(&alice, 401), "revocations survived the restart");
}

/// Issue 12, finding 4: tenant A's logout-everywhere logs A's user out at the edge and
/// leaves tenant B's user with the same `sub` logged in; disabling B then ends B's token.
#[test]
fn a_tenants_logout_everywhere_spares_another_tenants_user_with_the_same_sub() {
    let svc = start_service();
    let key_of = |tenant: &str| {
        svc.tenant(tenant, &[], &[]);
        svc.key(tenant, json!({"subject": "svc-web", "scopes": []})).0
    };
    let (acme, globex) = (key_of("acme"), key_of("globex"));
    let envoy = revoking_edge(&svc);
    let token_of = |key: &str| {
        let r = post(&envoy, "/v1/sessions", key, json!({"subject": "user-1"}));
        assert_eq!(r.status, 201, "{}", r.summary());
        r.json()["access_token"].as_str().unwrap_or_default().to_owned()
    };
    let (in_acme, in_globex) = (token_of(&acme), token_of(&globex));
    let settles = |token: &str, want: u16| settles(&|| user_call(&envoy, token).status == want);
    assert!(settles(&in_acme, 404) && settles(&in_globex, 404), "both pass first");

    let r = post(
        &envoy,
        "/v1/subjects/logout-everywhere",
        &acme,
        json!({"subject": "user-1"}),
    );
    assert_eq!(r.status, 204, "{}", r.summary());
    assert!(settles(&in_acme, 401), "acme's user-1 is logged out at the edge");
    // Every worker has polled several times since (1 s polls, settled over 1.5 s and more).
    assert!(settles(&in_globex, 404), "globex's user-1 is not");
    assert!(envoy.stat("wasmcustom.edge_auth.denied.revoked") >= 1);

    // Disabling globex ends its live access tokens at the edge within a poll (the feed's
    // tenant cut-off), and its key is refused by the service.
    let r = svc.admin("/admin/v1/tenants/globex/disable", json!({}));
    assert_eq!(r.status, 200, "{}", r.summary());
    assert!(
        settles(&in_globex, 401),
        "a disabled tenant's token is refused at the edge"
    );
    let r = post(&envoy, "/v1/sessions", &globex, json!({"subject": "user-1"}));
    assert_eq!(r.status, 401, "{}", r.summary());
}

/// Roles in sessions: the service grants a user the roles its key may grant, puts them in
/// the access token's `roles` claim, and the filter's role hierarchy (`roles`, provider
/// `role_claim`) decides role-based rules with them.
#[test]
fn session_roles_drive_the_edges_role_based_rules() {
    let svc = start_service();
    svc.tenant("acme", &[], &[]);
    let (key, _) = svc.key(
        "acme",
        json!({"subject": "svc-web", "scopes": [], "roles": ["viewer", "editor"]}),
    );
    let config = json!({
        "providers": [{
            "name": "svc", "issuer": format!("http://127.0.0.1:{}", svc.port), "audiences": ["e2e-app"],
            "algorithms": ["ES256"], "role_claim": "roles",
            "remote_jwks": {"cluster": "auth", "path": "/.well-known/jwks.json", "min_refetch_interval_s": 1}
        }],
        "roles": {
            "viewer": {"permissions": ["docs:read"]},
            "editor": {"includes": ["viewer"], "permissions": ["docs:write"]}
        },
        "rules": [
            {"name": "sdk", "match": {"prefix": "/v1/"}, "public": true},
            {"name": "read", "match": {"prefix": "/api/docs", "methods": ["GET"]}, "jwt": {"providers": ["svc"]},
             "scopes": {"any_of": ["docs:read"]}},
            {"name": "write", "match": {"prefix": "/api/docs", "methods": ["POST"]}, "jwt": {"providers": ["svc"]},
             "scopes": {"any_of": ["docs:write"]}}
        ]
    });
    let envoy =
        Envoy::start(EnvoyOptions::new(config, svc.port).cluster("auth", svc.port)).unwrap_or_else(|e| panic!("{e}"));
    let token_with = |roles: Value| {
        let r = post(
            &envoy,
            "/v1/sessions",
            &key,
            json!({"subject": "user-1", "roles": roles}),
        );
        assert_eq!(r.status, 201, "{}", r.summary());
        r.json()["access_token"].as_str().unwrap_or_default().to_owned()
    };
    let call = |method: &str, token: &str| {
        envoy
            .request(
                method,
                "/api/docs",
                &[("authorization", &format!("Bearer {token}"))],
                "",
            )
            .status
    };
    // The service answers 404/405 for /api/docs: the request passed the filter.
    let passed = |status: u16| status == 404 || status == 405;
    let viewer = token_with(json!(["viewer"]));
    let editor = token_with(json!(["editor"]));
    let nobody = token_with(json!([]));
    assert!(passed(call("GET", &viewer)), "viewer may read");
    assert_eq!(call("POST", &viewer), 403, "viewer may not write");
    assert!(passed(call("GET", &editor)), "editor includes viewer");
    assert!(passed(call("POST", &editor)), "editor may write");
    assert_eq!(call("GET", &nobody), 403, "no role, no permission");
    // a role the key may not grant is refused by the service
    let r = post(
        &envoy,
        "/v1/sessions",
        &key,
        json!({"subject": "user-1", "roles": ["admin"]}),
    );
    assert_eq!(r.status, 400, "{}", r.summary());
    assert!(envoy.stat("wasmcustom.edge_auth.denied.insufficient_scope") >= 2);
}

/// Issue 12, finding 5, end to end: the SDK routes behind an `api_key` rule with a signed
/// context. The edge checks the tenant's allowlist against the client address it
/// establishes (here the load balancer's X-Forwarded-For entry), removes the key and
/// signs the key id; the service, sharing the context key, takes that word for the
/// address. Reaching the service directly, the peer decides and X-Forwarded-For is
/// never believed.
#[test]
fn the_service_takes_the_edges_signed_word_for_the_client_address() {
    const CONTEXT_KEY: &str = "e2e-context-key-0123456789abcdef0123";
    let svc = AuthService::start_with_env(&[("EDGE_AUTH_CONTEXT_KEY", CONTEXT_KEY)]);
    svc.tenant("acme", &[], &["203.0.113.0/24"]);
    let (key, _) = svc.key("acme", json!({"subject": "svc-web", "scopes": []}));
    let config = json!({
        "envoy_appends_xff": true,
        "auth_service": {"cluster": "auth", "token_env": "E2E_SERVICE_TOKEN", "timeout_ms": 500},
        "api_keys": {"trusted_hops": 1},
        "context": {"signing_key_env": "E2E_CONTEXT_KEY"},
        "rules": [{"name": "sdk", "match": {"prefix": "/v1/"}, "api_key": {}}]
    });
    let opts = EnvoyOptions::new(config, svc.port)
        .cluster("auth", svc.port)
        .env("E2E_SERVICE_TOKEN", SERVICE_TOKEN)
        .env("E2E_CONTEXT_KEY", CONTEXT_KEY);
    let envoy = Envoy::start(opts).unwrap_or_else(|e| panic!("{e}"));
    let through_edge = |client: &str| {
        let headers = [
            ("x-api-key", key.as_str()),
            ("content-type", "application/json"),
            ("x-forwarded-for", client),
        ];
        envoy.request(
            "POST",
            "/v1/sessions",
            &headers,
            json!({"subject": "user-1"}).to_string(),
        )
    };
    let r = through_edge("203.0.113.9");
    assert_eq!(r.status, 201, "the edge vouched for 203.0.113.9: {}", r.summary());
    let r = through_edge("198.51.100.7");
    assert_eq!(r.status, 403, "refused at the edge: {}", r.summary());

    // straight to the service, from 127.0.0.1: the peer decides, whatever the headers say
    let direct = |extra: &[(&str, &str)]| {
        let mut headers = vec![("x-api-key", key.as_str()), ("content-type", "application/json")];
        headers.extend_from_slice(extra);
        edge_auth_e2e::http::request(
            ("127.0.0.1", svc.port),
            "POST",
            "/v1/sessions",
            &headers,
            json!({"subject": "user-1"}).to_string(),
        )
    };
    let r = direct(&[("x-forwarded-for", "203.0.113.9")]);
    assert_eq!(r.status, 403, "{}", r.summary());
    assert_eq!(r.json()["error"], "ip_not_allowed");
    let r = direct(&[
        ("x-edge-auth-method", "api_key"),
        ("x-edge-auth-key-id", "key_aaaaaaaaaaaaaaaaaaaaaaaaaa"),
        ("x-edge-auth-timestamp", "1"),
        ("x-edge-auth-signature", &format!("v1={}", "0".repeat(64))),
    ]);
    assert_eq!(r.status, 401, "forged context: {}", r.summary());
}

/// A new machine client of tenant `acme` (audience `e2e-app`, scope `billing:run`):
/// `(client_id, client_secret)`.
fn machine_client(svc: &AuthService) -> (String, String) {
    let r = svc.admin(
        "/admin/v1/tenants/acme/clients",
        json!({"audiences": ["e2e-app"], "scopes": ["billing:run"]}),
    );
    assert_eq!(r.status, 201, "{}", r.summary());
    let v = r.json();
    let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    (text("client_id"), text("client_secret"))
}

/// Issue 16: a machine client obtains a token from the service's `/oauth/token` through
/// the edge (client credentials); the edge accepts it like any token of the service
/// (`sub` = the client id, the tenant claim); once the client is disabled, the subject
/// cut-off the service publishes for the client id in its tenant makes every worker
/// refuse the token within a poll, while another client's token still passes.
#[test]
fn a_disabled_machine_clients_token_is_refused_at_the_edge_within_a_poll() {
    let svc = start_service();
    svc.tenant("acme", &[], &[]);
    let client = || machine_client(&svc);
    let ((job, job_secret), (other, other_secret)) = (client(), client());
    let envoy = revoking_edge(&svc);
    let token_request = |id: &str, secret: &str| {
        let body = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}&scope=billing%3Arun");
        let headers = [("content-type", "application/x-www-form-urlencoded")];
        envoy.request("POST", "/oauth/token", &headers, body)
    };
    let token_of = |id: &str, secret: &str| {
        let r = token_request(id, secret);
        assert_eq!(r.status, 200, "{}", r.summary());
        assert_eq!(r.header("cache-control"), Some("no-store"));
        let v = r.json();
        assert_eq!(
            (v["token_type"].clone(), v["scope"].clone()),
            (json!("Bearer"), json!("billing:run"))
        );
        v["access_token"].as_str().unwrap_or_default().to_owned()
    };
    let (token, other_token) = (token_of(&job, &job_secret), token_of(&other, &other_secret));
    let claims = edge_auth_e2e::tokens::decode_unverified(&token)
        .map(|(_, c)| c)
        .unwrap_or_default();
    assert_eq!(claims["sub"], json!(job));
    assert_eq!(claims["gty"], "client-credentials");
    let status = |t: &str| user_call(&envoy, t).status;
    let within = Duration::from_secs(5);
    assert!(
        edge_auth_e2e::settles(within, || status(&token) == 404),
        "the edge accepts the machine token"
    );
    assert!(edge_auth_e2e::settles(within, || status(&other_token) == 404));

    let r = svc.admin(&format!("/admin/v1/clients/{job}/disable"), json!({}));
    assert_eq!(r.status, 200, "{}", r.summary());
    let t = std::time::Instant::now();
    assert!(
        edge_auth_e2e::settles(within, || status(&token) == 401),
        "the disabled client's token is refused at every worker within a poll"
    );
    eprintln!(
        "disabled client's token refused at every worker after {:?}",
        t.elapsed()
    );
    assert_eq!(
        user_call(&envoy, &token).json()["error_description"],
        "the token has been revoked"
    );
    assert!(
        edge_auth_e2e::settles(within, || status(&other_token) == 404),
        "another client is untouched"
    );
    let again = token_request(&job, &job_secret);
    assert_eq!(again.status, 401, "{}", again.summary());
    assert_eq!(again.json()["error"], "invalid_client");
    assert!(envoy.stat("wasmcustom.edge_auth.denied.revoked") >= 1);
}

/// Issue 16 part 2: the edge tells machines from users. A machine client's token from the
/// service's `/oauth/token` reaches a machine-only route (upstream sees `method: client`
/// and the client id, signed), is refused on a user-only route and on a route for
/// another client; a user's session token is refused on the machine route and passes
/// the user route.
#[test]
fn the_edge_tells_machine_clients_from_users() {
    const CONTEXT_KEY: &str = "e2e-context-key-0123456789abcdef0123";
    let svc = start_service();
    svc.tenant("acme", &[], &[]);
    let client = || machine_client(&svc);
    let ((job, job_secret), (other, _)) = (client(), client());
    let (key, _) = svc.key("acme", json!({"subject": "svc-web", "scopes": []}));
    let echo = edge_auth_e2e::EchoServer::start();
    let config = json!({
        "context": {"signing_key_env": "E2E_CONTEXT_KEY"},
        "providers": [{
            "name": "svc", "issuer": format!("http://127.0.0.1:{}", svc.port), "audiences": ["e2e-app"],
            "algorithms": ["ES256"],
            "remote_jwks": {"cluster": "auth", "path": "/.well-known/jwks.json", "min_refetch_interval_s": 1}
        }],
        "rules": [
            {"name": "jobs", "match": {"prefix": "/jobs/"}, "jwt": {"providers": ["svc"], "caller": "machine"}},
            {"name": "billing", "match": {"prefix": "/billing/"}, "jwt": {"providers": ["svc"], "clients": [other]}},
            {"name": "users", "match": {"prefix": "/me/"}, "jwt": {"providers": ["svc"], "caller": "user"}}
        ]
    });
    let opts = EnvoyOptions::new(config, echo.port())
        .cluster("auth", svc.port)
        .env("E2E_CONTEXT_KEY", CONTEXT_KEY);
    let envoy = Envoy::start(opts).unwrap_or_else(|e| panic!("{e}"));

    // the tokens, straight from the service
    let direct = |path: &str, headers: &[(&str, &str)], body: String| {
        edge_auth_e2e::http::request(("127.0.0.1", svc.port), "POST", path, headers, body)
    };
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let body = format!("grant_type=client_credentials&client_id={job}&client_secret={job_secret}");
    let r = direct("/oauth/token", &form, body);
    assert_eq!(r.status, 200, "{}", r.summary());
    let machine = r.json()["access_token"].as_str().unwrap_or_default().to_owned();
    let session = [("x-api-key", key.as_str()), ("content-type", "application/json")];
    let r = direct("/v1/sessions", &session, json!({"subject": "user-123"}).to_string());
    assert_eq!(r.status, 201, "{}", r.summary());
    let user = r.json()["access_token"].as_str().unwrap_or_default().to_owned();

    let call = |path: &str, token: &str| envoy.get(path, &[("authorization", &format!("Bearer {token}"))]);
    let r = call("/jobs/run", &machine);
    assert_eq!(r.status, 200, "{}", r.summary());
    let echoed = r.json();
    use edge_auth_e2e::servers::echoed_header;
    assert_eq!(echoed_header(&echoed, "x-edge-auth-method").as_deref(), Some("client"));
    assert_eq!(echoed_header(&echoed, "x-edge-auth-subject"), Some(job.clone()));
    assert!(
        echoed_header(&echoed, "x-edge-auth-tenant").is_some(),
        "the tenant claim goes too"
    );
    edge_auth_e2e::context::verify_echoed(&echoed, CONTEXT_KEY.as_bytes(), "GET")
        .unwrap_or_else(|e| panic!("the signature does not verify: {e}"));

    let refused = |path: &str, token: &str| {
        let r = call(path, token);
        assert_eq!(r.status, 403, "{path}: {}", r.summary());
        let v = r.json();
        assert_eq!(v["error"], "caller_not_allowed", "{path}");
        assert!(!r.text().contains(token), "the token is not echoed");
    };
    refused("/me/profile", &machine);
    refused("/billing/run", &machine);
    refused("/jobs/run", &user);
    let r = call("/me/profile", &user);
    assert_eq!(r.status, 200, "{}", r.summary());
    let echoed = r.json();
    assert_eq!(echoed_header(&echoed, "x-edge-auth-method").as_deref(), Some("jwt"));
    assert_eq!(
        echoed_header(&echoed, "x-edge-auth-subject").as_deref(),
        Some("user-123")
    );
    assert!(envoy.stat("wasmcustom.edge_auth.denied.caller_not_allowed") >= 3);
    // counted apart: the machine as allowed.client, the user as allowed.jwt (this Envoy's own)
    assert_eq!(envoy.stat("wasmcustom.edge_auth.allowed.client"), 1);
    assert_eq!(envoy.stat("wasmcustom.edge_auth.allowed.jwt"), 1);
}
