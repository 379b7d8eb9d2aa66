//! Verified tokens shared by the workers of one Envoy: several fake workers
//! (each its own decision state) over one fake shared-data store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use edge_auth_core::b64;
use edge_auth_core::cache::token_key;
use edge_auth_core::config::{self, Config};
use edge_auth_core::decision::{decide, Attempt, Deny, Outcome, Request, Signature, State, Verdict};
use edge_auth_core::jwt::refresh::parse_response;
use edge_auth_core::jwt::shared_tokens::{provider_identity, slot_name, Entry, ENTRY_BYTES};
use edge_auth_core::jwt::JwtError;
use jwt_simple::prelude::*;
use serde_json::{json, Value};

mod common;
use common::raw_claims;

const NOW_S: u64 = 1_800_000_000;
const NOW: u64 = NOW_S * 1000;
const SECRET: &str = "0123456789abcdef0123456789abcdef-secret";
const OTHER_SECRET: &str = "another-secret-of-at-least-32-bytes!!";

/// The proxy's shared data: one per Envoy, every worker sees it.
type Store = Rc<RefCell<HashMap<String, Vec<u8>>>>;

/// A configuration with an HS256 provider (secret from `secret_var`) and a
/// remote ES256 one; `extra` is merged into the top level.
fn config_with(secret_var: &str, audiences: Value, extra: Value) -> Config {
    let mut doc = json!({
        "providers": [
            {
                "name": "hs", "issuer": "https://hs", "audiences": audiences, "algorithms": ["HS256"],
                "hmac_secrets": [{"env": secret_var, "alg": "HS256"}], "leeway_s": 30
            },
            {
                "name": "remote", "issuer": "https://idp", "audiences": ["api"], "algorithms": ["ES256"],
                "remote_jwks": {"cluster": "idp", "path": "/jwks"}
            }
        ],
        "rules": [
            {"name": "hs", "match": {"prefix": "/hs/"}, "jwt": {"providers": ["hs"]}},
            {"name": "remote", "match": {"prefix": "/remote/"}, "jwt": {"providers": ["remote"]}}
        ]
    });
    for (k, v) in extra.as_object().unwrap() {
        doc[k] = v.clone();
    }
    config::parse(doc.to_string().as_bytes(), &|n| match n {
        "SECRET" => Some(SECRET.to_owned()),
        "OTHER_SECRET" => Some(OTHER_SECRET.to_owned()),
        _ => None,
    })
    .unwrap()
}

fn config() -> Config {
    config_with("SECRET", json!(["api"]), json!({}))
}

fn hs_with(secret: &str, claims: Value) -> String {
    HS256Key::from_bytes(secret.as_bytes())
        .authenticate(raw_claims(claims))
        .unwrap()
}

fn claims(sub: &str, exp: u64) -> Value {
    json!({"iss": "https://hs", "aud": "api", "sub": sub, "iat": NOW_S - 5, "exp": exp})
}

fn hs(sub: &str) -> String {
    hs_with(SECRET, claims(sub, NOW_S + 3600))
}

/// One Envoy worker: its own state, the Envoy's store.
struct Worker {
    st: State,
    store: Store,
}

/// A request's facts, over the worker's view of the store.
struct Req<'a> {
    auth: String,
    store: &'a Store,
    shared_reads: usize,
}

impl Request for Req<'_> {
    fn header(&mut self, name: &str) -> Option<String> {
        (name == "authorization").then(|| self.auth.clone())
    }

    fn forwarded_for(&mut self) -> Option<String> {
        None
    }

    fn peer(&mut self) -> Option<String> {
        Some("192.0.2.1:40000".into())
    }

    fn shared_data(&mut self, name: &str) -> Option<Vec<u8>> {
        self.shared_reads += 1;
        self.store.borrow().get(name).cloned()
    }

    fn share(&mut self, name: &str, value: &[u8]) {
        self.store.borrow_mut().insert(name.to_owned(), value.to_vec());
    }
}

/// What a request came to, and how many shared-data reads it made.
struct Seen<'c> {
    outcome: Outcome<'c>,
    shared_reads: usize,
}

impl Seen<'_> {
    fn allowed(&self) -> bool {
        matches!(self.outcome.verdict, Verdict::Allow(_))
    }

    fn denied(&self) -> Deny<'_> {
        match &self.outcome.verdict {
            Verdict::Deny(d) => *d,
            other => panic!("expected a denial, got {other:?}"),
        }
    }
}

impl Worker {
    fn new(cfg: &Config, store: &Store) -> Worker {
        Worker {
            st: State::new(cfg),
            store: Rc::clone(store),
        }
    }

    fn send<'c>(&mut self, cfg: &'c Config, path: &str, token: &str, now_ms: u64) -> Seen<'c> {
        let mut req = Req {
            auth: format!("Bearer {token}"),
            store: &self.store,
            shared_reads: 0,
        };
        let attempt = Attempt {
            method: "GET",
            path,
            now_ms,
            may_await: false,
            answer: None,
        };
        let outcome = decide(cfg, &mut self.st, &attempt, &mut req);
        Seen {
            outcome,
            shared_reads: req.shared_reads,
        }
    }

    fn install(&mut self, cfg: &Config, jwks: &Value, now_ms: u64) {
        let (set, _) = parse_response(Some(200), Some(jwks.to_string().as_bytes()), &cfg.providers[1]).unwrap();
        self.st.install_keys(cfg, 1, set, now_ms);
    }
}

fn store() -> Store {
    Rc::new(RefCell::new(HashMap::new()))
}

fn workers(cfg: &Config, store: &Store, n: usize) -> Vec<Worker> {
    (0..n).map(|_| Worker::new(cfg, store)).collect()
}

fn es_jwks(kp: &ES256KeyPair, kid: &str) -> Value {
    let raw = kp.public_key().public_key().to_bytes_uncompressed();
    json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
        "x": b64::encode_url(&raw[1..33]), "y": b64::encode_url(&raw[33..65])}]})
}

fn es(kp: &ES256KeyPair) -> String {
    let c = json!({"iss": "https://idp", "aud": "api", "sub": "alice", "iat": NOW_S - 5, "exp": NOW_S + 3600});
    kp.sign(raw_claims(c)).unwrap()
}

#[test]
fn a_token_is_verified_once_per_envoy_whatever_the_worker() {
    let cfg = config();
    let store = store();
    let mut ws = workers(&cfg, &store, 4);
    let tokens: Vec<String> = (0..5).map(|i| hs(&format!("user{i}"))).collect();
    let mut verified = 0;
    let mut shared = 0;
    for round in 0..3u64 {
        for (i, t) in tokens.iter().enumerate() {
            // each token first reaches another worker
            for k in 0..4 {
                let w = &mut ws[(i + k) % 4];
                let seen = w.send(&cfg, "/hs/x", t, NOW + round * 1000);
                assert!(seen.allowed(), "{:?}", seen.outcome.verdict);
                match seen.outcome.signature {
                    Some(Signature::Verified) => verified += 1,
                    Some(Signature::Shared) => shared += 1,
                    None => assert_eq!(seen.outcome.cache, Some(true)),
                }
            }
        }
    }
    assert_eq!(verified, tokens.len(), "one signature verification per token");
    assert_eq!(
        shared,
        tokens.len() * 3,
        "each other worker took it from the table once"
    );
    assert!(store.borrow().len() <= tokens.len());
}

#[test]
fn a_hit_in_the_workers_own_cache_reads_no_shared_data() {
    let cfg = config();
    let store = store();
    let mut ws = workers(&cfg, &store, 2);
    let t = hs("alice");
    assert_eq!(ws[0].send(&cfg, "/hs/x", &t, NOW).shared_reads, 1);
    let again = ws[0].send(&cfg, "/hs/x", &t, NOW);
    assert_eq!((again.outcome.cache, again.shared_reads), (Some(true), 0));
    // the other worker reads the slot once, then serves the token from its own cache
    let first = ws[1].send(&cfg, "/hs/x", &t, NOW);
    assert_eq!(
        (first.outcome.signature, first.shared_reads),
        (Some(Signature::Shared), 1)
    );
    let again = ws[1].send(&cfg, "/hs/x", &t, NOW + 1000);
    assert_eq!((again.outcome.cache, again.shared_reads), (Some(true), 0));

    // without a worker cache every request reads the table, and is still vouched for
    let no_local = config_with("SECRET", json!(["api"]), json!({"token_cache": {"max_entries": 0}}));
    let mut w = Worker::new(&no_local, &store);
    for _ in 0..3 {
        let seen = w.send(&no_local, "/hs/x", &t, NOW);
        assert!(seen.allowed());
        assert_eq!(seen.outcome.cache, Some(false));
    }
    assert_eq!(
        w.send(&no_local, "/hs/x", &t, NOW).outcome.signature,
        Some(Signature::Shared)
    );
}

#[test]
fn sharing_switched_off_reads_and_writes_nothing() {
    let cfg = config_with("SECRET", json!(["api"]), json!({"token_cache": {"shared_slots": 0}}));
    let store = store();
    let mut ws = workers(&cfg, &store, 2);
    let t = hs("alice");
    for w in &mut ws {
        let seen = w.send(&cfg, "/hs/x", &t, NOW);
        assert_eq!(
            (seen.outcome.signature, seen.shared_reads),
            (Some(Signature::Verified), 0)
        );
    }
    assert!(store.borrow().is_empty());
}

#[test]
fn a_forged_token_in_a_slot_it_shares_is_verified_and_refused() {
    // one slot: every token collides with every other
    let cfg = config_with("SECRET", json!(["api"]), json!({"token_cache": {"shared_slots": 1}}));
    let store = store();
    let mut ws = workers(&cfg, &store, 2);
    let good = hs("alice");
    assert!(ws[0].send(&cfg, "/hs/x", &good, NOW).allowed());
    assert_eq!(store.borrow().len(), 1);
    // other claims signed with another key, and with the good token's signature
    let forged = hs_with(OTHER_SECRET, claims("mallory", NOW_S + 3600));
    let spliced = format!(
        "{}.{}",
        forged.rsplit_once('.').unwrap().0,
        good.rsplit_once('.').unwrap().1
    );
    for bad in [&forged, &spliced] {
        let seen = ws[1].send(&cfg, "/hs/x", bad, NOW);
        assert_eq!(seen.denied(), Deny::Token(JwtError::BadSignature));
        assert_eq!(seen.outcome.signature, Some(Signature::Verified));
    }
    // a refusal writes nothing: the good token is still vouched for
    assert_eq!(
        ws[1].send(&cfg, "/hs/x", &good, NOW).outcome.signature,
        Some(Signature::Shared)
    );
}

#[test]
fn an_entry_of_another_configuration_or_provider_is_not_trusted() {
    let store = store();
    // configuration B trusts another secret for the same issuer: its token is verified and shared
    let b = config_with("OTHER_SECRET", json!(["api"]), json!({}));
    let theirs = hs_with(OTHER_SECRET, claims("mallory", NOW_S + 3600));
    assert!(Worker::new(&b, &store).send(&b, "/hs/x", &theirs, NOW).allowed());
    // configuration A (an older or other one in the same Envoy) reads the same slot names
    let a = config();
    assert_eq!(
        slot_name(&token_key(&theirs), b.token_cache_shared_slots),
        slot_name(&token_key(&theirs), a.token_cache_shared_slots),
        "slot names do not depend on the configuration"
    );
    let seen = Worker::new(&a, &store).send(&a, "/hs/x", &theirs, NOW);
    assert_eq!(seen.denied(), Deny::Token(JwtError::BadSignature));
    assert_eq!(seen.outcome.signature, Some(Signature::Verified));

    // an entry naming another provider (its identity) is not this provider's
    let ours = hs("alice");
    let mut w = Worker::new(&a, &store);
    assert!(w.send(&a, "/hs/x", &ours, NOW).allowed());
    let name = slot_name(&token_key(&ours), a.token_cache_shared_slots);
    let mut entry = Entry::decode(&store.borrow()[&name]).unwrap();
    entry.provider = provider_identity(&a.providers[1]);
    store.borrow_mut().insert(name.clone(), entry.encode().to_vec());
    let seen = Worker::new(&a, &store).send(&a, "/hs/x", &ours, NOW);
    assert!(seen.allowed());
    assert_eq!(seen.outcome.signature, Some(Signature::Verified));

    // a configuration that trusts the same key: the entry serves, and its own claim checks still run
    let c = config_with("SECRET", json!(["another-api"]), json!({}));
    let seen = Worker::new(&c, &store).send(&c, "/hs/x", &ours, NOW);
    assert_eq!(seen.denied(), Deny::Token(JwtError::BadAudience));
    assert_eq!(seen.outcome.signature, None, "refused before any signature work");
    let same = config_with("SECRET", json!(["api", "another-api"]), json!({}));
    assert_eq!(
        Worker::new(&same, &store)
            .send(&same, "/hs/x", &ours, NOW)
            .outcome
            .signature,
        Some(Signature::Shared)
    );
}

#[test]
fn an_entry_never_outlives_exp_nor_the_cache_bound() {
    let cfg = config();
    let store = store();
    let mut ws = workers(&cfg, &store, 3);
    // exp in 60 s (leeway 30 s): shared until exp, verified again between exp and exp + leeway
    let short = hs_with(SECRET, claims("alice", NOW_S + 60));
    assert!(ws[0].send(&cfg, "/hs/x", &short, NOW).allowed());
    assert_eq!(
        ws[1].send(&cfg, "/hs/x", &short, NOW + 59_000).outcome.signature,
        Some(Signature::Shared)
    );
    let late = ws[2].send(&cfg, "/hs/x", &short, NOW + 60_000);
    assert!(late.allowed());
    assert_eq!(late.outcome.signature, Some(Signature::Verified));
    assert_eq!(
        ws[2].send(&cfg, "/hs/x", &short, NOW + 90_000).denied(),
        Deny::Token(JwtError::Expired)
    );

    // exp in an hour: shared for 300 s after the verification, and a worker
    // that took it from the table keeps it no longer than that either
    let long = hs("bob");
    let mut ws = workers(&cfg, &store, 3);
    assert!(ws[0].send(&cfg, "/hs/x", &long, NOW).allowed());
    assert_eq!(
        ws[1].send(&cfg, "/hs/x", &long, NOW + 100_000).outcome.signature,
        Some(Signature::Shared)
    );
    let at_bound = ws[1].send(&cfg, "/hs/x", &long, NOW + 300_000);
    assert_eq!(at_bound.outcome.cache, Some(false));
    assert_eq!(at_bound.outcome.signature, Some(Signature::Verified));
    assert_eq!(
        ws[2].send(&cfg, "/hs/x", &long, NOW + 300_000).outcome.signature,
        Some(Signature::Shared),
        "the re-verification wrote a new entry"
    );
}

#[test]
fn a_withdrawn_or_replaced_kid_ends_the_entry_on_every_worker() {
    let cfg = config();
    let store = store();
    let mut ws = workers(&cfg, &store, 3);
    let k1 = ES256KeyPair::generate().with_key_id("k1");
    let k2 = ES256KeyPair::generate().with_key_id("k2");
    let k1_again = ES256KeyPair::generate().with_key_id("k1");
    for w in &mut ws {
        w.install(&cfg, &es_jwks(&k1, "k1"), NOW);
    }
    let t = es(&k1);
    assert_eq!(
        ws[0].send(&cfg, "/remote/a", &t, NOW).outcome.signature,
        Some(Signature::Verified)
    );
    assert_eq!(
        ws[1].send(&cfg, "/remote/a", &t, NOW).outcome.signature,
        Some(Signature::Shared)
    );
    // worker 1's refresh no longer has k1: refused there, from its cache or the table alike
    ws[1].install(&cfg, &es_jwks(&k2, "k2"), NOW + 1000);
    let seen = ws[1].send(&cfg, "/remote/a", &t, NOW + 1000);
    assert_eq!(seen.denied(), Deny::Token(JwtError::UnknownKid));
    // worker 2's refresh has another key under the same kid: the entry names the old key
    ws[2].install(&cfg, &es_jwks(&k1_again, "k1"), NOW + 1000);
    let seen = ws[2].send(&cfg, "/remote/a", &t, NOW + 1000);
    assert_eq!(seen.denied(), Deny::Token(JwtError::BadSignature));
    assert_eq!(seen.outcome.signature, Some(Signature::Verified));
    // a set that gains a key but keeps k1 still vouches
    let both = json!({"keys": [es_jwks(&k1, "k1")["keys"][0], es_jwks(&k2, "k2")["keys"][0]]});
    let mut w = Worker::new(&cfg, &store);
    w.install(&cfg, &both, NOW + 1000);
    assert_eq!(
        w.send(&cfg, "/remote/a", &t, NOW + 1000).outcome.signature,
        Some(Signature::Shared)
    );
}

#[test]
fn thrashing_slots_stays_bounded_and_correct() {
    let cfg = config_with("SECRET", json!(["api"]), json!({"token_cache": {"shared_slots": 4}}));
    let store = store();
    let mut ws = workers(&cfg, &store, 2);
    let tokens: Vec<String> = (0..200).map(|i| hs(&format!("u{i}"))).collect();
    let mut verified = 0;
    for t in &tokens {
        for w in &mut ws {
            let seen = w.send(&cfg, "/hs/x", t, NOW);
            assert!(seen.allowed());
            verified += usize::from(seen.outcome.signature == Some(Signature::Verified));
        }
    }
    assert!(store.borrow().len() <= 4, "{} names", store.borrow().len());
    assert!(store.borrow().values().all(|v| v.len() == ENTRY_BYTES));
    assert!((200..=400).contains(&verified), "{verified}");
    // forged tokens never write, however many
    for i in 0..50 {
        let forged = hs_with(OTHER_SECRET, claims(&format!("x{i}"), NOW_S + 3600));
        assert_eq!(
            ws[0].send(&cfg, "/hs/x", &forged, NOW).denied(),
            Deny::Token(JwtError::BadSignature)
        );
    }
    assert!(store.borrow().len() <= 4);
}

#[test]
fn garbage_in_a_slot_means_the_signature_is_verified() {
    let cfg = config();
    let store = store();
    let t = hs("alice");
    let digest = token_key(&t);
    let name = slot_name(&digest, cfg.token_cache_shared_slots);
    let good = Entry {
        digest,
        provider: provider_identity(&cfg.providers[0]),
        key: [0; 16],
        horizon: NOW_S + 300,
    };
    let mut far = good;
    far.horizon = u64::MAX;
    let real_key = {
        let mut w = Worker::new(&cfg, &store);
        assert!(w.send(&cfg, "/hs/x", &t, NOW).allowed());
        Entry::decode(&store.borrow()[&name]).unwrap().key
    };
    let mut far_with_real_key = far;
    far_with_real_key.key = real_key;
    for bad in [
        Vec::new(),
        vec![0xff; ENTRY_BYTES],
        vec![0; ENTRY_BYTES * 4],
        good.encode()[..ENTRY_BYTES - 1].to_vec(),
        [good.encode().as_slice(), b"!"].concat(),
        b"edge-auth".to_vec(),
        good.encode().to_vec(), // a key the worker does not hold
        far_with_real_key.encode().to_vec(),
    ] {
        store.borrow_mut().insert(name.clone(), bad.clone());
        let seen = Worker::new(&cfg, &store).send(&cfg, "/hs/x", &t, NOW);
        assert!(seen.allowed(), "{bad:?}");
        assert_eq!(seen.outcome.signature, Some(Signature::Verified), "{bad:?}");
        // the verification replaced the garbage with a real entry
        assert_eq!(Entry::decode(&store.borrow()[&name]).unwrap().key, real_key);
    }
}
