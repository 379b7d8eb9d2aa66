//! The revocation feed (`revocation::RevocationState::apply`): a series of
//! answers from the auth service applied to one state, and the poll path
//! built from the cursor they carry.
//!
//! Input layout: answers separated by the byte 0x1e.
//!
//! Properties: a body over the limit is `too_large`; a refused answer leaves
//! the state, its cursor and its global cut-off exactly as they were; an
//! applied one leaves at most `max_entries` entries and marks the state
//! synced; the poll path is the base path plus `since=` and the cursor
//! percent-encoded (only unreserved characters and `%XX`, decoding back to
//! the cursor: a cursor cannot add a query parameter); a token whose `jti`
//! was just revoked is refused; so is an API key whose hash or id an
//! applied answer lists (live), and a key answer computed before a key
//! cut-off of its tenant or the global one (contract 1.3).

use edge_auth_core::api_key;
use edge_auth_core::jwt::inspect;
use edge_auth_core::jwt::revocation::{Limits, RevocationState};

use super::engine::{Checked, Rng, Target};
use super::json::{any_value, b64u, hostile_string, object, J};

const MAX: usize = 65_536;
const NOW: u64 = 1_800_000_000;
const LIMITS: Limits = Limits { max_entries: 40 };
const BASE: &str = "/internal/v1/revocations";

fn time(rng: &mut Rng) -> J {
    match rng.below(8) {
        0 => J::n(NOW),
        1 => J::n(NOW - 1),
        2 => J::n(u64::MAX),
        3 => J::Raw(rng.pick(&["-1", "1.5", "null", "\"1\""]).to_string()),
        _ => J::n(NOW + rng.below(10_000) as u64),
    }
}

fn entries(rng: &mut Rng, key: &str) -> J {
    J::Arr(
        (0..rng.count(4, 60))
            .map(|_| {
                let id = if rng.one_in(5) {
                    hostile_string(rng)
                } else {
                    format!("{key}{}", rng.below(30))
                };
                let time_field = if key == "sub" { "revoked_before" } else { "expires_at" };
                let name = match key {
                    "sub" => "subject",
                    "sid" => "sid",
                    _ => "jti",
                };
                let fields = vec![(name, J::s(id)), (time_field, time(rng))];
                object(rng, fields)
            })
            .collect(),
    )
}

/// A time that is always well-formed (in the past, now, or later).
fn clean_time(rng: &mut Rng) -> J {
    J::n(NOW - 5 + rng.below(10_000) as u64)
}

/// A key hash: mostly well-formed (from a few), sometimes hostile
/// (`clean`: always well-formed).
fn key_hash(rng: &mut Rng, clean: bool) -> J {
    if clean {
        return J::s(format!("{:064x}", rng.below(4)));
    }
    match rng.below(6) {
        0 => J::s(hostile_string(rng)),
        1 => J::s(format!("{:064X}", rng.below(4))),
        2 => J::s(format!("{:063x}", rng.below(4))),
        3 => J::Raw("null".into()),
        _ => J::s(format!("{:064x}", rng.below(4))),
    }
}

/// `api_keys` entries: a hash, an id, both or neither (`clean`: at least
/// one, every value well-formed, so that the answer can apply).
fn key_entries(rng: &mut Rng, clean: bool) -> J {
    J::Arr(
        (0..rng.count(3, 20))
            .map(|_| {
                let mut fields = Vec::new();
                let hash = !rng.one_in(3);
                if hash {
                    fields.push(("key_hash", key_hash(rng, clean)));
                }
                if !rng.one_in(3) || (clean && !hash) {
                    let id = if !clean && rng.one_in(5) {
                        hostile_string(rng)
                    } else {
                        format!("key_{}", rng.below(10))
                    };
                    fields.push(("key_id", J::s(id)));
                }
                let t = if clean { clean_time(rng) } else { time(rng) };
                fields.push(("expires_at", t));
                object(rng, fields)
            })
            .collect(),
    )
}

/// `api_key_tenants` entries (`clean`: every value well-formed).
fn key_tenants(rng: &mut Rng, clean: bool) -> J {
    J::Arr(
        (0..rng.count(2, 8))
            .map(|_| {
                let tenant = if !clean && rng.one_in(5) {
                    hostile_string(rng)
                } else {
                    format!("t{}", rng.below(5))
                };
                let t = if clean { clean_time(rng) } else { time(rng) };
                let fields = vec![("tenant", J::s(tenant)), ("revoked_before", t)];
                object(rng, fields)
            })
            .collect(),
    )
}

fn answer(rng: &mut Rng) -> J {
    let cursor = if rng.one_in(3) {
        hostile_string(rng)
    } else {
        format!("c{}", rng.below(1000))
    };
    let global = if rng.one_in(3) {
        time(rng)
    } else {
        J::Raw("null".into())
    };
    let fields = vec![
        ("cursor", J::s(cursor)),
        ("reset", J::Raw(if rng.one_in(3) { "true" } else { "false" }.into())),
        ("poll_interval_s", J::n(rng.below(100))),
        ("revoked_before", global),
        ("subjects", entries(rng, "sub")),
        ("sessions", entries(rng, "sid")),
        ("jtis", entries(rng, "j")),
    ];
    // Key entries only (the other lists empty), well-formed, half the time: answers
    // that apply with key entries in them.
    let keys_only = rng.one_in(2);
    let mut fields = if keys_only {
        fields
            .into_iter()
            .map(|(k, v)| match k {
                "subjects" | "sessions" | "jtis" => (k, J::Arr(vec![])),
                _ => (k, v),
            })
            .collect()
    } else {
        fields
    };
    if keys_only || !rng.one_in(3) {
        fields.push(("api_keys", key_entries(rng, keys_only)));
    }
    if keys_only || rng.one_in(2) {
        fields.push(("api_key_tenants", key_tenants(rng, keys_only)));
    }
    if rng.one_in(3) {
        let global = if rng.one_in(2) {
            time(rng)
        } else {
            J::Raw("null".into())
        };
        fields.push(("api_keys_revoked_before", global));
    }
    object(rng, fields)
}

fn generate(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..1 + rng.count(2, 8) {
        if i > 0 {
            out.push(0x1e);
        }
        let doc = if rng.one_in(20) { any_value(rng, 0) } else { answer(rng) };
        out.extend_from_slice(doc.text().as_bytes());
    }
    out
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

fn claims_with_jti(jti: &str) -> Option<edge_auth_core::jwt::Claims> {
    let payload = serde_json::json!({"jti": jti, "sub": "nobody", "iat": NOW}).to_string();
    let token = format!("{}.{}.AAAA", b64u(br#"{"alg":"HS256"}"#), b64u(payload.as_bytes()));
    inspect(&token, 65_536).ok().map(|t| t.claims)
}

/// The API-key entries of an applied answer are in force: a live listed hash
/// or id is refused, and an answer computed before a tenant's or the global
/// key cut-off is refused (one computed at the cut-off is not, unless a
/// later cut-off held from before covers it).
fn check_keys(state: &RevocationState, doc: &serde_json::Value) -> Result<(), String> {
    let keys = state.keys();
    for e in doc["api_keys"].as_array().into_iter().flatten() {
        if e["expires_at"].as_u64().is_some_and(|exp| exp > NOW) {
            let (hash, id) = (e["key_hash"].as_str(), e["key_id"].as_str());
            if (hash.is_some() || id.is_some()) && !keys.lists(hash, id) {
                return Err(format!("key {e} was revoked but is not listed"));
            }
        }
    }
    let mut record = api_key::KeyRecord::new("key_x".into(), "t".into(), "s".into(), vec![], vec![], vec![], None)
        .map_err(|e| e.to_string())?;
    for e in doc["api_key_tenants"].as_array().into_iter().flatten() {
        if let (Some(t), Some(rb)) = (e["tenant"].as_str(), e["revoked_before"].as_u64()) {
            if t.is_empty()
                || rb == 0
                || api_key::KeyRecord::new("k".into(), t.into(), "s".into(), vec![], vec![], vec![], None).is_err()
            {
                continue;
            }
            record.tenant = t.to_owned();
            record.answered_at = Some(rb - 1);
            if !keys.predates_cut_off(&record) {
                return Err(format!(
                    "tenant {t:?} cut off at {rb}, an answer at {} is not refused",
                    rb - 1
                ));
            }
            if keys.cut_off(t).is_some_and(|c| c < rb) {
                return Err(format!("tenant {t:?}: the cut-off fell below {rb}"));
            }
        }
    }
    if let Some(g) = doc["api_keys_revoked_before"].as_u64() {
        if keys.global_cut_off().is_none_or(|held| held < g) {
            return Err(format!(
                "global key cut-off {g} not in force: {:?}",
                keys.global_cut_off()
            ));
        }
    }
    Ok(())
}

pub fn check(bytes: &[u8]) -> Checked {
    let mut state = RevocationState::new();
    let mut classes = Vec::new();
    for body in bytes.split(|b| *b == 0x1e) {
        let before = (
            state.len(),
            state.cursor().map(str::to_owned),
            state.global_revoked_before(),
            state.is_synced(),
        );
        let result = state.apply(Some(200), Some(body), MAX, &LIMITS, NOW);
        let after = (
            state.len(),
            state.cursor().map(str::to_owned),
            state.global_revoked_before(),
            state.is_synced(),
        );
        match result {
            Err(e) => {
                if after != before {
                    return Err(format!(
                        "a refused answer ({e}) changed the state: {before:?} -> {after:?}"
                    ));
                }
                if body.len() > MAX && e.name() != "too_large" {
                    return Err(format!("{} bytes refused as {e}", body.len()));
                }
                classes.push(e.name().to_owned());
                state.on_failure(e);
            }
            Ok(applied) => {
                if body.len() > MAX || state.len() > LIMITS.max_entries || !state.is_synced() {
                    return Err(format!("applied {} bytes, {} entries held", body.len(), state.len()));
                }
                classes.push(if applied.reset {
                    "snapshot".into()
                } else {
                    "increment".into()
                });
                // a jti this answer revoked, still live, is refused
                let doc: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
                check_keys(&state, &doc)?;
                if let Some(jtis) = doc["jtis"].as_array() {
                    for e in jtis {
                        if let (Some(j), Some(exp)) = (e["jti"].as_str(), e["expires_at"].as_u64()) {
                            if exp > NOW
                                && claims_with_jti(j).is_some_and(|c| !state.is_revoked_for(&c, c.str("tenant")))
                            {
                                return Err(format!("jti {j:?} was revoked until {exp} but is not refused"));
                            }
                        }
                    }
                }
            }
        }
        let path = state.poll_path(BASE);
        match state.cursor() {
            Some(c) if !c.is_empty() => {
                let Some(encoded) = path.strip_prefix(&format!("{BASE}?since=")) else {
                    return Err(format!("poll path {path:?}"));
                };
                let safe = encoded
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'%'));
                if !safe || percent_decode(encoded).as_deref() != Some(c.as_bytes()) {
                    return Err(format!("cursor {c:?} encoded as {encoded:?}"));
                }
            }
            _ if path != BASE => return Err(format!("poll path {path:?} without a cursor")),
            _ => {}
        }
    }
    classes.truncate(2);
    Ok(classes.join(","))
}

pub fn target() -> Target {
    let seeds = [
        r#"{"cursor":"c1","reset":true,"poll_interval_s":5,"revoked_before":null,"subjects":[],"sessions":[],"jtis":[{"jti":"j1","expires_at":1800000100}]}"#,
        "{\"cursor\":\"c1\",\"reset\":true,\"poll_interval_s\":5,\"revoked_before\":null,\"subjects\":[],\"sessions\":[],\"jtis\":[]}\u{1e}{\"cursor\":\"c&2\",\"reset\":false,\"poll_interval_s\":5,\"revoked_before\":1799999999,\"subjects\":[{\"subject\":\"s\",\"revoked_before\":1}],\"sessions\":[],\"jtis\":[]}",
    ];
    Target {
        name: "revocation_feed",
        bounded_execs: 5_000,
        max_len: 4 * MAX,
        seeds: seeds.iter().map(|s| s.as_bytes().to_vec()).collect(),
        dictionary: super::json::dictionary(),
        generate: Box::new(generate),
        check: Box::new(check),
    }
}
