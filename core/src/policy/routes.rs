//! Route rules: which requirement a request must meet, first match wins.
//!
//! Rules match the *normalised* path (see [`crate::policy::path`]), so `/api/../admin`
//! and `/%61dmin` meet the rule for `/admin`, never a more lenient one.

use crate::claim_path::ClaimPath;

/// How a rule matches the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The whole path, exactly.
    Exact(String),
    /// A plain string prefix, as Envoy's `prefix`: `/api` also matches
    /// `/apiary`; end it with `/` to match one subtree.
    Prefix(String),
    /// Any path: the rule matches by host or Envoy route instead.
    Any,
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Any => true,
        }
    }
}

use crate::policy::caller::CallerRequirement;
use crate::policy::destination::{Destination, DestinationMatch, Needs};
use crate::policy::ip::IpPolicy;
use crate::policy::origin::{Cors, OriginList};
use crate::policy::scopes::ScopeRequirement;

/// What a request must present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// Nothing: the request goes upstream (client-sent identity headers are still removed).
    Public,
    /// A valid JWT from any one of these providers (indexes into `Config::providers`).
    Jwt { providers: Vec<usize> },
    /// An API key from `api_keys.sources`, looked up at the auth service.
    /// When the service fails, a key whose valid answer expired less than
    /// `stale_if_error_ms` ago is still admitted (0: never). With
    /// `api_keys.key_tags`, a key whose tag does not verify is refused without
    /// a lookup unless `untagged_lookup` (the rule's `untagged_keys: "lookup"`).
    ApiKey {
        stale_if_error_ms: u64,
        untagged_lookup: bool,
    },
    /// Either a JWT from one of `providers` or an API key, whichever the
    /// request carries; a request carrying both is refused as ambiguous.
    JwtOrApiKey {
        providers: Vec<usize>,
        stale_if_error_ms: u64,
        untagged_lookup: bool,
    },
}

/// Everything a rule checks, cheapest first: client address, Origin, the
/// credential, then scopes.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub requirement: Requirement,
    pub origin: Option<OriginRule>,
    pub ip: Option<IpPolicy>,
    pub scopes: Option<ScopeRequirement>,
    /// Report-only (`"mode": "shadow"`): every check runs and is counted,
    /// and a refusal lets the request through without identity.
    pub shadow: bool,
    /// `jwt.caller` / `jwt.clients`: who a token must speak for (a token
    /// branch only; an API key is not asked).
    pub caller: Option<CallerRequirement>,
}

impl Policy {
    /// A policy with only a requirement (no origin, address or scope checks).
    pub fn only(requirement: Requirement) -> Policy {
        Policy {
            requirement,
            origin: None,
            ip: None,
            scopes: None,
            shadow: false,
            caller: None,
        }
    }
}

/// Which browser origins a rule accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginRule {
    pub allowed: OriginList,
    /// A claim naming the caller's tenant, whose configured origins are also accepted.
    pub tenant_claim: Option<ClaimPath>,
    pub allow_missing: bool,
    pub allow_null: bool,
    pub cors: Option<CorsRule>,
}

/// CORS for a rule: preflights answered at the edge or passed upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct CorsRule {
    pub answer_preflight: bool,
    pub cors: Cors,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub path: PathMatch,
    /// Upper-case methods; empty means any method.
    pub methods: Vec<String>,
    pub policy: Policy,
    /// Conditions on the host and the Envoy route (none: any).
    pub destination: DestinationMatch,
}

impl Rule {
    fn matches(&self, method: &str, path: &str, destination: &Destination) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
            && self.path.matches(path)
            && self.destination.matches(destination)
    }
}

/// The result of route selection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Selected<'a> {
    Rule(&'a Rule),
    /// No rule matched; the configured default applies.
    Default(&'a Policy),
    /// No rule matched and there is no default: the request is denied.
    NoMatch,
}

impl<'a> Selected<'a> {
    pub fn policy(&self) -> Option<&'a Policy> {
        match self {
            Selected::Rule(r) => Some(&r.policy),
            Selected::Default(p) => Some(p),
            Selected::NoMatch => None,
        }
    }

    pub fn requirement(&self) -> Option<&'a Requirement> {
        self.policy().map(|p| &p.requirement)
    }

    pub fn name(&self) -> &'a str {
        match self {
            Selected::Rule(r) => &r.name,
            Selected::Default(_) => "default_rule",
            Selected::NoMatch => "none",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteTable {
    rules: Vec<Rule>,
    default: Option<Policy>,
    needs: Needs,
}

impl RouteTable {
    /// `needs`: the destination facts the rules' conditions read (the
    /// metadata indexes in their [`DestinationMatch`]es point into it).
    pub fn new(rules: Vec<Rule>, default: Option<Policy>, needs: Needs) -> RouteTable {
        RouteTable { rules, default, needs }
    }

    /// The facts to gather before [`RouteTable::select_at`].
    pub fn needs(&self) -> &Needs {
        &self.needs
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The policy for requests no rule matches (`None`: denied).
    pub fn default_rule(&self) -> Option<&Policy> {
        self.default.as_ref()
    }

    /// The first rule that matches `method` and the normalised `path`, for
    /// a request whose destination facts are not needed.
    pub fn select(&self, method: &str, path: &str) -> Selected<'_> {
        self.select_at(method, path, &Destination::default())
    }

    /// The first rule that matches `method`, the normalised `path` and the
    /// gathered [`RouteTable::needs`]: one pass, first match wins.
    pub fn select_at(&self, method: &str, path: &str, destination: &Destination) -> Selected<'_> {
        match self.rules.iter().find(|r| r.matches(method, path, destination)) {
            Some(rule) => Selected::Rule(rule),
            None => self.default.as_ref().map_or(Selected::NoMatch, Selected::Default),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn rule(name: &str, path: PathMatch, methods: &[&str], requirement: Requirement) -> Rule {
        Rule {
            name: name.into(),
            path,
            methods: methods.iter().map(|m| m.to_string()).collect(),
            policy: Policy::only(requirement),
            destination: DestinationMatch::default(),
        }
    }

    fn table(default: Option<Requirement>) -> RouteTable {
        let default = default.map(Policy::only);
        RouteTable::new(
            vec![
                rule("health", PathMatch::Exact("/health".into()), &[], Requirement::Public),
                rule(
                    "read",
                    PathMatch::Prefix("/api/".into()),
                    &["GET", "HEAD"],
                    Requirement::Jwt { providers: vec![0] },
                ),
                rule(
                    "write",
                    PathMatch::Prefix("/api/".into()),
                    &[],
                    Requirement::Jwt { providers: vec![1] },
                ),
            ],
            default,
            Needs::default(),
        )
    }

    #[test]
    fn first_match_wins() {
        let t = table(None);
        assert_eq!(t.select("GET", "/api/x").name(), "read");
        assert_eq!(t.select("POST", "/api/x").name(), "write");
        assert_eq!(t.select("GET", "/health").name(), "health");
    }

    #[test]
    fn exact_is_exact_and_prefix_is_a_string_prefix() {
        let t = table(None);
        assert_eq!(t.select("GET", "/health/"), Selected::NoMatch);
        assert_eq!(t.select("GET", "/healthz"), Selected::NoMatch);
        assert_eq!(t.select("GET", "/api"), Selected::NoMatch);
        assert_eq!(
            t.select("GET", "/API/x"),
            Selected::NoMatch,
            "matching is case-sensitive"
        );
        assert!(PathMatch::Prefix("/api".into()).matches("/apiary"));
    }

    #[test]
    fn methods_are_exact() {
        let t = table(None);
        // a lower-case method does not meet the GET-only rule; it falls to the next one
        assert_eq!(t.select("get", "/api/x").name(), "write");
    }

    #[test]
    fn unmatched_uses_the_default_or_denies() {
        assert_eq!(table(None).select("GET", "/other").requirement(), None);
        let t = table(Some(Requirement::Public));
        assert_eq!(t.select("GET", "/other").requirement(), Some(&Requirement::Public));
    }
}
