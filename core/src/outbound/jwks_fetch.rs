//! Remote JWKS fetches: sent when the provider's schedule
//! (`refresh::RemoteKeys`) says they are due or a request asked for
//! one, given up on past their deadline, and their answers installed (or,
//! on failure, the last good keys kept and the retry backed off).

use super::{wake, CallState, Counter, Entry, Host, HttpCall, Outbound, Purpose, Wake};
use crate::config::Config;
use crate::decision::State;
use crate::jwt::refresh;
use crate::jwt::{Provider, RemoteJwks};
use crate::logging::Level;

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
            let Some(r) = st.remote.get_mut(i) else { continue };
            let purpose = Purpose::Jwks(i);
            let asked = self
                .entries
                .iter()
                .any(|e| e.purpose == purpose && e.state == CallState::Queued);
            let expired = r.expire(now_ms, remote);
            let mut due = r.due(now_ms);
            if due {
                r.start(now_ms, remote);
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
    fn jwks_send(
        &mut self,
        host: &mut dyn Host,
        i: usize,
        p: &Provider,
        remote: &RemoteJwks,
        deadline_ms: u64,
    ) -> Result<(), Vec<u32>> {
        let call = HttpCall {
            cluster: &remote.cluster,
            authority: &remote.authority,
            method: "GET",
            path: &remote.path,
            headers: &[("accept", "application/json"), ("user-agent", "edge-auth")],
            body: None,
            timeout_ms: remote.timeout_ms,
        };
        let purpose = Purpose::Jwks(i);
        match host.dispatch(&call) {
            Ok(token) => {
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
        let Some(p) = cfg.providers.get(provider) else { return };
        let Some(remote) = &p.remote else { return };
        let now_ms = host.now_ms();
        let response = host.call_response(body_size, remote.max_response_bytes);
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
                if let Some(r) = st.remote.get_mut(provider) {
                    r.fail(now_ms, remote);
                }
            }
        }
    }
}
