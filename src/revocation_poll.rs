//! Polls the auth service's revocation feed on the root context's tick, so a
//! revocation check at request time is a local lookup. What the feed means is
//! the core's `revocation`; this file only dispatches polls and delivers answers.

use std::time::Duration;

use proxy_wasm::types::LogLevel;

use edge_auth_core::revocation::Limits;

use crate::host;
use crate::metrics::Metrics;
use crate::shared::Shared;

/// Starts a poll when one is due (and none is under way); forgets a poll
/// that outlived its timeout.
pub fn tick(shared: &Shared, now_ms: u64) {
    let Some(svc) = &shared.config.auth_service else { return };
    if !shared.config.providers.iter().any(|p| p.check_revocation) {
        return;
    }
    if let Some((_, deadline)) = shared.revocation_poll.get() {
        if now_ms < deadline {
            return;
        }
        // lost: its late answer is ignored
        shared.revocation_poll.set(None);
        Metrics::inc(shared.metrics.revocation_poll_failed);
    }
    if now_ms < shared.next_revocation_poll_ms.get() {
        return;
    }
    shared
        .next_revocation_poll_ms
        .set(now_ms.saturating_add(svc.revocation_poll_ms));
    let path = shared.state.borrow().revocation.poll_path(&svc.revocations_path);
    let bearer = format!("Bearer {}", svc.token);
    let timeout = Duration::from_millis(svc.timeout_ms);
    match host::dispatch_get(
        &svc.cluster,
        &svc.authority,
        &path,
        &[("authorization", &bearer)],
        timeout,
    ) {
        Ok(token) => shared
            .revocation_poll
            .set(Some((token, now_ms.saturating_add(svc.timeout_ms + 1000)))),
        Err(status) => {
            Metrics::inc(shared.metrics.revocation_poll_failed);
            if shared.warn_allowed(now_ms) {
                host::log(
                    LogLevel::Warn,
                    &format!("edge-auth: cannot poll revocations from {}: {status:?}", svc.cluster),
                );
            }
        }
    }
}

/// Delivers a poll's answer; returns false when `token` is not the poll's.
pub fn on_response(shared: &Shared, token: u32, body_size: usize) -> bool {
    match shared.revocation_poll.get() {
        Some((t, _)) if t == token => shared.revocation_poll.set(None),
        _ => return false,
    }
    let Some(svc) = &shared.config.auth_service else {
        return true;
    };
    let now_ms = host::now_ms();
    let (status, body) = host::call_response(body_size, svc.max_response_bytes);
    let limits = Limits {
        max_entries: svc.max_revocation_entries,
    };
    let mut state = shared.state.borrow_mut();
    match state
        .revocation
        .apply(status, body.as_deref(), svc.max_response_bytes, &limits, now_ms / 1000)
    {
        Ok(_) => {
            state.revocation_fresh_until_ms = now_ms.saturating_add(svc.revocation_max_staleness_ms);
            drop(state);
            Metrics::inc(shared.metrics.revocation_poll_ok);
        }
        Err(e) => {
            state.revocation.on_failure(e);
            drop(state);
            Metrics::inc(shared.metrics.revocation_poll_failed);
            if shared.warn_allowed(now_ms) {
                host::log(
                    LogLevel::Warn,
                    &format!(
                        "edge-auth: revocation poll failed ({}); keeping the last state",
                        e.name()
                    ),
                );
            }
        }
    }
    true
}
