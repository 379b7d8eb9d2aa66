//! API-key revocations from the auth service's revocation feed (contract
//! 1.3, docs/auth-service-api.md section 5.6): the keys revoked one by one
//! (by `key_hash` or `key_id`), each tenant's key cut-off ("all keys of
//! tenant T") and the global key cut-off ("all keys").
//!
//! The feed is parsed and merged by [`crate::jwt::revocation`]; this module
//! holds the key part of the state and answers the two questions the
//! API-key decision asks:
//!
//! - [`KeyRevocations::lists`]: is this key (its hash, or the `key_id` of its
//!   answer) revoked one by one? Then it is refused without a lookup.
//! - [`KeyRevocations::predates_cut_off`]: was this `valid` answer computed
//!   before a cut-off that covers its tenant? The service stamps every answer
//!   with `answered_at` (its own clock, like the cut-offs), so the comparison
//!   needs no agreement between the edge's clock and the service's, and an
//!   answer of a lookup that was under way when the cut-off arrived is judged
//!   by when the service computed it, not by when it reached the edge. An
//!   answer without `answered_at` (a service older than 1.3) counts as
//!   computed before every cut-off (fail closed).

use std::collections::HashMap;

use serde::{Deserialize, Deserializer};

use crate::api_key::KeyRecord;
use crate::jwt::revocation::FeedFailure;

/// A `api_keys` entry of the feed: a key revoked one by one. At least one of
/// `key_hash` (64 lower-case hex) and `key_id` (non-empty) is present.
#[derive(Deserialize)]
pub(crate) struct KeyEntry {
    #[serde(default)]
    key_hash: Option<String>,
    #[serde(default)]
    key_id: Option<String>,
    expires_at: u64,
}

/// A `api_key_tenants` entry: every key of `tenant` answered before
/// `revoked_before` is revoked.
#[derive(Deserialize)]
pub(crate) struct KeyTenantEntry {
    tenant: String,
    revoked_before: u64,
}

/// A field that may be absent (a service older than 1.3) or `null`.
pub(crate) fn optional_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<u64>::deserialize(d)
}

/// The longest `key_id` accepted from the feed (the reference service's are 30 bytes).
const MAX_KEY_ID_LEN: usize = 256;

fn is_key_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Keeps the later of the value held and `value`; returns whether it changed.
fn raise(map: &mut HashMap<String, u64>, key: String, value: u64) -> bool {
    let slot = map.entry(key).or_insert(0);
    let raised = value > *slot;
    *slot = (*slot).max(value);
    raised
}

/// The key part of the revocation state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeyRevocations {
    /// Revoked `key_hash` → `expires_at`.
    by_hash: HashMap<String, u64>,
    /// Revoked `key_id` → `expires_at`.
    by_id: HashMap<String, u64>,
    /// Tenant → key cut-off (`revoked_before`).
    tenants: HashMap<String, u64>,
    /// The global key cut-off.
    global: Option<u64>,
}

impl KeyRevocations {
    /// The feed's key entries, validated and deduplicated (the later value
    /// wins), those whose `expires_at <= now` dropped. A key entry with
    /// neither a well-formed `key_hash` nor a non-empty `key_id` (or with a
    /// malformed one), or a tenant entry with an empty tenant, is
    /// [`FeedFailure::Malformed`].
    pub(crate) fn from_feed(
        keys: Vec<KeyEntry>,
        tenants: Vec<KeyTenantEntry>,
        global: Option<u64>,
        now: u64,
    ) -> Result<KeyRevocations, FeedFailure> {
        let mut k = KeyRevocations {
            global,
            ..KeyRevocations::default()
        };
        for e in keys {
            if e.key_hash.is_none() && e.key_id.is_none() {
                return Err(FeedFailure::Malformed);
            }
            if e.key_hash.as_deref().is_some_and(|h| !is_key_hash(h)) {
                return Err(FeedFailure::Malformed);
            }
            if e.key_id
                .as_deref()
                .is_some_and(|i| i.is_empty() || i.len() > MAX_KEY_ID_LEN)
            {
                return Err(FeedFailure::Malformed);
            }
            if e.expires_at <= now {
                continue;
            }
            if let Some(h) = e.key_hash {
                raise(&mut k.by_hash, h, e.expires_at);
            }
            if let Some(i) = e.key_id {
                raise(&mut k.by_id, i, e.expires_at);
            }
        }
        for e in tenants {
            if e.tenant.is_empty() {
                return Err(FeedFailure::Malformed);
            }
            raise(&mut k.tenants, e.tenant, e.revoked_before);
        }
        Ok(k)
    }

    /// The feed fields (`api_keys`, `api_key_tenants`,
    /// `api_keys_revoked_before`) that rebuild this state: what the worker
    /// holding the feed's lease publishes for the others
    /// (`RevocationState::snapshot`).
    pub(crate) fn feed_fields(&self) -> (Vec<serde_json::Value>, Vec<serde_json::Value>, Option<u64>) {
        let mut keys: Vec<serde_json::Value> = self
            .by_hash
            .iter()
            .map(|(h, e)| serde_json::json!({"key_hash": h, "expires_at": e}))
            .collect();
        keys.extend(
            self.by_id
                .iter()
                .map(|(id, e)| serde_json::json!({"key_id": id, "expires_at": e})),
        );
        let tenants = self
            .tenants
            .iter()
            .map(|(t, v)| serde_json::json!({"tenant": t, "revoked_before": v}))
            .collect();
        (keys, tenants, self.global)
    }

    /// Entries held: revoked hashes + revoked ids + tenant cut-offs (the
    /// global cut-off is not an entry).
    pub fn len(&self) -> usize {
        self.by_hash.len() + self.by_id.len() + self.tenants.len()
    }

    /// Whether nothing is held, the global cut-off included.
    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.global.is_none()
    }

    /// How many of `incoming`'s entries are not live here (at `now`): what a
    /// merge would add.
    pub(crate) fn new_entries(&self, incoming: &KeyRevocations, now: u64) -> usize {
        let live = |map: &HashMap<String, u64>, key: &str| map.get(key).is_some_and(|&exp| exp > now);
        incoming.by_hash.keys().filter(|k| !live(&self.by_hash, k)).count()
            + incoming.by_id.keys().filter(|k| !live(&self.by_id, k)).count()
            + incoming
                .tenants
                .keys()
                .filter(|k| !self.tenants.contains_key(k.as_str()))
                .count()
    }

    /// Live entries held at `now`.
    pub(crate) fn live(&self, now: u64) -> usize {
        self.by_hash.values().filter(|&&e| e > now).count()
            + self.by_id.values().filter(|&&e| e > now).count()
            + self.tenants.len()
    }

    /// Merges an increment: entries are added, expiries and cut-offs only
    /// rise. Returns how many entries were added or raised.
    pub(crate) fn merge(&mut self, incoming: KeyRevocations) -> usize {
        let mut changes = 0;
        for (k, v) in incoming.by_hash {
            changes += usize::from(raise(&mut self.by_hash, k, v));
        }
        for (k, v) in incoming.by_id {
            changes += usize::from(raise(&mut self.by_id, k, v));
        }
        for (k, v) in incoming.tenants {
            changes += usize::from(raise(&mut self.tenants, k, v));
        }
        if let Some(g) = incoming.global {
            if self.global.is_none_or(|held| g > held) {
                self.global = Some(g);
                changes += 1;
            }
        }
        changes
    }

    /// Drops the one-by-one entries whose `expires_at <= now`.
    pub(crate) fn prune(&mut self, now: u64) {
        self.by_hash.retain(|_, exp| *exp > now);
        self.by_id.retain(|_, exp| *exp > now);
    }

    /// Whether some key is revoked by its hash (so that a caller computes a
    /// key's hash only when it can matter).
    pub fn lists_hashes(&self) -> bool {
        !self.by_hash.is_empty()
    }

    /// Whether the key with hash `key_hash` (or whose answer names `key_id`)
    /// is revoked one by one. Entries past their `expires_at` may still be
    /// held until the next prune; they still count (a revoked key never
    /// becomes valid again).
    pub fn lists(&self, key_hash: Option<&str>, key_id: Option<&str>) -> bool {
        key_hash.is_some_and(|h| self.by_hash.contains_key(h)) || key_id.is_some_and(|i| self.by_id.contains_key(i))
    }

    /// The latest key cut-off that applies to keys of `tenant`.
    pub fn cut_off(&self, tenant: &str) -> Option<u64> {
        match (self.tenants.get(tenant).copied(), self.global) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a `valid` answer was computed before a cut-off covering its
    /// tenant (`answered_at < revoked_before`, strictly, in whole seconds;
    /// an answer without `answered_at` counts as before every cut-off).
    /// Such an answer is not used: its key was revoked by the cut-off.
    pub fn predates_cut_off(&self, record: &KeyRecord) -> bool {
        self.cut_off(&record.tenant)
            .is_some_and(|cut| record.answered_at.is_none_or(|at| at < cut))
    }

    /// The global key cut-off in force, if any.
    pub fn global_cut_off(&self) -> Option<u64> {
        self.global
    }
}
