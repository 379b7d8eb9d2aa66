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
//! was just revoked is refused.

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
