//! Polls of the auth service's revocation feed: one every
//! `revocation_poll_s` per worker (when a provider has `check_revocation`,
//! or `api_keys` is configured: the feed revokes keys too), so that a
//! revocation check at request time is a local lookup. What the feed means is `revocation`'s; a poll
//! that fails leaves the last good state in force, and only a good one
//! extends how long that state counts as fresh
//! (`State::revocation_fresh_until_ms`).

use super::{CallState, Counter, Entry, Host, HttpCall, Outbound, Purpose, GRACE_MS};
use crate::config::Config;
use crate::decision::State;
use crate::jwt::revocation::Limits;
use crate::logging::Level;

impl Outbound {
    /// Gives up on a poll past its deadline (a failure), and sends one when due.
    pub(super) fn poll_tick(&mut self, cfg: &Config, st: &State, host: &mut dyn Host, now_ms: u64) {
        let Some(svc) = &cfg.auth_service else { return };
        // The feed carries API-key revocations too (contract 1.3): a filter
        // with `api_keys` polls it whether or not a provider checks tokens.
        if !cfg.providers.iter().any(|p| p.check_revocation) && cfg.api_keys.is_none() {
            return;
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
        if now_ms < self.next_poll_ms {
            return;
        }
        self.next_poll_ms = now_ms.saturating_add(svc.revocation_poll_ms);
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
            Ok(token) => self.entries.push(Entry {
                purpose: Purpose::RevocationPoll,
                state: CallState::Sent {
                    token,
                    deadline_ms: now_ms.saturating_add(svc.timeout_ms).saturating_add(GRACE_MS),
                },
                waiters: Vec::new(),
            }),
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
        match applied {
            Ok(_) => {
                st.revocation_fresh_until_ms = now_ms.saturating_add(svc.revocation_max_staleness_ms);
                host.count(Counter::RevocationPollOk);
            }
            Err(e) => {
                st.revocation.on_failure(e);
                host.count(Counter::RevocationPollFailed);
                if self.poll_warnings.allow(now_ms) {
                    host.log(
                        Level::Warn,
                        &format!("revocation poll failed ({}); keeping the last state", e.name()),
                    );
                }
            }
        }
    }
}
