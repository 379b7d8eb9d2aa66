//! `auth_service`: how the filter reaches the auth service (lookups and the
//! revocation feed; docs/auth-service-api.md).

use std::fmt;

use serde::Deserialize;

use super::defaults;
use super::field::{authority, claim_path, err, query_free_path, range};
use super::ConfigError;
use crate::claim_path::{ClaimPath, RawClaimPath};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuthService {
    pub(super) cluster: String,
    #[serde(default)]
    pub(super) authority: Option<String>,
    pub(super) token_env: String,
    #[serde(default = "defaults::service_timeout_ms")]
    pub(super) timeout_ms: u64,
    #[serde(default = "defaults::revocations_path")]
    pub(super) revocations_path: String,
    #[serde(default = "defaults::revocation_poll_s")]
    pub(super) revocation_poll_s: u64,
    #[serde(default = "defaults::revocation_max_staleness_s")]
    pub(super) revocation_max_staleness_s: u64,
    #[serde(default = "defaults::max_feed_bytes")]
    pub(super) max_response_bytes: usize,
    #[serde(default = "defaults::max_revocation_entries")]
    pub(super) max_revocation_entries: usize,
    #[serde(default = "defaults::tenant_claim")]
    pub(super) tenant_claim: RawClaimPath,
}

/// How the filter reaches the auth service (docs/auth-service-api.md).
pub struct AuthService {
    pub cluster: String,
    pub authority: String,
    /// The service token, from the environment. Never printed.
    pub token: String,
    pub timeout_ms: u64,
    pub revocations_path: String,
    pub revocation_poll_ms: u64,
    /// Tokens of providers with `check_revocation` are refused (503) when
    /// the last successful poll is older than this.
    pub revocation_max_staleness_ms: u64,
    pub max_response_bytes: usize,
    pub max_revocation_entries: usize,
    /// The claim naming a token's tenant, matched with the feed's tenant-scoped cut-offs.
    pub tenant_claim: ClaimPath,
}

impl fmt::Debug for AuthService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthService")
            .field("cluster", &self.cluster)
            .field("authority", &self.authority)
            .field("token", &"<redacted>")
            .field("revocations_path", &self.revocations_path)
            .finish_non_exhaustive()
    }
}

pub(super) fn compile_auth_service(
    a: RawAuthService,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AuthService, ConfigError> {
    let at = "auth_service";
    if a.cluster.is_empty() {
        return Err(err(format!("{at}.cluster"), "must name an Envoy cluster"));
    }
    let token = env(&a.token_env).ok_or_else(|| {
        err(
            format!("{at}.token_env"),
            format!(
                "environment variable \"{}\" is not set in the VM (list it in vm_config.environment_variables)",
                a.token_env
            ),
        )
    })?;
    if token.len() < 32 || token.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
        return Err(err(
            format!("{at}.token_env"),
            "the service token must be at least 32 visible ASCII characters",
        ));
    }
    range(a.timeout_ms, 100, 60_000, format!("{at}.timeout_ms"))?;
    query_free_path(&a.revocations_path, format!("{at}.revocations_path"))?;
    range(a.revocation_poll_s, 1, 300, format!("{at}.revocation_poll_s"))?;
    if a.revocation_max_staleness_s < 2 * a.revocation_poll_s || a.revocation_max_staleness_s > 3600 {
        return Err(err(
            format!("{at}.revocation_max_staleness_s"),
            "must be at least twice revocation_poll_s and at most 3600",
        ));
    }
    range(
        a.max_response_bytes,
        1024,
        16 * 1024 * 1024,
        format!("{at}.max_response_bytes"),
    )?;
    range(
        a.max_revocation_entries,
        1,
        1_000_000,
        format!("{at}.max_revocation_entries"),
    )?;
    let tenant_claim = claim_path(&a.tenant_claim, format!("{at}.tenant_claim"))?;
    let authority = authority(a.authority, &a.cluster, at)?;
    Ok(AuthService {
        cluster: a.cluster,
        authority,
        token,
        timeout_ms: a.timeout_ms,
        revocations_path: a.revocations_path,
        revocation_poll_ms: a.revocation_poll_s * 1000,
        revocation_max_staleness_ms: a.revocation_max_staleness_s * 1000,
        max_response_bytes: a.max_response_bytes,
        max_revocation_entries: a.max_revocation_entries,
        tenant_claim,
    })
}
