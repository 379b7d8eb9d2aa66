//! `context`: the identity headers written upstream (docs/upstream-context.md).

use std::fmt;

use serde::Deserialize;

use crate::claim_path::{ClaimPath, RawClaimPath};
use crate::context::ContextHeaders;

use super::defaults;
use super::field::{claim_path, err};
use super::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContext {
    #[serde(default = "defaults::context_prefix")]
    pub(super) prefix: String,
    #[serde(default)]
    pub(super) signing_key_env: Option<String>,
    #[serde(default = "defaults::tenant_claim")]
    pub(super) tenant_claim: RawClaimPath,
}

/// The identity headers written upstream for every authenticated request.
pub struct Context {
    pub headers: ContextHeaders,
    /// The HMAC-SHA256 key that signs them, from the environment. Never printed.
    pub signing_key: Option<Vec<u8>>,
    /// The claim naming the caller's tenant.
    pub tenant_claim: ClaimPath,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("headers", &self.headers)
            .field("signed", &self.signing_key.is_some())
            .field("tenant_claim", &self.tenant_claim)
            .finish()
    }
}

pub(super) fn compile_context(c: RawContext, env: &dyn Fn(&str) -> Option<String>) -> Result<Context, ConfigError> {
    let headers = ContextHeaders::new(&c.prefix).map_err(|m| err("context.prefix", m))?;
    let tenant_claim = claim_path(&c.tenant_claim, "context.tenant_claim")?;
    let signing_key = match &c.signing_key_env {
        None => None,
        Some(name) => {
            let key = env(name).ok_or_else(|| {
                err(
                    "context.signing_key_env",
                    format!("environment variable \"{name}\" is not set in the VM (list it in vm_config.environment_variables)"),
                )
            })?;
            if key.len() < 32 {
                return Err(err(
                    "context.signing_key_env",
                    "the signing key must be at least 32 bytes",
                ));
            }
            Some(key.into_bytes())
        }
    };
    Ok(Context {
        headers,
        signing_key,
        tenant_claim,
    })
}
