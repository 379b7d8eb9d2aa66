//! `providers`: JWT issuers, their keys (inline JWKS, PEM, HMAC secrets
//! from the environment, a remote JWKS) and where their tokens are read.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::Value;

use crate::claim_path::RawClaimPath;
use crate::jwt::keys::{parse_jwks, Algorithm, BoundKey, KeyFamily, KeySet};
use crate::jwt::{ClaimHeader, Provider, RemoteJwks, RequiredClaim};
use crate::policy::caller::MachineTokens;
use crate::policy::scopes::ScopeSource;
use crate::token_source::TokenSource;

use super::defaults;
use super::field::{authority, claim_path, err, header_name, range, written_header_name};
use super::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    pub(super) name: String,
    pub(super) issuer: String,
    pub(super) audiences: Vec<String>,
    pub(super) algorithms: Vec<String>,
    #[serde(default)]
    pub(super) jwks: Option<Value>,
    #[serde(default)]
    pub(super) pem_keys: Vec<RawPemKey>,
    #[serde(default)]
    pub(super) hmac_secrets: Vec<RawHmacSecret>,
    #[serde(default)]
    pub(super) remote_jwks: Option<RawRemoteJwks>,
    #[serde(default = "defaults::leeway_s")]
    pub(super) leeway_s: u64,
    #[serde(default)]
    pub(super) max_lifetime_s: Option<u64>,
    #[serde(default = "defaults::yes")]
    pub(super) require_expiration: bool,
    #[serde(default)]
    pub(super) required_claims: Vec<RawRequiredClaim>,
    #[serde(default = "default_token_sources")]
    pub(super) token_sources: Vec<RawTokenSource>,
    #[serde(default)]
    pub(super) claim_headers: Vec<RawClaimHeader>,
    #[serde(default)]
    pub(super) payload_header: Option<String>,
    #[serde(default)]
    pub(super) forward_token: bool,
    #[serde(default = "defaults::scope_claims")]
    pub(super) scope_claims: Vec<RawClaimPath>,
    #[serde(default)]
    pub(super) role_claim: Option<RawClaimPath>,
    #[serde(default)]
    pub(super) check_revocation: bool,
    #[serde(default)]
    pub(super) machine_tokens: Option<RawMachineTokens>,
}

/// A provider's `machine_tokens`; an absent field takes the default that
/// fits Auth0 and the reference service.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMachineTokens {
    #[serde(default)]
    pub(super) claim: Option<RawClaimPath>,
    #[serde(default)]
    pub(super) equals: Option<String>,
    #[serde(default)]
    pub(super) client_id_claim: Option<RawClaimPath>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPemKey {
    pub(super) alg: String,
    pub(super) pem: String,
    #[serde(default)]
    pub(super) kid: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHmacSecret {
    pub(super) env: String,
    pub(super) alg: String,
    #[serde(default)]
    pub(super) kid: Option<String>,
    #[serde(default)]
    pub(super) encoding: SecretEncoding,
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
pub(super) struct RawRemoteJwks {
    pub(super) cluster: String,
    #[serde(default)]
    pub(super) path: Option<String>,
    #[serde(default)]
    pub(super) authority: Option<String>,
    #[serde(default = "defaults::timeout_ms")]
    pub(super) timeout_ms: u64,
    #[serde(default = "defaults::refresh_interval_s")]
    pub(super) refresh_interval_s: u64,
    #[serde(default = "defaults::min_refetch_interval_s")]
    pub(super) min_refetch_interval_s: u64,
    #[serde(default = "defaults::max_jwks_bytes")]
    pub(super) max_response_bytes: usize,
    #[serde(default)]
    pub(super) discovery: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequiredClaim {
    pub(super) name: RawClaimPath,
    #[serde(default)]
    pub(super) one_of: Option<Vec<Value>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokenSource {
    #[serde(default)]
    pub(super) header: Option<String>,
    #[serde(default)]
    pub(super) scheme: Option<String>,
    #[serde(default)]
    pub(super) cookie: Option<String>,
    #[serde(default)]
    pub(super) query: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClaimHeader {
    pub(super) claim: RawClaimPath,
    pub(super) header: String,
}

pub(super) fn compile_provider(
    p: RawProvider,
    at: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Provider, ConfigError> {
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
            err(format!("{at}.algorithms[{j}]"), format!("unknown algorithm \"{name}\" (supported: HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA)"))
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
        let name = claim_path(&c.name, format!("{at}.required_claims[{j}].name"))?;
        if c.one_of.as_ref().is_some_and(Vec::is_empty) {
            return Err(err(
                format!("{at}.required_claims[{j}].one_of"),
                "must list at least one value",
            ));
        }
        required_claims.push(RequiredClaim { name, one_of: c.one_of });
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
        let claim = claim_path(&c.claim, format!("{at}.claim_headers[{j}].claim"))?;
        let header = written_header_name(&c.header, &format!("{at}.claim_headers[{j}].header"))?;
        if claim_headers.iter().any(|h: &ClaimHeader| h.header == header) {
            return Err(err(
                format!("{at}.claim_headers[{j}].header"),
                format!("\"{header}\" is written twice"),
            ));
        }
        claim_headers.push(ClaimHeader { claim, header });
    }
    let mut scope_claims = Vec::with_capacity(p.scope_claims.len());
    for (j, c) in p.scope_claims.iter().enumerate() {
        scope_claims.push(claim_path(c, format!("{at}.scope_claims[{j}]"))?);
    }
    let role_claim = match &p.role_claim {
        Some(raw) => Some(claim_path(raw, format!("{at}.role_claim"))?),
        None => None,
    };
    let scopes = ScopeSource {
        scope_claims,
        role_claim,
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
        machine_tokens: compile_machine_tokens(p.machine_tokens.as_ref(), &format!("{at}.machine_tokens"))?,
    })
}

/// A provider's `machine_tokens`, each field defaulting to Auth0's and the
/// reference service's (`gty` equal to `"client-credentials"`, client id in `azp`).
fn compile_machine_tokens(raw: Option<&RawMachineTokens>, at: &str) -> Result<MachineTokens, ConfigError> {
    let mut m = MachineTokens::default();
    let Some(raw) = raw else { return Ok(m) };
    if let Some(c) = &raw.claim {
        m.claim = claim_path(c, format!("{at}.claim"))?;
    }
    if let Some(e) = &raw.equals {
        if e.is_empty() {
            return Err(err(format!("{at}.equals"), "must not be empty"));
        }
        m.equals = e.clone();
    }
    if let Some(c) = &raw.client_id_claim {
        m.client_id_claim = claim_path(c, format!("{at}.client_id_claim"))?;
    }
    Ok(m)
}

pub(super) fn allowed_alg(name: &str, allowed: &[Algorithm], at: &str) -> Result<Algorithm, ConfigError> {
    let alg = Algorithm::from_name(name).ok_or_else(|| err(at, format!("unknown algorithm \"{name}\"")))?;
    if !allowed.contains(&alg) {
        return Err(err(at, format!("{alg} is not in the provider's algorithms")));
    }
    Ok(alg)
}

/// How the path of a discovery document ends (OpenID Connect Discovery 1.0, section 4).
const DISCOVERY_SUFFIX: &str = "/.well-known/openid-configuration";

pub(super) fn compile_remote(r: RawRemoteJwks, at: &str) -> Result<RemoteJwks, ConfigError> {
    if r.cluster.is_empty() {
        return Err(err(format!("{at}.cluster"), "must name an Envoy cluster"));
    }
    let (path, discovery) = match (r.path, r.discovery) {
        (Some(p), None) => (p, false),
        (None, Some(d)) => (d, true),
        _ => {
            return Err(err(
                at,
                "give exactly one of \"path\" (the JWKS) or \"discovery\" (the OpenID Connect discovery document)",
            ))
        }
    };
    if discovery {
        if !path.starts_with('/')
            || !path.ends_with(DISCOVERY_SUFFIX)
            || path.bytes().any(|b| b <= 0x20 || b >= 0x7f || b == b'?' || b == b'#')
        {
            return Err(err(
                format!("{at}.discovery"),
                "must be the issuer's path followed by /.well-known/openid-configuration, without a query",
            ));
        }
    } else if !path.starts_with('/') || path.bytes().any(|b| b <= 0x20 || b == 0x7f) {
        return Err(err(
            format!("{at}.path"),
            "must be an absolute path such as /.well-known/jwks.json",
        ));
    }
    range(r.timeout_ms, 100, 60_000, format!("{at}.timeout_ms"))?;
    range(r.refresh_interval_s, 1, 86_400, format!("{at}.refresh_interval_s"))?;
    range(
        r.min_refetch_interval_s,
        1,
        86_400,
        format!("{at}.min_refetch_interval_s"),
    )?;
    range(
        r.max_response_bytes,
        1024,
        1024 * 1024,
        format!("{at}.max_response_bytes"),
    )?;
    let authority = authority(r.authority, &r.cluster, at)?;
    Ok(RemoteJwks {
        cluster: r.cluster,
        path,
        discovery,
        authority,
        timeout_ms: r.timeout_ms,
        refresh_interval_s: r.refresh_interval_s,
        min_refetch_interval_s: r.min_refetch_interval_s,
        max_response_bytes: r.max_response_bytes,
    })
}

pub(super) fn compile_source(s: RawTokenSource, at: &str) -> Result<TokenSource, ConfigError> {
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

pub(super) fn decode_secret(value: &str, encoding: SecretEncoding) -> Option<Vec<u8>> {
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

/// Every provider, and the headers they write upstream (claim and payload
/// headers, each once). Names and issuers are unique; no provider reads its
/// token from a header any provider writes.
pub(super) fn compile_providers(
    raw: Vec<RawProvider>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Vec<Provider>, Vec<String>), ConfigError> {
    let mut written = Vec::new();
    let mut providers = Vec::with_capacity(raw.len());
    let mut names = HashSet::new();
    let mut issuers = HashSet::new();
    for (i, p) in raw.into_iter().enumerate() {
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
    Ok((providers, written))
}

/// A provider's default token source: `Authorization: Bearer`.
fn default_token_sources() -> Vec<RawTokenSource> {
    vec![RawTokenSource {
        header: Some("authorization".into()),
        scheme: Some("Bearer".into()),
        cookie: None,
        query: None,
    }]
}

/// `api_keys.sources` by default: `x-api-key`, then `Authorization: ApiKey`.
pub(super) fn default_api_key_sources() -> Vec<RawTokenSource> {
    let header = |name: &str, scheme: Option<&str>| RawTokenSource {
        header: Some(name.into()),
        scheme: scheme.map(String::from),
        cookie: None,
        query: None,
    };
    vec![header("x-api-key", None), header("authorization", Some("ApiKey"))]
}
