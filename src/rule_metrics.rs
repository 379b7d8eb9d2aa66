//! Per-rule counters: `edge_auth.rule.<name>.allowed`, `.denied` and
//! `.shadow_denied` for every rule of the configuration and for the
//! default rule (`default_rule`), defined at configure time so dashboards
//! see zeros. Their number is bounded by the configuration: three per rule,
//! and rule names are checked at configure time to be metric-safe (letters,
//! digits, `_`, `-`; at most 64 bytes). Requests no rule decided (`no_rule`,
//! and those refused before a rule is chosen, such as `bad_path`) are
//! counted only by reason (`metrics::Metrics`).

use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

use edge_auth_core::config::Config;

use crate::metrics::{Metrics, PREFIX};

/// What a rule decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleVerdict {
    Allowed,
    Denied,
    /// A report-only rule would have refused it.
    ShadowDenied,
}

#[derive(Debug, Clone, Copy)]
struct Counters {
    allowed: Option<u32>,
    denied: Option<u32>,
    shadow_denied: Option<u32>,
}

#[derive(Debug, Default)]
pub struct RuleMetrics {
    by_rule: HashMap<String, Counters>,
}

fn counter(rule: &str, verdict: &str) -> Option<u32> {
    hostcalls::define_metric(MetricType::Counter, &format!("{PREFIX}rule.{rule}.{verdict}")).ok()
}

impl RuleMetrics {
    /// The counters of every rule of `cfg` (and of its default rule, if any).
    /// Defining a metric that exists (a reconfiguration) returns the same one.
    pub fn define(cfg: &Config) -> RuleMetrics {
        let names = cfg
            .routes
            .rules()
            .iter()
            .map(|r| r.name.as_str())
            .chain(cfg.routes.default_rule().map(|_| "default_rule"));
        let by_rule = names
            .map(|name| {
                let counters = Counters {
                    allowed: counter(name, "allowed"),
                    denied: counter(name, "denied"),
                    shadow_denied: counter(name, "shadow_denied"),
                };
                (name.to_owned(), counters)
            })
            .collect();
        RuleMetrics { by_rule }
    }

    /// Counts `verdict` for the rule that decided a request (none: not counted here).
    pub fn count(&self, rule: Option<&str>, verdict: RuleVerdict) {
        let Some(c) = rule.and_then(|r| self.by_rule.get(r)) else {
            return;
        };
        Metrics::inc(match verdict {
            RuleVerdict::Allowed => c.allowed,
            RuleVerdict::Denied => c.denied,
            RuleVerdict::ShadowDenied => c.shadow_denied,
        });
    }
}
