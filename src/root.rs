//! The root context: loads the configuration, owns the per-worker state and
//! drives the JWKS refresh schedule on its tick.

use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use edge_auth_core::config;
use edge_auth_core::routes::Requirement;

use crate::filter::EdgeAuthFilter;
use crate::host;
use crate::jwks_fetch;
use crate::key_lookup;
use crate::metrics::Metrics;
use crate::revocation_poll;
use crate::shared::Shared;

/// How often the root context checks the JWKS schedule. It also bounds how
/// long a request that needs a fetch waits before the fetch starts.
pub const TICK: Duration = Duration::from_millis(200);

pub struct EdgeAuthRoot {
    id: u32,
    shared: Option<Rc<Shared>>,
    metrics: Option<Rc<Metrics>>,
}

impl EdgeAuthRoot {
    pub fn new(id: u32) -> EdgeAuthRoot {
        EdgeAuthRoot {
            id,
            shared: None,
            metrics: None,
        }
    }
}

impl Context for EdgeAuthRoot {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        if let Some(shared) = &self.shared {
            if !revocation_poll::on_response(shared, token_id, body_size)
                && !key_lookup::on_response(shared, token_id, body_size, self.id)
            {
                jwks_fetch::on_response(shared, token_id, body_size, self.id);
            }
        }
    }
}

impl RootContext for EdgeAuthRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = host::plugin_configuration().unwrap_or_default();
        let cfg = match config::parse(&bytes, &|name| std::env::var(name).ok()) {
            Ok(cfg) => cfg,
            Err(e) => {
                host::log(LogLevel::Critical, &format!("edge-auth: configuration refused: {e}"));
                return false;
            }
        };
        if cfg.routes.rules().is_empty() && cfg.providers.is_empty() {
            host::log(
                LogLevel::Warn,
                "edge-auth: no rules and no providers: every request is denied",
            );
        }
        for warning in &cfg.warnings {
            host::log(LogLevel::Warn, &format!("edge-auth: CHECK DISABLED: {warning}"));
        }
        if cfg
            .routes
            .default_rule()
            .is_some_and(|p| p.requirement == Requirement::Public)
        {
            host::log(
                LogLevel::Warn,
                "edge-auth: default_rule is public: requests no rule matches go upstream unauthenticated",
            );
        }
        let metrics = Rc::clone(self.metrics.get_or_insert_with(|| Rc::new(Metrics::define())));
        let shared = Rc::new(Shared::new(cfg, metrics));
        host::log(
            LogLevel::Info,
            &format!(
                "edge-auth: configured with {} providers and {} rules (RS/PS/ES256 signatures verified by {})",
                shared.config.providers.len(),
                shared.config.routes.rules().len(),
                edge_auth_core::keys::RSA_AND_P256_VERIFIERS
            ),
        );
        let polls = shared.config.providers.iter().any(|p| p.check_revocation);
        let lookups = shared.config.api_keys.is_some();
        if polls || lookups || shared.config.providers.iter().any(|p| p.remote.is_some()) {
            if let Err(s) = host::set_tick_period(TICK) {
                host::log(
                    LogLevel::Error,
                    &format!(
                        "edge-auth: cannot set the tick period, remote JWKS, revocations and API-key lookups will not run: {s:?}"
                    ),
                );
            } else {
                shared.tick_period.set(TICK);
            }
            jwks_fetch::tick(&shared, self.id);
            revocation_poll::tick(&shared, host::now_ms());
        }
        self.shared = Some(shared);
        true
    }

    fn on_tick(&mut self) {
        if let Some(shared) = &self.shared {
            jwks_fetch::tick(shared, self.id);
            let now_ms = host::now_ms();
            revocation_poll::tick(shared, now_ms);
            key_lookup::tick(shared, self.id, now_ms);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(EdgeAuthFilter::new(context_id, self.shared.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
