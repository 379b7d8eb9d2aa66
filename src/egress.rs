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
    // An entry without `match` first takes every request: nothing of the
    // request is read for it (an empty map), and the injection removes and adds.
    let reads = decide::reads_request(&cfg.egress);
    let buf = if reads { host::request_header_map() } else { Vec::new() };
    let Some(headers) = HeaderMap::parse(&buf) else {
        // unreadable headers match no entry: nothing is injected
        Metrics::inc(m.egress_unmatched);
        return Step::Continue;
    };
    let single = reads && headers.values("authorization").nth(1).is_none();
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
            if decide::inject(token, &mut RequestHeaders { single }).is_err() {
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

/// The current request's headers, for the core's edits. `single`: the
/// header map read for this request holds at most one `authorization`.
struct RequestHeaders {
    single: bool,
}

impl Headers for RequestHeaders {
    fn remove(&mut self, name: &str) -> Result<(), HeaderError> {
        host::remove_request_header(name).map_err(|_| HeaderError)
    }

    fn add(&mut self, name: &str, value: &str) -> Result<(), HeaderError> {
        host::add_request_header(name, value).map_err(|_| HeaderError)
    }

    fn at_most_one(&self, name: &str) -> bool {
        self.single && name.eq_ignore_ascii_case("authorization")
    }

    fn replace(&mut self, name: &str, value: &str) -> Result<(), HeaderError> {
        host::set_request_header(name, value).map_err(|_| HeaderError)
    }
}
