//! The decision for one request: route, client address, Origin, credential,
//! verification, scopes, verdict.
//!
//! The shell hands over an [`Attempt`] (the method, the `:path`, the host's
//! clock, and whether the request may wait) and a [`Request`] to read facts
//! from (only the facts a decision needs are ever read); it gets back an
//! [`Outcome`] whose [`Verdict`] it applies. All state a decision touches
//! (the token caches, API-key answers, remote key sets and the revocation
//! state) lives in [`State`], one per Envoy worker, held by the shell's
//! `Worker`.

mod api_key;
mod jwt;
mod origin;
mod refusal;
mod request;
mod shadow;
mod state;
mod token_or_key;

pub use refusal::{Deny, KeyRefusal};
pub(crate) use request::destination;
pub use request::{fingerprint, Credential, Request};
pub use state::{CachedKey, KeyAnswer, KeyUse, State, VerifiedToken, MAX_CACHE_S, REJECTED_CACHE_S};

use std::rc::Rc;

use crate::api_key::breaker::StaleIfError;
use crate::config::{Config, Context};
use crate::context::{self, Identity};
use crate::credentials;
use crate::policy::origin::Origin;
use crate::policy::path;
use crate::policy::routes::{Policy, Requirement, Selected};

use self::origin::{check_origin, OriginCheck};
use self::request::client_permitted;

/// One attempt at deciding a request: the first, or after it waited.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'r> {
    pub method: &'r str,
    /// The `:path` as sent.
    pub path: &'r str,
    /// The host clock, in unix milliseconds.
    pub now_ms: u64,
    /// The request may wait for a JWKS fetch or an API-key lookup (false
    /// for a request woken after waiting).
    pub may_await: bool,
    /// The lookup outcome a woken request waited for.
    pub answer: Option<&'r KeyAnswer>,
}

/// The request being decided, once its rule is known: what both branches read.
pub(crate) struct Ctx<'c, 'r> {
    cfg: &'c Config,
    attempt: &'r Attempt<'r>,
    rule: &'c str,
    policy: &'c Policy,
    /// The origin, not in the rule's static list, that the caller's tenant
    /// (or the API key's allowed origins) must still allow.
    tenant_pending: Option<&'r Origin>,
}

/// Decides one request, reading from `req` only the facts it needs. A
/// refusal of a report-only rule (or filter) becomes a shadow allow
/// ([`shadow`]).
pub fn decide<'c>(cfg: &'c Config, st: &mut State, attempt: &Attempt<'_>, req: &mut dyn Request) -> Outcome<'c> {
    let (outcome, shadow_rule) = enforced(cfg, st, attempt, req);
    match shadow_rule {
        Some(rule) => shadow::report_only(outcome, rule),
        None => outcome,
    }
}

/// The decision as an enforcing filter makes it, and the name of the rule
/// when that rule (or the whole filter) is report-only. A path that cannot
/// be normalised, or an authority that cannot be read one way when rules
/// match hosts, is refused before any rule is chosen, so never in shadow.
fn enforced<'c>(
    cfg: &'c Config,
    st: &mut State,
    attempt: &Attempt<'_>,
    req: &mut dyn Request,
) -> (Outcome<'c>, Option<&'c str>) {
    let (method, raw_path) = (attempt.method, attempt.path);
    let normalized = match path::normalize(raw_path) {
        Ok(n) => n,
        Err(e) => return (Outcome::deny(Deny::BadPath(e.as_str())), None),
    };
    let destination = match request::destination(cfg.routes.needs(), req) {
        Ok(d) => d,
        // as a bad path: refused before any rule is chosen, so never in shadow
        Err(e) => return (Outcome::deny(Deny::BadAuthority(e.as_str())), None),
    };
    let selected = cfg.routes.select_at(method, &normalized.path, &destination);
    let rule = selected.name();
    let shadow = (cfg.shadow || selected.policy().is_some_and(|p| p.shadow)).then_some(rule);
    (decide_rule(cfg, st, attempt, req, selected), shadow)
}

/// The decision once the rule is selected.
fn decide_rule<'c>(
    cfg: &'c Config,
    st: &mut State,
    attempt: &Attempt<'_>,
    req: &mut dyn Request,
    selected: Selected<'c>,
) -> Outcome<'c> {
    let method = attempt.method;
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
    let cx = Ctx {
        cfg,
        attempt,
        rule,
        policy,
        tenant_pending,
    };
    let mut outcome = authorize(&cx, st, req);
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
fn authorize<'c>(cx: &Ctx<'c, '_>, st: &mut State, req: &mut dyn Request) -> Outcome<'c> {
    match &cx.policy.requirement {
        Requirement::Public => Outcome::with(Verdict::Allow(Allow {
            rule: cx.rule,
            ..Allow::default()
        })),
        Requirement::Jwt { providers } => jwt::authorize_jwt(cx, providers, st, req),
        Requirement::ApiKey {
            stale_if_error_ms,
            untagged_lookup,
        } => match &cx.cfg.api_keys {
            None => Outcome::deny(Deny::NoRule),
            Some(keys) => api_key::authorize_key(cx, keys, key_rule(*stale_if_error_ms, *untagged_lookup), st, req),
        },
        Requirement::JwtOrApiKey {
            providers,
            stale_if_error_ms,
            untagged_lookup,
        } => {
            let rule = key_rule(*stale_if_error_ms, *untagged_lookup);
            token_or_key::authorize_token_or_key(cx, providers, rule, st, req)
        }
    }
}

fn key_rule(stale_if_error_ms: u64, untagged_lookup: bool) -> api_key::KeyRule {
    api_key::KeyRule {
        stale_if_error: StaleIfError {
            max_stale_ms: stale_if_error_ms,
        },
        untagged_lookup,
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
        /// The client address the lookup is charged to when
        /// `api_keys.lookup_budget` is configured (`None`: not configured,
        /// or the address cannot be established).
        client: Option<std::net::IpAddr>,
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
    /// The refusal a report-only rule would have given: the request goes
    /// upstream as sent (no edits, no identity), and the shell counts
    /// `shadow_denied.<reason>` instead of an allow ([`shadow`]).
    pub shadow: Option<Deny<'c>>,
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
    /// How a token's signature was established, when the token was not
    /// served from this worker's cache and got as far as its signature.
    pub signature: Option<Signature>,
}

/// How a token's signature was established, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// Checked with the provider's keys (successfully or not): one
    /// signature verification.
    Verified,
    /// Vouched for by the verified-token table the workers share (a worker
    /// verified it before): no signature work.
    Shared,
}

impl<'c> Outcome<'c> {
    pub(crate) fn deny(d: Deny<'c>) -> Outcome<'c> {
        Outcome::with(Verdict::Deny(d))
    }

    pub(crate) fn with(verdict: Verdict<'c>) -> Outcome<'c> {
        Outcome {
            verdict,
            cache: None,
            credential: None,
            cors: None,
            key: None,
            notice: None,
            signature: None,
        }
    }
}

/// Renders an identity as context headers, signed over the method and the
/// path as they go upstream when a signing key is configured.
pub(crate) fn render_context(
    ctx: &Context,
    id: &Identity,
    method: &str,
    path: &str,
    now: u64,
) -> Vec<(String, String)> {
    let signing = ctx.signing_key.as_deref().map(|key| (key, now, method, path));
    context::render(&ctx.headers, id, signing)
}
