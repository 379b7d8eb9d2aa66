//! The revocation feed: events with monotonically increasing ids, opaque cursors,
//! full snapshots and incremental changes.
//!
//! A cursor is `v1.<database instance id>.<last event id>`. The instance id is the
//! database's (made by its first migration), so every replica on one database gives
//! and accepts the same cursors. A missing, malformed or foreign cursor (another
//! database, or an id beyond the last event) gets a reset: a snapshot of every
//! revocation still in force. A valid cursor gets only the events after it. Entries
//! whose `expires_at` passed are left out: no token they cover can still be valid.
//!
//! Nothing is skipped across replicas: event ids are taken from the feed's head row
//! inside the writing transaction, which keeps that row locked until it commits
//! (`store::insert_events`). So ids become visible in increasing order, and a reader
//! that sees the head at `n` (in the same snapshot as the events) sees every event up
//! to `n` there will ever be. The cursor it returns is that head, never an id whose
//! transaction is still in flight.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::db::Database;
use crate::error::Result;
use crate::model::{RevocationEvent, RevocationKind};
use crate::store;

/// How often the edge should poll, in seconds.
pub const POLL_INTERVAL_S: i64 = 5;
/// Longest cursor considered; longer ones are unknown.
const MAX_CURSOR_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubjectEntry {
    pub subject: String,
    pub revoked_before: i64,
    /// The tenant whose tokens of `subject` it covers; `null`: every tenant's.
    pub tenant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionEntry {
    pub sid: String,
    pub expires_at: i64,
}

/// A tenant's cut-off: every token of the tenant issued before `revoked_before`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantEntry {
    pub tenant: String,
    pub revoked_before: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JtiEntry {
    pub jti: String,
    pub expires_at: i64,
}

/// An API key revoked one by one (contract 1.3): the edge refuses it by
/// either identifier until `expires_at`, after which no edge can hold an
/// answer about it from before the revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyEntry {
    pub key_id: String,
    pub key_hash: String,
    pub expires_at: i64,
}

/// A tenant's key cut-off (contract 1.3): every key of `tenant` that a lookup
/// answered before `revoked_before` is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyTenantEntry {
    pub tenant: String,
    pub revoked_before: i64,
}

/// The answer to `GET /internal/v1/revocations`: the cursor, then the entries
/// as fields of the same object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Feed {
    pub cursor: String,
    pub reset: bool,
    pub poll_interval_s: i64,
    #[serde(flatten)]
    pub entries: Entries,
}

pub fn encode_cursor(instance: &str, last_id: i64) -> String {
    format!("v1.{instance}.{last_id}")
}

/// The event id a cursor stands for, if it is valid for this database.
pub fn parse_cursor(cursor: &str, instance: &str, max_id: i64) -> Option<i64> {
    if cursor.len() > MAX_CURSOR_LEN {
        return None;
    }
    let rest = cursor.strip_prefix("v1.")?;
    let (inst, id) = rest.rsplit_once('.')?;
    if inst != instance || id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) || id.len() > 18 {
        return None;
    }
    let id: i64 = id.parse().ok()?;
    (0..=max_id).contains(&id).then_some(id)
}

/// The entries of a feed answer, folded from its events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Entries {
    pub revoked_before: Option<i64>,
    pub subjects: Vec<SubjectEntry>,
    pub sessions: Vec<SessionEntry>,
    pub jtis: Vec<JtiEntry>,
    /// Since contract 1.2.
    pub tenants: Vec<TenantEntry>,
    /// Since contract 1.3: keys revoked one by one.
    pub api_keys: Vec<KeyEntry>,
    /// Since contract 1.3: tenants' key cut-offs (revoke-all of a tenant).
    pub api_key_tenants: Vec<KeyTenantEntry>,
    /// Since contract 1.3: the global key cut-off (revoke-all of every key).
    pub api_keys_revoked_before: Option<i64>,
}

/// Keeps the later of `value` and what `slot` holds.
fn later(slot: &mut Option<i64>, value: Option<i64>) {
    if let Some(v) = value {
        *slot = Some(slot.map_or(v, |held| held.max(v)));
    }
}

/// Folds events into feed entries: one entry per sid, jti, (subject, tenant) and
/// tenant, with the latest `revoked_before` per subject, tenant and globally.
pub fn fold(events: &[RevocationEvent]) -> Entries {
    let mut global: Option<i64> = None;
    let mut tenants: BTreeMap<&str, i64> = BTreeMap::new();
    let mut subjects: BTreeMap<(&str, Option<&str>), i64> = BTreeMap::new();
    let mut sessions: BTreeMap<&str, i64> = BTreeMap::new();
    let mut jtis: BTreeMap<&str, i64> = BTreeMap::new();
    let mut keys: BTreeMap<&str, (&str, i64)> = BTreeMap::new();
    let mut key_tenants: BTreeMap<&str, i64> = BTreeMap::new();
    let mut key_global: Option<i64> = None;
    for e in events {
        let value = e.value.as_deref().unwrap_or_default();
        match e.kind {
            RevocationKind::Global => {
                if let Some(rb) = e.revoked_before {
                    global = Some(global.map_or(rb, |g| g.max(rb)));
                }
            }
            RevocationKind::Subject => {
                if let Some(rb) = e.revoked_before {
                    let slot = subjects.entry((value, e.tenant.as_deref())).or_insert(rb);
                    *slot = (*slot).max(rb);
                }
            }
            RevocationKind::Session => {
                let slot = sessions.entry(value).or_insert(e.expires_at);
                *slot = (*slot).max(e.expires_at);
            }
            RevocationKind::Jti => {
                let slot = jtis.entry(value).or_insert(e.expires_at);
                *slot = (*slot).max(e.expires_at);
            }
            RevocationKind::Tenant => {
                if let Some(rb) = e.revoked_before {
                    let slot = tenants.entry(value).or_insert(rb);
                    *slot = (*slot).max(rb);
                }
            }
            RevocationKind::Key => {
                let hash = e.key_hash.as_deref().unwrap_or_default();
                let slot = keys.entry(value).or_insert((hash, e.expires_at));
                slot.1 = slot.1.max(e.expires_at);
            }
            RevocationKind::KeyTenant => {
                if let Some(rb) = e.revoked_before {
                    let slot = key_tenants.entry(value).or_insert(rb);
                    *slot = (*slot).max(rb);
                }
            }
            RevocationKind::KeyGlobal => later(&mut key_global, e.revoked_before),
        }
    }
    Entries {
        revoked_before: global,
        subjects: subjects
            .into_iter()
            .map(|((s, tenant), rb)| SubjectEntry {
                subject: s.to_owned(),
                revoked_before: rb,
                tenant: tenant.map(str::to_owned),
            })
            .collect(),
        sessions: sessions
            .into_iter()
            .map(|(s, exp)| SessionEntry {
                sid: s.to_owned(),
                expires_at: exp,
            })
            .collect(),
        jtis: jtis
            .into_iter()
            .map(|(j, exp)| JtiEntry {
                jti: j.to_owned(),
                expires_at: exp,
            })
            .collect(),
        tenants: tenants
            .into_iter()
            .map(|(t, rb)| TenantEntry {
                tenant: t.to_owned(),
                revoked_before: rb,
            })
            .collect(),
        api_keys: keys
            .into_iter()
            .map(|(id, (hash, exp))| KeyEntry {
                key_id: id.to_owned(),
                key_hash: hash.to_owned(),
                expires_at: exp,
            })
            .collect(),
        api_key_tenants: key_tenants
            .into_iter()
            .map(|(t, rb)| KeyTenantEntry {
                tenant: t.to_owned(),
                revoked_before: rb,
            })
            .collect(),
        api_keys_revoked_before: key_global,
    }
}

/// Builds the feed for `since` at `now`, from one snapshot of the database
/// (`instance` is its instance id). Never waits for a writer.
pub fn feed(db: &Database, instance: &str, since: Option<&str>, now: i64) -> Result<Feed> {
    db.read_snapshot(|c| {
        let head = store::feed_head(c)?;
        let after = since.and_then(|s| parse_cursor(s, instance, head));
        let events = store::events_between(c, after.unwrap_or(0), head, now)?;
        Ok(Feed {
            cursor: encode_cursor(instance, head),
            reset: after.is_none(),
            poll_interval_s: POLL_INTERVAL_S,
            entries: fold(&events),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors() {
        let c = encode_cursor("iabc", 7);
        assert_eq!(parse_cursor(&c, "iabc", 7), Some(7));
        assert_eq!(parse_cursor(&c, "iabc", 6), None, "beyond the last event");
        assert_eq!(parse_cursor(&c, "other", 9), None, "another database");
        for bad in ["", "v1.", "v1.iabc.", "v1.iabc.-1", "v1.iabc.x", "v2.iabc.1", "7"] {
            assert_eq!(parse_cursor(bad, "iabc", 9), None, "{bad}");
        }
    }

    #[test]
    fn folding_keeps_the_latest() {
        let ev = |id, kind, value: Option<&str>, rb, exp| RevocationEvent {
            id,
            kind,
            value: value.map(str::to_owned),
            tenant: None,
            revoked_before: rb,
            expires_at: exp,
            created_at: 0,
            key_hash: None,
        };
        let events = vec![
            ev(1, RevocationKind::Subject, Some("u"), Some(10), 100),
            ev(2, RevocationKind::Subject, Some("u"), Some(20), 110),
            ev(3, RevocationKind::Global, None, Some(5), 100),
            ev(4, RevocationKind::Session, Some("ses_a"), None, 50),
            ev(5, RevocationKind::Session, Some("ses_a"), None, 50),
            ev(6, RevocationKind::Jti, Some("j"), None, 60),
        ];
        let Entries {
            revoked_before: g,
            subjects,
            sessions,
            jtis,
            tenants,
            api_keys,
            api_key_tenants,
            api_keys_revoked_before,
        } = fold(&events);
        assert_eq!(g, Some(5));
        assert_eq!(tenants, vec![]);
        assert_eq!(
            (api_keys, api_key_tenants, api_keys_revoked_before),
            (vec![], vec![], None)
        );
        assert_eq!(
            subjects,
            vec![SubjectEntry {
                subject: "u".into(),
                revoked_before: 20,
                tenant: None,
            }]
        );
        assert_eq!(
            sessions,
            vec![SessionEntry {
                sid: "ses_a".into(),
                expires_at: 50
            }]
        );
        assert_eq!(
            jtis,
            vec![JtiEntry {
                jti: "j".into(),
                expires_at: 60
            }]
        );
    }

    #[test]
    fn folding_keeps_tenants_apart() {
        let ev = |id, kind, value: &str, tenant: Option<&str>, rb| RevocationEvent {
            id,
            kind,
            value: Some(value.to_owned()),
            tenant: tenant.map(str::to_owned),
            revoked_before: Some(rb),
            expires_at: 1000,
            created_at: 0,
            key_hash: None,
        };
        let events = vec![
            ev(1, RevocationKind::Subject, "u", Some("acme"), 10),
            ev(2, RevocationKind::Subject, "u", Some("globex"), 20),
            ev(3, RevocationKind::Subject, "u", None, 5),
            ev(4, RevocationKind::Subject, "u", Some("acme"), 30),
            ev(5, RevocationKind::Tenant, "acme", None, 7),
            ev(6, RevocationKind::Tenant, "acme", None, 3),
        ];
        let e = fold(&events);
        let subject = |tenant: Option<&str>, rb| SubjectEntry {
            subject: "u".into(),
            revoked_before: rb,
            tenant: tenant.map(str::to_owned),
        };
        assert_eq!(
            e.subjects,
            vec![subject(None, 5), subject(Some("acme"), 30), subject(Some("globex"), 20)]
        );
        assert_eq!(
            e.tenants,
            vec![TenantEntry {
                tenant: "acme".into(),
                revoked_before: 7
            }]
        );
    }
}
