//! The service's operations, shared by the HTTP layer and the command line.
//!
//! Each one validates its input first, then changes the database in one
//! transaction that also writes its audit record: an action is acknowledged only
//! once both are committed, and if the record cannot be written the action fails
//! and changes nothing. Reads (lookups, the feed, listings) use read connections
//! and never wait for a writer. Failed authentications go to `guard`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_auth_core::api_key::tag::KeyTags;
use edge_auth_core::ip::IpList;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::audit::{Ctx, FAILURE, SUCCESS};
use crate::client_limits::ClientLimits;
use crate::db::{Conn, Database, DbConfig};
use crate::edge_context::EdgeContext;
use crate::error::{Credential, Error, Result};
use crate::guard::{AuthGuard, Failure, GuardConfig};
use crate::keys::{self, KeyStatus, LookupAnswer};
use crate::metrics::Metrics;
use crate::model::{
    ApiKeyRow, AuditEvent, NewAudit, NewRevocation, RevocationKind, RevokeOutcome, SessionRow, SigningKeyRow, Tenant,
};
use crate::revocation::{self, Feed};
use crate::secrets::KeyRing;
use crate::store::{self, AuditFilter, AuditPage};
use crate::tokens::{self, TokenConfig, ACCESS_TTL_S, RETIRED_KEY_PUBLISHED_S, SESSION_TTL_S};
use crate::usage::KeyUsage;
use crate::validate;

/// The longest API-key lifetime accepted at creation (10 years).
pub const MAX_KEY_LIFETIME_S: i64 = 10 * 365 * 24 * 3600;
/// The longest rotation grace period (30 days).
pub const MAX_GRACE_S: i64 = 30 * 24 * 3600;
/// The default rotation grace period (1 day).
pub const DEFAULT_GRACE_S: i64 = 24 * 3600;
/// `revoked_before` is the current second plus one, so that every token issued up to and
/// including the current second (`iat` is in whole seconds) is covered.
pub fn revoked_before(now: i64) -> i64 {
    now + 1
}

/// Clock tolerance when verifying an access token presented for logout.
pub const LOGOUT_LEEWAY_S: i64 = 60;

/// Seconds since the Unix epoch.
pub trait Clock: Send + Sync {
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that moves only when told (tests).
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now: i64) -> ManualClock {
        ManualClock(AtomicI64::new(now))
    }
    pub fn set(&self, now: i64) {
        self.0.store(now, Ordering::SeqCst);
    }
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

// ------------------------------------------------------------------ requests

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantRequest {
    pub name: String,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default)]
    pub ip_allowlist: Vec<String>,
}

/// A change of a tenant's lists: a field given replaces the list, one left out keeps it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantUpdate {
    #[serde(default)]
    pub allowed_origins: Option<Vec<String>>,
    #[serde(default)]
    pub ip_allowlist: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    pub subject: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The roles the key may grant to the sessions it creates.
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub expires_in_s: Option<i64>,
    #[serde(default)]
    pub ip_allowlist: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    #[serde(default = "default_grace")]
    pub grace_s: i64,
}

impl Default for RotateRequest {
    fn default() -> Self {
        RotateRequest {
            grace_s: DEFAULT_GRACE_S,
        }
    }
}

fn default_grace() -> i64 {
    DEFAULT_GRACE_S
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    pub key_hash: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    pub subject: String,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Roles for the user, among those the key may grant; none when left out.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    #[serde(default)]
    pub refresh_token: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectRequest {
    pub subject: String,
}

mod machine;
pub use machine::{ClientCredentials, ClientRequest, ClientToken, ClientUpdate, ClientView, CreatedClient};

// ----------------------------------------------------------------- responses

/// Key metadata: never the raw key or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyView {
    pub key_id: String,
    pub tenant: String,
    pub subject: String,
    pub scopes: Vec<String>,
    /// The roles the key may grant.
    pub roles: Vec<String>,
    /// The key's own allowlist; null = the tenant's.
    pub ip_allowlist: Option<Vec<String>>,
    pub status: KeyStatus,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub rotation_deadline: Option<i64>,
    pub replaced_by: Option<String>,
    pub revoked_at: Option<i64>,
    /// When it was last used, to about a minute (see `usage`); `null`: never (or not yet written).
    pub last_used_at: Option<i64>,
    /// The first 8 hex of the key's SHA-256.
    pub fingerprint: String,
    /// Whether it was minted with a key-tag secret (contract 1.4): an untagged key is
    /// refused by edges with `api_keys.key_tags`, except on rules that look untagged
    /// keys up.
    pub tagged: bool,
    /// The id of the key-tag secret that tagged it (as the startup line names the
    /// current and previous secrets); `null`: untagged.
    pub tag_secret_id: Option<String>,
}

impl KeyView {
    pub fn new(k: &ApiKeyRow, now: i64) -> KeyView {
        KeyView {
            key_id: k.key_id.clone(),
            tenant: k.tenant.clone(),
            subject: k.subject.clone(),
            scopes: k.scopes.clone(),
            roles: k.roles.clone(),
            ip_allowlist: k.ip_allowlist.clone(),
            status: keys::key_status(k, now),
            created_at: k.created_at,
            expires_at: k.expires_at,
            rotation_deadline: k.rotation_deadline,
            replaced_by: k.replaced_by.clone(),
            revoked_at: k.revoked_at,
            last_used_at: k.last_used_at,
            fingerprint: keys::fingerprint(&k.key_hash),
            tagged: k.tag_secret_id.is_some(),
            tag_secret_id: k.tag_secret_id.clone(),
        }
    }
}

/// A new key: the raw key, shown this once, and its metadata.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedKey {
    pub key_id: String,
    pub api_key: String,
    #[serde(flatten)]
    pub metadata: KeyView,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenPair {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_token: String,
    pub refresh_expires_in: i64,
    pub session_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub api_key_lookups: u64,
    pub revocation_polls: u64,
}

/// An API key that passed [`Service::authenticate_api_key`], and the context acting as it.
#[derive(Debug, Clone)]
pub struct AuthedKey {
    pub key: ApiKeyRow,
    pub ctx: Ctx,
    /// The route it was presented on (a template), for aggregated failures.
    pub route: String,
}

impl AuthedKey {
    /// The `api_key.auth` success record every request made with a valid key writes.
    fn auth_event(&self, now: i64) -> NewAudit {
        self.ctx
            .event("api_key.auth", Some(&self.key.key_id), SUCCESS, None, now)
    }
}

/// What to list from the audit log ([`Service::audit_page`]).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// 1 to 1000 (clamped).
    pub limit: u32,
    /// A `next` cursor of a newest-first page: continue with older events.
    pub before: Option<String>,
    /// A cursor to follow the log from: events after it, oldest first.
    pub after: Option<String>,
    pub filter: AuditFilter,
}

/// A page of the audit log, and the cursor to continue with (`null`: a newest-first
/// listing has no more).
#[derive(Debug, Clone, Serialize)]
pub struct AuditPageOut {
    pub events: Vec<AuditEvent>,
    pub next: Option<String>,
}

/// An audit cursor: `a.<tx>.<id>`, a position in the audit's order.
fn audit_cursor(tx: i64, id: i64) -> String {
    format!("a.{tx}.{id}")
}

fn parse_audit_cursor(s: &str) -> Result<(i64, i64)> {
    let bad = || Error::invalid_request("invalid audit cursor: use a `next` value from a previous page");
    let rest = s.strip_prefix("a.").ok_or_else(bad)?;
    let (tx, id) = rest.split_once('.').ok_or_else(bad)?;
    let num = |v: &str| -> Result<i64> {
        if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        v.parse().map_err(|_| bad())
    };
    Ok((num(tx)?, num(id)?))
}

/// Whether `peer` may use `key`: its own allowlist, or its tenant's when it has none;
/// an empty list admits any address, an unknown or unparsable peer none.
fn address_allowed(key: &ApiKeyRow, tenant: &Tenant, peer: Option<&str>) -> bool {
    allowlist_admits(key.ip_allowlist.as_deref().unwrap_or(&tenant.ip_allowlist), peer)
}

/// Whether `list` admits `peer`: an empty list admits any address, an unknown or
/// unparsable peer none.
fn allowlist_admits(list: &[String], peer: Option<&str>) -> bool {
    if list.is_empty() {
        return true;
    }
    let Some(addr) = peer.and_then(|p| p.parse::<std::net::IpAddr>().ok()) else {
        return false;
    };
    // Lists were validated on write with the same parser: a failure here admits nobody.
    IpList::parse(list).is_ok_and(|l| l.contains(addr))
}

/// How long audit events are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events older than this are deleted.
    pub max_age_s: i64,
    /// At most this many events are kept (the newest).
    pub max_rows: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age_s: 90 * 24 * 3600,
            max_rows: 10_000_000,
        }
    }
}

/// How long after the `exp` of a token the edges may still accept it (their leeway): a
/// feed entry lasts the access-token lifetime plus this, and no longer.
pub const DEFAULT_FEED_LEEWAY_S: i64 = 60;

/// Everything but the database a service is made with.
#[derive(Debug, Clone)]
pub struct Options {
    /// Issuer and audience of access tokens (not needed by the command line).
    pub tokens: Option<TokenConfig>,
    pub guard: GuardConfig,
    pub retention: Retention,
    /// The edges' leeway: see [`DEFAULT_FEED_LEEWAY_S`].
    pub feed_leeway_s: i64,
    /// The key-encryption keys that seal signing keys at rest (`secrets`).
    pub keks: KeyRing,
    /// The key-tag secrets (`key_tags`): with them, new keys are tagged.
    pub key_tags: Option<KeyTags>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tokens: None,
            guard: GuardConfig::default(),
            retention: Retention::default(),
            feed_leeway_s: DEFAULT_FEED_LEEWAY_S,
            keks: KeyRing::none(),
            key_tags: None,
        }
    }
}

/// Rows deleted per retention transaction (keeps each write short).
const PRUNE_BATCH: u32 = 10_000;

// ------------------------------------------------------------------- service

pub struct Service {
    db: Database,
    /// The database's instance id (part of feed cursors; fixed for a database).
    instance: String,
    tokens: Option<TokenConfig>,
    clock: Arc<dyn Clock>,
    retention: Retention,
    feed_leeway_s: i64,
    keks: KeyRing,
    key_tags: Option<KeyTags>,
    pub guard: AuthGuard,
    pub metrics: Metrics,
    /// When keys were last used, waiting to be written.
    pub usage: KeyUsage,
    api_key_lookups: AtomicU64,
    revocation_polls: AtomicU64,
    /// Failed client authentications per client id (the token endpoint).
    pub client_limits: ClientLimits,
}

fn with_expiry(expires_in_s: Option<i64>, now: i64) -> Result<Option<i64>> {
    match expires_in_s {
        None => Ok(None),
        Some(s) if (1..=MAX_KEY_LIFETIME_S).contains(&s) => Ok(Some(now + s)),
        Some(_) => Err(Error::invalid_request(format!(
            "expires_in_s must be null or between 1 and {MAX_KEY_LIFETIME_S}"
        ))),
    }
}

/// What a refresh found, decided in its transaction.
enum Refreshed {
    Pair(TokenPair),
    Refused { reason: &'static str },
    Reused,
}

/// What a logout found, decided in its transaction.
enum LoggedOut {
    Done,
    Refused { reason: &'static str },
}

impl Service {
    /// Connects to (and migrates) the database, creates a signing key on first start
    /// and prunes stale revocations.
    pub fn open(db: &DbConfig, tokens: Option<TokenConfig>, clock: Arc<dyn Clock>) -> Result<Service> {
        Service::open_with(
            db,
            Options {
                tokens,
                ..Options::default()
            },
            clock,
        )
    }

    pub fn open_with(db: &DbConfig, options: Options, clock: Arc<dyn Clock>) -> Result<Service> {
        let db = Database::open(db)?;
        let instance = db.read(store::instance_id)?;
        let svc = Service {
            db,
            instance,
            tokens: options.tokens,
            clock,
            retention: options.retention,
            feed_leeway_s: options.feed_leeway_s.max(0),
            keks: options.keks,
            key_tags: options.key_tags,
            client_limits: ClientLimits::new(options.guard.clone()),
            guard: AuthGuard::new(options.guard),
            metrics: Metrics::new(),
            usage: KeyUsage::new(),
            api_key_lookups: AtomicU64::new(0),
            revocation_polls: AtomicU64::new(0),
        };
        svc.ensure_signing_key()?;
        svc.check_signing_keys()?;
        let now = svc.now();
        svc.write(|c| store::prune_events(c, now))?;
        Ok(svc)
    }

    /// Refuses to start when a key the JWKS publishes cannot be opened (sealed with a KEK
    /// that is not configured, or altered); warns when a KEK is configured and keys are
    /// still in clear (`signing-key encrypt` seals them).
    fn check_signing_keys(&self) -> Result<()> {
        let now = self.now();
        let published = self.published_keys(now)?;
        for row in &published {
            self.open_key(row)
                .map_err(|_| Error::SigningKeySealed(row.kid.clone()))?;
        }
        if let Some(kek) = self.keks.current_id() {
            let all = self.db.read(store::all_signing_keys)?;
            let unsealed = all.iter().filter(|k| k.kek_id.as_deref() != Some(kek)).count();
            if unsealed > 0 {
                tracing::warn!(
                    keys = unsealed,
                    kek_id = kek,
                    "signing keys not sealed with the current KEK: run `edge-auth-service signing-key encrypt`"
                );
            }
        }
        Ok(())
    }

    /// A stored signing key with its private key in clear (opened with the KEK that sealed it).
    fn open_key(&self, row: &SigningKeyRow) -> Result<SigningKeyRow> {
        Ok(SigningKeyRow {
            private_key: self.keks.open(&row.kid, &row.private_key, row.kek_id.as_deref())?,
            kek_id: None,
            ..row.clone()
        })
    }

    fn open_keys(&self, rows: &[SigningKeyRow]) -> Result<Vec<SigningKeyRow>> {
        rows.iter().map(|r| self.open_key(r)).collect()
    }

    /// A new key as it is stored: sealed with the current KEK, if one is configured.
    fn sealed(&self, key: &SigningKeyRow) -> Result<SigningKeyRow> {
        let (private_key, kek_id) = self.keks.seal(&key.kid, &key.private_key)?;
        Ok(SigningKeyRow {
            private_key,
            kek_id,
            ..key.clone()
        })
    }

    /// Seals every signing key with the current KEK: keys in clear, and keys sealed with
    /// the previous KEK (rotation). Audited. Needs a KEK.
    pub fn encrypt_signing_keys(&self, ctx: &Ctx) -> Result<Value> {
        self.admin(ctx, "signing_key.encrypt", None, |now| {
            let kek = self
                .keks
                .current_id()
                .ok_or_else(|| Error::invalid_request(format!("no KEK configured: set {}", crate::secrets::KEK_ENV)))?
                .to_owned();
            self.audited(ctx, "signing_key.encrypt", None, now, |c| {
                let (mut sealed, mut resealed) = (0, 0);
                for row in store::all_signing_keys(c)? {
                    if row.kek_id.as_deref() == Some(kek.as_str()) {
                        continue;
                    }
                    let clear = self.open_key(&row)?;
                    let stored = self.sealed(&clear)?;
                    store::reseal_signing_key(c, &row.kid, &stored.private_key, stored.kek_id.as_deref())?;
                    if row.kek_id.is_none() {
                        sealed += 1;
                    } else {
                        resealed += 1;
                    }
                }
                let out = json!({"kek_id": kek, "sealed": sealed, "resealed": resealed});
                Ok((out.clone(), Some(out)))
            })
        })
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The database (tests, diagnostics).
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// A write transaction, counted in `auth_db_writes_in_flight`.
    fn write<T>(&self, mut f: impl FnMut(&mut dyn Conn) -> Result<T>) -> Result<T> {
        self.metrics.db_writes_in_flight.add(1);
        // Every write may add audit events: say so first (see `store::audit_horizon`).
        let out = self.db.write(|c| {
            store::lock_for_audit(c)?;
            f(c)
        });
        self.metrics.db_writes_in_flight.add(-1);
        if out.is_err() {
            self.metrics.db_write_errors.inc(&[]);
        }
        out
    }

    fn token_config(&self) -> Result<&TokenConfig> {
        self.tokens
            .as_ref()
            .ok_or_else(|| Error::internal("no issuer/audience configured"))
    }

    /// Until when a revoked session must stay in the feed: the last access token it
    /// issued (no later than its revocation `now`, nor its own end) lives until `exp` +
    /// the edges' leeway. A session that ended long ago needs no entry (the time passed).
    fn session_feed_expiry(&self, session: &SessionRow, now: i64) -> i64 {
        session.expires_at.min(now) + ACCESS_TTL_S + self.feed_leeway_s
    }

    /// A cut-off (`revoked_before = now + 1`) for `kind`: it lasts as long as a token
    /// issued before it can be accepted at an edge. One that can cover a machine client's
    /// tokens (a tenant's, the global one, a subject named like a client id) lasts for the
    /// longest token lifetime any client has had (read with its row locked, so that a
    /// raise either is seen here or extends this cut-off after it commits; see
    /// `store::raise_longest_token_lifetime`).
    fn cut_off(
        &self,
        c: &mut dyn Conn,
        kind: RevocationKind,
        value: Option<&str>,
        tenant: Option<&str>,
        now: i64,
    ) -> Result<NewRevocation> {
        let rb = revoked_before(now);
        let covers_clients = match kind {
            RevocationKind::Tenant | RevocationKind::Global => true,
            RevocationKind::Subject => value.is_some_and(crate::clients::is_client_id),
            _ => false,
        };
        let lifetime = if covers_clients {
            store::longest_token_lifetime(c, true)?.max(ACCESS_TTL_S)
        } else {
            ACCESS_TTL_S
        };
        Ok(NewRevocation {
            kind,
            value: value.map(str::to_owned),
            tenant: tenant.map(str::to_owned),
            revoked_before: Some(rb),
            expires_at: rb + lifetime + self.feed_leeway_s,
            key_hash: None,
        })
    }

    /// Until when an API-key revocation made at `now` stays in the feed: the
    /// longest an edge may use a `valid` answer computed before it (its
    /// `cache_ttl_s`, at most [`keys::VALID_CACHE_TTL_S`], then up to
    /// [`keys::EDGE_MAX_STALE_S`] more as a stale answer while its lookups fail),
    /// plus the edges' leeway for answers in flight and clocks
    /// (docs/auth-service-api.md, 5.6). An entry that left the feed sooner would let
    /// an edge in an outage accept the revoked key again from its stale answer.
    fn key_feed_expiry(&self, now: i64) -> i64 {
        revoked_before(now) + keys::VALID_CACHE_TTL_S + keys::EDGE_MAX_STALE_S + self.feed_leeway_s
    }

    /// Revokes every live session of `subject` in `tenant` (`None`: in every tenant) and
    /// publishes its cut-off, scoped to that tenant: at the edge it applies to the tokens
    /// whose `sub` and tenant claim both match (docs/auth-service-api.md, 5.4). The cut-off
    /// covers the sessions' tokens: they are not published one by one.
    fn revoke_subject(
        &self,
        c: &mut dyn Conn,
        subject: &str,
        tenant: Option<&str>,
        reason: &str,
        now: i64,
    ) -> Result<u64> {
        let cut_off = self.cut_off(c, RevocationKind::Subject, Some(subject), tenant, now)?;
        store::revoke_live_sessions(c, Some(subject), tenant, reason, cut_off, now)
    }

    pub fn stats(&self) -> Stats {
        Stats {
            api_key_lookups: self.api_key_lookups.load(Ordering::Relaxed),
            revocation_polls: self.revocation_polls.load(Ordering::Relaxed),
        }
    }

    /// Writes audit records on their own (a refused request's), in one transaction.
    fn record(&self, events: &[NewAudit]) -> Result<()> {
        self.write(|c| events.iter().try_for_each(|e| store::insert_audit(c, e)))
    }

    /// Runs an admin action: `f` does its work in a transaction with [`Service::audited`];
    /// a failure is recorded (its own transaction: the action's was rolled back).
    fn admin<T>(&self, ctx: &Ctx, action: &str, target: Option<&str>, f: impl FnOnce(i64) -> Result<T>) -> Result<T> {
        let now = self.now();
        f(now).inspect_err(|e| {
            let detail = json!({"error": e.code()});
            if let Err(audit) = self.record(&[ctx.event(action, target, FAILURE, Some(detail), now)]) {
                tracing::error!(action, error = %audit, "could not record a failed action");
            }
        })
    }

    /// Runs `apply` in one transaction with its success record (`apply` gives the detail).
    fn audited<T>(
        &self,
        ctx: &Ctx,
        action: &str,
        target: Option<&str>,
        now: i64,
        mut apply: impl FnMut(&mut dyn Conn) -> Result<(T, Option<Value>)>,
    ) -> Result<T> {
        self.write(|c| {
            let (out, detail) = apply(c)?;
            store::insert_audit(c, &ctx.event(action, target, SUCCESS, detail, now))?;
            Ok(out)
        })
    }

    // --------------------------------------------------------------- tenants

    pub fn create_tenant(&self, ctx: &Ctx, req: TenantRequest) -> Result<Tenant> {
        let ctx = &ctx.for_tenant(Some(&req.name));
        let target: String = req.name.chars().take(64).collect();
        self.admin(ctx, "tenant.create", Some(&target), |now| {
            validate::tenant_name(&req.name)?;
            let tenant = Tenant {
                allowed_origins: validate::origins(&req.allowed_origins)?,
                ip_allowlist: validate::ip_allowlist(&req.ip_allowlist)?,
                name: req.name,
                created_at: now,
                disabled_at: None,
            };
            let detail = json!({"allowed_origins": tenant.allowed_origins, "ip_allowlist": tenant.ip_allowlist});
            self.audited(ctx, "tenant.create", Some(&target), now, |c| {
                store::insert_tenant(c, &tenant)?;
                Ok(((), Some(detail.clone())))
            })?;
            Ok(tenant)
        })
    }

    /// A key's tenant (it never changes), for an admin action's audit record.
    fn tenant_of_key(&self, key_id: &str) -> Option<String> {
        self.db
            .read(|c| store::key_by_id(c, key_id))
            .ok()
            .flatten()
            .map(|k| k.tenant)
    }

    pub fn list_tenants(&self) -> Result<Vec<Tenant>> {
        self.db.read(store::tenants)
    }

    pub fn get_tenant(&self, name: &str) -> Result<Tenant> {
        self.db
            .read(|c| store::tenant(c, name))?
            .ok_or_else(|| Error::not_found(format!("no tenant {name:?}")))
    }

    /// Replaces a tenant's allowed origins and/or IP allowlist (validated as at creation).
    /// Edges see the change as their cached lookup answers expire.
    pub fn update_tenant(&self, ctx: &Ctx, name: &str, req: TenantUpdate) -> Result<Tenant> {
        let ctx = &ctx.for_tenant(Some(name));
        self.admin(ctx, "tenant.update", Some(name), |now| {
            if req.allowed_origins.is_none() && req.ip_allowlist.is_none() {
                return Err(Error::invalid_request("give allowed_origins, ip_allowlist or both"));
            }
            let origins = req.allowed_origins.as_deref().map(validate::origins).transpose()?;
            let ips = req.ip_allowlist.as_deref().map(validate::ip_allowlist).transpose()?;
            let detail = json!({"allowed_origins": origins, "ip_allowlist": ips});
            self.audited(ctx, "tenant.update", Some(name), now, |c| {
                if !store::update_tenant(c, name, origins.as_deref(), ips.as_deref())? {
                    return Err(Error::not_found(format!("no tenant {name:?}")));
                }
                let t = store::tenant(c, name)?.ok_or_else(|| Error::not_found(format!("no tenant {name:?}")))?;
                Ok((t, Some(detail.clone())))
            })
        })
    }

    /// Disables a tenant: its keys are refused (lookups answer `revoked`), its live
    /// sessions are revoked, and a tenant cut-off in the feed makes the edges refuse
    /// every access token of the tenant issued until now. Already disabled: unchanged.
    pub fn disable_tenant(&self, ctx: &Ctx, name: &str) -> Result<Value> {
        let ctx = &ctx.for_tenant(Some(name));
        self.admin(ctx, "tenant.disable", Some(name), |now| {
            self.audited(ctx, "tenant.disable", Some(name), now, |c| {
                let newly = store::set_tenant_disabled(c, name, Some(now))?;
                let t = store::tenant(c, name)?.ok_or_else(|| Error::not_found(format!("no tenant {name:?}")))?;
                let (sessions, rb) = if newly {
                    let cut_off = self.cut_off(c, RevocationKind::Tenant, Some(name), Some(name), now)?;
                    let rb = cut_off.revoked_before;
                    (
                        store::revoke_live_sessions(c, None, Some(name), "tenant_disabled", cut_off, now)?,
                        rb,
                    )
                } else {
                    (0, None)
                };
                let detail = json!({"already_disabled": !newly, "sessions_revoked": sessions, "revoked_before": rb});
                let mut out = serde_json::to_value(&t)?;
                if let Some(o) = out.as_object_mut() {
                    o.insert("sessions_revoked".into(), json!(sessions));
                    o.insert("revoked_before".into(), json!(rb));
                }
                Ok((out, Some(detail)))
            })
        })
    }

    /// Enables a disabled tenant: its keys work again. Sessions and tokens ended by the
    /// disabling stay ended. Already enabled: unchanged.
    pub fn enable_tenant(&self, ctx: &Ctx, name: &str) -> Result<Tenant> {
        let ctx = &ctx.for_tenant(Some(name));
        self.admin(ctx, "tenant.enable", Some(name), |now| {
            self.audited(ctx, "tenant.enable", Some(name), now, |c| {
                let newly = store::set_tenant_disabled(c, name, None)?;
                let t = store::tenant(c, name)?.ok_or_else(|| Error::not_found(format!("no tenant {name:?}")))?;
                Ok((t, Some(json!({"already_enabled": !newly}))))
            })
        })
    }

    // ------------------------------------------------------------------ keys

    /// The key-tag secrets new keys are tagged with, if any.
    pub fn key_tags(&self) -> Option<&KeyTags> {
        self.key_tags.as_ref()
    }

    fn new_key_row(&self, template: &ApiKeyRow, now: i64) -> Result<(String, ApiKeyRow)> {
        let (raw, tag_secret_id) = keys::generate_api_key(self.key_tags.as_ref())?;
        let row = ApiKeyRow {
            key_id: crate::ids::new_id(keys::KEY_ID_PREFIX)?,
            key_hash: keys::hash_secret(&raw),
            created_at: now,
            rotated_at: None,
            rotation_deadline: None,
            replaced_by: None,
            revoked_at: None,
            last_used_at: None,
            tag_secret_id,
            ..template.clone()
        };
        Ok((raw, row))
    }

    fn created_key(raw: String, row: &ApiKeyRow, now: i64) -> CreatedKey {
        CreatedKey {
            key_id: row.key_id.clone(),
            api_key: raw,
            metadata: KeyView::new(row, now),
        }
    }

    pub fn create_key(&self, ctx: &Ctx, tenant: &str, req: KeyRequest) -> Result<CreatedKey> {
        let ctx = &ctx.for_tenant(Some(tenant));
        self.admin(ctx, "key.create", Some(tenant), |now| {
            validate::subject(&req.subject)?;
            let template = ApiKeyRow {
                key_id: String::new(),
                tenant: tenant.to_owned(),
                subject: req.subject,
                key_hash: String::new(),
                scopes: validate::scopes(&req.scopes)?,
                roles: validate::roles(&req.roles)?,
                ip_allowlist: req.ip_allowlist.as_deref().map(validate::ip_allowlist).transpose()?,
                created_at: now,
                expires_at: with_expiry(req.expires_in_s, now)?,
                rotated_at: None,
                rotation_deadline: None,
                replaced_by: None,
                revoked_at: None,
                last_used_at: None,
                tag_secret_id: None,
            };
            let (raw, row) = self.new_key_row(&template, now)?;
            let detail = json!({"key_id": row.key_id, "fingerprint": keys::fingerprint(&row.key_hash), "subject": row.subject, "scopes": row.scopes, "roles": row.roles});
            self.audited(ctx, "key.create", Some(tenant), now, |c| {
                if store::tenant(c, tenant)?.is_none() {
                    return Err(Error::not_found(format!("no tenant {tenant:?}")));
                }
                store::insert_key(c, &row)?;
                Ok(((), Some(detail.clone())))
            })?;
            Ok(Service::created_key(raw, &row, now))
        })
    }

    pub fn list_keys(&self, tenant: &str) -> Result<Vec<KeyView>> {
        let now = self.now();
        let keys = self.db.read_snapshot(|c| {
            if store::tenant(c, tenant)?.is_none() {
                return Err(Error::not_found(format!("no tenant {tenant:?}")));
            }
            store::keys_of_tenant(c, tenant)
        })?;
        Ok(keys.iter().map(|k| KeyView::new(k, now)).collect())
    }

    pub fn rotate_key(&self, ctx: &Ctx, key_id: &str, req: RotateRequest) -> Result<CreatedKey> {
        let ctx = &ctx.for_tenant(self.tenant_of_key(key_id).as_deref());
        self.admin(ctx, "key.rotate", Some(key_id), |now| {
            if !(0..=MAX_GRACE_S).contains(&req.grace_s) {
                return Err(Error::invalid_request(format!("grace_s must be between 0 and {MAX_GRACE_S}")));
            }
            let deadline = now + req.grace_s;
            let (raw, row) = self.audited(ctx, "key.rotate", Some(key_id), now, |c| {
                let old = store::key_by_id(c, key_id)?.ok_or_else(|| Error::not_found(format!("no key {key_id}")))?;
                match keys::key_status(&old, now) {
                    KeyStatus::Valid if old.rotated_at.is_none() => {}
                    KeyStatus::Valid => return Err(Error::conflict(format!("key {key_id} was already rotated"))),
                    KeyStatus::Revoked => return Err(Error::conflict(format!("key {key_id} is revoked"))),
                    KeyStatus::Expired => return Err(Error::conflict(format!("key {key_id} is expired"))),
                }
                let (raw, row) = self.new_key_row(&old, now)?;
                store::rotate_key(c, key_id, &row, deadline, now)?;
                let detail = json!({"new_key_id": row.key_id, "fingerprint": keys::fingerprint(&row.key_hash), "grace_s": req.grace_s, "rotation_deadline": deadline});
                Ok(((raw, row), Some(detail)))
            })?;
            Ok(Service::created_key(raw, &row, now))
        })
    }

    pub fn revoke_key(&self, ctx: &Ctx, key_id: &str) -> Result<KeyView> {
        let ctx = &ctx.for_tenant(self.tenant_of_key(key_id).as_deref());
        self.admin(ctx, "key.revoke", Some(key_id), |now| {
            let row = self.audited(ctx, "key.revoke", Some(key_id), now, |c| {
                if store::key_by_id(c, key_id)?.is_none() {
                    return Err(Error::not_found(format!("no key {key_id}")));
                }
                let newly = store::revoke_key(c, key_id, now)?;
                let row = store::key_by_id(c, key_id)?.ok_or_else(|| Error::not_found(format!("no key {key_id}")))?;
                if newly {
                    // In the feed, in the revocation's transaction: every edge refuses
                    // the key within a poll, whatever answer it has cached.
                    let event = NewRevocation {
                        kind: RevocationKind::Key,
                        value: Some(row.key_id.clone()),
                        tenant: Some(row.tenant.clone()),
                        revoked_before: None,
                        expires_at: self.key_feed_expiry(now),
                        key_hash: Some(row.key_hash.clone()),
                    };
                    store::insert_events(c, &[event], now)?;
                }
                Ok((row, Some(json!({"already_revoked": !newly}))))
            })?;
            Ok(KeyView::new(&row, now))
        })
    }

    /// Emergency: revokes every API key, of `tenant` or of every tenant. Their lookups
    /// answer `revoked` at once, and the feed's key cut-off makes edges drop the
    /// answers they cached within a poll.
    pub fn revoke_all_keys(&self, ctx: &Ctx, tenant: Option<&str>) -> Result<Value> {
        let ctx = &ctx.for_tenant(tenant);
        self.admin(ctx, "key.revoke_all", tenant, |now| {
            self.audited(ctx, "key.revoke_all", tenant, now, |c| {
                if let Some(t) = tenant {
                    if store::tenant(c, t)?.is_none() {
                        return Err(Error::not_found(format!("no tenant {t:?}")));
                    }
                }
                let n = store::revoke_all_keys(c, tenant, now)?;
                // One cut-off in the feed, however many keys (in this transaction):
                // edges refuse every answer computed before it.
                let (kind, value) = match tenant {
                    Some(t) => (RevocationKind::KeyTenant, Some(t)),
                    None => (RevocationKind::KeyGlobal, None),
                };
                let cut_off = NewRevocation {
                    expires_at: self.key_feed_expiry(now),
                    ..self.cut_off(c, kind, value, tenant, now)?
                };
                store::insert_events(c, &[cut_off], now)?;
                let out = json!({"tenant": tenant, "keys_revoked": n, "revoked_at": now});
                Ok((out.clone(), Some(out)))
            })
        })
    }

    /// `POST /internal/v1/api-keys/lookup`: one read on a read connection.
    pub fn lookup(&self, key_hash: &str) -> Result<LookupAnswer> {
        if !keys::is_hex64(key_hash) {
            return Err(Error::invalid_request(
                "key_hash must be 64 lower-case hex characters (SHA-256)",
            ));
        }
        self.api_key_lookups.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let now = self.now();
        let found = self.db.read(|c| store::key_by_hash(c, key_hash));
        self.metrics.lookup_duration.observe(&[], started.elapsed());
        let found = found.inspect_err(|_| self.metrics.lookups.inc(&["error"]))?;
        let used = found.as_ref().map(|(k, _)| (k.key_id.clone(), k.last_used_at));
        let answer = keys::lookup_answer(found, now);
        if let (LookupAnswer::Valid { .. }, Some((key_id, stored))) = (&answer, used) {
            self.usage.note(&key_id, stored, now);
        }
        self.metrics.lookups.inc(&[answer.status()]);
        Ok(answer)
    }

    /// Counts a failed authentication; the error to answer (`429` once the client is limited).
    pub fn auth_failure(&self, f: Failure<'_>, ctx: &Ctx, unauthenticated: Error) -> Error {
        let limited = self.guard.fail(f, ctx.peer.as_deref(), self.now());
        self.metrics
            .audit_failures_pending
            .set(i64::try_from(self.guard.pending_failures()).unwrap_or(i64::MAX));
        match limited {
            Some(retry_after_s) => Error::RateLimited { retry_after_s },
            None => unauthenticated,
        }
    }

    /// Authenticates an SDK request on `route` (a template): by the raw API key it
    /// presents, or, when the edge removed the key, by the key id in the edge's signed
    /// context (`edge`, see `edge_context`). The key must be known, not revoked and not
    /// expired, and the request must come from an address its allowlist (or its tenant's)
    /// admits: the TCP peer's, or the edge's word for it when the edge's signed context
    /// attests this very key (the edge applied the allowlist to the client address it
    /// established). Never a header a client can write. A client limited by `guard` is
    /// refused before the database is asked.
    pub fn authenticate_api_key(
        &self,
        ctx: &Ctx,
        route: &str,
        raw: Option<&str>,
        edge: &EdgeContext,
    ) -> Result<AuthedKey> {
        let now = self.now();
        let fail = |actor: &str, reason: &'static str, e: Error| {
            self.metrics.api_key_validations.inc(&["invalid"]);
            let f = Failure {
                action: "api_key.auth",
                actor,
                route,
                reason,
            };
            Err(self.auth_failure(f, ctx, e))
        };
        let unauthenticated = || Error::Unauthenticated(Credential::ApiKey);
        if let Some(retry_after_s) = self.guard.limited(ctx.peer.as_deref(), now) {
            self.metrics.api_key_validations.inc(&["rate_limited"]);
            let f = Failure {
                action: "api_key.auth",
                actor: "anonymous",
                route,
                reason: "rate_limited",
            };
            self.guard.fail(f, ctx.peer.as_deref(), now);
            return Err(Error::RateLimited { retry_after_s });
        }
        let attested = match edge {
            EdgeContext::ApiKey(a) => Some(a),
            EdgeContext::Absent | EdgeContext::Other => None,
            // Present but not the edge's: forged, replayed, unsigned. Refused, not ignored.
            EdgeContext::Invalid(reason) => return fail("anonymous", reason, unauthenticated()),
        };
        let found = match (raw, attested) {
            (Some(raw), _) if !keys::is_api_key(raw) => return fail("anonymous", "malformed", unauthenticated()),
            (Some(raw), _) => {
                let hash = keys::hash_secret(raw);
                self.db.read(|c| store::key_by_hash(c, &hash))?
            }
            (None, Some(a)) => self.db.read(|c| store::key_and_tenant_by_id(c, &a.key_id))?,
            (None, None) => return fail("anonymous", "missing", unauthenticated()),
        };
        let Some((key, tenant)) = found else {
            return fail("anonymous", "unknown", unauthenticated());
        };
        // The edge's word holds for the key it names, in its tenant, and no other.
        let vouched =
            attested.filter(|a| a.key_id == key.key_id && a.tenant.as_deref().is_none_or(|t| t == key.tenant));
        if attested.is_some() && vouched.is_none() {
            return fail("anonymous", "context_mismatch", unauthenticated());
        }
        match keys::key_status(&key, now) {
            KeyStatus::Valid => {}
            KeyStatus::Revoked => return fail("anonymous", "revoked", unauthenticated()),
            KeyStatus::Expired => return fail("anonymous", "expired", unauthenticated()),
        }
        if tenant.disabled_at.is_some() {
            return fail("anonymous", "tenant_disabled", unauthenticated());
        }
        let actor = format!("api_key:{}", key.key_id);
        if vouched.is_none() && !address_allowed(&key, &tenant, ctx.peer.as_deref()) {
            return fail(&actor, "ip_not_allowed", Error::IpNotAllowed);
        }
        self.metrics.api_key_validations.inc(&["valid"]);
        self.usage.note(&key.key_id, key.last_used_at, now);
        let ctx = ctx.as_actor(actor).for_tenant(Some(&key.tenant));
        Ok(AuthedKey {
            key,
            ctx,
            route: route.to_owned(),
        })
    }

    /// Records a request made with a valid key that was refused before any change.
    fn refused<T>(&self, authed: &AuthedKey, now: i64, e: Error) -> Result<T> {
        self.record(&[authed.auth_event(now)])?;
        Err(e)
    }

    /// Counts a token failure of a request made with a valid key.
    fn token_failure(
        &self,
        authed: &AuthedKey,
        action: &'static str,
        kind: &str,
        reason: &'static str,
        e: Error,
    ) -> Error {
        self.metrics.token_validations.inc(&[kind, "invalid"]);
        let f = Failure {
            action,
            actor: &authed.ctx.actor,
            route: &authed.route,
            reason,
        };
        self.auth_failure(f, &authed.ctx, e)
    }

    // -------------------------------------------------------------- sessions

    fn ensure_signing_key(&self) -> Result<()> {
        if self.db.read(store::current_signing_key)?.is_some() {
            return Ok(());
        }
        let now = self.now();
        let key = self.sealed(&tokens::generate_signing_key(now)?)?;
        let ctx = Ctx::new("service", None, None);
        self.write(|c| {
            if store::install_signing_key(c, &key, false, now)? {
                store::insert_audit(c, &ctx.event("signing_key.create", Some(&key.kid), SUCCESS, None, now))?;
            }
            Ok(())
        })
    }

    /// The current signing key, opened.
    fn current_key(&self) -> Result<SigningKeyRow> {
        if let Some(k) = self.db.read(store::current_signing_key)? {
            return self.open_key(&k);
        }
        self.ensure_signing_key()?;
        let k = self
            .db
            .read(store::current_signing_key)?
            .ok_or_else(|| Error::internal("no signing key"))?;
        self.open_key(&k)
    }

    fn pair(access: String, refresh: String, session: &SessionRow, now: i64) -> TokenPair {
        TokenPair {
            access_token: access,
            token_type: "Bearer",
            expires_in: ACCESS_TTL_S,
            refresh_token: refresh,
            refresh_expires_in: session.expires_at - now,
            session_id: session.sid.clone(),
        }
    }

    /// `POST /v1/sessions`.
    pub fn create_session(&self, authed: &AuthedKey, req: SessionRequest) -> Result<TokenPair> {
        let now = self.now();
        let out = self.try_create_session(authed, req, now);
        let result = if out.is_ok() { "created" } else { "refused" };
        self.metrics.session_creations.inc(&[result]);
        out
    }

    fn try_create_session(&self, authed: &AuthedKey, req: SessionRequest, now: i64) -> Result<TokenPair> {
        let cfg = self.token_config()?;
        let key = &authed.key;
        let checked = validate::subject(&req.subject).and_then(|()| {
            let scopes = match &req.scopes {
                None => key.scopes.clone(),
                Some(s) => validate::scopes(s)?,
            };
            let roles = validate::roles(req.roles.as_deref().unwrap_or_default())?;
            Ok((scopes, roles))
        });
        let (scopes, roles) = match checked {
            Ok(s) => s,
            Err(e) => return self.refused(authed, now, e),
        };
        if let Some(extra) = scopes.iter().find(|s| !key.scopes.contains(s)) {
            let e = Error::invalid_scope(format!("scope {extra:?} is not granted to this API key"));
            return self.refused(authed, now, e);
        }
        if let Some(extra) = roles.iter().find(|r| !key.roles.contains(r)) {
            let e = Error::invalid_scope(format!("role {extra:?} may not be granted with this API key"));
            return self.refused(authed, now, e);
        }
        let signing = self.current_key()?;
        let session = SessionRow {
            sid: tokens::new_session_id()?,
            tenant: key.tenant.clone(),
            subject: req.subject,
            scopes,
            roles,
            key_id: key.key_id.clone(),
            created_at: now,
            expires_at: now + SESSION_TTL_S,
            revoked_at: None,
        };
        let access = tokens::issue_access_token(&signing, cfg, &session, now)?;
        let refresh = tokens::generate_refresh_token()?;
        let detail = json!({"subject": session.subject, "scopes": session.scopes, "roles": session.roles, "jti": access.jti, "kid": signing.kid});
        self.write(|c| {
            store::insert_audit(c, &authed.auth_event(now))?;
            store::insert_session(c, &session, &keys::hash_secret(&refresh))?;
            let event = authed
                .ctx
                .event("session.create", Some(&session.sid), SUCCESS, Some(detail.clone()), now);
            store::insert_audit(c, &event)
        })?;
        Ok(Service::pair(access.token, refresh, &session, now))
    }

    /// `POST /v1/sessions/refresh`: a new pair for the same session. A spent refresh
    /// token presented again revokes the whole session. Decided in one transaction
    /// that locks the token, so concurrent refreshes of one token (on any replica)
    /// let exactly one through and see the others as reuse.
    pub fn refresh(&self, authed: &AuthedKey, req: RefreshRequest) -> Result<TokenPair> {
        let cfg = self.token_config()?;
        let now = self.now();
        let started = Instant::now();
        if !tokens::is_refresh_token(&req.refresh_token) {
            let e = Error::invalid_request("refresh_token must be rt_ followed by 64 lower-case hex");
            return self.refused(authed, now, e);
        }
        let hash = keys::hash_secret(&req.refresh_token);
        let fingerprint = keys::fingerprint(&hash);
        let signing = self.current_key()?;
        let outcome = self.write(|c| {
            store::insert_audit(c, &authed.auth_event(now))?;
            let Some((rt, session)) = store::refresh_token(c, &hash)? else {
                return Ok(Refreshed::Refused { reason: "unknown" });
            };
            if session.tenant != authed.key.tenant {
                return Ok(Refreshed::Refused { reason: "other_tenant" });
            }
            if rt.spent_at.is_some() {
                let until = self.session_feed_expiry(&session, now);
                let outcome = store::revoke_session(c, &session.sid, "refresh_reuse", None, until, now)?;
                if outcome != RevokeOutcome::Revoked {
                    // Already revoked: nothing new happened; counted as a failure, not a record.
                    return Ok(Refreshed::Refused {
                        reason: "session_revoked",
                    });
                }
                let detail = json!({"fingerprint": fingerprint, "session_revoked": true});
                let event = authed
                    .ctx
                    .event("session.refresh_reuse", Some(&session.sid), FAILURE, Some(detail), now);
                store::insert_audit(c, &event)?;
                return Ok(Refreshed::Reused);
            }
            if session.revoked_at.is_some() {
                return Ok(Refreshed::Refused {
                    reason: "session_revoked",
                });
            }
            if session.expires_at <= now {
                return Ok(Refreshed::Refused {
                    reason: "session_expired",
                });
            }
            let access = tokens::issue_access_token(&signing, cfg, &session, now)?;
            let refresh = tokens::generate_refresh_token()?;
            if !store::rotate_refresh(c, &hash, &keys::hash_secret(&refresh), &session.sid, now)? {
                return Ok(Refreshed::Refused {
                    reason: "concurrent_change",
                });
            }
            let event = authed.ctx.event(
                "session.refresh",
                Some(&session.sid),
                SUCCESS,
                Some(json!({"jti": access.jti})),
                now,
            );
            store::insert_audit(c, &event)?;
            Ok(Refreshed::Pair(Service::pair(access.token, refresh, &session, now)))
        })?;
        self.metrics
            .token_validation_duration
            .observe(&["refresh"], started.elapsed());
        match outcome {
            Refreshed::Pair(pair) => {
                self.metrics.token_validations.inc(&["refresh", "valid"]);
                Ok(pair)
            }
            Refreshed::Reused => {
                self.metrics.token_validations.inc(&["refresh", "invalid"]);
                Err(Error::invalid_grant(
                    "refresh token reuse detected: the session is revoked",
                ))
            }
            Refreshed::Refused { reason } => {
                let e = Error::invalid_grant("the refresh token is invalid, expired, revoked or already used");
                Err(self.token_failure(authed, "session.refresh", "refresh", reason, e))
            }
        }
    }

    /// `POST /v1/sessions/logout` with a refresh token.
    pub fn logout_with_refresh(&self, authed: &AuthedKey, refresh_token: &str) -> Result<()> {
        let now = self.now();
        if !tokens::is_refresh_token(refresh_token) {
            let e = Error::invalid_request("refresh_token must be rt_ followed by 64 lower-case hex");
            return self.refused(authed, now, e);
        }
        let hash = keys::hash_secret(refresh_token);
        let outcome = self.write(|c| {
            store::insert_audit(c, &authed.auth_event(now))?;
            let session = match store::refresh_token(c, &hash)? {
                Some((_, s)) if s.tenant == authed.key.tenant => s,
                Some(_) => return Ok(LoggedOut::Refused { reason: "other_tenant" }),
                None => return Ok(LoggedOut::Refused { reason: "unknown" }),
            };
            let until = self.session_feed_expiry(&session, now);
            let outcome = store::revoke_session(c, &session.sid, "logout", None, until, now)?;
            let detail = json!({"via": "refresh_token", "already_revoked": outcome == RevokeOutcome::AlreadyRevoked});
            let event = authed
                .ctx
                .event("session.logout", Some(&session.sid), SUCCESS, Some(detail), now);
            store::insert_audit(c, &event)?;
            Ok(LoggedOut::Done)
        })?;
        match outcome {
            LoggedOut::Done => Ok(()),
            LoggedOut::Refused { reason } => {
                let e = Error::invalid_grant("unknown refresh token");
                Err(self.token_failure(authed, "session.logout", "refresh", reason, e))
            }
        }
    }

    /// `POST /v1/sessions/logout` with the access token as Bearer: revokes its session and the token.
    pub fn logout_with_access_token(&self, authed: &AuthedKey, token: &str) -> Result<()> {
        let cfg = self.token_config()?;
        let now = self.now();
        let started = Instant::now();
        let published = self.published_keys(now)?;
        let published = self.open_keys(&published)?;
        let verified = tokens::verify_access_token(&published, cfg, token, now, LOGOUT_LEEWAY_S);
        self.metrics
            .token_validation_duration
            .observe(&["access"], started.elapsed());
        let claims = match verified {
            Ok(c) if c.custom.tenant == authed.key.tenant => c,
            Ok(_) => {
                self.record(&[authed.auth_event(now)])?;
                let e = Error::invalid_token("the access token belongs to another tenant");
                return Err(self.token_failure(authed, "session.logout", "access", "other_tenant", e));
            }
            Err(e) => {
                self.record(&[authed.auth_event(now)])?;
                return Err(self.token_failure(authed, "session.logout", "access", "invalid_token", e));
            }
        };
        self.metrics.token_validations.inc(&["access", "valid"]);
        let sid = claims.custom.sid.clone();
        let exp = claims
            .expires_at
            .map(|e| i64::try_from(e.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(now);
        // The token's entry lasts as long as an edge may accept it.
        let jti = claims.jwt_id.as_deref().map(|j| (j, exp + self.feed_leeway_s));
        let outcome = self.write(|c| {
            store::insert_audit(c, &authed.auth_event(now))?;
            let Some(session) = store::session(c, &sid)? else {
                return Ok(LoggedOut::Refused { reason: "unknown_session" });
            };
            let until = self.session_feed_expiry(&session, now);
            let outcome = store::revoke_session(c, &sid, "logout", jti, until, now)?;
            let detail = json!({"via": "access_token", "jti": claims.jwt_id, "already_revoked": outcome == RevokeOutcome::AlreadyRevoked});
            store::insert_audit(c, &authed.ctx.event("session.logout", Some(&sid), SUCCESS, Some(detail), now))?;
            Ok(LoggedOut::Done)
        })?;
        match outcome {
            LoggedOut::Done => Ok(()),
            LoggedOut::Refused { reason } => {
                let e = Error::invalid_token("unknown session");
                Err(self.token_failure(authed, "session.logout", "access", reason, e))
            }
        }
    }

    /// `POST /v1/subjects/logout-everywhere`: every session of the subject in the key's tenant,
    /// and `revoked_before = now + 1` for the subject.
    pub fn logout_everywhere(&self, authed: &AuthedKey, req: SubjectRequest) -> Result<u64> {
        let now = self.now();
        if let Err(e) = validate::subject(&req.subject) {
            return self.refused(authed, now, e);
        }
        let rb = revoked_before(now);
        self.write(|c| {
            store::insert_audit(c, &authed.auth_event(now))?;
            let n = self.revoke_subject(c, &req.subject, Some(&authed.key.tenant), "logout_everywhere", now)?;
            let detail = json!({"sessions_revoked": n, "revoked_before": rb});
            let event = authed.ctx.event(
                "subject.logout_everywhere",
                Some(&req.subject),
                SUCCESS,
                Some(detail),
                now,
            );
            store::insert_audit(c, &event)?;
            Ok(n)
        })
    }

    // -------------------------------------------------------- admin revokes

    pub fn admin_revoke_session(&self, ctx: &Ctx, sid: &str) -> Result<Value> {
        // A session's tenant never changes: read before the action's transaction.
        let tenant = self
            .db
            .read(|c| store::session(c, sid))
            .ok()
            .flatten()
            .map(|s| s.tenant);
        let ctx = &ctx.for_tenant(tenant.as_deref());
        self.admin(ctx, "session.revoke", Some(sid), |now| {
            self.audited(ctx, "session.revoke", Some(sid), now, |c| {
                let session = store::session(c, sid)?.ok_or_else(|| Error::not_found(format!("no session {sid}")))?;
                let until = self.session_feed_expiry(&session, now);
                let outcome = store::revoke_session(c, sid, "admin", None, until, now)?;
                let already = outcome == RevokeOutcome::AlreadyRevoked;
                Ok((
                    json!({"sid": sid, "revoked": true, "already_revoked": already}),
                    Some(json!({"already_revoked": already})),
                ))
            })
        })
    }

    /// Revokes every session and token of `subject`: in `tenant` only, or, without one,
    /// in every tenant (an operator-wide cut-off: the feed entry has no tenant).
    pub fn admin_revoke_subject(&self, ctx: &Ctx, subject: &str, tenant: Option<&str>) -> Result<Value> {
        let ctx = &ctx.for_tenant(tenant);
        self.admin(ctx, "subject.revoke", Some(subject), |now| {
            validate::subject(subject)?;
            self.audited(ctx, "subject.revoke", Some(subject), now, |c| {
                if let Some(t) = tenant {
                    if store::tenant(c, t)?.is_none() {
                        return Err(Error::not_found(format!("no tenant {t:?}")));
                    }
                }
                let n = self.revoke_subject(c, subject, tenant, "admin", now)?;
                let out = json!({"subject": subject, "tenant": tenant, "revoked_before": revoked_before(now), "sessions_revoked": n});
                Ok((out.clone(), Some(out)))
            })
        })
    }

    pub fn revoke_all(&self, ctx: &Ctx) -> Result<Value> {
        self.admin(ctx, "revoke_all", None, |now| {
            self.audited(ctx, "revoke_all", None, now, |c| {
                let rb = revoked_before(now);
                let global = self.cut_off(c, RevocationKind::Global, None, None, now)?;
                let n = store::revoke_live_sessions(c, None, None, "revoke_all", global, now)?;
                let out = json!({"revoked_before": rb, "sessions_revoked": n});
                Ok((out.clone(), Some(out)))
            })
        })
    }

    // ---------------------------------------------------------- signing keys

    /// Makes a new current signing key; the old one stays in the JWKS for the token lifetime.
    pub fn rotate_signing_key(&self, ctx: &Ctx) -> Result<Value> {
        self.admin(ctx, "signing_key.rotate", None, |now| {
            let clear = tokens::generate_signing_key(now)?;
            let jwk = tokens::public_jwk(&clear)?;
            let key = self.sealed(&clear)?;
            self.audited(ctx, "signing_key.rotate", None, now, |c| {
                let previous = store::current_signing_key(c)?.map(|k| k.kid);
                store::install_signing_key(c, &key, true, now)?;
                let out = json!({"kid": key.kid, "previous_kid": previous, "created_at": now, "jwk": jwk});
                Ok((out, Some(json!({"kid": key.kid, "previous_kid": previous}))))
            })
        })
    }

    /// The signing keys the JWKS publishes at `now`: the current one and those retired
    /// less than the access-token lifetime ago, or the longest token lifetime any machine
    /// client has had, if that is longer.
    fn published_keys(&self, now: i64) -> Result<Vec<SigningKeyRow>> {
        self.db.read(|c| {
            let window = store::longest_token_lifetime(c, false)?.max(RETIRED_KEY_PUBLISHED_S);
            store::published_signing_keys(c, now - window)
        })
    }

    /// The JWKS: the current key and keys retired less than the token lifetime ago.
    pub fn jwks(&self) -> Result<Value> {
        let now = self.now();
        let keys = self.published_keys(now)?;
        tokens::jwks(&self.open_keys(&keys)?)
    }

    // ------------------------------------------------------------ revocation

    pub fn revocations(&self, since: Option<&str>) -> Result<Feed> {
        self.revocation_polls.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let feed = revocation::feed(&self.db, &self.instance, since, self.now());
        self.metrics.feed_duration.observe(&[], started.elapsed());
        let answer = match &feed {
            Ok(f) if f.reset => "snapshot",
            Ok(_) => "incremental",
            Err(_) => "error",
        };
        self.metrics.feed_requests.inc(&[answer]);
        feed
    }

    // ----------------------------------------------------------------- audit

    /// The newest audit events (failed authentications counted so far included).
    pub fn audit_events(&self, limit: u32) -> Result<Vec<AuditEvent>> {
        Ok(self
            .audit_page(&AuditQuery {
                limit,
                ..AuditQuery::default()
            })?
            .events)
    }

    /// A page of the audit log (failed authentications counted so far included): newest
    /// first, before a cursor; or oldest first, after one (to follow the log without
    /// missing an event, even one committed late on another replica). See `store::audit_page`.
    pub fn audit_page(&self, q: &AuditQuery) -> Result<AuditPageOut> {
        let page = match (q.before.as_deref(), q.after.as_deref()) {
            (Some(_), Some(_)) => return Err(Error::invalid_request("give before or after, not both")),
            (Some(c), None) => AuditPage::Before(Some(parse_audit_cursor(c)?)),
            (None, Some(c)) => AuditPage::After(parse_audit_cursor(c)?),
            (None, None) => AuditPage::Before(None),
        };
        let limit = q.limit.clamp(1, 1000);
        self.flush_auth_failures()?;
        // Two statements, each on the latest committed state: the horizon first, then
        // the page (whatever commits in between is below the horizon only if final).
        let events = self.db.read(|c| {
            let horizon = store::audit_horizon(c)?;
            store::audit_page(c, &q.filter, page, limit, horizon)
        })?;
        let last = events.last().map(|e| audit_cursor(e.tx, e.id));
        let next = match page {
            AuditPage::Before(_) => last.filter(|_| events.len() == limit as usize),
            AuditPage::After(_) => last.or_else(|| q.after.clone()),
        };
        Ok(AuditPageOut { events, next })
    }

    /// Writes the failed authentications counted so far, one row per (action, actor,
    /// route, client). Kept in memory for the next try if the write fails.
    pub fn flush_auth_failures(&self) -> Result<usize> {
        let pending = self.guard.take();
        if pending.is_empty() {
            return Ok(0);
        }
        let rows = pending.rows();
        match self.record(&rows) {
            Ok(()) => {
                self.metrics
                    .audit_failure_rows
                    .add(&[], u64::try_from(rows.len()).unwrap_or(u64::MAX));
                self.metrics
                    .audit_failures_pending
                    .set(i64::try_from(self.guard.pending_failures()).unwrap_or(i64::MAX));
                Ok(rows.len())
            }
            Err(e) => {
                self.guard.restore(pending);
                Err(e)
            }
        }
    }

    /// Writes when keys were last used (noted by lookups and SDK requests), in one
    /// transaction. Kept in memory for the next try if the write fails.
    pub fn flush_key_usage(&self) -> Result<usize> {
        let notes = self.usage.take();
        if notes.is_empty() {
            return Ok(0);
        }
        match self.write(|c| store::record_key_use(c, &notes)) {
            Ok(()) => Ok(notes.len()),
            Err(e) => {
                self.usage.restore(notes);
                Err(e)
            }
        }
    }

    /// Retention: deletes revocation events no longer in force, sessions (and their
    /// refresh tokens) no token of which can still be accepted, and audit events older
    /// than the retention age or beyond its row count, in short transactions.
    /// Returns the audit rows deleted.
    pub fn enforce_retention(&self) -> Result<u64> {
        let now = self.now();
        self.write(|c| store::prune_events(c, now))?;
        let ended = now - ACCESS_TTL_S - self.feed_leeway_s;
        self.in_batches(|c| store::prune_sessions(c, ended, PRUNE_BATCH))?;
        let before = now.saturating_sub(self.retention.max_age_s);
        let total = self.in_batches(|c| store::prune_audit(c, before, self.retention.max_rows, PRUNE_BATCH))?;
        self.metrics.audit_rows_pruned.add(&[], total);
        Ok(total)
    }

    /// Runs `f` in transactions until it deletes fewer than [`PRUNE_BATCH`] rows.
    fn in_batches(&self, mut f: impl FnMut(&mut dyn Conn) -> Result<u64>) -> Result<u64> {
        let mut total = 0;
        loop {
            let n = self.write(&mut f)?;
            total += n;
            if n < u64::from(PRUNE_BATCH) {
                return Ok(total);
            }
        }
    }

    /// Whether the database answers (readiness).
    pub fn ready(&self) -> Result<()> {
        self.db.ping()
    }

    /// The interval at which aggregated failures are written (for the background task).
    pub fn flush_interval(&self) -> Duration {
        Duration::from_secs(10)
    }
}
