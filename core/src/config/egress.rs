//! `egress_tokens`: tokens injected on egress (`crate::egress`). A
//! configuration with `egress_tokens` is an egress filter and nothing else.

use serde::Deserialize;

use crate::egress::{ClientAuth, EgressMatch, EgressToken, Secret};
use crate::policy::destination::Needs;

use super::destination::{compile_destination, RawRouteMetadata};
use super::field::{authority, err, range};
use super::rules::{check_match_path, RawMatch};
use super::ConfigError;

/// The most entries one filter may have.
const MAX_ENTRIES: usize = 16;
/// The most scopes one entry may ask for.
const MAX_SCOPES: usize = 64;

/// Why an egress configuration cannot have ingress sections.
pub(super) const EGRESS_ONLY: &str =
    "an egress configuration only injects tokens: load a second edge-auth filter for ingress rules";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEgressToken {
    name: String,
    #[serde(default, rename = "match")]
    matcher: Option<RawEgressMatch>,
    token_endpoint: RawTokenEndpoint,
    client_id: String,
    client_secret_env: String,
    #[serde(default)]
    client_auth: RawClientAuth,
    #[serde(default)]
    audience: Option<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default = "default_refresh_before_s")]
    refresh_before_s: u64,
    #[serde(default = "default_backoff_max_s")]
    backoff_max_s: u64,
    #[serde(default = "default_breaker_failures")]
    breaker_failures: u32,
    #[serde(default = "default_breaker_open_s")]
    breaker_open_s: u64,
    #[serde(default = "default_rejected_retry_s")]
    rejected_retry_s: u64,
}

fn default_refresh_before_s() -> u64 {
    300
}
fn default_backoff_max_s() -> u64 {
    30
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_open_s() -> u64 {
    30
}
fn default_rejected_retry_s() -> u64 {
    60
}
fn default_timeout_ms() -> u64 {
    2_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEgressMatch {
    #[serde(default)]
    hosts: Option<Vec<String>>,
    #[serde(default)]
    route_name: Option<String>,
    #[serde(default)]
    route_metadata: Option<RawRouteMetadata>,
    #[serde(default)]
    prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokenEndpoint {
    cluster: String,
    #[serde(default)]
    authority: Option<String>,
    path: String,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawClientAuth {
    #[default]
    Basic,
    Post,
}

/// The entries, in order, and the destination facts their matches read.
pub(super) fn compile_egress(
    raw: Vec<RawEgressToken>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Vec<EgressToken>, Needs), ConfigError> {
    if raw.is_empty() || raw.len() > MAX_ENTRIES {
        return Err(err("egress_tokens", format!("list 1 to {MAX_ENTRIES} entries")));
    }
    let mut needs = Needs::default();
    let mut out: Vec<EgressToken> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let at = format!("egress_tokens[{i}]");
        let e = compile_entry(r, &at, env, &mut needs)?;
        if out.iter().any(|o| o.name == e.name) {
            return Err(err(format!("{at}.name"), format!("\"{}\" is used twice", e.name)));
        }
        out.push(e);
    }
    Ok((out, needs))
}

fn compile_entry(
    r: RawEgressToken,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
    needs: &mut Needs,
) -> Result<EgressToken, ConfigError> {
    let name_ok = (1..=64).contains(&r.name.len())
        && r.name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !name_ok {
        return Err(err(format!("{at}.name"), "must be 1 to 64 of a-z A-Z 0-9 - _"));
    }
    let matcher = match r.matcher {
        None => None,
        Some(m) => Some(compile_match(m, &format!("{at}.match"), needs)?),
    };
    let ep = r.token_endpoint;
    let ep_at = format!("{at}.token_endpoint");
    if ep.cluster.is_empty() || ep.cluster.bytes().any(|b| b <= 0x20 || b == 0x7f) {
        return Err(err(format!("{ep_at}.cluster"), "must name an Envoy cluster"));
    }
    let authority = authority(ep.authority, &ep.cluster, &ep_at)?;
    let path = check_match_path(&ep.path, &format!("{ep_at}.path"))?;
    let timeout_ms = range(ep.timeout_ms, 100, 30_000, format!("{ep_at}.timeout_ms"))?;
    if r.client_id.is_empty() || r.client_id.len() > 256 || !r.client_id.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(err(
            format!("{at}.client_id"),
            "must be 1 to 256 printable ASCII characters",
        ));
    }
    let secret_at = format!("{at}.client_secret_env");
    if r.client_secret_env.is_empty() {
        return Err(err(secret_at, "must name an environment variable"));
    }
    let secret = match env(&r.client_secret_env) {
        Some(s) if !s.is_empty() => Secret::new(s),
        _ => {
            return Err(err(
                secret_at,
                format!(
                    "environment variable {} is not set or empty (Envoy's vm_config.environment_variables)",
                    r.client_secret_env
                ),
            ))
        }
    };
    if let Some(a) = &r.audience {
        if a.is_empty() || a.len() > 1024 || a.chars().any(char::is_control) {
            return Err(err(
                format!("{at}.audience"),
                "must be 1 to 1024 bytes without control characters",
            ));
        }
    }
    let scopes = r.scopes.unwrap_or_default();
    if scopes.len() > MAX_SCOPES {
        return Err(err(format!("{at}.scopes"), format!("list at most {MAX_SCOPES} scopes")));
    }
    for (j, s) in scopes.iter().enumerate() {
        // RFC 6749 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
        let token = !s.is_empty() && s.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\');
        if !token {
            return Err(err(format!("{at}.scopes[{j}]"), "is not an RFC 6749 scope token"));
        }
        if scopes[..j].contains(s) {
            return Err(err(format!("{at}.scopes[{j}]"), format!("\"{s}\" is listed twice")));
        }
    }
    let refresh_before_s = range(r.refresh_before_s, 0, 86_400, format!("{at}.refresh_before_s"))?;
    let backoff_max_s = range(r.backoff_max_s, 1, 300, format!("{at}.backoff_max_s"))?;
    let breaker_failures = range(r.breaker_failures, 1, 100, format!("{at}.breaker_failures"))?;
    let breaker_open_s = range(r.breaker_open_s, 1, 3_600, format!("{at}.breaker_open_s"))?;
    let rejected_retry_s = range(r.rejected_retry_s, 5, 86_400, format!("{at}.rejected_retry_s"))?;
    Ok(EgressToken {
        name: r.name,
        matcher,
        cluster: ep.cluster,
        authority,
        path,
        timeout_ms,
        client_id: r.client_id,
        client_secret: secret,
        client_auth: match r.client_auth {
            RawClientAuth::Basic => ClientAuth::Basic,
            RawClientAuth::Post => ClientAuth::Post,
        },
        audience: r.audience,
        scopes,
        refresh_before_ms: refresh_before_s * 1000,
        backoff_max_ms: backoff_max_s * 1000,
        breaker_failures,
        breaker_open_ms: breaker_open_s * 1000,
        rejected_retry_ms: rejected_retry_s * 1000,
    })
}

fn compile_match(m: RawEgressMatch, at: &str, needs: &mut Needs) -> Result<EgressMatch, ConfigError> {
    if m.hosts.is_none() && m.route_name.is_none() && m.route_metadata.is_none() && m.prefix.is_none() {
        return Err(err(
            at,
            "give at least one of hosts, route_name, route_metadata or prefix (or leave match out: every request)",
        ));
    }
    let prefix = match &m.prefix {
        None => None,
        Some(p) => Some(check_match_path(p, &format!("{at}.prefix"))?),
    };
    let raw = RawMatch {
        path: None,
        prefix: None,
        methods: Vec::new(),
        hosts: m.hosts,
        route_name: m.route_name,
        route_metadata: m.route_metadata,
    };
    Ok(EgressMatch {
        destination: compile_destination(&raw, at, needs)?,
        prefix,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::{json, Value};

    use super::super::{parse, Config, ConfigError};
    use crate::egress::ClientAuth;

    fn env(name: &str) -> Option<String> {
        match name {
            "BILLING_CLIENT_SECRET" => Some("s3cret-value".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn entry() -> Value {
        json!({
            "name": "billing",
            "match": { "hosts": ["billing.internal", "*.billing.internal"] },
            "token_endpoint": { "cluster": "issuer", "authority": "auth.example.com", "path": "/oauth/token", "timeout_ms": 2000 },
            "client_id": "mc_0123",
            "client_secret_env": "BILLING_CLIENT_SECRET",
            "client_auth": "basic",
            "audience": "https://billing.example.com",
            "scopes": ["billing:read", "billing:write"],
            "refresh_before_s": 300,
            "backoff_max_s": 30,
            "breaker_failures": 5,
            "breaker_open_s": 30,
            "rejected_retry_s": 60
        })
    }

    fn parse_value(v: &Value) -> Result<Config, ConfigError> {
        parse(v.to_string().as_bytes(), &env)
    }

    /// The error of `doc`, whose field must be `field`.
    fn refused(doc: &Value, field: &str) -> String {
        match parse_value(doc) {
            Ok(_) => panic!("accepted: {doc}"),
            Err(e) => {
                assert_eq!(e.field, field, "{e}");
                e.message
            }
        }
    }

    fn with(f: impl FnOnce(&mut Value)) -> Value {
        let mut e = entry();
        f(&mut e);
        json!({ "egress_tokens": [e] })
    }

    #[test]
    fn the_specification_example_parses_with_every_value() {
        let cfg = parse_value(&json!({ "egress_tokens": [entry()] })).unwrap();
        let e = &cfg.egress[0];
        assert_eq!(e.name, "billing");
        assert_eq!(
            (e.cluster.as_str(), e.authority.as_str()),
            ("issuer", "auth.example.com")
        );
        assert_eq!((e.path.as_str(), e.timeout_ms), ("/oauth/token", 2_000));
        assert_eq!(e.client_secret.expose(), "s3cret-value");
        assert_eq!(e.client_auth, ClientAuth::Basic);
        assert_eq!(e.scopes, ["billing:read", "billing:write"]);
        assert_eq!(
            (
                e.refresh_before_ms,
                e.backoff_max_ms,
                e.breaker_failures,
                e.breaker_open_ms,
                e.rejected_retry_ms
            ),
            (300_000, 30_000, 5, 30_000, 60_000)
        );
        assert!(cfg.egress_needs.host);
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        assert!(!format!("{cfg:?}").contains("s3cret-value"));
    }

    #[test]
    fn defaults_apply_and_match_may_be_left_out() {
        let doc = json!({ "egress_tokens": [{
            "name": "a",
            "token_endpoint": { "cluster": "issuer", "path": "/oauth/token" },
            "client_id": "mc_1",
            "client_secret_env": "BILLING_CLIENT_SECRET"
        }]});
        let cfg = parse_value(&doc).unwrap();
        let e = &cfg.egress[0];
        assert!(e.matcher.is_none() && !cfg.egress_needs.any());
        assert_eq!(e.authority, "issuer");
        assert_eq!(e.timeout_ms, 2_000);
        assert_eq!(e.client_auth, ClientAuth::Basic);
        assert_eq!(
            (
                e.refresh_before_ms,
                e.backoff_max_ms,
                e.breaker_failures,
                e.breaker_open_ms,
                e.rejected_retry_ms
            ),
            (300_000, 30_000, 5, 30_000, 60_000)
        );
        // without egress_tokens nothing changes
        let ingress = parse_value(&json!({})).unwrap();
        assert!(ingress.egress.is_empty());
    }

    #[test]
    fn unknown_fields_are_refused_at_every_level() {
        refused(
            &with(|e| e["client_secret"] = json!("inline")),
            "egress_tokens[0].client_secret",
        );
        refused(
            &with(|e| e["token_endpoint"]["query"] = json!("x")),
            "egress_tokens[0].token_endpoint.query",
        );
        refused(
            &with(|e| e["match"]["path"] = json!("/x")),
            "egress_tokens[0].match.path",
        );
        refused(
            &with(|e| e["match"]["methods"] = json!(["GET"])),
            "egress_tokens[0].match.methods",
        );
        refused(
            &with(|e| e["client_auth"] = json!("jwt")),
            "egress_tokens[0].client_auth",
        );
    }

    #[test]
    fn the_secret_must_come_from_a_set_environment_variable() {
        let m = refused(
            &with(|e| e["client_secret_env"] = json!("UNSET")),
            "egress_tokens[0].client_secret_env",
        );
        assert!(m.contains("UNSET"));
        refused(
            &with(|e| e["client_secret_env"] = json!("EMPTY")),
            "egress_tokens[0].client_secret_env",
        );
        refused(
            &with(|e| e["client_secret_env"] = json!("")),
            "egress_tokens[0].client_secret_env",
        );
        let missing = with(|e| {
            e.as_object_mut().unwrap().remove("client_secret_env");
        });
        refused(&missing, "egress_tokens[0]");
    }

    #[test]
    fn an_egress_filter_has_no_ingress_section() {
        for (field, value) in [
            (
                "providers",
                json!([{"name": "p", "issuer": "i", "audiences": ["a"], "algorithms": ["HS256"], "hmac_secrets": [{"env": "BILLING_CLIENT_SECRET", "alg": "HS256"}]}]),
            ),
            (
                "rules",
                json!([{"name": "r", "match": {"prefix": "/"}, "public": true}]),
            ),
            ("default_rule", json!({"public": true})),
            ("api_keys", json!({})),
            ("context", json!({})),
            (
                "auth_service",
                json!({"cluster": "auth", "token_env": "BILLING_CLIENT_SECRET"}),
            ),
        ] {
            let mut doc = json!({ "egress_tokens": [entry()] });
            doc[field] = value;
            let m = refused(&doc, field);
            assert!(m.contains("load a second edge-auth filter"), "{m}");
        }
    }

    #[test]
    fn bad_paths_are_refused() {
        for p in ["oauth/token", "/oauth/token?x=1", "/a/../token", "/a//b", "", "/a b"] {
            refused(
                &with(|e| e["token_endpoint"]["path"] = json!(p)),
                "egress_tokens[0].token_endpoint.path",
            );
        }
        refused(
            &with(|e| e["match"]["prefix"] = json!("/x/../y")),
            "egress_tokens[0].match.prefix",
        );
        refused(&with(|e| e["match"] = json!({})), "egress_tokens[0].match");
        refused(
            &with(|e| e["match"]["hosts"] = json!(["bad host"])),
            "egress_tokens[0].match.hosts[0]",
        );
    }

    #[test]
    fn names_are_checked_and_unique() {
        for n in ["", "a b", "a.b", "é", &"a".repeat(65)] {
            refused(&with(|e| e["name"] = json!(n)), "egress_tokens[0].name");
        }
        let doc = json!({ "egress_tokens": [entry(), entry()] });
        let m = refused(&doc, "egress_tokens[1].name");
        assert!(m.contains("twice"));
        refused(&json!({ "egress_tokens": [] }), "egress_tokens");
        let many: Vec<Value> = (0..17)
            .map(|i| {
                let mut e = entry();
                e["name"] = json!(format!("e{i}"));
                e
            })
            .collect();
        refused(&json!({ "egress_tokens": many }), "egress_tokens");
    }

    #[test]
    fn numbers_out_of_range_are_refused() {
        for (field, bad) in [
            ("refresh_before_s", json!(86_401)),
            ("refresh_before_s", json!(-1)),
            ("backoff_max_s", json!(0)),
            ("backoff_max_s", json!(301)),
            ("breaker_failures", json!(0)),
            ("breaker_failures", json!(101)),
            ("breaker_open_s", json!(0)),
            ("breaker_open_s", json!(3_601)),
            ("rejected_retry_s", json!(4)),
            ("rejected_retry_s", json!(86_401)),
        ] {
            let doc = with(|e| e[field] = bad.clone());
            let e = parse_value(&doc).unwrap_err();
            assert!(
                e.field.starts_with(&format!("egress_tokens[0].{field}")),
                "{field} {bad}: {e}"
            );
        }
        for t in [99, 30_001] {
            refused(
                &with(|e| e["token_endpoint"]["timeout_ms"] = json!(t)),
                "egress_tokens[0].token_endpoint.timeout_ms",
            );
        }
        let ok = with(|e| e["refresh_before_s"] = json!(0));
        assert!(parse_value(&ok).is_ok());
    }

    #[test]
    fn identities_and_scopes_are_checked() {
        for id in ["", "a\r\nb", "tab\there", "é", &"a".repeat(257)] {
            refused(&with(|e| e["client_id"] = json!(id)), "egress_tokens[0].client_id");
        }
        for s in ["", "a b", "a\"b", "a\\b", "é"] {
            refused(&with(|e| e["scopes"] = json!([s])), "egress_tokens[0].scopes[0]");
        }
        refused(&with(|e| e["scopes"] = json!(["a", "a"])), "egress_tokens[0].scopes[1]");
        refused(&with(|e| e["audience"] = json!("a\nb")), "egress_tokens[0].audience");
        refused(&with(|e| e["audience"] = json!("")), "egress_tokens[0].audience");
        refused(
            &with(|e| e["token_endpoint"]["cluster"] = json!("")),
            "egress_tokens[0].token_endpoint.cluster",
        );
        refused(
            &with(|e| e["token_endpoint"]["authority"] = json!("a b")),
            "egress_tokens[0].token_endpoint.authority",
        );
    }
}
