//! API keys at the edge, against the real Envoy (two workers), the built
//! filter and the reference auth service (or a fake one): lookups, the
//! cross-worker cache, coalescing, key records driving IP/origin/scope checks,
//! revocation, expiry and rotation, failing lookups (fail closed, by kind),
//! stale-if-error, the breaker (shared by the Envoy's workers), and identity context upstream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_auth_e2e::context::{self, FORGED};
use edge_auth_e2e::servers::{echoed_header, echoed_header_all, echoed_headers};
use edge_auth_e2e::service::{AuthService, ADMIN_TOKEN, SERVICE_TOKEN};
use edge_auth_e2e::{wait_until, EchoServer, Envoy, EnvoyOptions, Reply, Response, ServedRequest, TestServer};
use serde_json::{json, Value};

struct Stack {
    envoy: Envoy,
    echo: EchoServer,
    svc: AuthService,
}

/// The filter's configuration for keys looked up at the service on `cluster` "auth".
fn config(extra_rules: Value) -> Value {
    let mut rules = vec![
        json!({"name": "health", "match": {"path": "/health"}, "public": true}),
        json!({"name": "orders", "match": {"prefix": "/orders"}, "api_key": {},
               "scopes": {"any_of": ["orders:read"]}}),
        json!({"name": "browser", "match": {"prefix": "/browser"}, "api_key": {},
               "origin": {"allowed": []}}),
    ];
    if let Value::Array(more) = extra_rules {
        rules.extend(more);
    }
    rules.push(json!({"name": "api", "match": {"prefix": "/"}, "api_key": {}}));
    json!({
        "auth_service": {"cluster": "auth", "token_env": "E2E_SERVICE_TOKEN", "timeout_ms": 500},
        "api_keys": {"sources": [{"header": "x-api-key"}, {"header": "authorization", "scheme": "ApiKey"},
                                 {"query": "api_key"}]},
        "context": {},
        "rules": rules
    })
}

fn start_with(svc: AuthService, config: Value) -> Stack {
    let echo = EchoServer::start();
    let opts = EnvoyOptions::new(config, echo.port())
        .cluster("auth", svc.port)
        .env("E2E_SERVICE_TOKEN", SERVICE_TOKEN);
    let envoy = Envoy::start(opts).unwrap_or_else(|e| panic!("{e}"));
    Stack { envoy, echo, svc }
}

fn call(s: &Stack, path: &str, key: &str) -> Response {
    s.envoy.get(path, &[("x-api-key", key)])
}

#[test]
fn a_valid_key_passes_once_looked_up_and_never_goes_upstream() {
    let svc = AuthService::start();
    svc.tenant("acme", &["https://app.acme.example"], &[]);
    let (key, key_id) = svc.key("acme", json!({"subject": "svc-billing", "scopes": ["orders:read"]}));
    let s = start_with(svc, config(json!([])));

    let r = call(&s, "/orders/1", &key);
    assert_eq!(r.status, 200, "{}", r.summary());
    let echoed = r.json();
    for (name, value) in echoed_headers(&echoed) {
        assert!(!value.contains(&key), "the key went upstream in {name}");
    }
    assert_eq!(echoed_header(&echoed, "x-api-key"), None);
    assert_eq!(echoed_header(&echoed, "x-edge-auth-method").as_deref(), Some("api_key"));
    assert_eq!(
        echoed_header(&echoed, "x-edge-auth-subject").as_deref(),
        Some("svc-billing")
    );
    assert_eq!(echoed_header(&echoed, "x-edge-auth-tenant").as_deref(), Some("acme"));
    assert_eq!(
        echoed_header(&echoed, "x-edge-auth-key-id").as_deref(),
        Some(key_id.as_str())
    );

    // Authorization: ApiKey and the query parameter work too; the query key is cut from the path
    let r = s.envoy.get("/orders/2", &[("authorization", &format!("apikey {key}"))]);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(echoed_header(&r.json(), "authorization"), None);
    let r = s.envoy.get(&format!("/orders/3?a=1&api_key={key}&b=2"), &[]);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.json()["path"], "/orders/3?a=1&b=2");

    // steady state: many requests, on both workers, and still one lookup at the service
    for i in 0..40 {
        assert_eq!(call(&s, &format!("/orders/{i}"), &key).status, 200);
    }
    assert_eq!(s.svc.lookups(), 1, "one Envoy asks once per key");
    assert!(s.envoy.stat("wasmcustom.edge_auth.allowed.api_key") >= 43);
    assert_eq!(s.envoy.stat("wasmcustom.edge_auth.api_key.lookups"), 1);
}

#[test]
fn unknown_and_malformed_keys_are_refused_and_never_reach_the_upstream() {
    let svc = AuthService::start();
    svc.tenant("acme", &[], &[]);
    let s = start_with(svc, config(json!([])));

    let unknown = format!("sk_{}", "ab".repeat(32));
    let r = call(&s, "/x", &unknown);
    assert_eq!(r.status, 401, "{}", r.summary());
    assert_eq!(r.json()["error"], "invalid_token");
    assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("ApiKey ")));
    assert!(!String::from_utf8_lossy(&r.body).contains(&unknown));
    // the negative answer is cached: no second lookup
    assert_eq!(call(&s, "/x", &unknown).status, 401);
    assert_eq!(s.svc.lookups(), 1);

    // malformed keys: refused at the edge without a lookup
    for bad in [
        format!("sk_{}", "AB".repeat(32)),
        format!("sk_{}", "a".repeat(63)),
        format!("sk_{}", "a".repeat(65)),
        format!("pk_{}", "a".repeat(64)),
        "eyJhbGciOiJIUzI1NiJ9.e30.sig".to_owned(),
    ] {
        let r = call(&s, "/x", &bad);
        assert_eq!(r.status, 401, "{bad}: {}", r.summary());
        assert_eq!(r.json()["error_description"], "the API key is malformed");
    }
    let r = s.envoy.get("/x", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "missing_token");
    assert_eq!(s.svc.lookups(), 1, "malformed keys cost no lookup");
    assert_eq!(s.echo.hits(), 0);
    assert!(s.envoy.stat("wasmcustom.edge_auth.denied.api_key_malformed") >= 5);
    assert!(s.envoy.stat("wasmcustom.edge_auth.denied.api_key_unknown") >= 2);
}

#[test]
fn concurrent_first_requests_share_one_lookup() {
    let svc = AuthService::start();
    svc.tenant("acme", &[], &[]);
    let (key, _) = svc.key("acme", json!({"subject": "svc", "scopes": []}));
    let s = start_with(svc, config(json!([])));
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let (s, key) = (&s, &key);
                scope.spawn(move || call(s, &format!("/c/{i}"), key).status)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(s.svc.lookups(), 1, "16 concurrent first requests, one lookup");
    let waited = wait_until(Duration::from_secs(2), || {
        s.envoy.stat("wasmcustom.edge_auth.api_key.coalesced")
            + s.envoy.stat("wasmcustom.edge_auth.api_key.cache_hit_shared")
            >= 1
    });
    assert!(waited);
}

// ---------------------------------------------------------------------------
// Failure modes, breaker, stale-if-error, key records, expiry and context.

/// The contract's lookup path (docs/auth-service-api.md, 4.1).
const LOOKUP_PATH: &str = "/internal/v1/api-keys/lookup";
/// The context signing key given to Envoy (at least 32 bytes).
const CONTEXT_KEY: &str = "e2e-api-key-context-signing-key-0123456789";

/// An Envoy with `config` in front of a fresh echo upstream, the `auth`
/// cluster on `auth_port`, the service token and `env` in its environment.
fn edge(config: Value, auth_port: u16, env: &[(&str, &str)]) -> (Envoy, EchoServer) {
    let echo = EchoServer::start();
    let mut opts = EnvoyOptions::new(config, echo.port())
        .cluster("auth", auth_port)
        .env("E2E_SERVICE_TOKEN", SERVICE_TOKEN);
    for (k, v) in env {
        opts = opts.env(k, v);
    }
    let envoy = Envoy::start(opts).unwrap_or_else(|e| panic!("{e}"));
    (envoy, echo)
}

/// A GET with the key in `x-api-key` and extra headers.
fn get_with(envoy: &Envoy, path: &str, key: &str, extra: &[(&str, &str)]) -> Response {
    let mut headers = vec![("x-api-key", key)];
    headers.extend_from_slice(extra);
    envoy.get(path, &headers)
}

/// A counter or gauge of the filter (`wasmcustom.edge_auth.<name>`).
fn metric(envoy: &Envoy, name: &str) -> u64 {
    envoy.stat(&format!("wasmcustom.edge_auth.{name}"))
}

/// Every `api_key.lookup_failed.<kind>` counter, by kind.
fn failures(envoy: &Envoy) -> Vec<(&'static str, u64)> {
    ["timeout", "status", "too_large", "malformed", "circuit_open", "busy"]
        .into_iter()
        .map(|k| (k, metric(envoy, &format!("api_key.lookup_failed.{k}"))))
        .collect()
}

/// The filter's fail-closed answer: 503 `temporarily_unavailable`.
fn is_unavailable(r: &Response) -> bool {
    r.status == 503 && r.try_json().is_ok_and(|v| v["error"] == "temporarily_unavailable")
}

fn assert_unavailable(r: &Response, what: &str) {
    assert!(
        is_unavailable(r),
        "{what}: expected the filter's 503, got {}",
        r.summary()
    );
    assert_eq!(
        r.json()["error_description"],
        "the API key cannot be checked right now",
        "{what}"
    );
}

/// Asserts a refusal by the filter: `status` with `{"error": error}`.
fn assert_refused(r: &Response, status: u16, error: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.summary());
    assert_eq!(r.json()["error"], error, "{what}: {}", r.summary());
}

/// Lower-case hex SHA-256, as the contract's `key_hash` (4.3).
fn sha256_hex(data: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A well-formed key no service knows, different at every call.
fn fresh_key() -> String {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seed = format!("{}-{}-{nanos}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
    format!("sk_{}", sha256_hex(&seed))
}

/// Sleeps until the wall clock (the edge's clock too) reaches unix second `t`.
fn sleep_until_unix(t: u64) {
    let deadline = std::time::UNIX_EPOCH + Duration::from_secs(t);
    if let Ok(left) = deadline.duration_since(std::time::SystemTime::now()) {
        std::thread::sleep(left + Duration::from_millis(20));
    }
    assert!(edge_auth_e2e::now() >= t);
}

/// A `valid` lookup answer as the contract describes it (4.2).
fn valid_answer(subject: &str) -> Value {
    json!({
        "status": "valid", "key_id": "key_fakefakefakefakefakefakefa", "tenant": "acme",
        "subject": subject, "scopes": [], "ip_allowlist": [], "allowed_origins": [],
        "expires_at": null, "cache_ttl_s": 300
    })
}

/// A fake auth service: answers each lookup by the `key_hash` it asks about
/// (`by_hash`), else with `default`. Both can change while it runs. Like a
/// contract v1.1 service, it puts the `key_hash` asked about into a JSON
/// object answer that names none, unless it plays a v1 service (`v1`).
struct FakeService {
    server: TestServer,
    by_hash: Arc<Mutex<HashMap<String, Reply>>>,
    default: Arc<Mutex<Reply>>,
    v1: Arc<AtomicBool>,
}

impl FakeService {
    fn start(default: Reply) -> FakeService {
        let by_hash: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let default = Arc::new(Mutex::new(default));
        let v1 = Arc::new(AtomicBool::new(false));
        let (map, dflt, old) = (Arc::clone(&by_hash), Arc::clone(&default), Arc::clone(&v1));
        let server = TestServer::start(move |req| {
            let hash = lookup_hash(req).unwrap_or_default();
            let known = map.lock().unwrap_or_else(|p| p.into_inner()).get(&hash).cloned();
            let reply = known.unwrap_or_else(|| dflt.lock().unwrap_or_else(|p| p.into_inner()).clone());
            if old.load(Ordering::SeqCst) {
                reply
            } else {
                bind(reply, &hash)
            }
        });
        FakeService {
            server,
            by_hash,
            default,
            v1,
        }
    }

    /// Answers like a contract v1 service (no `key_hash`) or not.
    fn speak_v1(&self, v1: bool) {
        self.v1.store(v1, Ordering::SeqCst);
    }

    /// Answers lookups of `key` with `reply`.
    fn answer(&self, key: &str, reply: Reply) {
        self.by_hash
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sha256_hex(key), reply);
    }

    fn set_default(&self, reply: Reply) {
        *self.default.lock().unwrap_or_else(|p| p.into_inner()) = reply;
    }

    /// How many lookups (of any key) it received: requests with a lookup body. (The
    /// filter also polls the revocation feed, which API keys use since contract 1.3.)
    fn lookups(&self) -> usize {
        self.server
            .requests()
            .iter()
            .filter(|r| lookup_hash(r).is_some())
            .count()
    }

    /// How many lookups of `key` it received.
    fn lookups_of(&self, key: &str) -> usize {
        let hash = sha256_hex(key);
        self.server
            .requests()
            .iter()
            .filter(|r| lookup_hash(r).as_deref() == Some(hash.as_str()))
            .count()
    }
}

/// `reply` with `"key_hash": hash` added when its body is a JSON object without one.
fn bind(mut reply: Reply, hash: &str) -> Reply {
    if let Ok(Value::Object(mut answer)) = serde_json::from_slice::<Value>(&reply.body) {
        if !answer.contains_key("key_hash") {
            answer.insert("key_hash".to_owned(), json!(hash));
            reply.body = Value::Object(answer).to_string().into_bytes();
        }
    }
    reply
}

/// The `key_hash` of a lookup request's body.
fn lookup_hash(req: &ServedRequest) -> Option<String> {
    let body: Value = serde_json::from_slice(&req.body).ok()?;
    body["key_hash"].as_str().map(str::to_owned)
}

#[test]
fn a_stopped_service_fails_closed_and_the_edge_recovers_when_it_returns() {
    let svc = AuthService::start();
    svc.tenant("acme", &[], &[]);
    let (key, _) = svc.key("acme", json!({"subject": "svc-outage", "scopes": []}));
    let Stack { envoy, echo, svc } = start_with(svc, config(json!([])));
    let (port, dir) = svc.stop();

    // a key never looked up, and a key no service knows: 503, never admitted
    let unknown = fresh_key();
    for (k, what) in [
        (&key, "a real key"),
        (&unknown, "an unknown key"),
        (&key, "the real key again"),
    ] {
        let r = get_with(&envoy, "/x", k, &[]);
        assert_unavailable(&r, what);
        assert!(!r.text().contains(k.as_str()), "the key is not echoed");
    }
    assert_eq!(echo.hits(), 0);
    let failed: u64 = failures(&envoy).iter().map(|(_, n)| n).sum();
    assert_eq!(
        failed,
        3,
        "each request's lookup failed (not cached): {:?}",
        failures(&envoy)
    );
    assert_eq!(metric(&envoy, "denied.key_service_unavailable"), 3);
    assert_eq!(metric(&envoy, "allowed.api_key"), 0);

    // the service comes back on the same port with the same data: the edge recovers by itself
    let svc = AuthService::start_at(port, dir);
    let ok = || get_with(&envoy, "/x", &key, &[]).status == 200;
    assert!(
        edge_auth_e2e::settles(Duration::from_secs(10), ok),
        "the key passes once the service is back"
    );
    let r = get_with(&envoy, "/x", &unknown, &[]);
    assert_refused(&r, 401, "invalid_token", "the unknown key is now refused as unknown");
    assert!(svc.lookups() >= 2);
    assert!(metric(&envoy, "allowed.api_key") >= 4);
}

#[test]
fn every_kind_of_failed_lookup_is_a_503_and_is_counted_by_kind() {
    // a generous breaker: this test is about single failures; negative answers are not cached
    let mut c = config(json!([]));
    c["api_keys"]["max_response_bytes"] = json!(1024);
    c["api_keys"]["negative_cache_ttl_s"] = json!(0);
    c["api_keys"]["max_pending_lookups"] = json!(1);
    c["api_keys"]["breaker"] = json!({"failure_threshold": 100, "open_s": 1});
    let fake = FakeService::start(Reply::json(200, &json!({"status": "unknown", "cache_ttl_s": 30})));
    let (envoy, echo) = edge(c, fake.server.port(), &[]);

    // a valid answer is never used past its expires_at, whatever its cache_ttl_s says
    let expiring = fresh_key();
    let expires_at = edge_auth_e2e::now() + 3;
    let mut answer = valid_answer("svc-expiring");
    answer["expires_at"] = json!(expires_at);
    fake.answer(&expiring, Reply::json(200, &answer));
    for _ in 0..2 {
        assert_eq!(get_with(&envoy, "/x", &expiring, &[]).status, 200);
    }
    assert_eq!(fake.lookups_of(&expiring), 1, "a valid answer is cached");
    // already expired by the edge's clock: refused as expired
    let expired = fresh_key();
    answer["expires_at"] = json!(edge_auth_e2e::now() - 10);
    fake.answer(&expired, Reply::json(200, &answer));
    let r = get_with(&envoy, "/x", &expired, &[]);
    assert_refused(&r, 401, "invalid_token", "a valid answer past its expires_at");
    assert_eq!(r.json()["error_description"], "the API key has expired");
    // negative_cache_ttl_s 0: unknown and revoked answers are asked again every time
    let unknown = fresh_key();
    let revoked = fresh_key();
    fake.answer(
        &revoked,
        Reply::json(
            200,
            &json!({"status": "revoked", "key_id": "key_revokedrevokedrevokedrevok", "cache_ttl_s": 30}),
        ),
    );
    for attempt in 1..=2 {
        assert_refused(&get_with(&envoy, "/x", &unknown, &[]), 401, "invalid_token", "unknown");
        assert_refused(&get_with(&envoy, "/x", &revoked, &[]), 401, "invalid_token", "revoked");
        assert_eq!(
            (fake.lookups_of(&unknown), fake.lookups_of(&revoked)),
            (attempt, attempt)
        );
    }
    assert_eq!(echo.hits(), 2);
    echo.reset();

    // a correct answer of exactly max_response_bytes is accepted (control)
    let control = fresh_key();
    let mut at_limit = valid_answer("svc-control");
    at_limit["key_hash"] = json!(sha256_hex(&control));
    at_limit["padding"] = json!("");
    let pad = 1024 - at_limit.to_string().len();
    at_limit["padding"] = json!("p".repeat(pad));
    assert_eq!(at_limit.to_string().len(), 1024);
    fake.answer(&control, Reply::json(200, &at_limit));
    let r = get_with(&envoy, "/x", &control, &[]);
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(echo.hits(), 1);

    // the lookup request itself follows the contract
    // (the last POST: the feed's polls, GETs, come and go beside the lookups)
    let seen = fake
        .server
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.method == "POST")
        .unwrap_or_else(|| panic!("no lookup"));
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, LOOKUP_PATH);
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {SERVICE_TOKEN}").as_str())
    );
    assert_eq!(seen.header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_slice(&seen.body).unwrap_or_default();
    assert_eq!(body, json!({"key_hash": sha256_hex(&control)}));

    let mut over = at_limit.clone();
    over["padding"] = json!("p".repeat(pad + 1));
    // (kind, answer); no kind: no answer at all, see the ignored test below for its kind
    let cases: Vec<(Option<&str>, Reply)> = vec![
        (
            None,
            Reply::json(200, &valid_answer("svc-slow")).delay(Duration::from_millis(1_500)),
        ),
        (None, Reply::close()),
        (Some("status"), Reply::json(500, &json!({"error": "internal_error"}))),
        (Some("status"), Reply::json(503, &json!({"error": "unavailable"}))),
        (
            Some("status"),
            Reply::json(401, &json!({"error": "invalid_service_token"})),
        ),
        (Some("malformed"), Reply::text(200, "not json")),
        (Some("malformed"), Reply::new(200)),
        (Some("malformed"), Reply::json(200, &json!({"status": "valid"}))),
        (
            Some("malformed"),
            Reply::json(200, &json!({"status": "maybe", "cache_ttl_s": 30})),
        ),
        (Some("malformed"), Reply::json(200, &json!([valid_answer("svc-array")]))),
        (
            Some("malformed"),
            Reply::json(200, &{
                let mut v = valid_answer("svc-bad-ip");
                v["ip_allowlist"] = json!(["not-an-address"]);
                v
            }),
        ),
        (
            Some("malformed"),
            Reply::json(200, &json!({"status": "unknown", "cache_ttl_s": -1})),
        ),
        (Some("too_large"), Reply::json(200, &over)),
    ];
    let total = |envoy: &Envoy| failures(envoy).iter().map(|(_, n)| n).sum::<u64>();
    let mut denied = 0;
    for (i, (kind, reply)) in cases.into_iter().enumerate() {
        let key = fresh_key();
        fake.answer(&key, reply);
        let counter = kind.map(|k| format!("api_key.lookup_failed.{k}"));
        for attempt in 1..=2 {
            let before = (total(&envoy), counter.as_ref().map(|c| metric(&envoy, c)));
            let started = Instant::now();
            let r = get_with(&envoy, "/x", &key, &[]);
            let what = format!("case {i} ({kind:?}), attempt {attempt}");
            assert_unavailable(&r, &what);
            // the slow answer comes after 1.5 s: the edge gave up at timeout_ms (500 ms)
            assert!(
                started.elapsed() < Duration::from_millis(1_400),
                "{what}: answered in time"
            );
            denied += 1;
            assert_eq!(
                total(&envoy),
                before.0 + 1,
                "{what}: one failure: {:?}",
                failures(&envoy)
            );
            if let (Some(c), Some(b)) = (&counter, before.1) {
                assert_eq!(metric(&envoy, c), b + 1, "{what}: {:?}", failures(&envoy));
            }
            // a failure is not an answer: the next request asks again
            assert_eq!(fake.lookups_of(&key), attempt, "{what}");
        }
    }
    assert_eq!(echo.hits(), 1, "no failed lookup admitted anything");
    assert_eq!(metric(&envoy, "denied.key_service_unavailable"), denied);
    assert_eq!(metric(&envoy, "api_key.lookup_failed.circuit_open"), 0);
    assert_eq!(metric(&envoy, "api_key.lookup_failed.busy"), 0);
    assert_eq!(metric(&envoy, "allowed.api_key"), 3);

    // busy: one pending lookup per worker at most; 6 distinct keys at once on 2 workers
    let keys: Vec<String> = (0..6).map(|_| fresh_key()).collect();
    for k in &keys {
        fake.answer(
            k,
            Reply::json(200, &valid_answer("svc-busy")).delay(Duration::from_millis(1_500)),
        );
    }
    let all_unavailable = std::thread::scope(|scope| {
        let handles: Vec<_> = keys
            .iter()
            .map(|k| {
                let envoy = &envoy;
                scope.spawn(move || is_unavailable(&get_with(envoy, "/busy", k, &[])))
            })
            .collect();
        handles.into_iter().all(|h| h.join().unwrap_or(false))
    });
    assert!(all_unavailable);
    let busy = metric(&envoy, "api_key.lookup_failed.busy");
    assert!(busy >= 1, "{:?}", failures(&envoy));
    let asked: usize = keys.iter().map(|k| fake.lookups_of(k)).sum();
    assert_eq!(asked as u64, 6 - busy, "a busy refusal asks nothing");
    assert_eq!(echo.hits(), 1);

    // the expiring key (its answer said cache_ttl_s 300): refused from its expires_at on
    sleep_until_unix(expires_at);
    for _ in 0..4 {
        let r = get_with(&envoy, "/x", &expiring, &[]);
        assert_refused(&r, 401, "invalid_token", "past expires_at");
        assert_eq!(r.json()["error_description"], "the API key has expired");
    }
}

/// Envoy answers a call that gets no response (too slow, connection closed or
/// refused) with its own 503/504: the filter must still count it as `timeout`.
/// Issue 11, item 2: a service (or anything between it and the edge) that answers the
/// lookup of one key with the valid record of another used to get the unknown key admitted.
/// An answer must name the `key_hash` it answers (contract v1.1): one for another key, or
/// from a v1 service that names none, is a malformed answer: 503, never admitted, never
/// cached (the next request asks again), whatever the record says.
#[test]
fn an_answer_for_another_key_is_never_used() {
    let mut c = config(json!([]));
    c["api_keys"]["breaker"] = json!({"failure_threshold": 100, "open_s": 1});
    let fake = FakeService::start(Reply::json(200, &json!({"status": "unknown", "cache_ttl_s": 30})));
    let (envoy, echo) = edge(c, fake.server.port(), &[]);

    // the control: the valid record of `real`, bound to its own hash, admits `real`
    let real = fresh_key();
    let record = valid_answer("svc-real");
    fake.answer(&real, Reply::json(200, &record));
    assert_eq!(get_with(&envoy, "/x", &real, &[]).status, 200);

    // an unknown key answered with `real`'s record and `real`'s hash (a misrouted or
    // mixed-up answer), with another key's hash, or with the hash in upper case
    let mut misrouted = record.clone();
    misrouted["key_hash"] = json!(sha256_hex(&real));
    let mut upper = record.clone();
    let mut intruders = Vec::new();
    for answer in [misrouted, {
        let mut v = record.clone();
        v["key_hash"] = json!(sha256_hex(&fresh_key()));
        v
    }] {
        let intruder = fresh_key();
        fake.answer(&intruder, Reply::json(200, &answer));
        intruders.push(intruder);
    }
    let intruder = fresh_key();
    upper["key_hash"] = json!(sha256_hex(&intruder).to_ascii_uppercase());
    fake.answer(&intruder, Reply::json(200, &upper));
    intruders.push(intruder);
    for (i, intruder) in intruders.iter().enumerate() {
        for attempt in 1..=2 {
            let before = metric(&envoy, "api_key.lookup_failed.malformed");
            let r = get_with(&envoy, "/x", intruder, &[("x-e2e-probe", "intruder")]);
            assert_unavailable(&r, &format!("intruder {i}, attempt {attempt}"));
            assert_eq!(metric(&envoy, "api_key.lookup_failed.malformed"), before + 1);
            assert_eq!(fake.lookups_of(intruder), attempt, "never cached: asked again");
        }
    }
    assert!(!echo.saw("x-e2e-probe", "intruder"));

    // a contract v1 service names no key_hash: every lookup is malformed, and the log says why
    fake.speak_v1(true);
    let old = fresh_key();
    fake.answer(&old, Reply::json(200, &valid_answer("svc-v1")));
    assert_unavailable(&get_with(&envoy, "/x", &old, &[("x-e2e-probe", "v1")]), "a v1 answer");
    assert!(!echo.saw("x-e2e-probe", "v1"));
    assert!(
        envoy.wait_for_log("contract v1 service", Duration::from_secs(5)),
        "the warning tells the operator to upgrade the service"
    );
    // the same service upgraded: the key works
    fake.speak_v1(false);
    assert_eq!(get_with(&envoy, "/x", &old, &[]).status, 200);
    // the valid key looked up before is still served from the cache, untouched
    assert_eq!(get_with(&envoy, "/x", &real, &[]).status, 200);
    assert_eq!(fake.lookups_of(&real), 1);
}

/// Issue 11, item 4, on API-key rules: two `x-api-key` headers used to pass (the first
/// used), and a key-shaped value in a query parameter that is no source went upstream
/// unchecked. Every credential place counts: a second copy or a second credential is
/// `400 ambiguous_credential` before any lookup; the same key twice is one key, and no copy
/// goes upstream.
#[test]
fn a_second_key_or_a_copy_is_refused_before_any_lookup() {
    let fake = FakeService::start(Reply::json(200, &valid_answer("svc-one-way")));
    let (envoy, echo) = edge(config(json!([])), fake.server.port(), &[]);
    let (key, other) = (fresh_key(), fresh_key());
    let jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl";
    let cases: Vec<(String, Vec<(&str, String)>)> = vec![
        (
            "/x".into(),
            vec![("x-api-key", key.clone()), ("x-api-key", other.clone())],
        ),
        (
            "/x".into(),
            vec![("x-api-key", key.clone()), ("x-api-key", key.clone())],
        ),
        (
            "/x".into(),
            vec![("x-api-key", key.clone()), ("X-Api-Key", String::new())],
        ),
        (
            "/x".into(),
            vec![("x-api-key", key.clone()), ("authorization", format!("ApiKey {other}"))],
        ),
        (
            "/x".into(),
            vec![
                ("authorization", format!("ApiKey {key}")),
                ("authorization", format!("ApiKey {key}")),
            ],
        ),
        (
            "/x".into(),
            vec![("x-api-key", key.clone()), ("authorization", format!("Bearer {jwt}"))],
        ),
        (format!("/x?api_key={other}"), vec![("x-api-key", key.clone())]),
        (format!("/x?Api_Key={key}&api_key={key}"), vec![]),
        (format!("/x?apikey={other}"), vec![("x-api-key", key.clone())]),
        (format!("/x?token={jwt}"), vec![("x-api-key", key.clone())]),
    ];
    for (path, headers) in &cases {
        let mut h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        h.push(("x-e2e-probe", "ambiguous"));
        let r = envoy.get(path, &h);
        assert_refused(&r, 400, "invalid_request", &format!("{path} {headers:?}"));
        assert!(!r.text().contains(key.as_str()), "the reply does not echo the key");
    }
    assert_eq!(fake.lookups(), 0, "decided before any lookup");
    assert!(!echo.saw("x-e2e-probe", "ambiguous"));
    assert_eq!(metric(&envoy, "denied.ambiguous_credential"), cases.len() as u64);
    // the same key in a header and in a query parameter of another name: one key; no copy
    // goes upstream, the other parameters do
    let r = get_with(&envoy, &format!("/x/1?a=1&apikey={key}&b=2"), &key, &[]);
    assert_eq!(r.status, 200, "{}", r.summary());
    let body = r.json();
    assert_eq!(body["path"], "/x/1?a=1&b=2");
    for (name, value) in echoed_headers(&body) {
        assert!(!value.contains(key.as_str()), "the key went upstream in {name}");
    }
}

#[test]
fn a_lookup_without_an_answer_is_counted_as_a_timeout() {
    let mut c = config(json!([]));
    c["api_keys"]["breaker"] = json!({"failure_threshold": 100, "open_s": 1});
    let fake = FakeService::start(Reply::close());
    let slow = fresh_key();
    fake.answer(
        &slow,
        Reply::json(200, &valid_answer("svc-slow")).delay(Duration::from_millis(1_500)),
    );
    let (envoy, echo) = edge(c.clone(), fake.server.port(), &[]);
    // nothing listens on the second Envoy's auth cluster: connection refused
    let (refusing, refusing_echo) = edge(c, edge_auth_e2e::service::free_port(), &[]);
    let cases = [
        (&envoy, slow, "slower than timeout_ms"),
        (&envoy, fresh_key(), "closed without a response"),
        (&refusing, fresh_key(), "connection refused"),
    ];
    for (envoy, key, what) in cases {
        let before = metric(envoy, "api_key.lookup_failed.timeout");
        assert_unavailable(&get_with(envoy, "/x", &key, &[]), what);
        assert_eq!(
            metric(envoy, "api_key.lookup_failed.timeout"),
            before + 1,
            "{what}: {:?}",
            failures(envoy)
        );
    }
    assert_eq!(metric(&envoy, "api_key.lookup_failed.status"), 0);
    assert_eq!(metric(&refusing, "api_key.lookup_failed.status"), 0);
    assert_eq!(echo.hits() + refusing_echo.hits(), 0);
}

#[test]
fn stale_if_error_admits_a_recently_valid_key_only_on_routes_that_allow_it() {
    let svc = AuthService::start();
    svc.tenant("acme", &[], &[]);
    let (key, key_id) = svc.key("acme", json!({"subject": "svc-stale", "scopes": []}));
    let mut c = config(json!([
        {"name": "stale", "match": {"prefix": "/stale/"}, "api_key": {"stale_if_error_s": 30}},
        {"name": "brief", "match": {"prefix": "/brief/"}, "api_key": {"stale_if_error_s": 1}}
    ]));
    c["api_keys"]["max_cache_ttl_s"] = json!(1);
    // the first failure opens a worker's breaker: later requests are not even looked up
    c["api_keys"]["breaker"] = json!({"failure_threshold": 1, "open_s": 60});
    let Stack { envoy, echo, svc } = start_with(svc, c);

    // warm: one valid answer, cached for 1 s
    let r = get_with(&envoy, "/stale/warm", &key, &[]);
    assert_eq!(r.status, 200, "{}", r.summary());
    let warmed = Instant::now();
    let _ = svc.stop();
    // past the answer's cache time (at most 1 s) and past the "brief" route's 1 s of grace
    std::thread::sleep(Duration::from_millis(2_200).saturating_sub(warmed.elapsed()));

    for i in 0..6 {
        let r = get_with(&envoy, &format!("/stale/{i}"), &key, &[]);
        assert_eq!(r.status, 200, "stale answer {i}: {}", r.summary());
        let echoed = r.json();
        assert_eq!(
            echoed_header(&echoed, "x-edge-auth-subject").as_deref(),
            Some("svc-stale")
        );
        assert_eq!(
            echoed_header(&echoed, "x-edge-auth-key-id").as_deref(),
            Some(key_id.as_str())
        );
    }
    assert_eq!(metric(&envoy, "api_key.stale_served"), 6);
    // a failed lookup on the first request of each worker, refused lookups (open breaker) after
    let failed: u64 = failures(&envoy).iter().map(|(_, n)| n).sum();
    assert_eq!(failed, 6, "{:?}", failures(&envoy));
    assert!(
        metric(&envoy, "api_key.lookup_failed.circuit_open") >= 4,
        "{:?}",
        failures(&envoy)
    );

    // routes without (enough) stale-if-error fail closed; unknown keys never pass
    for i in 0..3 {
        assert_unavailable(&get_with(&envoy, &format!("/x/{i}"), &key, &[]), "no stale_if_error");
        assert_unavailable(
            &get_with(&envoy, &format!("/brief/{i}"), &key, &[]),
            "past 1 s of grace",
        );
        assert_unavailable(
            &get_with(&envoy, &format!("/stale/u{i}"), &fresh_key(), &[]),
            "unknown key",
        );
    }
    assert_eq!(metric(&envoy, "api_key.stale_served"), 6);
    assert_eq!(echo.hits(), 7);
}

/// A key the edge has seen `revoked` must not be admitted again later as a
/// stale `valid` answer (docs/auth-service-api.md 4.4: revoked is final).
#[test]
fn a_key_seen_revoked_is_not_admitted_again_as_stale() {
    let svc = AuthService::start();
    svc.tenant("acme", &[], &[]);
    let (key, key_id) = svc.key("acme", json!({"subject": "svc-revoked", "scopes": []}));
    let mut c = config(json!([
        {"name": "stale", "match": {"prefix": "/stale/"}, "api_key": {"stale_if_error_s": 30}}
    ]));
    c["api_keys"]["max_cache_ttl_s"] = json!(1);
    c["api_keys"]["negative_cache_ttl_s"] = json!(0);
    let Stack { envoy, echo, svc } = start_with(svc, c);
    assert_eq!(get_with(&envoy, "/stale/1", &key, &[]).status, 200);
    let r = svc.admin(&format!("/admin/v1/keys/{key_id}/revoke"), json!({}));
    assert_eq!(r.status, 200, "{}", r.summary());
    // once the cached valid answer (1 s) is over, the edge learns the key is revoked
    std::thread::sleep(Duration::from_millis(1_500));
    for _ in 0..4 {
        let r = get_with(&envoy, "/stale/2", &key, &[]);
        assert_refused(&r, 401, "invalid_token", "revoked");
        assert_eq!(r.json()["error_description"], "the API key has been revoked");
    }
    // then the service goes away (well within stale_if_error_s of the old valid answer)
    let _ = svc.stop();
    for i in 0..4 {
        let r = get_with(&envoy, &format!("/stale/3/{i}"), &key, &[]);
        assert!(
            r.status == 401 || is_unavailable(&r),
            "a key refused as revoked is admitted again: {}",
            r.summary()
        );
    }
    assert_eq!(echo.hits(), 1);
    assert_eq!(metric(&envoy, "api_key.stale_served"), 0);
}

#[test]
fn the_breaker_opens_after_repeated_failures_and_closes_when_the_service_answers() {
    let mut c = config(json!([]));
    c["api_keys"]["breaker"] = json!({"failure_threshold": 2, "open_s": 2});
    // failing lookups take 300 ms: a refusal faster than that was not looked up
    let slow_500 = Duration::from_millis(300);
    let fake = FakeService::start(Reply::json(500, &json!({"error": "internal_error"})).delay(slow_500));
    let (envoy, echo) = edge(c, fake.server.port(), &[]);
    assert_eq!(metric(&envoy, "api_key.breaker_state"), 0);

    // failures on both workers, concurrently (distinct keys: no coalescing)
    let statuses: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let envoy = &envoy;
                scope.spawn(move || is_unavailable(&get_with(envoy, &format!("/b/{i}"), &fresh_key(), &[])))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(false)).collect()
    });
    assert!(statuses.iter().all(|s| *s), "{statuses:?}");
    // one breaker for the Envoy: opened once, whichever workers failed
    assert!(
        wait_until(Duration::from_secs(5), || metric(&envoy, "api_key.breaker_opened") >= 1),
        "the breaker opened: {:?}",
        failures(&envoy)
    );
    assert_eq!(metric(&envoy, "api_key.breaker_opened"), 1);
    assert_eq!(metric(&envoy, "api_key.breaker_state"), 2);

    // open: refused at once, without asking the service
    let opened_by = Instant::now();
    let hits = fake.lookups();
    let rejected = metric(&envoy, "api_key.lookup_failed.circuit_open");
    for i in 0..6 {
        let started = Instant::now();
        let r = get_with(&envoy, &format!("/open/{i}"), &fresh_key(), &[]);
        let took = started.elapsed();
        assert_unavailable(&r, "circuit open");
        assert!(took < slow_500, "refused without a lookup ({took:?})");
    }
    assert_eq!(fake.lookups(), hits, "no lookup while the circuit is open");
    assert_eq!(metric(&envoy, "api_key.lookup_failed.circuit_open"), rejected + 6);
    assert!(metric(&envoy, "denied.key_service_unavailable") >= 14);
    assert_eq!(echo.hits(), 0);

    // the service answers again: after open_s a probe goes through and closes the breaker
    fake.set_default(Reply::json(200, &valid_answer("svc-breaker")));
    let passes = || get_with(&envoy, "/back", &fresh_key(), &[]).status == 200;
    assert!(
        edge_auth_e2e::settles(Duration::from_secs(8), passes),
        "new keys pass once open_s is over"
    );
    // the breaker opened before `opened_by`: open_s later, a probe has closed it for every worker
    std::thread::sleep(Duration::from_millis(2_200).saturating_sub(opened_by.elapsed()));
    for i in 0..8 {
        let r = get_with(&envoy, &format!("/back/{i}"), &fresh_key(), &[]);
        assert_eq!(r.status, 200, "every worker recovered: {}", r.summary());
    }
    assert!(fake.lookups() > hits);
    assert_eq!(metric(&envoy, "api_key.breaker_state"), 0);
}

#[test]
fn a_keys_record_decides_client_address_scopes_and_origins() {
    let svc = AuthService::start();
    svc.tenant("acme", &["https://app.acme.example", "https://*.partner.example"], &[]);
    svc.tenant("walled", &[], &["10.0.0.0/8"]);
    let reader = |ips: Value| json!({"subject": "svc-reader", "scopes": ["orders:read"], "ip_allowlist": ips});
    let (far, _) = svc.key("acme", reader(json!(["10.0.0.0/8"])));
    let (here, _) = svc.key("acme", reader(json!(["127.0.0.1"])));
    let (tenant_list, _) = svc.key("acme", reader(Value::Null));
    let (walled, _) = svc.key("walled", reader(Value::Null));
    let (walled_own_any, _) = svc.key("walled", reader(json!([])));
    let (no_scope, _) = svc.key("acme", json!({"subject": "svc-billing", "scopes": ["billing:read"]}));
    let s = start_with(svc, config(json!([])));
    let mut allowed = 0;
    let mut expect_ok = |r: Response, what: &str| {
        assert_eq!(r.status, 200, "{what}: {}", r.summary());
        allowed += 1;
    };

    // IP allowlists: the key's own list, else its tenant's (the client is 127.0.0.1)
    for (key, what) in [(&far, "key list 10/8"), (&walled, "tenant list 10/8")] {
        assert_refused(&get_with(&s.envoy, "/x", key, &[]), 403, "ip_not_allowed", what);
        assert_refused(&get_with(&s.envoy, "/orders/1", key, &[]), 403, "ip_not_allowed", what);
    }
    expect_ok(get_with(&s.envoy, "/orders/1", &here, &[]), "key list 127.0.0.1");
    expect_ok(get_with(&s.envoy, "/orders/1", &tenant_list, &[]), "empty tenant list");
    expect_ok(
        get_with(&s.envoy, "/x", &walled_own_any, &[]),
        "the key's [] replaces the tenant's list",
    );

    // scopes: the "orders" rule needs orders:read
    let r = get_with(&s.envoy, "/orders/1", &no_scope, &[]);
    assert_refused(&r, 403, "insufficient_scope", "a key without orders:read");
    expect_ok(get_with(&s.envoy, "/x", &no_scope, &[]), "no scope needed on /x");

    // origins: the "browser" rule leaves them to the key's tenant
    for origin in [
        "https://app.acme.example",
        "HTTPS://App.Acme.Example:443",
        "https://a.partner.example",
    ] {
        expect_ok(
            get_with(&s.envoy, "/browser/1", &tenant_list, &[("origin", origin)]),
            origin,
        );
    }
    expect_ok(get_with(&s.envoy, "/browser/1", &tenant_list, &[]), "no Origin header");
    for origin in [
        "https://evil.example",
        "http://app.acme.example",
        "https://app.acme.example:8443",
        "https://partner.example",
        "null",
    ] {
        let r = get_with(&s.envoy, "/browser/1", &tenant_list, &[("origin", origin)]);
        assert_refused(&r, 403, "origin_not_allowed", origin);
    }
    let r = get_with(
        &s.envoy,
        "/browser/1",
        &walled_own_any,
        &[("origin", "https://app.acme.example")],
    );
    assert_refused(&r, 403, "origin_not_allowed", "a tenant without origins allows none");
    expect_ok(
        get_with(&s.envoy, "/browser/1", &walled_own_any, &[]),
        "no Origin, no tenant origins",
    );

    assert_eq!(s.echo.hits(), allowed, "refused requests never went upstream");
    assert_eq!(metric(&s.envoy, "allowed.api_key"), allowed as u64);
    assert_eq!(metric(&s.envoy, "denied.ip_not_allowed"), 4);
    assert_eq!(metric(&s.envoy, "denied.insufficient_scope"), 1);
    assert_eq!(metric(&s.envoy, "denied.origin_not_allowed"), 6);
    assert_eq!(s.svc.lookups(), 6, "one lookup per key, whatever the outcome");
    assert_eq!(metric(&s.envoy, "api_key.lookups"), 6);
}

/// A key's metadata from the admin API (10.4).
fn key_metadata(svc: &AuthService, tenant: &str, key_id: &str) -> Value {
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let r = edge_auth_e2e::http::request(
        ("127.0.0.1", svc.port),
        "GET",
        &format!("/admin/v1/tenants/{tenant}/keys"),
        &[("authorization", bearer.as_str())],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.summary());
    let keys = r.json()["keys"].as_array().cloned().unwrap_or_default();
    keys.into_iter()
        .find(|k| k["key_id"] == key_id)
        .unwrap_or_else(|| panic!("no key {key_id}"))
}

#[test]
fn revoked_expired_and_rotated_keys_stop_working_at_the_edge() {
    let svc = AuthService::start();
    svc.tenant("acme", &[], &[]);
    let (revokee, revokee_id) = svc.key("acme", json!({"subject": "svc-revoked", "scopes": []}));
    let (old, old_id) = svc.key("acme", json!({"subject": "svc-rotated", "scopes": []}));
    let mut c = config(json!([]));
    c["api_keys"]["max_cache_ttl_s"] = json!(1);
    let s = start_with(svc, c);
    // created once Envoy is up: it expires 3 s from now
    let created = s.svc.admin(
        "/admin/v1/tenants/acme/keys",
        json!({"subject": "svc-short", "scopes": [], "expires_in_s": 3}),
    );
    assert_eq!(created.status, 201, "{}", created.summary());
    let short = created.json()["api_key"].as_str().unwrap_or_default().to_owned();
    let short_expiry = created.json()["expires_at"].as_u64().unwrap_or(0);
    assert!(short_expiry > edge_auth_e2e::now(), "{}", created.summary());
    let status = |key: &str| get_with(&s.envoy, "/x", key, &[]).status;
    let refused_as = |key: &str, description: &str, what: &str| {
        for _ in 0..6 {
            let r = get_with(&s.envoy, "/x", key, &[]);
            assert_refused(&r, 401, "invalid_token", what);
            assert_eq!(r.json()["error_description"], description, "{what}");
        }
    };

    for k in [&revokee, &short, &old] {
        assert_eq!(status(k), 200);
    }

    // revoke: refused once the cached valid answer (1 s at most) is gone
    let r = s.svc.admin(&format!("/admin/v1/keys/{revokee_id}/revoke"), json!({}));
    assert_eq!(r.status, 200, "{}", r.summary());
    let revoked_at = Instant::now();

    // rotate: the new key works at once, the old one until its deadline
    let r = s
        .svc
        .admin(&format!("/admin/v1/keys/{old_id}/rotate"), json!({"grace_s": 5}));
    assert_eq!(r.status, 201, "{}", r.summary());
    let new = r.json()["api_key"].as_str().unwrap_or_default().to_owned();
    let deadline = key_metadata(&s.svc, "acme", &old_id)["rotation_deadline"]
        .as_u64()
        .unwrap_or(0);
    assert!(deadline > short_expiry, "deadline {deadline}");
    assert_eq!(status(&new), 200, "the new key works at once");
    assert_eq!(status(&old), 200, "the old key works until the deadline");

    std::thread::sleep(Duration::from_millis(1_500).saturating_sub(revoked_at.elapsed()));
    refused_as(&revokee, "the API key has been revoked", "revoked key");

    // expiry: refused from expires_at on (the cached answer ends there)
    sleep_until_unix(short_expiry);
    refused_as(&short, "the API key has expired", "expired key");

    // the rotation deadline: the old key is refused exactly from then on, the new one passes
    assert!(edge_auth_e2e::now() < deadline);
    assert_eq!(status(&old), 200, "the old key still works before the deadline");
    sleep_until_unix(deadline);
    refused_as(&old, "the API key has expired", "rotated key past its deadline");
    for _ in 0..4 {
        assert_eq!(status(&new), 200, "the new key keeps working");
    }
    assert_eq!(metric(&s.envoy, "denied.api_key_revoked"), 6);
    assert_eq!(metric(&s.envoy, "denied.api_key_expired"), 12);
}

/// Verifies an echoed request's context headers as a backend would.
fn verify_echo(body: &Value, method: &str) -> Result<(), String> {
    context::verify_echoed(body, CONTEXT_KEY.as_bytes(), method)
}

#[test]
fn forged_context_headers_are_replaced_by_the_keys_identity_signed() {
    let svc = AuthService::start();
    svc.tenant("acme", &[], &[]);
    let (key, key_id) = svc.key(
        "acme",
        json!({"subject": "svc-ctx", "scopes": ["orders:read", "orders:write"]}),
    );
    let mut c = config(json!([]));
    c["context"] = json!({"signing_key_env": "E2E_CONTEXT_KEY"});
    let (envoy, echo) = edge(c, svc.port, &[("E2E_CONTEXT_KEY", CONTEXT_KEY)]);

    let r = get_with(&envoy, "/orders/7?expand=items", &key, FORGED);
    assert_eq!(r.status, 200, "{}", r.summary());
    let body = r.json();
    let one = |name: &str| echoed_header_all(&body, name);
    assert_eq!(one("x-edge-auth-method"), vec!["api_key"]);
    assert_eq!(one("x-edge-auth-subject"), vec!["svc-ctx"]);
    assert_eq!(one("x-edge-auth-tenant"), vec!["acme"]);
    assert_eq!(one("x-edge-auth-scopes"), vec!["orders:read orders:write"]);
    assert_eq!(one("x-edge-auth-key-id"), vec![key_id.clone()]);
    assert!(
        one("x-edge-auth-token-id").is_empty(),
        "a key has no token id: the forged one is gone"
    );
    assert_eq!(one("x-edge-auth-timestamp").len(), 1);
    assert_eq!(one("x-edge-auth-signature").len(), 1);
    assert_ne!(one("x-edge-auth-signature"), vec!["v1=00"]);
    verify_echo(&body, "GET").unwrap_or_else(|e| panic!("the signature does not verify: {e}"));
    // what a backend must refuse: another method, path or identity
    assert!(verify_echo(&body, "DELETE").is_err());
    let mut moved = body.clone();
    moved["path"] = json!("/orders/8?expand=items");
    assert!(verify_echo(&moved, "GET").is_err());
    let mut tampered = body.clone();
    if let Some(list) = tampered["headers"].as_array_mut() {
        for h in list.iter_mut().filter(|h| h[0] == "x-edge-auth-subject") {
            h[1] = json!("admin");
        }
    }
    assert!(verify_echo(&tampered, "GET").is_err());

    // a key in the query: the signature covers the path the upstream receives
    let r = envoy.get(&format!("/orders/9?a=1&api_key={key}"), FORGED);
    assert_eq!(r.status, 200, "{}", r.summary());
    let body = r.json();
    assert_eq!(body["path"], "/orders/9?a=1");
    assert_eq!(echoed_header_all(&body, "x-edge-auth-subject"), vec!["svc-ctx"]);
    verify_echo(&body, "GET").unwrap_or_else(|e| panic!("the signature does not verify: {e}"));

    // a public route: the forged headers are stripped, none is written
    let r = envoy.get("/health", FORGED);
    assert_eq!(r.status, 200, "{}", r.summary());
    let body = r.json();
    for (name, _) in FORGED {
        assert!(echoed_header_all(&body, name).is_empty(), "{name} reached the upstream");
    }
    assert_eq!(echo.hits(), 3);

    // cache metrics: one lookup, then hits in this worker's cache or the shared one
    for i in 0..10 {
        assert_eq!(get_with(&envoy, &format!("/orders/{i}"), &key, &[]).status, 200);
    }
    assert_eq!(metric(&envoy, "api_key.lookups"), 1);
    assert_eq!(svc.lookups(), 1);
    assert_eq!(metric(&envoy, "api_key.cache_miss"), 1);
    let hits = metric(&envoy, "api_key.cache_hit_local") + metric(&envoy, "api_key.cache_hit_shared");
    assert_eq!(hits, 11, "every request after the first");
    assert!(
        metric(&envoy, "api_key.cache_hit_shared") <= 1,
        "each worker reads the shared cache once"
    );
    assert_eq!(metric(&envoy, "api_key.coalesced"), 0);
    assert_eq!(metric(&envoy, "allowed.api_key"), 12);
}

/// Issue 14: with `--concurrency 4`, an Envoy stops calling a failing service
/// after `failure_threshold` failures in all (the breaker is shared by its
/// workers), not after the threshold on each worker.
#[test]
fn four_workers_stop_calling_a_failing_service_after_the_threshold_in_all() {
    let mut c = config(json!([]));
    c["api_keys"]["breaker"] = json!({"failure_threshold": 3, "open_s": 60});
    let fake = FakeService::start(Reply::json(500, &json!({"error": "internal_error"})));
    let echo = EchoServer::start();
    let mut opts = EnvoyOptions::new(c, echo.port())
        .cluster("auth", fake.server.port())
        .env("E2E_SERVICE_TOKEN", SERVICE_TOKEN);
    opts.concurrency = 4;
    let envoy = Envoy::start(opts).unwrap_or_else(|e| panic!("{e}"));
    // one request at a time, each on a new connection (spread over the workers), each a new key
    for i in 0..24 {
        assert_unavailable(
            &get_with(&envoy, &format!("/f/{i}"), &fresh_key(), &[]),
            "failing or open",
        );
    }
    assert_eq!(fake.server.hits(), 3, "calls the failing service received");
    assert_eq!(metric(&envoy, "api_key.breaker_opened"), 1);
    assert_eq!(metric(&envoy, "api_key.lookup_failed.circuit_open"), 21);
    assert_eq!(metric(&envoy, "api_key.breaker_state"), 2);
    assert_eq!(echo.hits(), 0);
}

/// Issue 14: with `api_keys.key_tags`, invented well-formed keys are refused at the
/// edge without a lookup; a key the service minted (not yet cached) costs exactly
/// one; a key minted before tags still works on a rule with `untagged_keys: "lookup"`.
/// The flood sends as many invented keys as fit in about 8 s (at most 10,000) on
/// keep-alive connections; the core test sends the full 10,000.
#[test]
fn with_key_tags_invented_keys_cost_no_lookup_and_a_minted_key_one() {
    use edge_auth_e2e::fleet::random_hex;
    use edge_auth_e2e::http::Conn;
    use edge_auth_e2e::service::{KEY_TAG_ENV, KEY_TAG_SECRET};

    let svc = AuthService::start_tagged();
    svc.tenant("acme", &[], &[]);
    let (key, key_id) = svc.key("acme", json!({"subject": "svc", "scopes": ["orders:read"]}));
    // a key of before: minted without the secret, on the same database
    let old = svc.cli_untagged(&["key", "create", "--tenant", "acme", "--subject", "old"]);
    let old = old["api_key"].as_str().unwrap_or_default().to_owned();
    let mut cfg = config(json!([{"name": "legacy", "match": {"prefix": "/legacy"},
                                   "api_key": {"untagged_keys": "lookup"}}]));
    cfg["api_keys"]["key_tags"] = json!({"secret_env": KEY_TAG_ENV});
    let echo = EchoServer::start();
    let opts = EnvoyOptions::new(cfg, echo.port())
        .cluster("auth", svc.port)
        .env("E2E_SERVICE_TOKEN", SERVICE_TOKEN)
        .env(KEY_TAG_ENV, KEY_TAG_SECRET);
    let envoy = Envoy::start(opts).unwrap_or_else(|e| panic!("{e}"));
    let s = Stack { envoy, echo, svc };

    // the flood: two keep-alive connections (so both workers take part)
    let addr = s.envoy.addr();
    let deadline = Instant::now() + Duration::from_secs(8);
    let floods: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let (mut sent, mut refused, mut conn) = (0u64, 0u64, None::<Conn>);
                while sent < 5_000 && Instant::now() < deadline {
                    let invented = format!("sk_{}", random_hex(64));
                    if conn.is_none() {
                        conn = Conn::connect(addr).ok();
                    }
                    let Some(c) = conn.as_mut() else { continue };
                    sent += 1;
                    match c.send("GET", "/orders/1", &[("x-api-key", &invented)], "") {
                        Ok(r) => {
                            let body = String::from_utf8_lossy(&r.body).into_owned();
                            assert!(!body.contains(&invented[3..]), "the key was echoed: {body}");
                            if r.status == 401 && body.contains("not issued by this service") {
                                refused += 1;
                            }
                        }
                        Err(_) => conn = None,
                    }
                }
                (sent, refused)
            })
        })
        .collect();
    let (mut sent, mut refused) = (0, 0);
    for f in floods {
        let (a, b) = f.join().unwrap();
        sent += a;
        refused += b;
    }
    eprintln!("flood: {sent} invented keys sent, {refused} refused as api_key_bad_tag");
    assert!(sent >= 500, "the flood sent only {sent}");
    assert_eq!(refused, sent, "every invented key is a 401 api_key_bad_tag");
    assert_eq!(s.svc.lookups(), 0, "an invented key cost a lookup");
    assert_eq!(s.envoy.stat("wasmcustom.edge_auth.api_key.lookups"), 0);
    assert_eq!(s.envoy.stat("wasmcustom.edge_auth.denied.api_key_bad_tag"), sent);

    // a minted key, not yet cached: one lookup, then served from the caches
    for i in 0..20 {
        let r = call(&s, &format!("/orders/{i}"), &key);
        assert_eq!(r.status, 200, "{}", r.summary());
        assert_eq!(
            echoed_header(&r.json(), "x-edge-auth-key-id").as_deref(),
            Some(key_id.as_str())
        );
    }
    assert_eq!(s.svc.lookups(), 1, "a minted key is looked up exactly once");

    // the key of before: refused without a lookup where tags are required...
    let r = call(&s, "/orders/1", &old);
    assert_eq!(r.status, 401, "{}", r.summary());
    assert_eq!(
        r.json()["error_description"],
        "the API key was not issued by this service"
    );
    assert_eq!(s.svc.lookups(), 1);
    // ...and looked up (once) on the migrating rule
    for _ in 0..5 {
        let r = call(&s, "/legacy/x", &old);
        assert_eq!(r.status, 200, "{}", r.summary());
    }
    assert_eq!(s.svc.lookups(), 2);
    // an invented key on the migrating rule is looked up, as before tags
    assert_eq!(call(&s, "/legacy/x", &format!("sk_{}", random_hex(64))).status, 401);
    assert_eq!(s.svc.lookups(), 3);
}

// ---------------------------------------------------------------------------
// The per-client budget of uncached lookups (api_keys.lookup_budget).

#[test]
fn a_client_flooding_new_keys_is_held_to_its_lookup_budget_and_others_are_not() {
    let svc = AuthService::start();
    svc.tenant("acme", &[], &[]);
    let (key, _) = svc.key("acme", json!({"subject": "svc", "scopes": []}));
    let mut cfg = config(json!([]));
    // the harness's HCM appends the connection to X-Forwarded-For: the client
    // is the entry left of it (one trusted hop), as a load balancer would write
    cfg["envoy_appends_xff"] = json!(true);
    cfg["api_keys"]["trusted_hops"] = json!(1);
    cfg["api_keys"]["lookup_budget"] = json!({"burst": 5, "per_minute": 1});
    let s = start_with(svc, cfg);
    let flooder = [("x-forwarded-for", "198.51.100.7")];

    // its genuine key is looked up once and cached: one lookup of its budget
    let r = get_with(&s.envoy, "/x", &key, &flooder);
    assert_eq!(r.status, 200, "{}", r.summary());
    // fresh well-formed unknown keys: four more lookups, then none
    for i in 0..4 {
        let r = get_with(&s.envoy, "/x", &fresh_key(), &flooder);
        assert_refused(&r, 401, "invalid_token", &format!("unknown key {i}"));
    }
    assert_eq!(s.svc.lookups(), 5);
    for i in 0..20 {
        let r = get_with(&s.envoy, "/x", &fresh_key(), &flooder);
        assert_refused(&r, 429, "too_many_requests", &format!("flood key {i}"));
        let retry: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).unwrap_or(0);
        assert!((1..=60).contains(&retry), "retry-after {retry}");
        assert!(r.header("www-authenticate").is_none());
    }
    // the IPv4-mapped form of its address is the same client
    let mapped = get_with(
        &s.envoy,
        "/x",
        &fresh_key(),
        &[("x-forwarded-for", "::ffff:198.51.100.7")],
    );
    assert_refused(&mapped, 429, "too_many_requests", "IPv4-mapped address");
    assert_eq!(s.svc.lookups(), 5, "no lookup past the budget");
    assert_eq!(metric(&s.envoy, "api_key.lookup_budget_exceeded"), 21);
    assert_eq!(metric(&s.envoy, "denied.lookup_budget_exceeded"), 21);
    assert!(
        failures(&s.envoy).iter().all(|(_, n)| *n == 0),
        "{:?}",
        failures(&s.envoy)
    );

    // its cached key keeps working, on every worker, without a lookup
    assert!(edge_auth_e2e::settles(Duration::from_secs(5), || get_with(
        &s.envoy, "/x", &key, &flooder
    )
    .status
        == 200));
    // another client address still gets its lookups
    let other = [("x-forwarded-for", "203.0.113.9")];
    let r = get_with(&s.envoy, "/x", &fresh_key(), &other);
    assert_refused(&r, 401, "invalid_token", "another client's unknown key");
    let (key2, _) = s.svc.key("acme", json!({"subject": "svc2", "scopes": []}));
    assert_eq!(get_with(&s.envoy, "/x", &key2, &other).status, 200);
    assert_eq!(s.svc.lookups(), 7);
}
