//! Remote JWKS fetches through an Envoy cluster, and waking the requests
//! that wait for them. When to fetch and how to read the answer is the core's
//! `jwks_refresh`; this file only dispatches calls and delivers answers.

use std::time::Duration;

use proxy_wasm::types::{LogLevel, Status};

use edge_auth_core::jwks_refresh;

use crate::filter;
use crate::host;
use crate::metrics::Metrics;
use crate::shared::Shared;

/// Dispatches a fetch of `provider`'s JWKS from the current context. The
/// core's schedule must already record it as started.
pub fn start(shared: &Shared, provider: usize, now_ms: u64) -> Result<(), Status> {
    let Some(remote) = shared.config.providers.get(provider).and_then(|p| p.remote.as_ref()) else {
        return Err(Status::BadArgument);
    };
    match host::dispatch_get(
        &remote.cluster,
        &remote.authority,
        &remote.path,
        &[],
        Duration::from_millis(remote.timeout_ms),
    ) {
        Ok(token) => {
            shared.fetches.borrow_mut().push((token, provider));
            Ok(())
        }
        Err(status) => {
            Metrics::inc(shared.metrics.jwks_fetch_failed);
            host::log(
                LogLevel::Warn,
                &format!(
                    "edge-auth: cannot fetch JWKS for provider {} from cluster {}: {status:?}",
                    provider_name(shared, provider),
                    remote.cluster
                ),
            );
            if let Some(r) = shared.state.borrow_mut().remote.get_mut(provider) {
                r.fail(now_ms, remote);
            }
            Err(status)
        }
    }
}

/// The root context's tick: fail fetches that outlived their deadline (and
/// answer their waiters), and start the fetches that are due or that a
/// request asked for (every fetch is dispatched here, by the root context,
/// which outlives any request).
pub fn tick(shared: &Shared, current_context: u32) {
    let now_ms = host::now_ms();
    for (i, p) in shared.config.providers.iter().enumerate() {
        let Some(remote) = &p.remote else { continue };
        let dispatched = shared.fetches.borrow().iter().any(|(_, p)| *p == i);
        let (expired, due) = {
            let mut state = shared.state.borrow_mut();
            let Some(r) = state.remote.get_mut(i) else { continue };
            let expired = r.expire(now_ms, remote);
            let mut due = r.due(now_ms);
            if due {
                r.start(now_ms, remote);
            } else if r.in_flight() && !dispatched {
                // a request asked for this fetch (unknown kid, or no keys yet)
                due = true;
            }
            (expired, due)
        };
        if expired {
            // a late answer to the expired fetch is ignored
            shared.fetches.borrow_mut().retain(|(_, p)| *p != i);
            Metrics::inc(shared.metrics.jwks_fetch_failed);
            host::log(
                LogLevel::Warn,
                &format!("edge-auth: JWKS fetch for provider {} got no answer in time", p.name),
            );
            wake(shared, i, current_context);
        }
        if due && start(shared, i, now_ms).is_err() {
            wake(shared, i, current_context);
        }
    }
}

/// Delivers a JWKS answer (to whichever context dispatched it).
pub fn on_response(shared: &Shared, token: u32, body_size: usize, current_context: u32) {
    let provider = {
        let mut fetches = shared.fetches.borrow_mut();
        let Some(pos) = fetches.iter().position(|(t, _)| *t == token) else {
            return;
        };
        fetches.swap_remove(pos).1
    };
    let Some(p) = shared.config.providers.get(provider) else {
        return;
    };
    let Some(remote) = &p.remote else { return };
    let now_ms = host::now_ms();
    let (status, body) = host::call_response(body_size, remote.max_response_bytes);
    match jwks_refresh::parse_response(status, body.as_deref(), p) {
        Ok((keys, skipped)) => {
            Metrics::inc(shared.metrics.jwks_fetch_ok);
            for s in &skipped {
                host::log(
                    LogLevel::Info,
                    &format!(
                        "edge-auth: provider {}: JWKS key {} skipped: {}",
                        p.name, s.index, s.reason
                    ),
                );
            }
            let count = keys.len();
            shared
                .state
                .borrow_mut()
                .install_keys(&shared.config, provider, keys, now_ms);
            host::log(
                LogLevel::Debug,
                &format!("edge-auth: provider {}: {count} JWKS keys installed", p.name),
            );
        }
        Err(why) => {
            Metrics::inc(shared.metrics.jwks_fetch_failed);
            host::log(
                LogLevel::Warn,
                &format!(
                    "edge-auth: provider {}: JWKS fetch failed, keeping the last good keys: {why}",
                    p.name
                ),
            );
            if let Some(r) = shared.state.borrow_mut().remote.get_mut(provider) {
                r.fail(now_ms, remote);
            }
        }
    }
    wake(shared, provider, current_context);
}

/// Decides again every request waiting for `provider`'s keys, each in its own
/// context, then returns to `current_context`.
fn wake(shared: &Shared, provider: usize, current_context: u32) {
    let waiters = shared.take_waiters(provider);
    filter::wake(shared, waiters.iter().map(|w| w.context_id), None, current_context);
}

fn provider_name(shared: &Shared, provider: usize) -> &str {
    shared.config.providers.get(provider).map_or("?", |p| p.name.as_str())
}
