//! `api_keys`: where keys are read, their format, and how lookups are cached.

use serde::Deserialize;

use crate::api_key::breaker::BreakerPolicy;
use crate::api_key::budget::{self, BudgetPolicy, BudgetTable};
use crate::api_key::shared_cache::CacheTable;
use crate::api_key::tag::{KeyTags, TagSecret, TAG_HEX};
use crate::api_key::KeyFormat;
use crate::token_source::TokenSource;

use super::defaults;
use super::field::{err, query_free_path, range};
use super::providers::{compile_source, default_api_key_sources, RawTokenSource};
use super::rules::xff_appends;
use super::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApiKeys {
    #[serde(default = "default_api_key_sources")]
    pub(super) sources: Vec<RawTokenSource>,
    #[serde(default = "defaults::key_prefix")]
    pub(super) prefix: String,
    #[serde(default = "defaults::key_hex_digits")]
    pub(super) hex_digits: usize,
    #[serde(default = "defaults::lookup_path")]
    pub(super) lookup_path: String,
    #[serde(default = "defaults::max_cache_ttl_s")]
    pub(super) max_cache_ttl_s: u64,
    #[serde(default = "defaults::negative_cache_ttl_s")]
    pub(super) negative_cache_ttl_s: u64,
    #[serde(default = "defaults::shared_cache_slots")]
    pub(super) shared_cache_slots: usize,
    #[serde(default = "defaults::local_cache_entries")]
    pub(super) local_cache_entries: usize,
    #[serde(default = "defaults::max_lookup_bytes")]
    pub(super) max_response_bytes: usize,
    #[serde(default = "defaults::max_pending_lookups")]
    pub(super) max_pending_lookups: usize,
    #[serde(default)]
    pub(super) trusted_hops: u8,
    #[serde(default)]
    pub(super) breaker: RawBreaker,
    #[serde(default)]
    pub(super) key_tags: Option<RawKeyTags>,
    #[serde(default)]
    pub(super) lookup_budget: Option<RawLookupBudget>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeyTags {
    pub(super) secret_env: String,
    #[serde(default)]
    pub(super) previous_secret_env: Option<String>,
}

/// `api_keys.lookup_budget`: off when absent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLookupBudget {
    #[serde(default = "defaults::budget_burst")]
    burst: u32,
    #[serde(default = "defaults::budget_per_minute")]
    per_minute: u32,
    #[serde(default = "defaults::budget_slots")]
    slots: usize,
    #[serde(default = "defaults::budget_ipv6_prefix")]
    ipv6_prefix: u8,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBreaker {
    #[serde(default = "defaults::breaker_failures")]
    pub(super) failure_threshold: u32,
    #[serde(default = "defaults::breaker_open_s")]
    pub(super) open_s: u64,
}

impl Default for RawBreaker {
    fn default() -> Self {
        RawBreaker {
            failure_threshold: defaults::breaker_failures(),
            open_s: defaults::breaker_open_s(),
        }
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
    /// The key-tag secrets (`key_tags`): when set, a key whose tag does not
    /// verify is refused without a lookup (unless the rule looks untagged keys up).
    pub key_tags: Option<KeyTags>,
    /// The shared tables of answers and lookup markers (bound to the auth
    /// service at configure time, [`ApiKeys::bind`]).
    pub shared_cache: CacheTable,
    /// The per-client budget of uncached lookups, when configured.
    pub lookup_budget: Option<LookupBudget>,
}

/// `api_keys.lookup_budget`, compiled.
#[derive(Debug)]
pub struct LookupBudget {
    pub policy: BudgetPolicy,
    /// Its shared table (bound to the auth service at configure time).
    pub table: BudgetTable,
}

impl ApiKeys {
    /// Names the shared tables after the lookup endpoint of `svc`: a stable
    /// identity, so that a reload with the same endpoint reuses them.
    pub(super) fn bind(&mut self, svc: &super::AuthService) {
        let endpoint = crate::outbound::shared_fetch::Shared::lookups(svc, &self.lookup_path);
        self.shared_cache = CacheTable::new(
            &endpoint,
            self.max_cache_ttl_s,
            self.negative_cache_ttl_s,
            self.max_response_bytes,
        );
        if let Some(b) = &mut self.lookup_budget {
            b.table = BudgetTable::new(endpoint.identity());
        }
    }
}

fn compile_budget(b: &RawLookupBudget, at: &str) -> Result<LookupBudget, ConfigError> {
    range(b.burst, 1, 100_000, format!("{at}.burst"))?;
    range(b.per_minute, 1, 600_000, format!("{at}.per_minute"))?;
    range(b.slots, 1, budget::MAX_SLOTS, format!("{at}.slots"))?;
    range(b.ipv6_prefix, 16, 128, format!("{at}.ipv6_prefix"))?;
    Ok(LookupBudget {
        policy: BudgetPolicy {
            burst: b.burst,
            per_minute: b.per_minute,
            slots: b.slots,
            ipv6_prefix: b.ipv6_prefix,
        },
        table: BudgetTable::new(""),
    })
}

pub(super) fn compile_api_keys(
    k: &RawApiKeys,
    envoy_appends: Option<bool>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ApiKeys, ConfigError> {
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
    range(k.hex_digits, 32, 128, format!("{at}.hex_digits"))?;
    query_free_path(&k.lookup_path, format!("{at}.lookup_path"))?;
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
        range(value, lo, hi, format!("{at}.{field}"))?;
    }
    range(
        k.breaker.failure_threshold,
        1,
        100,
        format!("{at}.breaker.failure_threshold"),
    )?;
    range(k.breaker.open_s, 1, 600, format!("{at}.breaker.open_s"))?;
    let envoy_appends = xff_appends(k.trusted_hops, envoy_appends, at)?;
    let key_tags = k
        .key_tags
        .as_ref()
        .map(|t| compile_key_tags(t, k.hex_digits, env))
        .transpose()?;
    let lookup_budget = match &k.lookup_budget {
        Some(b) => Some(compile_budget(b, &format!("{at}.lookup_budget"))?),
        None => None,
    };
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
        key_tags,
        shared_cache: CacheTable::default(),
        lookup_budget,
    })
}

/// `api_keys.key_tags`: both secrets read from the VM's environment now, so
/// that a missing or short one refuses the configuration, naming the field.
fn compile_key_tags(
    t: &RawKeyTags,
    hex_digits: usize,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<KeyTags, ConfigError> {
    let at = "api_keys.key_tags";
    if hex_digits < TAG_HEX + 32 {
        return Err(err(
            at,
            format!(
                "needs api_keys.hex_digits of at least {}: {TAG_HEX} of them are the tag",
                TAG_HEX + 32
            ),
        ));
    }
    let secret = |field: &str, name: &str| {
        let value = env(name).ok_or_else(|| {
            err(
                format!("{at}.{field}"),
                format!(
                    "environment variable \"{name}\" is not set in the VM (list it in vm_config.environment_variables)"
                ),
            )
        })?;
        TagSecret::new(value.as_bytes()).map_err(|m| err(format!("{at}.{field}"), m))
    };
    let current = secret("secret_env", &t.secret_env)?;
    let previous = t
        .previous_secret_env
        .as_deref()
        .map(|name| secret("previous_secret_env", name))
        .transpose()?;
    KeyTags::new(current, previous).map_err(|m| err(format!("{at}.previous_secret_env"), m))
}
