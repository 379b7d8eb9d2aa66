//! The JWT branch: the token found in the rule's providers' sources,
//! verified (or found in the cache), checked against the revocation state,
//! the tenant's origins and the scopes.

use std::rc::Rc;

use crate::cache::{token_key, CacheKey};
use crate::config::{Config, Context};
use crate::context::Identity;
use crate::credentials::{Census, Kept};
use crate::jwt::keys::{KeyFingerprint, KeySet};
use crate::jwt::refresh::OnDemand;
use crate::jwt::shared_tokens::{self, Entry};
use crate::jwt::{self, Inspected, JwtError, Provider};
use crate::policy::caller::Caller;
use crate::policy::scopes::Grants;
use crate::token_source::TokenSource;

use super::request::{census, find_credential, Credential, Found};
use super::state::{MAX_CACHE_S, REJECTED_CACHE_S};
use super::{render_context, Allow, Ctx, Deny, Outcome, Request, Signature, State, Verdict, VerifiedToken};

/// A JWT requirement: find the token in the rule's providers' sources,
/// verify it (or find it in the cache), check revocation, the tenant's
/// origins and the scopes, and allow it with its identity headers.
pub(super) fn authorize_jwt<'c>(
    cx: &Ctx<'c, '_>,
    providers: &'c [usize],
    st: &mut State,
    req: &mut dyn Request,
) -> Outcome<'c> {
    let cfg = cx.cfg;
    let Ok(census) = census(cfg, cx.attempt.path, req) else {
        return Outcome::deny(Deny::AmbiguousCredential);
    };
    let found = match find_credential(sources(cfg, providers), &census, cfg, cx.attempt.path) {
        Ok(Some(f)) => f,
        Ok(None) => return Outcome::deny(Deny::MissingToken),
        Err(d) => return Outcome::deny(d),
    };
    with_token(cx, providers, &census, found, st, req)
}

/// The token sources of the rule's providers, in the rule's order.
pub(super) fn sources<'c>(cfg: &'c Config, providers: &'c [usize]) -> impl Iterator<Item = &'c TokenSource> + Clone {
    providers
        .iter()
        .filter_map(|&i| cfg.providers.get(i))
        .flat_map(|p| p.sources.iter())
}

/// The JWT requirement once the request's one credential, `found`, was
/// found in the providers' sources.
pub(super) fn with_token<'c>(
    cx: &Ctx<'c, '_>,
    providers: &[usize],
    census: &Census,
    found: Found<'c>,
    st: &mut State,
    req: &mut dyn Request,
) -> Outcome<'c> {
    let cfg = cx.cfg;
    let mut signature = None;
    let (token, hit) = match authenticate(cx, st, providers, &found, req, &mut signature) {
        Ok(ok) => ok,
        Err(verdict) => {
            return Outcome {
                cache: Some(false),
                credential: Some(Credential::text(found.token)),
                signature,
                ..Outcome::with(verdict)
            }
        }
    };
    let revoked = revocation_check(cfg, st, &token, cx.attempt.now_ms);
    if let Some(d) = revoked.or_else(|| after_authentication(cx, &token)) {
        return Outcome {
            cache: Some(hit),
            credential: Some(Credential::text(found.token)),
            signature,
            ..Outcome::deny(d)
        };
    }
    let mut allowed = allow(cx, providers, token, census);
    if let Some(t) = &allowed.token {
        let caller = cfg
            .providers
            .get(t.provider)
            .map(|p| p.machine_tokens.classify(&t.claims));
        allowed.machine = matches!(caller, Some(Caller::Machine(_)));
        if let Some(ctx) = &cfg.context {
            let upstream_path = allowed.path.as_deref().unwrap_or(cx.attempt.path);
            let (method, now) = (cx.attempt.method, cx.attempt.now_ms / 1000);
            allowed.context = context_headers(ctx, caller, t, method, upstream_path, now);
        }
    }
    Outcome {
        cache: Some(hit),
        signature,
        ..Outcome::with(Verdict::Allow(allowed))
    }
}

/// The identity headers of a JWT request.
/// A machine's token says `method: client` and its client id as the subject.
fn context_headers(
    ctx: &Context,
    caller: Option<Caller<'_>>,
    t: &VerifiedToken,
    method: &str,
    path: &str,
    now: u64,
) -> Vec<(String, String)> {
    let (auth_method, subject) = match caller {
        Some(Caller::Machine(client)) => ("client", client),
        _ => ("jwt", t.claims.str("sub").unwrap_or_default()),
    };
    let id = Identity {
        method: auth_method,
        subject,
        tenant: t.claims.str_at(&ctx.tenant_claim),
        scopes: t.grants.as_slice(),
        key_id: None,
        token_id: t.claims.str("jti"),
    };
    render_context(ctx, &id, method, path, now)
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
    let tenant = match &cfg.auth_service {
        Some(a) => token.claims.str_at(&a.tenant_claim),
        None => token.claims.str("tenant"),
    };
    st.revocation
        .is_revoked_for(&token.claims, tenant)
        .then_some(Deny::Revoked)
}

/// Checks that need the verified token: the tenant's origins and the scopes.
fn after_authentication<'c>(cx: &Ctx<'c, '_>, token: &VerifiedToken) -> Option<Deny<'c>> {
    let (cfg, policy) = (cx.cfg, cx.policy);
    if let Some(origin) = cx.tenant_pending {
        let claim = policy.origin.as_ref().and_then(|o| o.tenant_claim.as_ref());
        let tenant = claim.and_then(|c| token.claims.str_at(c));
        if !tenant
            .and_then(|t| cfg.tenants.get(t))
            .is_some_and(|list| list.matches(origin))
        {
            return Some(Deny::OriginNotAllowed);
        }
    }
    if let Some(required) = &policy.caller {
        let caller = cfg
            .providers
            .get(token.provider)
            .map(|p| p.machine_tokens.classify(&token.claims));
        if !caller.is_some_and(|c| required.admits(c)) {
            return Some(Deny::CallerNotAllowed);
        }
    }
    match &policy.scopes {
        Some(required) if !required.is_met(&token.grants) => Some(Deny::InsufficientScope(required)),
        _ => None,
    }
}

/// Verifies the token (or finds it in the cache). `Ok((token, cache_hit))`.
/// `signature`: how its signature was established, if it got that far.
// The error is the request's final verdict, built once per refused request.
#[allow(clippy::result_large_err)]
fn authenticate<'c>(
    cx: &Ctx<'c, '_>,
    st: &mut State,
    providers: &[usize],
    found: &Found<'c>,
    req: &mut dyn Request,
    signature: &mut Option<Signature>,
) -> Result<(Rc<VerifiedToken>, bool), Verdict<'c>> {
    let (cfg, now_ms) = (cx.cfg, cx.attempt.now_ms);
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

    let horizon = now.saturating_add(MAX_CACHE_S);
    let mut expires_at = t.claims.exp.map_or(horizon, |exp| exp.min(horizon));
    // The table the workers share, when configured: its slot is read once
    // per token new to this worker, never on a hit in the worker's cache.
    let shared = (cfg.token_cache_shared_slots > 0).then(|| {
        let digest = token_key(&found.token);
        (shared_tokens::slot_name(&digest, cfg.token_cache_shared_slots), digest)
    });
    let vouched = shared
        .as_ref()
        .and_then(|(name, digest)| shared_hit(st, req, name, digest, pi, p, &t, now));
    if let Some(until) = vouched {
        *signature = Some(Signature::Shared);
        expires_at = until;
    } else {
        let key = verify(cx, st, pi, p, &t, rejected_key, signature)?;
        if let (Some((name, digest)), Some(provider)) = (&shared, st.shared_ids.get(pi)) {
            if expires_at > now {
                let entry = Entry {
                    digest: *digest,
                    provider: *provider,
                    key,
                    horizon: expires_at,
                };
                req.share(name, &entry.encode());
            }
        }
    }

    let mut headers = Vec::with_capacity(p.claim_headers.len() + 1);
    for ch in &p.claim_headers {
        if let Some(value) = t.claims.at(&ch.claim).and_then(jwt::claim_header_value) {
            headers.push((ch.header.clone(), value));
        }
    }
    if let Some(h) = &p.payload_header {
        headers.push((h.clone(), t.payload_b64.to_owned()));
    }
    let grants = Grants::from_claims(&t.claims, &p.scopes, &cfg.roles);
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

/// The horizon until which the shared table vouches for the signature of
/// `t` (whose claims passed): the slot `name` holds this token's entry for
/// provider `pi`, and the key that verified it is still one the worker
/// would try for it. `None` (verify the signature) otherwise.
#[allow(clippy::too_many_arguments)]
fn shared_hit(
    st: &State,
    req: &mut dyn Request,
    name: &str,
    digest: &CacheKey,
    pi: usize,
    p: &Provider,
    t: &Inspected<'_>,
    now: u64,
) -> Option<u64> {
    let bytes = req.shared_data(name)?;
    let provider = st.shared_ids.get(pi)?;
    let (key, until) = shared_tokens::vouched(&bytes, digest, provider, t.claims.exp, now, MAX_CACHE_S)?;
    let remote = p.remote.as_ref().and(st.remote.get(pi)).and_then(|r| r.keys());
    let held = match remote {
        Some(keys) => jwt::holds_key(t, p, &[&p.static_keys, keys], &key),
        None => jwt::holds_key(t, p, &[&p.static_keys], &key),
    };
    held.then_some(until)
}

/// Verifies the signature of `t` (whose claims passed) with the provider's
/// keys: the fingerprint of the key that verified it, or the request's
/// verdict (a refusal, or a wait for the provider's keys).
#[allow(clippy::result_large_err)]
fn verify<'c>(
    cx: &Ctx<'c, '_>,
    st: &mut State,
    pi: usize,
    p: &Provider,
    t: &Inspected<'_>,
    rejected_key: u64,
    signature: &mut Option<Signature>,
) -> Result<KeyFingerprint, Verdict<'c>> {
    let (now_ms, now) = (cx.attempt.now_ms, cx.attempt.now_ms / 1000);
    let deny = |e| Verdict::Deny(Deny::Token(e));
    let check = |sets: &[&KeySet]| jwt::verify_signature(t, p, sets);
    let remote = p.remote.as_ref().zip(st.remote.get_mut(pi));
    let result = match &remote {
        Some((_, r)) => match r.keys() {
            Some(keys) => check(&[&p.static_keys, keys]),
            None => match check(&[&p.static_keys]) {
                Err(JwtError::UnknownKid | JwtError::NoKey) => Err(JwtError::KeysUnavailable),
                other => other,
            },
        },
        None => check(&[&p.static_keys]),
    };
    if matches!(result, Ok(_) | Err(JwtError::BadSignature)) {
        *signature = Some(Signature::Verified);
    }
    match result {
        Ok(key) => Ok(key),
        Err(e @ (JwtError::UnknownKid | JwtError::KeysUnavailable)) => {
            if let (true, Some((policy, r))) = (cx.attempt.may_await, remote) {
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
            Err(deny(e))
        }
        Err(JwtError::BadSignature) => {
            let until = now.saturating_add(REJECTED_CACHE_S);
            st.rejected.insert(rejected_key, pi, until, now);
            Err(deny(JwtError::BadSignature))
        }
        Err(e) => Err(deny(e)),
    }
}

/// An allowed JWT request: every credential place is emptied before it goes
/// upstream, except, with the provider's `forward_token: true`, the header
/// and cookie places the rule reads. A query-parameter credential always goes.
fn allow<'c>(cx: &Ctx<'c, '_>, providers: &[usize], token: Rc<VerifiedToken>, census: &Census) -> Allow<'c> {
    let cfg = cx.cfg;
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
    let strip = census.strip(&cfg.credential_places, cx.attempt.path, |k| forward && reads(k));
    Allow {
        rule: cx.rule,
        token: Some(token),
        remove_headers: strip.headers,
        cookie: strip.cookie,
        path: strip.path,
        ..Allow::default()
    }
}
