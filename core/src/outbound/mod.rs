//! The calls the filter makes on its own: API-key lookups at the auth
//! service, polls of its revocation feed and remote JWKS fetches.
//!
//! One registry per worker ([`Outbound`]) knows every call: what it is for
//! ([`Purpose`]), where it stands ([`CallState`]: queued, answered by
//! another worker, or sent with its token and deadline) and which requests
//! wait for it. It decides when calls are made (the JWKS schedule, the
//! revocation poll schedule, on-demand fetches and lookups), coalesces
//! lookups (on the worker, and across workers through markers in shared
//! data), applies the lookup circuit breaker, gives up on calls past their
//! deadline and ignores late answers. The proxy is reached only through
//! [`Host`]; the shell forwards its callbacks here and decides again, in
//! their own contexts, the requests each call returns in a [`Wake`].
//!
//! Calls are sent only at configure time and from the root context's tick,
//! never from a request's context: a client that goes away never cancels a
//! call others wait for.

mod discovery;
mod egress_token;
mod host;
mod jwks_fetch;
mod lookup;
mod revocation_poll;
mod shared_breaker;
mod shared_budget;
pub mod shared_fetch;

pub use host::{CallResponse, Counter, Host, HostError, HttpCall};

use crate::api_key::breaker::BreakerState;
use crate::api_key::LookupFailure;
use crate::config::Config;
use crate::decision::{KeyAnswer, State};
use crate::logging::{Level, WarnLimiter};
use shared_breaker::SharedBreaker;

/// The tick period while no lookup waits: it bounds how late a scheduled
/// JWKS fetch or revocation poll starts, and how long a request that asked
/// for a JWKS fetch waits before it is sent.
pub const TICK_MS: u64 = 200;
/// The tick period while lookups wait for another worker's answer.
pub const WAIT_TICK_MS: u64 = 20;
/// The tick period that runs the tick at once (a lookup was queued).
pub const NOW_TICK_MS: u64 = 1;
/// Time past an auth-service call's timeout before it is given up on
/// (the proxy's own timeout answers first; this only catches a lost call).
pub const GRACE_MS: u64 = 1_000;

/// What an outbound call is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// The API-key lookup of this key hash.
    Lookup(String),
    /// A poll of the revocation feed.
    RevocationPoll,
    /// A fetch of this provider's JWKS.
    Jwks(usize),
    /// A token fetch for this `egress_tokens` entry.
    EgressToken(usize),
}

/// Where a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// To be sent on the next tick.
    Queued,
    /// Another worker is asking (API-key lookups only): its answer is
    /// awaited in the shared cache, at most until `deadline_ms`.
    Elsewhere { deadline_ms: u64 },
    /// Sent: the host's token for it, and when to give up on it.
    Sent { token: u32, deadline_ms: u64 },
}

/// A call and the requests (context ids) waiting for it.
#[derive(Debug)]
struct Entry {
    purpose: Purpose,
    state: CallState,
    waiters: Vec<u32>,
}

/// A call as [`Outbound::calls`] shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallView<'a> {
    pub purpose: &'a Purpose,
    pub state: CallState,
    pub waiters: &'a [u32],
}

/// Requests to decide again, each in its own context, now that what they
/// waited for is known: with `answer` for an API-key lookup; for a JWKS
/// fetch, the keys (if any arrived) are in the worker's state.
#[derive(Debug)]
pub struct Wake {
    pub contexts: Vec<u32>,
    pub answer: Option<KeyAnswer>,
}

/// The outbound calls of one worker.
#[derive(Debug)]
pub struct Outbound {
    entries: Vec<Entry>,
    /// When the next revocation poll is due (host ms).
    next_poll_ms: u64,
    /// Trips after repeated lookup failures (shared by the Envoy's workers).
    breaker: SharedBreaker,
    /// The tick period as last set (0: never set).
    tick_ms: u64,
    warnings: WarnLimiter,
    /// This root context's number among the proxy's, for leases (0: none).
    instance: u64,
    /// When this worker sent its last revocation poll.
    poll_sent_ms: u64,
    /// The published revocation state installed (`shared_fetch` seq; 0: none).
    revocation_seq: u64,
    /// The published JWKS installed, by provider (0: none).
    jwks_seq: Vec<u64>,
    /// The SHA-256 of the JWKS body installed, by provider.
    jwks_digest: Vec<Option<[u8; 32]>>,
    /// The revocation poll's own rate limit of warnings: a feed that keeps
    /// failing (polled for API keys too) must not silence the lookups' warnings.
    poll_warnings: WarnLimiter,
    /// The JWKS path the last good discovery document named, by provider
    /// (`None`: none yet, or to be read again: `discovery`).
    jwks_paths: Vec<Option<String>>,
    /// Whether the provider's JWKS call under way asks for its discovery document.
    discovering: Vec<bool>,
    /// Each `egress_tokens` entry's token, by entry.
    egress: Vec<egress_token::Slot>,
}

/// Whether the revocation feed is polled: a provider checks revocations, or
/// API keys are configured (the feed revokes keys too, contract 1.3). One
/// answer for `start` (which takes a lease identity only then) and the poll.
pub(crate) fn polls_feed(cfg: &Config) -> bool {
    cfg.auth_service.is_some() && (cfg.providers.iter().any(|p| p.check_revocation) || cfg.api_keys.is_some())
}

impl Outbound {
    pub fn new(cfg: &Config) -> Outbound {
        Outbound {
            entries: Vec::new(),
            next_poll_ms: 0,
            breaker: SharedBreaker::new(cfg),
            tick_ms: 0,
            warnings: WarnLimiter::default(),
            instance: 0,
            poll_sent_ms: 0,
            revocation_seq: 0,
            jwks_seq: vec![0; cfg.providers.len()],
            jwks_digest: vec![None; cfg.providers.len()],
            poll_warnings: WarnLimiter::default(),
            jwks_paths: vec![None; cfg.providers.len()],
            discovering: vec![false; cfg.providers.len()],
            egress: cfg.egress.iter().map(egress_token::Slot::new).collect(),
        }
    }

    /// At configure time: sets the tick when any call is configured, and
    /// starts the first JWKS fetches and revocation poll.
    pub fn start(&mut self, cfg: &Config, st: &mut State, host: &mut dyn Host) -> Vec<Wake> {
        let polls = polls_feed(cfg);
        let remote = cfg.providers.iter().any(|p| p.remote.is_some());
        let egress = !cfg.egress.is_empty();
        if !(polls || remote || egress || cfg.api_keys.is_some()) {
            return Vec::new();
        }
        if polls || remote || egress {
            self.instance = shared_fetch::instance_id(host);
        }
        match host.set_tick_period_ms(TICK_MS) {
            Ok(()) => self.tick_ms = TICK_MS,
            Err(e) => host.log(
                Level::Error,
                &format!(
                    "cannot set the tick period, remote JWKS, revocations and API-key lookups will not run: {e:?}"
                ),
            ),
        }
        let now_ms = host.now_ms();
        let mut wakes = Vec::new();
        self.jwks_tick(cfg, st, host, now_ms, &mut wakes);
        self.poll_tick(cfg, st, host, now_ms);
        self.egress_tick(cfg, host, now_ms, &mut wakes);
        wakes
    }

    /// The root context's tick: JWKS fetches, the revocation poll, then
    /// API-key lookups.
    pub fn on_tick(&mut self, cfg: &Config, st: &mut State, host: &mut dyn Host) -> Vec<Wake> {
        let now_ms = host.now_ms();
        let mut wakes = Vec::new();
        self.jwks_tick(cfg, st, host, now_ms, &mut wakes);
        self.poll_tick(cfg, st, host, now_ms);
        self.lookup_tick(cfg, host, now_ms, &mut wakes);
        self.egress_tick(cfg, host, now_ms, &mut wakes);
        wakes
    }

    /// An answer arrived for `token` (with `body_size` bytes of body). An
    /// answer to no call under way (given up on, or not ours) is ignored
    /// without being read.
    pub fn on_response(
        &mut self,
        cfg: &Config,
        st: &mut State,
        host: &mut dyn Host,
        token: u32,
        body_size: usize,
    ) -> Vec<Wake> {
        let Some(i) = self
            .entries
            .iter()
            .position(|e| matches!(e.state, CallState::Sent { token: t, .. } if t == token))
        else {
            return Vec::new();
        };
        let entry = self.entries.swap_remove(i);
        let mut wakes = Vec::new();
        match entry.purpose {
            Purpose::Lookup(hash) => {
                if let Some(answer) = self.lookup_answered(cfg, host, hash, body_size) {
                    wake(&mut wakes, entry.waiters, Some(answer));
                }
            }
            Purpose::RevocationPoll => self.poll_answered(cfg, st, host, body_size),
            Purpose::Jwks(provider) if self.discovering(provider) => {
                let waiters = self.discovery_answered(cfg, st, host, provider, body_size, entry.waiters);
                wake(&mut wakes, waiters, None);
            }
            Purpose::Jwks(provider) => {
                self.jwks_answered(cfg, st, host, provider, body_size);
                wake(&mut wakes, entry.waiters, None);
            }
            Purpose::EgressToken(i) => self.egress_answered(cfg, host, i, body_size, &mut wakes),
        }
        wakes
    }

    /// Parks the request `context_id` until `provider`'s keys are fetched
    /// (`Verdict::AwaitKeys`): it joins the provider's fetch, queued or
    /// under way, or queues one for the next tick (the request started a
    /// fetch in the provider's schedule: `AwaitKeys::dispatch`).
    pub fn await_keys(&mut self, context_id: u32, provider: usize) {
        match self.entries.iter_mut().find(|e| e.purpose == Purpose::Jwks(provider)) {
            Some(e) => e.waiters.push(context_id),
            None => self.entries.push(Entry {
                purpose: Purpose::Jwks(provider),
                state: CallState::Queued,
                waiters: vec![context_id],
            }),
        }
    }

    /// Parks the request `context_id` until the API key `hash` is answered
    /// (`Verdict::AwaitLookup`), a new lookup charged to `client`'s
    /// budget. `Some` when no lookup can be made now (circuit open, too many
    /// pending, over budget): the request is decided again at once with
    /// that answer.
    pub fn await_lookup(
        &mut self,
        cfg: &Config,
        host: &mut dyn Host,
        context_id: u32,
        hash: String,
        client: Option<std::net::IpAddr>,
    ) -> Option<KeyAnswer> {
        let failure = self.enqueue_lookup(cfg, host, context_id, &hash, client).err()?;
        host.count(match failure {
            LookupFailure::OverBudget { .. } => Counter::LookupBudgetExceeded,
            f => Counter::LookupFailed(f),
        });
        Some(KeyAnswer {
            hash,
            result: Err(failure),
        })
    }

    /// Forgets a request that is gone: nothing waits on it any more. Its
    /// calls go on (others may wait for them, and their answers are cached).
    pub fn forget(&mut self, context_id: u32) {
        for e in &mut self.entries {
            e.waiters.retain(|w| *w != context_id);
        }
        self.egress_forget(context_id);
    }

    /// Every call queued, awaited elsewhere or under way.
    pub fn calls(&self) -> impl Iterator<Item = CallView<'_>> {
        self.entries.iter().map(|e| CallView {
            purpose: &e.purpose,
            state: e.state,
            waiters: &e.waiters,
        })
    }

    /// The API-key lookup breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// The worker's rate limit of warnings, shared with the request path.
    pub fn warnings(&mut self) -> &mut WarnLimiter {
        &mut self.warnings
    }

    /// Sets the tick period when it changes.
    fn set_tick(&mut self, host: &mut dyn Host, period_ms: u64) {
        if self.tick_ms != period_ms && host.set_tick_period_ms(period_ms).is_ok() {
            self.tick_ms = period_ms;
        }
    }

    /// Takes out the entry for `purpose`, if any.
    fn take(&mut self, purpose: &Purpose) -> Option<Entry> {
        let i = self.entries.iter().position(|e| e.purpose == *purpose)?;
        Some(self.entries.swap_remove(i))
    }
}

/// Adds a wake for `contexts` (none when nobody waits any more).
fn wake(wakes: &mut Vec<Wake>, contexts: Vec<u32>, answer: Option<KeyAnswer>) {
    if !contexts.is_empty() {
        wakes.push(Wake { contexts, answer });
    }
}
