//! What decisions keep per worker: verified tokens, refused signatures,
//! API-key answers, remote key sets and the revocation state.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::rc::Rc;

use crate::api_key::{Answer, Lookup, LookupFailure};
use crate::cache::{BoundedCache, QuickHash};
use crate::config::Config;
use crate::jwt::keys::KeySet;
use crate::jwt::refresh::RemoteKeys;
use crate::jwt::revocation::RevocationState;
use crate::jwt::shared_tokens::{self, ProviderId};
use crate::jwt::Claims;
use crate::policy::scopes::Grants;

/// A token that passed every check, as cached and forwarded.
#[derive(Debug)]
pub struct VerifiedToken {
    pub provider: usize,
    pub claims: Claims,
    /// Cache horizon (unix seconds): the token's `exp`, never later.
    pub expires_at: u64,
    /// The headers to write upstream (claim headers, payload header), rendered once.
    pub headers: Vec<(String, String)>,
    /// What the token may do: its scopes and its roles' permissions.
    pub grants: Grants,
}

/// How long a verified token stays cached at most (never past its `exp`):
/// a key the issuer replaces under the same `kid` stops being trusted
/// within this time.
pub const MAX_CACHE_S: u64 = 300;

/// How long a token whose signature did not verify is remembered, so that
/// replaying it costs a cache lookup instead of a signature check (the
/// remembered refusals are dropped whenever new keys are installed).
pub const REJECTED_CACHE_S: u64 = 60;

/// An API-key lookup answer as the decision uses it.
#[derive(Debug)]
pub struct CachedKey {
    pub lookup: Lookup,
    /// Until when (unix seconds, exclusive) the answer may be used.
    pub until: u64,
    /// A valid key's scopes, as grants.
    pub grants: Grants,
}

impl CachedKey {
    pub(super) fn new(lookup: Lookup, until: u64) -> CachedKey {
        let grants = match &lookup.answer {
            Answer::Valid(r) => Grants::from_scopes(&r.scopes),
            _ => Grants::default(),
        };
        CachedKey { lookup, until, grants }
    }
}

/// The auth service's answer (or failure) for a key hash, delivered to the
/// requests that waited for it.
#[derive(Debug)]
pub struct KeyAnswer {
    pub hash: String,
    pub result: Result<Lookup, LookupFailure>,
}

/// Where an API key's answer came from, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    /// This worker's cache.
    LocalHit,
    /// The cache shared by the workers.
    SharedHit,
    /// The answer to a lookup this request waited for.
    Answer,
    /// An expired valid answer, served because the service failed (stale-if-error).
    Stale,
    /// Nothing cached: a lookup is needed.
    Miss,
}

/// Per-worker state used by decisions.
#[derive(Debug)]
pub struct State {
    /// Verified tokens, keyed by the token itself: a hit costs one quick
    /// hash of the token and one comparison, no digest. Only tokens that
    /// passed verification are ever inserted, as [`QuickHash`] requires.
    pub cache: BoundedCache<Rc<VerifiedToken>, Rc<str>, QuickHash>,
    /// Tokens whose signature did not verify, with their provider (see
    /// [`REJECTED_CACHE_S`]), keyed by [`State::rejected_key`]: 8 bytes per
    /// entry, however large the tokens an attacker sends.
    pub rejected: BoundedCache<usize, u64>,
    /// The random key of [`State::rejected_key`].
    rejected_hasher: RandomState,
    /// API-key answers decoded on this worker (a copy of the shared cache's),
    /// keyed by the key itself: a hit needs no digest. (SipHash, not
    /// [`QuickHash`]: answers for keys of anyone's choosing are cached.)
    pub keys: BoundedCache<Rc<CachedKey>, Rc<str>>,
    /// One entry per provider (unused for providers without `remote_jwks`).
    pub remote: Vec<RemoteKeys>,
    /// Each provider's identity in the verified-token table the workers
    /// share ([`shared_tokens::provider_identity`]), computed once.
    pub shared_ids: Vec<ProviderId>,
    /// What the auth service's revocation feed said, as of the last good poll.
    pub revocation: RevocationState,
    /// Until when (host ms) that state counts as fresh; 0 before the first good poll.
    pub revocation_fresh_until_ms: u64,
}

impl State {
    pub fn new(cfg: &Config) -> State {
        State {
            cache: BoundedCache::with_hasher(cfg.token_cache_entries, QuickHash::default()),
            rejected: BoundedCache::new(cfg.token_cache_entries.clamp(1, 4096)),
            rejected_hasher: RandomState::new(),
            keys: BoundedCache::new(cfg.api_keys.as_ref().map_or(1, |k| k.local_cache_entries)),
            remote: cfg.providers.iter().map(|_| RemoteKeys::new()).collect(),
            shared_ids: cfg.providers.iter().map(shared_tokens::provider_identity).collect(),
            revocation: RevocationState::new(),
            revocation_fresh_until_ms: 0,
        }
    }

    /// A token's key in the refusal cache: SipHash under a key drawn at
    /// random per worker, so nobody can make a valid token collide with a
    /// refused one (and a chance collision, about one in 2^64 per lookup,
    /// would only refuse, never admit).
    pub fn rejected_key(&self, token: &str) -> u64 {
        self.rejected_hasher.hash_one(token)
    }

    /// Installs a freshly fetched key set. When a key id the old set had is
    /// gone (the issuer withdrew a key), cached tokens are dropped so that
    /// none signed by the withdrawn key is served from cache again.
    pub fn install_keys(&mut self, cfg: &Config, provider: usize, keys: KeySet, now_ms: u64) {
        let (Some(remote), Some(policy)) = (
            self.remote.get_mut(provider),
            cfg.providers.get(provider).and_then(|p| p.remote.as_ref()),
        ) else {
            return;
        };
        let withdrawn = remote
            .keys()
            .is_some_and(|old| old.iter().any(|k| k.kid().is_none_or(|kid| !keys.has_kid(kid))));
        remote.succeed(keys, now_ms, policy);
        if withdrawn {
            self.cache.clear();
        }
        // a new key may verify what the old set refused
        self.rejected.clear();
    }
}
