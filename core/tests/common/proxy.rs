//! A fake proxy for the outbound calls of several workers: one shared-data
//! store (with compare-and-swap as Envoy does it) and every call sent, and a
//! [`Fake`] host per worker with its own clock, counters, logs and a
//! deterministic random source.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use edge_auth_core::api_key::breaker::BreakerState;
use edge_auth_core::logging::Level;
use edge_auth_core::outbound::{CallResponse, Counter, Host, HostError, HttpCall};

/// A call as sent: its headers (besides the pseudo-headers) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

/// The proxy: shared data (value, version) and every call sent, by worker.
#[derive(Default)]
pub struct Proxy {
    pub data: HashMap<String, (Vec<u8>, u32)>,
    pub version: u32,
    /// (worker, token, path)
    pub sent: Vec<(usize, u32, String)>,
    /// What each call of `sent` carried, in the same order.
    pub requests: Vec<Request>,
}

pub struct Fake {
    pub worker: usize,
    pub now: u64,
    pub proxy: Rc<RefCell<Proxy>>,
    pub next_token: u32,
    pub answer: Option<CallResponse>,
    pub counters: Vec<Counter>,
    pub logs: Vec<(Level, String)>,
    /// What [`Host::random_u64`] returns.
    pub random: u64,
    /// The last `egress_token_ttl` reported.
    pub token_ttl_s: Option<u64>,
}

impl Fake {
    pub fn new(worker: usize, now: u64, proxy: &Rc<RefCell<Proxy>>) -> Fake {
        Fake {
            worker,
            now,
            proxy: Rc::clone(proxy),
            next_token: 0,
            answer: None,
            counters: vec![],
            logs: vec![],
            random: 0,
            token_ttl_s: None,
        }
    }
}

impl Host for Fake {
    fn now_ms(&mut self) -> u64 {
        self.now
    }
    fn dispatch(&mut self, call: &HttpCall<'_>) -> Result<u32, HostError> {
        self.next_token += 1;
        let t = self.next_token;
        let mut p = self.proxy.borrow_mut();
        p.sent.push((self.worker, t, call.path.to_owned()));
        p.requests.push(Request {
            headers: call
                .headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: call.body.map(<[u8]>::to_vec),
        });
        Ok(t)
    }
    fn call_response(&mut self, body_size: usize, max_body: usize) -> CallResponse {
        let mut r = self.answer.take().expect("an answer is being delivered");
        // as the proxy's buffer read: at most the asked length
        if let Some(b) = &mut r.body {
            b.truncate(body_size.min(max_body + 1));
        }
        r
    }
    fn shared_get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.proxy.borrow().data.get(key) {
            Some((v, c)) => (Some(v.clone()), Some(*c)),
            None => (None, None),
        }
    }
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        // as Envoy: a compare-and-swap version is checked only on a key that exists
        let mut p = self.proxy.borrow_mut();
        if let (Some(cas), Some((_, held))) = (cas, p.data.get(key)) {
            if cas != *held {
                return Err(HostError::CasMismatch);
            }
        }
        p.version += 1;
        let v = p.version;
        p.data.insert(key.to_owned(), (value.to_vec(), v));
        Ok(())
    }
    fn set_tick_period_ms(&mut self, _period_ms: u64) -> Result<(), HostError> {
        Ok(())
    }
    fn count(&mut self, counter: Counter) {
        self.counters.push(counter);
    }
    fn breaker_state(&mut self, _state: BreakerState) {}
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
