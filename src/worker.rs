//! What the root context shares with its HTTP contexts, one per Envoy
//! worker: the compiled configuration, the decision state, the outbound
//! calls, the metrics and the response headers still to add.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use edge_auth_core::config::Config;
use edge_auth_core::decision::{ResponseHeaders, State};
use edge_auth_core::outbound::Outbound;

use crate::host::ProxyHost;
use crate::metrics::Metrics;
use crate::rule_metrics::RuleMetrics;

pub struct Worker {
    pub config: Config,
    pub state: RefCell<State>,
    pub outbound: RefCell<Outbound>,
    pub metrics: Rc<Metrics>,
    /// The counters of this configuration's rules.
    pub rule_metrics: RuleMetrics,
    /// CORS headers to add to the response of an allowed request, by context.
    pub response_headers: RefCell<HashMap<u32, ResponseHeaders>>,
    /// Configuration notices already logged by this worker (each once).
    noticed: RefCell<Vec<&'static str>>,
}

impl Worker {
    pub fn new(config: Config, metrics: Rc<Metrics>) -> Worker {
        Worker {
            state: RefCell::new(State::new(&config)),
            outbound: RefCell::new(Outbound::new(&config)),
            rule_metrics: RuleMetrics::define(&config),
            config,
            metrics,
            response_headers: RefCell::new(HashMap::new()),
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

    /// The host, for the outbound calls.
    pub fn host(&self) -> ProxyHost<'_> {
        ProxyHost { metrics: &self.metrics }
    }

    /// Forgets everything kept for a request that is done.
    pub fn forget(&self, context_id: u32) {
        // (called from a drop: never panics on a borrow, which cannot be
        // held here anyway since the host deletes a context between callbacks)
        if let Ok(mut outbound) = self.outbound.try_borrow_mut() {
            outbound.forget(context_id);
        }
        if let Ok(mut headers) = self.response_headers.try_borrow_mut() {
            headers.remove(&context_id);
        }
    }
}
