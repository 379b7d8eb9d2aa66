//! One revocation poll and one JWKS fetch per proxy, whatever its worker
//! count: several fake workers share one shared-data store (with
//! compare-and-swap as Envoy does it) and one clock; the lease holder
//! fetches and publishes, the others install what it published; a holder
//! that vanishes is replaced; a reload with the same feed serves at once;
//! shared-data names do not grow with reloads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::cell::RefCell;
use std::rc::Rc;

use edge_auth_core::api_key::breaker::BreakerState;
use edge_auth_core::api_key::{key_hash, LookupFailure};
use edge_auth_core::b64;
use edge_auth_core::config::{self, Config};
use edge_auth_core::decision::{decide, Attempt, Deny, Request, State, Verdict};
use edge_auth_core::jwt::revocation::{Limits, RevocationState};
use edge_auth_core::jwt::{inspect, Claims};
use edge_auth_core::outbound::shared_fetch::{self, Shared, LEASE_MS};
use edge_auth_core::outbound::{CallResponse, Counter, Host, Outbound, TICK_MS};
use jwt_simple::prelude::*;
use serde_json::{json, Value};

mod common;
use common::proxy::{Fake, Proxy};
use common::raw_claims;

const NOW_S: u64 = 1_800_000_000;
const NOW: u64 = NOW_S * 1000;
const POLL: u64 = 1_000;
const STALE: u64 = 3_000;
const TOKEN_ONE: &str = "svc-token-one-0123456789abcdef0123456789";
const SECRET: &str = "0123456789abcdef0123456789abcdef-secret";

struct Worker<'c> {
    cfg: &'c Config,
    st: State,
    out: Outbound,
    host: Fake,
}

impl<'c> Worker<'c> {
    fn new(cfg: &'c Config, proxy: &Rc<RefCell<Proxy>>, worker: usize) -> Worker<'c> {
        let mut w = Worker {
            cfg,
            st: State::new(cfg),
            out: Outbound::new(cfg),
            host: Fake::new(worker, NOW, proxy),
        };
        w.out.start(cfg, &mut w.st, &mut w.host);
        w
    }

    fn tick_at(&mut self, now: u64) {
        self.host.now = now;
        self.out.on_tick(self.cfg, &mut self.st, &mut self.host);
    }

    fn answer(&mut self, token: u32, status: u16, body: &Value) {
        let bytes = body.to_string().into_bytes();
        let size = bytes.len();
        self.host.answer = Some(CallResponse {
            status: Some(status),
            content_type: Some("application/json".into()),
            body: Some(bytes),
            retry_after: None,
        });
        self.out
            .on_response(self.cfg, &mut self.st, &mut self.host, token, size);
    }

    fn decide(&mut self, token: &str) -> Verdict<'c> {
        let attempt = Attempt {
            method: "GET",
            path: "/api/x",
            now_ms: self.host.now,
            may_await: false,
            answer: None,
        };
        decide(self.cfg, &mut self.st, &attempt, &mut Bearer(token.to_owned())).verdict
    }

    fn count(&self, c: Counter) -> usize {
        self.host.counters.iter().filter(|x| **x == c).count()
    }
}

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

fn proxy() -> Rc<RefCell<Proxy>> {
    Rc::new(RefCell::new(Proxy::default()))
}

/// A configuration polling revocations (`svc_token` as the service token);
/// `rule` only changes its generation.
fn polls(svc_token: &str, rule: &str) -> Config {
    let d = json!({
        "auth_service": {"cluster": "auth", "token_env": "SVC_TOKEN", "timeout_ms": 500,
            "revocation_poll_s": POLL / 1000, "revocation_max_staleness_s": STALE / 1000},
        "providers": [{"name": "hs", "issuer": "https://hs", "audiences": ["api"], "algorithms": ["HS256"],
            "hmac_secrets": [{"env": "SECRET", "alg": "HS256"}], "check_revocation": true}],
        "rules": [{"name": rule, "match": {"prefix": "/api/"}, "jwt": {"providers": ["hs"]}}]
    });
    let token = svc_token.to_owned();
    config::parse(d.to_string().as_bytes(), &move |n| match n {
        "SVC_TOKEN" => Some(token.clone()),
        "SECRET" => Some(SECRET.to_owned()),
        _ => None,
    })
    .unwrap()
}

fn feed(cursor: &str, reset: bool, jtis: &[&str]) -> Value {
    let jtis: Vec<Value> = jtis
        .iter()
        .map(|j| json!({"jti": j, "expires_at": NOW_S + 3600}))
        .collect();
    json!({"cursor": cursor, "reset": reset, "poll_interval_s": 1, "revoked_before": null,
        "subjects": [], "sessions": [], "jtis": jtis})
}

fn hs_token(jti: &str) -> String {
    let c = raw_claims(json!({"iss": "https://hs", "aud": "api", "sub": "alice", "jti": jti,
        "iat": NOW_S - 5, "exp": NOW_S + 3600}));
    HS256Key::from_bytes(SECRET.as_bytes()).authenticate(c).unwrap()
}

fn allowed(v: &Verdict<'_>) -> bool {
    matches!(v, Verdict::Allow(_))
}

fn denied(v: &Verdict<'_>) -> Option<Deny<'static>> {
    match v {
        Verdict::Deny(Deny::Revoked) => Some(Deny::Revoked),
        Verdict::Deny(Deny::RevocationUnavailable) => Some(Deny::RevocationUnavailable),
        _ => None,
    }
}

/// Sent polls so far, as (worker, token).
fn polls_sent(p: &Rc<RefCell<Proxy>>) -> Vec<(usize, u32)> {
    p.borrow()
        .sent
        .iter()
        .filter(|(_, _, path)| path.starts_with("/internal/v1/revocations"))
        .map(|(w, t, _)| (*w, *t))
        .collect()
}

/// `n` workers, the first poll answered with a snapshot revoking `jtis`;
/// and how many polls are answered.
fn synced<'c>(cfg: &'c Config, p: &Rc<RefCell<Proxy>>, n: usize, jtis: &[&str]) -> (Vec<Worker<'c>>, usize) {
    let mut ws: Vec<Worker<'c>> = (0..n).map(|i| Worker::new(cfg, p, i)).collect();
    let mut answered = 0;
    answer_all(&mut ws, p, &mut answered, &feed("c1", true, jtis));
    (ws, answered)
}

/// Answers every poll not yet answered with `body`, on the worker that sent it.
fn answer_all(ws: &mut [Worker<'_>], p: &Rc<RefCell<Proxy>>, answered: &mut usize, body: &Value) {
    let sent = polls_sent(p);
    for (w, t) in &sent[*answered..] {
        ws[*w].answer(*t, 200, body);
    }
    *answered = sent.len();
}

#[test]
fn four_workers_poll_once_per_interval_and_all_serve_the_state() {
    let cfg = polls(TOKEN_ONE, "jwt");
    let p = proxy();
    let mut ws: Vec<Worker<'_>> = (0..4).map(|i| Worker::new(&cfg, &p, i)).collect();
    // the first worker configured polls; the others see its lease
    assert_eq!(polls_sent(&p), [(0, 1)]);
    let mut answered = 0;
    answer_all(&mut ws, &p, &mut answered, &feed("c1", true, &["gone"]));
    for w in &mut ws {
        w.tick_at(NOW + TICK_MS);
    }
    let revoked = hs_token("gone");
    let good = hs_token("fine");
    for w in &mut ws {
        assert_eq!(denied(&w.decide(&revoked)), Some(Deny::Revoked));
        assert!(allowed(&w.decide(&good)));
    }
    // ten intervals, ticking every worker at its own phase: ten more polls, not forty
    let mut now = NOW + TICK_MS;
    for step in 0..(10 * POLL / TICK_MS) {
        now += TICK_MS;
        for (i, w) in ws.iter_mut().enumerate() {
            w.tick_at(now + i as u64 * 7);
        }
        answer_all(&mut ws, &p, &mut answered, &feed(&format!("c{}", step + 2), false, &[]));
    }
    let sent = polls_sent(&p);
    assert_eq!(sent.len(), 11, "{sent:?}");
    assert!(sent.iter().all(|(w, _)| *w == 0), "one holder while it lives: {sent:?}");
    let total: usize = ws.iter().map(|w| w.count(Counter::RevocationPollSent)).sum();
    assert_eq!(total, 11);
    // every worker still fresh and still refusing the revoked token
    for w in &mut ws {
        assert_eq!(denied(&w.decide(&revoked)), Some(Deny::Revoked));
    }
}

#[test]
fn a_later_revocation_reaches_every_worker_on_its_next_tick() {
    let cfg = polls(TOKEN_ONE, "jwt");
    let p = proxy();
    let (mut ws, mut answered) = synced(&cfg, &p, 3, &[]);
    for w in &mut ws {
        w.tick_at(NOW + 1);
    }
    let late = hs_token("late");
    let now = NOW + POLL;
    ws[0].tick_at(now);
    answer_all(&mut ws, &p, &mut answered, &feed("c2", false, &["late"]));
    for w in &mut ws[1..] {
        assert!(allowed(&w.decide(&late)), "not installed before its tick");
        w.tick_at(now + 1);
        assert_eq!(denied(&w.decide(&late)), Some(Deny::Revoked));
    }
}

#[test]
fn a_vanished_holder_is_replaced_within_one_interval() {
    let cfg = polls(TOKEN_ONE, "jwt");
    let p = proxy();
    let (mut ws, _) = synced(&cfg, &p, 3, &[]);
    // worker 0 stops ticking (stuck, or its VM gone) right after its first poll
    let mut holder = ws.remove(0);
    let mut now = NOW;
    while polls_sent(&p).len() == 1 {
        now += TICK_MS;
        assert!(now <= NOW + POLL + TICK_MS, "nobody took over within one interval");
        for w in &mut ws {
            w.tick_at(now);
        }
    }
    let sent = polls_sent(&p);
    assert_ne!(sent[1].0, 0);
    // it goes on from the published cursor
    let path = p.borrow().sent.last().unwrap().2.clone();
    assert_eq!(path, "/internal/v1/revocations?since=c1");
    // the stuck worker comes back: it follows, it does not poll
    holder.tick_at(now + 1);
    assert_eq!(polls_sent(&p).len(), 2);
}

#[test]
fn a_worker_never_serves_a_state_past_the_staleness_bound() {
    let cfg = polls(TOKEN_ONE, "jwt");
    let p = proxy();
    let (mut ws, mut answered) = synced(&cfg, &p, 2, &[]);
    let good = hs_token("fine");
    // every later poll fails
    let mut now = NOW;
    while now < NOW + STALE + POLL {
        now += TICK_MS;
        for w in &mut ws {
            w.tick_at(now);
        }
        let sent = polls_sent(&p);
        for (w, t) in &sent[answered..] {
            ws[*w].answer(*t, 503, &json!({}));
        }
        answered = sent.len();
        for w in &mut ws {
            let v = w.decide(&good);
            if now < NOW + STALE {
                assert!(allowed(&v), "fresh at {now}");
            } else {
                assert_eq!(denied(&v), Some(Deny::RevocationUnavailable), "stale at {now}");
            }
        }
    }
    // still one poll per interval while failing
    assert!(
        polls_sent(&p).len() <= 1 + ((now - NOW) / POLL) as usize,
        "{:?}",
        polls_sent(&p)
    );
}

#[test]
fn a_reload_with_the_same_feed_serves_at_once_without_a_poll() {
    let old = polls(TOKEN_ONE, "jwt");
    let p = proxy();
    let _synced = synced(&old, &p, 2, &["gone"]);
    let keys_before: Vec<String> = p.borrow().data.keys().cloned().collect();
    // fifty reloads: another generation each time, the same feed
    let configs: Vec<Config> = (0..50).map(|i| polls(TOKEN_ONE, &format!("rule{i}"))).collect();
    for (i, cfg) in configs.iter().enumerate() {
        assert_ne!(cfg.generation, old.generation);
        let now = NOW + 10 * i as u64;
        let mut fresh = Worker::new(cfg, &p, 10 + i);
        fresh.host.now = now;
        assert!(
            allowed(&fresh.decide(&hs_token("fine"))),
            "no 503 window after reload {i}"
        );
        assert_eq!(denied(&fresh.decide(&hs_token("gone"))), Some(Deny::Revoked));
    }
    assert_eq!(polls_sent(&p).len(), 1, "the reloads polled nothing");
    let mut keys_after: Vec<String> = p.borrow().data.keys().cloned().collect();
    let mut before = keys_before.clone();
    before.sort();
    keys_after.sort();
    assert_eq!(keys_after, before, "shared-data names do not grow with reloads");
}

#[test]
fn another_service_token_is_another_feed() {
    let one = polls(TOKEN_ONE, "jwt");
    let two = polls("svc-token-two-0123456789abcdef0123456789", "jwt");
    let p = proxy();
    let mut a = vec![Worker::new(&one, &p, 0)];
    let mut answered = 0;
    answer_all(&mut a, &p, &mut answered, &feed("c1", true, &[]));
    let mut b = Worker::new(&two, &p, 1);
    // not the state of the other token's feed: it polls its own
    assert_eq!(denied(&b.decide(&hs_token("fine"))), Some(Deny::RevocationUnavailable));
    assert_eq!(polls_sent(&p).last().unwrap().0, 1);
    let svc_one = one.auth_service.as_ref().unwrap();
    let svc_two = two.auth_service.as_ref().unwrap();
    assert_ne!(Shared::revocation(svc_one), Shared::revocation(svc_two));
    // the token itself is nowhere in shared data
    let data = &p.borrow().data;
    assert!(data
        .iter()
        .all(|(k, (v, _))| !k.contains("svc-token") && !String::from_utf8_lossy(v).contains("svc-token")));
}

/// A proxy where another worker holds the feed's lease and has published
/// `head` and `body` (raw shared-data values), so a new worker only follows.
fn followed(shared: &Shared, head: &str, body: &str) -> Rc<RefCell<Proxy>> {
    let p = proxy();
    {
        let mut d = p.borrow_mut();
        let id = shared.identity();
        d.data.insert(
            shared.key("lease"),
            (format!("lease {id} 999 {}", NOW + 60_000).into_bytes(), 1),
        );
        d.data.insert(shared.key("body"), (body.as_bytes().to_vec(), 2));
        d.data.insert(shared.key("head"), (head.as_bytes().to_vec(), 3));
    }
    p
}

#[test]
fn forged_or_torn_shared_values_are_not_installed() {
    let cfg = polls(TOKEN_ONE, "jwt");
    let svc = cfg.auth_service.as_ref().unwrap();
    let shared = Shared::revocation(svc);
    let id = shared.identity().to_owned();
    let good = hs_token("fine");
    // heads that are not this feed's, or not well formed
    let hostile: Vec<String> = vec![
        // another identity's head and body
        format!("head {} 1 {NOW} {NOW}", "0".repeat(64)),
        "head".into(),
        format!("head {id} 1 {NOW}"),
        format!("head {id} 1 {NOW} {NOW} extra"),
        format!("head {id} -1 {NOW} {NOW}"),
        format!("head  {id} 1 {NOW} {NOW}"),
    ];
    for head in hostile {
        let p = followed(&shared, &head, &format!("body {id} 1\n{}", feed("c", true, &[])));
        let mut w = Worker::new(&cfg, &p, 0);
        assert_eq!(denied(&w.decide(&good)), Some(Deny::RevocationUnavailable), "{head}");
    }
    // a body of another seq than the head's (being rewritten), or not a feed, or too big
    let head = format!("head {id} 1 {NOW} {NOW}");
    let too_many: Vec<String> = (0..11).map(|i| format!("j{i}")).collect();
    let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
    for body in [
        format!("body {id} 2\n{}", feed("c", true, &[])),
        format!("body {id} 1\nnot json"),
        format!("body {id} 1\n{}", feed("c", false, &[])),
        format!("body {id} 1 {}", feed("c", true, &[])),
        format!("body {id} 1\n{}", feed("c", true, &too_many)),
    ] {
        let p = followed(&shared, &head, &body);
        let small = cfg_with_max_entries(10);
        let mut w = Worker::new(&small, &p, 0);
        assert_eq!(denied(&w.decide(&good)), Some(Deny::RevocationUnavailable), "{body}");
    }
    // and the well-formed value is installed (the cases above differ from it in one thing)
    let p = followed(&shared, &head, &format!("body {id} 1\n{}", feed("c", true, &["gone"])));
    let mut w = Worker::new(&cfg, &p, 0);
    assert!(allowed(&w.decide(&good)));
    assert_eq!(denied(&w.decide(&hs_token("gone"))), Some(Deny::Revoked));
    assert!(polls_sent(&p).is_empty(), "the lease is someone else's");
}

/// Claims of a hand-built unsigned token (`inspect` only parses).
fn claims_of(payload: &Value) -> Claims {
    let token = format!(
        "{}.{}.AAAA",
        b64::encode_url(br#"{"alg":"HS256"}"#),
        b64::encode_url(payload.to_string().as_bytes())
    );
    inspect(&token, 1 << 16).unwrap().claims
}

fn cfg_with_max_entries(n: usize) -> Config {
    let d = json!({
        "auth_service": {"cluster": "auth", "token_env": "SVC_TOKEN", "timeout_ms": 500,
            "revocation_poll_s": POLL / 1000, "revocation_max_staleness_s": STALE / 1000,
            "max_revocation_entries": n},
        "providers": [{"name": "hs", "issuer": "https://hs", "audiences": ["api"], "algorithms": ["HS256"],
            "hmac_secrets": [{"env": "SECRET", "alg": "HS256"}], "check_revocation": true}],
        "rules": [{"name": "jwt", "match": {"prefix": "/api/"}, "jwt": {"providers": ["hs"]}}]
    });
    config::parse(d.to_string().as_bytes(), &|n| match n {
        "SVC_TOKEN" => Some(TOKEN_ONE.to_owned()),
        "SECRET" => Some(SECRET.to_owned()),
        _ => None,
    })
    .unwrap()
}

#[test]
fn a_lease_is_claimed_by_one_of_two_racing_workers() {
    let cfg = polls(TOKEN_ONE, "jwt");
    let shared = Shared::revocation(cfg.auth_service.as_ref().unwrap());
    let p = proxy();
    let mut a = Worker::new(&cfg, &p, 0).host;
    let mut b = Worker::new(&cfg, &p, 1).host;
    // both ids are distinct and non-zero
    let (ia, ib) = (shared_fetch::instance_id(&mut a), shared_fetch::instance_id(&mut b));
    assert!(ia != 0 && ib != 0 && ia != ib);
    let later = NOW + 60_000;
    // both read the run-out lease, then both try to swap it: one wins
    let key = shared.key("lease");
    let (_, cas) = a.shared_get(&key);
    let won_a = a.shared_set(
        &key,
        format!("lease {} {ia} {}", shared.identity(), later + LEASE_MS).as_bytes(),
        cas,
    );
    let won_b = b.shared_set(
        &key,
        format!("lease {} {ib} {}", shared.identity(), later + LEASE_MS).as_bytes(),
        cas,
    );
    assert!(won_a.is_ok() && won_b.is_err());
    assert!(shared_fetch::hold(&mut a, &shared, ia, later));
    assert!(!shared_fetch::hold(&mut b, &shared, ib, later));
    // 0 is nobody
    assert!(!shared_fetch::hold(&mut b, &shared, 0, later + 10 * LEASE_MS));
}

#[test]
fn snapshot_round_trips_every_kind_of_entry() {
    let body = json!({"cursor": "c9", "reset": true, "poll_interval_s": 5, "revoked_before": NOW_S - 100,
        "subjects": [{"subject": "alice", "revoked_before": NOW_S - 10},
                     {"subject": "bob", "revoked_before": NOW_S - 20, "tenant": "acme"}],
        "sessions": [{"sid": "s1", "expires_at": NOW_S + 60}],
        "jtis": [{"jti": "j1", "expires_at": NOW_S + 60}],
        "tenants": [{"tenant": "evil", "revoked_before": NOW_S - 30}],
        "api_keys": [{"key_hash": "ab".repeat(32), "expires_at": NOW_S + 60},
                     {"key_id": "key_9", "expires_at": NOW_S + 60}],
        "api_key_tenants": [{"tenant": "acme", "revoked_before": NOW_S - 40}],
        "api_keys_revoked_before": NOW_S - 200});
    let mut a = RevocationState::new();
    assert!(a.snapshot().is_none(), "nothing to publish before a good poll");
    a.apply(
        Some(200),
        Some(body.to_string().as_bytes()),
        1 << 20,
        &Limits::default(),
        NOW_S,
    )
    .unwrap();
    let snap = a.snapshot().unwrap();
    let mut b = RevocationState::new();
    b.apply(Some(200), Some(&snap), usize::MAX, &Limits::default(), NOW_S)
        .unwrap();
    assert_eq!(b.len(), a.len());
    assert_eq!(b.len(), 8);
    // the API-key revocations (contract 1.3) are published too
    let (ka, kb) = (a.keys(), b.keys());
    assert!(kb.lists(Some(&"ab".repeat(32)), None) && ka.lists(Some(&"ab".repeat(32)), None));
    assert!(kb.lists(None, Some("key_9")));
    assert!(!kb.lists(Some(&"cd".repeat(32)), Some("key_8")));
    assert_eq!(kb.cut_off("acme"), ka.cut_off("acme"));
    assert_eq!(kb.global_cut_off(), Some(NOW_S - 200));
    assert_eq!(b.cursor(), Some("c9"));
    assert_eq!(b.global_revoked_before(), Some(NOW_S - 100));
    let probe = |claims: Value| {
        let c = claims_of(&claims);
        (
            a.is_revoked_for(&c, c.str("tenant")),
            b.is_revoked_for(&c, c.str("tenant")),
        )
    };
    for claims in [
        json!({"sub": "alice", "iat": NOW_S - 11}),
        json!({"sub": "alice", "iat": NOW_S - 5}),
        json!({"sub": "bob", "tenant": "acme", "iat": NOW_S - 25}),
        json!({"sub": "bob", "tenant": "other", "iat": NOW_S - 25}),
        json!({"sub": "x", "sid": "s1", "iat": NOW_S}),
        json!({"sub": "x", "jti": "j1", "iat": NOW_S}),
        json!({"sub": "x", "tenant": "evil", "iat": NOW_S - 31}),
        json!({"sub": "x", "iat": NOW_S - 101}),
        json!({"sub": "x", "iat": NOW_S}),
    ] {
        let (x, y) = probe(claims.clone());
        assert_eq!(x, y, "{claims}");
    }
    // a follower continues from the published cursor
    assert_eq!(b.poll_path("/f"), "/f?since=c9");
}

// ---- JWKS -------------------------------------------------------------------

fn jwks_cfg(rule: &str) -> Config {
    let d = json!({
        "providers": [{"name": "idp", "issuer": "https://idp", "audiences": ["api"], "algorithms": ["ES256"],
            "remote_jwks": {"cluster": "idp", "path": "/jwks", "timeout_ms": 1000,
                "refresh_interval_s": 2, "min_refetch_interval_s": 10, "max_response_bytes": 2048}}],
        "rules": [{"name": rule, "match": {"prefix": "/api/"}, "jwt": {"providers": ["idp"]}}]
    });
    config::parse(d.to_string().as_bytes(), &|_| None).unwrap()
}

fn jwks_of(kp: &ES256KeyPair, kid: &str) -> Value {
    let raw = kp.public_key().public_key().to_bytes_uncompressed();
    json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
        "x": b64::encode_url(&raw[1..33]), "y": b64::encode_url(&raw[33..65])}]})
}

#[test]
fn jwks_are_fetched_once_per_interval_and_installed_by_every_worker() {
    let cfg = jwks_cfg("jwt");
    let p = proxy();
    let mut ws: Vec<Worker<'_>> = (0..4).map(|i| Worker::new(&cfg, &p, i)).collect();
    let kp = ES256KeyPair::generate().with_key_id("k1");
    let token = kp
        .sign(raw_claims(json!({"iss": "https://idp", "aud": "api", "sub": "a",
            "iat": NOW_S - 5, "exp": NOW_S + 3600})))
        .unwrap();
    let fetches = |p: &Rc<RefCell<Proxy>>| -> Vec<(usize, u32)> {
        p.borrow()
            .sent
            .iter()
            .filter(|s| s.2 == "/jwks")
            .map(|s| (s.0, s.1))
            .collect()
    };
    let mut answered = 0;
    let mut now = NOW;
    for _ in 0..(10_000 / TICK_MS) {
        let sent = fetches(&p);
        for (w, t) in &sent[answered..] {
            ws[*w].answer(*t, 200, &jwks_of(&kp, "k1"));
        }
        answered = sent.len();
        now += TICK_MS;
        for w in &mut ws {
            w.tick_at(now);
        }
    }
    // at start, then every 2 s: 6 in 10 s, whatever the worker count
    assert_eq!(fetches(&p).len(), 6, "{:?}", fetches(&p));
    for w in &mut ws {
        assert!(allowed(&w.decide(&token)));
    }
    let sent: usize = ws.iter().map(|w| w.count(Counter::JwksFetchSent)).sum();
    assert_eq!(sent, 6);
    // a reload finds the keys at once
    let reloaded = jwks_cfg("other");
    let mut w = Worker::new(&reloaded, &p, 9);
    w.host.now = now;
    assert!(allowed(&w.decide(&token)));
    assert_eq!(fetches(&p).len(), 6);
}

// ---- the API-key lookup breaker, shared ---------------------------------------

fn keys_cfg() -> Config {
    let d = json!({
        "auth_service": {"cluster": "auth", "token_env": "SVC_TOKEN", "timeout_ms": 500},
        "api_keys": {"breaker": {"failure_threshold": 2, "open_s": 3}},
        "rules": [{"name": "keys", "match": {"prefix": "/v1/"}, "api_key": {}}]
    });
    config::parse(d.to_string().as_bytes(), &|n| {
        (n == "SVC_TOKEN").then(|| TOKEN_ONE.to_owned())
    })
    .unwrap()
}

fn key(n: usize) -> String {
    format!("sk_{n:064x}")
}

/// Lookups sent so far, as (worker, token).
fn lookups_sent(p: &Rc<RefCell<Proxy>>) -> Vec<(usize, u32)> {
    p.borrow()
        .sent
        .iter()
        .filter(|s| s.2.ends_with("/lookup"))
        .map(|s| (s.0, s.1))
        .collect()
}

/// Worker `w` asks for key `n`: `Some` when refused at once, else sent on its tick.
fn ask(w: &mut Worker<'_>, n: usize) -> Option<LookupFailure> {
    let refused = w
        .out
        .await_lookup(w.cfg, &mut w.host, n as u32, key_hash(&key(n)), None);
    if refused.is_none() {
        let now = w.host.now;
        w.tick_at(now);
    }
    refused.map(|a| a.result.unwrap_err())
}

#[test]
fn the_breaker_opens_after_the_threshold_per_envoy_not_per_worker() {
    let cfg = keys_cfg();
    let p = proxy();
    let mut ws: Vec<Worker<'_>> = (0..4).map(|i| Worker::new(&cfg, &p, i)).collect();
    // two failures, on two workers: the threshold, in all
    for (i, w) in ws.iter_mut().enumerate().take(2) {
        assert_eq!(ask(w, i), None);
        let (_, token) = *lookups_sent(&p).last().unwrap();
        w.answer(token, 500, &json!({"error": "boom"}));
    }
    assert_eq!(lookups_sent(&p).len(), 2);
    // every worker now fails fast, including the two that saw no failure
    for (i, w) in ws.iter_mut().enumerate() {
        assert_eq!(ask(w, 10 + i), Some(LookupFailure::CircuitOpen), "worker {i}");
    }
    assert_eq!(lookups_sent(&p).len(), 2, "no call past the threshold");
    let opened: usize = ws.iter().map(|w| w.count(Counter::BreakerOpened)).sum();
    assert_eq!(opened, 1, "opened once, by the worker whose failure opened it");
    // after open_s: one probe for the whole Envoy
    for w in &mut ws {
        w.host.now = NOW + 3_000;
    }
    let probes: Vec<Option<LookupFailure>> = ws.iter_mut().enumerate().map(|(i, w)| ask(w, 20 + i)).collect();
    assert_eq!(probes.iter().filter(|r| r.is_none()).count(), 1, "{probes:?}");
    assert_eq!(lookups_sent(&p).len(), 3);
    // the probe succeeds: closed for every worker
    let (w, token) = *lookups_sent(&p).last().unwrap();
    let n = 20 + w;
    let ok = json!({"key_hash": key_hash(&key(n)), "status": "unknown", "cache_ttl_s": 0});
    ws[w].answer(token, 200, &ok);
    for (i, w) in ws.iter_mut().enumerate() {
        assert_eq!(ask(w, 30 + i), None, "worker {i} calls again");
        assert_eq!(w.out.breaker_state(), BreakerState::Closed);
    }
}

#[test]
fn a_forged_or_foreign_breaker_value_reads_as_closed() {
    let cfg = keys_cfg();
    let p = proxy();
    let mut w = Worker::new(&cfg, &p, 0);
    assert_eq!(ask(&mut w, 1), None);
    let (_, token) = lookups_sent(&p)[0];
    w.answer(token, 500, &json!({}));
    let name = p
        .borrow()
        .data
        .keys()
        .find(|k| k.starts_with("edge-auth.breaker."))
        .cloned()
        .unwrap();
    let held = String::from_utf8(p.borrow().data[&name].0.clone()).unwrap();
    assert!(held.ends_with(" closed 1"), "{held}");
    for forged in ["open 99999999999999", "breaker x open 99999999999999", "", "breaker"] {
        p.borrow_mut()
            .data
            .insert(name.clone(), (forged.as_bytes().to_vec(), 77));
        let mut other = Worker::new(&cfg, &p, 1);
        assert_eq!(ask(&mut other, 2), None, "{forged:?} is not an open breaker");
    }
}

/// A filter with API keys and no provider checking revocations still polls the
/// feed (key revocations come from it, contract 1.3), once per Envoy: a class of
/// bug where the lease identity was taken only for token revocations, so that
/// nobody held the lease and no worker polled.
#[test]
fn a_filter_with_api_keys_alone_polls_the_feed_once_per_envoy() {
    let cfg = keys_cfg();
    let p = proxy();
    let mut ws: Vec<Worker<'_>> = (0..4).map(|i| Worker::new(&cfg, &p, i)).collect();
    assert_eq!(polls_sent(&p), [(0, 1)], "the first worker configured polls");
    let mut answered = 0;
    answer_all(&mut ws, &p, &mut answered, &feed("c1", true, &[]));
    // three default intervals (5 s), every worker ticking
    let mut now = NOW;
    for step in 0..(3 * 5_000 / TICK_MS) {
        now += TICK_MS;
        for (i, w) in ws.iter_mut().enumerate() {
            w.tick_at(now + i as u64 * 7);
        }
        answer_all(&mut ws, &p, &mut answered, &feed(&format!("c{}", step + 2), false, &[]));
    }
    let sent = polls_sent(&p);
    assert!(sent.iter().all(|(w, _)| *w == 0), "one holder: {sent:?}");
    assert!((3..=5).contains(&sent.len()), "one poll per interval: {sent:?}");
}
