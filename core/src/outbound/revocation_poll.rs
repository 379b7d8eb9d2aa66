//! Polls of the auth service's revocation feed: one every
//! `revocation_poll_s` per Envoy (when a provider has `check_revocation`,
//! or `api_keys` is configured: the feed revokes keys too), so that a
//! revocation check at request time is a local lookup. The worker holding
//! the feed's lease (`shared_fetch`) polls and publishes its state in shared
//! data as a feed snapshot; every worker installs a newly published state on
//! its tick. What the feed means is `revocation`'s; a poll that fails leaves
//! the last good state in force, and only a good one extends how long that
//! state counts as fresh (`State::revocation_fresh_until_ms`: the last good
//! poll, by whichever worker, plus `revocation_max_staleness_s`).

use super::shared_fetch::{self, Outcome, Shared};
use super::{CallState, Counter, Entry, Host, HttpCall, Outbound, Purpose, GRACE_MS};
use crate::config::{AuthService, Config};
use crate::decision::State;
use crate::jwt::revocation::{Limits, RevocationState};
use crate::logging::Level;

impl Outbound {
    /// Gives up on a poll past its deadline (a failure), and sends one when due.
    pub(super) fn poll_tick(&mut self, cfg: &Config, st: &mut State, host: &mut dyn Host, now_ms: u64) {
        let Some(svc) = &cfg.auth_service else { return };
        // The feed carries API-key revocations too (contract 1.3): a filter
        // with `api_keys` polls it whether or not a provider checks tokens.
        if !super::polls_feed(cfg) {
            return;
        }
        let shared = Shared::revocation(svc);
        self.follow_revocations(svc, &shared, st, host, now_ms);
        // How old the state this worker serves is: the last good poll by any worker. Before
        // the first one there is no age to show (the filter answers 503 until then).
        if st.revocation_fresh_until_ms > 0 {
            let polled_at = st
                .revocation_fresh_until_ms
                .saturating_sub(svc.revocation_max_staleness_ms);
            host.revocation_state_age(now_ms.saturating_sub(polled_at));
        }
        if let Some(e) = self.entries.iter().find(|e| e.purpose == Purpose::RevocationPoll) {
            if let CallState::Sent { deadline_ms, .. } = e.state {
                if now_ms < deadline_ms {
                    return;
                }
            }
            // lost: its late answer is ignored
            self.take(&Purpose::RevocationPoll);
            host.count(Counter::RevocationPollFailed);
        }
        // renewed on every tick, also while the poll is under way
        if !shared_fetch::hold(host, &shared, self.instance, now_ms) || now_ms < self.next_poll_ms {
            return;
        }
        self.next_poll_ms = now_ms.saturating_add(svc.revocation_poll_ms);
        self.poll_sent_ms = now_ms;
        let path = st.revocation.poll_path(&svc.revocations_path);
        let bearer = format!("Bearer {}", svc.token);
        let call = HttpCall {
            cluster: &svc.cluster,
            authority: &svc.authority,
            method: "GET",
            path: &path,
            headers: &[
                ("accept", "application/json"),
                ("user-agent", "edge-auth"),
                ("authorization", &bearer),
            ],
            body: None,
            timeout_ms: svc.timeout_ms,
        };
        match host.dispatch(&call) {
            Ok(token) => {
                host.count(Counter::RevocationPollSent);
                self.entries.push(Entry {
                    purpose: Purpose::RevocationPoll,
                    state: CallState::Sent {
                        token,
                        deadline_ms: now_ms.saturating_add(svc.timeout_ms).saturating_add(GRACE_MS),
                    },
                    waiters: Vec::new(),
                });
            }
            Err(e) => {
                host.count(Counter::RevocationPollFailed);
                if self.poll_warnings.allow(now_ms) {
                    host.log(
                        Level::Warn,
                        &format!("cannot poll revocations from {}: {e:?}", svc.cluster),
                    );
                }
            }
        }
    }

    /// Applies a poll's answer to the worker's revocation state.
    pub(super) fn poll_answered(&mut self, cfg: &Config, st: &mut State, host: &mut dyn Host, body_size: usize) {
        let Some(svc) = &cfg.auth_service else { return };
        let now_ms = host.now_ms();
        let response = host.call_response(body_size, svc.max_response_bytes);
        let limits = Limits {
            max_entries: svc.max_revocation_entries,
        };
        let applied = st.revocation.apply(
            response.status,
            response.body.as_deref(),
            svc.max_response_bytes,
            &limits,
            now_ms / 1000,
        );
        let shared = Shared::revocation(svc);
        let holds = shared_fetch::hold(host, &shared, self.instance, now_ms);
        match applied {
            Ok(a) => {
                st.revocation_fresh_until_ms = now_ms.saturating_add(svc.revocation_max_staleness_ms);
                host.count(Counter::RevocationPollOk);
                if holds {
                    // the whole state, only when it changed: the others re-read it then
                    let body = (a.reset || a.changes > 0).then(|| st.revocation.snapshot()).flatten();
                    let out = Outcome {
                        body: body.as_deref(),
                        fetched: true,
                        attempted_at_ms: self.poll_sent_ms,
                    };
                    if let Some(seq) = shared_fetch::publish(host, &shared, out, now_ms) {
                        self.revocation_seq = seq;
                    }
                }
            }
            Err(e) => {
                st.revocation.on_failure(e);
                host.count(Counter::RevocationPollFailed);
                if holds {
                    let out = Outcome {
                        body: None,
                        fetched: false,
                        attempted_at_ms: self.poll_sent_ms,
                    };
                    let _ = shared_fetch::publish(host, &shared, out, now_ms);
                }
                if self.poll_warnings.allow(now_ms) {
                    host.log(
                        Level::Warn,
                        &format!("revocation poll failed ({}); keeping the last state", e.name()),
                    );
                }
            }
        }
    }

    /// Installs the state the holder published, when it moved since this
    /// worker's, and counts it fresh until the last good poll (by any
    /// worker) plus the staleness bound. Schedules this worker's next poll
    /// (should it hold the lease) one interval after the last one sent.
    fn follow_revocations(
        &mut self,
        svc: &AuthService,
        shared: &Shared,
        st: &mut State,
        host: &mut dyn Host,
        now_ms: u64,
    ) {
        let Some(head) = shared_fetch::read_head(host, shared) else {
            return;
        };
        self.next_poll_ms = self
            .next_poll_ms
            .max(head.attempted_at_ms.saturating_add(svc.revocation_poll_ms));
        if head.seq != self.revocation_seq {
            if let Some(body) = shared_fetch::read_body(host, shared, head.seq) {
                let limits = Limits {
                    max_entries: svc.max_revocation_entries,
                };
                let mut published = RevocationState::new();
                match published.apply(Some(200), Some(&body), usize::MAX, &limits, now_ms / 1000) {
                    Ok(_) => {
                        st.revocation = published;
                        self.revocation_seq = head.seq;
                    }
                    Err(e) => {
                        if self.poll_warnings.allow(now_ms) {
                            host.log(
                                Level::Warn,
                                &format!("revocation state published by another worker refused ({})", e.name()),
                            );
                        }
                    }
                }
            }
        }
        if head.seq != 0 && head.seq == self.revocation_seq {
            let fresh_until = head.fetched_at_ms.saturating_add(svc.revocation_max_staleness_ms);
            st.revocation_fresh_until_ms = st.revocation_fresh_until_ms.max(fresh_until);
        }
    }
}
