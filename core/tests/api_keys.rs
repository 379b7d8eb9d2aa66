//! API keys end to end through the core: configuration, key sources and
//! format, the local and shared lookup caches, failures and stale-if-error,
//! the key's IP allowlist, origins and scopes, the refusals and the identity
//! headers. No proxy involved: a fake `Request` records every fact read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::collections::HashMap;

use edge_auth_core::api_key::shared_cache::CacheTable;
use edge_auth_core::api_key::tag::{KeyTags, TagSecret};
use edge_auth_core::api_key::{self, key_hash, parse_lookup, Answer, Lookup, LookupFailure};
use edge_auth_core::cache::token_key;
use edge_auth_core::config::{self, Config, ConfigError};
use edge_auth_core::context::{self, ContextHeaders};
use edge_auth_core::decision::{
    decide, fingerprint, Allow, Attempt, Deny, KeyAnswer, KeyRefusal, KeyUse, Outcome, Request, State, Verdict,
};
use edge_auth_core::policy::routes::Requirement;
use edge_auth_core::response::reply;
use edge_auth_core::token_source::TokenSource;
use serde_json::{json, Value};

mod common;
use common::{allowed, denied};

const NOW_S: u64 = 1_800_000_000;
const NOW: u64 = NOW_S * 1000;
/// The contract's worked example (docs/auth-service-api.md, 4.3).
const KEY: &str = "sk_20461de3ee4a57fe3611338284344655d8b1dff13bde3406141f9ba472ba2fb1";
const KEY_HASH: &str = "2ef626683da91ed223b8e00ba57046fafb18e6465a481a76d5875d41fb8aba3d";
const KEY2: &str = "sk_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const SERVICE_TOKEN: &str = "svc-0123456789abcdef0123456789abcdef";
const CONTEXT_KEY: &str = "ctx-0123456789abcdef0123456789abcdef";
const MAX_BODY: usize = 64 * 1024;
const TAG_SECRET: &str = "tag-0123456789abcdef0123456789abcdef";
const TAG_OLD: &str = "old-0123456789abcdef0123456789abcdef";

fn env(name: &str) -> Option<String> {
    match name {
        "SVC_TOKEN" => Some(SERVICE_TOKEN.into()),
        "SHORT_TOKEN" => Some("too-short".into()),
        "SPACED_TOKEN" => Some("0123456789abcdef 0123456789abcdef0".into()),
        "CTX_KEY" => Some(CONTEXT_KEY.into()),
        "TAG_SECRET" => Some(TAG_SECRET.into()),
        "TAG_OLD" => Some(TAG_OLD.into()),
        "TAG_SHORT" => Some("s".repeat(31)),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

// ---- configuration helpers --------------------------------------------------

/// A configuration with API keys on several routes (every source, including the query).
fn doc() -> Value {
    json!({
        "envoy_appends_xff": false,
        "auth_service": {"cluster": "auth", "token_env": "SVC_TOKEN"},
        "api_keys": {
            "sources": [
                {"header": "x-api-key"},
                {"header": "authorization", "scheme": "ApiKey"},
                {"query": "api_key"}
            ]
        },
        "rules": [
            {"name": "health", "match": {"path": "/health"}, "public": true},
            {"name": "keys", "match": {"prefix": "/v1/"}, "api_key": {}},
            {"name": "stale", "match": {"prefix": "/stale/"}, "api_key": {"stale_if_error_s": 60}},
            {"name": "web", "match": {"prefix": "/web/"}, "api_key": {},
             "origin": {"allowed": ["https://static.example"]}},
            {"name": "web-null", "match": {"prefix": "/webnull/"}, "api_key": {},
             "origin": {"allowed": [], "null": "allow"}},
            {"name": "read", "match": {"prefix": "/read/"}, "api_key": {},
             "scopes": {"any_of": ["orders:read", "orders:admin"]}},
            {"name": "write", "match": {"prefix": "/write/"}, "api_key": {},
             "scopes": {"all_of": ["orders:read", "orders:write"]}},
            {"name": "hops", "match": {"prefix": "/hops/"}, "api_key": {},
             "ip": {"allow": ["0.0.0.0/0", "::/0"], "trusted_hops": 1}}
        ]
    })
}

fn parse(doc: &Value) -> Result<Config, ConfigError> {
    config::parse(doc.to_string().as_bytes(), &env)
}

fn config() -> Config {
    parse(&doc()).unwrap()
}

fn config_with(f: impl FnOnce(&mut Value)) -> Config {
    let mut d = doc();
    f(&mut d);
    parse(&d).unwrap()
}

/// The field a configuration is refused for.
fn refused_field(d: &Value) -> String {
    match parse(d) {
        Ok(_) => panic!("accepted: {d}"),
        Err(e) => e.field,
    }
}

/// A minimal valid document with API keys and one api_key rule.
fn minimal() -> Value {
    json!({
        "auth_service": {"cluster": "auth", "token_env": "SVC_TOKEN"},
        "api_keys": {},
        "rules": [{"name": "keys", "match": {"prefix": "/"}, "api_key": {}}]
    })
}

fn minimal_with(f: impl FnOnce(&mut Value)) -> Value {
    let mut d = minimal();
    f(&mut d);
    d
}

// ---- lookup helpers ---------------------------------------------------------

fn valid_json() -> Value {
    json!({
        "status": "valid",
        "key_id": "key_mepybc6vdnwbtgbcqqchcvqb6w",
        "tenant": "acme",
        "subject": "svc-billing",
        "scopes": ["orders:read"],
        "ip_allowlist": [],
        "allowed_origins": ["https://app.acme.example", "https://*.tenant.example"],
        "expires_at": null,
        "cache_ttl_s": 300
    })
}

fn valid_with(f: impl FnOnce(&mut Value)) -> Value {
    let mut v = valid_json();
    f(&mut v);
    v
}

/// A lookup answer parsed as the shell parses the service's body (bound to
/// KEY_HASH, as a contract v1.1 service answers a lookup of KEY).
fn lookup_at(v: &Value, now_s: u64) -> Lookup {
    let mut v = v.clone();
    v["key_hash"] = json!(KEY_HASH);
    parse_lookup(Some(200), Some(v.to_string().as_bytes()), MAX_BODY, now_s, KEY_HASH).unwrap()
}

fn lookup(v: &Value) -> Lookup {
    lookup_at(v, NOW_S)
}

fn answer_for(key: &str, v: &Value) -> KeyAnswer {
    KeyAnswer {
        hash: key_hash(key),
        result: Ok(lookup(v)),
    }
}

fn failure_for(key: &str, f: LookupFailure) -> KeyAnswer {
    KeyAnswer {
        hash: key_hash(key),
        result: Err(f),
    }
}

// ---- the fake request -------------------------------------------------------

/// A request whose facts are recorded as the decision reads them.
struct Req {
    headers: Vec<(String, String)>,
    peer: Option<String>,
    shared: HashMap<String, Vec<u8>>,
    headers_read: Vec<String>,
    shared_read: Vec<String>,
    xff_read: bool,
}

impl Req {
    fn new(headers: &[(&str, &str)]) -> Req {
        Req {
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            peer: Some("192.0.2.1:40000".into()),
            shared: HashMap::new(),
            headers_read: vec![],
            shared_read: vec![],
            xff_read: false,
        }
    }

    fn key(key: &str) -> Req {
        Req::new(&[("x-api-key", key)])
    }

    fn peer(mut self, peer: Option<&str>) -> Req {
        self.peer = peer.map(String::from);
        self
    }

    /// Forgets what was read (the shared store and headers stay).
    fn reset(&mut self) {
        self.headers_read.clear();
        self.shared_read.clear();
        self.xff_read = false;
    }

    /// Writes a shared-cache entry for `key` as the shell does after a lookup.
    fn put_shared(&mut self, cfg: &Config, key: &str, lookup: &Lookup, until: u64) {
        let hash = key_hash(key);
        let bytes = table(cfg).encode_entry(&hash, lookup, until).unwrap();
        self.put_shared_bytes(cfg, key, bytes);
    }

    fn put_shared_bytes(&mut self, cfg: &Config, key: &str, bytes: Vec<u8>) {
        let name = table(cfg).entry_name(&key_hash(key), slots(cfg));
        self.shared.insert(name, bytes);
    }
}

impl Request for Req {
    fn header(&mut self, name: &str) -> Option<String> {
        self.header_all(name).into_iter().next()
    }

    fn header_all(&mut self, name: &str) -> Vec<String> {
        self.headers_read.push(name.to_owned());
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn forwarded_for(&mut self) -> Option<String> {
        self.xff_read = true;
        self.headers
            .iter()
            .find(|(n, _)| n == "x-forwarded-for")
            .map(|(_, v)| v.clone())
    }

    fn peer(&mut self) -> Option<String> {
        self.peer.clone()
    }

    fn shared_data(&mut self, name: &str) -> Option<Vec<u8>> {
        self.shared_read.push(name.to_owned());
        self.shared.get(name).cloned()
    }
}

fn slots(cfg: &Config) -> usize {
    cfg.api_keys.as_ref().unwrap().shared_cache_slots
}

/// The configuration's shared tables of answers and lookup markers.
fn table(cfg: &Config) -> &CacheTable {
    &cfg.api_keys.as_ref().unwrap().shared_cache
}

#[allow(clippy::too_many_arguments)]
fn run<'c>(
    cfg: &'c Config,
    st: &mut State,
    req: &mut Req,
    path: &str,
    now_ms: u64,
    may_await: bool,
    answer: Option<&KeyAnswer>,
) -> Outcome<'c> {
    let attempt = Attempt {
        method: "GET",
        path,
        now_ms,
        may_await,
        answer,
    };
    decide(cfg, st, &attempt, req)
}

/// A first request: at NOW, may wait, nothing delivered.
fn first<'c>(cfg: &'c Config, st: &mut State, req: &mut Req, path: &str) -> Outcome<'c> {
    run(cfg, st, req, path, NOW, true, None)
}

/// The request again with the lookup's answer.
fn with_answer<'c>(cfg: &'c Config, st: &mut State, req: &mut Req, path: &str, a: &KeyAnswer) -> Outcome<'c> {
    run(cfg, st, req, path, NOW, false, Some(a))
}

/// The request again after [`KEY`]'s lookup got no answer (the auth service is down).
fn unanswered<'c>(cfg: &'c Config, st: &mut State, req: &mut Req, path: &str) -> Outcome<'c> {
    with_answer(cfg, st, req, path, &failure_for(KEY, LookupFailure::NoResponse))
}

fn awaited(o: &Outcome<'_>) -> String {
    match &o.verdict {
        Verdict::AwaitLookup { hash, .. } => hash.clone(),
        other => panic!("expected AwaitLookup, got {other:?}"),
    }
}

fn header<'a>(headers: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
}

fn context_map(a: &Allow<'_>) -> HashMap<String, String> {
    a.context.iter().cloned().collect()
}

// =============================================================================
// Configuration
// =============================================================================

#[test]
fn config_defaults() {
    let cfg = parse(&minimal()).unwrap();
    let k = cfg.api_keys.as_ref().unwrap();
    assert_eq!(
        k.sources,
        vec![
            TokenSource::Header {
                name: "x-api-key".into(),
                scheme: None
            },
            TokenSource::Header {
                name: "authorization".into(),
                scheme: Some("ApiKey".into())
            },
        ]
    );
    assert_eq!(k.format.prefix, "sk_");
    assert_eq!(k.format.hex_len, 64);
    assert_eq!(k.lookup_path, "/internal/v1/api-keys/lookup");
    assert_eq!(k.max_cache_ttl_s, 300);
    assert_eq!(k.negative_cache_ttl_s, 30);
    assert_eq!(k.shared_cache_slots, 8192);
    assert_eq!(k.local_cache_entries, 1024);
    assert_eq!(k.trusted_hops, 0);
    assert_eq!(k.breaker.failure_threshold, 5);
    assert_eq!(k.breaker.open_ms, 10_000);
    assert_eq!(
        cfg.routes.select("GET", "/anything").requirement(),
        Some(&Requirement::ApiKey {
            stale_if_error_ms: 0,
            untagged_lookup: false
        })
    );
    // The key headers are credential headers (a passed preflight loses them).
    assert!(cfg.credential_headers.iter().any(|h| h == "x-api-key"));
    assert!(cfg.credential_headers.iter().any(|h| h == "authorization"));
    // A service token is never printed.
    assert!(!format!("{cfg:?}").contains(SERVICE_TOKEN));

    let cfg = parse(&minimal_with(|d| {
        d["rules"][0]["api_key"] = json!({"stale_if_error_s": 3600})
    }))
    .unwrap();
    assert_eq!(
        cfg.routes.select("GET", "/x").requirement(),
        Some(&Requirement::ApiKey {
            stale_if_error_ms: 3_600_000,
            untagged_lookup: false
        })
    );
}

#[test]
fn config_sources_query_accepted_cookie_refused() {
    let cfg = parse(&minimal_with(|d| {
        d["api_keys"]["sources"] = json!([{"query": "api_key"}])
    }))
    .unwrap();
    assert_eq!(
        cfg.api_keys.unwrap().sources,
        vec![TokenSource::Query { name: "api_key".into() }]
    );
    let cases: [(Value, &str); 5] = [
        (json!([{"cookie": "key"}]), "api_keys.sources[0].cookie"),
        (
            json!([{"header": "x-api-key"}, {"cookie": "key"}]),
            "api_keys.sources[1].cookie",
        ),
        (json!([]), "api_keys.sources"),
        (
            json!([{"header": "x-api-key"}, {"header": "x-api-key"}]),
            "api_keys.sources[1]",
        ),
        (
            json!([{"query": "api_key"}, {"query": "api_key"}]),
            "api_keys.sources[1]",
        ),
    ];
    for (sources, field) in cases {
        let d = minimal_with(|d| d["api_keys"]["sources"] = sources.clone());
        assert_eq!(refused_field(&d), field, "{sources}");
    }
    // Two kinds in one source, or an invalid header name: refused within the source.
    for sources in [
        json!([{"header": "x-api-key", "query": "api_key"}]),
        json!([{"header": "x api key"}]),
        json!([{"header": "x-api-key", "cookie": "k"}]),
    ] {
        let d = minimal_with(|d| d["api_keys"]["sources"] = sources.clone());
        let f = refused_field(&d);
        assert!(f.starts_with("api_keys.sources[0]"), "{sources}: {f}");
    }
}

#[test]
fn config_bad_api_keys_fields_are_named() {
    let cases: Vec<(&str, Value, &str)> = vec![
        ("prefix", json!(""), "api_keys.prefix"),
        ("prefix", json!("sk "), "api_keys.prefix"),
        ("prefix", json!("sk\n"), "api_keys.prefix"),
        ("prefix", json!("clé_"), "api_keys.prefix"),
        ("prefix", json!("p".repeat(33)), "api_keys.prefix"),
        ("hex_digits", json!(31), "api_keys.hex_digits"),
        ("hex_digits", json!(129), "api_keys.hex_digits"),
        ("lookup_path", json!("internal/lookup"), "api_keys.lookup_path"),
        ("lookup_path", json!("/lookup?x=1"), "api_keys.lookup_path"),
        ("lookup_path", json!("/look up"), "api_keys.lookup_path"),
        ("max_cache_ttl_s", json!(0), "api_keys.max_cache_ttl_s"),
        ("max_cache_ttl_s", json!(3601), "api_keys.max_cache_ttl_s"),
        ("negative_cache_ttl_s", json!(301), "api_keys.negative_cache_ttl_s"),
        ("shared_cache_slots", json!(0), "api_keys.shared_cache_slots"),
        ("local_cache_entries", json!(0), "api_keys.local_cache_entries"),
        ("max_response_bytes", json!(10), "api_keys.max_response_bytes"),
        ("max_pending_lookups", json!(0), "api_keys.max_pending_lookups"),
        ("trusted_hops", json!(11), "api_keys.trusted_hops"),
        // trusted hops need the top-level envoy_appends_xff (not set in minimal())
        ("trusted_hops", json!(1), "api_keys.trusted_hops"),
        (
            "breaker",
            json!({"failure_threshold": 0}),
            "api_keys.breaker.failure_threshold",
        ),
        ("breaker", json!({"open_s": 0}), "api_keys.breaker.open_s"),
        ("breaker", json!({"open_s": 601}), "api_keys.breaker.open_s"),
        ("lookup_budget", json!({"burst": 0}), "api_keys.lookup_budget.burst"),
        (
            "lookup_budget",
            json!({"burst": 100_001}),
            "api_keys.lookup_budget.burst",
        ),
        (
            "lookup_budget",
            json!({"per_minute": 0}),
            "api_keys.lookup_budget.per_minute",
        ),
        (
            "lookup_budget",
            json!({"per_minute": 600_001}),
            "api_keys.lookup_budget.per_minute",
        ),
        ("lookup_budget", json!({"slots": 0}), "api_keys.lookup_budget.slots"),
        (
            "lookup_budget",
            json!({"slots": 100_001}),
            "api_keys.lookup_budget.slots",
        ),
        (
            "lookup_budget",
            json!({"ipv6_prefix": 15}),
            "api_keys.lookup_budget.ipv6_prefix",
        ),
        (
            "lookup_budget",
            json!({"ipv6_prefix": 129}),
            "api_keys.lookup_budget.ipv6_prefix",
        ),
    ];
    for (field, value, want) in cases {
        let d = minimal_with(|d| d["api_keys"][field] = value.clone());
        assert_eq!(refused_field(&d), want, "{field}: {value}");
    }
    // Wrong types and negative numbers are refused by the parser, at their path.
    for (field, value) in [
        ("max_cache_ttl_s", json!(-1)),
        ("negative_cache_ttl_s", json!("30")),
        ("hex_digits", json!(64.5)),
        ("trusted_hops", json!(256)),
        ("prefix", json!(null)),
    ] {
        let d = minimal_with(|d| d["api_keys"][field] = value.clone());
        assert_eq!(refused_field(&d), format!("api_keys.{field}"), "{field}: {value}");
    }
    // Unknown fields inside api_keys and inside its breaker.
    let d = minimal_with(|d| d["api_keys"]["cache_ttl"] = json!(10));
    let f = refused_field(&d);
    assert!(f.starts_with("api_keys"), "{f}");
    let d = minimal_with(|d| d["api_keys"]["breaker"] = json!({"threshold": 3}));
    let f = refused_field(&d);
    assert!(f.starts_with("api_keys.breaker"), "{f}");
    // The bounds themselves are accepted.
    for (field, value) in [
        ("max_cache_ttl_s", 1),
        ("max_cache_ttl_s", 3600),
        ("negative_cache_ttl_s", 0),
        ("negative_cache_ttl_s", 300),
        ("hex_digits", 32),
        ("hex_digits", 128),
        ("shared_cache_slots", 1),
    ] {
        let d = minimal_with(|d| d["api_keys"][field] = json!(value));
        assert!(parse(&d).is_ok(), "{field}: {value}");
    }
}

#[test]
fn config_rule_api_key_errors_are_named() {
    // An api_key rule without top-level api_keys (with and without auth_service).
    let d = minimal_with(|d| {
        d.as_object_mut().unwrap().remove("api_keys");
    });
    assert_eq!(refused_field(&d), "rules[0].api_key");
    let d = json!({"rules": [
        {"name": "pub", "match": {"path": "/health"}, "public": true},
        {"name": "keys", "match": {"prefix": "/"}, "api_key": {}}
    ]});
    assert_eq!(refused_field(&d), "rules[1].api_key");
    // stale_if_error_s over an hour
    let d = minimal_with(|d| d["rules"][0]["api_key"] = json!({"stale_if_error_s": 3601}));
    assert_eq!(refused_field(&d), "rules[0].api_key.stale_if_error_s");
    let d = minimal_with(|d| d["rules"][0]["api_key"] = json!({"stale_if_error_s": -5}));
    assert_eq!(refused_field(&d), "rules[0].api_key.stale_if_error_s");
    // more than one requirement
    let d = minimal_with(|d| d["rules"][0]["public"] = json!(true));
    assert_eq!(refused_field(&d), "rules[0]");
    let d = minimal_with(|d| {
        d["providers"] = json!([{
            "name": "p", "issuer": "https://i", "audiences": ["a"], "algorithms": ["HS256"],
            "hmac_secrets": [{"env": "SVC_TOKEN", "alg": "HS256"}]
        }]);
        d["rules"][0]["jwt"] = json!({"providers": ["p"]});
    });
    // jwt and api_key together: a token or a key (core/tests/rollout.rs)
    let cfg = parse(&d).unwrap();
    assert_eq!(
        cfg.routes.rules()[0].policy.requirement,
        Requirement::JwtOrApiKey {
            providers: vec![0],
            stale_if_error_ms: 0,
            untagged_lookup: false
        }
    );
    // unknown fields, wrong type inside the rule's api_key
    let d = minimal_with(|d| d["rules"][0]["api_key"] = json!({"stale_s": 10}));
    let f = refused_field(&d);
    assert!(f.starts_with("rules[0].api_key"), "{f}");
    let d = minimal_with(|d| d["rules"][0]["api_key"] = json!(true));
    assert_eq!(refused_field(&d), "rules[0].api_key");
    // the default rule too
    let d = minimal_with(|d| d["default_rule"] = json!({"api_key": {"stale_if_error_s": 7200}}));
    assert_eq!(refused_field(&d), "default_rule.api_key.stale_if_error_s");
    // origin: a tenant claim is refused (the key brings its own origins); an empty static list is fine
    let d = minimal_with(|d| {
        d["tenants"] = json!({"acme": {"origins": ["https://acme.example"]}});
        d["rules"][0]["origin"] = json!({"tenant_claim": "tenant"});
    });
    assert_eq!(refused_field(&d), "rules[0].origin.tenant_claim");
    let d = minimal_with(|d| d["rules"][0]["origin"] = json!({"allowed": []}));
    assert!(parse(&d).is_ok());
    let d = minimal_with(|d| d["rules"][0]["origin"] = json!({}));
    assert!(parse(&d).is_ok());
    // ip and scopes combine with api_key
    let d = minimal_with(|d| {
        d["rules"][0]["ip"] = json!({"allow": ["10.0.0.0/8"]});
        d["rules"][0]["scopes"] = json!({"any_of": ["orders:read"]});
    });
    assert!(parse(&d).is_ok());
}

#[test]
fn config_api_keys_need_an_auth_service_with_a_good_token() {
    let d = minimal_with(|d| {
        d.as_object_mut().unwrap().remove("auth_service");
    });
    assert_eq!(refused_field(&d), "api_keys");
    for token_env in ["SHORT_TOKEN", "SPACED_TOKEN", "UNSET_TOKEN"] {
        let d = minimal_with(|d| d["auth_service"]["token_env"] = json!(token_env));
        assert_eq!(refused_field(&d), "auth_service.token_env", "{token_env}");
    }
    let d = minimal_with(|d| d["auth_service"]["cluster"] = json!(""));
    assert_eq!(refused_field(&d), "auth_service.cluster");
    let d = minimal_with(|d| d["auth_service"]["bogus"] = json!(1));
    assert!(refused_field(&d).starts_with("auth_service"));
}

#[test]
fn config_auth_service_tenant_claim_defaults_to_the_reference_services() {
    let svc = |d: &Value| parse(d).unwrap().auth_service.unwrap();
    assert_eq!(svc(&minimal()).tenant_claim.to_string(), "tenant");
    let d = minimal_with(|d| d["auth_service"]["tenant_claim"] = json!("org_id"));
    assert_eq!(svc(&d).tenant_claim.to_string(), "org_id");
    for bad in [json!(""), json!("x".repeat(257))] {
        let d = minimal_with(|d| d["auth_service"]["tenant_claim"] = bad.clone());
        assert_eq!(refused_field(&d), "auth_service.tenant_claim", "{bad}");
    }
    let d = minimal_with(|d| d["auth_service"]["tenant_claim"] = json!(1));
    assert!(refused_field(&d).starts_with("auth_service"));
}

#[test]
fn config_key_source_cannot_be_a_header_the_filter_writes() {
    let d = minimal_with(|d| {
        d["context"] = json!({});
        d["api_keys"]["sources"] = json!([{"header": "x-api-key"}, {"header": "x-edge-auth-subject"}]);
    });
    assert_eq!(refused_field(&d), "api_keys.sources[1]");
}

// =============================================================================
// Finding the key; its format
// =============================================================================

#[test]
fn missing_key_is_401_with_an_api_key_challenge() {
    let cfg = config();
    let mut st = State::new(&cfg);
    let mut req = Req::new(&[]);
    let o = first(&cfg, &mut st, &mut req, "/v1/items");
    assert_eq!(denied(&o), Deny::MissingApiKey);
    assert_eq!(o.credential, None);
    assert_eq!(o.key, None);
    assert!(req.shared_read.is_empty());
    let r = reply(Deny::MissingApiKey, &cfg.realm);
    assert_eq!(r.status, 401);
    assert_eq!(
        header(&r.headers, "www-authenticate"),
        Some("ApiKey realm=\"edge-auth\"")
    );
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["error"], "missing_token");
}

#[test]
fn other_authorization_schemes_are_no_key() {
    let cfg = config();
    for value in [
        format!("Bearer {KEY}"),
        format!("Basic {KEY}"),
        format!("ApiKeys {KEY}"),
        format!("ApiKey{KEY}"),
        format!("Api-Key {KEY}"),
        "ApiKey".to_string(),
        "ApiKey ".to_string(),
    ] {
        let mut st = State::new(&cfg);
        let mut req = Req::new(&[("authorization", value.as_str())]);
        let o = first(&cfg, &mut st, &mut req, "/v1/items");
        assert_eq!(denied(&o), Deny::MissingApiKey, "{value}");
        assert!(req.shared_read.is_empty(), "{value}");
    }
}

#[test]
fn authorization_api_key_scheme_is_case_insensitive() {
    let cfg = config();
    for value in [
        format!("ApiKey {KEY}"),
        format!("apikey {KEY}"),
        format!("APIKEY   {KEY}"),
        format!("ApiKey\t{KEY}"),
    ] {
        let mut st = State::new(&cfg);
        let mut req = Req::new(&[("authorization", value.as_str())]);
        let o = first(&cfg, &mut st, &mut req, "/v1/items");
        assert_eq!(awaited(&o), KEY_HASH, "{value}");
        assert_eq!(o.key, Some(KeyUse::Miss));
    }
    // two keys, in x-api-key and in Authorization: ambiguous (issue 11, item 4), never the first
    let mut st = State::new(&cfg);
    let auth = format!("ApiKey {KEY2}");
    let mut req = Req::new(&[("x-api-key", KEY), ("authorization", auth.as_str())]);
    assert_eq!(
        denied(&first(&cfg, &mut st, &mut req, "/v1/")),
        Deny::AmbiguousCredential
    );
    assert!(req.shared_read.is_empty());
    // the same key in both: one credential
    let auth = format!("apikey {KEY}");
    let mut req = Req::new(&[("x-api-key", KEY), ("authorization", auth.as_str())]);
    assert_eq!(awaited(&first(&cfg, &mut st, &mut req, "/v1/")), KEY_HASH);
}

#[test]
fn malformed_keys_are_refused_without_any_lookup() {
    let cfg = config();
    let hex = &KEY[3..];
    let mut bad: Vec<String> = vec![
        format!("sk_{}", hex.to_uppercase()),
        KEY.to_uppercase(),
        format!("sk_{}A", &hex[..63]),
        KEY[..KEY.len() - 1].to_string(),
        format!("{KEY}0"),
        format!("pk_{hex}"),
        format!("sk-{hex}"),
        format!("Sk_{hex}"),
        format!("sk__{}", &hex[1..]),
        format!("sk_{}", "g".repeat(64)),
        "sk_".to_string(),
        hex.to_string(),
        format!("{KEY}{KEY}"),
        // a JWT sent as a key
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl".to_string(),
        // 100 KB
        format!("sk_{}", "a".repeat(100 * 1024)),
        "x".repeat(100 * 1024),
    ];
    bad.push(format!("\"{KEY}\""));
    for value in &bad {
        let mut st = State::new(&cfg);
        let mut req = Req::key(value);
        let o = first(&cfg, &mut st, &mut req, "/v1/items");
        assert_eq!(
            denied(&o),
            Deny::ApiKey(KeyRefusal::Malformed),
            "{}",
            &value[..value.len().min(80)]
        );
        assert!(!matches!(o.verdict, Verdict::AwaitLookup { .. }));
        assert!(req.shared_read.is_empty(), "shared data read for a malformed key");
        assert_eq!(o.key, None);
        assert_eq!(o.credential.as_ref().map(|c| c.digest()), Some(token_key(value)));
        assert!(st.keys.is_empty());
    }
    // The same through the query string: whitespace, non-ASCII, control characters after decoding.
    for query in [
        format!("api_key=%20{KEY}"),
        format!("api_key={KEY}%20"),
        format!("api_key={KEY}%0A"),
        format!("api_key={KEY}%00"),
        format!("api_key=%E2%80%8B{KEY}"),
        format!("api_key=sk_{}%C3%A9", &hex[..63]),
        format!("api_key=+{KEY}"),
        format!("api_key={}", KEY.to_uppercase()),
    ] {
        let mut st = State::new(&cfg);
        let mut req = Req::new(&[]);
        let o = first(&cfg, &mut st, &mut req, &format!("/v1/items?{query}"));
        assert_eq!(denied(&o), Deny::ApiKey(KeyRefusal::Malformed), "{query}");
        assert!(req.shared_read.is_empty(), "{query}");
    }
    // and through Authorization: ApiKey
    let auth = format!("ApiKey {}", KEY.to_uppercase());
    let mut st = State::new(&cfg);
    let mut req = Req::new(&[("authorization", auth.as_str())]);
    let o = first(&cfg, &mut st, &mut req, "/v1/items");
    assert_eq!(denied(&o), Deny::ApiKey(KeyRefusal::Malformed));
    assert!(req.shared_read.is_empty());
    let r = reply(Deny::ApiKey(KeyRefusal::Malformed), &cfg.realm);
    assert_eq!(r.status, 401);
    let challenge = header(&r.headers, "www-authenticate").unwrap();
    assert!(challenge.starts_with("ApiKey realm=\"edge-auth\""), "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
}

/// Header values that are not a single visible-ASCII token are no key at all
/// in that source (docs/configuration.md, section 2: the next source is
/// tried), and never reach a lookup.
#[test]
fn unreadable_header_values_are_not_keys() {
    let cfg = config();
    let hex = &KEY[3..];
    for value in [
        String::new(),
        "   ".to_string(),
        format!("sk_{}é", &hex[..63]),
        format!("ключ-{hex}"),
        format!("sk_{} {}", &hex[..32], &hex[32..]),
        format!("{KEY},{KEY}"),
        format!("{KEY}\u{0}"),
        format!("{KEY}\u{7f}"),
    ] {
        let mut st = State::new(&cfg);
        let mut req = Req::key(&value);
        let o = first(&cfg, &mut st, &mut req, "/v1/items");
        // a comma is two credentials in one header
        let alone = if value.contains(',') {
            Deny::AmbiguousCredential
        } else {
            Deny::MissingApiKey
        };
        assert_eq!(denied(&o), alone, "{value:?}");
        assert!(req.shared_read.is_empty());
        // ... and next to a key in another place, anything but a blank value is a second
        // credential (an upstream may read either): refused, not passed over
        let auth = format!("ApiKey {KEY}");
        let mut req = Req::new(&[("x-api-key", value.as_str()), ("authorization", auth.as_str())]);
        let o = first(&cfg, &mut st, &mut req, "/v1/items");
        if value.trim().is_empty() {
            assert_eq!(awaited(&o), KEY_HASH, "{value:?}");
        } else {
            assert_eq!(denied(&o), Deny::AmbiguousCredential, "{value:?}");
        }
    }
    // Spaces and tabs around a header value are HTTP's optional whitespace, not part of the value.
    let mut st = State::new(&cfg);
    let padded = format!(" \t{KEY} ");
    let mut req = Req::key(&padded);
    assert_eq!(awaited(&first(&cfg, &mut st, &mut req, "/v1/items")), KEY_HASH);
}

#[test]
fn the_raw_key_never_appears_in_outcomes_or_replies() {
    let cfg = config();
    let upper = format!("sk_{}", KEY[3..].to_uppercase());
    let long = format!("sk_{}", "f".repeat(100 * 1024));
    // malformed keys
    for value in [upper.as_str(), long.as_str()] {
        let mut st = State::new(&cfg);
        let mut req = Req::key(value);
        let o = first(&cfg, &mut st, &mut req, "/v1/items");
        let d = denied(&o);
        let text = format!("{o:?} {d:?}");
        assert!(!text.contains(&value[3..40]), "{text}");
        let r = reply(d, &cfg.realm);
        assert!(!r.body.contains(&value[3..40]));
        assert!(r.headers.iter().all(|(_, v)| !v.contains(&value[3..40])));
    }
    // an unknown key: refused after its lookup, from the answer and then from the cache
    let mut st = State::new(&cfg);
    let mut req = Req::key(KEY);
    let a = answer_for(KEY, &json!({"status": "unknown", "cache_ttl_s": 30}));
    let waiting = first(&cfg, &mut st, &mut req, "/v1/items");
    let o = with_answer(&cfg, &mut st, &mut req, "/v1/items", &a);
    let cached = first(&cfg, &mut st, &mut req, "/v1/items");
    for o in [&waiting, &o, &cached] {
        let text = format!("{o:?}");
        assert!(!text.contains(&KEY[3..]), "{text}");
        assert_eq!(o.credential.as_ref().map(|c| c.digest()), Some(token_key(KEY)));
    }
    assert_eq!(denied(&o), Deny::ApiKey(KeyRefusal::Unknown));
    let r = reply(denied(&o), &cfg.realm);
    assert!(!r.body.contains(&KEY[3..]) && !r.body.contains(KEY_HASH));
    assert!(r.headers.iter().all(|(_, v)| !v.contains(&KEY[3..])));
    // the log fingerprint is the hash's first 8 hex digits (docs/auth-service-api.md 4.3)
    let credential = o.credential.as_ref().unwrap();
    assert_eq!(credential.fingerprint(), "2ef62668");
    assert_eq!(fingerprint(&credential.digest()), "2ef62668");
    assert_eq!(api_key::hex(&credential.digest()), KEY_HASH);
}

#[test]
fn repeated_or_undecodable_query_key_is_ambiguous() {
    let cfg = config();
    for query in [
        format!("api_key={KEY}&api_key={KEY}"),
        format!("api_key={KEY}&api_key={KEY2}"),
        format!("api_key={KEY}&%61pi_key={KEY2}"),
        format!("api_key={KEY}&x=1&api_key="),
        "api_key=%zz".to_string(),
        "api_key=sk_%C3".to_string(),
    ] {
        let mut st = State::new(&cfg);
        let mut req = Req::new(&[]);
        let o = first(&cfg, &mut st, &mut req, &format!("/v1/items?{query}"));
        assert_eq!(denied(&o), Deny::AmbiguousCredential, "{query}");
        assert!(req.shared_read.is_empty());
        assert_eq!(reply(denied(&o), &cfg.realm).status, 400);
    }
}

#[test]
fn a_query_key_is_removed_from_the_upstream_path() {
    let cfg = config();
    let v = valid_json();
    for (path, want) in [
        (format!("/v1/items?a=1&api_key={KEY}&b=2"), "/v1/items?a=1&b=2"),
        (format!("/v1/items?api_key={KEY}"), "/v1/items"),
        (format!("/v1/items?api_key=%73k_{}", &KEY[3..]), "/v1/items"),
    ] {
        let mut st = State::new(&cfg);
        let mut req = Req::new(&[]);
        assert_eq!(awaited(&first(&cfg, &mut st, &mut req, &path)), KEY_HASH, "{path}");
        let o = with_answer(&cfg, &mut st, &mut req, &path, &answer_for(KEY, &v));
        let a = allowed(&o);
        assert_eq!(a.path.as_deref(), Some(want), "{path}");
        assert!(a.remove_headers.names().next().is_none(), "no key header to remove");
    }
    // a header key leaves the path alone
    let mut st = State::new(&cfg);
    let mut req = Req::key(KEY);
    let o = with_answer(&cfg, &mut st, &mut req, "/v1/items?a=1", &answer_for(KEY, &v));
    assert_eq!(allowed(&o).path, None);
}

// =============================================================================
// Lookups and the caches
// =============================================================================

#[test]
fn a_miss_asks_for_a_lookup_after_one_shared_read() {
    let cfg = config();
    let mut st = State::new(&cfg);
    let mut req = Req::key(KEY);
    let o = first(&cfg, &mut st, &mut req, "/v1/items");
    assert_eq!(key_hash(KEY), KEY_HASH);
    assert_eq!(awaited(&o), KEY_HASH);
    assert_eq!(o.key, Some(KeyUse::Miss));
    assert_eq!(o.credential.as_ref().map(|c| c.digest()), Some(token_key(KEY)));
    assert_eq!(req.shared_read, vec![table(&cfg).entry_name(KEY_HASH, slots(&cfg))]);
    assert!(st.keys.is_empty());
}

#[test]
fn a_delivered_valid_answer_allows_and_is_then_a_local_hit() {
    let cfg = config();
    let mut st = State::new(&cfg);
    let mut req = Req::key(KEY);
    let a = answer_for(KEY, &valid_json());
    let o = with_answer(&cfg, &mut st, &mut req, "/v1/items", &a);
    assert_eq!(o.key, Some(KeyUse::Answer));
    assert!(o.credential.is_none(), "an allowed request's key is not kept for a log");
    let allow = allowed(&o);
    assert_eq!(allow.rule, "keys");
    assert_eq!(allow.remove_headers.names().collect::<Vec<_>>(), ["x-api-key"]);
    assert!(allow.token.is_none());
    assert!(allow.context.is_empty(), "no context block configured");
    let entry = allow.key.as_ref().unwrap();
    assert!(matches!(&entry.lookup.answer, Answer::Valid(r) if r.key_id == "key_mepybc6vdnwbtgbcqqchcvqb6w"));
    assert_eq!(entry.until, NOW_S + 300);
    assert!(req.shared_read.is_empty(), "a delivered answer needs no shared read");

    req.reset();
    let o = run(&cfg, &mut st, &mut req, "/v1/other", NOW + 1_000, true, None);
    assert_eq!(o.key, Some(KeyUse::LocalHit));
    assert!(allowed(&o).key.is_some());
    assert!(req.shared_read.is_empty(), "a local hit reads no shared data");
    // another key is not served from that entry
    let mut other = Req::key(KEY2);
    let o = run(&cfg, &mut st, &mut other, "/v1/other", NOW + 1_000, true, None);
    assert_eq!(awaited(&o), key_hash(KEY2));
}

#[test]
fn an_answer_for_another_hash_is_ignored() {
    let cfg = config();
    let mut st = State::new(&cfg);
    let mut req = Req::key(KEY);
    let other = answer_for(KEY2, &valid_json());
    let o = run(&cfg, &mut st, &mut req, "/v1/items", NOW, true, Some(&other));
    assert_eq!(awaited(&o), KEY_HASH);
    assert_eq!(o.key, Some(KeyUse::Miss));
    assert!(st.keys.is_empty(), "another key's answer is not cached for this key");
    // a failure for another key is not this key's failure either
    let failed = failure_for(KEY2, LookupFailure::NoResponse);
    let o = run(&cfg, &mut st, &mut req, "/v1/items", NOW, true, Some(&failed));
    assert_eq!(awaited(&o), KEY_HASH);
    // an answer whose hash differs only in case is another hash
    let upper = KeyAnswer {
        hash: KEY_HASH.to_uppercase(),
        result: Ok(lookup(&valid_json())),
    };
    let o = run(&cfg, &mut st, &mut req, "/v1/items", NOW, true, Some(&upper));
    assert_eq!(awaited(&o), KEY_HASH);
}

#[test]
fn a_shared_hit_is_copied_to_the_local_cache() {
    let cfg = config();
    let mut st = State::new(&cfg);
    let mut req = Req::key(KEY);
    req.put_shared(&cfg, KEY, &lookup(&valid_json()), NOW_S + 100);
    let o = first(&cfg, &mut st, &mut req, "/v1/items");
    assert_eq!(o.key, Some(KeyUse::SharedHit));
    assert_eq!(allowed(&o).key.as_ref().unwrap().until, NOW_S + 100);
    assert_eq!(req.shared_read.len(), 1);

    req.reset();
    let o = run(&cfg, &mut st, &mut req, "/v1/items", NOW + 99_999, true, None);
    assert_eq!(o.key, Some(KeyUse::LocalHit));
    assert!(req.shared_read.is_empty());
    // the local copy ends with the shared entry
    let o = run(&cfg, &mut st, &mut req, "/v1/items", NOW + 100_000, true, None);
    assert_eq!(awaited(&o), KEY_HASH);
    assert_eq!(req.shared_read.len(), 1);
}

#[test]
fn a_configuration_with_other_answer_caps_does_not_trust_the_old_answers() {
    let old = config();
    let new = config_with(|d| d["api_keys"]["max_cache_ttl_s"] = json!(120));
    assert_ne!(old.generation, new.generation);
    let mut req = Req::key(KEY);
    req.put_shared(&old, KEY, &lookup(&valid_json()), NOW_S + 100);
    let mut st = State::new(&new);
    assert_eq!(awaited(&first(&new, &mut st, &mut req, "/v1/items")), KEY_HASH);
    // the same slot (names do not grow with reloads), but an answer cached
    // under other caps is not trusted
    assert_eq!(req.shared_read, vec![table(&old).entry_name(KEY_HASH, slots(&old))]);
    assert_eq!(table(&new).entry_name(KEY_HASH, slots(&new)), req.shared_read[0]);
    // nor is it a stale answer when the lookup fails
    let failed = failure_for(KEY, LookupFailure::NoResponse);
    let o = run(&new, &mut st, &mut req, "/stale/x", NOW + 200_000, false, Some(&failed));
    assert_eq!(denied(&o), Deny::KeyServiceUnavailable);
    // while the old configuration still finds it
    let mut st = State::new(&old);
    assert_eq!(first(&old, &mut st, &mut req, "/v1/items").key, Some(KeyUse::SharedHit));
}

#[test]
fn a_reload_with_the_same_auth_service_reuses_the_shared_answers() {
    let old = config();
    // another configuration document (a rule added), the same auth service and caps
    let new = config_with(|d| {
        let mut extra = d["rules"][0].clone();
        extra["name"] = json!("more");
        extra["match"] = json!({"prefix": "/more/"});
        d["rules"].as_array_mut().unwrap().insert(0, extra);
    });
    assert_ne!(old.generation, new.generation);
    let mut req = Req::key(KEY);
    req.put_shared(&old, KEY, &lookup(&valid_json()), NOW_S + 100);
    let mut st = State::new(&new);
    let o = first(&new, &mut st, &mut req, "/v1/items");
    assert_eq!(o.key, Some(KeyUse::SharedHit));
    assert_eq!(allowed(&o).key.as_ref().unwrap().until, NOW_S + 100);
    // another auth service cluster: other names, and nothing found
    let other = config_with(|d| d["auth_service"]["cluster"] = json!("auth2"));
    let mut st = State::new(&other);
    assert_eq!(awaited(&first(&other, &mut st, &mut req, "/v1/items")), KEY_HASH);
    assert_ne!(
        req.shared_read.last(),
        Some(&table(&old).entry_name(KEY_HASH, slots(&old)))
    );
}

#[test]
fn a_configured_key_format_and_sources_are_applied() {
    let cfg = config_with(|d| {
        d["api_keys"]["prefix"] = json!("live_");
        d["api_keys"]["hex_digits"] = json!(32);
        d["api_keys"]["sources"] = json!([{"header": "x-key"}]);
    });
    let live = format!("live_{}", &KEY[3..35]);
    let mut st = State::new(&cfg);
    let mut req = Req::new(&[("x-key", live.as_str())]);
    assert_eq!(awaited(&first(&cfg, &mut st, &mut req, "/v1/items")), key_hash(&live));
    // the default format is now malformed
    let mut req = Req::new(&[("x-key", KEY)]);
    assert_eq!(
        denied(&first(&cfg, &mut st, &mut req, "/v1/items")),
        Deny::ApiKey(KeyRefusal::Malformed)
    );
    assert!(req.shared_read.is_empty());
    // sources no longer configured are not read: a key found only there is refused (and
    // never goes upstream), and the default places are still credential places
    let auth = format!("ApiKey {live}");
    let q = format!("/v1/items?api_key={live}");
    let mut req = Req::new(&[("x-api-key", live.as_str()), ("authorization", auth.as_str())]);
    assert_eq!(denied(&first(&cfg, &mut st, &mut req, &q)), Deny::MissingApiKey);
    assert_eq!(req.headers_read, ["authorization", "x-api-key", "x-key"]);
    assert!(req.shared_read.is_empty());
    // ... and next to the key where the rule reads it, they are a second credential
    let other = format!("live_{}", &KEY2[3..35]);
    for (name, value) in [
        ("x-api-key", other.clone()),
        ("authorization", format!("ApiKey {other}")),
    ] {
        let mut req = Req::new(&[("x-key", live.as_str()), (name, value.as_str())]);
        assert_eq!(
            denied(&first(&cfg, &mut st, &mut req, "/v1/items")),
            Deny::AmbiguousCredential,
            "{name}"
        );
    }
    let mut req = Req::new(&[("x-key", live.as_str())]);
    let o = first(&cfg, &mut st, &mut req, &format!("/v1/items?api_key={other}"));
    assert_eq!(denied(&o), Deny::AmbiguousCredential, "a key-shaped query value");
}

#[test]
fn a_small_local_cache_never_mixes_keys_up() {
    let cfg = config_with(|d| d["api_keys"]["local_cache_entries"] = json!(1));
    let mut st = State::new(&cfg);
    let valid = answer_for(KEY, &valid_json());
    let unknown = answer_for(KEY2, &json!({"status": "unknown", "cache_ttl_s": 30}));
    let mut k1 = Req::key(KEY);
    let mut k2 = Req::key(KEY2);
    assert!(matches!(
        with_answer(&cfg, &mut st, &mut k1, "/v1/", &valid).verdict,
        Verdict::Allow(_)
    ));
    assert_eq!(
        denied(&with_answer(&cfg, &mut st, &mut k2, "/v1/", &unknown)),
        Deny::ApiKey(KeyRefusal::Unknown)
    );
    assert!(st.keys.len() <= 1);
    for _ in 0..3 {
        let o1 = run(&cfg, &mut st, &mut k1, "/v1/", NOW + 1_000, true, None);
        assert!(
            matches!(o1.verdict, Verdict::Allow(_) | Verdict::AwaitLookup { .. }),
            "{:?}",
            o1.verdict
        );
        let o2 = run(&cfg, &mut st, &mut k2, "/v1/", NOW + 1_000, true, None);
        assert!(
            matches!(
                o2.verdict,
                Verdict::Deny(Deny::ApiKey(KeyRefusal::Unknown)) | Verdict::AwaitLookup { .. }
            ),
            "{:?}",
            o2.verdict
        );
    }
}

#[test]
fn a_shared_slot_holding_another_key_is_not_used() {
    let cfg = config_with(|d| d["api_keys"]["shared_cache_slots"] = json!(1));
    let mut st = State::new(&cfg);
    let mut req = Req::key(KEY);
    // KEY2's valid answer sits in the only slot
    let bytes = table(&cfg)
        .encode_entry(&key_hash(KEY2), &lookup(&valid_json()), NOW_S + 100)
        .unwrap();
    req.put_shared_bytes(&cfg, KEY2, bytes);
    assert_eq!(req.shared.len(), 1);
    let o = first(&cfg, &mut st, &mut req, "/v1/items");
    assert_eq!(awaited(&o), KEY_HASH);
    assert_eq!(req.shared_read, vec![table(&cfg).entry_name(KEY_HASH, 1)]);
    assert!(req.shared_read[0].starts_with("edge-auth.keys.") && req.shared_read[0].ends_with(".key.0"));
    // nor on failure, even on a route with a stale window
    let o = unanswered(&cfg, &mut st, &mut req, "/stale/x");
    assert_eq!(denied(&o), Deny::KeyServiceUnavailable);
    // while KEY2 itself hits it
    let mut req2 = Req::key(KEY2);
    req2.shared = req.shared.clone();
    assert_eq!(
        first(&cfg, &mut st, &mut req2, "/v1/items").key,
        Some(KeyUse::SharedHit)
    );
}

#[test]
fn corrupt_shared_entries_are_ignored() {
    let cfg = config();
    let good = table(&cfg)
        .encode_entry(KEY_HASH, &lookup(&valid_json()), NOW_S + 100)
        .unwrap();
    // `<answers identity> <hash>\n<body>`
    let (id, rest) = good.split_at(64);
    let id = std::str::from_utf8(id).unwrap().to_owned();
    let body = &rest[1 + KEY_HASH.len() + 1..];
    let hash_line = |h: &str| format!("{id} {h}\n").into_bytes();
    let bad: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff; 200],
        KEY_HASH.as_bytes().to_vec(),
        hash_line(KEY_HASH),
        [hash_line(KEY_HASH), b"not json".to_vec()].concat(),
        good[..good.len() - 1].to_vec(),
        // the format before answers carried an identity
        [KEY_HASH.as_bytes(), b"\n", body].concat(),
        // another identity, or a damaged one
        [
            format!(
                "{}{} {KEY_HASH}\n",
                &id[..63],
                if id.ends_with('0') { '1' } else { '0' }
            )
            .as_bytes(),
            body,
        ]
        .concat(),
        [format!("{} {KEY_HASH}\n", "0".repeat(64)).as_bytes(), body].concat(),
        [id.to_uppercase().as_bytes(), b" ", KEY_HASH.as_bytes(), b"\n", body].concat(),
        // the hash in upper case, or without the separator
        [hash_line(&KEY_HASH.to_uppercase()).as_slice(), body].concat(),
        [id.as_bytes(), b" ", KEY_HASH.as_bytes(), b" ", body].concat(),
        [id.as_bytes(), KEY_HASH.as_bytes(), b"\n", body].concat(),
        // the hash of the raw key's text, not the key hash
        [hash_line(KEY).as_slice(), body].concat(),
        // another version
        [
            hash_line(KEY_HASH),
            json!({"v": 2, "until": NOW_S + 100, "lookup": valid_json()})
                .to_string()
                .into_bytes(),
        ]
        .concat(),
        // a valid answer cached past its key's own expiry
        [
            hash_line(KEY_HASH),
            json!({"v": 1, "until": NOW_S + 100, "lookup": valid_with(|v| v["expires_at"] = json!(NOW_S + 50))})
                .to_string()
                .into_bytes(),
        ]
        .concat(),
        // a record the edge would refuse from the service
        [
            hash_line(KEY_HASH),
            json!({"v": 1, "until": NOW_S + 100, "lookup": valid_with(|v| v["allowed_origins"] = json!(["*"]))})
                .to_string()
                .into_bytes(),
        ]
        .concat(),
        // oversized
        [&good[..], &vec![b' '; 5000][..]].concat(),
    ];
    // what the list is made of is read as an answer when intact
    let mut st = State::new(&cfg);
    let mut req = Req::key(KEY);
    req.put_shared_bytes(&cfg, KEY, [hash_line(KEY_HASH).as_slice(), body].concat());
    assert_eq!(first(&cfg, &mut st, &mut req, "/v1/items").key, Some(KeyUse::SharedHit));
    for bytes in bad {
        let mut st = State::new(&cfg);
        let mut req = Req::key(KEY);
        req.put_shared_bytes(&cfg, KEY, bytes.clone());
        let o = first(&cfg, &mut st, &mut req, "/v1/items");
        assert_eq!(
            awaited(&o),
            KEY_HASH,
            "{:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        );
        assert!(st.keys.is_empty());
    }
}

#[test]
fn an_expired_shared_entry_asks_again() {
    let cfg = config();
    for until in [NOW_S, NOW_S - 1, 0] {
        let mut st = State::new(&cfg);
        let mut req = Req::key(KEY);
        req.put_shared(&cfg, KEY, &lookup(&valid_json()), until);
        let o = first(&cfg, &mut st, &mut req, "/v1/items");
        assert_eq!(awaited(&o), KEY_HASH, "until {until}");
        assert_eq!(o.key, Some(KeyUse::Miss));
    }
    // a negative answer expires the same way
    let mut st = State::new(&cfg);
    let mut req = Req::key(KEY);
    req.put_shared(
        &cfg,
        KEY,
        &lookup(&json!({"status": "revoked", "key_id": "key_a", "cache_ttl_s": 30})),
        NOW_S,
    );
    assert_eq!(awaited(&first(&cfg, &mut st, &mut req, "/v1/items")), KEY_HASH);
}

#[test]
fn negative_answers_are_refused() {
    let cfg = config();
    let cases = [
        (json!({"status": "unknown", "cache_ttl_s": 30}), KeyRefusal::Unknown),
        (
            json!({"status": "revoked", "key_id": "key_mepybc6vdnwbtgbcqqchcvqb6w", "cache_ttl_s": 30}),
            KeyRefusal::Revoked,
        ),
        (
            json!({"status": "expired", "key_id": "key_mepybc6vdnwbtgbcqqchcvqb6w", "cache_ttl_s": 30}),
            KeyRefusal::Expired,
        ),
        // valid by the service's clock, expired by the edge's
        (valid_with(|v| v["expires_at"] = json!(NOW_S)), KeyRefusal::Expired),
        (valid_with(|v| v["expires_at"] = json!(1)), KeyRefusal::Expired),
    ];
    for (body, why) in cases {
        let mut st = State::new(&cfg);
        let mut req = Req::key(KEY);
        let o = with_answer(&cfg, &mut st, &mut req, "/v1/items", &answer_for(KEY, &body));
        assert_eq!(denied(&o), Deny::ApiKey(why), "{body}");
        assert_eq!(o.key, Some(KeyUse::Answer));
        let r = reply(denied(&o), &cfg.realm);
        assert_eq!(r.status, 401);
        let challenge = header(&r.headers, "www-authenticate").unwrap();
        assert!(
            challenge.starts_with("ApiKey realm=\"edge-auth\", error=\"invalid_token\""),
            "{challenge}"
        );
        // the refusal is cached too: the same key is refused without another lookup
        req.reset();
        let o = run(&cfg, &mut st, &mut req, "/v1/items", NOW + 1_000, true, None);
        assert_eq!(denied(&o), Deny::ApiKey(why), "{body}");
        assert_eq!(o.key, Some(KeyUse::LocalHit));
        assert!(req.shared_read.is_empty());
    }
}

#[test]
fn negative_answers_are_cached_for_negative_cache_ttl_s_only() {
    let cfg = config();
    let mut st = State::new(&cfg);
    let mut req = Req::key(KEY);
    // the service allows 300 s; the filter caps negative answers at 30 s
    let a = answer_for(KEY, &json!({"status": "unknown", "cache_ttl_s": 300}));
    let o = with_answer(&cfg, &mut st, &mut req, "/v1/items", &a);
    assert_eq!(denied(&o), Deny::ApiKey(KeyRefusal::Unknown));
    let o = run(&cfg, &mut st, &mut req, "/v1/items", NOW + 29_999, true, None);
    assert_eq!(o.key, Some(KeyUse::LocalHit));
    assert_eq!(denied(&o), Deny::ApiKey(KeyRefusal::Unknown));
    let o = run(&cfg, &mut st, &mut req, "/v1/items", NOW + 30_000, true, None);
    assert_eq!(awaited(&o), KEY_HASH);

    // negative_cache_ttl_s: 0 caches nothing
    let cfg = config_with(|d| d["api_keys"]["negative_cache_ttl_s"] = json!(0));
    let mut st = State::new(&cfg);
    let o = with_answer(&cfg, &mut st, &mut req, "/v1/items", &a);
    assert_eq!(denied(&o), Deny::ApiKey(KeyRefusal::Unknown));
    assert!(st.keys.is_empty());
    let o = run(&cfg, &mut st, &mut req, "/v1/items", NOW, true, None);
    assert_eq!(awaited(&o), KEY_HASH);

    // a service TTL below the cap is honoured
    let cfg = config();
    let mut st = State::new(&cfg);
    let a = answer_for(KEY, &json!({"status": "revoked", "key_id": "key_a", "cache_ttl_s": 5}));
    with_answer(&cfg, &mut st, &mut req, "/v1/items", &a);
    let o = run(&cfg, &mut st, &mut req, "/v1/items", NOW + 5_000, true, None);
    assert_eq!(awaited(&o), KEY_HASH);
}

#[test]
fn valid_answers_are_cached_no_longer_than_max_cache_ttl_s() {
    let cfg = config_with(|d| d["api_keys"]["max_cache_ttl_s"] = json!(60));
    let mut st = State::new(&cfg);
    let mut req = Req::key(KEY);
    let o = with_answer(&cfg, &mut st, &mut req, "/v1/items", &answer_for(KEY, &valid_json()));
    assert_eq!(allowed(&o).key.as_ref().unwrap().until, NOW_S + 60);
    let o = run(&cfg, &mut st, &mut req, "/v1/items", NOW + 59_999, true, None);
    assert_eq!(o.key, Some(KeyUse::LocalHit));
    let o = run(&cfg, &mut st, &mut req, "/v1/items", NOW + 60_000, true, None);
    assert_eq!(awaited(&o), KEY_HASH);
    // a TTL of 0 from the service: used for this request, not cached
    let mut st = State::new(&cfg);
    let a = answer_for(KEY, &valid_with(|v| v["cache_ttl_s"] = json!(0)));
    assert!(allowed(&with_answer(&cfg, &mut st, &mut req, "/v1/items", &a))
        .key
        .is_some());
    assert!(st.keys.is_empty());
}

#[test]
fn valid_answers_are_never_used_past_the_keys_expiry() {
    let cfg = config();
    let mut st = State::new(&cfg);
    let mut req = Req::key(KEY);
    let body = valid_with(|v| v["expires_at"] = json!(NOW_S + 10));
    let o = with_answer(&cfg, &mut st, &mut req, "/v1/items", &answer_for(KEY, &body));
    assert_eq!(allowed(&o).key.as_ref().unwrap().until, NOW_S + 10);
    assert!(matches!(
        run(&cfg, &mut st, &mut req, "/v1/items", NOW + 9_999, true, None).verdict,
        Verdict::Allow(_)
    ));
    let o = run(&cfg, &mut st, &mut req, "/v1/items", NOW + 10_000, true, None);
    assert_eq!(awaited(&o), KEY_HASH);

    // Even a lookup whose TTL overshoots the key's expiry (not built by
    // parse_lookup) is refused from the expiry on.
    let mut st = State::new(&cfg);
    let mut l = lookup(&body);
    l.cache_ttl_s = 300;
    let a = KeyAnswer {
        hash: KEY_HASH.into(),
        result: Ok(l),
    };
    assert!(matches!(
        with_answer(&cfg, &mut st, &mut req, "/v1/items", &a).verdict,
        Verdict::Allow(_)
    ));
    let o = run(&cfg, &mut st, &mut req, "/v1/items", NOW + 10_000, true, None);
    assert_eq!(denied(&o), Deny::ApiKey(KeyRefusal::Expired));
}

// =============================================================================
// Failures and stale-if-error
// =============================================================================

const FAILURES: [LookupFailure; 7] = [
    LookupFailure::NoResponse,
    LookupFailure::Status(500),
    LookupFailure::Status(401),
    LookupFailure::TooLarge,
    LookupFailure::Malformed,
    LookupFailure::Unbound,
    LookupFailure::CircuitOpen,
];

#[test]
fn a_failure_without_a_stale_window_is_503() {
    let cfg = config();
    for f in FAILURES {
        let mut st = State::new(&cfg);
        let mut req = Req::key(KEY);
        // a valid answer that expired a second ago: no window on this route
        req.put_shared(&cfg, KEY, &lookup(&valid_json()), NOW_S - 1);
        let o = with_answer(&cfg, &mut st, &mut req, "/v1/items", &failure_for(KEY, f));
        assert_eq!(denied(&o), Deny::KeyServiceUnavailable, "{f:?}");
        assert!(st.keys.is_empty(), "a failure is not cached");
    }
    // a delivered failure is final even when the request could still wait: no second lookup
    let mut st = State::new(&cfg);
    let mut req = Req::key(KEY);
    let fail = failure_for(KEY, LookupFailure::NoResponse);
    let o = run(&cfg, &mut st, &mut req, "/v1/items", NOW, true, Some(&fail));
    assert_eq!(denied(&o), Deny::KeyServiceUnavailable);
    // no lookup possible (may_await false) and nothing cached
    let mut st = State::new(&cfg);
    let mut req = Req::key(KEY);
    let o = run(&cfg, &mut st, &mut req, "/v1/items", NOW, false, None);
    assert_eq!(denied(&o), Deny::KeyServiceUnavailable);
    let r = reply(Deny::KeyServiceUnavailable, &cfg.realm);
    assert_eq!(r.status, 503);
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(header(&r.headers, "www-authenticate"), None);

    // A fresh cached answer keeps working during the outage.
    let mut st = State::new(&cfg);
    with_answer(&cfg, &mut st, &mut req, "/v1/items", &answer_for(KEY, &valid_json()));
    let o = run(
        &cfg,
        &mut st,
        &mut req,
        "/v1/items",
        NOW + 1_000,
        false,
        Some(&failure_for(KEY, LookupFailure::NoResponse)),
    );
    assert_eq!(o.key, Some(KeyUse::LocalHit));
    assert!(matches!(o.verdict, Verdict::Allow(_)));
}

#[test]
fn a_failure_serves_a_stale_valid_answer_within_the_window_only() {
    let cfg = config();
    // expired 30 s ago; the /stale/ route tolerates 60 s
    let until = NOW_S - 30;
    for f in FAILURES.into_iter().chain([LookupFailure::Busy]) {
        let mut st = State::new(&cfg);
        let mut req = Req::key(KEY);
        req.put_shared(&cfg, KEY, &lookup(&valid_json()), until);
        let o = with_answer(&cfg, &mut st, &mut req, "/stale/x", &failure_for(KEY, f));
        assert_eq!(o.key, Some(KeyUse::Stale), "{f:?}");
        let a = allowed(&o);
        assert_eq!(a.rule, "stale");
        assert_eq!(a.remove_headers.names().collect::<Vec<_>>(), ["x-api-key"]);
        // the same answer on a route without a window: 503
        let o = with_answer(&cfg, &mut st, &mut req, "/v1/x", &failure_for(KEY, f));
        assert_eq!(denied(&o), Deny::KeyServiceUnavailable, "{f:?}");
    }
    let mut st = State::new(&cfg);
    let mut req = Req::key(KEY);
    req.put_shared(&cfg, KEY, &lookup(&valid_json()), until);
    let fail = failure_for(KEY, LookupFailure::NoResponse);
    // the last millisecond of the window
    let o = run(&cfg, &mut st, &mut req, "/stale/x", NOW + 29_999, false, Some(&fail));
    assert_eq!(o.key, Some(KeyUse::Stale));
    // the window is over
    let o = run(&cfg, &mut st, &mut req, "/stale/x", NOW + 30_000, false, Some(&fail));
    assert_eq!(denied(&o), Deny::KeyServiceUnavailable);
    // without a delivered failure but unable to wait (circuit open at the shell): same rules
    let o = run(&cfg, &mut st, &mut req, "/stale/x", NOW, false, None);
    assert_eq!(o.key, Some(KeyUse::Stale));
    // a stale answer is not promoted to the local cache
    assert!(st.keys.is_empty());
    // and while the lookup may still be made, a stale answer is not used: ask first
    let o = run(&cfg, &mut st, &mut req, "/stale/x", NOW, true, None);
    assert_eq!(awaited(&o), KEY_HASH);
}

#[test]
fn stale_negative_answers_never_admit() {
    let cfg = config();
    for body in [
        json!({"status": "unknown", "cache_ttl_s": 30}),
        json!({"status": "revoked", "key_id": "key_a", "cache_ttl_s": 30}),
        json!({"status": "expired", "key_id": "key_a", "cache_ttl_s": 30}),
    ] {
        let mut st = State::new(&cfg);
        let mut req = Req::key(KEY);
        req.put_shared(&cfg, KEY, &lookup(&body), NOW_S - 1);
        let o = unanswered(&cfg, &mut st, &mut req, "/stale/x");
        assert_eq!(denied(&o), Deny::KeyServiceUnavailable, "{body}");
    }
}

#[test]
fn a_stale_valid_answer_past_the_keys_expiry_is_expired() {
    let cfg = config();
    let mut st = State::new(&cfg);
    let mut req = Req::key(KEY);
    // cached until 5 s ago, key expired 2 s ago
    let body = valid_with(|v| v["expires_at"] = json!(NOW_S - 2));
    let l = lookup_at(&body, NOW_S - 100);
    assert!(matches!(l.answer, Answer::Valid(_)));
    req.put_shared(&cfg, KEY, &l, NOW_S - 5);
    let o = unanswered(&cfg, &mut st, &mut req, "/stale/x");
    assert_eq!(denied(&o), Deny::ApiKey(KeyRefusal::Expired));
}

// =============================================================================
// The key's record: IP allowlist, origins, scopes
// =============================================================================

fn ip_listed() -> Value {
    valid_with(|v| v["ip_allowlist"] = json!(["203.0.113.0/24", "2001:db8::/32"]))
}

#[test]
fn the_keys_ip_allowlist_applies_to_the_peer() {
    let cfg = config();
    let a = answer_for(KEY, &ip_listed());
    for (peer, ok) in [
        (Some("203.0.113.5:40000"), true),
        (Some("203.0.113.255"), true),
        (Some("[2001:db8::7]:443"), true),
        (Some("198.51.100.1:40000"), false),
        (Some("[2001:db9::1]:443"), false),
        (Some("not-an-address"), false),
        (Some(""), false),
        (None, false),
        // Envoy took the address from X-Forwarded-For (issue 11, item 3): never the peer
        (Some("203.0.113.5:0"), false),
        (Some("[2001:db8::7]:0"), false),
    ] {
        let mut st = State::new(&cfg);
        let mut req = Req::key(KEY).peer(peer);
        let o = with_answer(&cfg, &mut st, &mut req, "/v1/items", &a);
        if ok {
            assert!(matches!(o.verdict, Verdict::Allow(_)), "{peer:?}: {:?}", o.verdict);
        } else {
            assert_eq!(denied(&o), Deny::IpNotAllowed, "{peer:?}");
            assert_eq!(reply(denied(&o), &cfg.realm).status, 403);
        }
        let from_header = peer.is_some_and(|p| p.ends_with(":0"));
        assert_eq!(
            o.notice.is_some(),
            from_header,
            "{peer:?}: a notice only for the HCM's doing"
        );
        // and the same from the cache
        let o = run(&cfg, &mut st, &mut req, "/v1/items", NOW + 1_000, true, None);
        assert_eq!(o.key, Some(KeyUse::LocalHit));
        assert_eq!(matches!(o.verdict, Verdict::Allow(_)), ok, "{peer:?} cached");
    }
    // an empty list allows any address
    let mut st = State::new(&cfg);
    let mut req = Req::key(KEY).peer(Some("198.51.100.1:1"));
    let o = with_answer(&cfg, &mut st, &mut req, "/v1/items", &answer_for(KEY, &valid_json()));
    assert!(matches!(o.verdict, Verdict::Allow(_)));
}

#[test]
fn ipv4_mapped_ipv6_peers_count_as_ipv4() {
    let cfg = config();
    let a = answer_for(KEY, &ip_listed());
    for (peer, ok) in [
        ("[::ffff:203.0.113.5]:443", true),
        ("[::ffff:cb00:7109]:443", true),
        ("[::ffff:198.51.100.1]:443", false),
    ] {
        let mut st = State::new(&cfg);
        let mut req = Req::key(KEY).peer(Some(peer));
        let o = with_answer(&cfg, &mut st, &mut req, "/v1/items", &a);
        assert_eq!(matches!(o.verdict, Verdict::Allow(_)), ok, "{peer}: {:?}", o.verdict);
    }
    // a mapped entry in the key's list matches a plain IPv4 peer
    let body = valid_with(|v| v["ip_allowlist"] = json!(["::ffff:203.0.113.0/120"]));
    let mut st = State::new(&cfg);
    let mut req = Req::key(KEY).peer(Some("203.0.113.9:1"));
    let o = with_answer(&cfg, &mut st, &mut req, "/v1/items", &answer_for(KEY, &body));
    assert!(matches!(o.verdict, Verdict::Allow(_)), "{:?}", o.verdict);
}

#[test]
fn x_forwarded_for_is_ignored_without_trusted_hops() {
    let cfg = config();
    let a = answer_for(KEY, &ip_listed());
    // a client outside the list claims an address inside it
    let mut st = State::new(&cfg);
    let mut req = Req::new(&[("x-api-key", KEY), ("x-forwarded-for", "203.0.113.5")]).peer(Some("198.51.100.1:1"));
    let o = with_answer(&cfg, &mut st, &mut req, "/v1/items", &a);
    assert_eq!(denied(&o), Deny::IpNotAllowed);
    assert!(!req.xff_read, "X-Forwarded-For must not be read with trusted_hops 0");
    // and one inside the list is not pushed out by a claim from outside
    let mut req = Req::new(&[("x-api-key", KEY), ("x-forwarded-for", "198.51.100.1")]).peer(Some("203.0.113.5:1"));
    let o = with_answer(&cfg, &mut st, &mut req, "/v1/items", &a);
    assert!(matches!(o.verdict, Verdict::Allow(_)));
}

#[test]
fn x_forwarded_for_is_honoured_with_trusted_hops() {
    let a = answer_for(KEY, &ip_listed());
    let cfg = config_with(|d| d["api_keys"]["trusted_hops"] = json!(1));
    for (xff, ok) in [
        (Some("203.0.113.5"), true),
        (Some("198.51.100.7, 203.0.113.5"), true),
        // the client's own claim further left is not looked at
        (Some("203.0.113.5, 198.51.100.7"), false),
        (Some("garbage"), false),
        (None, false),
    ] {
        let mut st = State::new(&cfg);
        let mut headers = vec![("x-api-key", KEY)];
        if let Some(x) = xff {
            headers.push(("x-forwarded-for", x));
        }
        let mut req = Req::new(&headers).peer(Some("10.0.0.1:1"));
        let o = with_answer(&cfg, &mut st, &mut req, "/v1/items", &a);
        assert_eq!(matches!(o.verdict, Verdict::Allow(_)), ok, "{xff:?}: {:?}", o.verdict);
        if !ok {
            assert_eq!(denied(&o), Deny::IpNotAllowed);
        }
    }
    // a rule's own ip policy decides how the client address is found
    let cfg = config();
    let mut st = State::new(&cfg);
    let mut req = Req::new(&[("x-api-key", KEY), ("x-forwarded-for", "203.0.113.5")]).peer(Some("10.0.0.1:1"));
    let o = with_answer(&cfg, &mut st, &mut req, "/hops/x", &a);
    assert!(matches!(o.verdict, Verdict::Allow(_)), "{:?}", o.verdict);
    // ... also when the client spoofs the peer's own network
    let mut req =
        Req::new(&[("x-api-key", KEY), ("x-forwarded-for", "203.0.113.5, 10.0.0.2")]).peer(Some("203.0.113.5:1"));
    let o = with_answer(&cfg, &mut st, &mut req, "/hops/x", &a);
    assert_eq!(denied(&o), Deny::IpNotAllowed);
}

#[test]
fn the_keys_origins_decide_on_an_origin_rule() {
    let cfg = config();
    let a = answer_for(KEY, &valid_json());
    for (origin, ok) in [
        (Some("https://app.acme.example"), true),
        (Some("HTTPS://APP.ACME.EXAMPLE:443"), true),
        (Some("https://a.tenant.example"), true),
        (Some("https://tenant.example"), false),
        (Some("http://app.acme.example"), false),
        (Some("https://app.acme.example:8443"), false),
        (Some("https://evil.example"), false),
        // in the rule's static list but not in the key's
        (Some("https://static.example"), false),
        (Some("null"), false),
        (Some("not an origin"), false),
        // a server-to-server call without Origin
        (None, true),
    ] {
        let mut st = State::new(&cfg);
        let mut headers = vec![("x-api-key", KEY)];
        if let Some(o) = origin {
            headers.push(("origin", o));
        }
        let mut req = Req::new(&headers);
        let o = with_answer(&cfg, &mut st, &mut req, "/web/app", &a);
        if ok {
            assert!(matches!(o.verdict, Verdict::Allow(_)), "{origin:?}: {:?}", o.verdict);
        } else {
            assert_eq!(denied(&o), Deny::OriginNotAllowed, "{origin:?}");
            assert!(o.cors.is_none(), "{origin:?}");
        }
    }
    // a key with no allowed origins is refused for every browser origin, even the static one
    let none = answer_for(KEY, &valid_with(|v| v["allowed_origins"] = json!([])));
    let mut st = State::new(&cfg);
    let mut req = Req::new(&[("x-api-key", KEY), ("origin", "https://static.example")]);
    assert_eq!(
        denied(&with_answer(&cfg, &mut st, &mut req, "/web/app", &none)),
        Deny::OriginNotAllowed
    );
}

/// docs/auth-service-api.md 4.5: "`Origin: null` and malformed origins match
/// no entry" of a key's `allowed_origins`; the rule's `null: allow` should not
/// bypass the key's own list.
#[test]

fn origin_null_is_checked_against_the_keys_origins_even_when_the_rule_allows_null() {
    let cfg = config();
    for origins in [json!([]), json!(["https://app.acme.example"])] {
        let a = answer_for(KEY, &valid_with(|v| v["allowed_origins"] = origins.clone()));
        let mut st = State::new(&cfg);
        let mut req = Req::new(&[("x-api-key", KEY), ("origin", "null")]);
        let o = with_answer(&cfg, &mut st, &mut req, "/webnull/app", &a);
        assert_eq!(denied(&o), Deny::OriginNotAllowed, "key origins {origins}");
    }
}

#[test]
fn origin_on_a_null_allowing_rule_still_needs_the_keys_list() {
    // The part of the null-allowing rule that works: real origins are checked.
    let cfg = config();
    let a = answer_for(KEY, &valid_with(|v| v["allowed_origins"] = json!([])));
    let mut st = State::new(&cfg);
    let mut req = Req::new(&[("x-api-key", KEY), ("origin", "https://evil.example")]);
    let o = with_answer(&cfg, &mut st, &mut req, "/webnull/app", &a);
    assert_eq!(denied(&o), Deny::OriginNotAllowed);
    let mut req = Req::key(KEY);
    let o = with_answer(&cfg, &mut st, &mut req, "/webnull/app", &a);
    assert!(matches!(o.verdict, Verdict::Allow(_)));
}

#[test]
fn the_keys_scopes_meet_the_rules_requirement() {
    let cfg = config();
    let cases: [(Value, &str, bool); 8] = [
        (json!(["orders:read"]), "/read/x", true),
        (json!(["orders:admin"]), "/read/x", true),
        (json!([]), "/read/x", false),
        (json!(["orders:readx", "Orders:read"]), "/read/x", false),
        (json!(["orders:read"]), "/write/x", false),
        (json!(["orders:write"]), "/write/x", false),
        (json!(["orders:write", "orders:read"]), "/write/x", true),
        (json!([]), "/v1/x", true),
    ];
    for (scopes, path, ok) in cases {
        let a = answer_for(KEY, &valid_with(|v| v["scopes"] = scopes.clone()));
        let mut st = State::new(&cfg);
        let mut req = Req::key(KEY);
        let o = with_answer(&cfg, &mut st, &mut req, path, &a);
        if ok {
            assert!(matches!(o.verdict, Verdict::Allow(_)), "{scopes} {path}");
        } else {
            let d = denied(&o);
            assert!(matches!(d, Deny::InsufficientScope(_)), "{scopes} {path}: {d:?}");
            assert_eq!(reply(d, &cfg.realm).status, 403);
        }
    }
}

// =============================================================================
// Identity headers
// =============================================================================

#[test]
fn context_headers_describe_the_key_and_clients_cannot_set_them() {
    let cfg = config_with(|d| d["context"] = json!({"signing_key_env": "CTX_KEY"}));
    let names = ContextHeaders::default();
    // every context header is one the filter writes (so the shell strips client copies)
    for n in names.names() {
        assert!(cfg.written_headers.iter().any(|w| w == n), "{n}");
    }
    let mut st = State::new(&cfg);
    let mut req = Req::new(&[
        ("x-edge-auth-method", "jwt"),
        ("x-edge-auth-subject", "root"),
        ("x-edge-auth-tenant", "evil"),
        ("x-edge-auth-scopes", "orders:admin"),
        ("x-edge-auth-key-id", "key_forged"),
        ("x-edge-auth-token-id", "t"),
        ("x-edge-auth-signature", "v1=00"),
    ]);
    let path = format!("/v1/items?x=1&api_key={KEY}");
    let body = valid_with(|v| v["scopes"] = json!(["orders:read", "orders:write"]));
    let o = with_answer(&cfg, &mut st, &mut req, &path, &answer_for(KEY, &body));
    let a = allowed(&o);
    let m = context_map(a);
    assert_eq!(m["x-edge-auth-method"], "api_key");
    assert_eq!(m["x-edge-auth-subject"], "svc-billing");
    assert_eq!(m["x-edge-auth-tenant"], "acme");
    assert_eq!(m["x-edge-auth-scopes"], "orders:read orders:write");
    assert_eq!(m["x-edge-auth-key-id"], "key_mepybc6vdnwbtgbcqqchcvqb6w");
    assert_eq!(m.get("x-edge-auth-token-id"), None);
    assert_eq!(m["x-edge-auth-timestamp"], NOW_S.to_string());
    assert!(!m.values().any(|v| v.contains(&KEY[3..])));
    assert!(
        req.headers_read.iter().all(|h| !h.starts_with("x-edge-auth-")),
        "{:?}",
        req.headers_read
    );
    // the signature covers the path as it goes upstream (without the key)
    let upstream = a.path.clone().unwrap();
    assert_eq!(upstream, "/v1/items?x=1");
    let get = |n: &str| m.get(n).cloned();
    assert_eq!(
        context::verify(&names, get, CONTEXT_KEY.as_bytes(), NOW_S, 60, "GET", &upstream),
        Ok(())
    );
    assert!(context::verify(&names, get, CONTEXT_KEY.as_bytes(), NOW_S, 60, "GET", &path).is_err());

    // the same headers from the cache
    let o = run(&cfg, &mut st, &mut req, &path, NOW + 1_000, true, None);
    assert_eq!(o.key, Some(KeyUse::LocalHit));
    let m2 = context_map(allowed(&o));
    assert_eq!(m2["x-edge-auth-subject"], "svc-billing");
    assert_eq!(m2["x-edge-auth-timestamp"], (NOW_S + 1).to_string());

    // A refused key gets no identity headers (there is no Allow to carry them).
    let mut st = State::new(&cfg);
    let unknown = json!({"status": "unknown", "cache_ttl_s": 30});
    let o = with_answer(&cfg, &mut st, &mut req, &path, &answer_for(KEY, &unknown));
    assert_eq!(denied(&o), Deny::ApiKey(KeyRefusal::Unknown));
}

#[test]
fn public_routes_and_unmatched_paths_do_not_read_api_keys() {
    let cfg = config();
    let mut st = State::new(&cfg);
    let mut req = Req::key(KEY);
    let o = first(&cfg, &mut st, &mut req, "/health");
    let a = allowed(&o);
    assert!(a.key.is_none());
    assert!(a.remove_headers.names().next().is_none());
    assert!(req.headers_read.is_empty());
    assert!(req.shared_read.is_empty());
    assert_eq!(o.key, None);
    // a path no rule matches
    let o = first(&cfg, &mut st, &mut req, "/nowhere");
    assert_eq!(denied(&o), Deny::NoRule);
    assert!(req.shared_read.is_empty());
}

/// The key never goes upstream (`Allow::remove_headers`: "the key never
/// goes upstream"; docs/auth-service-api.md 1.2). A request that carries the
/// key in a header and again in the configured `api_key` query parameter is
/// allowed on the header's copy, and the query copy is removed from `:path`.
#[test]

fn a_key_copy_in_the_query_is_removed_even_when_a_header_carries_the_key() {
    let cfg = config();
    let mut st = State::new(&cfg);
    let mut req = Req::key(KEY);
    let path = format!("/v1/items?a=1&api_key={KEY}");
    let o = with_answer(&cfg, &mut st, &mut req, &path, &answer_for(KEY, &valid_json()));
    let a = allowed(&o);
    let upstream = a.path.as_deref().unwrap_or(&path);
    assert!(!upstream.contains(&KEY[3..]), "the key goes upstream in {upstream}");
}

/// Issue 11, item 4: two `x-api-key` headers were accepted (the first used), and a
/// key-shaped value in a query parameter that is no source went upstream unchecked. On an
/// API-key rule, every credential place counts: a second copy of a place, or a second
/// credential anywhere (a JWT in `Authorization: Bearer`, a key in any query parameter),
/// is `400 ambiguous_credential`, decided before any cache or lookup.
#[test]
fn a_second_key_or_copy_is_ambiguous_on_api_key_rules() {
    let cfg = config();
    let jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl";
    let cases: Vec<(String, Vec<(&str, String)>)> = vec![
        (
            "/v1/x".into(),
            vec![("x-api-key", KEY.into()), ("x-api-key", KEY2.into())],
        ),
        (
            "/v1/x".into(),
            vec![("x-api-key", KEY.into()), ("x-api-key", KEY.into())],
        ),
        (
            "/v1/x".into(),
            vec![("x-api-key", KEY.into()), ("X-API-KEY", "".into())],
        ),
        ("/v1/x".into(), vec![("x-api-key", format!("{KEY}, {KEY2}"))]),
        (
            "/v1/x".into(),
            vec![
                ("authorization", format!("ApiKey {KEY}")),
                ("authorization", format!("ApiKey {KEY}")),
            ],
        ),
        (
            "/v1/x".into(),
            vec![("x-api-key", KEY.into()), ("authorization", format!("ApiKey {KEY2}"))],
        ),
        (
            "/v1/x".into(),
            vec![("x-api-key", KEY.into()), ("authorization", format!("Bearer {jwt}"))],
        ),
        (
            "/v1/x".into(),
            vec![
                ("x-api-key", KEY.into()),
                ("authorization", "Basic dXNlcjpwYXNz".into()),
            ],
        ),
        (format!("/v1/x?api_key={KEY2}"), vec![("x-api-key", KEY.into())]),
        (format!("/v1/x?API_KEY={KEY}&api_key={KEY}"), vec![]),
        (format!("/v1/x?key={KEY2}"), vec![("x-api-key", KEY.into())]),
        (format!("/v1/x?k=%73k_{}", &KEY2[3..]), vec![("x-api-key", KEY.into())]),
        (format!("/v1/x?token={jwt}"), vec![("x-api-key", KEY.into())]),
    ];
    for (path, headers) in cases {
        let mut st = State::new(&cfg);
        let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let mut req = Req::new(&h);
        let o = first(&cfg, &mut st, &mut req, &path);
        assert_eq!(denied(&o), Deny::AmbiguousCredential, "{path} {headers:?}");
        assert!(req.shared_read.is_empty(), "no cache read: {path}");
        assert_eq!(reply(denied(&o), &cfg.realm).status, 400);
    }
    // the same key in a header and a query parameter of another name: one key, and the copy
    // leaves the path
    let mut st = State::new(&cfg);
    let path = format!("/v1/x?a=1&key={KEY}");
    let mut req = Req::new(&[("x-api-key", KEY)]);
    let o = with_answer(&cfg, &mut st, &mut req, &path, &answer_for(KEY, &valid_json()));
    let a = allowed(&o);
    assert_eq!(a.path.as_deref(), Some("/v1/x?a=1"));
    assert_eq!(a.remove_headers.names().collect::<Vec<_>>(), ["x-api-key"]);
    // a JWT-rule credential alone on an API-key rule: not a key, refused
    let mut req = Req::new(&[("authorization", &format!("Bearer {jwt}"))]);
    assert_eq!(denied(&first(&cfg, &mut st, &mut req, "/v1/x")), Deny::MissingApiKey);
}

// =============================================================================
// Key revocations from the feed (contract 1.3, docs/auth-service-api.md 5.6)
// =============================================================================

/// Applies a feed snapshot with these key entries to the worker's state.
fn feed_keys(st: &mut State, keys: Value, tenants: Value, global: Value) {
    let body = json!({
        "cursor": "c", "reset": true, "poll_interval_s": 5, "revoked_before": null,
        "subjects": [], "sessions": [], "jtis": [],
        "api_keys": keys, "api_key_tenants": tenants, "api_keys_revoked_before": global,
    });
    let limits = edge_auth_core::jwt::revocation::Limits::default();
    st.revocation
        .apply(Some(200), Some(body.to_string().as_bytes()), MAX_BODY, &limits, NOW_S)
        .unwrap();
}

/// A valid answer the service computed at `at`.
fn answered_at(at: u64) -> Value {
    valid_with(|v| v["answered_at"] = json!(at))
}

fn revoked(o: &Outcome<'_>) -> bool {
    matches!(o.verdict, Verdict::Deny(Deny::ApiKey(KeyRefusal::Revoked)))
}

/// A worker that applied a feed snapshot with these key entries.
fn fed(cfg: &Config, keys: Value, tenants: Value, global: Value) -> State {
    let mut st = State::new(cfg);
    feed_keys(&mut st, keys, tenants, global);
    st
}

/// The lookup's answer `v` for [`KEY`] delivered to the request for /v1/items.
fn answered<'c>(cfg: &'c Config, st: &mut State, req: &mut Req, v: &Value) -> Outcome<'c> {
    with_answer(cfg, st, req, "/v1/items", &answer_for(KEY, v))
}

/// The request for /v1/items again a second later, on a worker that may wait.
fn a_second_later<'c>(cfg: &'c Config, st: &mut State, req: &mut Req) -> Outcome<'c> {
    run(cfg, st, req, "/v1/items", NOW + 1_000, true, None)
}

#[test]
fn a_key_the_feed_revokes_by_hash_is_refused_cached_or_not_without_a_lookup() {
    let cfg = config();
    let listed = json!([{"key_hash": KEY_HASH, "expires_at": NOW_S + 360}]);
    let mut st = State::new(&cfg);
    let mut req = Req::key(KEY);
    assert!(matches!(
        answered(&cfg, &mut st, &mut req, &answered_at(NOW_S)).verdict,
        Verdict::Allow(_)
    ));
    feed_keys(&mut st, listed.clone(), json!([]), Value::Null);
    req.reset();
    let o = a_second_later(&cfg, &mut st, &mut req);
    assert!(revoked(&o), "the cached answer is dropped at once: {:?}", o.verdict);
    assert!(req.shared_read.is_empty(), "no shared read, no lookup");
    // a worker with nothing cached refuses it without asking
    let mut fresh = fed(&cfg, listed, json!([]), Value::Null);
    req.reset();
    let o = first(&cfg, &mut fresh, &mut req, "/v1/items");
    assert!(revoked(&o));
    assert!(req.shared_read.is_empty());
    // another key is untouched
    let mut other = Req::key(KEY2);
    assert_eq!(
        awaited(&first(&cfg, &mut fresh, &mut other, "/v1/items")),
        key_hash(KEY2)
    );
}

#[test]
fn a_key_the_feed_revokes_by_id_is_refused_from_every_cache_and_from_an_answer_in_flight() {
    let cfg = config();
    let listed = json!([{"key_id": "key_mepybc6vdnwbtgbcqqchcvqb6w", "expires_at": NOW_S + 360}]);
    // local hit
    let mut st = State::new(&cfg);
    let mut req = Req::key(KEY);
    answered(&cfg, &mut st, &mut req, &answered_at(NOW_S));
    feed_keys(&mut st, listed.clone(), json!([]), Value::Null);
    assert!(revoked(&a_second_later(&cfg, &mut st, &mut req)));
    // shared hit (another worker cached it)
    let mut st = fed(&cfg, listed.clone(), json!([]), Value::Null);
    let mut req = Req::key(KEY);
    req.put_shared(&cfg, KEY, &lookup(&answered_at(NOW_S)), NOW_S + 100);
    assert!(revoked(&first(&cfg, &mut st, &mut req, "/v1/items")));
    // an answer computed before the revocation that arrives after the feed
    let mut st = fed(&cfg, listed.clone(), json!([]), Value::Null);
    let mut req = Req::key(KEY);
    assert!(revoked(&answered(&cfg, &mut st, &mut req, &answered_at(NOW_S - 1))));
    assert!(
        revoked(&a_second_later(&cfg, &mut st, &mut req)),
        "and it is not admitted from the cache afterwards"
    );
    // another key id is not refused
    let mut st = fed(&cfg, listed, json!([]), Value::Null);
    let other = valid_with(|v| v["key_id"] = json!("key_other"));
    assert!(matches!(
        answered(&cfg, &mut st, &mut req, &other).verdict,
        Verdict::Allow(_)
    ));
}

#[test]
fn a_tenant_key_cut_off_refuses_answers_computed_before_it_and_spares_later_keys() {
    let cfg = config();
    let cut = json!([{"tenant": "acme", "revoked_before": NOW_S}]);
    let mut st = State::new(&cfg);
    let mut req = Req::key(KEY);
    answered(&cfg, &mut st, &mut req, &answered_at(NOW_S - 5));
    feed_keys(&mut st, json!([]), cut.clone(), Value::Null);
    assert!(revoked(&a_second_later(&cfg, &mut st, &mut req)));
    // in flight: computed before, delivered after
    let mut st = fed(&cfg, json!([]), cut.clone(), Value::Null);
    assert!(revoked(&answered(&cfg, &mut st, &mut req, &answered_at(NOW_S - 1))));
    // an answer without answered_at (a service older than 1.3) fails closed
    assert!(revoked(&answered(&cfg, &mut st, &mut req, &valid_json())));
    // a key answered after the cut-off (one created since), and another tenant's key
    let mut st = fed(&cfg, json!([]), cut.clone(), Value::Null);
    let o = answered(&cfg, &mut st, &mut req, &answered_at(NOW_S));
    assert!(matches!(o.verdict, Verdict::Allow(_)), "{:?}", o.verdict);
    let mut st = fed(&cfg, json!([]), cut, Value::Null);
    let globex = valid_with(|v| {
        v["tenant"] = json!("globex");
        v["answered_at"] = json!(NOW_S - 100);
    });
    assert!(matches!(
        answered(&cfg, &mut st, &mut req, &globex).verdict,
        Verdict::Allow(_)
    ));
}

#[test]
fn the_global_key_cut_off_refuses_every_tenants_earlier_answers_even_stale_ones() {
    let cfg = config();
    let mut st = fed(&cfg, json!([]), json!([]), json!(NOW_S));
    for tenant in ["acme", "globex"] {
        let early = valid_with(|v| {
            v["tenant"] = json!(tenant);
            v["answered_at"] = json!(NOW_S - 1);
        });
        let mut req = Req::key(KEY);
        req.put_shared(&cfg, KEY, &lookup(&early), NOW_S + 100);
        assert!(revoked(&first(&cfg, &mut st, &mut req, "/v1/items")), "{tenant}");
    }
    // a stale answer served during an outage is checked too
    let mut st = fed(&cfg, json!([]), json!([]), json!(NOW_S));
    let mut req = Req::key(KEY);
    req.put_shared(&cfg, KEY, &lookup(&answered_at(NOW_S - 40)), NOW_S - 30);
    let fail = failure_for(KEY, LookupFailure::NoResponse);
    let o = run(&cfg, &mut st, &mut req, "/stale/items", NOW, false, Some(&fail));
    assert!(revoked(&o), "{:?}", o.verdict);
}

// ---- key tags (api_keys.key_tags) -------------------------------------------

/// `doc()` with key tags: the current secret and, with `previous`, the old one;
/// the `/legacy/` rule looks untagged keys up.
fn tagged_doc(previous: bool) -> Value {
    let mut d = doc();
    d["api_keys"]["key_tags"] = json!({"secret_env": "TAG_SECRET"});
    if previous {
        d["api_keys"]["key_tags"]["previous_secret_env"] = json!("TAG_OLD");
    }
    d["rules"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "legacy", "match": {"prefix": "/legacy/"}, "api_key": {"untagged_keys": "lookup"}}));
    d
}

fn tags_of(current: &str, previous: Option<&str>) -> KeyTags {
    KeyTags::new(
        TagSecret::new(current.as_bytes()).unwrap(),
        previous.map(|p| TagSecret::new(p.as_bytes()).unwrap()),
    )
    .unwrap()
}

/// A key as the service mints it with `secret`: `sk_` + 48 hex + tag.
fn minted(secret: &str, n: u32) -> String {
    let random = &api_key::hex(&token_key(&format!("random-{n}")))[..48];
    format!("sk_{}", tags_of(secret, None).mint(random))
}

/// `n` distinct well-formed invented keys (`sk_` + 64 hex, no tag).
fn invented(n: u32) -> impl Iterator<Item = String> {
    (0..n).map(|i| format!("sk_{}", api_key::hex(&token_key(&format!("flood-{i}")))))
}

#[test]
fn config_key_tags_fields_are_named() {
    let tagged = |t: Value| minimal_with(|d| d["api_keys"]["key_tags"] = t);
    assert!(parse(&tagged(json!({"secret_env": "TAG_SECRET"}))).is_ok());
    assert!(parse(&tagged(
        json!({"secret_env": "TAG_SECRET", "previous_secret_env": "TAG_OLD"})
    ))
    .is_ok());
    for (t, field) in [
        (json!({"secret_env": "NOT_SET"}), "api_keys.key_tags.secret_env"),
        (json!({"secret_env": "TAG_SHORT"}), "api_keys.key_tags.secret_env"),
        (json!({"secret_env": "EMPTY"}), "api_keys.key_tags.secret_env"),
        (
            json!({"secret_env": "TAG_SECRET", "previous_secret_env": "NOT_SET"}),
            "api_keys.key_tags.previous_secret_env",
        ),
        (
            json!({"secret_env": "TAG_SECRET", "previous_secret_env": "TAG_SHORT"}),
            "api_keys.key_tags.previous_secret_env",
        ),
        (
            json!({"secret_env": "TAG_SECRET", "previous_secret_env": "TAG_SECRET"}),
            "api_keys.key_tags.previous_secret_env",
        ),
    ] {
        assert_eq!(refused_field(&tagged(t.clone())), field, "{t}");
    }
    for t in [
        json!({}),
        json!({"secret_env": 5}),
        json!({"secret_env": "TAG_SECRET", "secret": "x"}),
        json!("TAG_SECRET"),
    ] {
        let f = refused_field(&tagged(t.clone()));
        assert!(f.starts_with("api_keys"), "{t}: {f}");
    }
    // too few hex digits to hold a tag and enough randomness
    let d = minimal_with(|d| {
        d["api_keys"]["hex_digits"] = json!(40);
        d["api_keys"]["key_tags"] = json!({"secret_env": "TAG_SECRET"});
    });
    assert_eq!(refused_field(&d), "api_keys.key_tags");
    // the error never carries a secret, nor does the configuration's Debug
    let e = parse(&tagged(json!({"secret_env": "TAG_SHORT"}))).unwrap_err();
    assert!(!e.to_string().contains(&"s".repeat(31)), "{e}");
    let cfg = parse(&tagged(
        json!({"secret_env": "TAG_SECRET", "previous_secret_env": "TAG_OLD"}),
    ))
    .unwrap();
    let printed = format!("{cfg:?}");
    assert!(!printed.contains(TAG_SECRET) && !printed.contains(TAG_OLD));
    // the rule's switch: only with key_tags, and only its two values
    let d = minimal_with(|d| d["rules"][0]["api_key"] = json!({"untagged_keys": "lookup"}));
    assert_eq!(refused_field(&d), "rules[0].api_key.untagged_keys");
    for v in [json!("LOOKUP"), json!("allow"), json!(true), json!(1)] {
        let d = minimal_with(|d| {
            d["api_keys"]["key_tags"] = json!({"secret_env": "TAG_SECRET"});
            d["rules"][0]["api_key"] = json!({"untagged_keys": v.clone()});
        });
        let f = refused_field(&d);
        assert!(f.starts_with("rules[0].api_key"), "{v}: {f}");
    }
    let d = minimal_with(|d| {
        d["api_keys"]["key_tags"] = json!({"secret_env": "TAG_SECRET"});
        d["rules"][0]["api_key"] = json!({"untagged_keys": "refuse"});
    });
    assert_eq!(
        parse(&d).unwrap().routes.select("GET", "/x").requirement(),
        Some(&Requirement::ApiKey {
            stale_if_error_ms: 0,
            untagged_lookup: false
        })
    );
}

/// The promise: 10,000 random well-formed keys cause no lookup. The
/// decision is the only source of lookups (`Verdict::AwaitLookup`, which the
/// shell turns into one `Outbound::await_lookup`): none is asked for, no
/// cache is read or written, and every one is a counted `api_key_bad_tag`.
#[test]
fn ten_thousand_invented_keys_cause_no_lookup() {
    let cfg = parse(&tagged_doc(true)).unwrap();
    let mut st = State::new(&cfg);
    let mut lookups = 0;
    let mut refused = 0;
    for key in invented(10_000) {
        let mut req = Req::key(&key);
        let o = first(&cfg, &mut st, &mut req, "/v1/items");
        match o.verdict {
            Verdict::AwaitLookup { .. } => lookups += 1,
            Verdict::Deny(Deny::ApiKey(KeyRefusal::BadTag)) => refused += 1,
            ref other => panic!("{other:?}"),
        }
        assert!(req.shared_read.is_empty(), "the shared cache was read");
        assert_eq!(o.key, None);
        assert_eq!(o.credential.as_ref().map(|c| c.digest()), Some(token_key(&key)));
    }
    assert_eq!((lookups, refused), (0, 10_000));
    assert!(st.keys.is_empty());
    // a refusal of its own, a 401 whose body does not echo the key
    let d = Deny::ApiKey(KeyRefusal::BadTag);
    assert_eq!(d.name(), "api_key_bad_tag");
    let r = reply(d, &cfg.realm);
    assert_eq!(r.status, 401);
    let key = invented(1).next().unwrap();
    assert!(!r.body.contains(&key) && !r.body.contains(&key[3..19]), "{}", r.body);
    assert!(header(&r.headers, "www-authenticate")
        .unwrap()
        .contains("invalid_token"));
}

#[test]
fn a_minted_key_not_yet_cached_gets_exactly_one_lookup() {
    let cfg = parse(&tagged_doc(true)).unwrap();
    let mut st = State::new(&cfg);
    for (secret, n) in [(TAG_SECRET, 1), (TAG_OLD, 2)] {
        let key = minted(secret, n);
        let mut req = Req::key(&key);
        assert_eq!(awaited(&first(&cfg, &mut st, &mut req, "/v1/items")), key_hash(&key));
        let mut body = valid_json();
        body["key_hash"] = json!(key_hash(&key));
        let parsed = parse_lookup(
            Some(200),
            Some(body.to_string().as_bytes()),
            MAX_BODY,
            NOW_S,
            &key_hash(&key),
        );
        let a = KeyAnswer {
            hash: key_hash(&key),
            result: Ok(parsed.unwrap()),
        };
        assert_eq!(
            allowed(&with_answer(&cfg, &mut st, &mut req, "/v1/items", &a)).rule,
            "keys"
        );
        // then cached: no second lookup
        let o = first(&cfg, &mut st, &mut req, "/v1/items");
        assert_eq!(o.key, Some(KeyUse::LocalHit), "{secret}");
    }
    // a key of a retired secret, or one bit off, is refused
    for key in [minted("retired-0123456789abcdef0123456789ab", 3), {
        let k = minted(TAG_SECRET, 4);
        let last = if k.ends_with('0') { '1' } else { '0' };
        format!("{}{last}", &k[..k.len() - 1])
    }] {
        let o = first(&cfg, &mut st, &mut Req::key(&key), "/v1/items");
        assert_eq!(denied(&o), Deny::ApiKey(KeyRefusal::BadTag), "{key}");
    }
}

#[test]
fn a_bad_tag_is_refused_before_the_caches() {
    // A valid answer for an invented key in the shared cache (written under a
    // configuration without tags, or by an attacker's earlier luck) is not used.
    let cfg = parse(&tagged_doc(false)).unwrap();
    let mut st = State::new(&cfg);
    let mut req = Req::key(KEY);
    let hash_valid = valid_json();
    req.put_shared(&cfg, KEY, &lookup(&hash_valid), NOW_S + 300);
    let o = first(&cfg, &mut st, &mut req, "/v1/items");
    assert_eq!(denied(&o), Deny::ApiKey(KeyRefusal::BadTag));
    assert!(req.shared_read.is_empty());
    // a delivered answer does not stand in either
    let a = answer_for(KEY, &hash_valid);
    let o = with_answer(&cfg, &mut st, &mut req, "/v1/items", &a);
    assert_eq!(denied(&o), Deny::ApiKey(KeyRefusal::BadTag));
    // a malformed key is still malformed (the format is checked first)
    let o = first(&cfg, &mut st, &mut Req::key(&KEY.to_uppercase()), "/v1/items");
    assert_eq!(denied(&o), Deny::ApiKey(KeyRefusal::Malformed));
}

#[test]
fn untagged_keys_are_looked_up_only_where_the_rule_says_so() {
    let cfg = parse(&tagged_doc(false)).unwrap();
    let mut st = State::new(&cfg);
    // a key of the old shape on the migrating rule: looked up, and admitted
    let mut req = Req::key(KEY);
    assert_eq!(awaited(&first(&cfg, &mut st, &mut req, "/legacy/x")), KEY_HASH);
    let a = answer_for(KEY, &valid_json());
    assert_eq!(
        allowed(&with_answer(&cfg, &mut st, &mut req, "/legacy/x", &a)).rule,
        "legacy"
    );
    // the same key, even cached, on a rule that refuses untagged keys
    let o = first(&cfg, &mut st, &mut Req::key(KEY), "/v1/items");
    assert_eq!(denied(&o), Deny::ApiKey(KeyRefusal::BadTag));
    // a tagged key works on both
    let key = minted(TAG_SECRET, 9);
    assert_eq!(
        awaited(&first(&cfg, &mut st, &mut Req::key(&key), "/legacy/x")),
        key_hash(&key)
    );
    assert_eq!(
        awaited(&first(&cfg, &mut st, &mut Req::key(&key), "/v1/items")),
        key_hash(&key)
    );
}

#[test]
fn without_key_tags_every_well_formed_key_is_looked_up_as_before() {
    // documented: this leaves the flood of invented keys open
    let cfg = config();
    let mut st = State::new(&cfg);
    let mut lookups = 0;
    for key in invented(100) {
        if let Verdict::AwaitLookup { .. } = first(&cfg, &mut st, &mut Req::key(&key), "/v1/items").verdict {
            lookups += 1;
        }
    }
    assert_eq!(lookups, 100);
}

// ---- the lookup budget --------------------------------------------------------

#[test]
fn config_lookup_budget_is_off_unless_configured_and_has_defaults() {
    assert!(config().api_keys.as_ref().unwrap().lookup_budget.is_none());
    let cfg = config_with(|d| d["api_keys"]["lookup_budget"] = json!({}));
    let b = cfg.api_keys.as_ref().unwrap().lookup_budget.as_ref().unwrap();
    assert_eq!(
        (
            b.policy.burst,
            b.policy.per_minute,
            b.policy.slots,
            b.policy.ipv6_prefix
        ),
        (30, 60, 4096, 64)
    );
    // unknown fields and wrong types are refused at their path
    for (v, want) in [
        (json!({"rate": 1}), "api_keys.lookup_budget"),
        (json!({"burst": -1}), "api_keys.lookup_budget.burst"),
        (json!({"ipv6_prefix": 256}), "api_keys.lookup_budget.ipv6_prefix"),
        (json!({"slots": "10"}), "api_keys.lookup_budget.slots"),
    ] {
        let d = minimal_with(|d| d["api_keys"]["lookup_budget"] = v.clone());
        let f = refused_field(&d);
        assert!(f.starts_with(want), "{v}: {f}");
    }
}

/// The client a lookup is charged to: the address the rule's `ip` checks use.
#[test]
fn a_lookup_is_charged_to_the_client_address_the_ip_rules_establish() {
    let on = config_with(|d| d["api_keys"]["lookup_budget"] = json!({"burst": 2}));
    let client_of = |cfg: &Config, req: &mut Req, path: &str| {
        let mut st = State::new(cfg);
        match first(cfg, &mut st, req, path).verdict {
            Verdict::AwaitLookup { client, .. } => client,
            other => panic!("expected AwaitLookup, got {other:?}"),
        }
    };
    // the peer, on a rule without an ip block
    let mut req = Req::key(KEY).peer(Some("198.51.100.7:5000"));
    assert_eq!(
        client_of(&on, &mut req, "/v1/items"),
        Some("198.51.100.7".parse().unwrap())
    );
    // an IPv4-mapped peer is its IPv4 address
    let mut req = Req::key(KEY).peer(Some("[::ffff:198.51.100.7]:5000"));
    assert_eq!(
        client_of(&on, &mut req, "/v1/items"),
        Some("198.51.100.7".parse().unwrap())
    );
    // X-Forwarded-For is not read where no hop is trusted
    let mut req = Req::new(&[("x-api-key", KEY), ("x-forwarded-for", "203.0.113.9")]);
    assert_eq!(
        client_of(&on, &mut req, "/v1/items"),
        Some("192.0.2.1".parse().unwrap())
    );
    // the rule's ip block trusts one hop: the entry it names
    let mut req = Req::new(&[("x-api-key", KEY), ("x-forwarded-for", "203.0.113.9")]);
    assert_eq!(
        client_of(&on, &mut req, "/hops/x"),
        Some("203.0.113.9".parse().unwrap())
    );
    // an address that cannot be established: charged to the shared "unknown" client
    let mut req = Req::key(KEY).peer(None);
    assert_eq!(client_of(&on, &mut req, "/v1/items"), None);
    // no budget: no client
    let mut req = Req::new(&[("x-api-key", KEY), ("x-forwarded-for", "203.0.113.9")]);
    assert_eq!(client_of(&config(), &mut req, "/hops/x"), None);
}

#[test]
fn over_budget_is_429_with_retry_after_and_no_stale_answer() {
    let cfg = config_with(|d| d["api_keys"]["lookup_budget"] = json!({}));
    let mut st = State::new(&cfg);
    let mut req = Req::key(KEY);
    // a valid answer just expired, within the stale window of /stale/
    req.put_shared(&cfg, KEY, &lookup(&valid_json()), NOW_S - 1);
    let over = failure_for(KEY, LookupFailure::OverBudget { retry_after_s: 7 });
    let o = run(&cfg, &mut st, &mut req, "/stale/x", NOW, false, Some(&over));
    assert_eq!(denied(&o), Deny::LookupBudgetExceeded { retry_after_s: 7 });
    assert_eq!(denied(&o).name(), "lookup_budget_exceeded");
    let r = edge_auth_core::response::reply(denied(&o), "edge");
    assert_eq!(r.status, 429);
    assert_eq!(header(&r.headers, "retry-after"), Some("7"));
    assert_eq!(header(&r.headers, "www-authenticate"), None);
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["error"], "too_many_requests");
    assert!(!r.body.contains(KEY) && !r.body.contains(KEY_HASH));
    // while a real failure on the same route serves the stale answer
    let failed = failure_for(KEY, LookupFailure::NoResponse);
    let o = run(&cfg, &mut st, &mut req, "/stale/x", NOW, false, Some(&failed));
    assert_eq!(o.key, Some(KeyUse::Stale));
    // and a cached answer needs no lookup, so no budget
    let mut req = Req::key(KEY2);
    req.put_shared(&cfg, KEY2, &lookup(&valid_json()), NOW_S + 100);
    let mut st = State::new(&cfg);
    assert_eq!(first(&cfg, &mut st, &mut req, "/v1/items").key, Some(KeyUse::SharedHit));
}
