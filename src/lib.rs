//! edge-auth: the proxy-wasm shell around `edge_auth_core`.
//!
//! The shell only gathers request facts, calls the core, applies its
//! verdict and forwards the host's callbacks for outbound calls to the
//! core. It never unwraps a host call: a panic would kill the VM and every
//! request after it, so every host call goes through [`host`], which returns
//! `Result` or logs.

mod egress;
mod filter;
mod host;
mod metrics;
mod root;
mod worker;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
    proxy_wasm::set_root_context(|context_id| Box::new(root::EdgeAuthRoot::new(context_id)));
}}
