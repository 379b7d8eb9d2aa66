//! The decision for one request: route, client address, Origin, credential,
//! verification, scopes, verdict.
//!
//! The shell hands over the method, the `:path`, a [`Request`] to read facts
//! from (only the facts a decision needs are ever read) and the host's clock;
//! it gets back a [`Verdict`] to apply. All state a decision touches (the verified-token
//! cache and the remote key sets) lives in [`State`], owned by the shell's root
//! context, one per Envoy worker.

use std::rc::Rc;

use crate::apikey::{self, Answer, KeyRecord, Lookup, LookupFailure};
use crate::breaker::{Freshness, StaleIfError};
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use crate::cache::{token_key, BoundedCache, CacheKey, QuickHash};
use crate::config::{ApiKeys, Config, Context};
use crate::context::{self, Identity};
use crate::credentials::{self, Census, Kept};
use crate::ip;
use crate::jwks_refresh::{OnDemand, RemoteKeys};
use crate::jwt::{self, Claims, JwtError, Provider};
use crate::key_cache;
use crate::keys::KeySet;
use crate::origin::{self, Origin, OriginHeader};
use crate::path;
use crate::revocation::RevocationState;
use crate::routes::{OriginRule, Policy, Requirement};
use crate::scopes::{Grants, ScopeRequirement};
use crate::token_source::{self, QueryToken, TokenSource};

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
    fn new(lookup: Lookup, until: u64) -> CachedKey {
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

/// What a decision may read from the request, on demand.
pub trait Request {
    /// The first value of a request header (lower-case name).
    fn header(&mut self, name: &str) -> Option<String>;
    /// Every value of a request header (lower-case name), in order: the
    /// host's separate entries for repeated header lines.
    fn header_all(&mut self, name: &str) -> Vec<String> {
        self.header(name).into_iter().collect()
    }
    /// Calls `f(i, value)` for every value of every header `names[i]`
    /// (lower-case), in the request's order: one pass over the request.
    fn each_header(&mut self, names: &[String], f: &mut dyn FnMut(usize, String)) {
        for (i, name) in names.iter().enumerate() {
            for v in self.header_all(name) {
                f(i, v);
            }
        }
    }
    /// Every `x-forwarded-for` value, joined with `,` in order.
    fn forwarded_for(&mut self) -> Option<String>;
    /// The downstream peer address, as `ip:port` or `[ip6]:port`.
    fn peer(&mut self) -> Option<String>;
    /// A value of the store the workers share (proxy-wasm shared data).
    fn shared_data(&mut self, _name: &str) -> Option<Vec<u8>> {
        None
    }
    /// Whether the request carries a body (its headers did not end the
    /// stream). Read only for a CORS preflight to be passed upstream.
    fn has_body(&mut self) -> bool {
        false
    }
}

/// Why an API key is refused (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    /// Not in the configured format: refused without asking the service.
    Malformed,
    Unknown,
    Revoked,
    Expired,
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Deny<'c> {
    /// The route needs a token and none was found in the provider's sources.
    MissingToken,
    /// A token was found and refused.
    Token(JwtError),
    /// The path cannot be normalised safely.
    BadPath(&'static str),
    /// The same credential parameter appears twice, or cannot be decoded.
    AmbiguousCredential,
    /// No rule matched and there is no default rule.
    NoRule,
    /// The client address is not allowed, or cannot be established.
    IpNotAllowed,
    /// The browser Origin is not allowed (or missing / `null` where the rule refuses that).
    OriginNotAllowed,
    /// The token is valid but lacks the scopes the rule requires.
    InsufficientScope(&'c ScopeRequirement),
    /// A CORS preflight to be passed upstream unauthenticated carries a body
    /// (a browser's never does): it is refused rather than passed.
    PreflightWithBody,
    /// The token is valid but the auth service revoked it (jti, session,
    /// subject or everything).
    Revoked,
    /// The token's provider requires a revocation check and the revocation
    /// state is missing or stale (the auth service cannot be reached).
    RevocationUnavailable,
    /// The route needs an API key and none was found in `api_keys.sources`.
    MissingApiKey,
    /// The API key is refused.
    ApiKey(KeyRefusal),
    /// The API key could not be looked up (the auth service failed, or its
    /// circuit is open) and no stale answer may be served.
    KeyServiceUnavailable,
}

impl Deny<'_> {
    /// Every name [`Deny::name`] can return, for defining metrics up front.
    pub const ALL_NAMES: [&'static str; 35] = [
        "missing_api_key",
        "api_key_malformed",
        "api_key_unknown",
        "api_key_revoked",
        "api_key_expired",
        "key_service_unavailable",
        "preflight_with_body",
        "revoked",
        "revocation_unavailable",
        "missing_token",
        "bad_path",
        "ambiguous_credential",
        "no_rule",
        "ip_not_allowed",
        "origin_not_allowed",
        "insufficient_scope",
        "malformed_token",
        "token_too_large",
        "alg_none",
        "unsupported_alg",
        "alg_not_allowed",
        "crit_header",
        "unknown_issuer",
        "unknown_kid",
        "no_key",
        "keys_unavailable",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "issued_in_future",
        "missing_exp",
        "lifetime_too_long",
        "bad_audience",
        "missing_claim",
        "claim_mismatch",
    ];

    /// The metric name suffix: `denied.<this>`.
    pub fn name(self) -> &'static str {
        match self {
            Deny::MissingToken => "missing_token",
            Deny::Token(e) => e.name(),
            Deny::BadPath(_) => "bad_path",
            Deny::AmbiguousCredential => "ambiguous_credential",
            Deny::NoRule => "no_rule",
            Deny::IpNotAllowed => "ip_not_allowed",
            Deny::OriginNotAllowed => "origin_not_allowed",
            Deny::InsufficientScope(_) => "insufficient_scope",
            Deny::PreflightWithBody => "preflight_with_body",
            Deny::Revoked => "revoked",
            Deny::RevocationUnavailable => "revocation_unavailable",
            Deny::MissingApiKey => "missing_api_key",
            Deny::ApiKey(KeyRefusal::Malformed) => "api_key_malformed",
            Deny::ApiKey(KeyRefusal::Unknown) => "api_key_unknown",
            Deny::ApiKey(KeyRefusal::Revoked) => "api_key_revoked",
            Deny::ApiKey(KeyRefusal::Expired) => "api_key_expired",
            Deny::KeyServiceUnavailable => "key_service_unavailable",
        }
    }
}

/// Response headers (CORS) to add to an allowed request's response.
pub type ResponseHeaders = Vec<(&'static str, String)>;

/// What the shell must do with the request.
#[derive(Debug)]
pub enum Verdict<'c> {
    Allow(Allow<'c>),
    Deny(Deny<'c>),
    /// A CORS preflight from an allowed origin, answered at the edge: reply
    /// 204 with these headers.
    Preflight(ResponseHeaders),
    /// The provider's keys must be (re)fetched before a decision: wait for the
    /// fetch (`outbound::Outbound::await_keys`, which queues it when none is
    /// under way), then decide again with `may_await = false`. `dispatch`:
    /// this request started an on-demand fetch in the provider's schedule
    /// (counted against `min_refetch_interval_s`) rather than joined one.
    AwaitKeys {
        provider: usize,
        dispatch: bool,
    },
    /// The API key with this hash must be looked up at the auth service:
    /// wait for the answer, then decide again with it.
    AwaitLookup {
        hash: String,
    },
}

/// An allowed request and the edits to make before it goes upstream.
#[derive(Debug, Default)]
pub struct Allow<'c> {
    pub rule: &'c str,
    pub token: Option<Rc<VerifiedToken>>,
    /// The API key's answer, when an API key was the credential.
    pub key: Option<Rc<CachedKey>>,
    /// Credential headers to remove (every credential place the request
    /// has, except, with `forward_token: true`, those the rule reads): see
    /// [`credentials::ByPlace::names`].
    pub remove_headers: credentials::ByPlace<Option<&'c str>>,
    /// A new `cookie` header without the credential cookies (empty: remove it).
    pub cookie: Option<String>,
    /// A new `:path` without the credential query parameters.
    pub path: Option<String>,
    /// A CORS preflight passed upstream: it carries no credential, so every
    /// credential header is removed (`Config::credential_headers`).
    pub preflight: bool,
    /// Identity headers for the upstream (`context` configured), signed when a key is set.
    pub context: Vec<(String, String)>,
}

/// A verdict, whether the token cache was consulted (`Some(hit)`), the
/// SHA-256 of the credential when one was found (for a log fingerprint), and
/// the CORS headers for the answer, allowed or refused, to a browser origin
/// the rule accepts (so a browser app can read a 401 and refresh its token).
#[derive(Debug)]
pub struct Outcome<'c> {
    pub verdict: Verdict<'c>,
    pub cache: Option<bool>,
    pub credential: Option<Credential>,
    pub cors: Option<ResponseHeaders>,
    /// Where an API key's answer came from.
    pub key: Option<KeyUse>,
    /// A refusal the HTTP connection manager's settings cause (not the
    /// client): what the operator should change, to be logged once.
    pub notice: Option<&'static str>,
}

impl<'c> Outcome<'c> {
    fn deny(d: Deny<'c>) -> Outcome<'c> {
        Outcome::with(Verdict::Deny(d))
    }

    fn with(verdict: Verdict<'c>) -> Outcome<'c> {
        Outcome {
            verdict,
            cache: None,
            credential: None,
            cors: None,
            key: None,
            notice: None,
        }
    }
}

/// A short, non-reversible fingerprint of a credential for logs: the first
/// 8 hex digits of its SHA-256.
pub fn fingerprint(key: &CacheKey) -> String {
    key.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// The credential of a refused request, for its log line. It only ever
/// shows as its [`fingerprint`]; the digest is computed when a log asks for
/// it, so a refusal nobody logs costs no hashing.
pub struct Credential(String);

impl Credential {
    fn text(token: String) -> Credential {
        Credential(token)
    }

    /// The SHA-256 of the credential.
    pub fn digest(&self) -> CacheKey {
        token_key(&self.0)
    }

    /// See [`fingerprint`].
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.digest())
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({})", self.fingerprint())
    }
}

impl PartialEq for Credential {
    fn eq(&self, other: &Credential) -> bool {
        self.digest() == other.digest()
    }
}

/// A credential found in the request.
struct Found<'c> {
    token: String,
    source: &'c TokenSource,
}

/// What the Origin check leaves for after authentication.
struct OriginCheck {
    /// The origin, not in the rule's static list, that the caller's tenant may still allow.
    tenant_pending: Option<Origin>,
    cors: Option<ResponseHeaders>,
}

/// Decides one request. `now_ms` is the host clock in unix milliseconds.
/// `may_await`: the request may wait for a JWKS fetch or an API-key lookup
/// (false for a request woken after waiting). `answer`: the lookup outcome
/// a woken request waited for.
#[allow(clippy::too_many_arguments)]
pub fn decide<'c>(
    cfg: &'c Config,
    st: &mut State,
    method: &str,
    raw_path: &str,
    req: &mut dyn Request,
    now_ms: u64,
    may_await: bool,
    answer: Option<&KeyAnswer>,
) -> Outcome<'c> {
    let normalized = match path::normalize(raw_path) {
        Ok(n) => n,
        Err(e) => return Outcome::deny(Deny::BadPath(e.as_str())),
    };
    let selected = cfg.routes.select(method, &normalized.path);
    let rule = selected.name();
    let Some(policy) = selected.policy() else {
        return Outcome::deny(Deny::NoRule);
    };
    if let Some(ip) = &policy.ip {
        if let Err(notice) = client_permitted(ip, req) {
            return Outcome {
                notice,
                ..Outcome::deny(Deny::IpNotAllowed)
            };
        }
    }
    let origin = match &policy.origin {
        None => OriginCheck {
            tenant_pending: None,
            cors: None,
        },
        Some(o) => match check_origin(cfg, o, &policy.requirement, method, rule, req) {
            Ok(check) => check,
            Err(outcome) => return *outcome,
        },
    };
    let tenant_pending = origin.tenant_pending.as_ref();
    let mut outcome = authorize(
        cfg,
        st,
        policy,
        rule,
        method,
        raw_path,
        req,
        now_ms,
        may_await,
        answer,
        tenant_pending,
    );
    let cors_allowed = match &outcome.verdict {
        Verdict::Allow(_) => true,
        // an origin only a tenant could allow is not known to be allowed until the tenant check passed
        Verdict::Deny(d) => *d != Deny::OriginNotAllowed && tenant_pending.is_none(),
        Verdict::Preflight(_) | Verdict::AwaitKeys { .. } | Verdict::AwaitLookup { .. } => false,
    };
    if cors_allowed {
        outcome.cors = origin.cors;
    }
    outcome
}

/// The requirement and the checks after it: credential, tenant origins, scopes.
#[allow(clippy::too_many_arguments)]
fn authorize<'c>(
    cfg: &'c Config,
    st: &mut State,
    policy: &'c Policy,
    rule: &'c str,
    method: &str,
    raw_path: &str,
    req: &mut dyn Request,
    now_ms: u64,
    may_await: bool,
    answer: Option<&KeyAnswer>,
    tenant_pending: Option<&Origin>,
) -> Outcome<'c> {
    let providers = match &policy.requirement {
        Requirement::Public => {
            return Outcome::with(Verdict::Allow(Allow {
                rule,
                ..Allow::default()
            }))
        }
        Requirement::Jwt { providers } => providers,
        Requirement::ApiKey { stale_if_error_ms } => {
            let Some(keys) = &cfg.api_keys else {
                return Outcome::deny(Deny::NoRule);
            };
            let call = KeyCall {
                cfg,
                keys,
                policy,
                rule,
                method,
                raw_path,
                now_ms,
                may_await,
                stale: StaleIfError {
                    max_stale_ms: *stale_if_error_ms,
                },
            };
            return authorize_key(&call, st, req, answer, tenant_pending);
        }
    };

    let sources = providers
        .iter()
        .filter_map(|&i| cfg.providers.get(i))
        .flat_map(|p| p.sources.iter());
    let Ok(census) = census(cfg, raw_path, req) else {
        return Outcome::deny(Deny::AmbiguousCredential);
    };
    let found = match find_credential(sources, &census, cfg, raw_path) {
        Ok(Some(f)) => f,
        Ok(None) => return Outcome::deny(Deny::MissingToken),
        Err(d) => return Outcome::deny(d),
    };
    let (token, hit) = match authenticate(cfg, st, providers, &found, now_ms, may_await) {
        Ok(ok) => ok,
        Err(verdict) => {
            return Outcome {
                cache: Some(false),
                credential: Some(Credential::text(found.token)),
                ..Outcome::with(verdict)
            }
        }
    };
    let revoked = revocation_check(cfg, st, &token, now_ms);
    if let Some(d) = revoked.or_else(|| after_authentication(cfg, policy, &token, tenant_pending)) {
        return Outcome {
            cache: Some(hit),
            credential: Some(Credential::text(found.token)),
            ..Outcome::deny(d)
        };
    }
    let mut allowed = allow(cfg, rule, providers, token, &census, raw_path);
    if let (Some(ctx), Some(t)) = (&cfg.context, &allowed.token) {
        let upstream_path = allowed.path.as_deref().unwrap_or(raw_path);
        allowed.context = context_headers(ctx, t, method, upstream_path, now_ms / 1000);
    }
    Outcome {
        cache: Some(hit),
        ..Outcome::with(Verdict::Allow(allowed))
    }
}

/// The client address check; an address that cannot be established fails.
/// `Err` carries the operator's notice when the HCM's settings are the cause.
fn client_permitted(policy: &ip::IpPolicy, req: &mut dyn Request) -> Result<(), Option<&'static str>> {
    match client_address(req, policy.trusted_hops, policy.envoy_appends) {
        Ok(addr) if policy.permits(addr) => Ok(()),
        Ok(_) => Err(None),
        Err(e) => Err(e.operator_hint()),
    }
}

/// The client address by the configured X-Forwarded-For rules, if it can be established.
fn client_address(
    req: &mut dyn Request,
    trusted_hops: u8,
    envoy_appends: bool,
) -> Result<std::net::IpAddr, ip::ClientAddrError> {
    let peer = req.peer();
    let xff = if trusted_hops == 0 { None } else { req.forwarded_for() };
    ip::client_address(peer.as_deref(), xff.as_deref(), trusted_hops, envoy_appends)
}

/// What an API-key decision needs from the configuration and the request line.
struct KeyCall<'c, 'r> {
    cfg: &'c Config,
    keys: &'c ApiKeys,
    policy: &'c Policy,
    rule: &'c str,
    method: &'r str,
    raw_path: &'r str,
    now_ms: u64,
    may_await: bool,
    stale: StaleIfError,
}

/// An API-key requirement: find the key, check its format, find its answer
/// (delivered, this worker's cache, the shared cache, or a stale one when
/// the service failed) or ask for a lookup, then apply the key's record.
fn authorize_key<'c>(
    call: &KeyCall<'c, '_>,
    st: &mut State,
    req: &mut dyn Request,
    answer: Option<&KeyAnswer>,
    pending_origin: Option<&Origin>,
) -> Outcome<'c> {
    let Ok(census) = census(call.cfg, call.raw_path, req) else {
        return Outcome::deny(Deny::AmbiguousCredential);
    };
    let found = match find_credential(call.keys.sources.iter(), &census, call.cfg, call.raw_path) {
        Ok(Some(f)) => f,
        Ok(None) => return Outcome::deny(Deny::MissingApiKey),
        Err(d) => return Outcome::deny(d),
    };
    // No credential place goes upstream: the key's, and any copy of it.
    let strip = census.strip(&call.cfg.credential_places, call.raw_path, |_| false);
    // A request not allowed carries its credential, for the log's fingerprint.
    let mut notice = None;
    let outcome = |verdict: Verdict<'c>, key, notice| Outcome {
        credential: (!matches!(verdict, Verdict::Allow(_))).then(|| Credential::text(found.token.clone())),
        key,
        notice,
        ..Outcome::with(verdict)
    };
    if !call.keys.format.accepts(&found.token) {
        return outcome(Verdict::Deny(Deny::ApiKey(KeyRefusal::Malformed)), None, None);
    }
    let now = call.now_ms / 1000;
    // The key's hash is only computed off the hot path (for a woken request,
    // on a local miss), and at most once.
    let hash_cell = std::cell::OnceCell::new();
    let hash = || hash_cell.get_or_init(|| apikey::hex(&token_key(&found.token))).as_str();
    let delivered = answer.filter(|a| a.hash == hash()).map(|a| &a.result);
    let (entry, used) = if let Some(Ok(lookup)) = delivered {
        let until = key_cache::cache_until(lookup, now, call.keys.max_cache_ttl_s, call.keys.negative_cache_ttl_s);
        let entry = Rc::new(CachedKey::new(lookup.clone(), until));
        if until > now {
            st.keys
                .insert(Rc::from(found.token.as_str()), Rc::clone(&entry), until, now);
        }
        (entry, KeyUse::Answer)
    } else if let Some(e) = st.keys.get(found.token.as_str(), now) {
        (Rc::clone(e), KeyUse::LocalHit)
    } else {
        let hash = hash().to_owned();
        let name = key_cache::entry_name(&call.cfg.generation, &hash, call.keys.shared_cache_slots);
        let shared = req.shared_data(&name).and_then(|b| key_cache::decode_entry(&b, &hash));
        match shared {
            Some((lookup, until)) if until > now => {
                let entry = Rc::new(CachedKey::new(lookup, until));
                st.keys
                    .insert(Rc::from(found.token.as_str()), Rc::clone(&entry), until, now);
                (entry, KeyUse::SharedHit)
            }
            stale => {
                if delivered.is_none() && call.may_await {
                    return outcome(Verdict::AwaitLookup { hash }, Some(KeyUse::Miss), None);
                }
                // The lookup failed (or cannot be made): only a valid answer
                // within the route's stale-if-error window may stand in.
                let usable = stale.filter(|(lookup, until)| {
                    matches!(lookup.answer, Answer::Valid(_))
                        && call.stale.freshness(until.saturating_mul(1000), call.now_ms) == Freshness::StaleIfError
                });
                match usable {
                    Some((lookup, until)) => (Rc::new(CachedKey::new(lookup, until)), KeyUse::Stale),
                    None => return outcome(Verdict::Deny(Deny::KeyServiceUnavailable), None, None),
                }
            }
        }
    };
    let verdict = match key_verdict(call, &entry, req, pending_origin, now, &mut notice) {
        Some(d) => Verdict::Deny(d),
        None => {
            let context = match (&call.cfg.context, &entry.lookup.answer) {
                (Some(ctx), Answer::Valid(record)) => {
                    let path = strip.path.as_deref().unwrap_or(call.raw_path);
                    key_context_headers(ctx, record, &entry.grants, call.method, path, now)
                }
                _ => Vec::new(),
            };
            Verdict::Allow(Allow {
                rule: call.rule,
                remove_headers: strip.headers,
                cookie: strip.cookie,
                path: strip.path,
                key: Some(entry),
                context,
                ..Allow::default()
            })
        }
    };
    outcome(verdict, Some(used), notice)
}

/// Applies a key's answer: refuses a key that is not valid, and applies a
/// valid key's expiry, IP allowlist, origins and scopes. `notice`: see
/// [`Outcome::notice`].
fn key_verdict<'c>(
    call: &KeyCall<'c, '_>,
    entry: &CachedKey,
    req: &mut dyn Request,
    pending_origin: Option<&Origin>,
    now: u64,
    notice: &mut Option<&'static str>,
) -> Option<Deny<'c>> {
    let record: &KeyRecord = match &entry.lookup.answer {
        Answer::Valid(r) => r,
        Answer::Unknown => return Some(Deny::ApiKey(KeyRefusal::Unknown)),
        Answer::Revoked { .. } => return Some(Deny::ApiKey(KeyRefusal::Revoked)),
        Answer::Expired { .. } => return Some(Deny::ApiKey(KeyRefusal::Expired)),
    };
    if record.expires_at.is_some_and(|exp| exp <= now) {
        return Some(Deny::ApiKey(KeyRefusal::Expired));
    }
    if !record.ip_allowlist.is_empty() {
        // the rule's own client-address rules when it has them
        let (hops, appends) = call
            .policy
            .ip
            .as_ref()
            .map_or((call.keys.trusted_hops, call.keys.envoy_appends), |p| {
                (p.trusted_hops, p.envoy_appends)
            });
        match client_address(req, hops, appends) {
            Ok(a) if record.ip_allowlist.contains(a) => {}
            Ok(_) => return Some(Deny::IpNotAllowed),
            Err(e) => {
                *notice = e.operator_hint();
                return Some(Deny::IpNotAllowed);
            }
        }
    }
    if pending_origin.is_some_and(|o| !record.allowed_origins.matches(o)) {
        return Some(Deny::OriginNotAllowed);
    }
    match &call.policy.scopes {
        Some(required) if !required.is_met(&entry.grants) => Some(Deny::InsufficientScope(required)),
        _ => None,
    }
}

/// The identity headers of an API-key request.
fn key_context_headers(
    ctx: &Context,
    record: &KeyRecord,
    grants: &Grants,
    method: &str,
    path: &str,
    now: u64,
) -> Vec<(String, String)> {
    let id = Identity {
        method: "api_key",
        subject: &record.subject,
        tenant: Some(&record.tenant),
        scopes: grants.as_slice(),
        key_id: Some(&record.key_id),
        token_id: None,
    };
    render_context(ctx, &id, method, path, now)
}

/// The Origin check before authentication: answers CORS preflights, refuses
/// origins the rule does not allow, and leaves tenant origins for later. The
/// `Err` is the request's final outcome (a refusal or a preflight answer).
fn check_origin<'c>(
    cfg: &'c Config,
    o: &'c OriginRule,
    requirement: &Requirement,
    method: &str,
    rule: &'c str,
    req: &mut dyn Request,
) -> Result<OriginCheck, Box<Outcome<'c>>> {
    let header = req.header("origin");
    let denied = || Box::new(Outcome::deny(Deny::OriginNotAllowed));
    // An API key brings its own allowed origins: they decide, after the lookup.
    let key_decides = matches!(requirement, Requirement::ApiKey { .. });
    let origin = match origin::classify(header.as_deref()) {
        OriginHeader::Missing if o.allow_missing => {
            return Ok(OriginCheck {
                tenant_pending: None,
                cors: None,
            })
        }
        // a key's allowed_origins never match `null` (and a sandboxed page can send it on purpose)
        OriginHeader::Null if o.allow_null && !key_decides => {
            return Ok(OriginCheck {
                tenant_pending: None,
                cors: None,
            })
        }
        OriginHeader::Present(origin) => origin,
        OriginHeader::Missing | OriginHeader::Null | OriginHeader::Invalid => return Err(denied()),
    };
    let sent = header.as_deref().unwrap_or_default();
    let statically = o.allowed.matches(&origin);
    let any_tenant = || o.tenant_claim.is_some() && cfg.tenants.values().any(|list| list.matches(&origin));
    if let Some(c) = &o.cors {
        // Access-Control-Request-Method is read only for OPTIONS requests.
        let requested = if method == "OPTIONS" {
            req.header("access-control-request-method")
        } else {
            None
        };
        if origin::is_preflight(method, Some(sent), requested.as_deref()) {
            // A preflight carries no credentials: it is answered (or passed) on the origin alone.
            let requested = requested.unwrap_or_default();
            if !(statically || any_tenant()) || !c.cors.allows_method(&requested) {
                return Err(denied());
            }
            let verdict = if c.answer_preflight {
                Verdict::Preflight(c.cors.preflight_headers(sent))
            } else if req.has_body() {
                // a browser's preflight never has one: refused rather than passed unauthenticated
                Verdict::Deny(Deny::PreflightWithBody)
            } else {
                Verdict::Allow(Allow {
                    rule,
                    preflight: true,
                    ..Allow::default()
                })
            };
            return Err(Box::new(Outcome::with(verdict)));
        }
    }
    if !statically && o.tenant_claim.is_none() && !key_decides {
        return Err(denied());
    }
    let cors = o
        .cors
        .as_ref()
        .filter(|c| c.answer_preflight)
        .map(|c| c.cors.response_headers(sent));
    Ok(OriginCheck {
        tenant_pending: (!statically || key_decides).then_some(origin),
        cors,
    })
}

/// The identity headers of a JWT request.
fn context_headers(ctx: &Context, t: &VerifiedToken, method: &str, path: &str, now: u64) -> Vec<(String, String)> {
    let id = Identity {
        method: "jwt",
        subject: t.claims.str("sub").unwrap_or_default(),
        tenant: t.claims.str(&ctx.tenant_claim),
        scopes: t.grants.as_slice(),
        key_id: None,
        token_id: t.claims.str("jti"),
    };
    render_context(ctx, &id, method, path, now)
}

/// Renders an identity as context headers, signed over the method and the
/// path as they go upstream when a signing key is configured.
fn render_context(ctx: &Context, id: &Identity, method: &str, path: &str, now: u64) -> Vec<(String, String)> {
    let signing = ctx.signing_key.as_deref().map(|key| (key, now, method, path));
    context::render(&ctx.headers, id, signing)
}

/// The revocation check for providers that require it, from the local state
/// (never a call): cached tokens are checked on every request too.
fn revocation_check<'c>(cfg: &Config, st: &State, token: &VerifiedToken, now_ms: u64) -> Option<Deny<'c>> {
    if !cfg.providers.get(token.provider).is_some_and(|p| p.check_revocation) {
        return None;
    }
    if now_ms >= st.revocation_fresh_until_ms {
        return Some(Deny::RevocationUnavailable);
    }
    let tenant_claim = cfg.auth_service.as_ref().map_or("tenant", |a| a.tenant_claim.as_str());
    st.revocation
        .is_revoked(&token.claims, tenant_claim)
        .then_some(Deny::Revoked)
}

/// Checks that need the verified token: the tenant's origins and the scopes.
fn after_authentication<'c>(
    cfg: &Config,
    policy: &'c Policy,
    token: &VerifiedToken,
    tenant_pending: Option<&Origin>,
) -> Option<Deny<'c>> {
    if let Some(origin) = tenant_pending {
        let claim = policy.origin.as_ref().and_then(|o| o.tenant_claim.as_deref());
        let tenant = claim.and_then(|c| token.claims.str(c));
        if !tenant
            .and_then(|t| cfg.tenants.get(t))
            .is_some_and(|list| list.matches(origin))
        {
            return Some(Deny::OriginNotAllowed);
        }
    }
    match &policy.scopes {
        Some(required) if !required.is_met(&token.grants) => Some(Deny::InsufficientScope(required)),
        _ => None,
    }
}

/// Verifies the token (or finds it in the cache). `Ok((token, cache_hit))`.
// The error is the request's final verdict, built once per refused request.
#[allow(clippy::result_large_err)]
fn authenticate<'c>(
    cfg: &'c Config,
    st: &mut State,
    providers: &[usize],
    found: &Found<'c>,
    now_ms: u64,
    may_await: bool,
) -> Result<(Rc<VerifiedToken>, bool), Verdict<'c>> {
    let now = now_ms / 1000;
    let accepts = |p: &Provider| p.sources.iter().any(|s| s == found.source);
    if let Some(v) = st.cache.get(found.token.as_str(), now) {
        if providers.contains(&v.provider) && cfg.providers.get(v.provider).is_some_and(accepts) {
            return Ok((Rc::clone(v), true));
        }
    }
    let deny = |e| Verdict::Deny(Deny::Token(e));
    let rejected_key = st.rejected_key(&found.token);
    if let Some(&pi) = st.rejected.get(&rejected_key, now) {
        if providers.contains(&pi) && cfg.providers.get(pi).is_some_and(accepts) {
            return Err(deny(JwtError::BadSignature));
        }
    }
    let t = jwt::inspect(&found.token, cfg.max_token_bytes).map_err(deny)?;
    let pi = providers
        .iter()
        .copied()
        .find(|&i| {
            cfg.providers
                .get(i)
                .is_some_and(|p| Some(p.issuer.as_str()) == t.claims.iss() && accepts(p))
        })
        .ok_or(deny(JwtError::UnknownIssuer))?;
    let p = cfg.providers.get(pi).ok_or(deny(JwtError::UnknownIssuer))?;
    jwt::check_claims(&t.claims, p, now).map_err(deny)?;

    let remote = p.remote.as_ref().zip(st.remote.get_mut(pi));
    let result = match &remote {
        Some((_, r)) => match r.keys() {
            Some(keys) => jwt::verify_signature(&t, p, &[&p.static_keys, keys]),
            None => match jwt::verify_signature(&t, p, &[&p.static_keys]) {
                Err(JwtError::UnknownKid | JwtError::NoKey) => Err(JwtError::KeysUnavailable),
                other => other,
            },
        },
        None => jwt::verify_signature(&t, p, &[&p.static_keys]),
    };
    match result {
        Ok(()) => {}
        Err(e @ (JwtError::UnknownKid | JwtError::KeysUnavailable)) => {
            if let (true, Some((policy, r))) = (may_await, remote) {
                match r.on_demand(now_ms, policy) {
                    OnDemand::Join => {
                        return Err(Verdict::AwaitKeys {
                            provider: pi,
                            dispatch: false,
                        })
                    }
                    OnDemand::Start => {
                        r.start_on_demand(now_ms, policy);
                        return Err(Verdict::AwaitKeys {
                            provider: pi,
                            dispatch: true,
                        });
                    }
                    OnDemand::RateLimited => {}
                }
            }
            return Err(deny(e));
        }
        Err(JwtError::BadSignature) => {
            let until = now.saturating_add(REJECTED_CACHE_S);
            st.rejected.insert(rejected_key, pi, until, now);
            return Err(deny(JwtError::BadSignature));
        }
        Err(e) => return Err(deny(e)),
    }

    let mut headers = Vec::with_capacity(p.claim_headers.len() + 1);
    for ch in &p.claim_headers {
        if let Some(value) = t.claims.get(&ch.claim).and_then(jwt::claim_header_value) {
            headers.push((ch.header.clone(), value));
        }
    }
    if let Some(h) = &p.payload_header {
        headers.push((h.clone(), t.payload_b64.to_owned()));
    }
    let grants = Grants::from_claims(&t.claims, &p.scopes, &cfg.roles);
    let horizon = now.saturating_add(MAX_CACHE_S);
    let expires_at = t.claims.exp.map_or(horizon, |exp| exp.min(horizon));
    let verified = Rc::new(VerifiedToken {
        provider: pi,
        claims: t.claims,
        expires_at,
        headers,
        grants,
    });
    st.cache
        .insert(Rc::from(found.token.as_str()), Rc::clone(&verified), expires_at, now);
    Ok((verified, false))
}

/// An allowed JWT request: every credential place is emptied before it goes
/// upstream, except, with the provider's `forward_token: true`, the header
/// and cookie places the rule reads. A query-parameter credential always goes.
fn allow<'c>(
    cfg: &'c Config,
    rule: &'c str,
    providers: &[usize],
    token: Rc<VerifiedToken>,
    census: &Census,
    raw_path: &str,
) -> Allow<'c> {
    let forward = cfg.providers.get(token.provider).is_some_and(|p| p.forward_token);
    let reads = |kept: Kept<'_>| {
        providers
            .iter()
            .filter_map(|&i| cfg.providers.get(i))
            .flat_map(|p| p.sources.iter())
            .any(|s| match (s, kept) {
                (TokenSource::Header { name, .. }, Kept::Header(h)) => name.eq_ignore_ascii_case(h),
                (TokenSource::Cookie { name }, Kept::Cookie(c)) => name.eq_ignore_ascii_case(c),
                _ => false,
            })
    };
    let strip = census.strip(&cfg.credential_places, raw_path, |k| forward && reads(k));
    Allow {
        rule,
        token: Some(token),
        remove_headers: strip.headers,
        cookie: strip.cookie,
        path: strip.path,
        ..Allow::default()
    }
}

/// Every credential place of the configuration in the request, at most one
/// credential among them ([`credentials::census`]).
fn census(cfg: &Config, raw_path: &str, req: &mut dyn Request) -> Result<Census, credentials::Ambiguous> {
    credentials::census(&cfg.credential_places, raw_path, &mut |names, f| {
        req.each_header(names, f)
    })
}

/// Looks for a credential in `sources`, in order (for a JWT: providers in
/// the rule's order, each provider's sources in its order); the first one
/// present wins. The request's places were read by [`census`].
fn find_credential<'c>(
    sources: impl Iterator<Item = &'c TokenSource> + Clone,
    census: &Census,
    cfg: &Config,
    raw_path: &str,
) -> Result<Option<Found<'c>>, Deny<'c>> {
    for (i, source) in sources.clone().enumerate() {
        // a source two providers share is read once (no allocation: the list is short)
        if sources.clone().take(i).any(|earlier| earlier == source) {
            continue;
        }
        let token = match source {
            TokenSource::Header { name, scheme } => census
                .header(&cfg.credential_places, name)
                .and_then(|v| token_source::from_header_value(v, scheme.as_deref()))
                .map(str::to_owned),
            TokenSource::Cookie { name } => census
                .cookie_header()
                .and_then(|c| token_source::from_cookie_header(c, name))
                .map(str::to_owned),
            TokenSource::Query { name } => match token_source::from_query(raw_path, name) {
                QueryToken::Absent => None,
                QueryToken::Found { token, .. } => Some(token.into_owned()),
                // the census refused these already
                QueryToken::Duplicate | QueryToken::Malformed => return Err(Deny::AmbiguousCredential),
            },
        };
        if let Some(token) = token {
            return Ok(Some(Found { token, source }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// Every refusal, listed through exhaustive matches so that a new variant
    /// fails to compile here until it is listed (and so gets a metric).
    fn every_deny() -> Vec<Deny<'static>> {
        use JwtError as J;
        let jwt = [
            J::Malformed,
            J::TooLarge,
            J::AlgNone,
            J::UnsupportedAlg,
            J::AlgNotAllowed,
            J::CritHeader,
            J::UnknownIssuer,
            J::UnknownKid,
            J::NoKey,
            J::KeysUnavailable,
            J::BadSignature,
            J::Expired,
            J::NotYetValid,
            J::IssuedInFuture,
            J::MissingExpiration,
            J::LifetimeTooLong,
            J::BadAudience,
            J::MissingClaim,
            J::ClaimMismatch,
        ];
        for e in jwt {
            match e {
                J::Malformed
                | J::TooLarge
                | J::AlgNone
                | J::UnsupportedAlg
                | J::AlgNotAllowed
                | J::CritHeader
                | J::UnknownIssuer
                | J::UnknownKid
                | J::NoKey
                | J::KeysUnavailable
                | J::BadSignature
                | J::Expired
                | J::NotYetValid
                | J::IssuedInFuture
                | J::MissingExpiration
                | J::LifetimeTooLong
                | J::BadAudience
                | J::MissingClaim
                | J::ClaimMismatch => {}
            }
        }
        static SCOPES: std::sync::OnceLock<ScopeRequirement> = std::sync::OnceLock::new();
        let scopes = SCOPES.get_or_init(|| ScopeRequirement::AnyOf(vec!["a".into()]));
        let mut all: Vec<Deny<'static>> = jwt.into_iter().map(Deny::Token).collect();
        all.extend([
            Deny::MissingToken,
            Deny::BadPath("x"),
            Deny::AmbiguousCredential,
            Deny::NoRule,
            Deny::IpNotAllowed,
            Deny::OriginNotAllowed,
            Deny::InsufficientScope(scopes),
            Deny::PreflightWithBody,
            Deny::Revoked,
            Deny::RevocationUnavailable,
            Deny::MissingApiKey,
            Deny::ApiKey(KeyRefusal::Malformed),
            Deny::ApiKey(KeyRefusal::Unknown),
            Deny::ApiKey(KeyRefusal::Revoked),
            Deny::ApiKey(KeyRefusal::Expired),
            Deny::KeyServiceUnavailable,
        ]);
        for d in &all {
            match d {
                Deny::MissingToken
                | Deny::Token(_)
                | Deny::BadPath(_)
                | Deny::AmbiguousCredential
                | Deny::NoRule
                | Deny::IpNotAllowed
                | Deny::OriginNotAllowed
                | Deny::InsufficientScope(_)
                | Deny::PreflightWithBody
                | Deny::Revoked
                | Deny::RevocationUnavailable
                | Deny::MissingApiKey
                | Deny::ApiKey(
                    KeyRefusal::Malformed | KeyRefusal::Unknown | KeyRefusal::Revoked | KeyRefusal::Expired,
                )
                | Deny::KeyServiceUnavailable => {}
            }
        }
        all
    }

    #[test]
    fn every_refusal_has_a_listed_metric_name() {
        let all = every_deny();
        let names: std::collections::HashSet<&str> = all.iter().map(|d| d.name()).collect();
        let listed: std::collections::HashSet<&str> = Deny::ALL_NAMES.iter().copied().collect();
        assert_eq!(names, listed, "Deny::ALL_NAMES and Deny::name disagree");
        assert_eq!(listed.len(), Deny::ALL_NAMES.len(), "a name is listed twice");
    }
}
