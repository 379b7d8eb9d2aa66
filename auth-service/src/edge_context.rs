//! The edge's signed context headers (docs/upstream-context.md), as the service
//! reads them on its SDK endpoints.
//!
//! On a rule with `api_key`, the edge looks the key up, applies its IP allowlist
//! to the client address it established, removes the key from the request and
//! writes the key's id in `x-edge-auth-key-id`, signed with HMAC-SHA256 over the
//! identity headers, a timestamp, the method and the path. When the service shares
//! that signing key, such a request is the edge's statement that it admitted this
//! key for this request from an allowed address: the service then authenticates
//! the request by that key id and needs no client address of its own. Without a
//! valid signature nothing in these headers is believed: a client that reaches the
//! service directly can write them, as it can write `X-Forwarded-For`.
//!
//! Verification is `edge_auth_core::context::verify` (the edge's own format):
//! every accepted key is tried (two during a rotation), the timestamp must be at
//! most `max_age_s` old and at most 60 s ahead, and method and path are those of
//! the request as received, so a signature cannot be replayed onto another route
//! nor, past the window, at all.

use edge_auth_core::context::{self, ContextHeaders};

/// The shortest signing key accepted (as at the edge).
pub const MIN_KEY_BYTES: usize = 32;
/// How old a signature may be by default, in seconds.
pub const DEFAULT_MAX_AGE_S: u64 = 60;

/// How the service checks the edge's context: the header names, the signing keys
/// (the current one, and the previous one during a rotation), the largest age.
#[derive(Clone)]
pub struct EdgeContextConfig {
    headers: ContextHeaders,
    keys: Vec<Vec<u8>>,
    max_age_s: u64,
}

impl std::fmt::Debug for EdgeContextConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeContextConfig")
            .field("headers", &self.headers)
            .field("keys", &self.keys.len())
            .field("max_age_s", &self.max_age_s)
            .finish()
    }
}

impl EdgeContextConfig {
    /// `prefix` as at the edge (`x-edge-auth-`), `keys` the accepted signing keys (one
    /// or two, each at least [`MIN_KEY_BYTES`]).
    pub fn new(prefix: &str, keys: Vec<Vec<u8>>, max_age_s: u64) -> Result<EdgeContextConfig, String> {
        let headers = ContextHeaders::new(prefix)?;
        if keys.is_empty() || keys.len() > 2 {
            return Err("give one or two context signing keys".into());
        }
        if keys.iter().any(|k| k.len() < MIN_KEY_BYTES) {
            return Err(format!("a context signing key must be at least {MIN_KEY_BYTES} bytes"));
        }
        if !(1..=3600).contains(&max_age_s) {
            return Err("the context's maximum age must be between 1 and 3600 seconds".into());
        }
        Ok(EdgeContextConfig {
            headers,
            keys,
            max_age_s,
        })
    }
}

/// What the edge attests about an API-key request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested {
    /// The key the edge admitted (`x-edge-auth-key-id`).
    pub key_id: String,
    /// Its tenant as the edge has it (`x-edge-auth-tenant`), if sent.
    pub tenant: Option<String>,
}

/// What a request's context headers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeContext {
    /// None of the headers, or a service not configured to believe them.
    Absent,
    /// A valid signature by the edge over an API-key identity.
    ApiKey(Attested),
    /// A valid signature over another identity (a user's token): it attests no key.
    Other,
    /// Headers that are present but not a valid, fresh signature for this request:
    /// forged, unsigned, replayed, expired or duplicated. The reason, for the audit.
    Invalid(&'static str),
}

/// Reads the context of a request: `get(name)` gives every value of a header (as
/// received; a value that is not visible ASCII as `None`), `method` and `path` (with
/// its query) are the request's, `now` is Unix seconds.
pub fn read<'a>(
    cfg: Option<&EdgeContextConfig>,
    get: impl Fn(&str) -> Vec<Option<&'a str>>,
    method: &str,
    path: &str,
    now: i64,
) -> EdgeContext {
    let Some(cfg) = cfg else {
        return EdgeContext::Absent;
    };
    let h = &cfg.headers;
    let mut present = false;
    for name in h.names() {
        let values = get(name);
        if values.len() > 1 {
            return EdgeContext::Invalid("context_duplicated");
        }
        if values.iter().any(Option::is_none) {
            return EdgeContext::Invalid("context_malformed");
        }
        present |= !values.is_empty();
    }
    if !present {
        return EdgeContext::Absent;
    }
    let value = |name: &str| get(name).into_iter().flatten().next().map(str::to_owned);
    let now = u64::try_from(now).unwrap_or(0);
    // Every key is tried, whatever the first gives: no early exit to time.
    let mut outcome: Result<(), context::VerifyError> = Err(context::VerifyError::BadSignature);
    for key in &cfg.keys {
        let this = context::verify(h, value, key, now, cfg.max_age_s, method, path);
        if outcome.is_err() {
            outcome = this;
        }
    }
    if let Err(e) = outcome {
        return EdgeContext::Invalid(match e {
            context::VerifyError::MissingTimestamp | context::VerifyError::MissingSignature => "context_unsigned",
            context::VerifyError::Expired | context::VerifyError::FromTheFuture => "context_expired",
            context::VerifyError::BadSignature => "context_bad_signature",
            _ => "context_malformed",
        });
    }
    let [method_h, _, tenant_h, _, key_id_h, _] = h.signed();
    match (value(method_h).as_deref(), value(key_id_h)) {
        (Some("api_key"), Some(key_id)) => EdgeContext::ApiKey(Attested {
            key_id,
            tenant: value(tenant_h),
        }),
        _ => EdgeContext::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_auth_core::context::{render, Identity};
    use std::collections::HashMap;

    const KEY: &[u8] = b"edge-auth-example-key-32-bytes!!";
    const OLD: &[u8] = b"the-previous-context-key-32-byte";
    const NOW: i64 = 1_700_000_000;

    fn cfg(keys: &[&[u8]]) -> EdgeContextConfig {
        EdgeContextConfig::new("x-edge-auth-", keys.iter().map(|k| k.to_vec()).collect(), 60).unwrap()
    }

    /// The headers the edge writes for an API-key request signed with `key` at `at`.
    fn signed(key: &[u8], at: i64, method: &str, path: &str) -> Vec<(String, String)> {
        let scopes = vec!["orders:read".to_owned()];
        let id = Identity {
            method: "api_key",
            subject: "svc-billing",
            tenant: Some("acme"),
            scopes: &scopes,
            key_id: Some("key_mepybc6vdnwbtgbcqqchcvqb6w"),
            token_id: None,
        };
        render(&ContextHeaders::default(), &id, Some((key, at as u64, method, path)))
    }

    fn read_with(
        cfg: Option<&EdgeContextConfig>,
        headers: &[(String, String)],
        method: &str,
        path: &str,
    ) -> EdgeContext {
        let mut map: HashMap<&str, Vec<Option<&str>>> = HashMap::new();
        for (k, v) in headers {
            map.entry(k.as_str()).or_default().push(Some(v.as_str()));
        }
        read(cfg, |n| map.get(n).cloned().unwrap_or_default(), method, path, NOW)
    }

    fn attested() -> EdgeContext {
        EdgeContext::ApiKey(Attested {
            key_id: "key_mepybc6vdnwbtgbcqqchcvqb6w".into(),
            tenant: Some("acme".into()),
        })
    }

    #[test]
    fn a_fresh_signature_for_this_request_attests_the_key() {
        let h = signed(KEY, NOW - 5, "POST", "/v1/sessions");
        assert_eq!(read_with(Some(&cfg(&[KEY])), &h, "POST", "/v1/sessions"), attested());
        // during a rotation, either key
        assert_eq!(
            read_with(Some(&cfg(&[OLD, KEY])), &h, "POST", "/v1/sessions"),
            attested()
        );
        let h = signed(OLD, NOW, "POST", "/v1/sessions");
        assert_eq!(
            read_with(Some(&cfg(&[KEY, OLD])), &h, "POST", "/v1/sessions"),
            attested()
        );
    }

    #[test]
    fn nothing_is_believed_without_a_valid_signature() {
        let c = cfg(&[KEY]);
        let good = signed(KEY, NOW, "POST", "/v1/sessions");
        let invalid = |h: &[(String, String)], method: &str, path: &str| read_with(Some(&c), h, method, path);
        // forged: another key
        let forged = signed(b"an-attackers-own-key-of-32-bytes", NOW, "POST", "/v1/sessions");
        assert_eq!(
            invalid(&forged, "POST", "/v1/sessions"),
            EdgeContext::Invalid("context_bad_signature")
        );
        // unsigned: the identity headers alone
        let unsigned: Vec<_> = good
            .iter()
            .filter(|(k, _)| !k.ends_with("signature") && !k.ends_with("timestamp"))
            .cloned()
            .collect();
        assert_eq!(
            invalid(&unsigned, "POST", "/v1/sessions"),
            EdgeContext::Invalid("context_unsigned")
        );
        // replayed onto another route or method
        assert_eq!(
            invalid(&good, "POST", "/v1/sessions/refresh"),
            EdgeContext::Invalid("context_bad_signature")
        );
        assert_eq!(
            invalid(&good, "PUT", "/v1/sessions"),
            EdgeContext::Invalid("context_bad_signature")
        );
        assert_eq!(
            invalid(&good, "POST", "/v1/sessions?x=1"),
            EdgeContext::Invalid("context_bad_signature")
        );
        // replayed after the window, or from the future
        let old = signed(KEY, NOW - 61, "POST", "/v1/sessions");
        assert_eq!(
            invalid(&old, "POST", "/v1/sessions"),
            EdgeContext::Invalid("context_expired")
        );
        let ahead = signed(KEY, NOW + 61, "POST", "/v1/sessions");
        assert_eq!(
            invalid(&ahead, "POST", "/v1/sessions"),
            EdgeContext::Invalid("context_expired")
        );
        // a signed value changed: another key id or tenant
        for (name, value) in [("x-edge-auth-key-id", "key_other"), ("x-edge-auth-tenant", "globex")] {
            let changed: Vec<_> = good
                .iter()
                .map(|(k, v)| (k.clone(), if k == name { value.to_owned() } else { v.clone() }))
                .collect();
            assert_eq!(
                invalid(&changed, "POST", "/v1/sessions"),
                EdgeContext::Invalid("context_bad_signature")
            );
        }
        // a header sent twice
        let mut twice = good.clone();
        twice.push(("x-edge-auth-key-id".into(), "key_other".into()));
        assert_eq!(
            invalid(&twice, "POST", "/v1/sessions"),
            EdgeContext::Invalid("context_duplicated")
        );
        // a value that is not visible ASCII
        let odd = read(
            Some(&c),
            |n| if n == "x-edge-auth-tenant" { vec![None] } else { vec![] },
            "POST",
            "/",
            NOW,
        );
        assert_eq!(odd, EdgeContext::Invalid("context_malformed"));
    }

    #[test]
    fn absent_headers_or_no_key_configured() {
        assert_eq!(
            read_with(Some(&cfg(&[KEY])), &[], "POST", "/v1/sessions"),
            EdgeContext::Absent
        );
        let good = signed(KEY, NOW, "POST", "/v1/sessions");
        assert_eq!(
            read_with(None, &good, "POST", "/v1/sessions"),
            EdgeContext::Absent,
            "not configured: never believed"
        );
    }

    #[test]
    fn a_users_identity_attests_no_key() {
        let scopes = vec![];
        let id = Identity {
            method: "jwt",
            subject: "user-1",
            tenant: Some("acme"),
            scopes: &scopes,
            key_id: None,
            token_id: Some("j"),
        };
        let h = render(
            &ContextHeaders::default(),
            &id,
            Some((KEY, NOW as u64, "POST", "/v1/sessions")),
        );
        assert_eq!(
            read_with(Some(&cfg(&[KEY])), &h, "POST", "/v1/sessions"),
            EdgeContext::Other
        );
    }

    #[test]
    fn configuration_is_checked() {
        assert!(EdgeContextConfig::new("x-edge-auth-", vec![b"short".to_vec()], 60).is_err());
        assert!(EdgeContextConfig::new("x-edge-auth-", vec![], 60).is_err());
        assert!(EdgeContextConfig::new("X-Bad Prefix", vec![KEY.to_vec()], 60).is_err());
        assert!(EdgeContextConfig::new("x-edge-auth-", vec![KEY.to_vec()], 0).is_err());
        assert!(EdgeContextConfig::new("x-edge-auth-", vec![KEY.to_vec(), OLD.to_vec()], 300).is_ok());
    }
}
