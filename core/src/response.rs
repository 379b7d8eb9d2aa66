//! The responses edge-auth sends instead of forwarding a request.
//!
//! 401 for a missing or invalid credential, with `WWW-Authenticate` as RFC 6750
//! section 3 describes; 400 for a request that cannot be read safely; 403 for a
//! request no rule allows. The JSON body is `{"error", "error_description"}`
//! and is built from fixed texts only: it never echoes the credential.

use crate::decision::{Deny, KeyRefusal};
use crate::jwt::JwtError;

/// A local reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// The OAuth error code and description for a denial.
pub fn error_of(d: Deny<'_>) -> (u32, &'static str, &'static str) {
    match d {
        Deny::MissingToken => (401, "missing_token", "a bearer token is required"),
        Deny::Token(e) => (401, "invalid_token", e.description()),
        Deny::BadPath(why) | Deny::BadAuthority(why) => (400, "invalid_request", why),
        Deny::AmbiguousCredential => (
            400,
            "invalid_request",
            "the request carries more than one credential, or one that cannot be read one way",
        ),
        Deny::NoRule => (403, "access_denied", "no rule allows this request"),
        Deny::IpNotAllowed => (403, "ip_not_allowed", "the client address is not allowed"),
        Deny::OriginNotAllowed => (403, "origin_not_allowed", "the request's origin is not allowed"),
        Deny::InsufficientScope(_) => (
            403,
            "insufficient_scope",
            "the token lacks the scope this resource requires",
        ),
        Deny::PreflightWithBody => (400, "invalid_request", "a CORS preflight carries no body"),
        Deny::Revoked => (401, "invalid_token", "the token has been revoked"),
        Deny::RevocationUnavailable => (
            503,
            "temporarily_unavailable",
            "the token cannot be checked for revocation right now",
        ),
        Deny::MissingApiKey => (401, "missing_token", "an API key is required"),
        Deny::ApiKey(why) => (
            401,
            "invalid_token",
            match why {
                KeyRefusal::Malformed => "the API key is malformed",
                KeyRefusal::Unknown => "the API key is not known",
                KeyRefusal::Revoked => "the API key has been revoked",
                KeyRefusal::Expired => "the API key has expired",
                KeyRefusal::BadTag => "the API key was not issued by this service",
            },
        ),
        Deny::KeyServiceUnavailable => (
            503,
            "temporarily_unavailable",
            "the API key cannot be checked right now",
        ),
        Deny::MissingCredential => (401, "missing_token", "a bearer token or an API key is required"),
        Deny::LookupBudgetExceeded { .. } => (
            429,
            "too_many_requests",
            "too many new API keys from this client: retry later",
        ),
        Deny::CallerNotAllowed => (
            403,
            "caller_not_allowed",
            "this resource is not open to this kind of caller or client",
        ),
    }
}

/// Builds the reply for a denial. `realm` comes from the configuration.
pub fn reply(d: Deny<'_>, realm: &str) -> Reply {
    let (status, error, description) = error_of(d);
    let mut headers = Vec::with_capacity(3);
    match d {
        // RFC 6750 3.1: a request without credentials gets no error code.
        Deny::MissingToken => headers.push(("www-authenticate", format!("Bearer realm=\"{realm}\""))),
        Deny::MissingApiKey => headers.push(("www-authenticate", format!("ApiKey realm=\"{realm}\""))),
        // RFC 9110 11.6.1: one challenge per scheme the resource accepts.
        Deny::MissingCredential => headers.push((
            "www-authenticate",
            format!("Bearer realm=\"{realm}\", ApiKey realm=\"{realm}\""),
        )),
        Deny::ApiKey(_) => headers.push((
            "www-authenticate",
            format!(
                "ApiKey realm=\"{realm}\", error=\"{error}\", error_description=\"{}\"",
                quoted(description)
            ),
        )),
        Deny::Token(_) | Deny::BadPath(_) | Deny::BadAuthority(_) | Deny::AmbiguousCredential | Deny::Revoked => {
            headers.push((
                "www-authenticate",
                format!(
                    "Bearer realm=\"{realm}\", error=\"{error}\", error_description=\"{}\"",
                    quoted(description)
                ),
            ))
        }
        // RFC 6750 3.1: the scope necessary to access the resource.
        Deny::InsufficientScope(required) => headers.push((
            "www-authenticate",
            format!(
                "Bearer realm=\"{realm}\", error=\"{error}\", error_description=\"{description}\", scope=\"{}\"",
                quoted(&required.scope_param())
            ),
        )),
        Deny::NoRule
        | Deny::IpNotAllowed
        | Deny::OriginNotAllowed
        | Deny::PreflightWithBody
        | Deny::RevocationUnavailable
        | Deny::KeyServiceUnavailable
        | Deny::CallerNotAllowed => {}
        Deny::LookupBudgetExceeded { retry_after_s } => headers.push(("retry-after", retry_after_s.to_string())),
    }
    headers.push(("content-type", "application/json".into()));
    headers.push(("cache-control", "no-store".into()));
    let body = serde_json::json!({"error": error, "error_description": description}).to_string();
    Reply { status, headers, body }
}

/// The reply to every request when the plugin has no valid configuration
/// (fail closed): `500 server_error`.
pub fn unconfigured() -> Reply {
    let body = serde_json::json!({
        "error": "server_error",
        "error_description": "the authentication filter is not configured",
    });
    Reply {
        status: 500,
        headers: vec![
            ("content-type", "application/json".into()),
            ("cache-control", "no-store".into()),
        ],
        body: body.to_string(),
    }
}

/// Escapes text for an RFC 9110 quoted-string (`"` and `\` get a backslash).
fn quoted(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['"', '\\']) {
        text.replace('\\', "\\\\").replace('"', "\\\"").into()
    } else {
        text.into()
    }
}

/// Whether a token error is the issuer's fault rather than the client's
/// (worth a warning in the log rather than a debug line).
pub fn is_operational(e: JwtError) -> bool {
    matches!(e, JwtError::KeysUnavailable | JwtError::NoKey)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn header<'a>(r: &'a Reply, name: &str) -> Option<&'a str> {
        r.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn missing_token_has_no_error_code() {
        let r = reply(Deny::MissingToken, "edge");
        assert_eq!(r.status, 401);
        assert_eq!(header(&r, "www-authenticate"), Some("Bearer realm=\"edge\""));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"], "missing_token");
    }

    #[test]
    fn invalid_token_follows_rfc6750() {
        let r = reply(Deny::Token(JwtError::Expired), "edge");
        assert_eq!(r.status, 401);
        assert_eq!(
            header(&r, "www-authenticate"),
            Some("Bearer realm=\"edge\", error=\"invalid_token\", error_description=\"the token has expired\"")
        );
        assert_eq!(header(&r, "content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"], "invalid_token");
        assert_eq!(body["error_description"], "the token has expired");
    }

    #[test]
    fn forbidden_replies() {
        let required =
            crate::policy::scopes::ScopeRequirement::AllOf(vec!["orders:read".into(), "orders:write".into()]);
        let r = reply(Deny::InsufficientScope(&required), "e");
        assert_eq!(r.status, 403);
        assert_eq!(
            header(&r, "www-authenticate"),
            Some("Bearer realm=\"e\", error=\"insufficient_scope\", error_description=\"the token lacks the scope this resource requires\", scope=\"orders:read orders:write\"")
        );
        for (d, code) in [
            (Deny::IpNotAllowed, "ip_not_allowed"),
            (Deny::OriginNotAllowed, "origin_not_allowed"),
            (Deny::CallerNotAllowed, "caller_not_allowed"),
        ] {
            let r = reply(d, "e");
            assert_eq!(r.status, 403);
            assert_eq!(header(&r, "www-authenticate"), None);
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(body["error"], code);
        }
    }

    #[test]
    fn other_statuses() {
        assert_eq!(reply(Deny::NoRule, "e").status, 403);
        assert_eq!(header(&reply(Deny::NoRule, "e"), "www-authenticate"), None);
        assert_eq!(reply(Deny::BadPath("x"), "e").status, 400);
        assert_eq!(reply(Deny::AmbiguousCredential, "e").status, 400);
    }

    #[test]
    fn an_unconfigured_filter_refuses_with_500() {
        let r = unconfigured();
        assert_eq!(r.status, 500);
        assert_eq!(header(&r, "www-authenticate"), None);
        assert_eq!(header(&r, "content-type"), Some("application/json"));
        assert_eq!(header(&r, "cache-control"), Some("no-store"));
        assert_eq!(
            r.body,
            r#"{"error":"server_error","error_description":"the authentication filter is not configured"}"#
        );
    }

    #[test]
    fn path_descriptions_are_escaped_in_the_header() {
        let r = reply(Deny::BadPath("encoded / or \\ in \"path\""), "e");
        let h = header(&r, "www-authenticate").unwrap();
        assert!(h.ends_with(r#"error_description="encoded / or \\ in \"path\"""#), "{h}");
    }

    #[test]
    fn descriptions_are_header_safe() {
        // every description goes inside a quoted-string: no quotes, backslashes or controls
        let all = [
            JwtError::Malformed,
            JwtError::TooLarge,
            JwtError::AlgNone,
            JwtError::UnsupportedAlg,
            JwtError::AlgNotAllowed,
            JwtError::CritHeader,
            JwtError::UnknownIssuer,
            JwtError::UnknownKid,
            JwtError::NoKey,
            JwtError::KeysUnavailable,
            JwtError::BadSignature,
            JwtError::Expired,
            JwtError::NotYetValid,
            JwtError::IssuedInFuture,
            JwtError::MissingExpiration,
            JwtError::LifetimeTooLong,
            JwtError::BadAudience,
            JwtError::MissingClaim,
            JwtError::ClaimMismatch,
        ];
        for e in all {
            let d = e.description();
            assert!(
                d.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'),
                "{d}"
            );
        }
    }
}
