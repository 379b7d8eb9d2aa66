//! Audit trail: who did what, when, from which address, with what outcome.
//! Never a secret, key or token: a key id, or an 8-hex fingerprint at most.

use serde_json::Value;

use crate::store::{NewAudit, Store};

/// Who is acting and from where.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ctx {
    /// `admin`, `cli`, `service`, `api_key:<key id>`, or `anonymous`.
    pub actor: String,
    /// The TCP peer.
    pub peer: Option<String>,
    /// The `x-forwarded-for` header as received (the edge's view of the client), truncated.
    pub forwarded_for: Option<String>,
}

/// Longest `x-forwarded-for` kept in the audit trail.
const MAX_XFF: usize = 512;

impl Ctx {
    pub fn new(actor: impl Into<String>, peer: Option<String>, forwarded_for: Option<&str>) -> Ctx {
        let forwarded_for = forwarded_for.map(|x| {
            let mut x: String = x.chars().filter(|c| !c.is_control()).collect();
            if x.len() > MAX_XFF {
                let mut cut = MAX_XFF;
                while !x.is_char_boundary(cut) {
                    cut -= 1;
                }
                x.truncate(cut);
            }
            x
        });
        Ctx {
            actor: actor.into(),
            peer,
            forwarded_for,
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
}

/// Outcome values.
pub const SUCCESS: &str = "success";
pub const FAILURE: &str = "failure";

/// Records an event. A failure to write is logged, never turned into a failed request:
/// the action it describes already happened.
pub fn record(
    store: &mut Store,
    ctx: &Ctx,
    action: &str,
    target: Option<&str>,
    outcome: &str,
    detail: Option<Value>,
    now: i64,
) {
    let e = NewAudit {
        actor: ctx.actor.clone(),
        action: action.to_owned(),
        target: target.map(str::to_owned),
        outcome: outcome.to_owned(),
        peer: ctx.peer.clone(),
        forwarded_for: ctx.forwarded_for.clone(),
        detail,
    };
    if let Err(err) = store.insert_audit(&e, now) {
        eprintln!("edge-auth-service: could not write audit event {action}: {err}");
    }
}
