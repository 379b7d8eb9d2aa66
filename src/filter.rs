//! The HTTP context: strip forged identity headers, ask the core, apply the
//! verdict; and the requests woken when an outbound call they waited for is over.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

use edge_auth_core::decision::{
    self, Allow, Attempt, Credential, Deny, KeyAnswer, KeyUse, Request, ResponseHeaders, Signature, Verdict,
};
use edge_auth_core::header_map::HeaderMap;
use edge_auth_core::logging;
use edge_auth_core::outbound::Wake;
use edge_auth_core::response::{self, Reply};

use crate::egress;
use crate::host;
use crate::metrics::Metrics;
use crate::worker::Worker;

pub struct EdgeAuthFilter {
    id: u32,
    /// `None` when the plugin has no valid configuration: every request is refused.
    worker: Option<Rc<Worker>>,
}

impl EdgeAuthFilter {
    pub fn new(id: u32, worker: Option<Rc<Worker>>) -> EdgeAuthFilter {
        EdgeAuthFilter { id, worker }
    }
}

/// The request's facts: its headers from the one read of the header map,
/// the rest from the host only when the core asks.
pub(crate) struct HostRequest<'a> {
    pub(crate) headers: HeaderMap<'a>,
    /// Headers the filter writes: removed from the request before the core
    /// looks at it, so never a fact of the request.
    pub(crate) written: &'a [String],
    pub(crate) has_body: bool,
}

impl HostRequest<'_> {
    fn value(&self, name: &str) -> Option<&[u8]> {
        if self.written.iter().any(|w| w.eq_ignore_ascii_case(name)) {
            return None;
        }
        self.headers.get(name)
    }
}

impl Request for HostRequest<'_> {
    fn header(&mut self, name: &str) -> Option<String> {
        self.value(name).map(host::text_of)
    }

    fn each_header(&mut self, names: &[String], f: &mut dyn FnMut(usize, String)) {
        for (name, value) in self.headers.iter() {
            let Some(i) = names.iter().position(|n| name.eq_ignore_ascii_case(n.as_bytes())) else {
                continue;
            };
            if !self.written.iter().any(|w| name.eq_ignore_ascii_case(w.as_bytes())) {
                f(i, host::text_of(value));
            }
        }
    }

    fn forwarded_for(&mut self) -> Option<String> {
        let mut values = self.headers.values("x-forwarded-for");
        let mut joined = host::text_of(values.next()?);
        for v in values {
            joined.push(',');
            joined.push_str(&host::text_of(v));
        }
        Some(joined)
    }

    fn peer(&mut self) -> Option<String> {
        host::peer_address()
    }

    fn shared_data(&mut self, name: &str) -> Option<Vec<u8>> {
        host::shared_get(name).0
    }

    fn share(&mut self, name: &str, value: &[u8]) {
        let _ = host::shared_set(name, value, None);
    }

    fn has_body(&mut self) -> bool {
        self.has_body
    }

    fn route_name(&mut self) -> Option<String> {
        host::route_name()
    }

    fn route_metadata(&mut self, filter: &str, key: &str) -> Option<String> {
        host::route_metadata(filter, key)
    }
}

/// Where a request stands after [`evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Allowed: the request goes on upstream.
    Continue,
    /// Waiting for a JWKS fetch or an API-key lookup.
    Paused,
    /// A local reply was sent.
    Replied,
}

/// Decides the request of the current (effective) context and applies the
/// verdict. Called when headers arrive, and again for a request that waited
/// for keys or for an API-key lookup (`may_await = false`, so it cannot wait
/// twice; `answer`: the lookup's outcome).
/// `end_of_stream`: the request has no body (only known when headers arrive;
/// a request woken after waiting is never a preflight).
pub fn evaluate(
    worker: &Worker,
    context_id: u32,
    may_await: bool,
    end_of_stream: bool,
    answer: Option<&KeyAnswer>,
) -> Step {
    let cfg = &worker.config;
    if !cfg.egress.is_empty() {
        return egress::evaluate(worker, context_id, may_await);
    }
    let buf = host::request_header_map();
    let Some(headers) = HeaderMap::parse(&buf) else {
        return deny(
            worker,
            Deny::BadPath("the request's headers cannot be read"),
            None,
            None,
        );
    };
    // Client-sent copies of every header the filter may write go first, on
    // every route (only those present: a removal is a host call).
    for h in &cfg.written_headers {
        if headers.contains(h) {
            let _ = host::remove_request_header(h);
        }
    }
    let mut req = HostRequest {
        headers,
        written: &cfg.written_headers,
        has_body: !end_of_stream,
    };
    let (Some(method), Some(path)) = (req.header(":method"), req.header(":path")) else {
        return deny(worker, Deny::BadPath("the request has no method or path"), None, None);
    };
    let now_ms = host::now_ms();
    let outcome = {
        let mut state = worker.state.borrow_mut();
        let attempt = Attempt {
            method: &method,
            path: &path,
            now_ms,
            may_await,
            answer,
        };
        decision::decide(cfg, &mut state, &attempt, &mut req)
    };
    if let Some(notice) = outcome.notice {
        if worker.first_notice(notice) {
            host::log(LogLevel::Warn, notice);
        }
    }
    let m = &worker.metrics;
    match outcome.cache {
        Some(true) => Metrics::inc(m.cache_hit),
        Some(false) => Metrics::inc(m.cache_miss),
        None => {}
    }
    match outcome.signature {
        Some(Signature::Verified) => Metrics::inc(m.signature_verifications),
        Some(Signature::Shared) => Metrics::inc(m.cache_shared_hit),
        None => {}
    }
    match outcome.key {
        Some(KeyUse::LocalHit) => Metrics::inc(m.key_local_hit),
        Some(KeyUse::SharedHit) => Metrics::inc(m.key_shared_hit),
        Some(KeyUse::Miss) => Metrics::inc(m.key_miss),
        Some(KeyUse::Stale) => Metrics::inc(m.key_stale_served),
        Some(KeyUse::Answer) | None => {}
    }
    let cors = outcome.cors;
    match outcome.verdict {
        Verdict::Allow(a) => {
            if let Some(cors) = cors {
                worker.response_headers.borrow_mut().insert(context_id, cors);
            }
            match a.shadow {
                // report-only: the request goes upstream as sent
                Some(d) => report_shadow_denial(worker, d, outcome.credential.as_ref(), a.rule),
                None => allow(worker, &a),
            }
            Step::Continue
        }
        Verdict::Preflight(headers) => {
            Metrics::inc(m.allowed_preflight);
            let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            if host::send_reply(204, &headers, b"").is_err() {
                host::log(LogLevel::Error, "edge-auth: could not answer the CORS preflight");
            }
            Step::Replied
        }
        Verdict::Deny(d) => deny(worker, d, outcome.credential.as_ref(), cors.as_ref()),
        Verdict::AwaitKeys { provider, .. } => {
            Metrics::inc(m.jwks_waits);
            worker.outbound.borrow_mut().await_keys(context_id, provider);
            Step::Paused
        }
        Verdict::AwaitLookup { hash, client } => {
            let failed = worker
                .outbound
                .borrow_mut()
                .await_lookup(cfg, &mut worker.host(), context_id, hash, client);
            match failed {
                None => Step::Paused,
                Some(answer) => evaluate(worker, context_id, false, end_of_stream, Some(&answer)),
            }
        }
    }
}

/// Forwards the answer to an outbound call to the core, and decides again
/// the requests that waited for it.
pub fn call_response(worker: &Worker, token: u32, body_size: usize, current_context: u32) {
    let wakes = worker.outbound.borrow_mut().on_response(
        &worker.config,
        &mut worker.state.borrow_mut(),
        &mut worker.host(),
        token,
        body_size,
    );
    wake(worker, wakes, current_context);
}

/// Decides again every request in `wakes` (each in its own context, with
/// the lookup answer it waited for, if any) and resumes those allowed, then
/// returns to `current_context`. A waiter whose stream is gone is skipped.
pub fn wake(worker: &Worker, wakes: Vec<Wake>, current_context: u32) {
    if wakes.is_empty() {
        return;
    }
    for w in &wakes {
        for &context in &w.contexts {
            if host::set_effective_context(context).is_ok()
                && evaluate(worker, context, false, true, w.answer.as_ref()) == Step::Continue
            {
                let _ = host::resume_request();
            }
        }
    }
    let _ = host::set_effective_context(current_context);
}

/// Applies the edits of an allowed request.
fn allow(worker: &Worker, a: &Allow<'_>) {
    let m = &worker.metrics;
    if a.preflight {
        // A preflight never carries credentials: whatever looks like one is not passed on.
        for h in &worker.config.credential_headers {
            let _ = host::remove_request_header(h);
        }
        Metrics::inc(m.allowed_preflight);
        return;
    }
    // every credential place the request has, not only the one used (the core chose)
    for h in a.remove_headers.names() {
        let _ = host::remove_request_header(h);
    }
    if let Some(cookie) = &a.cookie {
        let _ = if cookie.is_empty() {
            host::remove_request_header("cookie")
        } else {
            host::set_request_header("cookie", cookie)
        };
    }
    if let Some(p) = &a.path {
        let _ = host::set_request_header(":path", p);
    }
    match &a.token {
        Some(token) => {
            set_headers(&token.headers);
            set_headers(&a.context);
            Metrics::inc(m.allowed_jwt);
        }
        None if a.key.is_some() => {
            set_headers(&a.context);
            Metrics::inc(m.allowed_api_key);
        }
        None => Metrics::inc(m.allowed_public),
    }
}

/// Writes identity headers upstream. Every client copy of them was removed
/// in [`evaluate`], so they are added (cheaper for the host than a replace).
fn set_headers(headers: &[(String, String)]) {
    for (name, value) in headers {
        if host::add_request_header(name, value).is_err() {
            host::log(LogLevel::Warn, &format!("edge-auth: could not set header {name}"));
        }
    }
}

fn deny(worker: &Worker, d: Deny<'_>, credential: Option<&Credential>, cors: Option<&ResponseHeaders>) -> Step {
    worker.metrics.denied(d);
    let level = logging::denial_level(d, worker.outbound.borrow_mut().warnings(), host::now_ms).map(host::level);
    if let Some(level) = level.filter(|l| host::enabled(*l)) {
        let fp = credential.map_or_else(|| "-".to_owned(), Credential::fingerprint);
        host::log(level, &format!("edge-auth: denied reason={} credential={fp}", d.name()));
    }
    send(&response::reply(d, &worker.config.realm), cors);
    Step::Replied
}

/// Counts and logs the refusal a report-only rule would have given.
fn report_shadow_denial(worker: &Worker, d: Deny<'_>, credential: Option<&Credential>, rule: &str) {
    worker.metrics.shadow_denied(d);
    let level = logging::denial_level(d, worker.outbound.borrow_mut().warnings(), host::now_ms).map(host::level);
    if let Some(level) = level.filter(|l| host::enabled(*l)) {
        let fp = credential.map_or_else(|| "-".to_owned(), Credential::fingerprint);
        host::log(
            level,
            &format!(
                "edge-auth: shadow denied reason={} rule={rule} credential={fp}",
                d.name()
            ),
        );
    }
}

/// Sends a local reply, with the CORS headers of the request's origin if any.
pub(crate) fn send(reply: &Reply, cors: Option<&ResponseHeaders>) {
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .chain(cors.into_iter().flatten())
        .map(|(n, v)| (*n, v.as_str()))
        .collect();
    if host::send_reply(reply.status, &headers, reply.body.as_bytes()).is_err() {
        host::log(LogLevel::Error, "edge-auth: could not send the local reply");
    }
}

impl Context for EdgeAuthFilter {
    fn on_http_call_response(&mut self, token_id: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        if let Some(worker) = &self.worker {
            call_response(worker, token_id, body_size, self.id);
        }
    }
}

/// The stream is gone when the host deletes its context: nothing may wait
/// on it any more. (Done on drop rather than in `on_done`, so that the build
/// can remove that callback's export and spare every request a VM entry.)
impl Drop for EdgeAuthFilter {
    fn drop(&mut self) {
        if let Some(worker) = &self.worker {
            worker.forget(self.id);
        }
    }
}

impl HttpContext for EdgeAuthFilter {
    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let headers = self
            .worker
            .as_ref()
            .and_then(|w| w.response_headers.borrow_mut().remove(&self.id));
        for (name, value) in headers.iter().flatten() {
            // The edge's CORS answer replaces the upstream's; `vary` is added to.
            let _ = if *name == "vary" {
                host::add_response_header(name, value)
            } else {
                host::set_response_header(name, value)
            };
        }
        Action::Continue
    }

    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Some(worker) = self.worker.clone() else {
            // no valid configuration: fail closed
            send(&response::unconfigured(), None);
            return Action::Pause;
        };
        match evaluate(&worker, self.id, true, end_of_stream, None) {
            Step::Continue => Action::Continue,
            Step::Paused | Step::Replied => Action::Pause,
        }
    }
}
