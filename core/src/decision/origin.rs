//! The Origin check before authentication: CORS preflights answered or
//! passed, origins the rule does not allow refused, tenant origins left for
//! after authentication.

use crate::config::Config;
use crate::policy::origin::{self, Origin, OriginHeader};
use crate::policy::routes::OriginRule;

use super::{Allow, Deny, Outcome, Request, ResponseHeaders, Verdict};

/// What the Origin check leaves for after authentication.
#[derive(Default)]
pub(super) struct OriginCheck {
    /// The origin, not in the rule's static list, that the caller's tenant may still allow.
    pub(super) tenant_pending: Option<Origin>,
    pub(super) cors: Option<ResponseHeaders>,
}

/// The Origin check before authentication: answers CORS preflights, refuses
/// origins the rule does not allow, and leaves tenant origins for later. The
/// `Err` is the request's final outcome (a refusal or a preflight answer).
/// `key_decides`: the credential is an API key, which brings its own allowed
/// origins: they decide, after the lookup.
pub(super) fn check_origin<'c>(
    cfg: &'c Config,
    o: &'c OriginRule,
    key_decides: bool,
    method: &str,
    rule: &'c str,
    req: &mut dyn Request,
) -> Result<OriginCheck, Box<Outcome<'c>>> {
    let header = req.header("origin");
    let denied = || Box::new(Outcome::deny(Deny::OriginNotAllowed));
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

/// `outcome` with the rule's CORS response headers when the origin may read
/// the answer: an allow, or a refusal other than of the origin itself once
/// no tenant (or key) still had to allow the origin.
pub(super) fn with_cors<'c>(mut outcome: Outcome<'c>, check: OriginCheck) -> Outcome<'c> {
    let readable = match &outcome.verdict {
        Verdict::Allow(_) => true,
        // an origin only a tenant could allow is not known to be allowed until the tenant check passed
        Verdict::Deny(d) => *d != Deny::OriginNotAllowed && check.tenant_pending.is_none(),
        Verdict::Preflight(_) | Verdict::AwaitKeys { .. } | Verdict::AwaitLookup { .. } => false,
    };
    if readable && check.cors.is_some() {
        outcome.cors = check.cors;
    }
    outcome
}
