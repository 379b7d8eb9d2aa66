//! The filter's metrics, defined through the proxy-wasm metrics API. Envoy
//! shows them in `/stats` and `/stats/prometheus` (with its `wasmcustom.`
//! prefix). Every counter is defined up front so dashboards see zeros.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

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

    pub fn denied(&self, d: Deny<'_>) {
        let name = d.name();
        Metrics::inc(self.denied.iter().find(|(n, _)| *n == name).and_then(|(_, id)| *id));
    }
}
