//! A rule with several ways in: a JWT from one of its providers or an API
//! key. The request's credential places were read once ([`census`]: two
//! different credentials, or a place twice, are already refused); the one
//! credential is then looked for in the providers' token sources and in
//! `api_keys.sources`. Found in exactly one of them, it goes down that
//! branch, scopes and identity included; found in both (the same value in
//! a token place and a key place), it is refused as ambiguous rather than
//! tried one way and then the other.
//!
//! The rule's `origin` is checked once the credential is known, as on a rule
//! of that one kind: a token's origin against `allowed` (and its tenant's
//! origins), a key's against the key's own `allowed_origins`. A request with
//! neither (a CORS preflight among them) is checked as a token request.

use super::api_key::KeyRule;
use super::origin::{check_origin, with_cors};
use super::request::{census, find_credential};
use super::{api_key, jwt, Ctx, Deny, Outcome, Request, State};

/// A `jwt` + `api_key` requirement.
pub(super) fn authorize_token_or_key<'c>(
    cx: &Ctx<'c, '_>,
    providers: &'c [usize],
    rule: KeyRule,
    st: &mut State,
    req: &mut dyn Request,
) -> Outcome<'c> {
    let (cfg, path) = (cx.cfg, cx.attempt.path);
    // the configuration refuses such a rule without api_keys
    let Some(keys) = &cfg.api_keys else {
        return Outcome::deny(Deny::NoRule);
    };
    let Ok(census) = census(cfg, path, req) else {
        return Outcome::deny(Deny::AmbiguousCredential);
    };
    let token = find_credential(jwt::sources(cfg, providers), &census, cfg, path);
    let key = find_credential(keys.sources.iter(), &census, cfg, path);
    match (token, key) {
        (Err(d), _) | (_, Err(d)) => Outcome::deny(d),
        (Ok(Some(_)), Ok(Some(_))) => Outcome::deny(Deny::AmbiguousCredential),
        (Ok(Some(found)), Ok(None)) => with_origin(cx, false, req, |cx, req| {
            jwt::with_token(cx, providers, &census, found, st, req)
        }),
        (Ok(None), Ok(Some(found))) => with_origin(cx, true, req, |cx, req| {
            api_key::with_key(cx, keys, rule, &census, found, st, req)
        }),
        (Ok(None), Ok(None)) => with_origin(cx, false, req, |_, _| Outcome::deny(Deny::MissingCredential)),
    }
}

/// The rule's Origin check for a key (`key`) or a token, then `branch` with
/// what it leaves for after authentication, and the CORS headers.
fn with_origin<'c>(
    cx: &Ctx<'c, '_>,
    key: bool,
    req: &mut dyn Request,
    branch: impl FnOnce(&Ctx<'c, '_>, &mut dyn Request) -> Outcome<'c>,
) -> Outcome<'c> {
    let Some(o) = &cx.policy.origin else {
        return branch(cx, req);
    };
    let check = match check_origin(cx.cfg, o, key, cx.attempt.method, cx.rule, req) {
        Ok(check) => check,
        Err(outcome) => return *outcome,
    };
    let checked = Ctx {
        cfg: cx.cfg,
        attempt: cx.attempt,
        rule: cx.rule,
        policy: cx.policy,
        tenant_pending: check.tenant_pending.as_ref(),
    };
    let outcome = branch(&checked, req);
    with_cors(outcome, check)
}
