//! Audit trail: who did what, when, from which address, with what outcome.
//! Never a secret, key or token: a key id, or an 8-hex fingerprint at most.
//!
//! An action's record is written in the action's own transaction (see `service`),
//! so an action is never acknowledged without it. Failed authentications are not
//! written one by one: `guard` counts them and writes one row per kind, route and
//! client per window.

use serde_json::Value;

use crate::model::NewAudit;

/// Who is acting and from where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ctx {
    /// `admin`, `cli`, `service`, `api_key:<key id>`, or `anonymous`.
    pub actor: String,
    /// The TCP peer's address.
    pub peer: Option<String>,
    /// The `x-forwarded-for` header as received (the edge's view of the client), truncated.
    pub forwarded_for: Option<String>,
    /// The tenant the actor acts in or on (an API key's; an admin action's), for the
    /// audit's tenant filter.
    pub tenant: Option<String>,
}

/// Longest `x-forwarded-for` kept in the audit trail.
const MAX_XFF: usize = 512;

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

impl Ctx {
    pub fn new(actor: impl Into<String>, peer: Option<String>, forwarded_for: Option<&str>) -> Ctx {
        let forwarded_for = forwarded_for.map(|x| {
            let x: String = x.chars().filter(|c| !c.is_control()).collect();
            truncate(&x, MAX_XFF).to_owned()
        });
        Ctx {
            actor: actor.into(),
            peer,
            forwarded_for,
            tenant: None,
        }
    }

    /// The command-line tool, run by the local user.
    pub fn cli() -> Ctx {
        Ctx::new("cli", None, None)
    }

    /// The same origin with another actor.
    pub fn as_actor(&self, actor: impl Into<String>) -> Ctx {
        Ctx {
            actor: actor.into(),
            ..self.clone()
        }
    }

    /// The same, acting in or on `tenant`.
    pub fn for_tenant(&self, tenant: Option<&str>) -> Ctx {
        Ctx {
            tenant: tenant.map(str::to_owned),
            ..self.clone()
        }
    }

    /// The record of `action` by this actor at `now`.
    pub fn event(
        &self,
        action: &str,
        target: Option<&str>,
        outcome: &str,
        detail: Option<Value>,
        now: i64,
    ) -> NewAudit {
        NewAudit {
            ts: now,
            actor: self.actor.clone(),
            tenant: self.tenant.clone(),
            action: action.to_owned(),
            target: target.map(str::to_owned),
            outcome: outcome.to_owned(),
            peer: self.peer.clone(),
            forwarded_for: self.forwarded_for.clone(),
            detail,
        }
    }
}

/// Outcome values.
pub const SUCCESS: &str = "success";
pub const FAILURE: &str = "failure";
