//! The outbound calls (API-key lookups, revocation polls, JWKS fetches)
//! through the core's registry, with a fake host: calls sent, answers
//! delivered, shared data with compare-and-swap, a clock the test moves.
//! No proxy involved.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use edge_auth_core::api_key::breaker::BreakerState;
use edge_auth_core::api_key::shared_cache::{encode_marker, CacheTable};
use edge_auth_core::api_key::{key_hash, parse_lookup, Answer, Lookup, LookupFailure};
use edge_auth_core::b64;
use edge_auth_core::config::{self, Config};
use edge_auth_core::decision::{decide, Attempt, Deny, KeyAnswer, Outcome, Request, State, Verdict};
use edge_auth_core::jwt::JwtError;
use edge_auth_core::logging::Level;
use edge_auth_core::outbound::{
    CallResponse, CallState, Counter, Host, HostError, HttpCall, Outbound, Purpose, Wake, NOW_TICK_MS, TICK_MS,
    WAIT_TICK_MS,
};
use jwt_simple::prelude::*;
use serde_json::{json, Value};

mod common;
use common::raw_claims;

const NOW_S: u64 = 1_800_000_000;
const NOW: u64 = NOW_S * 1000;
const SERVICE_TOKEN: &str = "svc-0123456789abcdef0123456789abcdef";
/// `auth_service.timeout_ms` in [`doc`], and the grace after it.
const TIMEOUT: u64 = 500;
const DEADLINE: u64 = TIMEOUT + 1_000;
const KEY1: &str = "sk_20461de3ee4a57fe3611338284344655d8b1dff13bde3406141f9ba472ba2fb1";
const KEY2: &str = "sk_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const KEY3: &str = "sk_fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

// ---- the fake host -----------------------------------------------------------

/// The data every worker of one proxy shares: values and their versions.
#[derive(Default)]
struct Store {
    data: HashMap<String, (Vec<u8>, u32)>,
    version: u32,
    /// Writes, in order (key, value).
    writes: Vec<(String, Vec<u8>)>,
}

/// A call the core sent.
#[derive(Debug, Clone)]
struct Sent {
    token: u32,
    cluster: String,
    authority: String,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout_ms: u64,
}

impl Sent {
    /// Cluster, authority, method and path.
    fn line(&self) -> (&str, &str, &str, &str) {
        (&self.cluster, &self.authority, &self.method, &self.path)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

struct Fake {
    now: u64,
    shared: Rc<RefCell<Store>>,
    next_token: u32,
    sent: Vec<Sent>,
    /// The next dispatches fail with this.
    refuse_dispatch: Option<HostError>,
    /// The next compare-and-swap write loses to another worker.
    lose_cas: bool,
    /// The answer being delivered.
    answer: Option<CallResponse>,
    /// The body limits the core read answers with.
    read_limits: Vec<usize>,
    counters: Vec<Counter>,
    breaker: Vec<BreakerState>,
    /// `revocation_state_age` reports, in order.
    ages: Vec<u64>,
    logs: Vec<(Level, String)>,
    ticks: Vec<u64>,
    refuse_tick: bool,
}

impl Fake {
    fn new() -> Fake {
        Fake::sharing(Rc::new(RefCell::new(Store::default())))
    }

    /// Another worker of the same proxy as `self`.
    fn worker(&self) -> Fake {
        let mut f = Fake::sharing(Rc::clone(&self.shared));
        f.now = self.now;
        f.next_token = 1000;
        f
    }

    fn sharing(shared: Rc<RefCell<Store>>) -> Fake {
        Fake {
            now: NOW,
            shared,
            next_token: 1,
            sent: vec![],
            refuse_dispatch: None,
            lose_cas: false,
            answer: None,
            read_limits: vec![],
            counters: vec![],
            breaker: vec![],
            ages: vec![],
            logs: vec![],
            ticks: vec![],
            refuse_tick: false,
        }
    }

    fn count(&self, c: Counter) -> usize {
        self.counters.iter().filter(|x| **x == c).count()
    }

    fn warnings(&self) -> Vec<&str> {
        self.logs
            .iter()
            .filter(|(l, _)| *l == Level::Warn)
            .map(|(_, m)| m.as_str())
            .collect()
    }

    fn last_sent(&self) -> &Sent {
        self.sent.last().expect("a call was sent")
    }

    fn shared_value(&self, key: &str) -> Option<Vec<u8>> {
        self.shared.borrow().data.get(key).map(|(v, _)| v.clone())
    }

    fn put_shared(&self, key: &str, value: &[u8]) {
        let mut s = self.shared.borrow_mut();
        s.version += 1;
        let v = s.version;
        s.data.insert(key.to_owned(), (value.to_vec(), v));
    }
}

impl Host for Fake {
    fn now_ms(&mut self) -> u64 {
        self.now
    }

    fn dispatch(&mut self, call: &HttpCall<'_>) -> Result<u32, HostError> {
        if let Some(e) = self.refuse_dispatch {
            return Err(e);
        }
        let token = self.next_token;
        self.next_token += 1;
        self.sent.push(Sent {
            token,
            cluster: call.cluster.to_owned(),
            authority: call.authority.to_owned(),
            method: call.method.to_owned(),
            path: call.path.to_owned(),
            headers: call
                .headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: call.body.map(<[u8]>::to_vec),
            timeout_ms: call.timeout_ms,
        });
        Ok(token)
    }

    fn call_response(&mut self, body_size: usize, max_body: usize) -> CallResponse {
        self.read_limits.push(max_body);
        let mut r = self.answer.take().expect("an answer is being delivered");
        // as the proxy's buffer read: at most the asked length
        if let Some(b) = &mut r.body {
            b.truncate(body_size.min(max_body + 1));
        }
        r
    }

    fn shared_get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.shared.borrow().data.get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        let mut s = self.shared.borrow_mut();
        if let Some(cas) = cas {
            if std::mem::take(&mut self.lose_cas) {
                // another worker wrote in between
                s.version += 1;
                let v = s.version;
                s.data.insert(key.to_owned(), (b"someone else".to_vec(), v));
                return Err(HostError::CasMismatch);
            }
            if s.data.get(key).map(|(_, v)| *v) != Some(cas) {
                return Err(HostError::CasMismatch);
            }
        }
        s.version += 1;
        let v = s.version;
        s.data.insert(key.to_owned(), (value.to_vec(), v));
        s.writes.push((key.to_owned(), value.to_vec()));
        Ok(())
    }

    fn set_tick_period_ms(&mut self, period_ms: u64) -> Result<(), HostError> {
        if self.refuse_tick {
            return Err(HostError::InternalFailure);
        }
        self.ticks.push(period_ms);
        Ok(())
    }

    fn count(&mut self, counter: Counter) {
        self.counters.push(counter);
    }

    fn breaker_state(&mut self, state: BreakerState) {
        self.breaker.push(state);
    }

    fn random_u64(&mut self) -> u64 {
        0
    }

    fn revocation_state_age(&mut self, age_ms: u64) {
        self.ages.push(age_ms);
    }

    fn log(&mut self, level: Level, message: &str) {
        self.logs.push((level, message.to_owned()));
    }
}

/// One worker: its configuration's state, its registry and its host.
struct Worker<'c> {
    cfg: &'c Config,
    st: State,
    out: Outbound,
    host: Fake,
}

impl<'c> Worker<'c> {
    fn new(cfg: &'c Config, host: Fake) -> Worker<'c> {
        Worker {
            cfg,
            st: State::new(cfg),
            out: Outbound::new(cfg),
            host,
        }
    }

    fn start(&mut self) -> Vec<Wake> {
        self.out.start(self.cfg, &mut self.st, &mut self.host)
    }

    fn tick(&mut self) -> Vec<Wake> {
        self.out.on_tick(self.cfg, &mut self.st, &mut self.host)
    }

    fn tick_at(&mut self, now: u64) -> Vec<Wake> {
        self.host.now = now;
        self.tick()
    }

    fn lookup(&mut self, context: u32, key: &str) -> Option<KeyAnswer> {
        self.out
            .await_lookup(self.cfg, &mut self.host, context, key_hash(key), None)
    }

    /// Delivers `answer` for the call `token`.
    fn answer(&mut self, token: u32, answer: CallResponse) -> Vec<Wake> {
        let size = answer.body.as_ref().map_or(0, Vec::len);
        self.host.answer = Some(answer);
        let wakes = self
            .out
            .on_response(self.cfg, &mut self.st, &mut self.host, token, size);
        self.host.answer = None;
        wakes
    }

    fn state_of(&self, purpose: &Purpose) -> Option<CallState> {
        self.out.calls().find(|c| c.purpose == purpose).map(|c| c.state)
    }

    fn waiters_of(&self, purpose: &Purpose) -> Vec<u32> {
        self.out
            .calls()
            .find(|c| c.purpose == purpose)
            .map(|c| c.waiters.to_vec())
            .unwrap_or_default()
    }
}

fn json_answer(status: u16, body: &Value) -> CallResponse {
    CallResponse {
        status: Some(status),
        content_type: Some("application/json".into()),
        body: Some(body.to_string().into_bytes()),
        retry_after: None,
    }
}

fn valid(key: &str, ttl: u64) -> Value {
    json!({
        "key_hash": key_hash(key), "status": "valid", "key_id": "key_mepybc6vdnwbtgbcqqchcvqb6w", "tenant": "acme",
        "subject": "svc", "scopes": ["orders:read"], "ip_allowlist": [], "allowed_origins": [],
        "expires_at": null, "cache_ttl_s": ttl
    })
}

/// [`valid`] as the service's parsed answer.
fn valid_lookup(key: &str, ttl: u64) -> Lookup {
    let body = valid(key, ttl).to_string();
    parse_lookup(Some(200), Some(body.as_bytes()), 1024, NOW_S, &key_hash(key)).unwrap()
}

/// The single wake in `wakes`, with its contexts and its lookup answer.
fn single(wakes: Vec<Wake>) -> (Vec<u32>, Option<KeyAnswer>) {
    assert_eq!(wakes.len(), 1, "{wakes:?}");
    let w = wakes.into_iter().next().unwrap();
    (w.contexts, w.answer)
}

fn failure(answer: Option<KeyAnswer>) -> LookupFailure {
    match answer.expect("an answer").result {
        Err(f) => f,
        Ok(l) => panic!("expected a failure, got {l:?}"),
    }
}

// ---- configuration ------------------------------------------------------------

fn doc() -> Value {
    json!({
        "auth_service": {
            "cluster": "auth", "token_env": "SVC_TOKEN", "timeout_ms": TIMEOUT,
            "revocation_poll_s": 5, "revocation_max_staleness_s": 10
        },
        "api_keys": {
            "max_pending_lookups": 2,
            "max_response_bytes": 1024,
            "breaker": {"failure_threshold": 2, "open_s": 3}
        },
        "providers": [{
            "name": "idp", "issuer": "https://idp", "audiences": ["api"], "algorithms": ["ES256"],
            "check_revocation": true,
            "remote_jwks": {"cluster": "idp", "path": "/jwks", "timeout_ms": 1000,
                "refresh_interval_s": 600, "min_refetch_interval_s": 10, "max_response_bytes": 2048}
        }],
        "rules": [
            {"name": "keys", "match": {"prefix": "/v1/"}, "api_key": {}},
            {"name": "jwt", "match": {"prefix": "/api/"}, "jwt": {"providers": ["idp"]}}
        ]
    })
}

fn parse(doc: &Value) -> Config {
    config::parse(doc.to_string().as_bytes(), &|n| match n {
        "SVC_TOKEN" => Some(SERVICE_TOKEN.to_owned()),
        "SECRET" => Some(SECRET.to_owned()),
        _ => None,
    })
    .unwrap()
}

fn config() -> Config {
    parse(&doc())
}

/// Only API keys: no provider polls revocations or fetches keys.
fn keys_only() -> Config {
    keys_only_with(|_| {})
}

fn keys_only_with(f: impl FnOnce(&mut Value)) -> Config {
    let mut d = doc();
    d["providers"] = json!([]);
    d["rules"] = json!([{"name": "keys", "match": {"prefix": "/v1/"}, "api_key": {}}]);
    f(&mut d);
    parse(&d)
}

fn slots(cfg: &Config) -> usize {
    cfg.api_keys.as_ref().unwrap().shared_cache_slots
}

/// The configuration's shared tables of answers and lookup markers.
fn table(cfg: &Config) -> &CacheTable {
    &cfg.api_keys.as_ref().unwrap().shared_cache
}

// =============================================================================
// API-key lookups
// =============================================================================

#[test]
fn a_lookup_is_claimed_sent_answered_cached_and_coalesced_on_the_worker() {
    let cfg = keys_only();
    let mut w = Worker::new(&cfg, Fake::new());
    assert!(w.start().is_empty());
    assert_eq!(w.host.ticks, [TICK_MS]);
    // no lookup before a request needs it; the feed is polled at once, since it
    // carries API-key revocations (contract 1.3)
    assert_eq!(w.host.sent.len(), 1, "only the feed poll");
    assert!(w.host.last_sent().line().3.starts_with("/internal/v1/revocations"));
    w.host.sent.clear();

    // two requests for one key: one lookup, both wait for it
    assert!(w.lookup(7, KEY1).is_none());
    assert_eq!(w.host.ticks, [TICK_MS, NOW_TICK_MS], "the tick is made immediate");
    assert!(w.lookup(8, KEY1).is_none());
    assert_eq!(w.host.count(Counter::KeyCoalesced), 1);
    let purpose = Purpose::Lookup(key_hash(KEY1));
    assert_eq!(w.state_of(&purpose), Some(CallState::Queued));
    assert_eq!(w.waiters_of(&purpose), [7, 8]);
    assert!(w.host.sent.is_empty(), "sent from the tick, not from the request");

    assert!(w.tick().is_empty());
    assert_eq!(w.host.sent.len(), 1);
    let sent = w.host.last_sent().clone();
    assert_eq!(sent.line(), ("auth", "auth", "POST", "/internal/v1/api-keys/lookup"));
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {SERVICE_TOKEN}").as_str())
    );
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(sent.header("accept"), Some("application/json"));
    assert_eq!(sent.timeout_ms, TIMEOUT);
    let body: Value = serde_json::from_slice(sent.body.as_deref().unwrap()).unwrap();
    assert_eq!(body, json!({"key_hash": key_hash(KEY1)}));
    assert!(!String::from_utf8_lossy(sent.body.as_deref().unwrap()).contains(&KEY1[3..]));
    assert_eq!(w.host.count(Counter::KeyLookups), 1);
    assert_eq!(
        w.state_of(&purpose),
        Some(CallState::Sent {
            token: sent.token,
            deadline_ms: NOW + DEADLINE
        })
    );
    // the marker tells the other workers who asks, and until when
    let marker = table(&cfg).marker_name(&key_hash(KEY1), slots(&cfg));
    assert_eq!(
        w.host.shared_value(&marker),
        Some(encode_marker(&key_hash(KEY1), NOW + DEADLINE))
    );
    assert_eq!(w.host.ticks.last(), Some(&TICK_MS), "nothing waits on another worker");

    // the answer wakes both, is cached for every worker, and frees the marker
    w.host.now = NOW + 40;
    let (contexts, answer) = single(w.answer(sent.token, json_answer(200, &valid(KEY1, 120))));
    assert_eq!(contexts, [7, 8]);
    let answer = answer.unwrap();
    assert_eq!(answer.hash, key_hash(KEY1));
    assert!(matches!(answer.result.as_ref().unwrap().answer, Answer::Valid(_)));
    assert_eq!(w.host.read_limits, [1024], "read within api_keys.max_response_bytes");
    let entry = w
        .host
        .shared_value(&table(&cfg).entry_name(&key_hash(KEY1), slots(&cfg)))
        .unwrap();
    let (lookup, until) = table(&cfg).decode_entry(&entry, &key_hash(KEY1)).unwrap();
    assert_eq!(until, NOW_S + 120);
    assert_eq!(lookup, answer.result.unwrap());
    assert_eq!(w.host.shared_value(&marker), Some(vec![]));
    assert_eq!(w.host.breaker.last(), Some(&BreakerState::Closed));
    assert_eq!(w.out.calls().count(), 1, "no lookup left in flight, only the feed poll");
}

#[test]
fn workers_coalesce_through_the_shared_marker() {
    let cfg = keys_only();
    let mut a = Worker::new(&cfg, Fake::new());
    let mut b = Worker::new(&cfg, a.host.worker());
    a.lookup(1, KEY1);
    a.tick();
    let token = a.host.last_sent().token;

    // the other worker sees the claim: it waits, polling the shared cache
    b.lookup(2, KEY1);
    b.host.now = NOW + 5;
    assert!(b.tick().is_empty());
    assert!(b.host.sent.is_empty(), "one lookup per proxy");
    assert_eq!(b.host.count(Counter::KeyCoalesced), 1);
    let purpose = Purpose::Lookup(key_hash(KEY1));
    assert!(matches!(b.state_of(&purpose), Some(CallState::Elsewhere { .. })));
    assert_eq!(b.host.ticks.last(), Some(&WAIT_TICK_MS));
    // still nothing on the next ticks (and no second coalescing count)
    assert!(b.tick_at(NOW + 25).is_empty());
    assert_eq!(b.host.count(Counter::KeyCoalesced), 1);

    // the first worker's answer reaches the second through the shared cache,
    // with what is left of its cache time
    a.host.now = NOW + 30;
    a.answer(token, json_answer(200, &valid(KEY1, 120)));
    let (contexts, answer) = single(b.tick_at(NOW + 10_000));
    assert_eq!(contexts, [2]);
    assert_eq!(answer.unwrap().result.unwrap().cache_ttl_s, 110);
    assert_eq!(b.host.ticks.last(), Some(&TICK_MS));
    assert!(b.host.sent.is_empty());
}

#[test]
fn a_claim_lost_to_another_worker_waits_for_its_answer() {
    let cfg = keys_only();
    let mut w = Worker::new(&cfg, Fake::new());
    w.lookup(1, KEY1);
    w.host.lose_cas = true;
    w.tick();
    assert!(w.host.sent.is_empty());
    assert!(matches!(
        w.state_of(&Purpose::Lookup(key_hash(KEY1))),
        Some(CallState::Elsewhere { .. })
    ));
}

#[test]
fn a_marker_whose_worker_went_silent_is_taken_over_and_a_far_deadline_is_not_believed() {
    let cfg = keys_only();
    let mut w = Worker::new(&cfg, Fake::new());
    let marker = table(&cfg).marker_name(&key_hash(KEY1), slots(&cfg));
    // a forged (or corrupt) marker far in the future: believed only for one call's time
    w.host.put_shared(&marker, &encode_marker(&key_hash(KEY1), u64::MAX));
    w.lookup(1, KEY1);
    w.tick();
    assert!(w.host.sent.is_empty());
    assert!(w.tick_at(NOW + DEADLINE - 1).is_empty());
    assert!(w.host.sent.is_empty());
    // the marker of another worker that stopped answering expires: this worker asks
    w.host.put_shared(&marker, &encode_marker(&key_hash(KEY1), NOW + 100));
    w.tick_at(NOW + 100);
    assert_eq!(w.host.sent.len(), 1);
    // a marker for another key sharing the slot does not hold this one up
    let cfg1 = keys_only_with(|d| d["api_keys"]["shared_cache_slots"] = json!(1));
    let mut w = Worker::new(&cfg1, Fake::new());
    let marker = table(&cfg1).marker_name(&key_hash(KEY1), 1);
    w.host.put_shared(&marker, &encode_marker(&key_hash(KEY2), NOW + 1_000));
    w.lookup(1, KEY1);
    w.tick();
    assert_eq!(w.host.sent.len(), 1);
}

#[test]
fn hostile_shared_entries_are_not_delivered() {
    let cfg = keys_only();
    let mut w = Worker::new(&cfg, Fake::new());
    let hash = key_hash(KEY1);
    let entry = table(&cfg).entry_name(&hash, slots(&cfg));
    let lookup = valid_lookup(KEY1, 60);
    for bad in [
        b"garbage".to_vec(),
        // another key's answer in the slot
        table(&cfg).encode_entry(&key_hash(KEY2), &lookup, NOW_S + 60).unwrap(),
        // this key's answer, expired
        table(&cfg).encode_entry(&hash, &lookup, NOW_S).unwrap(),
    ] {
        w.host.put_shared(&entry, &bad);
        w.lookup(1, KEY1);
        assert!(w.tick().is_empty(), "{}", String::from_utf8_lossy(&bad));
        // asked the service instead
        let token = w.host.last_sent().token;
        w.answer(token, json_answer(200, &valid(KEY1, 60)));
    }
    assert_eq!(w.host.sent.len(), 3);
}

#[test]
fn a_lookup_unanswered_by_its_deadline_fails_and_its_late_answer_is_ignored() {
    let cfg = keys_only();
    let mut w = Worker::new(&cfg, Fake::new());
    w.lookup(1, KEY1);
    w.tick();
    let token = w.host.last_sent().token;
    assert!(w.tick_at(NOW + DEADLINE - 1).is_empty());
    let (contexts, answer) = single(w.tick_at(NOW + DEADLINE));
    assert_eq!(contexts, [1]);
    assert_eq!(failure(answer), LookupFailure::NoResponse);
    assert_eq!(w.host.count(Counter::LookupFailed(LookupFailure::NoResponse)), 1);
    let marker = table(&cfg).marker_name(&key_hash(KEY1), slots(&cfg));
    assert_eq!(w.host.shared_value(&marker), Some(vec![]), "the marker is freed");
    // the late answer: not read, not cached, nobody woken
    let writes = w.host.shared.borrow().writes.len();
    assert!(w.answer(token, json_answer(200, &valid(KEY1, 60))).is_empty());
    assert!(w.host.read_limits.is_empty());
    assert_eq!(w.host.shared.borrow().writes.len(), writes);
    // an answer to a call nobody made either
    assert!(w.answer(99_999, json_answer(200, &valid(KEY1, 60))).is_empty());
}

#[test]
fn failed_answers_are_failures_by_kind() {
    let cfg = keys_only();
    let cases = [
        (json_answer(500, &json!({"error": "x"})), LookupFailure::Status(500)),
        (json_answer(401, &json!({"error": "x"})), LookupFailure::Status(401)),
        // the proxy's own 503 (timeout, no healthy host): no answer
        (
            CallResponse {
                status: Some(503),
                content_type: Some("text/plain".into()),
                body: Some(b"upstream connect error".to_vec()),
                retry_after: None,
            },
            LookupFailure::NoResponse,
        ),
        (
            CallResponse {
                status: Some(504),
                content_type: None,
                body: None,
                retry_after: None,
            },
            LookupFailure::NoResponse,
        ),
        // the service's own 503 says so in JSON
        (json_answer(503, &json!({"error": "x"})), LookupFailure::Status(503)),
        (CallResponse::default(), LookupFailure::NoResponse),
        (
            CallResponse {
                status: Some(200),
                content_type: Some("application/json".into()),
                body: Some(b"{\"status\": \"valid\"".to_vec()),
                retry_after: None,
            },
            LookupFailure::Malformed,
        ),
        (
            json_answer(200, &json!({"status": "valid", "pad": "x".repeat(2000)})),
            LookupFailure::TooLarge,
        ),
        // another key's answer, and an answer bound to no key: never this key's
        (json_answer(200, &valid(KEY2, 60)), LookupFailure::Unbound),
        (
            json_answer(200, &{
                let mut v = valid(KEY1, 60);
                v.as_object_mut().unwrap().remove("key_hash");
                v
            }),
            LookupFailure::Unbound,
        ),
    ];
    for (response, want) in cases {
        let mut w = Worker::new(&cfg, Fake::new());
        w.lookup(1, KEY1);
        w.tick();
        let token = w.host.last_sent().token;
        let (_, answer) = single(w.answer(token, response));
        assert_eq!(failure(answer), want);
        assert_eq!(w.host.count(Counter::LookupFailed(want)), 1);
        assert_eq!(w.host.warnings().len(), 1, "{:?}", w.host.logs);
        // nothing cached for anyone
        let entry = table(&cfg).entry_name(&key_hash(KEY1), slots(&cfg));
        assert_eq!(w.host.shared_value(&entry), None);
    }
}

#[test]
fn a_negative_answer_replaces_a_stale_valid_one_even_with_a_zero_ttl() {
    let cfg = keys_only();
    let mut w = Worker::new(&cfg, Fake::new());
    let hash = key_hash(KEY1);
    let entry = table(&cfg).entry_name(&hash, slots(&cfg));
    let stale = valid_lookup(KEY1, 60);
    w.host
        .put_shared(&entry, &table(&cfg).encode_entry(&hash, &stale, NOW_S - 1).unwrap());
    w.lookup(1, KEY1);
    w.tick();
    let token = w.host.last_sent().token;
    let revoked = json!({"key_hash": hash, "status": "revoked", "key_id": "key_a", "cache_ttl_s": 0});
    w.answer(token, json_answer(200, &revoked));
    let (lookup, until) = table(&cfg)
        .decode_entry(&w.host.shared_value(&entry).unwrap(), &hash)
        .unwrap();
    assert!(matches!(lookup.answer, Answer::Revoked { .. }));
    assert_eq!(until, NOW_S);
}

#[test]
fn too_many_distinct_lookups_are_busy() {
    let cfg = keys_only();
    let mut w = Worker::new(&cfg, Fake::new());
    assert!(w.lookup(1, KEY1).is_none());
    assert!(w.lookup(2, KEY2).is_none());
    // joining a pending lookup is always possible
    assert!(w.lookup(3, KEY1).is_none());
    let answer = w.lookup(4, KEY3).unwrap();
    assert_eq!(answer.hash, key_hash(KEY3));
    assert_eq!(failure(Some(answer)), LookupFailure::Busy);
    assert_eq!(w.host.count(Counter::LookupFailed(LookupFailure::Busy)), 1);
    assert_eq!(w.out.calls().count(), 2);
}

#[test]
fn the_breaker_opens_probes_half_open_and_closes() {
    let cfg = keys_only();
    let mut w = Worker::new(&cfg, Fake::new());
    let fail = |w: &mut Worker<'_>, ctx: u32, key: &str| {
        assert!(w.lookup(ctx, key).is_none());
        w.tick();
        let token = w.host.last_sent().token;
        w.answer(token, json_answer(500, &json!({})))
    };
    fail(&mut w, 1, KEY1);
    assert_eq!(w.out.breaker_state(), BreakerState::Closed);
    assert_eq!(w.host.count(Counter::BreakerOpened), 0);
    fail(&mut w, 2, KEY2);
    // failure_threshold 2: open for open_s 3
    assert_eq!(w.out.breaker_state(), BreakerState::Open { until_ms: NOW + 3_000 });
    assert_eq!(
        w.host.breaker.last(),
        Some(&BreakerState::Open { until_ms: NOW + 3_000 })
    );
    assert_eq!(w.host.count(Counter::BreakerOpened), 1);
    assert!(w.host.warnings().iter().any(|m| m.contains("circuit open")));

    // open: refused at once, nothing queued or sent
    let sent = w.host.sent.len();
    assert_eq!(failure(w.lookup(3, KEY3)), LookupFailure::CircuitOpen);
    assert_eq!(w.host.count(Counter::LookupFailed(LookupFailure::CircuitOpen)), 1);
    assert_eq!(w.out.calls().count(), 0);
    w.host.now = NOW + 2_999;
    assert_eq!(failure(w.lookup(3, KEY3)), LookupFailure::CircuitOpen);
    assert_eq!(w.host.sent.len(), sent);

    // after open_s: one probe, other keys still refused while it is out
    w.host.now = NOW + 3_000;
    assert!(w.lookup(4, KEY3).is_none());
    assert_eq!(w.out.breaker_state(), BreakerState::HalfOpen);
    assert_eq!(w.host.breaker.last(), Some(&BreakerState::HalfOpen));
    assert_eq!(failure(w.lookup(5, KEY1)), LookupFailure::CircuitOpen);
    // ... but requests for the probed key join it
    assert!(w.lookup(6, KEY3).is_none());
    // the probe fails: open again, the open counter moves once more
    w.tick();
    let token = w.host.last_sent().token;
    w.answer(token, json_answer(502, &json!({})));
    assert_eq!(w.out.breaker_state(), BreakerState::Open { until_ms: NOW + 6_000 });
    assert_eq!(w.host.count(Counter::BreakerOpened), 2);

    // the next probe succeeds: closed
    w.host.now = NOW + 6_000;
    assert!(w.lookup(7, KEY3).is_none());
    w.tick();
    let token = w.host.last_sent().token;
    let (contexts, _) = single(w.answer(token, json_answer(200, &valid(KEY3, 60))));
    assert_eq!(contexts, [7]);
    assert_eq!(w.out.breaker_state(), BreakerState::Closed);
    assert!(w.lookup(8, KEY1).is_none());
}

#[test]
fn another_workers_answer_closes_a_half_open_breaker() {
    let cfg = keys_only();
    let mut w = Worker::new(&cfg, Fake::new());
    for (ctx, key) in [(1, KEY1), (2, KEY2)] {
        w.lookup(ctx, key);
        w.tick();
        let token = w.host.last_sent().token;
        w.answer(token, json_answer(500, &json!({})));
    }
    w.host.now = NOW + 3_000;
    assert!(w.lookup(3, KEY3).is_none());
    assert_eq!(w.out.breaker_state(), BreakerState::HalfOpen);
    let hash = key_hash(KEY3);
    let lookup = valid_lookup(KEY3, 60);
    w.host.put_shared(
        &table(&cfg).entry_name(&hash, slots(&cfg)),
        &table(&cfg).encode_entry(&hash, &lookup, NOW_S + 60).unwrap(),
    );
    let (contexts, answer) = single(w.tick());
    assert_eq!(contexts, [3]);
    assert!(answer.unwrap().result.is_ok());
    assert_eq!(w.out.breaker_state(), BreakerState::Closed);
}

#[test]
fn a_lookup_that_cannot_be_sent_fails_at_once_and_warns_at_a_bounded_rate() {
    let cfg = keys_only();
    let mut w = Worker::new(&cfg, Fake::new());
    w.host.refuse_dispatch = Some(HostError::BadArgument);
    w.lookup(1, KEY1);
    let (contexts, answer) = single(w.tick());
    assert_eq!(contexts, [1]);
    assert_eq!(failure(answer), LookupFailure::NoResponse);
    let marker = table(&cfg).marker_name(&key_hash(KEY1), slots(&cfg));
    assert_eq!(w.host.shared_value(&marker), Some(vec![]), "the claim is given back");
    assert_eq!(w.host.warnings(), ["cannot call the auth service on auth: BadArgument"]);
    // a second failure within the interval is counted, not logged
    w.lookup(2, KEY2);
    let _ = w.tick();
    assert_eq!(w.host.count(Counter::LookupFailed(LookupFailure::NoResponse)), 2);
    // (the breaker's opening is not rate-limited: it happens once per outage)
    assert_eq!(
        w.host.warnings(),
        [
            "cannot call the auth service on auth: BadArgument",
            "API-key lookups keep failing: circuit open, lookups are refused for a while"
        ]
    );
}

#[test]
fn a_request_that_goes_away_is_not_woken_but_its_lookup_goes_on() {
    let cfg = keys_only();
    let mut w = Worker::new(&cfg, Fake::new());
    w.lookup(1, KEY1);
    w.lookup(2, KEY1);
    w.tick();
    w.out.forget(1);
    let token = w.host.last_sent().token;
    let (contexts, _) = single(w.answer(token, json_answer(200, &valid(KEY1, 60))));
    assert_eq!(contexts, [2]);
    // everybody gone: the answer is still cached, nobody is woken
    w.lookup(3, KEY2);
    w.tick();
    w.out.forget(3);
    let token = w.host.last_sent().token;
    assert!(w.answer(token, json_answer(200, &valid(KEY2, 60))).is_empty());
    let entry = table(&cfg).entry_name(&key_hash(KEY2), slots(&cfg));
    assert!(w.host.shared_value(&entry).is_some());
}

#[test]
fn without_api_keys_a_lookup_cannot_be_made() {
    let mut d = doc();
    d.as_object_mut().unwrap().remove("api_keys");
    d["rules"] = json!([{"name": "jwt", "match": {"prefix": "/api/"}, "jwt": {"providers": ["idp"]}}]);
    let cfg = parse(&d);
    let mut w = Worker::new(&cfg, Fake::new());
    assert_eq!(failure(w.lookup(1, KEY1)), LookupFailure::NoResponse);
}

// =============================================================================
// Revocation polls
// =============================================================================

/// Only the revocation poll: a provider with static keys and `check_revocation`.
fn polls_only() -> Config {
    let mut d = doc();
    d.as_object_mut().unwrap().remove("api_keys");
    d["providers"] = json!([{
        "name": "hs", "issuer": "https://hs", "audiences": ["api"], "algorithms": ["HS256"],
        "hmac_secrets": [{"env": "SECRET", "alg": "HS256"}], "check_revocation": true
    }]);
    d["rules"] = json!([{"name": "jwt", "match": {"prefix": "/api/"}, "jwt": {"providers": ["hs"]}}]);
    parse(&d)
}

const SECRET: &str = "0123456789abcdef0123456789abcdef-secret";

fn feed(cursor: &str, reset: bool, jtis: &[&str]) -> Value {
    let jtis: Vec<Value> = jtis
        .iter()
        .map(|j| json!({"jti": j, "expires_at": NOW_S + 3600}))
        .collect();
    json!({"cursor": cursor, "reset": reset, "poll_interval_s": 5, "revoked_before": null,
        "subjects": [], "sessions": [], "jtis": jtis})
}

/// A request with a bearer token, decided at `now`.
struct Bearer(String);

impl Request for Bearer {
    fn header(&mut self, name: &str) -> Option<String> {
        (name == "authorization").then(|| format!("Bearer {}", self.0))
    }
    fn forwarded_for(&mut self) -> Option<String> {
        None
    }
    fn peer(&mut self) -> Option<String> {
        Some("192.0.2.1:1".into())
    }
}

fn hs_token(jti: &str) -> String {
    let c = raw_claims(json!({"iss": "https://hs", "aud": "api", "sub": "alice", "jti": jti,
        "iat": NOW_S - 5, "exp": NOW_S + 3600}));
    HS256Key::from_bytes(SECRET.as_bytes()).authenticate(c).unwrap()
}

fn decide_at<'c>(w: &mut Worker<'c>, token: &str, now: u64, may_await: bool) -> Outcome<'c> {
    let attempt = Attempt {
        method: "GET",
        path: "/api/x",
        now_ms: now,
        may_await,
        answer: None,
    };
    decide(w.cfg, &mut w.st, &attempt, &mut Bearer(token.to_owned()))
}

#[test]
fn revocations_are_polled_on_schedule_and_kept_fresh_by_good_polls_only() {
    let cfg = polls_only();
    let mut w = Worker::new(&cfg, Fake::new());
    let good = hs_token("good");
    let revoked = hs_token("revoked");
    // before the first good poll: no state to check against
    assert_eq!(
        decide_at(&mut w, &good, NOW, true).verdict_deny(),
        Some(Deny::RevocationUnavailable)
    );

    assert!(w.start().is_empty());
    assert_eq!(w.host.ticks, [TICK_MS]);
    let sent = w.host.last_sent().clone();
    assert_eq!(sent.line(), ("auth", "auth", "GET", "/internal/v1/revocations"));
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {SERVICE_TOKEN}").as_str())
    );
    assert_eq!(sent.timeout_ms, TIMEOUT);
    // one poll at a time
    w.tick_at(NOW + 100);
    assert_eq!(w.host.sent.len(), 1);

    w.host.now = NOW + 200;
    assert!(w
        .answer(sent.token, json_answer(200, &feed("c1", true, &["revoked"])))
        .is_empty());
    assert_eq!(w.host.count(Counter::RevocationPollOk), 1);
    assert_eq!(
        w.host.read_limits,
        [cfg.auth_service.as_ref().unwrap().max_response_bytes]
    );
    assert_eq!(w.st.revocation_fresh_until_ms, NOW + 200 + 10_000);
    assert!(matches!(
        decide_at(&mut w, &good, NOW + 300, true).verdict,
        Verdict::Allow(_)
    ));
    assert_eq!(
        decide_at(&mut w, &revoked, NOW + 300, true).verdict_deny(),
        Some(Deny::Revoked)
    );

    // the next poll is due revocation_poll_s after the last was sent, with the cursor
    w.tick_at(NOW + 4_999);
    assert_eq!(w.host.sent.len(), 1);
    w.tick_at(NOW + 5_000);
    assert_eq!(w.host.last_sent().path, "/internal/v1/revocations?since=c1");

    // a failed poll keeps the state but does not make it fresher
    let token = w.host.last_sent().token;
    w.host.now = NOW + 5_100;
    w.answer(token, json_answer(500, &json!({})));
    assert_eq!(w.host.count(Counter::RevocationPollFailed), 1);
    assert_eq!(w.st.revocation_fresh_until_ms, NOW + 10_200);
    assert_eq!(
        decide_at(&mut w, &revoked, NOW + 5_200, true).verdict_deny(),
        Some(Deny::Revoked)
    );
    assert_eq!(
        w.host.warnings(),
        ["revocation poll failed (bad_status); keeping the last state"]
    );
    // a lost poll counts as failed at its deadline; the next is sent when due
    w.tick_at(NOW + 10_000);
    let lost = w.host.last_sent().token;
    w.tick_at(NOW + 10_000 + DEADLINE - 1);
    assert_eq!(w.host.count(Counter::RevocationPollFailed), 1);
    w.tick_at(NOW + 10_000 + DEADLINE);
    assert_eq!(w.host.count(Counter::RevocationPollFailed), 2);
    assert!(w.answer(lost, json_answer(200, &feed("c9", true, &[]))).is_empty());
    assert_eq!(w.host.count(Counter::RevocationPollOk), 1, "a late answer is ignored");
    // stale: tokens of the provider are refused until a poll succeeds again
    assert_eq!(
        decide_at(&mut w, &good, NOW + 10_200, true).verdict_deny(),
        Some(Deny::RevocationUnavailable)
    );
    w.tick_at(NOW + 15_000);
    let token = w.host.last_sent().token;
    assert_eq!(w.host.last_sent().path, "/internal/v1/revocations?since=c1");
    w.answer(token, json_answer(200, &feed("c2", false, &[])));
    assert!(matches!(
        decide_at(&mut w, &good, NOW + 15_000, true).verdict,
        Verdict::Allow(_)
    ));
}

/// The `revocation.state_age_ms` gauge: nothing before the first good poll, then the time
/// since the last good one, growing through failed polls and reset by the next good one.
#[test]
fn the_age_of_the_revocation_state_is_reported_each_tick() {
    let cfg = polls_only();
    let mut w = Worker::new(&cfg, Fake::new());
    w.start();
    w.tick_at(NOW + 100);
    assert_eq!(w.host.ages, Vec::<u64>::new(), "no state yet: no age");
    let first = w.host.last_sent().token;
    w.host.now = NOW + 200;
    w.answer(first, json_answer(200, &feed("c1", true, &[])));
    w.tick_at(NOW + 1_000);
    assert_eq!(w.host.ages, [800]);
    w.tick_at(NOW + 5_000);
    let failing = w.host.last_sent().token;
    w.host.now = NOW + 5_100;
    w.answer(failing, json_answer(503, &json!({})));
    w.tick_at(NOW + 6_000);
    assert_eq!(
        w.host.ages.last(),
        Some(&5_800),
        "a failed poll does not make the state younger"
    );
    w.tick_at(NOW + 10_000);
    let good = w.host.last_sent().token;
    w.host.now = NOW + 10_050;
    w.answer(good, json_answer(200, &feed("c2", false, &[])));
    w.tick_at(NOW + 10_250);
    assert_eq!(w.host.ages.last(), Some(&200));
}

/// An HS token for `sub` in `tenant` (the default `tenant` claim), issued before [`NOW_S`].
fn tenant_token(sub: &str, tenant: Option<&str>) -> String {
    let mut c = json!({"iss": "https://hs", "aud": "api", "sub": sub, "jti": format!("{sub}-{tenant:?}"),
        "iat": NOW_S - 5, "exp": NOW_S + 3600});
    if let Some(t) = tenant {
        c["tenant"] = json!(t);
    }
    HS256Key::from_bytes(SECRET.as_bytes())
        .authenticate(raw_claims(c))
        .unwrap()
}

/// The feed's tenant-scoped cut-offs (contract 1.2) reach the decision
/// through the core's poll: one tenant's "logout everywhere" for `alice`
/// does not touch another tenant's `alice`, a disabled tenant's tokens are
/// all refused, and a token that names no tenant gets every tenant's
/// cut-offs (fail closed).
#[test]
fn a_polled_feed_revokes_per_tenant() {
    let cfg = polls_only();
    let mut w = Worker::new(&cfg, Fake::new());
    w.start();
    let token = w.host.last_sent().token;
    let mut answer = feed("c1", true, &[]);
    answer["subjects"] = json!([{"subject": "alice", "tenant": "acme", "revoked_before": NOW_S}]);
    answer["tenants"] = json!([{"tenant": "globex", "revoked_before": NOW_S}]);
    w.answer(token, json_answer(200, &answer));
    assert_eq!(w.host.count(Counter::RevocationPollOk), 1);
    let cases = [
        (tenant_token("alice", Some("acme")), Some(Deny::Revoked)),
        (tenant_token("alice", Some("initech")), None),
        (tenant_token("bob", Some("acme")), None),
        (tenant_token("bob", Some("globex")), Some(Deny::Revoked)),
        (tenant_token("alice", None), Some(Deny::Revoked)),
        (tenant_token("bob", None), Some(Deny::Revoked)),
    ];
    for (token, want) in cases {
        let o = decide_at(&mut w, &token, NOW + 100, true);
        assert_eq!(o.verdict_deny(), want, "{token}");
        if want.is_none() {
            assert!(matches!(o.verdict, Verdict::Allow(_)), "{:?}", o.verdict);
        }
    }
}

#[test]
fn a_poll_refused_for_too_many_entries_asks_for_a_snapshot_next() {
    let mut d = doc();
    d.as_object_mut().unwrap().remove("api_keys");
    d["auth_service"]["max_revocation_entries"] = json!(2);
    d["providers"] = json!([{
        "name": "hs", "issuer": "https://hs", "audiences": ["api"], "algorithms": ["HS256"],
        "hmac_secrets": [{"env": "SECRET", "alg": "HS256"}], "check_revocation": true
    }]);
    d["rules"] = json!([]);
    let cfg = parse(&d);
    let mut w = Worker::new(&cfg, Fake::new());
    w.start();
    let token = w.host.last_sent().token;
    w.answer(token, json_answer(200, &feed("c1", true, &["a"])));
    w.tick_at(NOW + 5_000);
    let token = w.host.last_sent().token;
    w.answer(token, json_answer(200, &feed("c2", false, &["b", "c", "d"])));
    w.tick_at(NOW + 10_000);
    assert_eq!(w.host.last_sent().path, "/internal/v1/revocations");
}

#[test]
fn a_poll_that_cannot_be_sent_is_a_failure_and_the_schedule_goes_on() {
    let cfg = polls_only();
    let mut w = Worker::new(&cfg, Fake::new());
    w.host.refuse_dispatch = Some(HostError::BadArgument);
    w.start();
    assert_eq!(w.host.count(Counter::RevocationPollFailed), 1);
    assert_eq!(w.host.warnings(), ["cannot poll revocations from auth: BadArgument"]);
    w.host.refuse_dispatch = None;
    w.tick_at(NOW + 4_999);
    assert!(w.host.sent.is_empty());
    w.tick_at(NOW + 5_000);
    assert_eq!(w.host.sent.len(), 1);
}

#[test]
fn nothing_is_polled_without_a_provider_that_checks_revocations() {
    let mut d = doc();
    d.as_object_mut().unwrap().remove("api_keys");
    d["providers"] = json!([{
        "name": "hs", "issuer": "https://hs", "audiences": ["api"], "algorithms": ["HS256"],
        "hmac_secrets": [{"env": "SECRET", "alg": "HS256"}]
    }]);
    d["rules"] = json!([]);
    let cfg = parse(&d);
    assert!(cfg.auth_service.is_some());
    let mut w = Worker::new(&cfg, Fake::new());
    assert!(w.start().is_empty());
    w.tick_at(NOW + 60_000);
    assert!(w.host.sent.is_empty());
    assert!(w.host.ticks.is_empty(), "no tick without any outbound call");
}

// =============================================================================
// JWKS fetches
// =============================================================================

/// Only remote JWKS: no auth service.
fn jwks_only() -> Config {
    let mut d = doc();
    d.as_object_mut().unwrap().remove("api_keys");
    d.as_object_mut().unwrap().remove("auth_service");
    d["providers"][0]["check_revocation"] = json!(false);
    d["rules"] = json!([{"name": "jwt", "match": {"prefix": "/api/"}, "jwt": {"providers": ["idp"]}}]);
    parse(&d)
}

fn jwks_of(kp: &ES256KeyPair, kid: &str) -> Value {
    let raw = kp.public_key().public_key().to_bytes_uncompressed();
    json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
        "x": b64::encode_url(&raw[1..33]), "y": b64::encode_url(&raw[33..65])}]})
}

fn es_token(kp: &ES256KeyPair) -> String {
    let c = raw_claims(json!({"iss": "https://idp", "aud": "api", "sub": "alice",
        "iat": NOW_S - 5, "exp": NOW_S + 3600}));
    kp.sign(c).unwrap()
}

/// Decides a request for `token` at `now` that must wait for provider 0's
/// keys (`dispatch`: it starts the fetch rather than joins one), and parks
/// it as `context`, as the shell does.
fn park_for_keys(w: &mut Worker<'_>, context: u32, token: &str, now: u64, dispatch: bool) {
    let o = decide_at(w, token, now, true);
    let Verdict::AwaitKeys { provider, dispatch: d } = o.verdict else {
        panic!("{:?}", o.verdict)
    };
    assert_eq!((provider, d), (0, dispatch));
    w.out.await_keys(context, provider);
}

trait VerdictDeny {
    fn verdict_deny(&self) -> Option<Deny<'_>>;
}

impl VerdictDeny for Outcome<'_> {
    fn verdict_deny(&self) -> Option<Deny<'_>> {
        match &self.verdict {
            Verdict::Deny(d) => Some(*d),
            _ => None,
        }
    }
}

#[test]
fn jwks_are_fetched_at_start_refreshed_on_schedule_and_kept_on_failure() {
    let cfg = jwks_only();
    let mut w = Worker::new(&cfg, Fake::new());
    let k1 = ES256KeyPair::generate().with_key_id("k1");
    assert!(w.start().is_empty());
    assert_eq!(w.host.ticks, [TICK_MS]);
    let sent = w.host.last_sent().clone();
    assert_eq!(sent.line(), ("idp", "idp", "GET", "/jwks"));
    assert_eq!(sent.timeout_ms, 1000);
    assert_eq!(
        w.state_of(&Purpose::Jwks(0)),
        Some(CallState::Sent {
            token: sent.token,
            deadline_ms: NOW + 2_000
        })
    );
    w.tick_at(NOW + 100);
    assert_eq!(w.host.sent.len(), 1, "one fetch at a time");

    w.host.now = NOW + 100;
    assert!(w.answer(sent.token, json_answer(200, &jwks_of(&k1, "k1"))).is_empty());
    assert_eq!(w.host.count(Counter::JwksFetchOk), 1);
    assert_eq!(w.host.read_limits, [2048], "read within remote_jwks.max_response_bytes");
    assert!(w.st.remote[0].keys().unwrap().has_kid("k1"));
    assert!(matches!(
        decide_at(&mut w, &es_token(&k1), NOW + 100, true).verdict,
        Verdict::Allow(_)
    ));

    // refreshed after refresh_interval_s
    w.tick_at(NOW + 100 + 599_999);
    assert_eq!(w.host.sent.len(), 1);
    w.tick_at(NOW + 100 + 600_000);
    assert_eq!(w.host.sent.len(), 2);
    // a failed refresh keeps the last good keys and retries after 1 s, then 2 s
    let t = NOW + 600_100;
    let token = w.host.last_sent().token;
    w.host.now = t;
    w.answer(token, json_answer(500, &json!({})));
    assert_eq!(w.host.count(Counter::JwksFetchFailed), 1);
    assert!(w.host.warnings()[0].contains("keeping the last good keys"));
    assert!(w.st.remote[0].keys().unwrap().has_kid("k1"));
    assert!(matches!(
        decide_at(&mut w, &es_token(&k1), t, true).verdict,
        Verdict::Allow(_)
    ));
    w.tick_at(t + 999);
    assert_eq!(w.host.sent.len(), 2);
    w.tick_at(t + 1_000);
    assert_eq!(w.host.sent.len(), 3);
    let token = w.host.last_sent().token;
    w.host.now = t + 1_000;
    // hostile answers are failures too, never installed
    w.answer(token, json_answer(200, &json!({"keys": [{"kty": "oct", "k": "AAAA"}]})));
    assert_eq!(w.host.count(Counter::JwksFetchFailed), 2);
    w.tick_at(t + 2_999);
    assert_eq!(w.host.sent.len(), 3);
    w.tick_at(t + 3_000);
    assert_eq!(w.host.sent.len(), 4);
    let token = w.host.last_sent().token;
    w.host.now = t + 3_000;
    let huge = json!({"keys": [], "pad": "x".repeat(4096)});
    w.answer(token, json_answer(200, &huge));
    assert_eq!(w.host.count(Counter::JwksFetchFailed), 3);
    assert!(w.st.remote[0].keys().unwrap().has_kid("k1"));
}

#[test]
fn a_request_with_an_unknown_kid_asks_for_a_fetch_that_the_next_tick_sends() {
    let cfg = jwks_only();
    let mut w = Worker::new(&cfg, Fake::new());
    let k1 = ES256KeyPair::generate().with_key_id("k1");
    let k2 = ES256KeyPair::generate().with_key_id("k2");
    w.start();
    let token = w.host.last_sent().token;
    w.answer(token, json_answer(200, &jwks_of(&k1, "k1")));

    // a token signed by a new key: the request starts a fetch and waits
    let t2 = es_token(&k2);
    park_for_keys(&mut w, 10, &t2, NOW + 1_000, true);
    // another request joins it
    park_for_keys(&mut w, 11, &t2, NOW + 1_010, false);
    assert_eq!(w.state_of(&Purpose::Jwks(0)), Some(CallState::Queued));
    assert_eq!(w.waiters_of(&Purpose::Jwks(0)), [10, 11]);
    assert_eq!(w.host.sent.len(), 1, "not sent by the request");

    // the tick sends it; its answer wakes both, and they are then allowed
    assert!(w.tick_at(NOW + 1_100).is_empty());
    assert_eq!(w.host.sent.len(), 2);
    let token = w.host.last_sent().token;
    // its deadline counts from when the request asked
    assert_eq!(
        w.state_of(&Purpose::Jwks(0)),
        Some(CallState::Sent {
            token,
            deadline_ms: NOW + 1_000 + 2_000
        })
    );
    w.host.now = NOW + 1_200;
    let (contexts, answer) = single(w.answer(token, json_answer(200, &jwks_of(&k2, "k2"))));
    assert_eq!(contexts, [10, 11]);
    assert!(answer.is_none());
    assert!(matches!(
        decide_at(&mut w, &t2, NOW + 1_200, false).verdict,
        Verdict::Allow(_)
    ));
    // and within min_refetch_interval_s, another unknown kid is refused at once
    let k3 = ES256KeyPair::generate().with_key_id("k3");
    assert_eq!(
        decide_at(&mut w, &es_token(&k3), NOW + 2_000, true).verdict_deny(),
        Some(Deny::Token(JwtError::UnknownKid))
    );
}

#[test]
fn a_fetch_unanswered_by_its_deadline_wakes_its_waiters_and_its_late_answer_is_ignored() {
    let cfg = jwks_only();
    let mut w = Worker::new(&cfg, Fake::new());
    let k1 = ES256KeyPair::generate().with_key_id("k1");
    w.start();
    let token = w.host.last_sent().token;
    // a request waits for the first keys
    park_for_keys(&mut w, 5, &es_token(&k1), NOW + 10, false);
    assert!(w.tick_at(NOW + 1_999).is_empty());
    let (contexts, answer) = single(w.tick_at(NOW + 2_000));
    assert_eq!(contexts, [5]);
    assert!(answer.is_none());
    assert_eq!(w.host.count(Counter::JwksFetchFailed), 1);
    assert_eq!(w.host.warnings(), ["JWKS fetch for provider idp got no answer in time"]);
    // the woken request is refused: no keys (it may not wait twice)
    assert_eq!(
        decide_at(&mut w, &es_token(&k1), NOW + 2_000, false).verdict_deny(),
        Some(Deny::Token(JwtError::KeysUnavailable))
    );
    // the late answer is not installed
    assert!(w.answer(token, json_answer(200, &jwks_of(&k1, "k1"))).is_empty());
    assert!(w.st.remote[0].keys().is_none());
    assert_eq!(w.host.count(Counter::JwksFetchOk), 0);
    // the retry follows the backoff
    w.tick_at(NOW + 2_999);
    assert_eq!(w.host.sent.len(), 1);
    w.tick_at(NOW + 3_000);
    assert_eq!(w.host.sent.len(), 2);
}

#[test]
fn a_fetch_that_cannot_be_sent_wakes_its_waiters_and_backs_off() {
    let cfg = jwks_only();
    let mut w = Worker::new(&cfg, Fake::new());
    w.host.refuse_dispatch = Some(HostError::BadArgument);
    assert!(w.start().is_empty());
    assert_eq!(w.host.count(Counter::JwksFetchFailed), 1);
    assert_eq!(
        w.host.warnings(),
        ["cannot fetch JWKS for provider idp from cluster idp: BadArgument"]
    );
    assert_eq!(w.st.remote[0].failures(), 1);
    // after the backoff, a request asks again; the send fails again and wakes it
    let k1 = ES256KeyPair::generate().with_key_id("k1");
    park_for_keys(&mut w, 3, &es_token(&k1), NOW + 1_000, true);
    let (contexts, _) = single(w.tick_at(NOW + 1_000));
    assert_eq!(contexts, [3]);
    assert_eq!(w.host.count(Counter::JwksFetchFailed), 2);
    assert_eq!(w.out.calls().count(), 0);
}

#[test]
fn a_request_that_waits_for_keys_and_goes_away_is_not_woken() {
    let cfg = jwks_only();
    let mut w = Worker::new(&cfg, Fake::new());
    w.start();
    w.out.await_keys(1, 0);
    w.out.await_keys(2, 0);
    w.out.forget(1);
    let token = w.host.last_sent().token;
    let k1 = ES256KeyPair::generate().with_key_id("k1");
    let (contexts, _) = single(w.answer(token, json_answer(200, &jwks_of(&k1, "k1"))));
    assert_eq!(contexts, [2]);
}

// =============================================================================
// The tick
// =============================================================================

#[test]
fn a_tick_that_cannot_be_set_is_logged() {
    let cfg = config();
    let mut w = Worker::new(&cfg, Fake::new());
    w.host.refuse_tick = true;
    w.start();
    let errors: Vec<_> = w.host.logs.iter().filter(|(l, _)| *l == Level::Error).collect();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].1.starts_with("cannot set the tick period"));
    // the first fetch and poll still go out
    assert_eq!(w.host.sent.len(), 2);
}

#[test]
fn one_tick_serves_every_kind_of_call() {
    let cfg = config();
    let mut w = Worker::new(&cfg, Fake::new());
    w.start();
    // the JWKS fetch and the revocation poll, at once
    let paths: Vec<&str> = w.host.sent.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["/jwks", "/internal/v1/revocations"]);
    w.lookup(1, KEY1);
    w.tick();
    assert_eq!(w.host.last_sent().path, "/internal/v1/api-keys/lookup");
    let purposes: Vec<Purpose> = w.out.calls().map(|c| c.purpose.clone()).collect();
    assert_eq!(purposes.len(), 3);
    assert!(purposes.contains(&Purpose::Jwks(0)));
    assert!(purposes.contains(&Purpose::RevocationPoll));
    assert!(purposes.contains(&Purpose::Lookup(key_hash(KEY1))));
    // each answer goes to its own call, whatever the order
    let tokens: Vec<u32> = w.host.sent.iter().map(|s| s.token).collect();
    let (contexts, answer) = single(w.answer(tokens[2], json_answer(200, &valid(KEY1, 60))));
    assert_eq!(contexts, [1]);
    assert!(answer.unwrap().result.is_ok());
    w.answer(tokens[1], json_answer(200, &feed("c1", true, &[])));
    assert_eq!(w.host.count(Counter::RevocationPollOk), 1);
    assert_eq!(w.out.calls().count(), 1);
}

// ---- the lookup budget ----------------------------------------------------------

fn budget_config(budget: Value) -> Config {
    let mut d = doc();
    d["api_keys"]["max_pending_lookups"] = json!(100);
    d["api_keys"]["lookup_budget"] = budget;
    parse(&d)
}

fn key_n(n: usize) -> String {
    format!("sk_{n:064x}")
}

impl Worker<'_> {
    fn lookup_from(&mut self, context: u32, key: &str, client: &str) -> Option<KeyAnswer> {
        let client = Some(client.parse().unwrap());
        self.out
            .await_lookup(self.cfg, &mut self.host, context, key_hash(key), client)
    }
}

fn over_budget(a: Option<KeyAnswer>) -> Option<u64> {
    match a?.result {
        Err(LookupFailure::OverBudget { retry_after_s }) => Some(retry_after_s),
        other => panic!("expected over budget, got {other:?}"),
    }
}

#[test]
fn new_lookups_are_charged_to_one_budget_per_client_across_workers() {
    let cfg = budget_config(json!({"burst": 3, "per_minute": 60}));
    let mut a = Worker::new(&cfg, Fake::new());
    let mut b = Worker::new(&cfg, a.host.worker());
    // client X: three new keys on two workers take its burst
    assert!(a.lookup_from(1, &key_n(1), "198.51.100.7").is_none());
    assert!(b.lookup_from(2, &key_n(2), "198.51.100.7").is_none());
    // joining a lookup under way costs nothing
    assert!(a.lookup_from(3, &key_n(1), "198.51.100.7").is_none());
    assert!(a.lookup_from(4, &key_n(3), "::ffff:198.51.100.7").is_none());
    // the fourth new key, on either worker, from either form of the address
    assert_eq!(over_budget(b.lookup_from(5, &key_n(4), "198.51.100.7")), Some(1));
    assert_eq!(over_budget(a.lookup_from(6, &key_n(5), "::ffff:198.51.100.7")), Some(1));
    assert_eq!(b.host.count(Counter::LookupBudgetExceeded), 1);
    assert_eq!(a.host.count(Counter::LookupBudgetExceeded), 1);
    assert!(
        !a.host
            .counters
            .iter()
            .chain(&b.host.counters)
            .any(|c| matches!(c, Counter::LookupFailed(_))),
        "over budget is not a failed lookup"
    );
    // nothing was queued for the refused keys, and no call is made for them
    assert_eq!(b.waiters_of(&Purpose::Lookup(key_hash(&key_n(4)))), Vec::<u32>::new());
    a.tick();
    b.tick();
    let asked: Vec<String> = a
        .host
        .sent
        .iter()
        .chain(&b.host.sent)
        .filter_map(|s| s.body.clone())
        .map(|b| String::from_utf8(b).unwrap())
        .collect();
    assert_eq!(asked.len(), 3, "{asked:?}");
    // another client still gets its lookups
    assert!(b.lookup_from(7, &key_n(6), "203.0.113.1").is_none());
    assert!(b.lookup_from(8, &key_n(7), "2001:db8:1:2::1").is_none());
    // one lookup a second comes back
    a.host.now = NOW + 1_000;
    assert!(a.lookup_from(9, &key_n(8), "198.51.100.7").is_none());
    assert_eq!(over_budget(a.lookup_from(10, &key_n(9), "198.51.100.7")), Some(1));
}

#[test]
fn one_ipv6_prefix_is_one_client() {
    let cfg = budget_config(json!({"burst": 2, "ipv6_prefix": 64}));
    let mut w = Worker::new(&cfg, Fake::new());
    assert!(w.lookup_from(1, &key_n(1), "2001:db8:1:2::1").is_none());
    assert!(w.lookup_from(2, &key_n(2), "2001:db8:1:2:ffff::9").is_none());
    assert!(over_budget(w.lookup_from(3, &key_n(3), "2001:db8:1:2:abcd::1")).is_some());
    assert!(w.lookup_from(4, &key_n(4), "2001:db8:1:3::1").is_none());
}

#[test]
fn a_lost_compare_and_swap_is_retried_and_garbage_is_a_full_bucket() {
    let cfg = budget_config(json!({"burst": 1, "slots": 1}));
    let mut w = Worker::new(&cfg, Fake::new());
    // the only slot holds garbage: read as a full bucket, then overwritten
    let table = &cfg.api_keys.as_ref().unwrap().lookup_budget.as_ref().unwrap().table;
    let name = table.slot_name(&edge_auth_core::api_key::budget::client_key(None, 64), 1);
    assert!(name.starts_with("edge-auth.budget."), "{name}");
    w.host.put_shared(&name, b"budget 00 99999999999999999999999 x");
    w.host.lose_cas = true;
    assert!(w.lookup_from(1, &key_n(1), "192.0.2.1").is_none());
    let written = String::from_utf8(w.host.shared_value(&name).unwrap()).unwrap();
    assert!(
        written.starts_with("budget ") && written.ends_with(&format!(" 0 {NOW}")),
        "{written}"
    );
    // every client shares the one slot: the next is refused
    assert!(over_budget(w.lookup_from(2, &key_n(2), "203.0.113.1")).is_some());
}

#[test]
fn a_refused_charge_is_no_breaker_failure_and_no_budget_means_no_charge() {
    let cfg = budget_config(json!({"burst": 1}));
    let mut w = Worker::new(&cfg, Fake::new());
    assert!(w.lookup_from(1, &key_n(1), "192.0.2.1").is_none());
    assert!(over_budget(w.lookup_from(2, &key_n(2), "192.0.2.1")).is_some());
    assert_eq!(w.out.breaker_state(), BreakerState::Closed);
    assert_eq!(w.host.count(Counter::BreakerOpened), 0);
    // without lookup_budget, nothing is written under budget names
    let cfg = parse(&doc());
    let mut w = Worker::new(&cfg, Fake::new());
    for n in 0..2 {
        assert!(w.lookup_from(n, &key_n(n as usize), "192.0.2.1").is_none());
    }
    assert!(!w
        .host
        .shared
        .borrow()
        .writes
        .iter()
        .any(|(k, _)| k.starts_with("edge-auth.budget.")));
}

// =============================================================================
// OpenID Connect discovery
// =============================================================================

const DISCOVERY: &str = "/.well-known/openid-configuration";

/// Remote JWKS named by a discovery document, no auth service.
fn discovery_only() -> Config {
    let mut d = doc();
    d.as_object_mut().unwrap().remove("api_keys");
    d.as_object_mut().unwrap().remove("auth_service");
    d["providers"][0]["check_revocation"] = json!(false);
    let remote = d["providers"][0]["remote_jwks"].as_object_mut().unwrap();
    remote.remove("path");
    remote.insert("discovery".into(), json!(DISCOVERY));
    d["rules"] = json!([{"name": "jwt", "match": {"prefix": "/api/"}, "jwt": {"providers": ["idp"]}}]);
    parse(&d)
}

fn discovery_doc(issuer: &str, jwks_uri: &str) -> Value {
    json!({"issuer": issuer, "jwks_uri": jwks_uri, "response_types_supported": ["code"]})
}

#[test]
fn discovery_reads_the_document_then_the_jwks_and_again_on_each_refresh() {
    let cfg = discovery_only();
    let mut w = Worker::new(&cfg, Fake::new());
    let k1 = ES256KeyPair::generate().with_key_id("k1");
    let k2 = ES256KeyPair::generate().with_key_id("k2");
    w.start();
    assert_eq!(w.host.last_sent().line(), ("idp", "idp", "GET", DISCOVERY));
    // the two calls share one deadline, long enough for both
    let token = w.host.last_sent().token;
    assert_eq!(
        w.state_of(&Purpose::Jwks(0)),
        Some(CallState::Sent {
            token,
            deadline_ms: NOW + 3_000
        })
    );
    let doc = discovery_doc("https://idp", "https://idp/oidc/keys");
    assert!(w.answer(token, json_answer(200, &doc)).is_empty());
    assert_eq!(w.host.count(Counter::DiscoveryOk), 1);
    assert_eq!(w.host.last_sent().line(), ("idp", "idp", "GET", "/oidc/keys"));
    let token = w.host.last_sent().token;
    w.answer(token, json_answer(200, &jwks_of(&k1, "k1")));
    assert_eq!(w.host.count(Counter::JwksFetchOk), 1);
    assert!(matches!(
        decide_at(&mut w, &es_token(&k1), NOW + 100, true).verdict,
        Verdict::Allow(_)
    ));

    // an unknown kid refetches the JWKS the document named, without reading it again
    park_for_keys(&mut w, 10, &es_token(&k2), NOW + 1_000, true);
    w.tick_at(NOW + 1_100);
    assert_eq!(w.host.last_sent().path, "/oidc/keys");
    let token = w.host.last_sent().token;
    let (contexts, _) = single(w.answer(token, json_answer(200, &jwks_of(&k2, "k2"))));
    assert_eq!(contexts, [10]);
    assert_eq!(w.host.count(Counter::DiscoveryOk), 1);

    // the scheduled refresh reads the document again; one whose issuer has
    // a trailing slash is refused, counted, logged, and the keys are kept
    let sent = w.host.sent.len();
    w.tick_at(NOW + 1_200 + 600_000);
    assert_eq!(w.host.sent.len(), sent + 1);
    assert_eq!(w.host.last_sent().path, DISCOVERY);
    let token = w.host.last_sent().token;
    w.host.now = NOW + 1_300 + 600_000;
    w.answer(
        token,
        json_answer(200, &discovery_doc("https://idp/", "https://idp/oidc/keys")),
    );
    assert_eq!(w.host.count(Counter::DiscoveryFailed), 1);
    assert_eq!(w.host.sent.len(), sent + 1, "no JWKS fetch after a refused document");
    assert!(
        w.host.warnings().iter().any(|m| m.contains("issuer")),
        "{:?}",
        w.host.logs
    );
    assert!(w.st.remote[0].keys().unwrap().has_kid("k2"));
    // the retry reads the document again
    w.tick_at(NOW + 1_300 + 601_000);
    assert_eq!(w.host.last_sent().path, DISCOVERY);
}

#[test]
fn a_refused_document_leaves_the_provider_without_keys() {
    let cfg = discovery_only();
    for (answer, why) in [
        (
            json_answer(200, &discovery_doc("https://evil", "https://idp/keys")),
            "issuer",
        ),
        (
            json_answer(200, &discovery_doc("https://idp", "http://idp/keys")),
            "https",
        ),
        (
            json_answer(200, &discovery_doc("https://idp", "https://evil/keys")),
            "authority",
        ),
        (json_answer(200, &json!({"issuer": "https://idp"})), "jwks_uri"),
        (json_answer(404, &json!({})), "status"),
        (
            json_answer(
                200,
                &json!({"issuer": "https://idp", "jwks_uri": "https://idp/k", "pad": "x".repeat(4096)}),
            ),
            "exceeds",
        ),
    ] {
        let mut w = Worker::new(&cfg, Fake::new());
        let k1 = ES256KeyPair::generate().with_key_id("k1");
        w.start();
        park_for_keys(&mut w, 7, &es_token(&k1), NOW + 10, false);
        let token = w.host.last_sent().token;
        let (contexts, _) = single(w.answer(token, answer));
        assert_eq!(contexts, [7], "{why}");
        assert_eq!(w.host.count(Counter::DiscoveryFailed), 1, "{why}");
        assert_eq!(w.host.sent.len(), 1, "{why}: the JWKS is not fetched");
        assert!(
            w.host.warnings().iter().any(|m| m.contains(why)),
            "{why}: {:?}",
            w.host.logs
        );
        assert_eq!(
            decide_at(&mut w, &es_token(&k1), NOW + 20, false).verdict_deny(),
            Some(Deny::Token(JwtError::KeysUnavailable)),
            "{why}"
        );
    }
}

#[test]
fn discovery_configuration_is_validated() {
    let mut d = doc();
    d["providers"][0]["remote_jwks"]["discovery"] = json!(DISCOVERY);
    let e = config::parse(d.to_string().as_bytes(), &|_| Some(SERVICE_TOKEN.to_owned())).unwrap_err();
    assert_eq!(e.field, "providers[0].remote_jwks", "{e}");
    for bad in [
        "/openid-configuration",
        "https://idp/.well-known/openid-configuration",
        "/x/.well-known/openid-configuration?a=1",
        "",
    ] {
        let mut d = doc();
        let remote = d["providers"][0]["remote_jwks"].as_object_mut().unwrap();
        remote.remove("path");
        remote.insert("discovery".into(), json!(bad));
        let e = config::parse(d.to_string().as_bytes(), &|_| Some(SERVICE_TOKEN.to_owned())).unwrap_err();
        assert_eq!(e.field, "providers[0].remote_jwks.discovery", "{bad}: {e}");
    }
}
