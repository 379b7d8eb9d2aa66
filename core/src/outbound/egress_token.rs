//! Egress token fetches (`egress_tokens`, `crate::egress`): one fetch per
//! Envoy per entry. The worker holding the entry's lease (`shared_fetch`)
//! sends the client-credentials request when the entry's schedule says it is
//! due, applies the answer to the state (token, backoff, breaker, rejection)
//! and publishes the whole state; the other workers install it on their
//! tick. Requests that wait for a token are woken when the state they
//! decide on changes (the answer on the holder, the publication elsewhere)
//! or when their wait runs out.
//!
//! Logs never carry the secret or a token: a token shows at most as its
//! fingerprint, at debug level.

use super::shared_fetch::{self, Outcome, Shared};
use super::{wake, CallState, Counter, Entry, Host, HttpCall, Outbound, Purpose, Wake, GRACE_MS};
use crate::config::Config;
use crate::decision::Request;
use crate::egress::answer::{read_answer, Answer, MAX_ANSWER_BYTES};
use crate::egress::decide::{decide, select, EgressVerdict, MAX_WAITING, WAIT_GRACE_MS};
use crate::egress::request::{token_request, TokenRequest};
use crate::egress::schedule::TokenState;
use crate::egress::{token_fingerprint, EgressToken};
use crate::logging::Level;

/// One entry's token on this worker.
#[derive(Debug)]
pub(super) struct Slot {
    state: TokenState,
    /// The published state installed or published by this worker (0: none).
    seq: u64,
    /// Requests waiting, with when their wait runs out.
    waiting: Vec<(u32, u64)>,
    request: TokenRequest,
    shared: Shared,
    /// When the fetch under way was sent (`None`: none).
    sent_at_ms: Option<u64>,
}

impl Slot {
    pub(super) fn new(e: &EgressToken) -> Slot {
        Slot {
            state: TokenState::default(),
            seq: 0,
            waiting: Vec::new(),
            request: token_request(e),
            shared: Shared::egress(e),
            sent_at_ms: None,
        }
    }
}

impl Outbound {
    /// The verdict on a request of an egress filter (`path`: its `:path`);
    /// a request told to wait is parked until entry's state changes or
    /// `timeout_ms` + 1 s pass. `may_wait`: false for a request woken from a wait.
    pub fn egress_request(
        &mut self,
        cfg: &Config,
        context_id: u32,
        path: &str,
        req: &mut dyn Request,
        now_ms: u64,
        may_wait: bool,
    ) -> EgressVerdict<'_> {
        let Some(i) = select(&cfg.egress, &cfg.egress_needs, path, req) else {
            return EgressVerdict::Unmatched;
        };
        let (Some(e), Some(slot)) = (cfg.egress.get(i), self.egress.get_mut(i)) else {
            return EgressVerdict::Unmatched;
        };
        let Slot { state, waiting, .. } = slot;
        let verdict = decide(i, e, state, now_ms, may_wait && waiting.len() < MAX_WAITING);
        if let EgressVerdict::Wait { .. } = verdict {
            waiting.push((context_id, now_ms.saturating_add(e.timeout_ms + WAIT_GRACE_MS)));
        }
        verdict
    }

    /// Entry `i`'s state as this worker sees it.
    pub fn egress_state(&self, i: usize) -> Option<&TokenState> {
        self.egress.get(i).map(|s| &s.state)
    }

    /// Installs what other workers published, gives up on fetches past their
    /// deadline, sends the fetches that are due on the entries this worker
    /// holds, and wakes the requests whose wait ran out.
    pub(super) fn egress_tick(&mut self, cfg: &Config, host: &mut dyn Host, now_ms: u64, wakes: &mut Vec<Wake>) {
        let mut ttl_s: Option<u64> = None;
        for (i, e) in cfg.egress.iter().enumerate() {
            self.egress_follow(host, i, wakes);
            let purpose = Purpose::EgressToken(i);
            let lost = self.entries.iter().any(|c| {
                c.purpose == purpose && matches!(c.state, CallState::Sent { deadline_ms, .. } if now_ms >= deadline_ms)
            });
            if lost {
                // a late answer to it is ignored
                let _ = self.take(&purpose);
                self.egress_apply(host, i, e, read_answer(None, None, None), now_ms, wakes);
            }
            // an entry with the credentials of an earlier one gets its token from that one's fetch
            let fetches = self.egress_twin(i).is_none();
            let Some(slot) = self.egress.get_mut(i) else { continue };
            let holds = fetches && shared_fetch::hold(host, &slot.shared, self.instance, now_ms);
            if holds && slot.sent_at_ms.is_none() && slot.state.due(now_ms) {
                self.egress_send(host, i, e, now_ms, wakes);
            }
            let Some(slot) = self.egress.get_mut(i) else { continue };
            let (gone, kept): (Vec<_>, Vec<_>) = slot.waiting.drain(..).partition(|(_, until)| now_ms >= *until);
            slot.waiting = kept;
            wake(wakes, gone.into_iter().map(|(c, _)| c).collect(), None);
            let left = slot
                .state
                .servable(now_ms)
                .and(slot.state.token.as_ref())
                .map_or(0, |t| t.expires_at_ms.saturating_sub(now_ms) / 1000);
            ttl_s = Some(ttl_s.map_or(left, |t| t.min(left)));
        }
        if let Some(ttl) = ttl_s {
            host.egress_token_ttl(ttl);
        }
    }

    /// The answer to entry `i`'s fetch.
    pub(super) fn egress_answered(
        &mut self,
        cfg: &Config,
        host: &mut dyn Host,
        i: usize,
        body_size: usize,
        wakes: &mut Vec<Wake>,
    ) {
        let Some(e) = cfg.egress.get(i) else { return };
        let r = host.call_response(body_size, MAX_ANSWER_BYTES);
        let answer = read_answer(r.status, r.body.as_deref(), r.retry_after.as_deref());
        let now_ms = host.now_ms();
        self.egress_apply(host, i, e, answer, now_ms, wakes);
    }

    fn egress_send(&mut self, host: &mut dyn Host, i: usize, e: &EgressToken, now_ms: u64, wakes: &mut Vec<Wake>) {
        let Some(slot) = self.egress.get_mut(i) else { return };
        let headers: Vec<(&str, &str)> = slot.request.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let call = HttpCall {
            cluster: &e.cluster,
            authority: &e.authority,
            method: "POST",
            path: &e.path,
            headers: &headers,
            body: Some(slot.request.body.as_bytes()),
            timeout_ms: e.timeout_ms,
        };
        match host.dispatch(&call) {
            Ok(token) => {
                host.count(Counter::EgressTokenFetchSent);
                slot.sent_at_ms = Some(now_ms);
                let deadline_ms = now_ms.saturating_add(e.timeout_ms + GRACE_MS);
                self.entries.push(Entry {
                    purpose: Purpose::EgressToken(i),
                    state: CallState::Sent { token, deadline_ms },
                    waiters: Vec::new(),
                });
            }
            Err(err) => {
                host.log(
                    Level::Warn,
                    &format!("egress token {}: cannot call cluster {}: {err:?}", e.name, e.cluster),
                );
                slot.sent_at_ms = Some(now_ms);
                let answer = Answer::Unavailable {
                    why: "dispatch failed",
                    retry_after_s: None,
                };
                self.egress_apply(host, i, e, answer, now_ms, wakes);
            }
        }
    }

    /// Applies a fetch's outcome to entry `i`, publishes the state and wakes
    /// this worker's waiting requests.
    fn egress_apply(
        &mut self,
        host: &mut dyn Host,
        i: usize,
        e: &EgressToken,
        answer: Answer,
        now_ms: u64,
        wakes: &mut Vec<Wake>,
    ) {
        let Some(slot) = self.egress.get_mut(i) else { return };
        let attempted_at_ms = slot.sent_at_ms.take().unwrap_or(now_ms);
        let fetched = matches!(answer, Answer::Token { .. });
        match answer {
            Answer::Token {
                access_token,
                expires_in_s,
            } => {
                host.count(Counter::EgressTokenFetchOk);
                host.log(
                    Level::Debug,
                    &format!(
                        "egress token {}: token {} obtained, valid for {expires_in_s} s",
                        e.name,
                        token_fingerprint(&access_token)
                    ),
                );
                // expires_in runs from when the issuer answered, some time after the
                // request left: counted from the request, never past the real expiry
                slot.state.succeed(e, access_token, expires_in_s, attempted_at_ms);
            }
            Answer::Unavailable { why, retry_after_s } => {
                host.count(Counter::EgressTokenFetchFailed);
                let failed = slot.state.fail(e, retry_after_s, host.random_u64(), now_ms);
                if failed.breaker_opened {
                    host.count(Counter::EgressBreakerOpened);
                }
                let serving = if slot.state.servable(now_ms).is_some() {
                    "the current token is still served"
                } else {
                    "no token to serve"
                };
                host.log(
                    Level::Warn,
                    &format!(
                        "egress token {}: token fetch failed ({why}), {} failure(s) in a row{}: next attempt in {} ms, {serving}",
                        e.name,
                        slot.state.failures,
                        if failed.breaker_opened { ", circuit breaker open" } else { "" },
                        failed.delay_ms
                    ),
                );
            }
            Answer::Rejected { status, error } => {
                host.count(Counter::EgressTokenRejected);
                slot.state.reject(e, now_ms);
                let error = error.map_or_else(String::new, |c| format!(", error {c}"));
                host.log(
                    Level::Error,
                    &format!(
                        "egress token {}: the issuer rejected the client credentials (status {status}{error}): not retrying for {} s",
                        e.name,
                        e.rejected_retry_ms / 1000
                    ),
                );
            }
        }
        let body = slot.state.encode();
        let out = Outcome {
            body: Some(&body),
            fetched,
            attempted_at_ms,
        };
        if let Some(seq) = shared_fetch::publish(host, &slot.shared, out, now_ms) {
            slot.seq = seq;
        }
        let waiting: Vec<u32> = slot.waiting.drain(..).map(|(c, _)| c).collect();
        wake(wakes, waiting, None);
        // the later entries with the same credentials: the same state, at once
        let (state, seq, shared) = (slot.state.clone(), slot.seq, slot.shared.clone());
        for twin in self.egress.iter_mut().skip(i + 1).filter(|s| s.shared == shared) {
            twin.state = state.clone();
            twin.seq = seq;
            let waiting: Vec<u32> = twin.waiting.drain(..).map(|(c, _)| c).collect();
            wake(wakes, waiting, None);
        }
    }

    /// The first entry before `i` with the same credentials (issuer, client,
    /// audience, scopes, secret), whose fetch serves entry `i` too.
    fn egress_twin(&self, i: usize) -> Option<usize> {
        let shared = &self.egress.get(i)?.shared;
        self.egress.iter().take(i).position(|s| s.shared == *shared)
    }

    /// Installs entry `i`'s state when another worker published a newer one,
    /// and wakes the requests waiting for it.
    fn egress_follow(&mut self, host: &mut dyn Host, i: usize, wakes: &mut Vec<Wake>) {
        let Some(slot) = self.egress.get_mut(i) else { return };
        let Some(head) = shared_fetch::read_head(host, &slot.shared).filter(|h| h.seq != slot.seq && h.seq != 0) else {
            return;
        };
        let Some(state) = shared_fetch::read_body(host, &slot.shared, head.seq).and_then(|b| TokenState::decode(&b))
        else {
            return;
        };
        slot.state = state;
        slot.seq = head.seq;
        let waiting: Vec<u32> = slot.waiting.drain(..).map(|(c, _)| c).collect();
        wake(wakes, waiting, None);
    }

    /// Forgets a request that is gone.
    pub(super) fn egress_forget(&mut self, context_id: u32) {
        for s in &mut self.egress {
            s.waiting.retain(|(c, _)| *c != context_id);
        }
    }
}
