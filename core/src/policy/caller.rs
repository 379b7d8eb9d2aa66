//! Machines and users: how a provider's tokens are told apart
//! (`machine_tokens`), and what a rule's `jwt.caller` / `jwt.clients`
//! require of the caller.
//!
//! A token is a machine's when the claim `machine_tokens.claim` is a JSON
//! string equal to `machine_tokens.equals` (Auth0 and the reference service:
//! `gty: "client-credentials"`); its client id is the string claim
//! `machine_tokens.client_id_claim` (`azp`). It is a user's when that claim
//! is absent or a different string. Anything else (the marker claim is not
//! a string, or a machine token without a string, non-empty client id) is
//! neither, and a rule that asks who the caller is refuses it.

use crate::claim_path::ClaimPath;
use crate::jwt::Claims;

/// A provider's `machine_tokens`: how its machine tokens are recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineTokens {
    pub claim: ClaimPath,
    pub equals: String,
    pub client_id_claim: ClaimPath,
}

impl Default for MachineTokens {
    fn default() -> Self {
        MachineTokens {
            claim: ClaimPath::top("gty"),
            equals: "client-credentials".to_owned(),
            client_id_claim: ClaimPath::top("azp"),
        }
    }
}

/// Who a verified token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller<'a> {
    /// A machine client, with its client id.
    Machine(&'a str),
    /// A user (or a token that says nothing of a grant).
    User,
    /// A token whose marker claim is not a string, or a machine token
    /// without a client id: refused wherever the caller matters.
    Unclear,
}

impl MachineTokens {
    /// Who `claims` speak for.
    pub fn classify<'a>(&self, claims: &'a Claims) -> Caller<'a> {
        match claims.at(&self.claim) {
            None => Caller::User,
            Some(v) => match v.as_str() {
                Some(s) if s == self.equals => match claims.str_at(&self.client_id_claim) {
                    Some(id) if !id.is_empty() => Caller::Machine(id),
                    _ => Caller::Unclear,
                },
                Some(_) => Caller::User,
                None => Caller::Unclear,
            },
        }
    }
}

/// A rule's `jwt.caller` / `jwt.clients`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerRequirement {
    /// `caller: "user"`.
    User,
    /// `caller: "machine"`, without `clients`.
    AnyMachine,
    /// `clients`: one of these client ids, compared byte for byte.
    Clients(Vec<String>),
}

impl CallerRequirement {
    /// Whether `caller` meets this requirement.
    pub fn admits(&self, caller: Caller<'_>) -> bool {
        match (self, caller) {
            (CallerRequirement::User, Caller::User) => true,
            (CallerRequirement::AnyMachine, Caller::Machine(_)) => true,
            (CallerRequirement::Clients(list), Caller::Machine(id)) => list.iter().any(|c| c == id),
            _ => false,
        }
    }
}
