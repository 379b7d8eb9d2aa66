//! The request path of an egress filter (`egress_tokens`): ask the core
//! (`Outbound::egress_request`) and apply its verdict: replace every
//! `authorization` with the entry's token, pause until it arrives, or
//! answer 503 with `retry-after`.

use proxy_wasm::types::LogLevel;

use edge_auth_core::decision::Request;
use edge_auth_core::egress::decide::{self, EgressVerdict, HeaderError, Headers};
use edge_auth_core::header_map::HeaderMap;

use crate::filter::{send, HostRequest, Step};
use crate::host;
use crate::metrics::Metrics;
use crate::worker::Worker;

/// Decides the request of the current (effective) context. `may_wait`:
/// false for a request woken from a wait (it cannot wait twice).
pub fn evaluate(worker: &Worker, context_id: u32, may_wait: bool) -> Step {
    let cfg = &worker.config;
    let m = &worker.metrics;
    let buf = host::request_header_map();
    let Some(headers) = HeaderMap::parse(&buf) else {
        // unreadable headers match no entry: nothing is injected
        Metrics::inc(m.egress_unmatched);
        return Step::Continue;
    };
    let mut req = HostRequest {
        headers,
        written: &[],
        has_body: false,
    };
    let path = req.header(":path").unwrap_or_default();
    let now_ms = host::now_ms();
    let mut outbound = worker.outbound.borrow_mut();
    let verdict = outbound.egress_request(cfg, context_id, &path, &mut req, now_ms, may_wait);
    match verdict {
        EgressVerdict::Unmatched => {
            Metrics::inc(m.egress_unmatched);
            Step::Continue
        }
        EgressVerdict::Inject { token, .. } => {
            if decide::inject(token, &mut RequestHeaders).is_err() {
                host::log(
                    LogLevel::Error,
                    "edge-auth: egress: could not set the authorization header",
                );
                return refuse(
                    worker,
                    &EgressVerdict::Unavailable {
                        entry: 0,
                        retry_after_s: 1,
                    },
                );
            }
            Metrics::inc(m.egress_injected);
            Step::Continue
        }
        EgressVerdict::Wait { .. } => {
            Metrics::inc(m.egress_request_waits);
            Step::Paused
        }
        refusal => refuse(worker, &refusal),
    }
}

/// Sends the 503 of a refusal and counts it.
fn refuse(worker: &Worker, v: &EgressVerdict<'_>) -> Step {
    let m = &worker.metrics;
    Metrics::inc(match v {
        EgressVerdict::Rejected { .. } => m.egress_refused_rejected,
        _ => m.egress_refused_unavailable,
    });
    if let Some(reply) = decide::reply(v) {
        send(&reply, None);
    }
    Step::Replied
}

/// The current request's headers, for the core's edits.
struct RequestHeaders;

impl Headers for RequestHeaders {
    fn remove(&mut self, name: &str) -> Result<(), HeaderError> {
        host::remove_request_header(name).map_err(|_| HeaderError)
    }

    fn add(&mut self, name: &str, value: &str) -> Result<(), HeaderError> {
        host::add_request_header(name, value).map_err(|_| HeaderError)
    }
}
