//! A fake proxy-wasm host for the outbound calls: one or several workers of
//! one proxy share a shared-data store (with compare-and-swap as Envoy does
//! it) and record every call they send; answers are delivered by the test and
//! the clock is the test's to move.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use edge_auth_core::api_key::breaker::BreakerState;
use edge_auth_core::api_key::key_hash;
use edge_auth_core::config::Config;
use edge_auth_core::decision::{KeyAnswer, State};
use edge_auth_core::logging::Level;
use edge_auth_core::outbound::{CallResponse, CallState, Counter, Host, HostError, HttpCall, Outbound, Purpose, Wake};
use serde_json::Value;

/// The time every fake host starts at, in seconds and in milliseconds.
pub const NOW_S: u64 = 1_800_000_000;
pub const NOW: u64 = NOW_S * 1000;

/// What every worker of one proxy shares: shared data (value, version), the
/// writes to it and every call sent, by worker.
#[derive(Default)]
pub struct Proxy {
    pub data: HashMap<String, (Vec<u8>, u32)>,
    pub version: u32,
    /// Writes, in order (key, value).
    pub writes: Vec<(String, Vec<u8>)>,
    /// Every call any worker sent, in order: (worker, token, path).
    pub sent: Vec<(usize, u32, String)>,
    /// What each call of `sent` carried, in the same order.
    pub requests: Vec<Sent>,
}

/// A proxy with no shared data and nothing sent yet.
pub fn proxy() -> Rc<RefCell<Proxy>> {
    Rc::new(RefCell::new(Proxy::default()))
}

/// A call the core sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub token: u32,
    pub cluster: String,
    pub authority: String,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout_ms: u64,
}

impl Sent {
    /// Cluster, authority, method and path.
    pub fn line(&self) -> (&str, &str, &str, &str) {
        (&self.cluster, &self.authority, &self.method, &self.path)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// One worker's host.
pub struct Fake {
    /// This worker's index in its proxy.
    pub worker: usize,
    pub now: u64,
    pub shared: Rc<RefCell<Proxy>>,
    pub next_token: u32,
    pub sent: Vec<Sent>,
    /// The next dispatches fail with this.
    pub refuse_dispatch: Option<HostError>,
    /// The next compare-and-swap write loses to another worker.
    pub lose_cas: bool,
    /// The answer being delivered.
    pub answer: Option<CallResponse>,
    /// The body limits the core read answers with.
    pub read_limits: Vec<usize>,
    pub counters: Vec<Counter>,
    pub breaker: Vec<BreakerState>,
    /// `revocation_state_age` reports, in order.
    pub ages: Vec<u64>,
    pub logs: Vec<(Level, String)>,
    pub ticks: Vec<u64>,
    pub refuse_tick: bool,
    /// What [`Host::random_u64`] returns.
    pub random: u64,
    /// The last `egress_token_ttl` reported.
    pub token_ttl_s: Option<u64>,
}

impl Fake {
    /// The first worker of a proxy of its own.
    pub fn new() -> Fake {
        Fake::of(&proxy(), 0)
    }

    /// Another worker of the same proxy as `self` (its call tokens differ from `self`'s).
    pub fn worker(&self) -> Fake {
        let mut f = Fake::of(&self.shared, self.worker + 1);
        f.now = self.now;
        f.next_token = 1000;
        f
    }

    /// Worker `worker` of `proxy`, at [`NOW`].
    pub fn of(proxy: &Rc<RefCell<Proxy>>, worker: usize) -> Fake {
        Fake {
            worker,
            now: NOW,
            shared: Rc::clone(proxy),
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
            random: 0,
            token_ttl_s: None,
        }
    }

    pub fn count(&self, c: Counter) -> usize {
        self.counters.iter().filter(|x| **x == c).count()
    }

    pub fn warnings(&self) -> Vec<&str> {
        self.logs
            .iter()
            .filter(|(l, _)| *l == Level::Warn)
            .map(|(_, m)| m.as_str())
            .collect()
    }

    pub fn last_sent(&self) -> &Sent {
        self.sent.last().expect("a call was sent")
    }

    pub fn shared_value(&self, key: &str) -> Option<Vec<u8>> {
        self.shared.borrow().data.get(key).map(|(v, _)| v.clone())
    }

    pub fn put_shared(&self, key: &str, value: &[u8]) {
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
        let sent = Sent {
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
        };
        let mut p = self.shared.borrow_mut();
        p.sent.push((self.worker, token, call.path.to_owned()));
        p.requests.push(sent.clone());
        self.sent.push(sent);
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
            // as Envoy: a compare-and-swap version is checked only on a key that exists
            if s.data.get(key).is_some_and(|(_, held)| *held != cas) {
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

    fn revocation_state_age(&mut self, age_ms: u64) {
        self.ages.push(age_ms);
    }

    fn egress_token_ttl(&mut self, ttl_s: u64) {
        self.token_ttl_s = Some(ttl_s);
    }

    fn random_u64(&mut self) -> u64 {
        self.random
    }

    fn log(&mut self, level: Level, message: &str) {
        self.logs.push((level, message.to_owned()));
    }
}

/// One worker: its configuration's state, its registry and its host.
pub struct Worker<'c> {
    pub cfg: &'c Config,
    pub st: State,
    pub out: Outbound,
    pub host: Fake,
}

impl<'c> Worker<'c> {
    pub fn new(cfg: &'c Config, host: Fake) -> Worker<'c> {
        Worker {
            cfg,
            st: State::new(cfg),
            out: Outbound::new(cfg),
            host,
        }
    }

    pub fn start(&mut self) -> Vec<Wake> {
        self.out.start(self.cfg, &mut self.st, &mut self.host)
    }

    pub fn tick(&mut self) -> Vec<Wake> {
        self.out.on_tick(self.cfg, &mut self.st, &mut self.host)
    }

    pub fn tick_at(&mut self, now: u64) -> Vec<Wake> {
        self.host.now = now;
        self.tick()
    }

    pub fn lookup(&mut self, context: u32, key: &str) -> Option<KeyAnswer> {
        self.out
            .await_lookup(self.cfg, &mut self.host, context, key_hash(key), None)
    }

    /// Delivers `answer` for the call `token`.
    pub fn answer(&mut self, token: u32, answer: CallResponse) -> Vec<Wake> {
        let size = answer.body.as_ref().map_or(0, Vec::len);
        self.host.answer = Some(answer);
        let wakes = self
            .out
            .on_response(self.cfg, &mut self.st, &mut self.host, token, size);
        self.host.answer = None;
        wakes
    }

    pub fn state_of(&self, purpose: &Purpose) -> Option<CallState> {
        self.out.calls().find(|c| c.purpose == purpose).map(|c| c.state)
    }

    pub fn waiters_of(&self, purpose: &Purpose) -> Vec<u32> {
        self.out
            .calls()
            .find(|c| c.purpose == purpose)
            .map(|c| c.waiters.to_vec())
            .unwrap_or_default()
    }
}

/// A JSON answer with `status`.
pub fn json_answer(status: u16, body: &Value) -> CallResponse {
    CallResponse {
        status: Some(status),
        content_type: Some("application/json".into()),
        body: Some(body.to_string().into_bytes()),
        retry_after: None,
    }
}
