//! Tokens injected on egress, across the workers of one Envoy: several fake
//! workers share one shared-data store and one clock (common/proxy.rs); the
//! lease holder fetches each entry's token and publishes its state, the
//! others install it. Proves one fetch per Envoy, the refresh schedule
//! (the old token served meanwhile, never an expired one), backoff with
//! jitter, the breaker, `Retry-After`, rejected credentials, and that no
//! log line ever carries the secret or a token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use edge_auth_core::config::{self, Config};
use edge_auth_core::decision::State;
use edge_auth_core::egress::decide::{inject, reply, EgressVerdict, HeaderError, Headers};
use edge_auth_core::logging::Level;
use edge_auth_core::outbound::{CallResponse, Counter, Outbound, Wake, TICK_MS};
use serde_json::{json, Value};

mod common;
use common::host::{Fake, Proxy};
use common::HeaderRequest;

const NOW: u64 = 1_800_000_000_000;
const SECRET: &str = "sup3r-s3cret/value&more";
const PATH: &str = "/oauth/token";

fn config(extra: Value) -> Config {
    let mut entry = json!({
        "name": "billing",
        "match": { "hosts": ["billing.internal", "*.billing.internal"] },
        "token_endpoint": { "cluster": "issuer", "authority": "auth.example.com", "path": PATH, "timeout_ms": 2000 },
        "client_id": "mc_0123",
        "client_secret_env": "BILLING_CLIENT_SECRET",
        "audience": "https://billing.example.com",
        "scopes": ["billing:read", "billing:write"]
    });
    for (k, v) in extra.as_object().unwrap() {
        entry[k] = v.clone();
    }
    let doc = json!({ "egress_tokens": [entry] });
    config::parse(doc.to_string().as_bytes(), &|n| {
        (n == "BILLING_CLIENT_SECRET").then(|| SECRET.to_owned())
    })
    .unwrap()
}

/// What a request got, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Unmatched,
    Inject(String),
    Wait,
    Unavailable(u64),
    Rejected(u64),
}

struct Worker<'c> {
    cfg: &'c Config,
    st: State,
    out: Outbound,
    host: Fake,
}

struct Envoy<'c> {
    proxy: Rc<RefCell<Proxy>>,
    workers: Vec<Worker<'c>>,
    now: u64,
    /// Every token the issuer handed out.
    issued: Vec<String>,
    next_context: u32,
}

impl<'c> Envoy<'c> {
    fn new(cfg: &'c Config, n: usize) -> Envoy<'c> {
        let proxy = Rc::new(RefCell::new(Proxy::default()));
        let workers = (0..n)
            .map(|i| {
                let mut w = Worker {
                    cfg,
                    st: State::new(cfg),
                    out: Outbound::new(cfg),
                    host: Fake::of(&proxy, i),
                };
                w.host.random = 0x9e37_79b9_7f4a_7c15;
                assert!(w.out.start(cfg, &mut w.st, &mut w.host).is_empty());
                w
            })
            .collect();
        Envoy {
            proxy,
            workers,
            now: NOW,
            issued: Vec::new(),
            next_context: 1,
        }
    }

    /// Every worker ticks at `now`; the requests they wake.
    fn tick_at(&mut self, now: u64) -> Vec<Wake> {
        self.now = now;
        let mut wakes = Vec::new();
        for w in &mut self.workers {
            w.host.now = now;
            wakes.extend(w.out.on_tick(w.cfg, &mut w.st, &mut w.host));
        }
        wakes
    }

    /// Ticks every `TICK_MS` up to `until`.
    fn run_until(&mut self, until: u64) {
        while self.now + TICK_MS <= until {
            let t = self.now + TICK_MS;
            self.tick_at(t);
        }
        self.tick_at(until);
    }

    /// Token requests sent so far, as (worker, call token).
    fn fetches(&self) -> Vec<(usize, u32)> {
        self.proxy
            .borrow()
            .sent
            .iter()
            .filter(|s| s.2 == PATH)
            .map(|s| (s.0, s.1))
            .collect()
    }

    /// Answers the last token request on the worker that sent it.
    fn answer(&mut self, status: u16, body: &Value, retry_after: Option<&str>) -> Vec<Wake> {
        let (worker, token) = *self.fetches().last().expect("a token request was sent");
        let bytes = body.to_string().into_bytes();
        let size = bytes.len();
        let w = &mut self.workers[worker];
        w.host.now = self.now;
        w.host.answer = Some(CallResponse {
            status: Some(status),
            content_type: Some("application/json".into()),
            body: Some(bytes),
            retry_after: retry_after.map(str::to_owned),
        });
        w.out.on_response(w.cfg, &mut w.st, &mut w.host, token, size)
    }

    /// Answers with a new token valid `expires_in` seconds; returns it.
    fn grant(&mut self, expires_in: u64) -> String {
        let token = format!("eyJ.tok{}-{}", self.issued.len(), "x".repeat(20));
        self.issue(&token, expires_in);
        token
    }

    /// Answers with `token`, valid `expires_in` seconds; the requests woken.
    fn issue(&mut self, token: &str, expires_in: u64) -> Vec<Wake> {
        self.issued.push(token.to_owned());
        self.answer(
            200,
            &json!({"access_token": token, "token_type": "Bearer", "expires_in": expires_in}),
            None,
        )
    }

    fn fail(&mut self, status: u16) -> Vec<Wake> {
        self.answer(status, &json!({"error": "temporarily_unavailable"}), None)
    }

    /// A request for `host` on worker `w` (may wait).
    fn request_on(&mut self, w: usize, host: &str, may_wait: bool) -> (u32, Got) {
        let ctx = self.next_context;
        self.next_context += 1;
        let mut req = HeaderRequest(HashMap::from([
            (":authority", host.to_owned()),
            ("authorization", "Bearer client-forged".to_owned()),
        ]));
        let w = &mut self.workers[w];
        let got = match w
            .out
            .egress_request(w.cfg, ctx, "/v1/invoices", &mut req, self.now, may_wait)
        {
            EgressVerdict::Unmatched => Got::Unmatched,
            EgressVerdict::Inject { token, .. } => Got::Inject(token.to_owned()),
            EgressVerdict::Wait { .. } => Got::Wait,
            EgressVerdict::Unavailable { retry_after_s, .. } => Got::Unavailable(retry_after_s),
            EgressVerdict::Rejected { retry_after_s, .. } => Got::Rejected(retry_after_s),
        };
        (ctx, got)
    }

    /// What every worker gives a request for the matched host.
    fn everywhere(&mut self, may_wait: bool) -> Vec<Got> {
        (0..self.workers.len())
            .map(|w| self.request_on(w, "api.billing.internal", may_wait).1)
            .collect()
    }

    fn counted(&self, c: Counter) -> usize {
        self.workers
            .iter()
            .map(|w| w.host.counters.iter().filter(|x| **x == c).count())
            .sum()
    }

    fn logs(&self) -> Vec<(Level, String)> {
        self.workers.iter().flat_map(|w| w.host.logs.clone()).collect()
    }

    /// No log line of any worker carries the secret, a token, or the
    /// client-credentials Basic value.
    fn assert_logs_clean(&self) {
        let basic = self
            .proxy
            .borrow()
            .requests
            .iter()
            .flat_map(|r| r.headers.clone())
            .filter(|(n, _)| n == "authorization")
            .map(|(_, v)| v)
            .collect::<Vec<_>>();
        for (_, line) in self.logs() {
            assert!(!line.contains(SECRET), "secret in log: {line}");
            assert!(!line.contains("s3cret"), "secret in log: {line}");
            for t in &self.issued {
                assert!(!line.contains(t.as_str()), "token in log: {line}");
                assert!(!line.contains(&t[..12]), "token prefix in log: {line}");
            }
            for b in &basic {
                assert!(
                    !line.contains(b.trim_start_matches("Basic ")),
                    "credentials in log: {line}"
                );
            }
        }
    }
}

#[test]
fn one_fetch_per_envoy_and_every_worker_injects_the_same_token() {
    let cfg = config(json!({}));
    let mut envoy = Envoy::new(&cfg, 3);
    assert_eq!(
        envoy.fetches().len(),
        1,
        "the lease holder fetched at configure time, alone"
    );
    // before the token arrives: requests wait; the unmatched host goes untouched
    let (ctx, got) = envoy.request_on(1, "billing.internal", true);
    assert_eq!(got, Got::Wait);
    assert_eq!(envoy.request_on(1, "other.internal", true).1, Got::Unmatched);
    assert_eq!(envoy.request_on(1, "billing.internal.evil", true).1, Got::Unmatched);
    // the request as the issuer sees it
    {
        let p = envoy.proxy.borrow();
        let r = &p.requests[0];
        let header = |n: &str| r.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(
            header("content-type").as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(header("accept").as_deref(), Some("application/json"));
        assert!(header("authorization").unwrap().starts_with("Basic "));
        assert_eq!(
            String::from_utf8(r.body.clone().unwrap()).unwrap(),
            "grant_type=client_credentials&audience=https%3A%2F%2Fbilling.example.com&scope=billing%3Aread+billing%3Awrite"
        );
    }
    let holder = envoy.fetches()[0].0;
    let token = envoy.grant(3600);
    // the holder serves it at once; the others after their tick, which wakes their waiters
    assert_eq!(
        envoy.request_on(holder, "billing.internal", true).1,
        Got::Inject(token.clone())
    );
    let wakes = envoy.tick_at(NOW + TICK_MS);
    assert!(
        wakes.iter().any(|w| w.contexts.contains(&ctx)),
        "the waiting request is woken"
    );
    // a client's own authorization header changes nothing: the entry's token is the one set
    assert_eq!(envoy.everywhere(false), vec![Got::Inject(token.clone()); 3]);
    // an hour of ticks later (before the refresh), still one fetch per Envoy
    envoy.run_until(NOW + 1_700_000);
    assert_eq!(envoy.fetches().len(), 1);
    assert_eq!(envoy.everywhere(true), vec![Got::Inject(token); 3]);
    assert_eq!(envoy.counted(Counter::EgressTokenFetchSent), 1);
    assert_eq!(envoy.counted(Counter::EgressTokenFetchOk), 1);
    assert!(envoy.workers.iter().all(|w| w.host.token_ttl_s == Some(1_900)));
    envoy.assert_logs_clean();
}

#[test]
fn the_token_is_refreshed_at_half_life_or_buffer_while_the_old_one_is_served() {
    // buffer 30 s on a 100 s token: refresh at min(70 s, 50 s) = 50 s
    let cfg = config(json!({"refresh_before_s": 30}));
    let mut envoy = Envoy::new(&cfg, 2);
    let old = envoy.grant(100);
    envoy.run_until(NOW + 49_900);
    assert_eq!(envoy.fetches().len(), 1);
    envoy.run_until(NOW + 50_000);
    assert_eq!(envoy.fetches().len(), 2, "refreshed at half life");
    // while the refresh is under way, every worker keeps serving the old token
    assert_eq!(envoy.everywhere(true), vec![Got::Inject(old.clone()); 2]);
    let new = envoy.grant(100);
    envoy.tick_at(NOW + 50_200);
    assert_eq!(envoy.everywhere(true), vec![Got::Inject(new); 2]);
    // a buffer longer than half the lifetime decides: 50 s token, 30 s buffer -> 20 s
    let mut envoy2 = Envoy::new(&cfg, 2);
    envoy2.grant(50);
    envoy2.run_until(NOW + 19_800);
    assert_eq!(envoy2.fetches().len(), 1);
    envoy2.run_until(NOW + 20_000);
    assert_eq!(envoy2.fetches().len(), 2);
    envoy.assert_logs_clean();
}

#[test]
fn an_expired_token_is_never_served() {
    let cfg = config(json!({"breaker_failures": 100, "backoff_max_s": 4}));
    let mut envoy = Envoy::new(&cfg, 2);
    let token = envoy.grant(20); // refresh at 10 s, expires at 20 s
    let mut served_after_margin = false;
    while envoy.now < NOW + 40_000 {
        let t = envoy.now + 100;
        envoy.tick_at(t);
        // every refresh fails
        if envoy.fetches().len() > 1 + envoy.counted(Counter::EgressTokenFetchFailed) {
            envoy.fail(503);
        }
        for got in envoy.everywhere(false) {
            if got == Got::Inject(token.clone()) && envoy.now + 5_000 >= NOW + 20_000 {
                served_after_margin = true;
            }
            if envoy.now < NOW + 15_000 {
                assert_eq!(
                    got,
                    Got::Inject(token.clone()),
                    "the valid token is served through failures"
                );
            } else {
                assert!(
                    matches!(got, Got::Unavailable(s) if s >= 1),
                    "{got:?} at {}",
                    envoy.now - NOW
                );
            }
        }
    }
    assert!(!served_after_margin);
    assert!(envoy.counted(Counter::EgressTokenFetchFailed) >= 5);
    envoy.assert_logs_clean();
}

/// The delays after each failure of a run of 503s (from the published state).
fn backoffs(random: u64, failures: usize) -> Vec<u64> {
    let cfg = config(json!({"breaker_failures": 100, "backoff_max_s": 4}));
    let mut envoy = Envoy::new(&cfg, 2);
    for w in &mut envoy.workers {
        w.host.random = random;
    }
    let mut delays = Vec::new();
    for _ in 0..failures {
        envoy.fail(503);
        let holder = envoy.fetches().last().unwrap().0;
        let next = envoy.workers[holder].out.egress_state(0).unwrap().next_attempt_ms;
        delays.push(next - envoy.now);
        // nothing is sent before the backoff is over, then exactly one fetch
        let before = envoy.fetches().len();
        envoy.tick_at(next - 1);
        assert_eq!(envoy.fetches().len(), before);
        envoy.tick_at(next);
        assert_eq!(envoy.fetches().len(), before + 1);
    }
    // every worker agrees on the state
    let other = (envoy.fetches().last().unwrap().0 + 1) % 2;
    envoy.tick_at(envoy.now);
    assert!(envoy.workers[other].out.egress_state(0).unwrap().failures as usize >= failures - 1);
    envoy.assert_logs_clean();
    delays
}

#[test]
fn backoff_is_1_2_4_seconds_with_jitter_and_capped() {
    assert_eq!(backoffs(0, 5), [500, 1_000, 2_000, 2_000, 2_000]);
    for r in [1, 7, 499, 1_234_567, u64::MAX, 0x9e37_79b9_7f4a_7c15] {
        let d = backoffs(r, 5);
        for (got, full) in d.iter().zip([1_000, 2_000, 4_000, 4_000, 4_000]) {
            assert!((full / 2..=full).contains(got), "random {r}: {d:?}");
        }
    }
    // the jitter really varies with the random value
    assert_ne!(backoffs(1, 3), backoffs(400, 3));
}

#[test]
fn the_breaker_opens_after_n_failures_and_half_opens() {
    let cfg = config(json!({"breaker_failures": 3, "breaker_open_s": 10, "backoff_max_s": 1}));
    let mut envoy = Envoy::new(&cfg, 2);
    for _ in 0..3 {
        envoy.fail(500);
        let t = envoy
            .workers
            .iter()
            .map(|w| w.out.egress_state(0).unwrap().next_attempt_ms)
            .max()
            .unwrap();
        if envoy.counted(Counter::EgressBreakerOpened) == 0 {
            envoy.run_until(t);
        }
    }
    assert_eq!(envoy.fetches().len(), 3);
    assert_eq!(envoy.counted(Counter::EgressBreakerOpened), 1);
    let opened_at = envoy.now;
    envoy.tick_at(opened_at + TICK_MS);
    // open: requests refused at once, nothing fetched for 10 s
    for got in envoy.everywhere(true) {
        assert!(matches!(got, Got::Unavailable(s) if (9..=10).contains(&s)), "{got:?}");
    }
    envoy.run_until(opened_at + 9_999);
    assert_eq!(envoy.fetches().len(), 3);
    // half-open: one trial, whose failure opens it again
    envoy.run_until(opened_at + 10_000);
    assert_eq!(envoy.fetches().len(), 4);
    envoy.fail(503);
    assert_eq!(envoy.counted(Counter::EgressBreakerOpened), 2);
    let reopened = envoy.now;
    envoy.run_until(reopened + 9_999);
    assert_eq!(envoy.fetches().len(), 4);
    envoy.run_until(reopened + 10_000);
    assert_eq!(envoy.fetches().len(), 5);
    // a successful trial closes it
    let token = envoy.grant(600);
    envoy.tick_at(envoy.now + TICK_MS);
    assert_eq!(envoy.everywhere(true), vec![Got::Inject(token); 2]);
    assert_eq!(envoy.workers[0].out.egress_state(0).unwrap().failures, 0);
    envoy.assert_logs_clean();
}

#[test]
fn a_429_retry_after_is_waited_for() {
    let cfg = config(json!({}));
    let mut envoy = Envoy::new(&cfg, 2);
    envoy.answer(429, &json!({"error": "slow_down"}), Some("7"));
    envoy.tick_at(NOW + TICK_MS);
    for got in envoy.everywhere(true) {
        assert!(matches!(got, Got::Unavailable(s) if (6..=7).contains(&s)), "{got:?}");
    }
    envoy.run_until(NOW + 6_999);
    assert_eq!(envoy.fetches().len(), 1);
    envoy.run_until(NOW + 7_000);
    assert_eq!(envoy.fetches().len(), 2);
    // a Retry-After beyond backoff_max_s is capped by it
    envoy.answer(429, &json!({}), Some("100000"));
    let holder = envoy.fetches()[1].0;
    let next = envoy.workers[holder].out.egress_state(0).unwrap().next_attempt_ms;
    assert_eq!(next - envoy.now, 30_000);
    envoy.assert_logs_clean();
}

#[test]
fn rejected_credentials_stop_fetching_with_one_error_line() {
    let cfg = config(json!({"rejected_retry_s": 60}));
    let mut envoy = Envoy::new(&cfg, 3);
    let token = envoy.grant(600);
    envoy.run_until(NOW + 300_000); // refresh at half life
    assert_eq!(envoy.fetches().len(), 2);
    let wakes = envoy.answer(401, &json!({"error": "invalid_client"}), None);
    assert!(wakes.is_empty());
    let rejected_at = envoy.now;
    envoy.tick_at(rejected_at + TICK_MS);
    // the held token is dropped everywhere; requests refused with the rejection's retry-after
    for got in envoy.everywhere(true) {
        assert!(matches!(got, Got::Rejected(s) if (59..=60).contains(&s)), "{got:?}");
    }
    assert!(!envoy.everywhere(false).contains(&Got::Inject(token)));
    envoy.run_until(rejected_at + 59_999);
    assert_eq!(envoy.fetches().len(), 2, "no fetch while rejected");
    let errors: Vec<String> = envoy
        .logs()
        .into_iter()
        .filter(|(l, _)| *l == Level::Error)
        .map(|(_, m)| m)
        .collect();
    assert_eq!(
        errors,
        ["egress token billing: the issuer rejected the client credentials (status 401, error invalid_client): not retrying for 60 s"]
    );
    assert_eq!(envoy.counted(Counter::EgressTokenRejected), 1);
    // then one attempt, which a request waits for
    envoy.run_until(rejected_at + 60_000);
    assert_eq!(envoy.fetches().len(), 3);
    let holder = envoy.fetches()[2].0;
    assert_eq!(envoy.request_on(holder, "billing.internal", true).1, Got::Wait);
    let token = envoy.grant(600);
    assert_eq!(envoy.request_on(holder, "billing.internal", true).1, Got::Inject(token));
    envoy.assert_logs_clean();
}

#[test]
fn a_wait_runs_out_and_a_lost_answer_is_a_failure() {
    let cfg = config(json!({}));
    let mut envoy = Envoy::new(&cfg, 2);
    let holder = envoy.fetches()[0].0;
    let follower = (holder + 1) % 2;
    let (ctx, got) = envoy.request_on(follower, "billing.internal", true);
    assert_eq!(got, Got::Wait);
    // no answer: the holder gives up at timeout + grace (3 s) and publishes the failure,
    // which wakes the follower's waiter (its own deadline, timeout + 1 s, came first)
    let mut woken_at = None;
    while envoy.now < NOW + 3_400 && woken_at.is_none() {
        let t = envoy.now + TICK_MS;
        if envoy.tick_at(t).iter().any(|w| w.contexts.contains(&ctx)) {
            woken_at = Some(t);
        }
    }
    assert_eq!(woken_at, Some(NOW + 3_000));
    assert!(matches!(
        envoy.request_on(follower, "billing.internal", false).1,
        Got::Unavailable(_)
    ));
    envoy.run_until(NOW + 3_400);
    assert_eq!(envoy.counted(Counter::EgressTokenFetchFailed), 1);
    // the late answer is ignored
    let (w, token) = envoy.fetches()[0];
    let wk = &mut envoy.workers[w];
    wk.host.answer = Some(CallResponse::default());
    assert!(wk
        .out
        .on_response(wk.cfg, &mut wk.st, &mut wk.host, token, 0)
        .is_empty());
    assert_eq!(envoy.counted(Counter::EgressTokenFetchFailed), 1);
    envoy.assert_logs_clean();
}

#[test]
fn the_refusal_replies_are_503_json_with_retry_after() {
    let r = reply(&EgressVerdict::Unavailable {
        entry: 0,
        retry_after_s: 3,
    })
    .unwrap();
    assert_eq!(r.status, 503);
    assert!(r.headers.contains(&("retry-after", "3".to_owned())));
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["error"], "egress_token_unavailable");
    assert!(body["error_description"].is_string());
}

/// A request's header list, as a proxy keeps it (names case-insensitive, repeats kept).
struct HeaderList {
    headers: Vec<(String, String)>,
    fail_remove: bool,
}

impl Headers for HeaderList {
    fn remove(&mut self, name: &str) -> Result<(), HeaderError> {
        if self.fail_remove {
            return Err(HeaderError);
        }
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        Ok(())
    }
    fn add(&mut self, name: &str, value: &str) -> Result<(), HeaderError> {
        self.headers.push((name.to_owned(), value.to_owned()));
        Ok(())
    }
}

#[test]
fn client_sent_authorization_headers_are_replaced_by_exactly_one() {
    let cfg = config(json!({}));
    let mut envoy = Envoy::new(&cfg, 2);
    let token = envoy.grant(600);
    let Got::Inject(served) = envoy.request_on(envoy.fetches()[0].0, "billing.internal", true).1 else {
        panic!("no token served");
    };
    assert_eq!(served, token);
    let mut h = HeaderList {
        headers: vec![
            ("authorization".into(), "Bearer client-forged".into()),
            ("x-other".into(), "kept".into()),
            ("Authorization".into(), "Basic Y2xpZW50OnNlY3JldA==".into()),
            ("AUTHORIZATION".into(), "".into()),
        ],
        fail_remove: false,
    };
    inject(&served, &mut h).unwrap();
    let auth: Vec<&(String, String)> = h
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .collect();
    assert_eq!(auth, [&("authorization".to_owned(), format!("Bearer {token}"))]);
    assert!(h.headers.contains(&("x-other".into(), "kept".into())));
    // a removal the host refuses: no token is added, the shell refuses the request
    let mut h = HeaderList {
        headers: vec![("authorization".into(), "Bearer client-forged".into())],
        fail_remove: true,
    };
    assert_eq!(inject(&served, &mut h), Err(HeaderError));
    assert_eq!(h.headers.len(), 1);
    envoy.assert_logs_clean();
}

#[test]
fn entries_match_by_normalised_prefix_in_order() {
    let secret = |n: &str| (n == "BILLING_CLIENT_SECRET").then(|| SECRET.to_owned());
    let entry = |name: &str, m: Value| {
        json!({"name": name, "match": m, "client_id": "mc_1", "client_secret_env": "BILLING_CLIENT_SECRET",
               "token_endpoint": {"cluster": "issuer", "path": PATH}})
    };
    let doc = json!({"egress_tokens": [
        entry("v1", json!({"prefix": "/v1/", "hosts": ["billing.internal"]})),
        entry("any", json!({"hosts": ["billing.internal"]})),
    ]});
    let cfg = config::parse(doc.to_string().as_bytes(), &secret).unwrap();
    let select = |path: &str, host: &str| {
        let mut req = HeaderRequest(HashMap::from([(":authority", host.to_owned())]));
        edge_auth_core::egress::decide::select(&cfg.egress, &cfg.egress_needs, path, &mut req)
    };
    assert_eq!(select("/v1/invoices?x=1", "billing.internal"), Some(0));
    assert_eq!(
        select("/v1/../v2/invoices", "billing.internal"),
        Some(1),
        "normalised first"
    );
    assert_eq!(select("/v2/invoices", "billing.internal"), Some(1));
    assert_eq!(select("/v1/invoices", "BILLING.internal."), Some(0));
    assert_eq!(select("/v1/invoices", "billing.internal.evil"), None);
    assert_eq!(
        select("/v1/invoices", "user@billing.internal"),
        None,
        "an ambiguous host matches no hosts"
    );
}

/// Answers every token request sent since `answered` with `expires_in`,
/// ticking every `TICK_MS` until `until`; the number of requests answered.
fn grant_every_fetch_until(envoy: &mut Envoy<'_>, expires_in: u64, until: u64) -> usize {
    let mut answered = 0;
    while envoy.now < until {
        while answered < envoy.fetches().len() {
            envoy.grant(expires_in);
            answered += 1;
        }
        let t = envoy.now + TICK_MS;
        envoy.tick_at(t);
    }
    answered
}

#[test]
fn a_token_too_short_lived_to_serve_is_a_failure_not_a_refetch_storm() {
    // A token is not served in its last 5 s: one of 1..=9 s could never be
    // served for long (or at all), and refreshing it at half its life would
    // fetch every few hundred ms, forever, with every request refused.
    for expires_in in [1, 5, 9] {
        let cfg = config(json!({}));
        let mut envoy = Envoy::new(&cfg, 2);
        let answered = grant_every_fetch_until(&mut envoy, expires_in, NOW + 20_000);
        // backed off (1 s, 2 s, 4 s, 8 s, jittered): a handful, not one per half-life
        assert!(answered <= 6, "expires_in {expires_in}: {answered} fetches in 20 s");
        assert_eq!(envoy.counted(Counter::EgressTokenFetchOk), 0, "expires_in {expires_in}");
        assert!(envoy.counted(Counter::EgressTokenFetchFailed) >= 3);
        assert!(!envoy.everywhere(false).iter().any(|g| matches!(g, Got::Inject(_))));
    }
    // 10 s is the shortest accepted: served for 5 s, refreshed at half its life
    let cfg = config(json!({}));
    let mut envoy = Envoy::new(&cfg, 2);
    let token = envoy.grant(10);
    envoy.tick_at(NOW + TICK_MS);
    assert_eq!(envoy.everywhere(true), vec![Got::Inject(token); 2]);
    envoy.assert_logs_clean();
}

#[test]
fn a_token_s_lifetime_counts_from_when_its_request_was_sent() {
    // The issuer's expires_in runs from when it answered, somewhere between
    // the request and its arrival: counting it from the arrival would serve
    // the token up to timeout_ms past its real expiry.
    let cfg = config(json!({"refresh_before_s": 0})); // timeout_ms 2000
    let mut envoy = Envoy::new(&cfg, 2);
    envoy.tick_at(NOW + 1_800); // the answer arrives 1.8 s after the request
    let token = envoy.grant(60);
    envoy.run_until(NOW + 30_000 - 1);
    assert_eq!(envoy.fetches().len(), 1, "refreshed at half life from the request");
    envoy.run_until(NOW + 30_000);
    assert_eq!(envoy.fetches().len(), 2);
    envoy.run_until(NOW + 54_999);
    assert_eq!(envoy.everywhere(false), vec![Got::Inject(token); 2]);
    envoy.run_until(NOW + 55_000);
    assert!(!envoy.everywhere(false).iter().any(|g| matches!(g, Got::Inject(_))));
    let holder = envoy.fetches()[0].0;
    let held = envoy.workers[holder]
        .out
        .egress_state(0)
        .unwrap()
        .token
        .clone()
        .unwrap();
    assert_eq!((held.obtained_at_ms, held.expires_at_ms), (NOW, NOW + 60_000));
}

#[test]
fn waiting_requests_are_bounded_and_a_gone_one_is_never_woken() {
    use edge_auth_core::egress::decide::MAX_WAITING;
    let cfg = config(json!({}));
    let mut envoy = Envoy::new(&cfg, 1);
    let mut waiting = Vec::new();
    for _ in 0..MAX_WAITING {
        let (ctx, got) = envoy.request_on(0, "billing.internal", true);
        assert_eq!(got, Got::Wait);
        waiting.push(ctx);
    }
    // one more than the bound: refused at once, not parked
    assert_eq!(envoy.request_on(0, "billing.internal", true).1, Got::Unavailable(1));
    // clients that went away: forgotten, their places free, never woken
    let gone: Vec<u32> = waiting.drain(..10).collect();
    for &ctx in &gone {
        envoy.workers[0].out.forget(ctx);
    }
    let (ctx, got) = envoy.request_on(0, "billing.internal", true);
    assert_eq!(got, Got::Wait);
    waiting.push(ctx);
    let wakes = envoy.issue(&format!("eyJ.tok-{}", "y".repeat(20)), 600);
    let woken: Vec<u32> = wakes.iter().flat_map(|w| w.contexts.clone()).collect();
    assert_eq!(woken, waiting);
    assert!(gone.iter().all(|c| !woken.contains(c)));
    // the list is empty again: nothing is woken twice
    assert!(envoy.tick_at(NOW + 10_000).is_empty());
}

#[test]
fn retry_after_beyond_any_clock_is_capped_and_other_forms_fall_back_to_backoff() {
    let cfg = config(json!({}));
    // (Retry-After, the wait it gives: the cap, or the first jittered backoff)
    for (value, capped) in [
        ("99999999999999999999999999", true),
        ("1000000000", true),
        ("31", true),
        ("-5", false),
        ("Wed, 21 Oct 2015 07:28:00 GMT", false),
        ("5, 6", false),
        (" ", false),
    ] {
        let mut envoy = Envoy::new(&cfg, 1);
        envoy.answer(429, &json!({"error": "slow_down"}), Some(value));
        let next = envoy.workers[0].out.egress_state(0).unwrap().next_attempt_ms;
        if capped {
            assert_eq!(next - NOW, 30_000, "{value:?}");
        } else {
            assert!((500..=1_000).contains(&(next - NOW)), "{value:?}: {}", next - NOW);
        }
    }
}

#[test]
fn two_entries_with_the_same_credentials_share_one_fetch() {
    // Same issuer, client, audience, scopes and secret, different upstreams:
    // one token, fetched once per Envoy, served to both.
    let entry = |name: &str, host: &str| {
        json!({
            "name": name,
            "match": { "hosts": [host] },
            "token_endpoint": { "cluster": "issuer", "authority": "auth.example.com", "path": PATH },
            "client_id": "mc_0123",
            "client_secret_env": "BILLING_CLIENT_SECRET",
        })
    };
    let doc = json!({ "egress_tokens": [entry("a", "a.internal"), entry("b", "b.internal")] });
    let cfg = config::parse(doc.to_string().as_bytes(), &|n| {
        (n == "BILLING_CLIENT_SECRET").then(|| SECRET.to_owned())
    })
    .unwrap();
    let mut envoy = Envoy::new(&cfg, 2);
    envoy.tick_at(NOW + TICK_MS);
    assert_eq!(envoy.fetches().len(), 1);
    let holder = envoy.fetches()[0].0;
    let (b_ctx, got) = envoy.request_on(holder, "b.internal", true);
    assert_eq!(got, Got::Wait);
    let token = format!("eyJ.shared-{}", "z".repeat(20));
    let wakes = envoy.issue(&token, 600);
    // the waiter of the entry that did not fetch is woken by the answer
    assert!(wakes.iter().any(|w| w.contexts.contains(&b_ctx)));
    envoy.tick_at(NOW + 2 * TICK_MS);
    for w in 0..2 {
        for host in ["a.internal", "b.internal"] {
            assert_eq!(
                envoy.request_on(w, host, false).1,
                Got::Inject(token.clone()),
                "{w} {host}"
            );
        }
    }
    envoy.run_until(NOW + 300_000 + TICK_MS); // refresh at half life
    assert_eq!(envoy.fetches().len(), 2);
    envoy.assert_logs_clean();
}

/// A request that counts what is asked of it.
struct Counted(HeaderRequest, usize);

impl edge_auth_core::decision::Request for Counted {
    fn header(&mut self, name: &str) -> Option<String> {
        self.1 += 1;
        self.0.header(name)
    }
    fn forwarded_for(&mut self) -> Option<String> {
        self.1 += 1;
        None
    }
    fn peer(&mut self) -> Option<String> {
        self.1 += 1;
        self.0.peer()
    }
    fn route_name(&mut self) -> Option<String> {
        self.1 += 1;
        None
    }
    fn route_metadata(&mut self, _filter: &str, _key: &str) -> Option<String> {
        self.1 += 1;
        None
    }
}

#[test]
fn an_entry_without_match_takes_the_request_unread_and_a_matched_one_reads_it() {
    use edge_auth_core::egress::decide::{reads_request, select};
    let secret = |n: &str| (n == "BILLING_CLIENT_SECRET").then(|| SECRET.to_owned());
    let entry = |name: &str, m: Option<Value>| {
        let mut e = json!({"name": name, "client_id": "mc_1", "client_secret_env": "BILLING_CLIENT_SECRET",
               "token_endpoint": {"cluster": "issuer", "path": PATH}});
        if let Some(m) = m {
            e["match"] = m;
        }
        e
    };
    let parse = |entries: Vec<Value>| {
        config::parse(json!({ "egress_tokens": entries }).to_string().as_bytes(), &secret).unwrap()
    };
    let req = || {
        Counted(
            HeaderRequest(HashMap::from([(":authority", "billing.internal".to_owned())])),
            0,
        )
    };
    // the first entry takes everything: the request is never asked
    let cfg = parse(vec![
        entry("all", None),
        entry("billing", Some(json!({"hosts": ["billing.internal"]}))),
    ]);
    assert!(!reads_request(&cfg.egress));
    let mut r = req();
    assert_eq!(select(&cfg.egress, &cfg.egress_needs, "/x", &mut r), Some(0));
    assert_eq!(r.1, 0);
    // a matched entry first: the host is read, and a catch-all after it still takes the rest
    let cfg = parse(vec![
        entry("other", Some(json!({"hosts": ["other.internal"]}))),
        entry("all", None),
    ]);
    assert!(reads_request(&cfg.egress));
    let mut r = req();
    assert_eq!(select(&cfg.egress, &cfg.egress_needs, "/x", &mut r), Some(1));
    assert!(r.1 > 0);
    assert!(!reads_request(&[]));
}

/// A header list that knows how many `authorization` values it holds and
/// replaces like a proxy: the one value set in place, or added.
struct Replacing(HeaderList, Vec<&'static str>);

impl Headers for Replacing {
    fn remove(&mut self, name: &str) -> Result<(), HeaderError> {
        self.1.push("remove");
        self.0.remove(name)
    }
    fn add(&mut self, name: &str, value: &str) -> Result<(), HeaderError> {
        self.1.push("add");
        self.0.add(name, value)
    }
    fn at_most_one(&self, name: &str) -> bool {
        self.0
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
            <= 1
    }
    fn replace(&mut self, name: &str, value: &str) -> Result<(), HeaderError> {
        self.1.push("replace");
        match self.0.headers.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some(h) => h.1 = value.to_owned(),
            None => self.0.headers.push((name.to_owned(), value.to_owned())),
        }
        Ok(())
    }
}

#[test]
fn a_single_or_absent_authorization_is_replaced_in_one_edit_with_the_same_result() {
    let auth = |h: &HeaderList| -> Vec<String> {
        h.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.clone())
            .collect()
    };
    let cases: [Vec<(String, String)>; 4] = [
        vec![],
        vec![("authorization".into(), "Bearer client-forged".into())],
        vec![("x-other".into(), "kept".into()), ("Authorization".into(), "".into())],
        vec![
            ("authorization".into(), "Bearer a".into()),
            ("AUTHORIZATION".into(), "Bearer b".into()),
        ],
    ];
    for headers in cases {
        let dups = headers.len() == 2 && !headers.iter().any(|(n, _)| n == "x-other");
        let mut reference = HeaderList {
            headers: headers.clone(),
            fail_remove: false,
        };
        inject("tok", &mut reference).unwrap();
        let mut h = Replacing(
            HeaderList {
                headers,
                fail_remove: false,
            },
            Vec::new(),
        );
        inject("tok", &mut h).unwrap();
        assert_eq!(auth(&h.0), ["Bearer tok"]);
        assert_eq!(auth(&h.0), auth(&reference));
        let others = |l: &HeaderList| l.headers.iter().filter(|(n, _)| n == "x-other").count();
        assert_eq!(others(&h.0), others(&reference));
        if dups {
            assert_eq!(h.1, ["remove", "add"], "two values: both removed, one added");
        } else {
            assert_eq!(h.1, ["replace"]);
        }
    }
}
