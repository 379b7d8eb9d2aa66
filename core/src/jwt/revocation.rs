//! The revocation state the edge keeps for its auth service's access tokens.
//!
//! The filter polls the service's feed (`GET /internal/v1/revocations`,
//! docs/auth-service-api.md section 5) and applies each answer here: a
//! snapshot (`reset: true`) replaces the state, an increment (`reset: false`)
//! merges into it. Every access token from that service is then checked with
//! [`RevocationState::is_revoked`], which only does hash lookups.
//!
//! Subject cut-offs may name a tenant (since contract 1.2): such an entry
//! applies to the tokens whose tenant claim and `sub` both match it, so one
//! tenant's "logout everywhere" never touches another tenant's user with the
//! same `sub`. An entry without a tenant (an operator's, or from a service
//! older than 1.2) applies to that `sub` in every tenant. Tenant cut-offs
//! (`tenants`, a disabled tenant) apply to every token of the tenant. A token
//! whose tenant claim is missing or not a string cannot show which tenant it
//! belongs to, so every tenant's cut-offs apply to it (fail closed).
//!
//! Answers are parsed strictly: anything but a `200` with a well-formed body is
//! a failure, and a failure leaves both the state and the cursor as they were
//! (section 7). Fields the edge does not know are ignored (section 2.3).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Deserializer};

use crate::api_key::revocations::{optional_time, KeyEntry, KeyRevocations, KeyTenantEntry};
use crate::jwt::Claims;

/// Bounds on the state's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most entries held: revoked jtis + revoked sessions + subject cut-offs
    /// (one per subject and tenant) + tenant cut-offs + API-key entries
    /// (revoked key hashes and ids, tenants' key cut-offs).
    /// An answer that would take the state past it is refused
    /// ([`FeedFailure::TooManyEntries`]) and the state is left as it was.
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_entries: 100_000 }
    }
}

/// Why a feed answer was not applied. The state and the cursor are unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeedFailure {
    /// No answer: timeout, reset connection, unknown cluster.
    NoResponse,
    /// A status other than `200` (a `401` from a wrong service token, a 5xx, ...).
    Status(u16),
    /// The body is larger than the configured maximum; it was not parsed.
    TooLarge,
    /// Not JSON, a required field missing or of the wrong type, a negative or
    /// fractional time, or an increment when a snapshot was expected.
    Malformed,
    /// Applying the answer would hold more than [`Limits::max_entries`] entries.
    TooManyEntries,
}

impl FeedFailure {
    /// A stable name, used in metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            FeedFailure::NoResponse => "no_response",
            FeedFailure::Status(_) => "bad_status",
            FeedFailure::TooLarge => "too_large",
            FeedFailure::Malformed => "malformed",
            FeedFailure::TooManyEntries => "too_many_entries",
        }
    }
}

impl fmt::Display for FeedFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeedFailure::Status(s) => write!(f, "{} ({s})", self.name()),
            _ => f.write_str(self.name()),
        }
    }
}

/// What a successful [`RevocationState::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The answer was a snapshot and replaced the state.
    pub reset: bool,
    /// Revocations added or raised: for a snapshot, every live entry it holds
    /// (plus one for a global cut-off); for an increment, the new `jti`/`sid`
    /// entries, those whose `expires_at` moved later, the subjects added or
    /// raised, and one if the global cut-off was raised.
    pub changes: usize,
    /// The poll interval the service suggests (informational).
    pub poll_interval_s: u64,
}

/// Revocation state: revoked jtis and session ids (each until its
/// `expires_at`), per-subject `revoked_before`, a global `revoked_before`, and
/// the feed cursor.
#[derive(Debug, Default)]
pub struct RevocationState {
    /// Revoked `jti` → `expires_at`.
    jtis: HashMap<String, u64>,
    /// Revoked `sid` → `expires_at`.
    sessions: HashMap<String, u64>,
    /// `sub` → its cut-offs, for every tenant and per tenant.
    subjects: Subjects,
    /// Tenant → `revoked_before` (a disabled tenant).
    tenants: Tenants,
    /// The global cut-off ("revoke all").
    revoked_before: Option<u64>,
    /// API-key revocations (since contract 1.3).
    keys: KeyRevocations,
    /// The cursor of the last answer applied.
    cursor: Option<String>,
    synced: bool,
}

/// The feed answer (section 5.2). Unknown fields are ignored; every listed
/// field is required (`revoked_before` may be `null` but must be present).
#[derive(Deserialize)]
struct Feed {
    cursor: String,
    reset: bool,
    poll_interval_s: u64,
    #[serde(deserialize_with = "nullable")]
    revoked_before: Option<u64>,
    subjects: Vec<SubjectEntry>,
    sessions: Vec<SessionEntry>,
    jtis: Vec<JtiEntry>,
    /// Since 1.2; a service older than that sends none.
    #[serde(default)]
    tenants: Vec<TenantEntry>,
    /// Since 1.3 (API keys revoked one by one); absent from older services.
    #[serde(default)]
    api_keys: Vec<KeyEntry>,
    /// Since 1.3 (tenants' key cut-offs).
    #[serde(default)]
    api_key_tenants: Vec<KeyTenantEntry>,
    /// Since 1.3 (the global key cut-off); absent or `null`: none / unchanged.
    #[serde(default, deserialize_with = "optional_time")]
    api_keys_revoked_before: Option<u64>,
}

#[derive(Deserialize)]
struct SubjectEntry {
    subject: String,
    revoked_before: u64,
    /// Absent or `null`: the cut-off applies in every tenant.
    #[serde(default)]
    tenant: Option<String>,
}

#[derive(Deserialize)]
struct TenantEntry {
    tenant: String,
    revoked_before: u64,
}

#[derive(Deserialize)]
struct SessionEntry {
    sid: String,
    expires_at: u64,
}

#[derive(Deserialize)]
struct JtiEntry {
    jti: String,
    expires_at: u64,
}

/// A present field that may be `null` (with `deserialize_with`, serde does not
/// default a missing `Option` field to `None`: a missing field is an error).
fn nullable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<u64>::deserialize(d)
}

/// Keeps the later of the value held and `value`; returns whether it changed the map.
fn raise(map: &mut HashMap<String, u64>, key: String, value: u64) -> bool {
    match map.entry(key) {
        Entry::Vacant(v) => {
            v.insert(value);
            true
        }
        Entry::Occupied(mut o) => {
            if value > *o.get() {
                o.insert(value);
                true
            } else {
                false
            }
        }
    }
}

/// One subject's cut-offs: one that applies in every tenant, and one per tenant.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Cutoffs {
    every_tenant: Option<u64>,
    per_tenant: HashMap<String, u64>,
    /// The latest of `per_tenant` (what applies to a token without a tenant).
    latest_per_tenant: Option<u64>,
}

/// Subject cut-offs, keyed by `sub`, each entry (subject, tenant or none) counted once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Subjects {
    by_subject: HashMap<String, Cutoffs>,
    entries: usize,
}

impl Subjects {
    fn len(&self) -> usize {
        self.entries
    }

    fn contains(&self, subject: &str, tenant: Option<&str>) -> bool {
        self.by_subject.get(subject).is_some_and(|c| match tenant {
            None => c.every_tenant.is_some(),
            Some(t) => c.per_tenant.contains_key(t),
        })
    }

    /// Keeps the later of the value held and `value`; returns whether it changed.
    fn raise(&mut self, subject: String, tenant: Option<String>, value: u64) -> bool {
        let c = self.by_subject.entry(subject).or_default();
        match tenant {
            None => {
                let new = c.every_tenant.is_none();
                let raised = c.every_tenant.is_none_or(|held| value > held);
                if raised {
                    c.every_tenant = Some(value);
                }
                self.entries += usize::from(new);
                raised
            }
            Some(t) => {
                let new = !c.per_tenant.contains_key(&t);
                let raised = raise(&mut c.per_tenant, t, value);
                if raised {
                    c.latest_per_tenant = Some(c.latest_per_tenant.map_or(value, |l| l.max(value)));
                }
                self.entries += usize::from(new);
                raised
            }
        }
    }

    /// The latest cut-off that applies to `subject` in `tenant` (`None`: a
    /// token without a tenant claim, to which every tenant's cut-off applies).
    fn cutoff(&self, subject: &str, tenant: Option<&str>) -> Option<u64> {
        let c = self.by_subject.get(subject)?;
        let scoped = match tenant {
            Some(t) => c.per_tenant.get(t).copied(),
            None => c.latest_per_tenant,
        };
        match (c.every_tenant, scoped) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Tenant cut-offs, and the latest of them (what applies to a token without a tenant).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Tenants {
    by_tenant: HashMap<String, u64>,
    latest: Option<u64>,
}

impl Tenants {
    fn raise(&mut self, tenant: String, value: u64) -> bool {
        let raised = raise(&mut self.by_tenant, tenant, value);
        if raised {
            self.latest = Some(self.latest.map_or(value, |l| l.max(value)));
        }
        raised
    }

    fn cutoff(&self, tenant: Option<&str>) -> Option<u64> {
        match tenant {
            Some(t) => self.by_tenant.get(t).copied(),
            None => self.latest,
        }
    }
}

/// The answer's entries, deduplicated (the later value wins), expired ones dropped.
#[derive(Default)]
struct Tables {
    jtis: HashMap<String, u64>,
    sessions: HashMap<String, u64>,
    subjects: Subjects,
    tenants: Tenants,
    keys: KeyRevocations,
}

impl Tables {
    fn len(&self) -> usize {
        self.jtis.len() + self.sessions.len() + self.subjects.len() + self.tenants.by_tenant.len() + self.keys.len()
    }

    fn from_feed(feed: Feed, max_entries: usize, now: u64) -> Result<Tables, FeedFailure> {
        let mut t = Tables::default();
        for e in feed.jtis {
            if e.expires_at > now {
                raise(&mut t.jtis, e.jti, e.expires_at);
            }
        }
        for e in feed.sessions {
            if e.expires_at > now {
                raise(&mut t.sessions, e.sid, e.expires_at);
            }
        }
        for e in feed.subjects {
            // An empty tenant would read as "no tenant" to some: refuse it.
            if e.tenant.as_deref() == Some("") {
                return Err(FeedFailure::Malformed);
            }
            t.subjects.raise(e.subject, e.tenant, e.revoked_before);
        }
        for e in feed.tenants {
            if e.tenant.is_empty() {
                return Err(FeedFailure::Malformed);
            }
            t.tenants.raise(e.tenant, e.revoked_before);
        }
        t.keys = KeyRevocations::from_feed(feed.api_keys, feed.api_key_tenants, feed.api_keys_revoked_before, now)?;
        // No merge can hold fewer entries than the answer brings.
        if t.len() > max_entries {
            return Err(FeedFailure::TooManyEntries);
        }
        Ok(t)
    }
}

/// Characters sent as they are in a query value (RFC 3986 unreserved).
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Percent-encodes `s` for a query value: every byte but the unreserved ones.
fn percent_encode(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
}

impl RevocationState {
    /// An empty state, not synced, without a cursor.
    pub fn new() -> RevocationState {
        RevocationState::default()
    }

    /// The cursor to send as `since` (`None` before the first successful poll).
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// Whether a successful poll has ever been applied. Before that, tokens
    /// from providers that require revocation checks must be refused (the
    /// caller decides).
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// Forgets the cursor so that the next poll asks for a snapshot, keeping
    /// the state until that snapshot replaces it. For when increments keep
    /// failing (say [`FeedFailure::TooManyEntries`]: a snapshot holds only
    /// what is still in force, while increments only ever add).
    pub fn request_snapshot(&mut self) {
        self.cursor = None;
    }

    /// Takes a failed poll into account: an increment refused as
    /// [`FeedFailure::TooManyEntries`] would be refused again with the same
    /// cursor forever, so the next poll asks for a snapshot (the state held
    /// stays in force until it arrives). Other failures are retried as they are.
    pub fn on_failure(&mut self, failure: FeedFailure) {
        if failure == FeedFailure::TooManyEntries {
            self.request_snapshot();
        }
    }

    /// The poll request path: `base_path` (`/internal/v1/revocations`), with
    /// `since=<percent-encoded cursor>` when a non-empty cursor is held.
    pub fn poll_path(&self, base_path: &str) -> String {
        match self.cursor.as_deref() {
            Some(c) if !c.is_empty() => {
                let mut path = String::with_capacity(base_path.len() + 7 + c.len() * 3);
                path.push_str(base_path);
                path.push(if base_path.contains('?') { '&' } else { '?' });
                path.push_str("since=");
                percent_encode(c, &mut path);
                path
            }
            _ => base_path.to_owned(),
        }
    }

    /// Applies a feed answer: `status` (`None`: no answer) and `body`. A
    /// snapshot (`reset: true`) replaces the state, an increment merges into it:
    /// `jti`/`sid` entries are added (the later `expires_at` wins), a subject's
    /// `revoked_before` and the global one only ever rise, and a `null` global
    /// means unchanged. Entries whose `expires_at <= now` are dropped (also from
    /// the state held, on a successful merge). While no cursor is held (nothing
    /// applied yet, or [`Self::request_snapshot`]), only a snapshot is accepted.
    ///
    /// A body over `max_bytes` is refused without being parsed. On any failure
    /// the state and the cursor are left unchanged and the failure is returned.
    pub fn apply(
        &mut self,
        status: Option<u16>,
        body: Option<&[u8]>,
        max_bytes: usize,
        limits: &Limits,
        now: u64,
    ) -> Result<Applied, FeedFailure> {
        match status {
            Some(200) => {}
            Some(s) => return Err(FeedFailure::Status(s)),
            None => return Err(FeedFailure::NoResponse),
        }
        let body = body.ok_or(FeedFailure::Malformed)?;
        if body.len() > max_bytes {
            return Err(FeedFailure::TooLarge);
        }
        let mut feed: Feed = serde_json::from_slice(body).map_err(|_| FeedFailure::Malformed)?;
        let reset = feed.reset;
        if !reset && self.cursor.as_deref().is_none_or(str::is_empty) {
            // We asked without `since`: the service must answer with a snapshot.
            return Err(FeedFailure::Malformed);
        }
        let cursor = std::mem::take(&mut feed.cursor);
        let global = feed.revoked_before;
        let poll_interval_s = feed.poll_interval_s;
        let tables = Tables::from_feed(feed, limits.max_entries, now)?;
        let changes = if reset {
            self.replace(tables, global)
        } else {
            self.merge(tables, global, limits, now)?
        };
        self.cursor = Some(cursor);
        self.synced = true;
        Ok(Applied {
            reset,
            changes,
            poll_interval_s,
        })
    }

    fn replace(&mut self, tables: Tables, global: Option<u64>) -> usize {
        let changes = tables.len() + usize::from(global.is_some());
        self.jtis = tables.jtis;
        self.sessions = tables.sessions;
        self.subjects = tables.subjects;
        self.tenants = tables.tenants;
        self.keys = tables.keys;
        self.revoked_before = global;
        changes + usize::from(self.keys.global_cut_off().is_some())
    }

    fn merge(&mut self, t: Tables, global: Option<u64>, limits: &Limits, now: u64) -> Result<usize, FeedFailure> {
        // Count the final size before touching anything: live entries held,
        // plus the answer's keys that are not live here yet.
        let live = |map: &HashMap<String, u64>, key: &str| map.get(key).is_some_and(|&exp| exp > now);
        let held = self.jtis.values().filter(|&&e| e > now).count()
            + self.sessions.values().filter(|&&e| e > now).count()
            + self.subjects.len()
            + self.tenants.by_tenant.len()
            + self.keys.live(now);
        let new_subjects: usize = t
            .subjects
            .by_subject
            .iter()
            .map(|(subject, c)| {
                usize::from(c.every_tenant.is_some() && !self.subjects.contains(subject, None))
                    + c.per_tenant
                        .keys()
                        .filter(|tenant| !self.subjects.contains(subject, Some(tenant)))
                        .count()
            })
            .sum();
        let new = t.jtis.keys().filter(|k| !live(&self.jtis, k)).count()
            + t.sessions.keys().filter(|k| !live(&self.sessions, k)).count()
            + new_subjects
            + t.tenants
                .by_tenant
                .keys()
                .filter(|k| !self.tenants.by_tenant.contains_key(k.as_str()))
                .count()
            + self.keys.new_entries(&t.keys, now);
        if held.saturating_add(new) > limits.max_entries {
            return Err(FeedFailure::TooManyEntries);
        }
        self.prune(now);
        let mut changes = 0;
        for (k, v) in t.jtis {
            changes += usize::from(raise(&mut self.jtis, k, v));
        }
        for (k, v) in t.sessions {
            changes += usize::from(raise(&mut self.sessions, k, v));
        }
        for (subject, c) in t.subjects.by_subject {
            if let Some(v) = c.every_tenant {
                changes += usize::from(self.subjects.raise(subject.clone(), None, v));
            }
            for (tenant, v) in c.per_tenant {
                changes += usize::from(self.subjects.raise(subject.clone(), Some(tenant), v));
            }
        }
        for (tenant, v) in t.tenants.by_tenant {
            changes += usize::from(self.tenants.raise(tenant, v));
        }
        changes += self.keys.merge(t.keys);
        if let Some(g) = global {
            if self.revoked_before.is_none_or(|held| g > held) {
                self.revoked_before = Some(g);
                changes += 1;
            }
        }
        Ok(changes)
    }

    /// Drops the `jti` and `sid` entries whose `expires_at <= now`: no token
    /// they could match is still valid. Subject, tenant and global cut-offs
    /// carry no expiry; they stay until a snapshot no longer lists them.
    pub fn prune(&mut self, now: u64) {
        self.jtis.retain(|_, exp| *exp > now);
        self.sessions.retain(|_, exp| *exp > now);
        self.keys.prune(now);
    }

    /// Whether a verified token is revoked (section 5.4): its `jti` is listed;
    /// its `sid` is listed; its `iat` is before the `revoked_before` of its
    /// `sub` (an entry without a tenant, or one for the token's tenant, read
    /// `tenant`, which the caller read from its tenant claim); its `iat` is before its tenant's cut-off; or
    /// its `iat` is before the global `revoked_before`. Tenants compare
    /// exactly. A token whose tenant claim is missing or not a string gets
    /// every tenant's cut-offs. A token without `iat` is revoked whenever a
    /// cut-off applies to it (fail closed). Hash lookups only, no allocation.
    pub fn is_revoked_for(&self, claims: &Claims, tenant: Option<&str>) -> bool {
        if claims.str("jti").is_some_and(|j| self.jtis.contains_key(j)) {
            return true;
        }
        if claims.str("sid").is_some_and(|s| self.sessions.contains_key(s)) {
            return true;
        }
        let before = |cutoff: u64| claims.iat.is_none_or(|iat| iat < cutoff);
        let subject = claims.str("sub").and_then(|s| self.subjects.cutoff(s, tenant));
        subject.is_some_and(before)
            || self.tenants.cutoff(tenant).is_some_and(before)
            || self.revoked_before.is_some_and(before)
    }

    /// [`Self::is_revoked_for`] with the tenant read from the top-level
    /// claim `tenant_claim` (the tests' shorthand).
    #[cfg(test)]
    pub fn is_revoked(&self, claims: &Claims, tenant_claim: &str) -> bool {
        self.is_revoked_for(claims, claims.str(tenant_claim))
    }

    /// The entries held: revoked jtis + sessions + subject cut-offs (one per
    /// subject and tenant) + tenant cut-offs + API-key entries.
    pub fn len(&self) -> usize {
        self.jtis.len() + self.sessions.len() + self.subjects.len() + self.tenants.by_tenant.len() + self.keys.len()
    }

    /// The API-key revocations the feed holds (section 5.6).
    pub fn keys(&self) -> &KeyRevocations {
        &self.keys
    }

    /// Whether no entry is held (a global cut-off is not an entry).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The global cut-off in force, if any.
    pub fn global_revoked_before(&self) -> Option<u64> {
        self.revoked_before
    }

    /// The whole state as a feed snapshot (`reset: true`, section 5.2) with
    /// its cursor: what the worker that polls publishes in shared data for
    /// the others, who apply it as they would a snapshot from the service
    /// (so it is parsed, bounded and checked by the same code). `None` before
    /// the first successful poll. Every field the state holds must be here:
    /// `snapshot_round_trips` checks it.
    pub fn snapshot(&self) -> Option<Vec<u8>> {
        if !self.synced {
            return None;
        }
        let mut subjects = Vec::with_capacity(self.subjects.len());
        for (subject, c) in &self.subjects.by_subject {
            if let Some(v) = c.every_tenant {
                subjects.push(serde_json::json!({"subject": subject, "revoked_before": v}));
            }
            for (tenant, v) in &c.per_tenant {
                subjects.push(serde_json::json!({"subject": subject, "revoked_before": v, "tenant": tenant}));
            }
        }
        let pairs = |map: &HashMap<String, u64>, name: &str| {
            map.iter()
                .map(|(k, v)| serde_json::json!({name: k, "expires_at": v}))
                .collect::<Vec<_>>()
        };
        let tenants: Vec<_> = self
            .tenants
            .by_tenant
            .iter()
            .map(|(t, v)| serde_json::json!({"tenant": t, "revoked_before": v}))
            .collect();
        let (api_keys, api_key_tenants, api_keys_revoked_before) = self.keys.feed_fields();
        let feed = serde_json::json!({
            "cursor": self.cursor.as_deref().unwrap_or(""),
            "reset": true,
            "poll_interval_s": 0,
            "revoked_before": self.revoked_before,
            "subjects": subjects,
            "sessions": pairs(&self.sessions, "sid"),
            "jtis": pairs(&self.jtis, "jti"),
            "tenants": tenants,
            "api_keys": api_keys,
            "api_key_tenants": api_key_tenants,
            "api_keys_revoked_before": api_keys_revoked_before,
        });
        serde_json::to_vec(&feed).ok()
    }
}

/// Claims of a hand-built unsigned token, for tests elsewhere in the crate:
/// `inspect` only parses, so no signature is needed.
#[cfg(test)]
pub(crate) fn test_claims(payload: &serde_json::Value) -> Claims {
    use crate::b64::encode_url;
    let token = format!(
        "{}.{}.AAAA",
        encode_url(br#"{"alg":"HS256"}"#),
        encode_url(payload.to_string().as_bytes())
    );
    crate::jwt::inspect(&token, 1 << 16).unwrap().claims
}

#[cfg(test)]
mod tests;
