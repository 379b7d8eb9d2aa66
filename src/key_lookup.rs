//! API-key lookups at the auth service, and waking the requests that wait
//! for them. What a key's answer means, how long it is cached and how the
//! shared cache is laid out is the core's (`apikey`, `key_cache`,
//! `decision`); this file only moves bytes between the host and the core.
//!
//! A request whose key is in no cache is parked on a per-worker list of
//! pending lookups, one per key hash: later requests for the same key join
//! it (coalescing on the worker). The root context's tick, made immediate
//! when a lookup is queued, then either finds the answer another worker put
//! in the shared cache, waits for a lookup another worker claimed (a marker
//! in shared data, claimed with compare-and-swap: coalescing across
//! workers), or claims the key and asks the service itself. Calls are
//! dispatched by the root context, which outlives any request, so a client
//! that goes away never cancels a lookup others wait for.

use std::time::Duration;

use proxy_wasm::types::LogLevel;

use edge_auth_core::apikey::{self, Lookup, LookupFailure};
use edge_auth_core::breaker::Allowance;
use edge_auth_core::config::{ApiKeys, AuthService};
use edge_auth_core::decision::KeyAnswer;
use edge_auth_core::key_cache::{self, Marker};

use crate::filter::wake;
use crate::host;
use crate::metrics::Metrics;
use crate::shared::Shared;

/// The tick period while lookups wait for another worker's answer.
pub const WAIT_TICK: Duration = Duration::from_millis(20);
/// The tick period that runs the tick at once (a lookup was queued).
const NOW_TICK: Duration = Duration::from_millis(1);

/// A lookup of one key hash and the requests waiting for it.
#[derive(Debug)]
pub struct Pending {
    pub hash: String,
    pub waiters: Vec<u32>,
    pub state: LookupState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupState {
    /// To be claimed and dispatched on the next tick.
    Queued,
    /// Asked by this worker: the call's token, and when to give up on it.
    Dispatched { token: u32, deadline_ms: u64 },
    /// Another worker is asking; its answer is awaited in the shared cache.
    Elsewhere { deadline_ms: u64 },
}

/// Parks the request `context_id` until the key `hash` is answered. `Err`
/// when no lookup can be made now (circuit open, too many pending): the
/// caller decides again with that failure.
pub fn enqueue(shared: &Shared, context_id: u32, hash: String, now_ms: u64) -> Result<(), LookupFailure> {
    let Some(keys) = &shared.config.api_keys else {
        return Err(LookupFailure::NoResponse);
    };
    let mut lookups = shared.lookups.borrow_mut();
    if let Some(p) = lookups.iter_mut().find(|p| p.hash == hash) {
        p.waiters.push(context_id);
        Metrics::inc(shared.metrics.key_coalesced);
        return Ok(());
    }
    if lookups.len() >= keys.max_pending_lookups {
        return Err(LookupFailure::Busy);
    }
    match shared.breaker.borrow_mut().allow(now_ms) {
        Allowance::Reject => return Err(LookupFailure::CircuitOpen),
        Allowance::Probe => shared.metrics.breaker_state(1),
        Allowance::Call => {}
    }
    lookups.push(Pending {
        hash,
        waiters: vec![context_id],
        state: LookupState::Queued,
    });
    drop(lookups);
    set_tick(shared, NOW_TICK);
    Ok(())
}

/// The root context's tick: deliver answers other workers cached, claim and
/// dispatch queued lookups, give up on calls past their deadline.
pub fn tick(shared: &Shared, root_context: u32, now_ms: u64) {
    let (Some(keys), Some(svc)) = (&shared.config.api_keys, &shared.config.auth_service) else {
        return;
    };
    let mut done: Vec<(Pending, Result<Lookup, LookupFailure>)> = Vec::new();
    {
        let mut lookups = shared.lookups.borrow_mut();
        let mut i = 0;
        while let Some(p) = lookups.get_mut(i) {
            match step(shared, keys, svc, p, now_ms) {
                Some(result) => done.push((lookups.swap_remove(i), result)),
                None => i += 1,
            }
        }
    }
    for (p, result) in done {
        finish(shared, p, result, root_context);
    }
    let waiting = shared
        .lookups
        .borrow()
        .iter()
        .any(|p| !matches!(p.state, LookupState::Dispatched { .. }));
    set_tick(shared, if waiting { WAIT_TICK } else { crate::root::TICK });
}

/// Moves one pending lookup forward; `Some` when it is over.
fn step(
    shared: &Shared,
    keys: &ApiKeys,
    svc: &AuthService,
    p: &mut Pending,
    now_ms: u64,
) -> Option<Result<Lookup, LookupFailure>> {
    let cfg = &shared.config;
    match p.state {
        LookupState::Dispatched { deadline_ms, .. } => {
            // Envoy's own timeout answers first; this only catches a lost call.
            if now_ms < deadline_ms {
                return None;
            }
            release_marker(shared, keys, &p.hash);
            return Some(Err(failed(shared, LookupFailure::NoResponse, now_ms)));
        }
        LookupState::Queued | LookupState::Elsewhere { .. } => {}
    }
    // Another worker may have answered already.
    let now = now_ms / 1000;
    let entry = key_cache::entry_name(&cfg.generation, &p.hash, keys.shared_cache_slots);
    if let Some((mut lookup, until)) = host::shared_get(&entry)
        .0
        .and_then(|b| key_cache::decode_entry(&b, &p.hash))
        .filter(|(_, until)| *until > now)
    {
        // delivered with what is left of its cache time, never more
        lookup.cache_ttl_s = until - now;
        // the service answers (another worker asked it): a probe succeeded
        succeeded(shared, now_ms);
        return Some(Ok(lookup));
    }
    let max_wait_ms = svc.timeout_ms.saturating_add(1000);
    let deadline_ms = now_ms.saturating_add(max_wait_ms);
    let marker = key_cache::marker_name(&cfg.generation, &p.hash, keys.shared_cache_slots);
    let (current, cas) = host::shared_get(&marker);
    match key_cache::read_marker(current.as_deref(), &p.hash, now_ms, max_wait_ms) {
        Marker::Busy { deadline_ms } => {
            if p.state == LookupState::Queued {
                Metrics::inc(shared.metrics.key_coalesced);
            }
            p.state = LookupState::Elsewhere { deadline_ms };
            return None;
        }
        Marker::Free => {}
    }
    // Claim the key: create the marker if it never existed, then swap it in.
    let cas = match cas {
        Some(c) => Some(c),
        None => {
            let _ = host::shared_set(&marker, b"", None);
            host::shared_get(&marker).1
        }
    };
    if host::shared_set(&marker, &key_cache::encode_marker(&p.hash, deadline_ms), cas).is_err() {
        // another worker claimed it between our read and write
        p.state = LookupState::Elsewhere { deadline_ms };
        return None;
    }
    let bearer = format!("Bearer {}", svc.token);
    let body = apikey::lookup_body(&p.hash);
    match host::dispatch(
        &svc.cluster,
        &svc.authority,
        ("POST", &keys.lookup_path),
        &[("authorization", &bearer), ("content-type", "application/json")],
        Some(body.as_bytes()),
        Duration::from_millis(svc.timeout_ms),
    ) {
        Ok(token) => {
            Metrics::inc(shared.metrics.key_lookups);
            p.state = LookupState::Dispatched { token, deadline_ms };
            None
        }
        Err(status) => {
            release_marker(shared, keys, &p.hash);
            if shared.warn_allowed(now_ms) {
                host::log(
                    LogLevel::Warn,
                    &format!("edge-auth: cannot call the auth service on {}: {status:?}", svc.cluster),
                );
            }
            Some(Err(failed(shared, LookupFailure::NoResponse, now_ms)))
        }
    }
}

/// Delivers a lookup's answer; returns false when `token` is not a lookup's.
pub fn on_response(shared: &Shared, token: u32, body_size: usize, current_context: u32) -> bool {
    let pending = {
        let mut lookups = shared.lookups.borrow_mut();
        let Some(i) = lookups
            .iter()
            .position(|p| matches!(p.state, LookupState::Dispatched { token: t, .. } if t == token))
        else {
            return false;
        };
        lookups.swap_remove(i)
    };
    let (Some(keys), Some(_)) = (&shared.config.api_keys, &shared.config.auth_service) else {
        return true;
    };
    let now_ms = host::now_ms();
    let now = now_ms / 1000;
    let (mut status, body) = host::call_response(body_size, keys.max_response_bytes);
    if apikey::is_proxy_answer(status, host::call_response_header("content-type").as_deref()) {
        // Envoy's own 503/504: the service did not answer (timeout, connection failure)
        status = None;
    }
    let result = match apikey::parse_lookup(status, body.as_deref(), keys.max_response_bytes, now, &pending.hash) {
        Ok(lookup) => {
            succeeded(shared, now_ms);
            let until = key_cache::cache_until(&lookup, now, keys.max_cache_ttl_s, keys.negative_cache_ttl_s);
            // Written even when it may not be used (a zero TTL): a revoked or
            // unknown answer must replace a stale valid one for this key.
            let name = key_cache::entry_name(&shared.config.generation, &pending.hash, keys.shared_cache_slots);
            if let Some(bytes) = key_cache::encode_entry(&pending.hash, &lookup, until) {
                let _ = host::shared_set(&name, &bytes, None);
            }
            Ok(lookup)
        }
        Err(e) => {
            if shared.warn_allowed(now_ms) {
                host::log(LogLevel::Warn, &format!("edge-auth: API-key lookup failed: {e}"));
            }
            Err(failed(shared, e, now_ms))
        }
    };
    release_marker(shared, keys, &pending.hash);
    finish(shared, pending, result, current_context);
    true
}

/// Tells the breaker the service answered.
fn succeeded(shared: &Shared, now_ms: u64) {
    let mut breaker = shared.breaker.borrow_mut();
    breaker.on_success(now_ms);
    shared.metrics.breaker_state(breaker.state_code());
}

/// Counts a failed lookup and tells the breaker.
fn failed(shared: &Shared, e: LookupFailure, now_ms: u64) -> LookupFailure {
    shared.metrics.lookup_failed(e);
    let mut breaker = shared.breaker.borrow_mut();
    let was = breaker.state_code();
    breaker.on_failure(now_ms);
    let state = breaker.state_code();
    drop(breaker);
    shared.metrics.breaker_state(state);
    if state == 2 && was != 2 {
        Metrics::inc(shared.metrics.breaker_opened);
        host::log(
            LogLevel::Warn,
            "edge-auth: API-key lookups keep failing: circuit open, lookups are refused for a while",
        );
    }
    e
}

/// Clears this worker's lookup marker for `hash` (if it is still there).
fn release_marker(shared: &Shared, keys: &ApiKeys, hash: &str) {
    let name = key_cache::marker_name(&shared.config.generation, hash, keys.shared_cache_slots);
    let (current, cas) = host::shared_get(&name);
    if key_cache::marker_is_for(current.as_deref(), hash) {
        let _ = host::shared_set(&name, b"", cas);
    }
}

/// Decides again every request that waited for `p`'s answer, each in its
/// own context, then returns to `current_context`.
fn finish(shared: &Shared, p: Pending, result: Result<Lookup, LookupFailure>, current_context: u32) {
    let answer = KeyAnswer { hash: p.hash, result };
    wake(shared, p.waiters, Some(&answer), current_context);
}

/// Sets the root context's tick period when it changes.
fn set_tick(shared: &Shared, period: Duration) {
    if shared.tick_period.get() != period && host::set_tick_period(period).is_ok() {
        shared.tick_period.set(period);
    }
}
