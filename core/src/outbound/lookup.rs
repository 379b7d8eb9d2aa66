//! API-key lookups at the auth service.
//!
//! A request whose key is in no cache is parked on the worker's lookup of
//! that key hash: later requests for the same key join it (coalescing on
//! the worker). The tick, made immediate when a lookup is queued, then
//! either finds the answer another worker put in the shared cache, waits
//! for a lookup another worker claimed (a marker in shared data, claimed
//! with compare-and-swap: coalescing across workers), or claims the key and
//! asks the service itself. Every answer is written to the shared cache
//! (`key_cache`) and delivered to the requests that waited for it. The
//! breaker fails lookups fast while the service keeps failing, and a new
//! lookup is first charged to its client's budget (`api_keys.lookup_budget`,
//! [`super::shared_budget`]).

use super::shared_breaker::SharedBreaker;
use super::shared_budget;
use super::{wake, CallState, Counter, Entry, Host, HttpCall, Outbound, Purpose, Wake};
use super::{GRACE_MS, NOW_TICK_MS, TICK_MS, WAIT_TICK_MS};
use crate::api_key::breaker::Allowance;
use crate::api_key::shared_cache::{self, Marker};
use crate::api_key::{self, Lookup, LookupFailure};
use crate::config::{ApiKeys, AuthService, Config};
use crate::decision::KeyAnswer;
use crate::logging::{Level, WarnLimiter};

impl Outbound {
    /// Parks `context_id` on the lookup of `hash`, queuing one if none is
    /// under way (charged to `client`'s lookup budget, when configured).
    /// `Err` when no lookup can be made now.
    pub(super) fn enqueue_lookup(
        &mut self,
        cfg: &Config,
        host: &mut dyn Host,
        context_id: u32,
        hash: &str,
        client: Option<std::net::IpAddr>,
    ) -> Result<(), LookupFailure> {
        let Some(keys) = &cfg.api_keys else {
            return Err(LookupFailure::NoResponse);
        };
        if let Some(e) = self.entries.iter_mut().find(|e| is_lookup_of(&e.purpose, hash)) {
            e.waiters.push(context_id);
            host.count(Counter::KeyCoalesced);
            return Ok(());
        }
        let pending = self
            .entries
            .iter()
            .filter(|e| matches!(e.purpose, Purpose::Lookup(_)))
            .count();
        if pending >= keys.max_pending_lookups {
            return Err(LookupFailure::Busy);
        }
        let now_ms = host.now_ms();
        // Charged before the breaker is asked, so that a refused charge never
        // takes the breaker's single probe.
        if let Some(budget) = &keys.lookup_budget {
            shared_budget::charge(host, budget, client, now_ms)
                .map_err(|retry_after_s| LookupFailure::OverBudget { retry_after_s })?;
        }
        match self.breaker.allow(host, now_ms) {
            Allowance::Reject => return Err(LookupFailure::CircuitOpen),
            Allowance::Probe => host.breaker_state(self.breaker.state()),
            Allowance::Call => {}
        }
        self.entries.push(Entry {
            purpose: Purpose::Lookup(hash.to_owned()),
            state: CallState::Queued,
            waiters: vec![context_id],
        });
        self.set_tick(host, NOW_TICK_MS);
        Ok(())
    }

    /// Delivers answers other workers cached, claims and sends queued
    /// lookups, gives up on lookups past their deadline; then sets the tick
    /// to poll the shared cache while lookups wait elsewhere.
    pub(super) fn lookup_tick(&mut self, cfg: &Config, host: &mut dyn Host, now_ms: u64, wakes: &mut Vec<Wake>) {
        let (Some(keys), Some(svc)) = (&cfg.api_keys, &cfg.auth_service) else {
            return;
        };
        let ask = Ask { keys, svc };
        let mut i = 0;
        while let Some(e) = self.entries.get_mut(i) {
            let Purpose::Lookup(hash) = &e.purpose else {
                i += 1;
                continue;
            };
            let mut ctx = Ctx {
                host: &mut *host,
                breaker: &mut self.breaker,
                warnings: &mut self.warnings,
                now_ms,
            };
            match ask.step(&mut ctx, hash, &mut e.state) {
                Some(result) => {
                    let e = self.entries.swap_remove(i);
                    if let Purpose::Lookup(hash) = e.purpose {
                        wake(wakes, e.waiters, Some(KeyAnswer { hash, result }));
                    }
                }
                None => i += 1,
            }
        }
        let waiting = self
            .entries
            .iter()
            .any(|e| matches!(e.purpose, Purpose::Lookup(_)) && !matches!(e.state, CallState::Sent { .. }));
        self.set_tick(host, if waiting { WAIT_TICK_MS } else { TICK_MS });
    }

    /// Reads the service's answer for `hash`, caches it in the shared
    /// cache, and returns it for the requests that waited.
    pub(super) fn lookup_answered(
        &mut self,
        cfg: &Config,
        host: &mut dyn Host,
        hash: String,
        body_size: usize,
    ) -> Option<KeyAnswer> {
        let (Some(keys), Some(svc)) = (&cfg.api_keys, &cfg.auth_service) else {
            return None;
        };
        let ask = Ask { keys, svc };
        let now_ms = host.now_ms();
        let now = now_ms / 1000;
        let response = host.call_response(body_size, keys.max_response_bytes);
        let mut status = response.status;
        if api_key::is_proxy_answer(status, response.content_type.as_deref()) {
            // the proxy's own 503/504: the service did not answer (timeout, connection failure)
            status = None;
        }
        let mut ctx = Ctx {
            host,
            breaker: &mut self.breaker,
            warnings: &mut self.warnings,
            now_ms,
        };
        let result = match api_key::parse_lookup(status, response.body.as_deref(), keys.max_response_bytes, now, &hash)
        {
            Ok(lookup) => {
                ctx.succeeded();
                let until = shared_cache::cache_until(&lookup, now, keys.max_cache_ttl_s, keys.negative_cache_ttl_s);
                // Written even when it may not be used (a zero TTL): a revoked or
                // unknown answer must replace a stale valid one for this key.
                let name = keys.shared_cache.entry_name(&hash, keys.shared_cache_slots);
                if let Some(bytes) = keys.shared_cache.encode_entry(&hash, &lookup, until) {
                    let _ = ctx.host.shared_set(&name, &bytes, None);
                }
                Ok(lookup)
            }
            Err(e) => {
                if ctx.warnings.allow(now_ms) {
                    ctx.host.log(Level::Warn, &format!("API-key lookup failed: {e}"));
                }
                Err(ctx.failed(e))
            }
        };
        ask.release_marker(ctx.host, &hash);
        Some(KeyAnswer { hash, result })
    }
}

fn is_lookup_of(purpose: &Purpose, hash: &str) -> bool {
    matches!(purpose, Purpose::Lookup(h) if h == hash)
}

/// What a lookup is asked of: the configuration's parts it needs.
struct Ask<'c> {
    keys: &'c ApiKeys,
    svc: &'c AuthService,
}

/// The worker's parts a lookup step moves.
struct Ctx<'a> {
    host: &'a mut dyn Host,
    breaker: &'a mut SharedBreaker,
    warnings: &'a mut WarnLimiter,
    now_ms: u64,
}

impl Ctx<'_> {
    /// Tells the breaker the service answered.
    fn succeeded(&mut self) {
        self.breaker.on_success(self.host, self.now_ms);
        self.host.breaker_state(self.breaker.state());
    }

    /// Counts a failed lookup and tells the breaker.
    fn failed(&mut self, e: LookupFailure) -> LookupFailure {
        self.host.count(Counter::LookupFailed(e));
        let opened = self.breaker.on_failure(self.host, self.now_ms);
        self.host.breaker_state(self.breaker.state());
        if opened {
            self.host.count(Counter::BreakerOpened);
            self.host.log(
                Level::Warn,
                "API-key lookups keep failing: circuit open, lookups are refused for a while",
            );
        }
        e
    }
}

impl Ask<'_> {
    /// Moves one lookup forward; `Some` when it is over.
    fn step(&self, ctx: &mut Ctx<'_>, hash: &str, state: &mut CallState) -> Option<Result<Lookup, LookupFailure>> {
        let now_ms = ctx.now_ms;
        if let CallState::Sent { deadline_ms, .. } = *state {
            // The proxy's own timeout answers first; this only catches a lost call.
            if now_ms < deadline_ms {
                return None;
            }
            self.release_marker(ctx.host, hash);
            return Some(Err(ctx.failed(LookupFailure::NoResponse)));
        }
        // Another worker may have answered already.
        let now = now_ms / 1000;
        let table = &self.keys.shared_cache;
        let entry = table.entry_name(hash, self.keys.shared_cache_slots);
        if let Some((mut lookup, until)) = ctx
            .host
            .shared_get(&entry)
            .0
            .and_then(|b| table.decode_entry(&b, hash))
            .filter(|(_, until)| *until > now)
        {
            // delivered with what is left of its cache time, never more
            lookup.cache_ttl_s = until - now;
            // the service answers (another worker asked it): a probe succeeded
            ctx.succeeded();
            return Some(Ok(lookup));
        }
        let max_wait_ms = self.svc.timeout_ms.saturating_add(GRACE_MS);
        let deadline_ms = now_ms.saturating_add(max_wait_ms);
        let marker = table.marker_name(hash, self.keys.shared_cache_slots);
        let (current, cas) = ctx.host.shared_get(&marker);
        if let Marker::Busy { deadline_ms } = shared_cache::read_marker(current.as_deref(), hash, now_ms, max_wait_ms) {
            if *state == CallState::Queued {
                ctx.host.count(Counter::KeyCoalesced);
            }
            *state = CallState::Elsewhere { deadline_ms };
            return None;
        }
        // Claim the key: create the marker if it never existed, then swap it in.
        let cas = match cas {
            Some(c) => Some(c),
            None => {
                let _ = ctx.host.shared_set(&marker, b"", None);
                ctx.host.shared_get(&marker).1
            }
        };
        let claim = shared_cache::encode_marker(hash, deadline_ms);
        if ctx.host.shared_set(&marker, &claim, cas).is_err() {
            // another worker claimed it between our read and write
            *state = CallState::Elsewhere { deadline_ms };
            return None;
        }
        let bearer = format!("Bearer {}", self.svc.token);
        let body = api_key::lookup_body(hash);
        let call = HttpCall {
            cluster: &self.svc.cluster,
            authority: &self.svc.authority,
            method: "POST",
            path: &self.keys.lookup_path,
            headers: &[
                ("accept", "application/json"),
                ("user-agent", "edge-auth"),
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            body: Some(body.as_bytes()),
            timeout_ms: self.svc.timeout_ms,
        };
        match ctx.host.dispatch(&call) {
            Ok(token) => {
                ctx.host.count(Counter::KeyLookups);
                *state = CallState::Sent { token, deadline_ms };
                None
            }
            Err(e) => {
                self.release_marker(ctx.host, hash);
                if ctx.warnings.allow(now_ms) {
                    ctx.host.log(
                        Level::Warn,
                        &format!("cannot call the auth service on {}: {e:?}", self.svc.cluster),
                    );
                }
                Some(Err(ctx.failed(LookupFailure::NoResponse)))
            }
        }
    }

    /// Clears this worker's lookup marker for `hash` (if it is still there).
    fn release_marker(&self, host: &mut dyn Host, hash: &str) {
        let name = self.keys.shared_cache.marker_name(hash, self.keys.shared_cache_slots);
        let (current, cas) = host.shared_get(&name);
        if shared_cache::marker_is_for(current.as_deref(), hash) {
            let _ = host.shared_set(&name, b"", cas);
        }
    }
}
