//! The API-key branch: find the key, check its format, find its answer
//! (delivered, this worker's cache, the shared cache, or a stale one when
//! the service failed) or ask for a lookup, then apply the key's record.

use std::net::IpAddr;
use std::rc::Rc;

use crate::api_key::breaker::{Freshness, StaleIfError};
use crate::api_key::shared_cache;
use crate::api_key::tag::TagCheck;
use crate::api_key::{self, Answer, KeyRecord, LookupFailure};
use crate::config::{ApiKeys, Context};
use crate::context::Identity;
use crate::policy::ip::ClientAddrError;
use crate::policy::scopes::Grants;

use crate::credentials::Census;

use super::request::{census, client_address, find_credential, Credential, Found};
use super::{render_context, Allow, CachedKey, Ctx, Deny, KeyRefusal, KeyUse, Outcome, Request, State, Verdict};

/// What a rule's `api_key` requirement adds to `api_keys`.
#[derive(Debug, Clone, Copy)]
pub(super) struct KeyRule {
    pub stale_if_error: StaleIfError,
    /// With `api_keys.key_tags`: a key whose tag does not verify is looked up
    /// (the rule's `untagged_keys: "lookup"`) rather than refused.
    pub untagged_lookup: bool,
}

/// An API-key requirement: find the key, check its format (and its tag, with
/// `api_keys.key_tags`), find its answer
/// (delivered, this worker's cache, the shared cache, or a stale one when
/// the service failed) or ask for a lookup, then apply the key's record.
pub(super) fn authorize_key<'c>(
    cx: &Ctx<'c, '_>,
    keys: &'c ApiKeys,
    rule: KeyRule,
    st: &mut State,
    req: &mut dyn Request,
) -> Outcome<'c> {
    let Ok(census) = census(cx.cfg, cx.attempt.path, req) else {
        return Outcome::deny(Deny::AmbiguousCredential);
    };
    let found = match find_credential(keys.sources.iter(), &census, cx.cfg, cx.attempt.path) {
        Ok(Some(f)) => f,
        Ok(None) => return Outcome::deny(Deny::MissingApiKey),
        Err(d) => return Outcome::deny(d),
    };
    with_key(cx, keys, rule, &census, found, st, req)
}

/// The API-key requirement once the request's one credential, `found`, was
/// found in `api_keys.sources`.
pub(super) fn with_key<'c>(
    cx: &Ctx<'c, '_>,
    keys: &'c ApiKeys,
    rule: KeyRule,
    census: &Census,
    found: Found<'c>,
    st: &mut State,
    req: &mut dyn Request,
) -> Outcome<'c> {
    // No credential place goes upstream: the key's, and any copy of it.
    let strip = census.strip(&cx.cfg.credential_places, cx.attempt.path, |_| false);
    // A request not allowed carries its credential, for the log's fingerprint.
    let mut notice = None;
    let outcome = |verdict: Verdict<'c>, key, notice| Outcome {
        credential: (!matches!(verdict, Verdict::Allow(_))).then(|| Credential::text(found.token.clone())),
        key,
        notice,
        ..Outcome::with(verdict)
    };
    if !keys.format.accepts(&found.token) {
        return outcome(Verdict::Deny(Deny::ApiKey(KeyRefusal::Malformed)), None, None);
    }
    // An invented key is refused here, before any cache, the breaker or a lookup.
    if let Some(tags) = &keys.key_tags {
        let hex = &found.token[keys.format.prefix.len()..];
        if tags.check(hex) == TagCheck::Invalid && !rule.untagged_lookup {
            return outcome(Verdict::Deny(Deny::ApiKey(KeyRefusal::BadTag)), None, None);
        }
    }
    let now = cx.attempt.now_ms / 1000;
    // The key's hash is only computed off the hot path (for a woken request,
    // on a local miss), and at most once.
    let hash_cell = std::cell::OnceCell::new();
    let hash = || hash_cell.get_or_init(|| api_key::key_hash(&found.token)).as_str();
    // A key the feed revoked by its hash is refused without a lookup (the
    // hash is computed for this only while the feed lists some hash).
    let feed = st.revocation.keys();
    if feed.lists_hashes() && feed.lists(Some(hash()), None) {
        return outcome(Verdict::Deny(Deny::ApiKey(KeyRefusal::Revoked)), None, None);
    }
    let delivered = cx.attempt.answer.filter(|a| a.hash == hash()).map(|a| &a.result);
    let (entry, used) = if let Some(Ok(lookup)) = delivered {
        let until = shared_cache::cache_until(lookup, now, keys.max_cache_ttl_s, keys.negative_cache_ttl_s);
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
        let name = keys.shared_cache.entry_name(&hash, keys.shared_cache_slots);
        let shared = req
            .shared_data(&name)
            .and_then(|b| keys.shared_cache.decode_entry(&b, &hash));
        match shared {
            Some((lookup, until)) if until > now => {
                let entry = Rc::new(CachedKey::new(lookup, until));
                st.keys
                    .insert(Rc::from(found.token.as_str()), Rc::clone(&entry), until, now);
                (entry, KeyUse::SharedHit)
            }
            stale => {
                if delivered.is_none() && cx.attempt.may_await {
                    // the client the lookup is charged to, only when budgets are kept
                    let client = keys.lookup_budget.as_ref().and_then(|_| key_client(cx, keys, req).ok());
                    return outcome(Verdict::AwaitLookup { hash, client }, Some(KeyUse::Miss), None);
                }
                if let Some(Err(LookupFailure::OverBudget { retry_after_s })) = delivered {
                    // no stale answer stands in: the service did not fail
                    let deny = Deny::LookupBudgetExceeded {
                        retry_after_s: *retry_after_s,
                    };
                    return outcome(Verdict::Deny(deny), None, None);
                }
                // The lookup failed (or cannot be made): only a valid answer
                // within the route's stale-if-error window may stand in.
                let usable = stale.filter(|(lookup, until)| {
                    matches!(lookup.answer, Answer::Valid(_))
                        && rule
                            .stale_if_error
                            .freshness(until.saturating_mul(1000), cx.attempt.now_ms)
                            == Freshness::StaleIfError
                });
                match usable {
                    Some((lookup, until)) => (Rc::new(CachedKey::new(lookup, until)), KeyUse::Stale),
                    None => return outcome(Verdict::Deny(Deny::KeyServiceUnavailable), None, None),
                }
            }
        }
    };
    let verdict = match revoked_by_feed(st, &entry).or_else(|| key_verdict(cx, keys, &entry, req, now, &mut notice)) {
        Some(d) => Verdict::Deny(d),
        None => {
            let context = match (&cx.cfg.context, &entry.lookup.answer) {
                (Some(ctx), Answer::Valid(record)) => {
                    let path = strip.path.as_deref().unwrap_or(cx.attempt.path);
                    key_context_headers(ctx, record, &entry.grants, cx.attempt.method, path, now)
                }
                _ => Vec::new(),
            };
            Verdict::Allow(Allow {
                rule: cx.rule,
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

/// The feed's word on a `valid` answer, fresh, cached or stale
/// (docs/auth-service-api.md, 5.6): its `key_id` is revoked one by one, or it
/// was computed before a key cut-off of its tenant or of every tenant. Such
/// an answer is refused, never looked up again: the cut-off revoked every
/// key the service knew then, and this one was known.
fn revoked_by_feed<'c>(st: &State, entry: &CachedKey) -> Option<Deny<'c>> {
    let Answer::Valid(record) = &entry.lookup.answer else {
        return None;
    };
    let feed = st.revocation.keys();
    (feed.lists(None, Some(&record.key_id)) || feed.predates_cut_off(record))
        .then_some(Deny::ApiKey(KeyRefusal::Revoked))
}

/// Applies a key's answer: refuses a key that is not valid, and applies a
/// valid key's expiry, IP allowlist, origins and scopes. `notice`: see
/// [`Outcome::notice`].
fn key_verdict<'c>(
    cx: &Ctx<'c, '_>,
    keys: &ApiKeys,
    entry: &CachedKey,
    req: &mut dyn Request,
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
        match key_client(cx, keys, req) {
            Ok(a) if record.ip_allowlist.contains(a) => {}
            Ok(_) => return Some(Deny::IpNotAllowed),
            Err(e) => {
                *notice = e.operator_hint();
                return Some(Deny::IpNotAllowed);
            }
        }
    }
    if cx.tenant_pending.is_some_and(|o| !record.allowed_origins.matches(o)) {
        return Some(Deny::OriginNotAllowed);
    }
    match &cx.policy.scopes {
        Some(required) if !required.is_met(&entry.grants) => Some(Deny::InsufficientScope(required)),
        _ => None,
    }
}

/// The client address of an API-key request: by the rule's own `ip` rules
/// when it has them (the address its `ip` checks use), else by
/// `api_keys.trusted_hops`.
fn key_client(cx: &Ctx<'_, '_>, keys: &ApiKeys, req: &mut dyn Request) -> Result<IpAddr, ClientAddrError> {
    let (hops, appends) = cx
        .policy
        .ip
        .as_ref()
        .map_or((keys.trusted_hops, keys.envoy_appends), |p| {
            (p.trusted_hops, p.envoy_appends)
        });
    client_address(req, hops, appends)
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
