//! Why a request is refused, and each refusal's metric name (`denied.<name>`),
//! from one table.

use crate::jwt::JwtError;
use crate::policy::scopes::ScopeRequirement;

/// Why an API key is refused (401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    /// Not in the configured format: refused without asking the service.
    Malformed,
    Unknown,
    Revoked,
    Expired,
    /// Well-formed, but its tag does not verify under the configured
    /// `api_keys.key_tags` secrets: refused without asking the service.
    BadTag,
}

named!(KeyRefusal {
    Malformed => "api_key_malformed",
    Unknown => "api_key_unknown",
    Revoked => "api_key_revoked",
    Expired => "api_key_expired",
    BadTag => "api_key_bad_tag",
});

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Deny<'c> {
    /// The route needs a token and none was found in the provider's sources.
    MissingToken,
    /// A token was found and refused.
    Token(JwtError),
    /// The path cannot be normalised safely.
    BadPath(&'static str),
    /// The same credential parameter appears twice, or cannot be decoded.
    AmbiguousCredential,
    /// No rule matched and there is no default rule.
    NoRule,
    /// The client address is not allowed, or cannot be established.
    IpNotAllowed,
    /// The browser Origin is not allowed (or missing / `null` where the rule refuses that).
    OriginNotAllowed,
    /// The token is valid but lacks the scopes the rule requires.
    InsufficientScope(&'c ScopeRequirement),
    /// A CORS preflight to be passed upstream unauthenticated carries a body
    /// (a browser's never does): it is refused rather than passed.
    PreflightWithBody,
    /// The token is valid but the auth service revoked it (jti, session,
    /// subject or everything).
    Revoked,
    /// The token's provider requires a revocation check and the revocation
    /// state is missing or stale (the auth service cannot be reached).
    RevocationUnavailable,
    /// The route needs an API key and none was found in `api_keys.sources`.
    MissingApiKey,
    /// The API key is refused.
    ApiKey(KeyRefusal),
    /// The API key could not be looked up (the auth service failed, or its
    /// circuit is open) and no stale answer may be served.
    KeyServiceUnavailable,
    /// The route accepts a token or an API key and the request carries neither.
    MissingCredential,
    /// The API key needs a lookup and the client spent its budget of
    /// uncached lookups (`api_keys.lookup_budget`): 429, retry after this
    /// many seconds.
    LookupBudgetExceeded { retry_after_s: u64 },
    /// Some rule matches hosts, and the request's `:authority` is missing,
    /// duplicated or cannot be read one way.
    BadAuthority(&'static str),
    /// The token is valid but speaks for the wrong kind of caller (a user
    /// on a machine rule, a machine on a user rule, a client not in the
    /// rule's `jwt.clients`, or a token that is neither): 403.
    CallerNotAllowed,
}

/// The refusals' names: one line per refusal of [`Deny`]'s own; a token's
/// and a key's refusals are named by [`JwtError`] and [`KeyRefusal`].
macro_rules! refusals {
    ($($pattern:pat => $name:literal,)*) => {
        impl Deny<'_> {
            const OWN_NAMES: &'static [&'static str] = &[$($name),*];

            /// The metric name suffix: `denied.<this>`.
            pub fn name(self) -> &'static str {
                match self {
                    Deny::Token(e) => e.name(),
                    Deny::ApiKey(k) => k.name(),
                    $($pattern => $name,)*
                }
            }
        }
    };
}

refusals! {
    Deny::MissingToken => "missing_token",
    Deny::BadPath(_) => "bad_path",
    Deny::AmbiguousCredential => "ambiguous_credential",
    Deny::NoRule => "no_rule",
    Deny::IpNotAllowed => "ip_not_allowed",
    Deny::OriginNotAllowed => "origin_not_allowed",
    Deny::InsufficientScope(_) => "insufficient_scope",
    Deny::PreflightWithBody => "preflight_with_body",
    Deny::Revoked => "revoked",
    Deny::RevocationUnavailable => "revocation_unavailable",
    Deny::MissingApiKey => "missing_api_key",
    Deny::KeyServiceUnavailable => "key_service_unavailable",
    Deny::MissingCredential => "missing_credential",
    Deny::LookupBudgetExceeded { .. } => "lookup_budget_exceeded",
    Deny::BadAuthority(_) => "bad_authority",
    Deny::CallerNotAllowed => "caller_not_allowed",
}

impl Deny<'_> {
    /// Every name [`Deny::name`] can return, for defining metrics up front.
    pub fn all_names() -> impl Iterator<Item = &'static str> {
        Deny::OWN_NAMES
            .iter()
            .chain(JwtError::NAMES)
            .chain(KeyRefusal::NAMES)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// Every refusal, listed through exhaustive matches so that a new variant
    /// fails to compile here until it is listed (and so gets a metric).
    fn every_deny() -> Vec<Deny<'static>> {
        use JwtError as J;
        let jwt = [
            J::Malformed,
            J::TooLarge,
            J::AlgNone,
            J::UnsupportedAlg,
            J::AlgNotAllowed,
            J::CritHeader,
            J::UnknownIssuer,
            J::UnknownKid,
            J::NoKey,
            J::KeysUnavailable,
            J::BadSignature,
            J::Expired,
            J::NotYetValid,
            J::IssuedInFuture,
            J::MissingExpiration,
            J::LifetimeTooLong,
            J::BadAudience,
            J::MissingClaim,
            J::ClaimMismatch,
        ];
        for e in jwt {
            match e {
                J::Malformed
                | J::TooLarge
                | J::AlgNone
                | J::UnsupportedAlg
                | J::AlgNotAllowed
                | J::CritHeader
                | J::UnknownIssuer
                | J::UnknownKid
                | J::NoKey
                | J::KeysUnavailable
                | J::BadSignature
                | J::Expired
                | J::NotYetValid
                | J::IssuedInFuture
                | J::MissingExpiration
                | J::LifetimeTooLong
                | J::BadAudience
                | J::MissingClaim
                | J::ClaimMismatch => {}
            }
        }
        static SCOPES: std::sync::OnceLock<ScopeRequirement> = std::sync::OnceLock::new();
        let scopes = SCOPES.get_or_init(|| ScopeRequirement::AnyOf(vec!["a".into()]));
        let mut all: Vec<Deny<'static>> = jwt.into_iter().map(Deny::Token).collect();
        all.extend([
            Deny::MissingToken,
            Deny::BadPath("x"),
            Deny::AmbiguousCredential,
            Deny::NoRule,
            Deny::IpNotAllowed,
            Deny::OriginNotAllowed,
            Deny::InsufficientScope(scopes),
            Deny::PreflightWithBody,
            Deny::Revoked,
            Deny::RevocationUnavailable,
            Deny::MissingApiKey,
            Deny::ApiKey(KeyRefusal::Malformed),
            Deny::ApiKey(KeyRefusal::Unknown),
            Deny::ApiKey(KeyRefusal::Revoked),
            Deny::ApiKey(KeyRefusal::Expired),
            Deny::ApiKey(KeyRefusal::BadTag),
            Deny::KeyServiceUnavailable,
            Deny::MissingCredential,
            Deny::LookupBudgetExceeded { retry_after_s: 1 },
            Deny::BadAuthority("x"),
            Deny::CallerNotAllowed,
        ]);
        for d in &all {
            match d {
                Deny::MissingToken
                | Deny::Token(_)
                | Deny::BadPath(_)
                | Deny::AmbiguousCredential
                | Deny::NoRule
                | Deny::IpNotAllowed
                | Deny::OriginNotAllowed
                | Deny::InsufficientScope(_)
                | Deny::PreflightWithBody
                | Deny::Revoked
                | Deny::RevocationUnavailable
                | Deny::MissingApiKey
                | Deny::ApiKey(
                    KeyRefusal::Malformed
                    | KeyRefusal::Unknown
                    | KeyRefusal::Revoked
                    | KeyRefusal::Expired
                    | KeyRefusal::BadTag,
                )
                | Deny::KeyServiceUnavailable
                | Deny::MissingCredential
                | Deny::LookupBudgetExceeded { .. }
                | Deny::BadAuthority(_)
                | Deny::CallerNotAllowed => {}
            }
        }
        all
    }

    #[test]
    fn every_refusal_has_a_listed_metric_name() {
        let all = every_deny();
        let names: std::collections::HashSet<&str> = all.iter().map(|d| d.name()).collect();
        let listed: std::collections::HashSet<&str> = Deny::all_names().collect();
        assert_eq!(names, listed, "Deny::all_names and Deny::name disagree");
        assert_eq!(listed.len(), Deny::all_names().count(), "a name is listed twice");
    }
}
