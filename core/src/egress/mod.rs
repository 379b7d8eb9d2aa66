//! Tokens injected on egress (`egress_tokens`): the filter, on an outbound
//! listener, adds `authorization: Bearer <token>` to requests for configured
//! upstreams, the token obtained with the OAuth 2.0 client-credentials grant
//! through an Envoy cluster.
//!
//! - [`request`]: the token request (form body, HTTP Basic or `post` client auth);
//! - [`answer`]: the issuer's answer, read as an attacker could write it;
//! - [`schedule`]: one entry's token state (refresh, backoff with jitter,
//!   circuit breaker, rejected credentials), as published to every worker;
//! - [`decide`]: what a request gets (inject, wait, or a 503).
//!
//! The fetches themselves (lease-elected, one per Envoy) are in
//! `outbound/egress_token.rs`.

pub mod answer;
pub mod decide;
pub mod request;
pub mod schedule;

use std::fmt;

use crate::policy::destination::DestinationMatch;

/// A client secret, read from the environment at configure time. Its
/// `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the form-urlencoded id and secret (RFC 6749 2.3.1).
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

/// Which requests an entry serves: destination conditions and a path prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressMatch {
    pub destination: DestinationMatch,
    /// A normalised path prefix (`None`: any path).
    pub prefix: Option<String>,
}

/// One `egress_tokens` entry, validated.
#[derive(Debug, Clone)]
pub struct EgressToken {
    pub name: String,
    /// `None`: every request.
    pub matcher: Option<EgressMatch>,
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
    pub client_id: String,
    pub client_secret: Secret,
    pub client_auth: ClientAuth,
    pub audience: Option<String>,
    pub scopes: Vec<String>,
    pub refresh_before_ms: u64,
    pub backoff_max_ms: u64,
    pub breaker_failures: u32,
    pub breaker_open_ms: u64,
    pub rejected_retry_ms: u64,
}

/// The first 8 hex digits of a token's SHA-256: the most of a token a log may show.
pub fn token_fingerprint(token: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes())
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The specification's example entry, with its defaults.
    pub fn entry() -> EgressToken {
        EgressToken {
            name: "billing".into(),
            matcher: None,
            cluster: "issuer".into(),
            authority: "auth.example.com".into(),
            path: "/oauth/token".into(),
            timeout_ms: 2_000,
            client_id: "mc_0123".into(),
            client_secret: Secret::new("s3cret".into()),
            client_auth: ClientAuth::Basic,
            audience: None,
            scopes: Vec::new(),
            refresh_before_ms: 300_000,
            backoff_max_ms: 30_000,
            breaker_failures: 5,
            breaker_open_ms: 30_000,
            rejected_retry_ms: 60_000,
        }
    }
}
