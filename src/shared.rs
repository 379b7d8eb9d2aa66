//! What the root context shares with its HTTP contexts: the compiled
//! configuration, the per-worker decision state, the metrics, the requests
//! waiting for a JWKS fetch, the fetches under way and the response headers
//! still to add.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use edge_auth_core::breaker::{Breaker, BreakerPolicy};
use edge_auth_core::config::Config;
use edge_auth_core::decision::{ResponseHeaders, State};

use crate::key_lookup::Pending;
use crate::metrics::Metrics;

/// A request paused until a provider's key set is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiter {
    pub context_id: u32,
    pub provider: usize,
}

pub struct Shared {
    pub config: Config,
    pub state: RefCell<State>,
    pub metrics: Rc<Metrics>,
    pub waiters: RefCell<Vec<Waiter>>,
    /// HTTP call tokens of JWKS fetches under way, with their provider.
    pub fetches: RefCell<Vec<(u32, usize)>>,
    /// CORS headers to add to the response of an allowed request, by context.
    pub response_headers: RefCell<HashMap<u32, ResponseHeaders>>,
    /// When the last rate-limited warning was logged (host ms).
    last_warn_ms: Cell<Option<u64>>,
    /// The revocation poll under way: its call token and deadline (host ms).
    pub revocation_poll: Cell<Option<(u32, u64)>>,
    /// When the next revocation poll is due (host ms).
    pub next_revocation_poll_ms: Cell<u64>,
    /// API-key lookups under way or queued, one per key hash.
    pub lookups: RefCell<Vec<Pending>>,
    /// Trips after repeated lookup failures (per worker).
    pub breaker: RefCell<Breaker>,
    /// The root context's tick period as last set.
    pub tick_period: Cell<Duration>,
    /// Configuration notices already logged by this worker (each once).
    noticed: RefCell<Vec<&'static str>>,
}

/// Minimum time between two request-triggered warnings in the log.
pub const WARN_INTERVAL_MS: u64 = 10_000;

impl Shared {
    pub fn new(config: Config, metrics: Rc<Metrics>) -> Shared {
        let state = RefCell::new(State::new(&config));
        let breaker = config.api_keys.as_ref().map_or(
            BreakerPolicy {
                failure_threshold: 1,
                open_ms: 0,
            },
            |k| k.breaker,
        );
        Shared {
            config,
            state,
            metrics,
            waiters: RefCell::new(Vec::new()),
            fetches: RefCell::new(Vec::new()),
            response_headers: RefCell::new(HashMap::new()),
            last_warn_ms: Cell::new(None),
            revocation_poll: Cell::new(None),
            next_revocation_poll_ms: Cell::new(0),
            lookups: RefCell::new(Vec::new()),
            breaker: RefCell::new(Breaker::new(breaker)),
            tick_period: Cell::new(Duration::ZERO),
            noticed: RefCell::new(Vec::new()),
        }
    }

    /// Whether `notice` is new on this worker; records it. A notice names a
    /// configuration problem every request hits alike, so once is enough.
    pub fn first_notice(&self, notice: &'static str) -> bool {
        let mut seen = self.noticed.borrow_mut();
        if seen.contains(&notice) {
            return false;
        }
        seen.push(notice);
        true
    }

    /// Whether a request-triggered warning may be logged now (at most one per
    /// [`WARN_INTERVAL_MS`]); records it when it may.
    pub fn warn_allowed(&self, now_ms: u64) -> bool {
        let allowed = self
            .last_warn_ms
            .get()
            .is_none_or(|last| now_ms.saturating_sub(last) >= WARN_INTERVAL_MS);
        if allowed {
            self.last_warn_ms.set(Some(now_ms));
        }
        allowed
    }

    /// Takes out every waiter of `provider`.
    pub fn take_waiters(&self, provider: usize) -> Vec<Waiter> {
        let mut all = self.waiters.borrow_mut();
        let (mine, rest): (Vec<Waiter>, Vec<Waiter>) = all.drain(..).partition(|w| w.provider == provider);
        *all = rest;
        mine
    }

    /// Forgets everything kept for a request that is done.
    pub fn forget(&self, context_id: u32) {
        // (called from a drop: never panics on a borrow, which cannot be
        // held here anyway since the host deletes a context between callbacks)
        if let Ok(mut waiters) = self.waiters.try_borrow_mut() {
            waiters.retain(|w| w.context_id != context_id);
        }
        if let Ok(mut lookups) = self.lookups.try_borrow_mut() {
            for p in lookups.iter_mut() {
                p.waiters.retain(|w| *w != context_id);
            }
        }
        if let Ok(mut headers) = self.response_headers.try_borrow_mut() {
            headers.remove(&context_id);
        }
    }
}
