//! Tests of the revocation feed, by concern: merging answers into the state
//! (`merge`), tenant-scoped cut-offs (`tenants`), and answers that must leave
//! the state unchanged (`failures`). The helpers below are shared.

use super::*;

use serde_json::{json, Value};

const NOW: u64 = 1_795_000_000;
const MAX: usize = 64 * 1024;
const LIMITS: Limits = Limits { max_entries: 100 };
/// The tenant claim the reference service issues.
const TC: &str = "tenant";

fn claims(v: Value) -> Claims {
    test_claims(&v)
}

fn feed(reset: bool, cursor: &str, global: Value, subjects: Value, sessions: Value, jtis: Value) -> Vec<u8> {
    json!({
        "cursor": cursor, "reset": reset, "poll_interval_s": 5, "revoked_before": global,
        "subjects": subjects, "sessions": sessions, "jtis": jtis,
    })
    .to_string()
    .into_bytes()
}

fn apply(s: &mut RevocationState, body: &[u8]) -> Result<Applied, FeedFailure> {
    s.apply(Some(200), Some(body), MAX, &LIMITS, NOW)
}

/// The example snapshot of section 5.2.
fn snapshot() -> Vec<u8> {
    feed(
        true,
        "v1.k3vq7xw2.46",
        Value::Null,
        json!([{"subject": "user-123", "revoked_before": 1_795_000_801u64}]),
        json!([{"sid": "ses_a", "expires_at": 1_795_001_500u64},
                   {"sid": "ses_b", "expires_at": 1_795_001_600u64}]),
        json!([{"jti": "jti_a", "expires_at": 1_795_000_900u64}]),
    )
}

fn synced() -> RevocationState {
    let mut s = RevocationState::new();
    apply(&mut s, &snapshot()).unwrap();
    s
}

/// Everything observable about a state, to check that a failure changed nothing.
fn observe(s: &RevocationState) -> String {
    let mut jtis: Vec<_> = s.jtis.iter().collect();
    let mut sessions: Vec<_> = s.sessions.iter().collect();
    let mut subjects: Vec<_> = s
        .subjects
        .by_subject
        .iter()
        .map(|(sub, c)| {
            let mut scoped: Vec<_> = c.per_tenant.iter().collect();
            scoped.sort();
            format!("{sub}:{:?}:{scoped:?}", c.every_tenant)
        })
        .collect();
    let mut tenants: Vec<_> = s.tenants.by_tenant.iter().collect();
    jtis.sort();
    sessions.sort();
    subjects.sort();
    tenants.sort();
    format!(
        "{jtis:?} {sessions:?} {subjects:?} {tenants:?} {:?} {} {:?} {:?} {}",
        s.keys,
        s.subjects.len(),
        s.revoked_before,
        s.cursor,
        s.synced
    )
}

mod failures;
mod keys;
mod merge;
mod tenants;
