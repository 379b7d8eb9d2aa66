//! The root context: loads the configuration, owns the worker's state, and
//! forwards its tick and the answers to outbound calls to the core.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

use edge_auth_core::config;

use crate::filter::{self, EdgeAuthFilter};
use crate::host;
use crate::metrics::Metrics;
use crate::worker::Worker;

pub struct EdgeAuthRoot {
    id: u32,
    worker: Option<Rc<Worker>>,
    metrics: Option<Rc<Metrics>>,
}

impl EdgeAuthRoot {
    pub fn new(id: u32) -> EdgeAuthRoot {
        EdgeAuthRoot {
            id,
            worker: None,
            metrics: None,
        }
    }
}

impl Context for EdgeAuthRoot {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        if let Some(worker) = &self.worker {
            filter::call_response(worker, token_id, body_size, self.id);
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
        for warning in &cfg.warnings {
            host::log(LogLevel::Warn, &format!("edge-auth: {warning}"));
        }
        let metrics = Rc::clone(self.metrics.get_or_insert_with(|| Rc::new(Metrics::define())));
        let worker = Rc::new(Worker::new(cfg, metrics));
        host::log(
            LogLevel::Info,
            &format!(
                "edge-auth: configured with {} providers and {} rules (RS/PS/ES256 signatures verified by {})",
                worker.config.providers.len(),
                worker.config.routes.rules().len(),
                edge_auth_core::jwt::keys::RSA_AND_P256_VERIFIERS
            ),
        );
        let wakes =
            worker
                .outbound
                .borrow_mut()
                .start(&worker.config, &mut worker.state.borrow_mut(), &mut worker.host());
        filter::wake(&worker, wakes, self.id);
        self.worker = Some(worker);
        true
    }

    fn on_tick(&mut self) {
        if let Some(worker) = &self.worker {
            let wakes = worker.outbound.borrow_mut().on_tick(
                &worker.config,
                &mut worker.state.borrow_mut(),
                &mut worker.host(),
            );
            filter::wake(worker, wakes, self.id);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(EdgeAuthFilter::new(context_id, self.worker.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
