//! The plugin configuration: one JSON document, parsed strictly and compiled once.
//!
//! Parsing refuses unknown fields and names the offending field by its path
//! (`providers[0].remote_jwks.cluster`). Compiling validates every value, decodes
//! every key and reads HMAC secrets from the environment, so that the request
//! path only ever sees ready-to-use structures. See docs/configuration.md.

mod api_keys;
mod auth_service;
mod checks;
mod defaults;
mod destination;
mod egress;
mod field;
mod identity;
mod providers;
mod rules;
#[cfg(test)]
mod tests;

pub use api_keys::{ApiKeys, LookupBudget};
pub use auth_service::AuthService;
pub use identity::Context;
pub use providers::SecretEncoding;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::credentials::Places;
use crate::jwt::Provider;
use crate::policy::origin::OriginList;
use crate::policy::routes::RouteTable;
use crate::policy::scopes::RoleHierarchy;

use self::api_keys::{compile_api_keys, RawApiKeys};
use self::auth_service::{compile_auth_service, RawAuthService};
use self::egress::{compile_egress, RawEgressToken, EGRESS_ONLY};
use self::field::{err, range};
use self::identity::{compile_context, RawContext};
use self::providers::{compile_providers, RawProvider};
use self::rules::{
    compile_roles, compile_rules, compile_tenants, Mode, RawDefaultRule, RawRole, RawRule, RawTenant, RuleScope,
};

/// A configuration error, with the path of the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "configuration: {}", self.message)
        } else {
            write!(f, "configuration field `{}`: {}", self.field, self.message)
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    providers: Vec<RawProvider>,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    default_rule: Option<RawDefaultRule>,
    #[serde(default)]
    token_cache: RawTokenCache,
    #[serde(default = "defaults::max_token_bytes")]
    max_token_bytes: usize,
    #[serde(default = "defaults::realm")]
    realm: String,
    #[serde(default)]
    roles: BTreeMap<String, RawRole>,
    #[serde(default)]
    tenants: BTreeMap<String, RawTenant>,
    #[serde(default)]
    development: RawDevelopment,
    #[serde(default)]
    envoy_appends_xff: Option<bool>,
    #[serde(default)]
    auth_service: Option<RawAuthService>,
    #[serde(default)]
    context: Option<RawContext>,
    #[serde(default)]
    api_keys: Option<RawApiKeys>,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    egress_tokens: Option<Vec<RawEgressToken>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokenCache {
    #[serde(default = "defaults::cache_entries")]
    max_entries: usize,
    #[serde(default = "defaults::shared_token_slots")]
    shared_slots: usize,
}

impl Default for RawTokenCache {
    fn default() -> Self {
        RawTokenCache {
            max_entries: defaults::cache_entries(),
            shared_slots: defaults::shared_token_slots(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevelopment {
    #[serde(default)]
    disable_origin_checks: bool,
    #[serde(default)]
    disable_ip_checks: bool,
}

/// A validated configuration, with every key decoded.
#[derive(Debug)]
pub struct Config {
    pub providers: Vec<Provider>,
    pub routes: RouteTable,
    pub token_cache_entries: usize,
    /// Slots of the verified-token table the workers share (0: not shared).
    pub token_cache_shared_slots: usize,
    pub max_token_bytes: usize,
    pub realm: String,
    /// Every header the filter may write upstream. Client-sent copies of all of
    /// them are removed from every request, whatever its route.
    pub written_headers: Vec<String>,
    /// Each tenant's allowed origins (rules with `origin.tenant_claim`).
    pub tenants: HashMap<String, OriginList>,
    pub roles: RoleHierarchy,
    /// Things the operator should hear about loudly at configure time, as
    /// the log says them (after `edge-auth: `): a configuration that denies
    /// everything, each check switched off (`CHECK DISABLED: ...`), a
    /// public default rule.
    pub warnings: Vec<String>,
    /// Headers that can carry a credential: `proxy-authorization`, `cookie`
    /// and every header of [`Config::credential_places`]. A CORS preflight
    /// passed upstream loses all of them.
    pub credential_headers: Vec<String>,
    /// Every place a request may carry a credential in (every source of
    /// every provider and of `api_keys`, the default `authorization` and
    /// `x-api-key`, and key- or JWT-shaped query values): an authenticating
    /// rule refuses a request with two, and empties them all upstream.
    pub credential_places: Places,
    /// The auth service the filter polls for revocations.
    pub auth_service: Option<AuthService>,
    /// Identity headers for the upstream (docs/upstream-context.md).
    pub context: Option<Context>,
    /// API-key authentication (`api_keys` configured).
    pub api_keys: Option<ApiKeys>,
    /// A short digest of the configuration document: names the shared
    /// API-key cache, so that a new configuration does not read the old one's answers.
    pub generation: String,
    /// The whole filter is report-only (top-level `"mode": "shadow"`):
    /// every rule's refusals are counted and let through (see
    /// `decision::shadow`).
    pub shadow: bool,
    /// Tokens injected on egress (`egress_tokens`; empty: an ingress filter).
    pub egress: Vec<crate::egress::EgressToken>,
    /// The destination facts the egress entries' matches read.
    pub egress_needs: crate::policy::destination::Needs,
}

/// Parses and compiles the plugin configuration. `env` reads the variables
/// Envoy exposes to the VM (`vm_config.environment_variables`).
pub fn parse(json: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    match json.iter().find(|b| !b.is_ascii_whitespace()) {
        None => {
            return Err(err(
                "",
                "the plugin configuration is empty: edge-auth needs a JSON object",
            ))
        }
        Some(b'{') => {}
        Some(_) => return Err(err("", "the plugin configuration must be a JSON object")),
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    let raw: RawConfig = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        err(
            if path == "." { String::new() } else { path },
            e.into_inner().to_string(),
        )
    })?;
    de.end().map_err(|e| err("", e.to_string()))?;
    // Names the shared API-key cache: a changed configuration starts with an empty cache.
    let generation: String = Sha256::digest(json)
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect();
    compile(raw, env, generation)
}

fn compile(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>, generation: String) -> Result<Config, ConfigError> {
    range(raw.max_token_bytes, 256, 65536, "max_token_bytes")?;
    if raw.token_cache.max_entries > 100_000 {
        return Err(err(
            "token_cache.max_entries",
            "must be at most 100000 (entries are allocated up front, per worker)",
        ));
    }
    if raw.token_cache.shared_slots > crate::jwt::shared_tokens::MAX_SLOTS {
        return Err(err(
            "token_cache.shared_slots",
            "must be at most 100000 (the table lives as long as the Envoy process)",
        ));
    }
    if raw.realm.is_empty()
        || !raw
            .realm
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        return Err(err(
            "realm",
            "must be non-empty printable ASCII without quotes or backslashes",
        ));
    }

    if raw.egress_tokens.is_some() {
        egress_only(&raw)?;
    }
    let (egress, egress_needs) = match raw.egress_tokens {
        None => (Vec::new(), Default::default()),
        Some(list) => compile_egress(list, env)?,
    };
    let (providers, mut written) = compile_providers(raw.providers, env)?;
    let mut warnings = checks::development_warnings(&raw.development);
    let roles = compile_roles(&raw.roles)?;
    let tenants = compile_tenants(&raw.tenants)?;
    let mut api_keys = match &raw.api_keys {
        None => None,
        Some(k) => Some(compile_api_keys(k, raw.envoy_appends_xff, env)?),
    };
    if api_keys.is_some() && raw.auth_service.is_none() {
        return Err(err("api_keys", "needs the top-level auth_service to look keys up"));
    }
    let scope = RuleScope {
        providers: &providers,
        api_keys: api_keys.is_some(),
        tenants: &tenants,
        development: &raw.development,
        envoy_appends: raw.envoy_appends_xff,
        key_tags: api_keys.as_ref().is_some_and(|k| k.key_tags.is_some()),
    };
    let (rules, default, needs) = compile_rules(&raw.rules, raw.default_rule.as_ref(), &scope, &mut warnings)?;
    let shadow = rules::shadow(raw.mode, "the whole filter", &mut warnings);
    let context = match raw.context {
        None => None,
        Some(c) => Some(compile_context(c, env)?),
    };
    if let Some(c) = &context {
        checks::add_context_headers(c, &mut written)?;
    }
    if let Some(k) = &api_keys {
        checks::key_sources_not_written(k, &written)?;
    }
    let key_sources = api_keys.iter().flat_map(|k| k.sources.iter());
    let credential_places = Places::new(
        providers.iter().flat_map(|p| p.sources.iter()).chain(key_sources),
        api_keys.as_ref().map(|k| k.format.clone()).unwrap_or_default(),
    );
    let credential_headers = credential_headers(&credential_places);
    let auth_service = match raw.auth_service {
        None => None,
        Some(a) => Some(compile_auth_service(a, env)?),
    };
    checks::revocation_has_a_service(&providers, auth_service.as_ref())?;
    if let (Some(k), Some(svc)) = (api_keys.as_mut(), auth_service.as_ref()) {
        k.bind(svc);
    }
    let warnings = if egress.is_empty() {
        checks::warnings(warnings, &rules, &providers, default.as_ref())
    } else {
        warnings
    };
    Ok(Config {
        providers,
        routes: RouteTable::new(rules, default, needs),
        token_cache_entries: raw.token_cache.max_entries,
        token_cache_shared_slots: raw.token_cache.shared_slots,
        max_token_bytes: raw.max_token_bytes,
        realm: raw.realm,
        written_headers: written,
        credential_headers,
        credential_places,
        auth_service,
        context,
        api_keys,
        generation,
        tenants,
        roles,
        warnings,
        shadow,
        egress,
        egress_needs,
    })
}

/// An egress configuration has none of the ingress sections.
fn egress_only(raw: &RawConfig) -> Result<(), ConfigError> {
    let ingress = [
        ("providers", !raw.providers.is_empty()),
        ("rules", !raw.rules.is_empty()),
        ("default_rule", raw.default_rule.is_some()),
        ("api_keys", raw.api_keys.is_some()),
        ("context", raw.context.is_some()),
        ("auth_service", raw.auth_service.is_some()),
    ];
    match ingress.iter().find(|(_, present)| *present) {
        Some((field, _)) => Err(err(*field, EGRESS_ONLY)),
        None => Ok(()),
    }
}

fn credential_headers(places: &Places) -> Vec<String> {
    let mut out: Vec<String> = ["proxy-authorization", "cookie"].map(String::from).to_vec();
    out.extend(places.header_names().map(String::from));
    out
}
