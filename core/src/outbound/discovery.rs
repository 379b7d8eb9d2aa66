//! OpenID Connect discovery for remote JWKS: a provider whose
//! `remote_jwks.discovery` names its discovery document has its JWKS
//! fetched in two calls through the same cluster and authority: the
//! document (its `issuer` checked, its `jwks_uri` read:
//! [`crate::jwt::discovery`]), then the JWKS at the `jwks_uri`'s path.
//!
//! It is part of the JWKS fetch, not beside it: the same schedule, lease,
//! deadline, waiters and publication (`jwks_fetch`). The worker that sends
//! a fetch re-reads the document on every scheduled refresh and after a
//! failed fetch; an unknown-`kid` refetch in between goes straight to the
//! JWKS path it last read. A refused document fails the fetch like a failed
//! JWKS (last good keys kept, retry backed off); before any good one the
//! provider has no keys and its tokens are refused (`keys_unavailable`).

use super::jwks_fetch::remote_answer;
use super::{CallState, Counter, Entry, Host, Outbound, Purpose};
use crate::config::Config;
use crate::decision::State;
use crate::jwt::discovery::parse_document;
use crate::logging::Level;

impl Outbound {
    /// The path provider `i`'s next fetch asks for: its JWKS, or, with
    /// discovery and no JWKS path known, its discovery document (and then
    /// the answer is read as one).
    pub(super) fn fetch_path(&mut self, i: usize, path: &str, discovery: bool) -> String {
        let known = self.jwks_paths.get(i).cloned().flatten();
        let document = discovery && known.is_none();
        if let Some(d) = self.discovering.get_mut(i) {
            *d = document;
        }
        match known {
            Some(p) if discovery => p,
            _ => path.to_owned(),
        }
    }

    /// Whether provider `i`'s call under way asks for its discovery document.
    pub(super) fn discovering(&self, i: usize) -> bool {
        self.discovering.get(i).copied().unwrap_or(false)
    }

    /// Forgets provider `i`'s JWKS path: the next fetch re-reads the document.
    pub(super) fn rediscover(&mut self, i: usize) {
        if let Some(p) = self.jwks_paths.get_mut(i) {
            *p = None;
        }
    }

    /// Reads provider `provider`'s discovery document: on success the JWKS
    /// fetch follows at once, for the same waiters and by the same deadline;
    /// otherwise the fetch fails and the waiters are returned, to be woken
    /// (without keys).
    pub(super) fn discovery_answered(
        &mut self,
        cfg: &Config,
        st: &mut State,
        host: &mut dyn Host,
        provider: usize,
        body_size: usize,
        waiters: Vec<u32>,
    ) -> Vec<u32> {
        if let Some(d) = self.discovering.get_mut(provider) {
            *d = false;
        }
        let Some((p, remote, now_ms, response)) = remote_answer(cfg, host, provider, body_size) else {
            return waiters;
        };
        let document = parse_document(
            response.status,
            response.body.as_deref(),
            &p.issuer,
            &remote.authority,
            remote.max_response_bytes,
        );
        match document {
            Ok(path) => {
                host.count(Counter::DiscoveryOk);
                if let Some(known) = self.jwks_paths.get_mut(provider) {
                    *known = Some(path);
                }
                let deadline_ms = st.remote.get(provider).and_then(|r| r.deadline_ms()).unwrap_or(now_ms);
                self.entries.push(Entry {
                    purpose: Purpose::Jwks(provider),
                    state: CallState::Queued,
                    waiters,
                });
                match self.jwks_send(host, provider, p, remote, deadline_ms) {
                    Ok(()) => Vec::new(),
                    Err(waiters) => {
                        if let Some(r) = st.remote.get_mut(provider) {
                            r.fail(now_ms, remote);
                        }
                        waiters
                    }
                }
            }
            Err(why) => {
                host.count(Counter::DiscoveryFailed);
                host.log(
                    Level::Warn,
                    &format!(
                        "provider {}: OpenID Connect discovery document refused, keeping the last good keys \
                         (none: its tokens are refused): {why}",
                        p.name
                    ),
                );
                if let Some(r) = st.remote.get_mut(provider) {
                    r.fail(now_ms, remote);
                }
                waiters
            }
        }
    }
}
