//! The API-key lookup breaker, shared by every worker of an Envoy: its
//! state lives in shared data and every step (allow, success, failure) is
//! a compare-and-swap of it, so an Envoy stops calling a failing service
//! after `failure_threshold` consecutive failures in all, not per worker,
//! lets one probe through at a time, and its gauge shows one state.
//!
//! The name is the lookup endpoint's stable identity
//! (`edge-auth.breaker.<id>`: cluster, authority, lookup path and the
//! service token's fingerprint), not the configuration's generation, so a
//! reload neither grows shared data nor closes an open breaker. The value
//! is `breaker <identity> <state>` ([`Breaker::encode`]); anything else is
//! read as "never written" (a closed breaker). If the shared state cannot
//! be written (compare-and-swap lost four times in a row), the step is
//! applied to this worker's copy only.

use sha2::{Digest, Sha256};

use super::Host;
use crate::api_key::breaker::{Allowance, Breaker, BreakerPolicy, BreakerState};
use crate::config::Config;

const CAS_TRIES: usize = 4;

#[derive(Debug)]
pub struct SharedBreaker {
    /// The state as last read or written.
    local: Breaker,
    /// `None`: no API keys configured (nothing to share).
    key: Option<String>,
    identity: String,
}

impl SharedBreaker {
    pub fn new(cfg: &Config) -> SharedBreaker {
        let policy = cfg.api_keys.as_ref().map_or(
            BreakerPolicy {
                failure_threshold: 1,
                open_ms: 0,
            },
            |k| k.breaker,
        );
        let (key, identity) = match (&cfg.api_keys, &cfg.auth_service) {
            (Some(keys), Some(svc)) => {
                let mut h = Sha256::new();
                for part in [&svc.cluster, &svc.authority, &keys.lookup_path] {
                    h.update((part.len() as u64).to_be_bytes());
                    h.update(part.as_bytes());
                }
                h.update(Sha256::digest(svc.token.as_bytes()));
                let identity = crate::api_key::hex(&h.finalize().into());
                (Some(format!("edge-auth.breaker.{}", &identity[..16])), identity)
            }
            _ => (None, String::new()),
        };
        SharedBreaker {
            local: Breaker::new(policy),
            key,
            identity,
        }
    }

    /// The state as last read or written.
    pub fn state(&self) -> BreakerState {
        self.local.state()
    }

    pub fn allow(&mut self, host: &mut dyn Host, now_ms: u64) -> Allowance {
        self.step(host, |b| b.allow(now_ms))
    }

    pub fn on_success(&mut self, host: &mut dyn Host, now_ms: u64) {
        self.step(host, |b| b.on_success(now_ms));
    }

    /// Whether this failure opened the breaker (it was not open before, in
    /// the shared state).
    pub fn on_failure(&mut self, host: &mut dyn Host, now_ms: u64) -> bool {
        let open = |s: BreakerState| matches!(s, BreakerState::Open { .. });
        self.step(host, |b| {
            let was = b.state();
            b.on_failure(now_ms);
            open(b.state()) && !open(was)
        })
    }

    /// Applies `f` to the shared state, compare-and-swapped.
    fn step<R>(&mut self, host: &mut dyn Host, f: impl Fn(&mut Breaker) -> R) -> R {
        let Some(key) = &self.key else {
            return f(&mut self.local);
        };
        let policy = self.local.policy();
        let prefix = format!("breaker {} ", self.identity);
        for _ in 0..CAS_TRIES {
            let (value, cas) = host.shared_get(key);
            let held = value
                .as_deref()
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|t| t.strip_prefix(&prefix))
                .and_then(|t| Breaker::decode(policy, t));
            let mut b = held.clone().unwrap_or_else(|| Breaker::new(policy));
            let r = f(&mut b);
            let text = b.encode();
            if held.is_some_and(|h| h.encode() == text) {
                self.local = b;
                return r;
            }
            let cas = match cas {
                Some(c) => Some(c),
                None => {
                    let _ = host.shared_set(key, b"", None);
                    host.shared_get(key).1
                }
            };
            if host.shared_set(key, format!("{prefix}{text}").as_bytes(), cas).is_ok() {
                self.local = b;
                return r;
            }
        }
        f(&mut self.local)
    }
}
