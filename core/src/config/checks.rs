//! Checks across features, and the warnings the operator should hear at
//! configure time (`Config::warnings`).

use crate::jwt::Provider;
use crate::policy::routes::{Policy, Requirement, Rule};
use crate::token_source::TokenSource;

use super::field::err;
use super::{ApiKeys, AuthService, ConfigError, Context, RawDevelopment};

/// A line per development switch that turns a check off everywhere.
pub(super) fn development_warnings(dev: &RawDevelopment) -> Vec<String> {
    let mut warnings = Vec::new();
    if dev.disable_origin_checks {
        warnings.push("development.disable_origin_checks is set: no rule checks Origin headers".to_owned());
    }
    if dev.disable_ip_checks {
        warnings.push("development.disable_ip_checks is set: no rule checks client addresses".to_owned());
    }
    warnings
}

/// Adds the identity headers to the headers the filter writes; none may be
/// a claim or payload header too.
pub(super) fn add_context_headers(c: &Context, written: &mut Vec<String>) -> Result<(), ConfigError> {
    for name in c.headers.names() {
        if written.iter().any(|w| w == name) {
            return Err(err(
                "context.prefix",
                format!("\"{name}\" is also a claim or payload header"),
            ));
        }
        written.push(name.to_owned());
    }
    Ok(())
}

/// No header an API key is read from is a header the filter writes.
pub(super) fn key_sources_not_written(k: &ApiKeys, written: &[String]) -> Result<(), ConfigError> {
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
    Ok(())
}

/// A provider with `check_revocation` needs an auth service to poll.
pub(super) fn revocation_has_a_service(
    providers: &[Provider],
    auth_service: Option<&AuthService>,
) -> Result<(), ConfigError> {
    if let Some(i) = providers.iter().position(|p| p.check_revocation) {
        if auth_service.is_none() {
            return Err(err(
                format!("providers[{i}].check_revocation"),
                "needs the top-level auth_service to poll revocations from",
            ));
        }
    }
    Ok(())
}

/// Every configure-time warning, as the log says them: a configuration that
/// denies everything, each check switched off, a public default rule.
pub(super) fn warnings(
    disabled: Vec<String>,
    rules: &[Rule],
    providers: &[Provider],
    default: Option<&Policy>,
) -> Vec<String> {
    let mut all_warnings = Vec::with_capacity(disabled.len() + 2);
    if rules.is_empty() && providers.is_empty() && default.is_none() {
        all_warnings.push("no rules and no providers: every request is denied".to_owned());
    }
    all_warnings.extend(disabled.into_iter().map(|w| format!("CHECK DISABLED: {w}")));
    if default.is_some_and(|p| p.requirement == Requirement::Public) {
        all_warnings.push("default_rule is public: requests no rule matches go upstream unauthenticated".to_owned());
    }
    all_warnings
}
