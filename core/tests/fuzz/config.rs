//! Configuration parsing (`config::parse`). The operator writes it, but a
//! configuration is JSON from outside the filter: it must never panic the
//! VM, and whatever it accepts stays within the documented limits.
//!
//! Seeds: every JSON configuration example in docs/configuration.md, plus
//! one that uses every section. Mutations work on the JSON text.
//!
//! Properties: parsing is deterministic; an error names what is wrong and
//! never quotes a secret from the environment; an accepted configuration
//! keeps `max_token_bytes` within 256 to 65536, the token cache within
//! 100000 entries, each provider's leeway within 300 s with at least one
//! algorithm and only keys bound to its algorithms, remote JWKS limits
//! within their documented ranges, and unique rule names.

use std::collections::HashSet;

use edge_auth_core::config::parse;

use super::engine::{Checked, Rng, Target};
use super::json::{any_value, hostile_string};

const SECRET: &str = "fuzz-secret-value-0123456789abcdef0123456789abcdef0123456789";

fn env(name: &str) -> Option<String> {
    (!name.contains("MISSING")).then(|| SECRET.to_owned())
}

/// The configuration examples of docs/configuration.md (fenced JSON blocks
/// that parse as objects).
fn doc_examples() -> Vec<Vec<u8>> {
    let doc = include_str!("../../../docs/configuration.md");
    let mut out = Vec::new();
    let mut rest = doc;
    while let Some(start) = rest.find("```json") {
        let body = &rest[start + 7..];
        let Some(end) = body.find("```") else { break };
        let block = body[..end].trim();
        if serde_json::from_str::<serde_json::Value>(block).is_ok_and(|v| v.is_object()) {
            out.push(block.as_bytes().to_vec());
        }
        rest = &body[end + 3..];
    }
    out
}

fn everything() -> String {
    serde_json::json!({
        "max_token_bytes": 8192,
        "realm": "api",
        "token_cache": {"max_entries": 128},
        "providers": [
            {"name": "hs", "issuer": "https://hs", "audiences": ["api"], "algorithms": ["HS256", "HS512"],
             "hmac_secrets": [{"env": "HS", "alg": "HS256", "kid": "h"}, {"env": "HS", "alg": "HS512", "encoding": "utf8"}],
             "leeway_s": 30, "max_lifetime_s": 3600, "required_claims": [{"name": "sub"}, {"name": "role", "one_of": ["a", 1]}],
             "token_sources": [{"header": "authorization", "scheme": "Bearer"}, {"cookie": "tok"}, {"query": "access_token"}],
             "claim_headers": [{"claim": "sub", "header": "x-auth-subject"}], "payload_header": "x-auth-payload",
             "forward_token": false, "check_revocation": true},
            {"name": "remote", "issuer": "https://idp", "audiences": ["api"], "algorithms": ["RS256", "ES256"],
             "remote_jwks": {"cluster": "idp", "path": "/jwks", "timeout_ms": 1000, "refresh_interval_s": 600,
                             "min_refetch_interval_s": 30, "max_response_bytes": 65536}}
        ],
        "rules": [
            {"name": "health", "match": {"path": "/health"}, "public": true},
            {"name": "api", "match": {"prefix": "/api/", "methods": ["GET", "POST"]}, "jwt": {"providers": ["hs", "remote"]},
             "ip": {"allow": ["10.0.0.0/8"], "deny": ["10.1.0.0/16"], "trusted_hops": 1},
             "origin": {"allowed": ["https://*.example.com"], "cors": {"allow_credentials": true}},
             "scopes": {"all_of": ["orders:read"]}},
            {"name": "keys", "match": {"prefix": "/partner/"}, "api_key": {}}
        ],
        "default_rule": {"jwt": {"providers": ["hs"]}},
        "auth_service": {"cluster": "auth", "authority": "auth.internal", "token_env": "SVC"},
        "api_keys": {},
        "context": {"signing_key_env": "CTX"}
    })
    .to_string()
}

/// Replaces one JSON value of the text (found by a `:` or `[`/`,` before it)
/// with a hostile one.
fn replace_value(rng: &mut Rng, text: &str) -> String {
    let starts: Vec<usize> = text.match_indices([':', '[', ',']).map(|(i, _)| i + 1).collect();
    let Some(&start) = starts.get(rng.below(starts.len())) else {
        return text.to_owned();
    };
    let value_end = text[start..].find([',', '}', ']']).map_or(text.len(), |e| start + e);
    let replacement = match rng.below(3) {
        0 => format!("\"{}\"", hostile_string(rng).replace(['"', '\\'], "")),
        _ => any_value(rng, 1).text(),
    };
    format!("{}{}{}", &text[..start], replacement, &text[value_end..])
}

fn generate(rng: &mut Rng) -> Vec<u8> {
    let mut seeds = doc_examples();
    seeds.push(everything().into_bytes());
    let base = String::from_utf8(rng.pick(&seeds).clone()).unwrap_or_default();
    let mut text = base;
    for _ in 0..1 + rng.count(1, 6) {
        text = match rng.below(4) {
            0 => {
                // an unknown or duplicated field after an opening brace
                let braces: Vec<usize> = text.match_indices('{').map(|(i, _)| i + 1).collect();
                let Some(&at) = braces.get(rng.below(braces.len())) else {
                    continue;
                };
                let name = if rng.one_in(2) {
                    (rng.word(&[
                        "name",
                        "alg",
                        "env",
                        "issuer",
                        "algorithms",
                        "keys",
                        "path",
                        "prefix",
                        "public",
                    ]))
                    .to_owned()
                } else {
                    hostile_string(rng).replace(['"', '\\'], "")
                };
                format!(
                    "{}\"{}\":{},{}",
                    &text[..at],
                    name,
                    any_value(rng, 2).text(),
                    &text[at..]
                )
            }
            _ => replace_value(rng, &text),
        };
    }
    text.into_bytes()
}

pub fn check(json: &[u8]) -> Checked {
    let first = parse(json, &env);
    let second = parse(json, &env);
    match (&first, &second) {
        (Err(a), Err(b)) if a.to_string() == b.to_string() => {}
        (Ok(_), Ok(_)) => {}
        _ => return Err("parsing is not deterministic".into()),
    }
    let cfg = match first {
        Err(e) => {
            let msg = e.to_string();
            if msg.is_empty() || msg.contains(SECRET) || msg.contains(&SECRET[..24]) {
                return Err(format!("error message {msg:?}"));
            }
            let field = msg
                .split('`')
                .nth(1)
                .unwrap_or("-")
                .split(['[', '.'])
                .next()
                .unwrap_or("-")
                .to_owned();
            return Ok(format!("err:{field}"));
        }
        Ok(cfg) => cfg,
    };
    if !(256..=65536).contains(&cfg.max_token_bytes) || cfg.token_cache_entries > 100_000 {
        return Err(format!(
            "max_token_bytes {} token cache {}",
            cfg.max_token_bytes, cfg.token_cache_entries
        ));
    }
    for p in &cfg.providers {
        if p.leeway_s > 300 || p.algorithms.is_empty() || p.max_lifetime_s == Some(0) {
            return Err(format!(
                "provider {:?}: leeway {} algorithms {:?}",
                p.name, p.leeway_s, p.algorithms
            ));
        }
        if let Some(k) = p.static_keys.iter().find(|k| !p.algorithms.contains(&k.alg())) {
            return Err(format!(
                "provider {:?} holds a {} key it does not allow",
                p.name,
                k.alg()
            ));
        }
        if let Some(r) = &p.remote {
            let ok = (100..=60_000).contains(&r.timeout_ms)
                && (1..=86_400).contains(&r.refresh_interval_s)
                && (1024..=1_048_576).contains(&r.max_response_bytes)
                && r.path.starts_with('/');
            if !ok {
                return Err(format!("provider {:?}: remote JWKS {r:?}", p.name));
            }
        }
    }
    let mut names = HashSet::new();
    if let Some(rule) = cfg
        .routes
        .rules()
        .iter()
        .find(|r| r.name.is_empty() || !names.insert(r.name.clone()))
    {
        return Err(format!("rule name {:?} accepted twice or empty", rule.name));
    }
    if format!("{:?}", cfg.auth_service).contains(SECRET) || format!("{:?}", cfg.context).contains(SECRET) {
        return Err("a secret is printed by Debug".into());
    }
    Ok(format!(
        "ok:{}:{}",
        cfg.providers.len().min(3),
        cfg.routes.rules().len().min(3)
    ))
}

pub fn target() -> Target {
    let mut seeds = doc_examples();
    assert!(
        seeds.len() >= 5,
        "the docs' configuration examples are the seeds ({} found)",
        seeds.len()
    );
    seeds.push(everything().into_bytes());
    Target {
        name: "config",
        bounded_execs: 4_000,
        max_len: 1 << 20,
        seeds,
        dictionary: super::json::dictionary(),
        generate: Box::new(generate),
        check: Box::new(check),
    }
}
