//! Remote JWKS fetches: sent when the provider's schedule
//! (`refresh::RemoteKeys`) says they are due and this worker holds the
//! JWKS's lease (`shared_fetch`: one scheduled fetch per Envoy), or when a
//! request on this worker asked for one (an unknown `kid`, rate-limited by
//! `min_refetch_interval_s`); given up on past their deadline, and their
//! answers installed (or, on failure, the last good keys kept and the retry
//! backed off). A good answer whose body differs from the last one
//! published is published in shared data, and every worker installs it on
//! its tick.

use sha2::{Digest, Sha256};

use super::shared_fetch::{self, Outcome, Shared};
use super::{wake, CallResponse, CallState, Counter, Entry, Host, HttpCall, Outbound, Purpose, Wake};
use crate::config::Config;
use crate::decision::State;
use crate::jwt::refresh;
use crate::jwt::{Provider, RemoteJwks};
use crate::logging::Level;

/// Provider `provider` with its remote JWKS, the time, and the answer to its
/// call (a discovery document or a JWKS) read within the remote's size limit;
/// `None`, and nothing read, for a provider that is gone or has no remote keys.
pub(super) fn remote_answer<'c>(
    cfg: &'c Config,
    host: &mut dyn Host,
    provider: usize,
    body_size: usize,
) -> Option<(&'c Provider, &'c RemoteJwks, u64, CallResponse)> {
    let p = cfg.providers.get(provider)?;
    let remote = p.remote.as_ref()?;
    let now_ms = host.now_ms();
    let response = host.call_response(body_size, remote.max_response_bytes);
    Some((p, remote, now_ms, response))
}

impl Outbound {
    /// Gives up on fetches past their deadline (waking their waiters), and
    /// sends the fetches that are due or that a request asked for.
    pub(super) fn jwks_tick(
        &mut self,
        cfg: &Config,
        st: &mut State,
        host: &mut dyn Host,
        now_ms: u64,
        wakes: &mut Vec<Wake>,
    ) {
        for (i, p) in cfg.providers.iter().enumerate() {
            let Some(remote) = &p.remote else { continue };
            let shared = Shared::jwks(remote);
            self.follow_jwks(cfg, st, host, i, &shared, wakes);
            let holds = shared_fetch::hold(host, &shared, self.instance, now_ms);
            let Some(r) = st.remote.get_mut(i) else { continue };
            let purpose = Purpose::Jwks(i);
            let asked = self
                .entries
                .iter()
                .any(|e| e.purpose == purpose && e.state == CallState::Queued);
            let expired = r.expire(now_ms, remote);
            let mut due = holds && r.due(now_ms);
            if due {
                r.start(now_ms, remote);
                // a scheduled refresh reads the discovery document again
                self.rediscover(i);
            } else if r.in_flight() && asked {
                // a request asked for this fetch (unknown kid, or no keys yet)
                due = true;
            }
            if expired {
                // a late answer to the expired fetch is ignored
                let waiters = self.take(&purpose).map(|e| e.waiters).unwrap_or_default();
                host.count(Counter::JwksFetchFailed);
                host.log(
                    Level::Warn,
                    &format!("JWKS fetch for provider {} got no answer in time", p.name),
                );
                wake(wakes, waiters, None);
            }
            if due {
                let deadline_ms = r.deadline_ms().unwrap_or(now_ms);
                if let Err(waiters) = self.jwks_send(host, i, p, remote, deadline_ms) {
                    r.fail(now_ms, remote);
                    wake(wakes, waiters, None);
                }
            }
        }
    }

    /// Sends provider `i`'s fetch. `Err`: it could not be sent (counted and
    /// logged), with the requests that waited for it.
    pub(super) fn jwks_send(
        &mut self,
        host: &mut dyn Host,
        i: usize,
        p: &Provider,
        remote: &RemoteJwks,
        deadline_ms: u64,
    ) -> Result<(), Vec<u32>> {
        let path = self.fetch_path(i, &remote.path, remote.discovery);
        let call = HttpCall {
            cluster: &remote.cluster,
            authority: &remote.authority,
            method: "GET",
            path: &path,
            headers: &[("accept", "application/json"), ("user-agent", "edge-auth")],
            body: None,
            timeout_ms: remote.timeout_ms,
        };
        let purpose = Purpose::Jwks(i);
        match host.dispatch(&call) {
            Ok(token) => {
                host.count(Counter::JwksFetchSent);
                let state = CallState::Sent { token, deadline_ms };
                match self.entries.iter_mut().find(|e| e.purpose == purpose) {
                    Some(e) => e.state = state,
                    None => self.entries.push(Entry {
                        purpose,
                        state,
                        waiters: Vec::new(),
                    }),
                }
                Ok(())
            }
            Err(e) => {
                host.count(Counter::JwksFetchFailed);
                host.log(
                    Level::Warn,
                    &format!(
                        "cannot fetch JWKS for provider {} from cluster {}: {e:?}",
                        p.name, remote.cluster
                    ),
                );
                Err(self.take(&purpose).map(|e| e.waiters).unwrap_or_default())
            }
        }
    }

    /// Installs provider `provider`'s fetched keys, or keeps the last good
    /// ones and backs the retry off.
    pub(super) fn jwks_answered(
        &mut self,
        cfg: &Config,
        st: &mut State,
        host: &mut dyn Host,
        provider: usize,
        body_size: usize,
    ) {
        let Some((p, remote, now_ms, response)) = remote_answer(cfg, host, provider, body_size) else {
            return;
        };
        match refresh::parse_response(response.status, response.body.as_deref(), p) {
            Ok((keys, skipped)) => {
                host.count(Counter::JwksFetchOk);
                for s in &skipped {
                    host.log(
                        Level::Info,
                        &format!("provider {}: JWKS key {} skipped: {}", p.name, s.index, s.reason),
                    );
                }
                let count = keys.len();
                st.install_keys(cfg, provider, keys, now_ms);
                self.publish_jwks(host, remote, provider, response.body.as_deref(), now_ms);
                host.log(
                    Level::Debug,
                    &format!("provider {}: {count} JWKS keys installed", p.name),
                );
            }
            Err(why) => {
                host.count(Counter::JwksFetchFailed);
                host.log(
                    Level::Warn,
                    &format!(
                        "provider {}: JWKS fetch failed, keeping the last good keys: {why}",
                        p.name
                    ),
                );
                // (with discovery, the next fetch reads the document again)
                self.rediscover(provider);
                if let Some(r) = st.remote.get_mut(provider) {
                    r.fail(now_ms, remote);
                }
            }
        }
    }

    /// Publishes a good JWKS answer for the other workers: the body when it
    /// differs from the last one this worker published or installed.
    fn publish_jwks(
        &mut self,
        host: &mut dyn Host,
        remote: &RemoteJwks,
        provider: usize,
        body: Option<&[u8]>,
        now_ms: u64,
    ) {
        let Some(body) = body else { return };
        let digest: [u8; 32] = Sha256::digest(body).into();
        let changed = self.jwks_digest.get(provider).is_none_or(|d| *d != Some(digest));
        let shared = Shared::jwks(remote);
        let out = Outcome {
            body: changed.then_some(body),
            fetched: true,
            attempted_at_ms: now_ms,
        };
        if let Some(seq) = shared_fetch::publish(host, &shared, out, now_ms) {
            if let (Some(s), Some(d)) = (self.jwks_seq.get_mut(provider), self.jwks_digest.get_mut(provider)) {
                *s = seq;
                *d = Some(digest);
            }
        }
    }

    /// Installs the JWKS another worker published for provider `i`, when it
    /// moved since this worker's; wakes the requests waiting for keys whose
    /// fetch was not sent yet.
    fn follow_jwks(
        &mut self,
        cfg: &Config,
        st: &mut State,
        host: &mut dyn Host,
        i: usize,
        shared: &Shared,
        wakes: &mut Vec<Wake>,
    ) {
        let Some(p) = cfg.providers.get(i) else { return };
        let installed = self.jwks_seq.get(i).copied().unwrap_or(0);
        let Some(head) = shared_fetch::read_head(host, shared).filter(|h| h.seq != installed && h.seq != 0) else {
            return;
        };
        let Some(body) = shared_fetch::read_body(host, shared, head.seq) else {
            return;
        };
        match refresh::parse_response(Some(200), Some(&body), p) {
            Ok((keys, _)) => {
                st.install_keys(cfg, i, keys, host.now_ms());
                if let (Some(s), Some(d)) = (self.jwks_seq.get_mut(i), self.jwks_digest.get_mut(i)) {
                    *s = head.seq;
                    *d = Some(Sha256::digest(&body).into());
                }
                let purpose = Purpose::Jwks(i);
                if self
                    .entries
                    .iter()
                    .any(|e| e.purpose == purpose && e.state == CallState::Queued)
                {
                    let waiters = self.take(&purpose).map(|e| e.waiters).unwrap_or_default();
                    wake(wakes, waiters, None);
                }
            }
            Err(why) => {
                // (the worker that fetched it installed it: a different
                // provider configuration over the same JWKS may refuse it)
                if let Some(s) = self.jwks_seq.get_mut(i) {
                    *s = head.seq;
                }
                host.log(
                    Level::Warn,
                    &format!("provider {}: JWKS published by another worker refused: {why}", p.name),
                );
            }
        }
    }
}
