//! The plugin configuration: one JSON document, parsed strictly and compiled once.
//!
//! Parsing refuses unknown fields and names the offending field by its path
//! (`providers[0].remote_jwks.cluster`). Compiling validates every value, decodes
//! every key and reads HMAC secrets from the environment, so that the request
//! path only ever sees ready-to-use structures. See docs/configuration.md.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use sha2::{Digest, Sha256};

use crate::apikey::KeyFormat;
use crate::breaker::BreakerPolicy;
use crate::context::ContextHeaders;
use crate::credentials::Places;
use crate::ip::{IpList, IpPolicy};
use crate::keys::{parse_jwks, Algorithm, BoundKey, KeyFamily, KeySet};
use crate::origin::{Cors, OriginList};
use crate::routes::{CorsRule, OriginRule, PathMatch, Policy, Requirement, RouteTable, Rule};
use crate::scopes::{valid_scope_token, RoleDef, RoleHierarchy, ScopeRequirement, ScopeSource};
use crate::token_source::TokenSource;

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

fn err(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------
// The JSON document, as written by the user.

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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKeys {
    #[serde(default = "defaults::api_key_sources")]
    sources: Vec<RawTokenSource>,
    #[serde(default = "defaults::key_prefix")]
    prefix: String,
    #[serde(default = "defaults::key_hex_digits")]
    hex_digits: usize,
    #[serde(default = "defaults::lookup_path")]
    lookup_path: String,
    #[serde(default = "defaults::max_cache_ttl_s")]
    max_cache_ttl_s: u64,
    #[serde(default = "defaults::negative_cache_ttl_s")]
    negative_cache_ttl_s: u64,
    #[serde(default = "defaults::shared_cache_slots")]
    shared_cache_slots: usize,
    #[serde(default = "defaults::local_cache_entries")]
    local_cache_entries: usize,
    #[serde(default = "defaults::max_lookup_bytes")]
    max_response_bytes: usize,
    #[serde(default = "defaults::max_pending_lookups")]
    max_pending_lookups: usize,
    #[serde(default)]
    trusted_hops: u8,
    #[serde(default)]
    breaker: RawBreaker,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    #[serde(default = "defaults::breaker_failures")]
    failure_threshold: u32,
    #[serde(default = "defaults::breaker_open_s")]
    open_s: u64,
}

impl Default for RawBreaker {
    fn default() -> Self {
        RawBreaker {
            failure_threshold: defaults::breaker_failures(),
            open_s: defaults::breaker_open_s(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKeyRequirement {
    #[serde(default)]
    stale_if_error_s: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContext {
    #[serde(default = "defaults::context_prefix")]
    prefix: String,
    #[serde(default)]
    signing_key_env: Option<String>,
    #[serde(default = "defaults::tenant_claim")]
    tenant_claim: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthService {
    cluster: String,
    #[serde(default)]
    authority: Option<String>,
    token_env: String,
    #[serde(default = "defaults::service_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "defaults::revocations_path")]
    revocations_path: String,
    #[serde(default = "defaults::revocation_poll_s")]
    revocation_poll_s: u64,
    #[serde(default = "defaults::revocation_max_staleness_s")]
    revocation_max_staleness_s: u64,
    #[serde(default = "defaults::max_feed_bytes")]
    max_response_bytes: usize,
    #[serde(default = "defaults::max_revocation_entries")]
    max_revocation_entries: usize,
    #[serde(default = "defaults::tenant_claim")]
    tenant_claim: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokenCache {
    #[serde(default = "defaults::cache_entries")]
    max_entries: usize,
}

impl Default for RawTokenCache {
    fn default() -> Self {
        RawTokenCache {
            max_entries: defaults::cache_entries(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: String,
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<String>,
    #[serde(default)]
    jwks: Option<Value>,
    #[serde(default)]
    pem_keys: Vec<RawPemKey>,
    #[serde(default)]
    hmac_secrets: Vec<RawHmacSecret>,
    #[serde(default)]
    remote_jwks: Option<RawRemoteJwks>,
    #[serde(default = "defaults::leeway_s")]
    leeway_s: u64,
    #[serde(default)]
    max_lifetime_s: Option<u64>,
    #[serde(default = "defaults::yes")]
    require_expiration: bool,
    #[serde(default)]
    required_claims: Vec<RawRequiredClaim>,
    #[serde(default = "defaults::token_sources")]
    token_sources: Vec<RawTokenSource>,
    #[serde(default)]
    claim_headers: Vec<RawClaimHeader>,
    #[serde(default)]
    payload_header: Option<String>,
    #[serde(default)]
    forward_token: bool,
    #[serde(default = "defaults::scope_claims")]
    scope_claims: Vec<String>,
    #[serde(default)]
    role_claim: Option<String>,
    #[serde(default)]
    check_revocation: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPemKey {
    alg: String,
    pem: String,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHmacSecret {
    env: String,
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    encoding: SecretEncoding,
}

/// How an HMAC secret is written in its environment variable.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SecretEncoding {
    /// The variable's UTF-8 bytes are the secret.
    #[default]
    Utf8,
    /// Standard or URL-safe base64, padded or not.
    Base64,
    Hex,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemoteJwks {
    cluster: String,
    path: String,
    #[serde(default)]
    authority: Option<String>,
    #[serde(default = "defaults::timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "defaults::refresh_interval_s")]
    refresh_interval_s: u64,
    #[serde(default = "defaults::min_refetch_interval_s")]
    min_refetch_interval_s: u64,
    #[serde(default = "defaults::max_jwks_bytes")]
    max_response_bytes: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequiredClaim {
    name: String,
    #[serde(default)]
    one_of: Option<Vec<Value>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokenSource {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    scheme: Option<String>,
    #[serde(default)]
    cookie: Option<String>,
    #[serde(default)]
    query: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaimHeader {
    claim: String,
    header: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: String,
    #[serde(rename = "match")]
    matcher: RawMatch,
    #[serde(default)]
    public: bool,
    #[serde(default)]
    jwt: Option<RawJwtRequirement>,
    #[serde(default)]
    api_key: Option<RawApiKeyRequirement>,
    #[serde(default)]
    origin: Option<RawOriginPolicy>,
    #[serde(default)]
    ip: Option<RawIpPolicy>,
    #[serde(default)]
    scopes: Option<RawScopes>,
}

/// The rule for requests no rule matches: a rule without `name` and `match`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaultRule {
    #[serde(default)]
    public: bool,
    #[serde(default)]
    jwt: Option<RawJwtRequirement>,
    #[serde(default)]
    api_key: Option<RawApiKeyRequirement>,
    #[serde(default)]
    origin: Option<RawOriginPolicy>,
    #[serde(default)]
    ip: Option<RawIpPolicy>,
    #[serde(default)]
    scopes: Option<RawScopes>,
}

/// The fields a rule and the default rule share.
struct RawPolicy<'a> {
    public: bool,
    jwt: Option<&'a RawJwtRequirement>,
    api_key: Option<&'a RawApiKeyRequirement>,
    origin: Option<&'a RawOriginPolicy>,
    ip: Option<&'a RawIpPolicy>,
    scopes: Option<&'a RawScopes>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOriginPolicy {
    #[serde(default)]
    allowed: Vec<String>,
    #[serde(default)]
    tenant_claim: Option<String>,
    #[serde(default = "defaults::allow")]
    missing: Admit,
    #[serde(default = "defaults::deny")]
    null: Admit,
    #[serde(default = "defaults::yes")]
    enforce: bool,
    #[serde(default)]
    cors: Option<RawCors>,
}

/// Whether a request without an Origin (or with `Origin: null`) is let through.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Admit {
    Allow,
    Deny,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCors {
    #[serde(default = "defaults::preflight")]
    preflight: PreflightMode,
    #[serde(default = "defaults::cors_methods")]
    allow_methods: Vec<String>,
    #[serde(default = "defaults::cors_headers")]
    allow_headers: Vec<String>,
    #[serde(default)]
    expose_headers: Vec<String>,
    #[serde(default = "defaults::cors_max_age_s")]
    max_age_s: u32,
    #[serde(default)]
    allow_credentials: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum PreflightMode {
    Answer,
    Pass,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIpPolicy {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    trusted_hops: u8,
    #[serde(default = "defaults::yes")]
    enforce: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScopes {
    #[serde(default)]
    any_of: Option<Vec<String>>,
    #[serde(default)]
    all_of: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    #[serde(default)]
    includes: Vec<String>,
    #[serde(default)]
    permissions: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    origins: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevelopment {
    #[serde(default)]
    disable_origin_checks: bool,
    #[serde(default)]
    disable_ip_checks: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    methods: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwtRequirement {
    providers: Vec<String>,
}

mod defaults {
    use super::RawTokenSource;

    pub fn max_token_bytes() -> usize {
        8192
    }
    pub fn realm() -> String {
        "edge-auth".into()
    }
    pub fn cache_entries() -> usize {
        4096
    }
    pub fn leeway_s() -> u64 {
        60
    }
    pub fn yes() -> bool {
        true
    }
    pub fn timeout_ms() -> u64 {
        5000
    }
    pub fn refresh_interval_s() -> u64 {
        300
    }
    pub fn min_refetch_interval_s() -> u64 {
        30
    }
    pub fn max_jwks_bytes() -> usize {
        64 * 1024
    }
    pub fn allow() -> super::Admit {
        super::Admit::Allow
    }
    pub fn deny() -> super::Admit {
        super::Admit::Deny
    }
    pub fn preflight() -> super::PreflightMode {
        super::PreflightMode::Answer
    }
    pub fn cors_methods() -> Vec<String> {
        ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
            .map(String::from)
            .to_vec()
    }
    pub fn cors_headers() -> Vec<String> {
        ["authorization", "content-type"].map(String::from).to_vec()
    }
    pub fn cors_max_age_s() -> u32 {
        600
    }
    pub fn context_prefix() -> String {
        crate::context::DEFAULT_PREFIX.into()
    }
    pub fn tenant_claim() -> String {
        "tenant".into()
    }
    pub fn service_timeout_ms() -> u64 {
        1000
    }
    pub fn revocations_path() -> String {
        "/internal/v1/revocations".into()
    }
    pub fn revocation_poll_s() -> u64 {
        5
    }
    pub fn revocation_max_staleness_s() -> u64 {
        60
    }
    pub fn max_feed_bytes() -> usize {
        1024 * 1024
    }
    pub fn max_revocation_entries() -> usize {
        100_000
    }
    pub fn scope_claims() -> Vec<String> {
        vec!["scope".into(), "scp".into()]
    }
    pub fn api_key_sources() -> Vec<RawTokenSource> {
        let header = |name: &str, scheme: Option<&str>| RawTokenSource {
            header: Some(name.into()),
            scheme: scheme.map(String::from),
            cookie: None,
            query: None,
        };
        vec![header("x-api-key", None), header("authorization", Some("ApiKey"))]
    }
    pub fn key_prefix() -> String {
        "sk_".into()
    }
    pub fn key_hex_digits() -> usize {
        64
    }
    pub fn lookup_path() -> String {
        "/internal/v1/api-keys/lookup".into()
    }
    pub fn max_cache_ttl_s() -> u64 {
        300
    }
    pub fn negative_cache_ttl_s() -> u64 {
        30
    }
    pub fn shared_cache_slots() -> usize {
        8192
    }
    pub fn local_cache_entries() -> usize {
        1024
    }
    pub fn max_lookup_bytes() -> usize {
        64 * 1024
    }
    pub fn max_pending_lookups() -> usize {
        1024
    }
    pub fn breaker_failures() -> u32 {
        5
    }
    pub fn breaker_open_s() -> u64 {
        10
    }
    pub fn token_sources() -> Vec<RawTokenSource> {
        vec![RawTokenSource {
            header: Some("authorization".into()),
            scheme: Some("Bearer".into()),
            cookie: None,
            query: None,
        }]
    }
}

// ---------------------------------------------------------------------------
// The compiled configuration, as the request path uses it.

/// A validated configuration, with every key decoded.
#[derive(Debug)]
pub struct Config {
    pub providers: Vec<Provider>,
    pub routes: RouteTable,
    pub token_cache_entries: usize,
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
}

/// The identity headers written upstream for every authenticated request.
pub struct Context {
    pub headers: ContextHeaders,
    /// The HMAC-SHA256 key that signs them, from the environment. Never printed.
    pub signing_key: Option<Vec<u8>>,
    /// The claim naming the caller's tenant.
    pub tenant_claim: String,
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

/// API keys: where they are read, their format, and how lookups are cached.
#[derive(Debug)]
pub struct ApiKeys {
    pub sources: Vec<TokenSource>,
    pub format: KeyFormat,
    pub lookup_path: String,
    pub max_cache_ttl_s: u64,
    pub negative_cache_ttl_s: u64,
    /// Answer slots in the cross-worker cache (proxy-wasm shared data).
    pub shared_cache_slots: usize,
    /// Decoded answers kept per worker.
    pub local_cache_entries: usize,
    pub max_response_bytes: usize,
    /// Distinct keys waiting for a lookup at once, per worker; more are refused with 503.
    pub max_pending_lookups: usize,
    /// How the client address is established for a key's `ip_allowlist`
    /// on a rule without an `ip` policy of its own.
    pub trusted_hops: u8,
    pub envoy_appends: bool,
    pub breaker: BreakerPolicy,
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
    pub tenant_claim: String,
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
}

/// Where and how to fetch a provider's JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub timeout_ms: u64,
    pub refresh_interval_s: u64,
    pub min_refetch_interval_s: u64,
    pub max_response_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RequiredClaim {
    pub name: String,
    pub one_of: Option<Vec<Value>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimHeader {
    pub claim: String,
    pub header: String,
}

/// Headers the filter must never write: they would change how the request is
/// routed or framed, or carry credentials.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "authorization",
    "cookie",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-request-id",
    "x-envoy-original-path",
];

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
    if !(256..=65536).contains(&raw.max_token_bytes) {
        return Err(err("max_token_bytes", "must be between 256 and 65536"));
    }
    if raw.token_cache.max_entries > 100_000 {
        return Err(err(
            "token_cache.max_entries",
            "must be at most 100000 (entries are allocated up front, per worker)",
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

    let mut written = Vec::new();
    let mut providers = Vec::with_capacity(raw.providers.len());
    let mut names = HashSet::new();
    let mut issuers = HashSet::new();
    for (i, p) in raw.providers.into_iter().enumerate() {
        let at = format!("providers[{i}]");
        if !names.insert(p.name.clone()) {
            return Err(err(
                format!("{at}.name"),
                format!("duplicate provider name \"{}\"", p.name),
            ));
        }
        if !issuers.insert(p.issuer.clone()) {
            return Err(err(
                format!("{at}.issuer"),
                format!("another provider already has issuer \"{}\"", p.issuer),
            ));
        }
        let provider = compile_provider(p, &at, env)?;
        for h in provider
            .claim_headers
            .iter()
            .map(|c| &c.header)
            .chain(provider.payload_header.iter())
        {
            if !written.contains(h) {
                written.push(h.clone());
            }
        }
        providers.push(provider);
    }
    // A provider's written headers must not be another provider's token source.
    for (i, p) in providers.iter().enumerate() {
        for s in &p.sources {
            if let TokenSource::Header { name, .. } = s {
                if written.contains(name) {
                    return Err(err(
                        format!("providers[{i}].token_sources"),
                        format!("header \"{name}\" is both a token source and a header the filter writes"),
                    ));
                }
            }
        }
    }

    let provider_index = |names: &[String], at: &str| -> Result<Vec<usize>, ConfigError> {
        if names.is_empty() {
            return Err(err(at, "must name at least one provider"));
        }
        names
            .iter()
            .enumerate()
            .map(|(j, n)| {
                providers
                    .iter()
                    .position(|p| &p.name == n)
                    .ok_or_else(|| err(format!("{at}[{j}]"), format!("no provider is named \"{n}\"")))
            })
            .collect()
    };
    let mut warnings = Vec::new();
    if raw.development.disable_origin_checks {
        warnings.push("development.disable_origin_checks is set: no rule checks Origin headers".to_owned());
    }
    if raw.development.disable_ip_checks {
        warnings.push("development.disable_ip_checks is set: no rule checks client addresses".to_owned());
    }
    let roles = compile_roles(&raw.roles)?;
    let mut tenants = HashMap::with_capacity(raw.tenants.len());
    for (name, t) in &raw.tenants {
        if name.is_empty() {
            return Err(err("tenants", "a tenant name must not be empty"));
        }
        if t.origins.is_empty() {
            return Err(err(format!("tenants.{name}.origins"), "list at least one origin"));
        }
        let list = OriginList::parse(&t.origins).map_err(|(j, m)| err(format!("tenants.{name}.origins[{j}]"), m))?;
        tenants.insert(name.clone(), list);
    }
    let api_keys = match &raw.api_keys {
        None => None,
        Some(k) => Some(compile_api_keys(k, raw.envoy_appends_xff)?),
    };
    if api_keys.is_some() && raw.auth_service.is_none() {
        return Err(err("api_keys", "needs the top-level auth_service to look keys up"));
    }
    let dev = &raw.development;
    let policy = |r: RawPolicy<'_>, at: &str, warnings: &mut Vec<String>| -> Result<Policy, ConfigError> {
        let requirement = match (r.public, r.jwt, r.api_key) {
            (true, None, None) => Requirement::Public,
            (false, Some(j), None) => Requirement::Jwt {
                providers: provider_index(&j.providers, &format!("{at}.jwt.providers"))?,
            },
            (false, None, Some(k)) => {
                if api_keys.is_none() {
                    return Err(err(
                        format!("{at}.api_key"),
                        "needs the top-level api_keys (and auth_service) configuration",
                    ));
                }
                if k.stale_if_error_s > 3600 {
                    return Err(err(format!("{at}.api_key.stale_if_error_s"), "must be at most 3600"));
                }
                Requirement::ApiKey {
                    stale_if_error_ms: k.stale_if_error_s * 1000,
                }
            }
            (false, None, None) => {
                return Err(err(
                    at,
                    "a rule needs \"public\": true, a \"jwt\" or an \"api_key\" requirement",
                ))
            }
            _ => {
                return Err(err(
                    at,
                    "a rule has exactly one of \"public\": true, \"jwt\" or \"api_key\"",
                ))
            }
        };
        let origin = match r.origin {
            None => None,
            Some(o) => {
                let rule = compile_origin(o, &format!("{at}.origin"), &tenants, &requirement)?;
                if !o.enforce {
                    warnings.push(format!("{at}.origin.enforce is false: this rule does not check Origin"));
                    None
                } else if dev.disable_origin_checks {
                    None
                } else {
                    Some(rule)
                }
            }
        };
        let ip = match r.ip {
            None => None,
            Some(i) => {
                let policy = compile_ip(i, &format!("{at}.ip"), raw.envoy_appends_xff)?;
                if !i.enforce {
                    warnings.push(format!(
                        "{at}.ip.enforce is false: this rule does not check client addresses"
                    ));
                    None
                } else if dev.disable_ip_checks {
                    None
                } else {
                    Some(policy)
                }
            }
        };
        let scopes = match r.scopes {
            None => None,
            Some(_) if requirement == Requirement::Public => {
                return Err(err(
                    format!("{at}.scopes"),
                    "a public rule has no token to take scopes from",
                ))
            }
            Some(sc) => Some(compile_scopes(sc, &format!("{at}.scopes"))?),
        };
        Ok(Policy {
            requirement,
            origin,
            ip,
            scopes,
        })
    };

    let mut rules = Vec::with_capacity(raw.rules.len());
    let mut rule_names = HashSet::new();
    for (i, r) in raw.rules.iter().enumerate() {
        let at = format!("rules[{i}]");
        if r.name.is_empty() || !rule_names.insert(r.name.as_str()) {
            return Err(err(format!("{at}.name"), "rule names must be non-empty and unique"));
        }
        let path = match (&r.matcher.path, &r.matcher.prefix) {
            (Some(p), None) => PathMatch::Exact(check_match_path(p, &format!("{at}.match.path"))?),
            (None, Some(p)) => PathMatch::Prefix(check_match_path(p, &format!("{at}.match.prefix"))?),
            _ => return Err(err(format!("{at}.match"), "give exactly one of \"path\" or \"prefix\"")),
        };
        let mut methods = Vec::with_capacity(r.matcher.methods.len());
        for (j, m) in r.matcher.methods.iter().enumerate() {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(err(
                    format!("{at}.match.methods[{j}]"),
                    format!("\"{m}\" is not an upper-case HTTP method"),
                ));
            }
            methods.push(m.clone());
        }
        let raw_policy = RawPolicy {
            public: r.public,
            jwt: r.jwt.as_ref(),
            api_key: r.api_key.as_ref(),
            origin: r.origin.as_ref(),
            ip: r.ip.as_ref(),
            scopes: r.scopes.as_ref(),
        };
        rules.push(Rule {
            name: r.name.clone(),
            path,
            methods,
            policy: policy(raw_policy, &at, &mut warnings)?,
        });
    }
    let default = match &raw.default_rule {
        None => None,
        Some(d) => {
            let raw_policy = RawPolicy {
                public: d.public,
                jwt: d.jwt.as_ref(),
                api_key: d.api_key.as_ref(),
                origin: d.origin.as_ref(),
                ip: d.ip.as_ref(),
                scopes: d.scopes.as_ref(),
            };
            Some(policy(raw_policy, "default_rule", &mut warnings)?)
        }
    };

    let context = match raw.context {
        None => None,
        Some(c) => Some(compile_context(c, env)?),
    };
    if let Some(c) = &context {
        for name in c.headers.names() {
            if written.iter().any(|w| w == name) {
                return Err(err(
                    "context.prefix",
                    format!("\"{name}\" is also a claim or payload header"),
                ));
            }
            written.push(name.to_owned());
        }
    }
    if let Some(k) = &api_keys {
        for (i, s) in k.sources.iter().enumerate() {
            if let TokenSource::Header { name, .. } = s {
                if written.contains(name) {
                    return Err(err(
                        format!("api_keys.sources[{i}]"),
                        format!("header \"{name}\" is both a key source and a header the filter writes"),
                    ));
                }
            }
        }
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
    if let Some(i) = providers.iter().position(|p| p.check_revocation) {
        if auth_service.is_none() {
            return Err(err(
                format!("providers[{i}].check_revocation"),
                "needs the top-level auth_service to poll revocations from",
            ));
        }
    }
    let mut all_warnings = Vec::with_capacity(warnings.len() + 2);
    if rules.is_empty() && providers.is_empty() && default.is_none() {
        all_warnings.push("no rules and no providers: every request is denied".to_owned());
    }
    all_warnings.extend(warnings.into_iter().map(|w| format!("CHECK DISABLED: {w}")));
    if default.as_ref().is_some_and(|p| p.requirement == Requirement::Public) {
        all_warnings.push("default_rule is public: requests no rule matches go upstream unauthenticated".to_owned());
    }
    Ok(Config {
        providers,
        routes: RouteTable::new(rules, default),
        token_cache_entries: raw.token_cache.max_entries,
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
        warnings: all_warnings,
    })
}

fn compile_context(c: RawContext, env: &dyn Fn(&str) -> Option<String>) -> Result<Context, ConfigError> {
    let headers = ContextHeaders::new(&c.prefix).map_err(|m| err("context.prefix", m))?;
    if c.tenant_claim.is_empty() {
        return Err(err("context.tenant_claim", "must not be empty"));
    }
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
        tenant_claim: c.tenant_claim,
    })
}

/// The `:authority` of calls to a cluster: as configured, else the cluster's name.
fn authority(configured: Option<String>, cluster: &str, at: &str) -> Result<String, ConfigError> {
    let authority = configured.unwrap_or_else(|| cluster.to_owned());
    if authority.is_empty() || authority.bytes().any(|b| b <= 0x20 || b == 0x7f) {
        return Err(err(format!("{at}.authority"), "must be a host name"));
    }
    Ok(authority)
}

fn compile_auth_service(a: RawAuthService, env: &dyn Fn(&str) -> Option<String>) -> Result<AuthService, ConfigError> {
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
    if !(100..=60_000).contains(&a.timeout_ms) {
        return Err(err(format!("{at}.timeout_ms"), "must be between 100 and 60000"));
    }
    if !a.revocations_path.starts_with('/') || a.revocations_path.bytes().any(|b| b <= 0x20 || b == 0x7f || b == b'?') {
        return Err(err(
            format!("{at}.revocations_path"),
            "must be an absolute path without a query",
        ));
    }
    if !(1..=300).contains(&a.revocation_poll_s) {
        return Err(err(format!("{at}.revocation_poll_s"), "must be between 1 and 300"));
    }
    if a.revocation_max_staleness_s < 2 * a.revocation_poll_s || a.revocation_max_staleness_s > 3600 {
        return Err(err(
            format!("{at}.revocation_max_staleness_s"),
            "must be at least twice revocation_poll_s and at most 3600",
        ));
    }
    if !(1024..=16 * 1024 * 1024).contains(&a.max_response_bytes) {
        return Err(err(
            format!("{at}.max_response_bytes"),
            "must be between 1024 and 16777216",
        ));
    }
    if !(1..=1_000_000).contains(&a.max_revocation_entries) {
        return Err(err(
            format!("{at}.max_revocation_entries"),
            "must be between 1 and 1000000",
        ));
    }
    if a.tenant_claim.is_empty() || a.tenant_claim.len() > 256 {
        return Err(err(format!("{at}.tenant_claim"), "must be 1 to 256 bytes"));
    }
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
        tenant_claim: a.tenant_claim,
    })
}

fn credential_headers(places: &Places) -> Vec<String> {
    let mut out: Vec<String> = ["proxy-authorization", "cookie"].map(String::from).to_vec();
    out.extend(places.header_names().map(String::from));
    out
}

fn compile_roles(raw: &BTreeMap<String, RawRole>) -> Result<RoleHierarchy, ConfigError> {
    let defs: Vec<(String, RoleDef)> = raw
        .iter()
        .map(|(name, r)| {
            (
                name.clone(),
                RoleDef {
                    includes: r.includes.clone(),
                    permissions: r.permissions.clone(),
                },
            )
        })
        .collect();
    for (name, def) in &defs {
        if let Some(p) = def.permissions.iter().find(|p| !valid_scope_token(p)) {
            return Err(err(
                format!("roles.{name}.permissions"),
                format!("\"{p}\" is not a valid scope token"),
            ));
        }
    }
    RoleHierarchy::compile(&defs).map_err(|(role, message)| err(format!("roles.{role}"), message))
}

fn compile_origin(
    o: &RawOriginPolicy,
    at: &str,
    tenants: &HashMap<String, OriginList>,
    requirement: &Requirement,
) -> Result<OriginRule, ConfigError> {
    let allowed = OriginList::parse(&o.allowed).map_err(|(j, m)| err(format!("{at}.allowed[{j}]"), m))?;
    if let Some(claim) = &o.tenant_claim {
        if claim.is_empty() {
            return Err(err(format!("{at}.tenant_claim"), "must not be empty"));
        }
        if !matches!(requirement, Requirement::Jwt { .. }) {
            return Err(err(
                format!("{at}.tenant_claim"),
                "only a jwt rule has a token to take the tenant from (an API key brings its own origins)",
            ));
        }
        if tenants.is_empty() {
            return Err(err(format!("{at}.tenant_claim"), "no tenants are configured"));
        }
    } else if allowed.is_empty() && !matches!(requirement, Requirement::ApiKey { .. }) {
        return Err(err(
            format!("{at}.allowed"),
            "list at least one origin (or set tenant_claim)",
        ));
    }
    let cors = match &o.cors {
        None => None,
        Some(c) => Some(compile_cors(c, &format!("{at}.cors"))?),
    };
    Ok(OriginRule {
        allowed,
        tenant_claim: o.tenant_claim.clone(),
        allow_missing: o.missing == Admit::Allow,
        allow_null: o.null == Admit::Allow,
        cors,
    })
}

fn compile_cors(c: &RawCors, at: &str) -> Result<CorsRule, ConfigError> {
    if c.allow_methods.is_empty() {
        return Err(err(format!("{at}.allow_methods"), "list at least one method"));
    }
    for (j, m) in c.allow_methods.iter().enumerate() {
        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(err(
                format!("{at}.allow_methods[{j}]"),
                format!("\"{m}\" is not an upper-case method"),
            ));
        }
    }
    let names = |list: &[String], field: &str| -> Result<Vec<String>, ConfigError> {
        list.iter()
            .enumerate()
            .map(|(j, h)| {
                header_name(h).ok_or_else(|| err(format!("{at}.{field}[{j}]"), format!("\"{h}\" is not a header name")))
            })
            .collect()
    };
    if c.max_age_s > 86_400 {
        return Err(err(format!("{at}.max_age_s"), "at most 86400"));
    }
    Ok(CorsRule {
        answer_preflight: c.preflight == PreflightMode::Answer,
        cors: Cors {
            allow_methods: c.allow_methods.clone(),
            allow_headers: names(&c.allow_headers, "allow_headers")?,
            expose_headers: names(&c.expose_headers, "expose_headers")?,
            max_age_s: c.max_age_s,
            allow_credentials: c.allow_credentials,
        },
    })
}

fn compile_ip(i: &RawIpPolicy, at: &str, envoy_appends: Option<bool>) -> Result<IpPolicy, ConfigError> {
    let allow = IpList::parse(&i.allow).map_err(|(j, m)| err(format!("{at}.allow[{j}]"), m))?;
    let deny = IpList::parse(&i.deny).map_err(|(j, m)| err(format!("{at}.deny[{j}]"), m))?;
    if allow.is_empty() && deny.is_empty() {
        return Err(err(at, "give an allow or a deny list"));
    }
    if i.trusted_hops > 10 {
        return Err(err(format!("{at}.trusted_hops"), "at most 10"));
    }
    let envoy_appends = xff_appends(i.trusted_hops, envoy_appends, at)?;
    Ok(IpPolicy {
        allow,
        deny,
        trusted_hops: i.trusted_hops,
        envoy_appends,
    })
}

/// Whether Envoy appended its own X-Forwarded-For entry, as the client
/// address rules need it. Which entry is the client's depends on it and a
/// wrong guess hands the choice to the client, so with trusted hops the
/// top-level `envoy_appends_xff` must say it.
fn xff_appends(trusted_hops: u8, configured: Option<bool>, at: &str) -> Result<bool, ConfigError> {
    match (trusted_hops, configured) {
        (0, v) => Ok(v.unwrap_or(true)),
        (_, Some(v)) => Ok(v),
        (_, None) => Err(err(
            format!("{at}.trusted_hops"),
            "set the top-level envoy_appends_xff: true when the HTTP connection manager has \
             use_remote_address: true (Envoy appends its own entry), false otherwise",
        )),
    }
}

fn compile_scopes(sc: &RawScopes, at: &str) -> Result<ScopeRequirement, ConfigError> {
    let (list, field, all) = match (&sc.any_of, &sc.all_of) {
        (Some(l), None) => (l, "any_of", false),
        (None, Some(l)) => (l, "all_of", true),
        _ => return Err(err(at, "give exactly one of \"any_of\" or \"all_of\"")),
    };
    if list.is_empty() {
        return Err(err(format!("{at}.{field}"), "list at least one scope"));
    }
    if let Some((j, bad)) = list.iter().enumerate().find(|(_, s)| !valid_scope_token(s)) {
        return Err(err(
            format!("{at}.{field}[{j}]"),
            format!("\"{bad}\" is not a valid scope token"),
        ));
    }
    Ok(if all {
        ScopeRequirement::AllOf(list.clone())
    } else {
        ScopeRequirement::AnyOf(list.clone())
    })
}

/// Route paths are matched against the normalised request path, so a rule
/// must itself be in normal form or it could never match.
fn check_match_path(p: &str, at: &str) -> Result<String, ConfigError> {
    match crate::path::normalize(p) {
        Ok(n) if n.query.is_none() && n.path == p => Ok(p.to_owned()),
        Ok(n) => Err(err(
            at,
            format!("\"{p}\" is not a normalised path (it would be \"{}\")", n.path),
        )),
        Err(e) => Err(err(at, format!("\"{p}\": {}", e.as_str()))),
    }
}

fn compile_provider(p: RawProvider, at: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Provider, ConfigError> {
    if p.name.is_empty()
        || p.name.len() > 64
        || !p
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(err(format!("{at}.name"), "1 to 64 characters among a-z A-Z 0-9 - _"));
    }
    if p.issuer.is_empty() {
        return Err(err(format!("{at}.issuer"), "must not be empty"));
    }
    if p.audiences.is_empty() || p.audiences.iter().any(String::is_empty) {
        return Err(err(
            format!("{at}.audiences"),
            "list at least one non-empty audience: tokens for other audiences are refused",
        ));
    }
    if p.algorithms.is_empty() {
        return Err(err(format!("{at}.algorithms"), "list at least one algorithm"));
    }
    let mut algorithms = Vec::new();
    for (j, name) in p.algorithms.iter().enumerate() {
        let alg = Algorithm::from_name(name).ok_or_else(|| {
            err(format!("{at}.algorithms[{j}]"), format!("unknown algorithm \"{name}\" (supported: HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA)"))
        })?;
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    if p.leeway_s > 300 {
        return Err(err(format!("{at}.leeway_s"), "at most 300 seconds"));
    }
    if p.max_lifetime_s == Some(0) {
        return Err(err(format!("{at}.max_lifetime_s"), "must be positive when set"));
    }

    let mut static_keys = KeySet::default();
    if let Some(jwks) = &p.jwks {
        let (set, _) = parse_jwks(jwks, &algorithms, true).map_err(|e| err(format!("{at}.jwks"), e.0))?;
        static_keys.extend(set);
    }
    for (j, k) in p.pem_keys.iter().enumerate() {
        let kat = format!("{at}.pem_keys[{j}]");
        let alg = allowed_alg(&k.alg, &algorithms, &format!("{kat}.alg"))?;
        let key = BoundKey::from_pem(alg, &k.pem, k.kid.clone()).map_err(|e| err(format!("{kat}.pem"), e.0))?;
        static_keys.extend(KeySet::new(vec![key]));
    }
    for (j, s) in p.hmac_secrets.iter().enumerate() {
        let sat = format!("{at}.hmac_secrets[{j}]");
        let alg = allowed_alg(&s.alg, &algorithms, &format!("{sat}.alg"))?;
        if alg.family() != KeyFamily::Hmac {
            return Err(err(format!("{sat}.alg"), format!("{alg} is not an HMAC algorithm")));
        }
        let value = env(&s.env).ok_or_else(|| {
            err(
                format!("{sat}.env"),
                format!(
                    "environment variable \"{}\" is not set in the VM (list it in vm_config.environment_variables)",
                    s.env
                ),
            )
        })?;
        let secret = decode_secret(&value, s.encoding).ok_or_else(|| {
            err(
                format!("{sat}.encoding"),
                format!("\"{}\" is not valid {:?}", s.env, s.encoding),
            )
        })?;
        let key = BoundKey::hmac(alg, &secret, s.kid.clone()).map_err(|e| err(format!("{sat}.env"), e.0))?;
        static_keys.extend(KeySet::new(vec![key]));
    }

    let remote = match p.remote_jwks {
        None => None,
        Some(r) => Some(compile_remote(r, &format!("{at}.remote_jwks"))?),
    };
    if static_keys.is_empty() && remote.is_none() {
        return Err(err(at, "no keys: give jwks, pem_keys, hmac_secrets or remote_jwks"));
    }
    // Algorithms without any key would make every such token fail; say so now.
    if remote.is_none() {
        for (j, alg) in algorithms.iter().enumerate() {
            if static_keys.iter().all(|k| k.alg() != *alg) {
                return Err(err(
                    format!("{at}.algorithms[{j}]"),
                    format!("no configured key is bound to {alg}"),
                ));
            }
        }
    }

    let mut required_claims = Vec::with_capacity(p.required_claims.len());
    for (j, c) in p.required_claims.into_iter().enumerate() {
        if c.name.is_empty() {
            return Err(err(format!("{at}.required_claims[{j}].name"), "must not be empty"));
        }
        if c.one_of.as_ref().is_some_and(Vec::is_empty) {
            return Err(err(
                format!("{at}.required_claims[{j}].one_of"),
                "must list at least one value",
            ));
        }
        required_claims.push(RequiredClaim {
            name: c.name,
            one_of: c.one_of,
        });
    }

    if p.token_sources.is_empty() {
        return Err(err(format!("{at}.token_sources"), "list at least one token source"));
    }
    let mut sources = Vec::with_capacity(p.token_sources.len());
    for (j, s) in p.token_sources.into_iter().enumerate() {
        sources.push(compile_source(s, &format!("{at}.token_sources[{j}]"))?);
    }

    let mut claim_headers = Vec::with_capacity(p.claim_headers.len());
    for (j, c) in p.claim_headers.into_iter().enumerate() {
        if c.claim.is_empty() {
            return Err(err(format!("{at}.claim_headers[{j}].claim"), "must not be empty"));
        }
        let header = written_header_name(&c.header, &format!("{at}.claim_headers[{j}].header"))?;
        if claim_headers.iter().any(|h: &ClaimHeader| h.header == header) {
            return Err(err(
                format!("{at}.claim_headers[{j}].header"),
                format!("\"{header}\" is written twice"),
            ));
        }
        claim_headers.push(ClaimHeader { claim: c.claim, header });
    }
    for (j, c) in p.scope_claims.iter().enumerate() {
        if c.is_empty() {
            return Err(err(format!("{at}.scope_claims[{j}]"), "must not be empty"));
        }
    }
    if p.role_claim.as_ref().is_some_and(String::is_empty) {
        return Err(err(format!("{at}.role_claim"), "must not be empty"));
    }
    let scopes = ScopeSource {
        scope_claims: p.scope_claims,
        role_claim: p.role_claim,
    };
    let payload_header = match p.payload_header {
        None => None,
        Some(h) => Some(written_header_name(&h, &format!("{at}.payload_header"))?),
    };

    Ok(Provider {
        name: p.name,
        issuer: p.issuer,
        audiences: p.audiences,
        algorithms,
        static_keys,
        remote,
        leeway_s: p.leeway_s,
        max_lifetime_s: p.max_lifetime_s,
        require_expiration: p.require_expiration,
        required_claims,
        sources,
        claim_headers,
        payload_header,
        forward_token: p.forward_token,
        scopes,
        check_revocation: p.check_revocation,
    })
}

fn allowed_alg(name: &str, allowed: &[Algorithm], at: &str) -> Result<Algorithm, ConfigError> {
    let alg = Algorithm::from_name(name).ok_or_else(|| err(at, format!("unknown algorithm \"{name}\"")))?;
    if !allowed.contains(&alg) {
        return Err(err(at, format!("{alg} is not in the provider's algorithms")));
    }
    Ok(alg)
}

fn compile_remote(r: RawRemoteJwks, at: &str) -> Result<RemoteJwks, ConfigError> {
    if r.cluster.is_empty() {
        return Err(err(format!("{at}.cluster"), "must name an Envoy cluster"));
    }
    if !r.path.starts_with('/') || r.path.bytes().any(|b| b <= 0x20 || b == 0x7f) {
        return Err(err(
            format!("{at}.path"),
            "must be an absolute path such as /.well-known/jwks.json",
        ));
    }
    if !(100..=60_000).contains(&r.timeout_ms) {
        return Err(err(format!("{at}.timeout_ms"), "must be between 100 and 60000"));
    }
    if !(1..=86_400).contains(&r.refresh_interval_s) {
        return Err(err(format!("{at}.refresh_interval_s"), "must be between 1 and 86400"));
    }
    if !(1..=86_400).contains(&r.min_refetch_interval_s) {
        return Err(err(
            format!("{at}.min_refetch_interval_s"),
            "must be between 1 and 86400",
        ));
    }
    if !(1024..=1024 * 1024).contains(&r.max_response_bytes) {
        return Err(err(
            format!("{at}.max_response_bytes"),
            "must be between 1024 and 1048576",
        ));
    }
    let authority = authority(r.authority, &r.cluster, at)?;
    Ok(RemoteJwks {
        cluster: r.cluster,
        path: r.path,
        authority,
        timeout_ms: r.timeout_ms,
        refresh_interval_s: r.refresh_interval_s,
        min_refetch_interval_s: r.min_refetch_interval_s,
        max_response_bytes: r.max_response_bytes,
    })
}

fn compile_api_keys(k: &RawApiKeys, envoy_appends: Option<bool>) -> Result<ApiKeys, ConfigError> {
    let at = "api_keys";
    if k.sources.is_empty() {
        return Err(err(format!("{at}.sources"), "list at least one source"));
    }
    let mut sources = Vec::with_capacity(k.sources.len());
    for (i, s) in k.sources.iter().enumerate() {
        let source = compile_source(s.clone(), &format!("{at}.sources[{i}]"))?;
        if matches!(source, TokenSource::Cookie { .. }) {
            return Err(err(
                format!("{at}.sources[{i}].cookie"),
                "API keys are for servers, not browsers: use a header or a query parameter",
            ));
        }
        if sources.contains(&source) {
            return Err(err(format!("{at}.sources[{i}]"), "listed twice"));
        }
        sources.push(source);
    }
    let prefix_ok = |p: &str| {
        !p.is_empty() && p.len() <= 32 && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if !prefix_ok(&k.prefix) {
        return Err(err(
            format!("{at}.prefix"),
            "must be 1 to 32 characters A-Z a-z 0-9 _ -",
        ));
    }
    if !(32..=128).contains(&k.hex_digits) {
        return Err(err(format!("{at}.hex_digits"), "must be between 32 and 128"));
    }
    if !k.lookup_path.starts_with('/') || k.lookup_path.bytes().any(|b| b <= 0x20 || b == 0x7f || b == b'?') {
        return Err(err(
            format!("{at}.lookup_path"),
            "must be an absolute path without a query",
        ));
    }
    let ranges: [(&str, u64, u64, u64); 7] = [
        ("max_cache_ttl_s", k.max_cache_ttl_s, 1, 3600),
        ("negative_cache_ttl_s", k.negative_cache_ttl_s, 0, 300),
        ("shared_cache_slots", k.shared_cache_slots as u64, 1, 1_000_000),
        ("local_cache_entries", k.local_cache_entries as u64, 1, 100_000),
        ("max_response_bytes", k.max_response_bytes as u64, 1024, 1024 * 1024),
        ("max_pending_lookups", k.max_pending_lookups as u64, 1, 100_000),
        ("trusted_hops", u64::from(k.trusted_hops), 0, 10),
    ];
    for (field, value, lo, hi) in ranges {
        if !(lo..=hi).contains(&value) {
            return Err(err(format!("{at}.{field}"), format!("must be between {lo} and {hi}")));
        }
    }
    if !(1..=100).contains(&k.breaker.failure_threshold) {
        return Err(err(
            format!("{at}.breaker.failure_threshold"),
            "must be between 1 and 100",
        ));
    }
    if !(1..=600).contains(&k.breaker.open_s) {
        return Err(err(format!("{at}.breaker.open_s"), "must be between 1 and 600"));
    }
    let envoy_appends = xff_appends(k.trusted_hops, envoy_appends, at)?;
    Ok(ApiKeys {
        sources,
        format: KeyFormat {
            prefix: k.prefix.clone(),
            hex_len: k.hex_digits,
        },
        lookup_path: k.lookup_path.clone(),
        max_cache_ttl_s: k.max_cache_ttl_s,
        negative_cache_ttl_s: k.negative_cache_ttl_s,
        shared_cache_slots: k.shared_cache_slots,
        local_cache_entries: k.local_cache_entries,
        max_response_bytes: k.max_response_bytes,
        max_pending_lookups: k.max_pending_lookups,
        trusted_hops: k.trusted_hops,
        envoy_appends,
        breaker: BreakerPolicy {
            failure_threshold: k.breaker.failure_threshold,
            open_ms: k.breaker.open_s * 1000,
        },
    })
}

fn compile_source(s: RawTokenSource, at: &str) -> Result<TokenSource, ConfigError> {
    match (s.header, s.cookie, s.query) {
        (Some(h), None, None) => {
            let name =
                header_name(&h).ok_or_else(|| err(format!("{at}.header"), format!("\"{h}\" is not a header name")))?;
            if let Some(scheme) = &s.scheme {
                if scheme.is_empty()
                    || !scheme
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
                {
                    return Err(err(
                        format!("{at}.scheme"),
                        format!("\"{scheme}\" is not an authentication scheme"),
                    ));
                }
            }
            Ok(TokenSource::Header { name, scheme: s.scheme })
        }
        (None, Some(c), None) if s.scheme.is_none() => {
            if c.is_empty()
                || !c
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
            {
                return Err(err(format!("{at}.cookie"), format!("\"{c}\" is not a cookie name")));
            }
            Ok(TokenSource::Cookie { name: c })
        }
        (None, None, Some(q)) if s.scheme.is_none() => {
            if q.is_empty() || !q.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
                return Err(err(
                    format!("{at}.query"),
                    format!("\"{q}\" must be a plain parameter name (A-Z a-z 0-9 - . _ ~)"),
                ));
            }
            Ok(TokenSource::Query { name: q })
        }
        _ => Err(err(
            at,
            "give exactly one of \"header\" (with optional \"scheme\"), \"cookie\" or \"query\"",
        )),
    }
}

/// Lower-cases and checks an HTTP header name (RFC 9110 token, no pseudo-headers).
fn header_name(h: &str) -> Option<String> {
    let ok = !h.is_empty()
        && h.len() <= 128
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    ok.then(|| h.to_ascii_lowercase())
}

fn written_header_name(h: &str, at: &str) -> Result<String, ConfigError> {
    let name = header_name(h).ok_or_else(|| err(at, format!("\"{h}\" is not a header name")))?;
    if RESERVED_HEADERS.contains(&name.as_str()) || name.starts_with("x-envoy-") {
        return Err(err(at, format!("\"{name}\" cannot be written by the filter")));
    }
    Ok(name)
}

fn decode_secret(value: &str, encoding: SecretEncoding) -> Option<Vec<u8>> {
    match encoding {
        SecretEncoding::Utf8 => Some(value.as_bytes().to_vec()),
        SecretEncoding::Hex => {
            let v = value.trim();
            if !v.len().is_multiple_of(2) {
                return None;
            }
            (0..v.len())
                .step_by(2)
                .map(|i| v.get(i..i + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
                .collect()
        }
        SecretEncoding::Base64 => {
            let v: String = value
                .trim()
                .trim_end_matches('=')
                .chars()
                .map(|c| match c {
                    '+' => '-',
                    '/' => '_',
                    c => c,
                })
                .collect();
            crate::b64::decode_url(&v)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn env(name: &str) -> Option<String> {
        match name {
            "HS_SECRET" => Some(SECRET.into()),
            "SHORT" => Some("short".into()),
            "HEX" => Some("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff".into()),
            _ => None,
        }
    }

    fn base() -> Value {
        json!({
            "providers": [{
                "name": "demo",
                "issuer": "https://issuer.example",
                "audiences": ["api"],
                "algorithms": ["HS256"],
                "hmac_secrets": [{"env": "HS_SECRET", "alg": "HS256"}],
                "claim_headers": [{"claim": "sub", "header": "X-Auth-Subject"}],
                "payload_header": "x-jwt-payload"
            }],
            "rules": [
                {"name": "health", "match": {"path": "/health"}, "public": true},
                {"name": "api", "match": {"prefix": "/api/", "methods": ["GET"]}, "jwt": {"providers": ["demo"]}}
            ]
        })
    }

    fn parse_value(v: &Value) -> Result<Config, ConfigError> {
        parse(v.to_string().as_bytes(), &env)
    }

    /// Applies `edit` to a copy of the base config and returns the error it causes.
    fn error_of(edit: impl FnOnce(&mut Value)) -> ConfigError {
        let mut v = base();
        edit(&mut v);
        parse_value(&v).expect_err("config should be refused")
    }

    #[test]
    fn base_config_compiles() {
        let c = parse_value(&base()).unwrap();
        assert_eq!(c.providers.len(), 1);
        assert_eq!(c.providers[0].static_keys.len(), 1);
        assert_eq!(
            c.written_headers,
            vec!["x-auth-subject".to_string(), "x-jwt-payload".to_string()]
        );
        assert_eq!(c.max_token_bytes, 8192);
        assert!(c.providers[0].require_expiration);
        assert_eq!(c.providers[0].leeway_s, 60);
        assert!(!c.providers[0].forward_token);
        assert_eq!(
            c.providers[0].sources,
            vec![TokenSource::Header {
                name: "authorization".into(),
                scheme: Some("Bearer".into())
            }]
        );
    }

    #[test]
    fn errors_name_the_field() {
        type Edit = Box<dyn FnOnce(&mut Value)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|v| v["bogus"] = json!(1)), "bogus"),
            (Box::new(|v| v["providers"][0]["audience"] = json!("x")), "audience"),
            (
                Box::new(|v| v["providers"][0]["algorithms"] = json!(["HS256", "none"])),
                "providers[0].algorithms[1]",
            ),
            (
                Box::new(|v| v["providers"][0]["algorithms"] = json!(["HS999"])),
                "providers[0].algorithms[0]",
            ),
            (
                Box::new(|v| v["providers"][0]["algorithms"] = json!(["HS256", "RS256"])),
                "providers[0].algorithms[1]",
            ),
            (
                Box::new(|v| v["providers"][0]["hmac_secrets"][0]["env"] = json!("MISSING")),
                "providers[0].hmac_secrets[0].env",
            ),
            (
                Box::new(|v| v["providers"][0]["hmac_secrets"][0]["env"] = json!("SHORT")),
                "providers[0].hmac_secrets[0].env",
            ),
            (
                Box::new(|v| v["providers"][0]["hmac_secrets"][0]["alg"] = json!("RS256")),
                "providers[0].hmac_secrets[0].alg",
            ),
            (
                Box::new(|v| v["providers"][0]["audiences"] = json!([])),
                "providers[0].audiences",
            ),
            (
                Box::new(|v| v["providers"][0]["leeway_s"] = json!(3600)),
                "providers[0].leeway_s",
            ),
            (
                Box::new(|v| v["providers"][0]["leeway_s"] = json!(-1)),
                "providers[0].leeway_s",
            ),
            (
                Box::new(|v| v["providers"][0]["jwks"] = json!({"keys": [{"kty": "oct", "k": "AA"}]})),
                "providers[0].jwks",
            ),
            (
                Box::new(|v| v["providers"][0]["pem_keys"] = json!([{"alg": "HS256", "pem": "x"}])),
                "providers[0].pem_keys[0].pem",
            ),
            (
                Box::new(|v| v["providers"][0]["claim_headers"][0]["header"] = json!("authorization")),
                "providers[0].claim_headers[0].header",
            ),
            (
                Box::new(|v| v["providers"][0]["claim_headers"][0]["header"] = json!("bad header")),
                "providers[0].claim_headers[0].header",
            ),
            (
                Box::new(|v| v["providers"][0]["token_sources"] = json!([{"header": "x-auth-subject"}])),
                "providers[0].token_sources",
            ),
            (
                Box::new(|v| v["providers"][0]["token_sources"] = json!([{"cookie": "a", "query": "b"}])),
                "providers[0].token_sources[0]",
            ),
            (
                Box::new(|v| v["providers"][0]["token_sources"] = json!([{"query": "a b"}])),
                "providers[0].token_sources[0].query",
            ),
            (
                Box::new(|v| v["providers"][0]["remote_jwks"] = json!({"cluster": "c", "path": "jwks"})),
                "providers[0].remote_jwks.path",
            ),
            (
                Box::new(|v| v["providers"][0]["remote_jwks"] = json!({"cluster": "c", "path": "/j", "timeout_ms": 5})),
                "providers[0].remote_jwks.timeout_ms",
            ),
            (
                Box::new(|v| v["providers"][0]["remote_jwks"] = json!({"path": "/j"})),
                "providers[0].remote_jwks",
            ),
            (
                Box::new(|v| {
                    let p = v["providers"][0].clone();
                    v["providers"].as_array_mut().unwrap().push(p)
                }),
                "providers[1].name",
            ),
            (
                Box::new(|v| v["rules"][1]["jwt"]["providers"] = json!(["nope"])),
                "rules[1].jwt.providers[0]",
            ),
            (Box::new(|v| v["rules"][1]["public"] = json!(true)), "rules[1]"),
            (Box::new(|v| v["rules"][0]["public"] = json!(false)), "rules[0]"),
            (
                Box::new(|v| v["rules"][0]["match"] = json!({"path": "/a", "prefix": "/b"})),
                "rules[0].match",
            ),
            (
                Box::new(|v| v["rules"][0]["match"] = json!({"path": "/a/../b"})),
                "rules[0].match.path",
            ),
            (
                Box::new(|v| v["rules"][0]["match"]["methods"] = json!(["get"])),
                "rules[0].match.methods[0]",
            ),
            (Box::new(|v| v["rules"][1]["name"] = json!("health")), "rules[1].name"),
            (Box::new(|v| v["max_token_bytes"] = json!(10)), "max_token_bytes"),
            (Box::new(|v| v["realm"] = json!("a\"b")), "realm"),
            (
                Box::new(|v| v["default_rule"] = json!({"jwt": {"providers": []}})),
                "default_rule.jwt.providers",
            ),
        ];
        for (edit, field) in cases {
            let e = error_of(edit);
            let text = e.to_string();
            assert!(text.contains(field), "expected `{field}` in: {text}");
        }
    }

    #[test]
    fn providers_need_a_provider_field_name() {
        // the path of a missing required field is its parent; the message names the field
        let e = error_of(|v| {
            v["providers"][0].as_object_mut().unwrap().remove("issuer");
        });
        assert!(e.to_string().contains("issuer"), "{e}");
    }

    #[test]
    fn malformed_documents_are_refused() {
        for doc in [
            "",
            "   ",
            "{",
            "[]",
            "null",
            "{\"providers\": 5}",
            "{} {}",
            "{\"rules\":[]}x",
        ] {
            assert!(parse(doc.as_bytes(), &env).is_err(), "{doc:?}");
        }
        assert!(parse(b"{}", &env).is_ok());
    }

    #[test]
    fn secret_encodings() {
        assert_eq!(decode_secret("AAEC", SecretEncoding::Base64), Some(vec![0, 1, 2]));
        assert_eq!(decode_secret("+/8=", SecretEncoding::Base64), Some(vec![0xfb, 0xff]));
        assert_eq!(decode_secret("0aff", SecretEncoding::Hex), Some(vec![0x0a, 0xff]));
        assert_eq!(decode_secret("0af", SecretEncoding::Hex), None);
        assert_eq!(decode_secret("zz", SecretEncoding::Hex), None);
        assert_eq!(decode_secret("é1", SecretEncoding::Hex), None);
        let mut v = base();
        v["providers"][0]["hmac_secrets"][0] = json!({"env": "HEX", "alg": "HS256", "encoding": "hex"});
        assert!(parse_value(&v).is_ok());
        v["providers"][0]["hmac_secrets"][0]["encoding"] = json!("rot13");
        assert!(parse_value(&v).unwrap_err().to_string().contains("encoding"));
    }

    #[test]
    fn remote_only_provider_needs_no_static_keys() {
        let mut v = base();
        let p = v["providers"][0].as_object_mut().unwrap();
        p.remove("hmac_secrets");
        p.insert("algorithms".into(), json!(["RS256", "ES256"]));
        p.insert("remote_jwks".into(), json!({"cluster": "idp", "path": "/jwks"}));
        let c = parse_value(&v).unwrap();
        let r = c.providers[0].remote.as_ref().unwrap();
        assert_eq!(r.authority, "idp");
        assert_eq!(r.refresh_interval_s, 300);
        assert_eq!(r.min_refetch_interval_s, 30);
    }
}
