//! The filter's metrics, defined through the proxy-wasm metrics API. Envoy
//! shows them in `/stats` and `/stats/prometheus` (with its `wasmcustom.`
//! prefix). Every counter is defined up front so dashboards see zeros.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use edge_auth_core::apikey::LookupFailure;
use edge_auth_core::decision::Deny;

/// Prefix of every metric name.
pub const PREFIX: &str = "edge_auth.";

#[derive(Debug, Default)]
pub struct Metrics {
    pub allowed_public: Option<u32>,
    pub allowed_jwt: Option<u32>,
    pub allowed_preflight: Option<u32>,
    pub cache_hit: Option<u32>,
    pub cache_miss: Option<u32>,
    pub jwks_fetch_ok: Option<u32>,
    pub jwks_fetch_failed: Option<u32>,
    pub jwks_waits: Option<u32>,
    pub revocation_poll_ok: Option<u32>,
    pub revocation_poll_failed: Option<u32>,
    pub allowed_api_key: Option<u32>,
    pub key_local_hit: Option<u32>,
    pub key_shared_hit: Option<u32>,
    pub key_miss: Option<u32>,
    pub key_lookups: Option<u32>,
    pub key_coalesced: Option<u32>,
    pub key_stale_served: Option<u32>,
    pub breaker_opened: Option<u32>,
    breaker_state: Option<u32>,
    lookup_failed: Vec<(&'static str, Option<u32>)>,
    denied: Vec<(&'static str, Option<u32>)>,
}

fn counter(name: &str) -> Option<u32> {
    hostcalls::define_metric(MetricType::Counter, &format!("{PREFIX}{name}")).ok()
}

impl Metrics {
    pub fn define() -> Metrics {
        Metrics {
            allowed_public: counter("allowed.public"),
            allowed_jwt: counter("allowed.jwt"),
            allowed_preflight: counter("allowed.preflight"),
            cache_hit: counter("token_cache.hit"),
            cache_miss: counter("token_cache.miss"),
            jwks_fetch_ok: counter("jwks.fetch_ok"),
            jwks_fetch_failed: counter("jwks.fetch_failed"),
            jwks_waits: counter("jwks.request_waits"),
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
            breaker_state: hostcalls::define_metric(MetricType::Gauge, &format!("{PREFIX}api_key.breaker_state")).ok(),
            lookup_failed: LookupFailure::ALL_NAMES
                .iter()
                .map(|n| (*n, counter(&format!("api_key.lookup_failed.{n}"))))
                .collect(),
            denied: Deny::ALL_NAMES
                .iter()
                .map(|n| (*n, counter(&format!("denied.{n}"))))
                .collect(),
        }
    }

    pub fn inc(id: Option<u32>) {
        if let Some(id) = id {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    /// A failed API-key lookup, by kind.
    pub fn lookup_failed(&self, e: LookupFailure) {
        let name = e.name();
        Metrics::inc(
            self.lookup_failed
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, id)| *id),
        );
    }

    /// The lookup circuit breaker's state: 0 closed, 1 half-open, 2 open.
    pub fn breaker_state(&self, state: u8) {
        if let Some(id) = self.breaker_state {
            let _ = hostcalls::record_metric(id, u64::from(state));
        }
    }

    pub fn denied(&self, d: Deny<'_>) {
        let name = d.name();
        Metrics::inc(self.denied.iter().find(|(n, _)| *n == name).and_then(|(_, id)| *id));
    }
}
