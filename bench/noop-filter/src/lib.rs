//! A no-op proxy-wasm HTTP filter: every request continues untouched.
//!
//! Used by `make bench` (bench/run.py, variant `noop_wasm`) as the cost floor
//! of any proxy-wasm filter: Envoy still creates a VM context per request and
//! calls into the module for the request headers, but the module does nothing.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    // No root context of our own: the SDK's default root is enough, and every
    // HTTP stream gets a fresh `Noop`.
    proxy_wasm::set_http_context(|_context_id, _root_context_id| -> Box<dyn HttpContext> { Box::new(Noop) });
}}

struct Noop;

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
}
