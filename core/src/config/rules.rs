//! `rules`, `default_rule`, `roles` and `tenants`: the route table and each
//! rule's policy (requirement, origin, IP, scopes).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Deserialize;

use crate::claim_path::RawClaimPath;
use crate::jwt::Provider;
use crate::policy::caller::CallerRequirement;
use crate::policy::destination::Needs;
use crate::policy::ip::{IpList, IpPolicy};
use crate::policy::origin::{Cors, OriginList};
use crate::policy::routes::{CorsRule, OriginRule, PathMatch, Policy, Requirement, Rule};
use crate::policy::scopes::{valid_scope_token, RoleDef, RoleHierarchy, ScopeRequirement};

use super::defaults;
use super::destination::{compile_destination, has_destination, RawRouteMetadata};
use super::field::{claim_path, err, header_name};
use super::{ConfigError, RawDevelopment};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) name: String,
    #[serde(rename = "match")]
    pub(super) matcher: RawMatch,
    #[serde(default)]
    pub(super) public: bool,
    #[serde(default)]
    pub(super) jwt: Option<RawJwtRequirement>,
    #[serde(default)]
    pub(super) api_key: Option<RawApiKeyRequirement>,
    #[serde(default)]
    pub(super) origin: Option<RawOriginPolicy>,
    #[serde(default)]
    pub(super) ip: Option<RawIpPolicy>,
    #[serde(default)]
    pub(super) scopes: Option<RawScopes>,
    #[serde(default)]
    pub(super) mode: Mode,
}

/// The rule for requests no rule matches: a rule without `name` and `match`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaultRule {
    #[serde(default)]
    pub(super) public: bool,
    #[serde(default)]
    pub(super) jwt: Option<RawJwtRequirement>,
    #[serde(default)]
    pub(super) api_key: Option<RawApiKeyRequirement>,
    #[serde(default)]
    pub(super) origin: Option<RawOriginPolicy>,
    #[serde(default)]
    pub(super) ip: Option<RawIpPolicy>,
    #[serde(default)]
    pub(super) scopes: Option<RawScopes>,
    #[serde(default)]
    pub(super) mode: Mode,
}

/// The fields a rule and the default rule share.
pub(super) struct RawPolicy<'a> {
    pub(super) public: bool,
    pub(super) jwt: Option<&'a RawJwtRequirement>,
    pub(super) api_key: Option<&'a RawApiKeyRequirement>,
    pub(super) origin: Option<&'a RawOriginPolicy>,
    pub(super) ip: Option<&'a RawIpPolicy>,
    pub(super) scopes: Option<&'a RawScopes>,
    pub(super) mode: Mode,
}

/// Whether a rule's refusals are enforced or only reported (`mode`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum Mode {
    #[default]
    Enforce,
    Shadow,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOriginPolicy {
    #[serde(default)]
    pub(super) allowed: Vec<String>,
    #[serde(default)]
    pub(super) tenant_claim: Option<RawClaimPath>,
    #[serde(default = "Admit::allow")]
    pub(super) missing: Admit,
    #[serde(default = "Admit::deny")]
    pub(super) null: Admit,
    #[serde(default = "defaults::yes")]
    pub(super) enforce: bool,
    #[serde(default)]
    pub(super) cors: Option<RawCors>,
}

/// Whether a request without an Origin (or with `Origin: null`) is let through.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum Admit {
    Allow,
    Deny,
}

impl Admit {
    fn allow() -> Admit {
        Admit::Allow
    }
    fn deny() -> Admit {
        Admit::Deny
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCors {
    #[serde(default)]
    pub(super) preflight: PreflightMode,
    #[serde(default = "defaults::cors_methods")]
    pub(super) allow_methods: Vec<String>,
    #[serde(default = "defaults::cors_headers")]
    pub(super) allow_headers: Vec<String>,
    #[serde(default)]
    pub(super) expose_headers: Vec<String>,
    #[serde(default = "defaults::cors_max_age_s")]
    pub(super) max_age_s: u32,
    #[serde(default)]
    pub(super) allow_credentials: bool,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(super) enum PreflightMode {
    #[default]
    Answer,
    Pass,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIpPolicy {
    #[serde(default)]
    pub(super) allow: Vec<String>,
    #[serde(default)]
    pub(super) deny: Vec<String>,
    #[serde(default)]
    pub(super) trusted_hops: u8,
    #[serde(default = "defaults::yes")]
    pub(super) enforce: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScopes {
    #[serde(default)]
    pub(super) any_of: Option<Vec<String>>,
    #[serde(default)]
    pub(super) all_of: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRole {
    #[serde(default)]
    pub(super) includes: Vec<String>,
    #[serde(default)]
    pub(super) permissions: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTenant {
    pub(super) origins: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatch {
    #[serde(default)]
    pub(super) path: Option<String>,
    #[serde(default)]
    pub(super) prefix: Option<String>,
    #[serde(default)]
    pub(super) methods: Vec<String>,
    #[serde(default)]
    pub(super) hosts: Option<Vec<String>>,
    #[serde(default)]
    pub(super) route_name: Option<String>,
    #[serde(default)]
    pub(super) route_metadata: Option<RawRouteMetadata>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwtRequirement {
    pub(super) providers: Vec<String>,
    #[serde(default)]
    pub(super) caller: Option<CallerKind>,
    #[serde(default)]
    pub(super) clients: Option<Vec<String>>,
}

/// `jwt.caller`: the kind of caller a rule's token must speak for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum CallerKind {
    Machine,
    User,
}

/// A rule's `jwt.caller` and `jwt.clients`. `clients` implies a machine
/// token, so `caller: "user"` beside it could never be met.
fn compile_caller(j: &RawJwtRequirement, at: &str) -> Result<Option<CallerRequirement>, ConfigError> {
    match (j.caller, &j.clients) {
        (None, None) => Ok(None),
        (Some(CallerKind::User), None) => Ok(Some(CallerRequirement::User)),
        (Some(CallerKind::Machine), None) => Ok(Some(CallerRequirement::AnyMachine)),
        (Some(CallerKind::User), Some(_)) => Err(err(
            format!("{at}.clients"),
            "clients are machine clients: a rule with \"caller\": \"user\" cannot list them",
        )),
        (_, Some(list)) => {
            if list.is_empty() {
                return Err(err(format!("{at}.clients"), "list at least one client id"));
            }
            for (j, c) in list.iter().enumerate() {
                if c.is_empty() || c.chars().any(char::is_control) {
                    return Err(err(
                        format!("{at}.clients[{j}]"),
                        "a client id is a non-empty string without control characters",
                    ));
                }
                if list[..j].contains(c) {
                    return Err(err(format!("{at}.clients[{j}]"), format!("\"{c}\" is listed twice")));
                }
            }
            Ok(Some(CallerRequirement::Clients(list.clone())))
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApiKeyRequirement {
    #[serde(default)]
    pub(super) stale_if_error_s: u64,
    #[serde(default)]
    pub(super) untagged_keys: Option<UntaggedKeys>,
}

/// `api_key.untagged_keys`: what a rule does with a key whose tag does not
/// verify, when `api_keys.key_tags` is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum UntaggedKeys {
    /// Refused with `401 api_key_bad_tag`, without a lookup (the default).
    Refuse,
    /// Looked up as before: for keys minted before tags, during a migration.
    Lookup,
}

pub(super) fn compile_roles(raw: &BTreeMap<String, RawRole>) -> Result<RoleHierarchy, ConfigError> {
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

pub(super) fn compile_origin(
    o: &RawOriginPolicy,
    at: &str,
    tenants: &HashMap<String, OriginList>,
    requirement: &Requirement,
) -> Result<OriginRule, ConfigError> {
    let allowed = OriginList::parse(&o.allowed).map_err(|(j, m)| err(format!("{at}.allowed[{j}]"), m))?;
    let tenant_claim = match &o.tenant_claim {
        Some(raw) => Some(claim_path(raw, format!("{at}.tenant_claim"))?),
        None => None,
    };
    if tenant_claim.is_some() {
        if !matches!(requirement, Requirement::Jwt { .. } | Requirement::JwtOrApiKey { .. }) {
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
        tenant_claim,
        allow_missing: o.missing == Admit::Allow,
        allow_null: o.null == Admit::Allow,
        cors,
    })
}

pub(super) fn compile_cors(c: &RawCors, at: &str) -> Result<CorsRule, ConfigError> {
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

pub(super) fn compile_ip(i: &RawIpPolicy, at: &str, envoy_appends: Option<bool>) -> Result<IpPolicy, ConfigError> {
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
pub(super) fn xff_appends(trusted_hops: u8, configured: Option<bool>, at: &str) -> Result<bool, ConfigError> {
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

pub(super) fn compile_scopes(sc: &RawScopes, at: &str) -> Result<ScopeRequirement, ConfigError> {
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
pub(super) fn check_match_path(p: &str, at: &str) -> Result<String, ConfigError> {
    match crate::policy::path::normalize(p) {
        Ok(n) if n.query.is_none() && n.path == p => Ok(p.to_owned()),
        Ok(n) => Err(err(
            at,
            format!("\"{p}\" is not a normalised path (it would be \"{}\")", n.path),
        )),
        Err(e) => Err(err(at, format!("\"{p}\": {}", e.as_str()))),
    }
}

/// The longest rule name: it is part of three metric names.
const MAX_RULE_NAME: usize = 64;

/// A rule's name is part of its metric names (`edge_auth.rule.<name>.allowed`):
/// letters, digits, `_` and `-` only (no `.`, which would split the name for
/// Envoy's tag extraction), at most [`MAX_RULE_NAME`] bytes, and not the name
/// the default rule's metrics use.
fn check_rule_name(name: &str, at: &str) -> Result<(), ConfigError> {
    if name.len() > MAX_RULE_NAME {
        return Err(err(at, format!("a rule name is at most {MAX_RULE_NAME} characters")));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(err(
            at,
            format!("\"{name}\": a rule name has only letters, digits, '_' and '-' (it names the rule's metrics)"),
        ));
    }
    if name == "default_rule" {
        return Err(err(
            at,
            "\"default_rule\" names the default rule's metrics: choose another name",
        ));
    }
    Ok(())
}

/// What a rule's policy is compiled against: the rest of the configuration.
pub(super) struct RuleScope<'a> {
    pub(super) providers: &'a [Provider],
    /// Whether `api_keys` is configured.
    pub(super) api_keys: bool,
    pub(super) tenants: &'a HashMap<String, OriginList>,
    pub(super) development: &'a RawDevelopment,
    pub(super) envoy_appends: Option<bool>,
    /// Whether `api_keys.key_tags` is configured.
    pub(super) key_tags: bool,
}

/// The rules, in order, the default rule's policy, and the destination
/// facts the rules read. A check switched off (`enforce: false`) adds a line
/// to `warnings`.
pub(super) fn compile_rules(
    raw: &[RawRule],
    default: Option<&RawDefaultRule>,
    scope: &RuleScope<'_>,
    warnings: &mut Vec<String>,
) -> Result<(Vec<Rule>, Option<Policy>, Needs), ConfigError> {
    let mut rules = Vec::with_capacity(raw.len());
    let mut needs = Needs::default();
    let mut rule_names = HashSet::new();
    for (i, r) in raw.iter().enumerate() {
        let at = format!("rules[{i}]");
        if r.name.is_empty() || !rule_names.insert(r.name.as_str()) {
            return Err(err(format!("{at}.name"), "rule names must be non-empty and unique"));
        }
        check_rule_name(&r.name, &format!("{at}.name"))?;
        let path = match (&r.matcher.path, &r.matcher.prefix) {
            (Some(p), None) => PathMatch::Exact(check_match_path(p, &format!("{at}.match.path"))?),
            (None, Some(p)) => PathMatch::Prefix(check_match_path(p, &format!("{at}.match.prefix"))?),
            (None, None) if has_destination(&r.matcher) => PathMatch::Any,
            _ => {
                return Err(err(
                    format!("{at}.match"),
                    "give exactly one of \"path\" or \"prefix\" (or neither, with \"hosts\", \"route_name\" or \"route_metadata\")",
                ))
            }
        };
        let destination = compile_destination(&r.matcher, &format!("{at}.match"), &mut needs)?;
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
            mode: r.mode,
        };
        rules.push(Rule {
            name: r.name.clone(),
            path,
            methods,
            policy: compile_policy(raw_policy, &at, scope, warnings)?,
            destination,
        });
    }
    let default = match default {
        None => None,
        Some(d) => {
            let raw_policy = RawPolicy {
                public: d.public,
                jwt: d.jwt.as_ref(),
                api_key: d.api_key.as_ref(),
                origin: d.origin.as_ref(),
                ip: d.ip.as_ref(),
                scopes: d.scopes.as_ref(),
                mode: d.mode,
            };
            Some(compile_policy(raw_policy, "default_rule", scope, warnings)?)
        }
    };
    Ok((rules, default, needs))
}

fn compile_policy(
    r: RawPolicy<'_>,
    at: &str,
    scope: &RuleScope<'_>,
    warnings: &mut Vec<String>,
) -> Result<Policy, ConfigError> {
    let requirement = match (r.public, r.jwt, r.api_key) {
        (true, None, None) => Requirement::Public,
        (false, Some(j), None) => Requirement::Jwt {
            providers: provider_index(scope.providers, &j.providers, &format!("{at}.jwt.providers"))?,
        },
        (false, None, Some(k)) => {
            let (stale_if_error_ms, untagged_lookup) = key_requirement(k, at, scope)?;
            Requirement::ApiKey {
                stale_if_error_ms,
                untagged_lookup,
            }
        }
        (false, Some(j), Some(k)) => {
            let (stale_if_error_ms, untagged_lookup) = key_requirement(k, at, scope)?;
            Requirement::JwtOrApiKey {
                providers: provider_index(scope.providers, &j.providers, &format!("{at}.jwt.providers"))?,
                stale_if_error_ms,
                untagged_lookup,
            }
        }
        (false, None, None) => {
            return Err(err(
                at,
                "a rule needs \"public\": true, a \"jwt\" or an \"api_key\" requirement",
            ))
        }
        (true, _, _) => return Err(err(at, "a public rule has no \"jwt\" or \"api_key\" requirement")),
    };
    let origin = match r.origin {
        None => None,
        Some(o) => {
            let rule = compile_origin(o, &format!("{at}.origin"), scope.tenants, &requirement)?;
            if !o.enforce {
                warnings.push(format!("{at}.origin.enforce is false: this rule does not check Origin"));
                None
            } else if scope.development.disable_origin_checks {
                None
            } else {
                Some(rule)
            }
        }
    };
    let ip = match r.ip {
        None => None,
        Some(i) => {
            let policy = compile_ip(i, &format!("{at}.ip"), scope.envoy_appends)?;
            if !i.enforce {
                warnings.push(format!(
                    "{at}.ip.enforce is false: this rule does not check client addresses"
                ));
                None
            } else if scope.development.disable_ip_checks {
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
    let caller = match r.jwt {
        Some(j) => compile_caller(j, &format!("{at}.jwt"))?,
        None => None,
    };
    Ok(Policy {
        requirement,
        origin,
        ip,
        scopes,
        shadow: shadow(r.mode, at, warnings),
        caller,
    })
}

/// Whether `mode` is report-only; a shadow rule is said at configure time.
pub(super) fn shadow(mode: Mode, at: &str, warnings: &mut Vec<String>) -> bool {
    if mode == Mode::Shadow {
        warnings.push(format!(
            "{at} is report-only (mode: shadow): its refusals are counted as shadow_denied.* and let through"
        ));
    }
    mode == Mode::Shadow
}

/// The stale-if-error window of an `api_key` requirement, in milliseconds.
/// A rule's `api_key` requirement: its `stale_if_error_s` in milliseconds, and whether
/// a key whose tag does not verify is looked up (`untagged_keys: "lookup"`).
fn key_requirement(k: &RawApiKeyRequirement, at: &str, scope: &RuleScope<'_>) -> Result<(u64, bool), ConfigError> {
    if !scope.api_keys {
        return Err(err(
            format!("{at}.api_key"),
            "needs the top-level api_keys (and auth_service) configuration",
        ));
    }
    if k.stale_if_error_s > 3600 {
        return Err(err(format!("{at}.api_key.stale_if_error_s"), "must be at most 3600"));
    }
    if k.untagged_keys.is_some() && !scope.key_tags {
        return Err(err(
            format!("{at}.api_key.untagged_keys"),
            "needs api_keys.key_tags (without it every well-formed key is looked up)",
        ));
    }
    Ok((k.stale_if_error_s * 1000, k.untagged_keys == Some(UntaggedKeys::Lookup)))
}

/// The indexes of the providers `names` names.
fn provider_index(providers: &[Provider], names: &[String], at: &str) -> Result<Vec<usize>, ConfigError> {
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
}

/// Each tenant's allowed origins.
pub(super) fn compile_tenants(raw: &BTreeMap<String, RawTenant>) -> Result<HashMap<String, OriginList>, ConfigError> {
    let mut tenants = HashMap::with_capacity(raw.len());
    for (name, t) in raw {
        if name.is_empty() {
            return Err(err("tenants", "a tenant name must not be empty"));
        }
        if t.origins.is_empty() {
            return Err(err(format!("tenants.{name}.origins"), "list at least one origin"));
        }
        let list = OriginList::parse(&t.origins).map_err(|(j, m)| err(format!("tenants.{name}.origins[{j}]"), m))?;
        tenants.insert(name.clone(), list);
    }
    Ok(tenants)
}
