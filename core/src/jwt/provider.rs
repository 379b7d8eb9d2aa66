//! A compiled JWT provider: one issuer, its keys, and what its tokens must hold.

use serde_json::Value;

use crate::claim_path::ClaimPath;
use crate::jwt::keys::{Algorithm, KeySet};
use crate::policy::caller::MachineTokens;
use crate::policy::scopes::ScopeSource;
use crate::token_source::TokenSource;

/// One JWT issuer.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    /// Keys from the configuration (inline JWKS, PEM, HMAC secrets).
    pub static_keys: KeySet,
    pub remote: Option<RemoteJwks>,
    pub leeway_s: u64,
    pub max_lifetime_s: Option<u64>,
    pub require_expiration: bool,
    pub required_claims: Vec<RequiredClaim>,
    pub sources: Vec<TokenSource>,
    pub claim_headers: Vec<ClaimHeader>,
    pub payload_header: Option<String>,
    pub forward_token: bool,
    /// Where the provider's tokens carry scopes and roles.
    pub scopes: ScopeSource,
    /// Whether its tokens are checked against the auth service's revocation feed.
    pub check_revocation: bool,
    /// How its machine tokens are told from users' (`machine_tokens`).
    pub machine_tokens: MachineTokens,
}

/// Where and how to fetch a provider's JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    pub cluster: String,
    /// The JWKS's path; with `discovery`, the discovery document's.
    pub path: String,
    /// `path` is an OpenID Connect discovery document whose `jwks_uri`
    /// names the JWKS ([`crate::jwt::discovery`]).
    pub discovery: bool,
    pub authority: String,
    pub timeout_ms: u64,
    pub refresh_interval_s: u64,
    pub min_refetch_interval_s: u64,
    pub max_response_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RequiredClaim {
    pub name: ClaimPath,
    pub one_of: Option<Vec<Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimHeader {
    pub claim: ClaimPath,
    pub header: String,
}
