//! The filter's metrics, defined through the proxy-wasm metrics API. Envoy
//! shows them in `/stats` and `/stats/prometheus` (with its `wasmcustom.`
//! prefix). Every counter is defined up front so dashboards see zeros.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use edge_auth_core::api_key::breaker::BreakerState;
use edge_auth_core::api_key::LookupFailure;
use edge_auth_core::decision::Deny;
use edge_auth_core::outbound::Counter;

/// Prefix of every metric name.
pub const PREFIX: &str = "edge_auth.";

#[derive(Debug, Default)]
pub struct Metrics {
    pub allowed_public: Option<u32>,
    pub allowed_jwt: Option<u32>,
    pub allowed_preflight: Option<u32>,
    pub cache_hit: Option<u32>,
    pub cache_miss: Option<u32>,
    jwks_fetches_sent: Option<u32>,
    pub cache_shared_hit: Option<u32>,
    pub signature_verifications: Option<u32>,
    jwks_fetch_ok: Option<u32>,
    jwks_fetch_failed: Option<u32>,
    pub jwks_waits: Option<u32>,
    revocation_polls_sent: Option<u32>,
    revocation_poll_ok: Option<u32>,
    revocation_poll_failed: Option<u32>,
    pub allowed_api_key: Option<u32>,
    pub key_local_hit: Option<u32>,
    pub key_shared_hit: Option<u32>,
    pub key_miss: Option<u32>,
    key_lookups: Option<u32>,
    key_coalesced: Option<u32>,
    pub key_stale_served: Option<u32>,
    breaker_opened: Option<u32>,
    lookup_budget_exceeded: Option<u32>,
    breaker_state: Option<u32>,
    revocation_state_age: Option<u32>,
    lookup_failed: Vec<(&'static str, Option<u32>)>,
    denied: Vec<(&'static str, Option<u32>)>,
    shadow_denied: Vec<(&'static str, Option<u32>)>,
    discovery_ok: Option<u32>,
    discovery_failed: Option<u32>,
    pub egress_injected: Option<u32>,
    pub egress_unmatched: Option<u32>,
    pub egress_refused_unavailable: Option<u32>,
    pub egress_refused_rejected: Option<u32>,
    pub egress_request_waits: Option<u32>,
    egress_token_fetch_sent: Option<u32>,
    egress_token_fetch_ok: Option<u32>,
    egress_token_fetch_failed: Option<u32>,
    egress_token_rejected: Option<u32>,
    egress_breaker_opened: Option<u32>,
    egress_token_ttl: Option<u32>,
}

fn counter(name: &str) -> Option<u32> {
    hostcalls::define_metric(MetricType::Counter, &format!("{PREFIX}{name}")).ok()
}

fn gauge(name: &str) -> Option<u32> {
    hostcalls::define_metric(MetricType::Gauge, &format!("{PREFIX}{name}")).ok()
}

impl Metrics {
    pub fn define() -> Metrics {
        Metrics {
            allowed_public: counter("allowed.public"),
            allowed_jwt: counter("allowed.jwt"),
            allowed_preflight: counter("allowed.preflight"),
            cache_hit: counter("token_cache.hit"),
            cache_miss: counter("token_cache.miss"),
            jwks_fetches_sent: counter("jwks.fetches_sent"),
            cache_shared_hit: counter("token_cache.shared_hit"),
            signature_verifications: counter("jwt.signature_verifications"),
            jwks_fetch_ok: counter("jwks.fetch_ok"),
            jwks_fetch_failed: counter("jwks.fetch_failed"),
            jwks_waits: counter("jwks.request_waits"),
            revocation_polls_sent: counter("revocation.polls_sent"),
            revocation_poll_ok: counter("revocation.poll_ok"),
            revocation_poll_failed: counter("revocation.poll_failed"),
            allowed_api_key: counter("allowed.api_key"),
            key_local_hit: counter("api_key.cache_hit_local"),
            key_shared_hit: counter("api_key.cache_hit_shared"),
            key_miss: counter("api_key.cache_miss"),
            key_lookups: counter("api_key.lookups"),
            key_coalesced: counter("api_key.coalesced"),
            key_stale_served: counter("api_key.stale_served"),
            breaker_opened: counter("api_key.breaker_opened"),
            lookup_budget_exceeded: counter("api_key.lookup_budget_exceeded"),
            breaker_state: gauge("api_key.breaker_state"),
            revocation_state_age: gauge("revocation.state_age_ms"),
            lookup_failed: LookupFailure::ALL_NAMES
                .iter()
                .map(|n| (*n, counter(&format!("api_key.lookup_failed.{n}"))))
                .collect(),
            denied: Deny::all_names()
                .map(|n| (n, counter(&format!("denied.{n}"))))
                .collect(),
            shadow_denied: Deny::all_names()
                .map(|n| (n, counter(&format!("shadow_denied.{n}"))))
                .collect(),
            discovery_ok: counter("jwks.discovery_ok"),
            discovery_failed: counter("jwks.discovery_failed"),
            egress_injected: counter("egress.injected"),
            egress_unmatched: counter("egress.unmatched"),
            egress_refused_unavailable: counter("egress.refused_unavailable"),
            egress_refused_rejected: counter("egress.refused_rejected"),
            egress_request_waits: counter("egress.request_waits"),
            egress_token_fetch_sent: counter("egress.token_fetch_sent"),
            egress_token_fetch_ok: counter("egress.token_fetch_ok"),
            egress_token_fetch_failed: counter("egress.token_fetch_failed"),
            egress_token_rejected: counter("egress.token_rejected"),
            egress_breaker_opened: counter("egress.breaker_opened"),
            egress_token_ttl: gauge("egress.token_ttl_s"),
        }
    }

    pub fn inc(id: Option<u32>) {
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    /// A counter the core's outbound calls move.
    pub fn count(&self, counter: Counter) {
        Metrics::inc(match counter {
            Counter::JwksFetchSent => self.jwks_fetches_sent,
            Counter::JwksFetchOk => self.jwks_fetch_ok,
            Counter::JwksFetchFailed => self.jwks_fetch_failed,
            Counter::RevocationPollSent => self.revocation_polls_sent,
            Counter::RevocationPollOk => self.revocation_poll_ok,
            Counter::RevocationPollFailed => self.revocation_poll_failed,
            Counter::KeyLookups => self.key_lookups,
            Counter::KeyCoalesced => self.key_coalesced,
            Counter::BreakerOpened => self.breaker_opened,
            Counter::LookupFailed(e) => self.lookup_failed(e),
            Counter::LookupBudgetExceeded => self.lookup_budget_exceeded,
            Counter::DiscoveryOk => self.discovery_ok,
            Counter::DiscoveryFailed => self.discovery_failed,
            Counter::EgressTokenFetchSent => self.egress_token_fetch_sent,
            Counter::EgressTokenFetchOk => self.egress_token_fetch_ok,
            Counter::EgressTokenFetchFailed => self.egress_token_fetch_failed,
            Counter::EgressTokenRejected => self.egress_token_rejected,
            Counter::EgressBreakerOpened => self.egress_breaker_opened,
        });
    }

    /// A failed API-key lookup's counter, by kind.
    fn lookup_failed(&self, e: LookupFailure) -> Option<u32> {
        let name = e.name();
        self.lookup_failed
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, id)| *id)
    }

    /// The lookup circuit breaker's state, as its gauge reads it.
    pub fn breaker_state(&self, state: BreakerState) {
        if let Some(id) = self.breaker_state {
            let _ = hostcalls::record_metric(id, u64::from(state.code()));
        }
    }

    /// The age of the revocation state a worker serves. Every worker writes the one gauge
    /// each tick; they read the same shared state, so they agree to within a tick.
    pub fn revocation_state_age(&self, age_ms: u64) {
        if let Some(id) = self.revocation_state_age {
            let _ = hostcalls::record_metric(id, age_ms);
        }
    }

    /// Seconds of life left of the egress token a worker serves (the smallest over entries).
    pub fn egress_token_ttl(&self, ttl_s: u64) {
        if let Some(id) = self.egress_token_ttl {
            let _ = hostcalls::record_metric(id, ttl_s);
        }
    }

    pub fn denied(&self, d: Deny<'_>) {
        Metrics::inc(by_reason(&self.denied, d));
    }

    /// A refusal a report-only rule would have given.
    pub fn shadow_denied(&self, d: Deny<'_>) {
        Metrics::inc(by_reason(&self.shadow_denied, d));
    }
}

/// The counter of `d`'s reason in `counters`.
fn by_reason(counters: &[(&'static str, Option<u32>)], d: Deny<'_>) -> Option<u32> {
    let name = d.name();
    counters.iter().find(|(n, _)| *n == name).and_then(|(_, id)| *id)
}
