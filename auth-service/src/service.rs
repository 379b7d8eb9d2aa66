//! The service's operations, shared by the HTTP layer and the command line.
//! Each one validates its input first, changes the database in a transaction and
//! writes the audit trail.

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::audit::{self, Ctx, FAILURE, SUCCESS};
use crate::error::{ApiError, Result};
use crate::keys::{self, KeyStatus, LookupAnswer};
use crate::revocation::{self, Feed};
use crate::store::{ApiKeyRow, AuditEvent, RevokeOutcome, SessionRow, SigningKeyRow, Store, Tenant};
use crate::tokens::{self, TokenConfig, ACCESS_TTL_S, RETIRED_KEY_PUBLISHED_S, SESSION_TTL_S};
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    pub subject: String,
    #[serde(default)]
    pub scopes: Vec<String>,
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

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyRequest {}

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

// ----------------------------------------------------------------- responses

/// Key metadata: never the raw key or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyView {
    pub key_id: String,
    pub tenant: String,
    pub subject: String,
    pub scopes: Vec<String>,
    /// The key's own allowlist; null = the tenant's.
    pub ip_allowlist: Option<Vec<String>>,
    pub status: KeyStatus,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub rotation_deadline: Option<i64>,
    pub replaced_by: Option<String>,
    pub revoked_at: Option<i64>,
    /// The first 8 hex of the key's SHA-256.
    pub fingerprint: String,
}

impl KeyView {
    pub fn new(k: &ApiKeyRow, now: i64) -> KeyView {
        KeyView {
            key_id: k.key_id.clone(),
            tenant: k.tenant.clone(),
            subject: k.subject.clone(),
            scopes: k.scopes.clone(),
            ip_allowlist: k.ip_allowlist.clone(),
            status: keys::key_status(k, now),
            created_at: k.created_at,
            expires_at: k.expires_at,
            rotation_deadline: k.rotation_deadline,
            replaced_by: k.replaced_by.clone(),
            revoked_at: k.revoked_at,
            fingerprint: keys::fingerprint(&k.key_hash),
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

// ------------------------------------------------------------------- service

pub struct Service {
    store: Mutex<Store>,
    tokens: Option<TokenConfig>,
    clock: Arc<dyn Clock>,
    api_key_lookups: AtomicU64,
    revocation_polls: AtomicU64,
}

fn with_expiry(expires_in_s: Option<i64>, now: i64) -> Result<Option<i64>> {
    match expires_in_s {
        None => Ok(None),
        Some(s) if (1..=MAX_KEY_LIFETIME_S).contains(&s) => Ok(Some(now + s)),
        Some(_) => Err(ApiError::invalid_request(format!(
            "expires_in_s must be null or between 1 and {MAX_KEY_LIFETIME_S}"
        ))),
    }
}

impl Service {
    /// Opens the database file, creates a signing key on first start and prunes stale revocations.
    pub fn open(path: &Path, tokens: Option<TokenConfig>, clock: Arc<dyn Clock>) -> Result<Service> {
        Service::with_store(Store::open(path)?, tokens, clock)
    }

    pub fn with_store(mut store: Store, tokens: Option<TokenConfig>, clock: Arc<dyn Clock>) -> Result<Service> {
        let now = clock.now();
        if store.current_signing_key()?.is_none() {
            let key = tokens::generate_signing_key(now)?;
            if store.install_signing_key(&key, false, now)? {
                audit::record(
                    &mut store,
                    &Ctx::new("service", None, None),
                    "signing_key.create",
                    Some(&key.kid),
                    SUCCESS,
                    None,
                    now,
                );
            }
        }
        store.prune_events(now)?;
        Ok(Service {
            store: Mutex::new(store),
            tokens,
            clock,
            api_key_lookups: AtomicU64::new(0),
            revocation_polls: AtomicU64::new(0),
        })
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The database, locked. Held briefly; SQLite calls are short.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn token_config(&self) -> Result<&TokenConfig> {
        self.tokens
            .as_ref()
            .ok_or_else(|| ApiError::internal("no issuer/audience configured"))
    }

    pub fn stats(&self) -> Stats {
        Stats {
            api_key_lookups: self.api_key_lookups.load(Ordering::Relaxed),
            revocation_polls: self.revocation_polls.load(Ordering::Relaxed),
        }
    }

    /// Records an audit event (for the HTTP layer's own events, such as auth failures).
    pub fn audit(&self, ctx: &Ctx, action: &str, target: Option<&str>, outcome: &str, detail: Option<Value>) {
        let now = self.now();
        audit::record(&mut self.store(), ctx, action, target, outcome, detail, now);
    }

    /// Runs an admin action and audits its outcome (success, or failure with the error code).
    fn admin<T>(
        &self,
        ctx: &Ctx,
        action: &str,
        target: Option<&str>,
        f: impl FnOnce(&mut Store, i64) -> Result<(T, Option<Value>)>,
    ) -> Result<T> {
        let now = self.now();
        let mut store = self.store();
        match f(&mut store, now) {
            Ok((out, detail)) => {
                audit::record(&mut store, ctx, action, target, SUCCESS, detail, now);
                Ok(out)
            }
            Err(e) => {
                let detail = json!({"error": e.code, "status": e.status});
                audit::record(&mut store, ctx, action, target, FAILURE, Some(detail), now);
                Err(e)
            }
        }
    }

    // --------------------------------------------------------------- tenants

    pub fn create_tenant(&self, ctx: &Ctx, req: TenantRequest) -> Result<Tenant> {
        self.admin(
            ctx,
            "tenant.create",
            Some(&req.name.chars().take(64).collect::<String>()),
            |store, now| {
                validate::tenant_name(&req.name)?;
                let tenant = Tenant {
                    allowed_origins: validate::origins(&req.allowed_origins)?,
                    ip_allowlist: validate::ip_allowlist(&req.ip_allowlist)?,
                    name: req.name,
                    created_at: now,
                };
                store.insert_tenant(&tenant)?;
                let detail = json!({"allowed_origins": tenant.allowed_origins, "ip_allowlist": tenant.ip_allowlist});
                Ok((tenant, Some(detail)))
            },
        )
    }

    pub fn list_tenants(&self) -> Result<Vec<Tenant>> {
        self.store().tenants()
    }

    // ------------------------------------------------------------------ keys

    fn new_key_row(template: &ApiKeyRow, now: i64) -> Result<(String, ApiKeyRow)> {
        let raw = keys::generate_api_key()?;
        let row = ApiKeyRow {
            key_id: keys::new_id(keys::KEY_ID_PREFIX)?,
            key_hash: keys::hash_secret(&raw),
            created_at: now,
            rotated_at: None,
            rotation_deadline: None,
            replaced_by: None,
            revoked_at: None,
            ..template.clone()
        };
        Ok((raw, row))
    }

    pub fn create_key(&self, ctx: &Ctx, tenant: &str, req: KeyRequest) -> Result<CreatedKey> {
        self.admin(ctx, "key.create", Some(tenant), |store, now| {
            validate::subject(&req.subject)?;
            let scopes = validate::scopes(&req.scopes)?;
            let ip_allowlist = req.ip_allowlist.as_deref().map(validate::ip_allowlist).transpose()?;
            let expires_at = with_expiry(req.expires_in_s, now)?;
            if store.tenant(tenant)?.is_none() {
                return Err(ApiError::not_found(format!("no tenant {tenant:?}")));
            }
            let template = ApiKeyRow {
                key_id: String::new(),
                tenant: tenant.to_owned(),
                subject: req.subject,
                key_hash: String::new(),
                scopes,
                ip_allowlist,
                created_at: now,
                expires_at,
                rotated_at: None,
                rotation_deadline: None,
                replaced_by: None,
                revoked_at: None,
            };
            let (raw, row) = Service::new_key_row(&template, now)?;
            store.insert_key(&row)?;
            let view = KeyView::new(&row, now);
            let detail = json!({"key_id": row.key_id, "fingerprint": view.fingerprint, "subject": row.subject, "scopes": row.scopes});
            Ok((CreatedKey { key_id: row.key_id.clone(), api_key: raw, metadata: view }, Some(detail)))
        })
    }

    pub fn list_keys(&self, tenant: &str) -> Result<Vec<KeyView>> {
        let now = self.now();
        let store = self.store();
        if store.tenant(tenant)?.is_none() {
            return Err(ApiError::not_found(format!("no tenant {tenant:?}")));
        }
        Ok(store
            .keys_of_tenant(tenant)?
            .iter()
            .map(|k| KeyView::new(k, now))
            .collect())
    }

    pub fn rotate_key(&self, ctx: &Ctx, key_id: &str, req: RotateRequest) -> Result<CreatedKey> {
        self.admin(ctx, "key.rotate", Some(key_id), |store, now| {
            if !(0..=MAX_GRACE_S).contains(&req.grace_s) {
                return Err(ApiError::invalid_request(format!("grace_s must be between 0 and {MAX_GRACE_S}")));
            }
            let old = store.key_by_id(key_id)?.ok_or_else(|| ApiError::not_found(format!("no key {key_id}")))?;
            match keys::key_status(&old, now) {
                KeyStatus::Valid if old.rotated_at.is_none() => {}
                KeyStatus::Valid => return Err(ApiError::conflict(format!("key {key_id} was already rotated"))),
                KeyStatus::Revoked => return Err(ApiError::conflict(format!("key {key_id} is revoked"))),
                KeyStatus::Expired => return Err(ApiError::conflict(format!("key {key_id} is expired"))),
            }
            let (raw, row) = Service::new_key_row(&old, now)?;
            let deadline = now + req.grace_s;
            store.rotate_key(key_id, &row, deadline, now)?;
            let view = KeyView::new(&row, now);
            let detail = json!({"new_key_id": row.key_id, "fingerprint": view.fingerprint, "grace_s": req.grace_s, "rotation_deadline": deadline});
            Ok((CreatedKey { key_id: row.key_id.clone(), api_key: raw, metadata: view }, Some(detail)))
        })
    }

    pub fn revoke_key(&self, ctx: &Ctx, key_id: &str) -> Result<KeyView> {
        self.admin(ctx, "key.revoke", Some(key_id), |store, now| {
            if store.key_by_id(key_id)?.is_none() {
                return Err(ApiError::not_found(format!("no key {key_id}")));
            }
            let newly = store.revoke_key(key_id, now)?;
            let row = store
                .key_by_id(key_id)?
                .ok_or_else(|| ApiError::not_found(format!("no key {key_id}")))?;
            Ok((KeyView::new(&row, now), Some(json!({"already_revoked": !newly}))))
        })
    }

    /// `POST /internal/v1/api-keys/lookup`.
    pub fn lookup(&self, key_hash: &str) -> Result<LookupAnswer> {
        if !keys::is_hex64(key_hash) {
            return Err(ApiError::invalid_request(
                "key_hash must be 64 lower-case hex characters (SHA-256)",
            ));
        }
        self.api_key_lookups.fetch_add(1, Ordering::Relaxed);
        let now = self.now();
        let found = self.store().key_by_hash(key_hash)?;
        Ok(keys::lookup_answer(found, now))
    }

    /// Verifies a raw API key presented to the SDK endpoints: known, not revoked, not expired.
    /// Audits success and failure; returns the key and the context acting as it.
    pub fn authenticate_api_key(&self, ctx: &Ctx, raw: Option<&str>) -> Result<(ApiKeyRow, Ctx)> {
        let now = self.now();
        let mut store = self.store();
        let fail = |store: &mut Store, reason: &str, key_id: Option<&str>, fp: Option<String>| {
            let detail = json!({"reason": reason, "fingerprint": fp});
            audit::record(store, ctx, "api_key.auth", key_id, FAILURE, Some(detail), now);
            ApiError::new(
                401,
                "invalid_api_key",
                "a valid API key is required (x-api-key or Authorization: ApiKey)",
            )
        };
        let Some(raw) = raw else {
            return Err(fail(&mut store, "missing", None, None));
        };
        if !keys::is_api_key(raw) {
            return Err(fail(&mut store, "malformed", None, None));
        }
        let hash = keys::hash_secret(raw);
        let Some((key, _tenant)) = store.key_by_hash(&hash)? else {
            return Err(fail(&mut store, "unknown", None, Some(keys::fingerprint(&hash))));
        };
        match keys::key_status(&key, now) {
            KeyStatus::Valid => {}
            KeyStatus::Revoked => return Err(fail(&mut store, "revoked", Some(&key.key_id), None)),
            KeyStatus::Expired => return Err(fail(&mut store, "expired", Some(&key.key_id), None)),
        }
        let as_key = ctx.as_actor(format!("api_key:{}", key.key_id));
        audit::record(
            &mut store,
            &as_key,
            "api_key.auth",
            Some(&key.key_id),
            SUCCESS,
            None,
            now,
        );
        Ok((key, as_key))
    }

    // -------------------------------------------------------------- sessions

    fn current_key(store: &mut Store, now: i64) -> Result<SigningKeyRow> {
        if let Some(k) = store.current_signing_key()? {
            return Ok(k);
        }
        let key = tokens::generate_signing_key(now)?;
        store.install_signing_key(&key, false, now)?;
        store
            .current_signing_key()?
            .ok_or_else(|| ApiError::internal("no signing key"))
    }

    /// `POST /v1/sessions`.
    pub fn create_session(&self, ctx: &Ctx, key: &ApiKeyRow, req: SessionRequest) -> Result<TokenPair> {
        let cfg = self.token_config()?;
        validate::subject(&req.subject)?;
        let scopes = match &req.scopes {
            None => key.scopes.clone(),
            Some(s) => validate::scopes(s)?,
        };
        if let Some(extra) = scopes.iter().find(|s| !key.scopes.contains(s)) {
            return Err(ApiError::invalid_scope(format!(
                "scope {extra:?} is not granted to this API key"
            )));
        }
        let now = self.now();
        let mut store = self.store();
        let signing = Service::current_key(&mut store, now)?;
        let session = SessionRow {
            sid: tokens::new_session_id()?,
            tenant: key.tenant.clone(),
            subject: req.subject,
            scopes,
            key_id: key.key_id.clone(),
            created_at: now,
            expires_at: now + SESSION_TTL_S,
            revoked_at: None,
        };
        let access = tokens::issue_access_token(&signing, cfg, &session, now)?;
        let refresh = tokens::generate_refresh_token()?;
        store.insert_session(&session, &keys::hash_secret(&refresh))?;
        let detail =
            json!({"subject": session.subject, "scopes": session.scopes, "jti": access.jti, "kid": signing.kid});
        audit::record(
            &mut store,
            ctx,
            "session.create",
            Some(&session.sid),
            SUCCESS,
            Some(detail),
            now,
        );
        Ok(TokenPair {
            access_token: access.token,
            token_type: "Bearer",
            expires_in: ACCESS_TTL_S,
            refresh_token: refresh,
            refresh_expires_in: session.expires_at - now,
            session_id: session.sid,
        })
    }

    /// `POST /v1/sessions/refresh`: a new pair for the same session. A spent refresh
    /// token presented again revokes the whole session.
    pub fn refresh(&self, ctx: &Ctx, key: &ApiKeyRow, req: RefreshRequest) -> Result<TokenPair> {
        let cfg = self.token_config()?;
        if !tokens::is_refresh_token(&req.refresh_token) {
            return Err(ApiError::invalid_request(
                "refresh_token must be rt_ followed by 64 lower-case hex",
            ));
        }
        let now = self.now();
        let hash = keys::hash_secret(&req.refresh_token);
        let mut store = self.store();
        let deny = |store: &mut Store, reason: &str, sid: Option<&str>| {
            let detail = json!({"reason": reason, "fingerprint": keys::fingerprint(&hash)});
            audit::record(store, ctx, "session.refresh", sid, FAILURE, Some(detail), now);
            ApiError::invalid_grant("the refresh token is invalid, expired, revoked or already used")
        };
        let Some((rt, session)) = store.refresh_token(&hash)? else {
            return Err(deny(&mut store, "unknown", None));
        };
        if session.tenant != key.tenant {
            return Err(deny(&mut store, "other_tenant", Some(&session.sid)));
        }
        if rt.spent_at.is_some() {
            let outcome = store.revoke_session(
                &session.sid,
                "refresh_reuse",
                None,
                session.expires_at + ACCESS_TTL_S,
                now,
            )?;
            let detail =
                json!({"fingerprint": keys::fingerprint(&hash), "session_revoked": outcome == RevokeOutcome::Revoked});
            audit::record(
                &mut store,
                ctx,
                "session.refresh_reuse",
                Some(&session.sid),
                FAILURE,
                Some(detail),
                now,
            );
            return Err(ApiError::invalid_grant(
                "refresh token reuse detected: the session is revoked",
            ));
        }
        if session.revoked_at.is_some() {
            return Err(deny(&mut store, "session_revoked", Some(&session.sid)));
        }
        if session.expires_at <= now {
            return Err(deny(&mut store, "session_expired", Some(&session.sid)));
        }
        let signing = Service::current_key(&mut store, now)?;
        let access = tokens::issue_access_token(&signing, cfg, &session, now)?;
        let refresh = tokens::generate_refresh_token()?;
        if !store.rotate_refresh(&hash, &keys::hash_secret(&refresh), &session.sid, now)? {
            return Err(deny(&mut store, "concurrent_change", Some(&session.sid)));
        }
        audit::record(
            &mut store,
            ctx,
            "session.refresh",
            Some(&session.sid),
            SUCCESS,
            Some(json!({"jti": access.jti})),
            now,
        );
        Ok(TokenPair {
            access_token: access.token,
            token_type: "Bearer",
            expires_in: ACCESS_TTL_S,
            refresh_token: refresh,
            refresh_expires_in: session.expires_at - now,
            session_id: session.sid,
        })
    }

    /// `POST /v1/sessions/logout` with a refresh token.
    pub fn logout_with_refresh(&self, ctx: &Ctx, key: &ApiKeyRow, refresh_token: &str) -> Result<()> {
        if !tokens::is_refresh_token(refresh_token) {
            return Err(ApiError::invalid_request(
                "refresh_token must be rt_ followed by 64 lower-case hex",
            ));
        }
        let now = self.now();
        let hash = keys::hash_secret(refresh_token);
        let mut store = self.store();
        let session = match store.refresh_token(&hash)? {
            Some((_, s)) if s.tenant == key.tenant => s,
            found => {
                let sid = found.map(|(_, s)| s.sid);
                let detail = json!({"reason": if sid.is_some() { "other_tenant" } else { "unknown" }, "fingerprint": keys::fingerprint(&hash)});
                audit::record(
                    &mut store,
                    ctx,
                    "session.logout",
                    sid.as_deref(),
                    FAILURE,
                    Some(detail),
                    now,
                );
                return Err(ApiError::invalid_grant("unknown refresh token"));
            }
        };
        let outcome = store.revoke_session(&session.sid, "logout", None, session.expires_at + ACCESS_TTL_S, now)?;
        let detail = json!({"via": "refresh_token", "already_revoked": outcome == RevokeOutcome::AlreadyRevoked});
        audit::record(
            &mut store,
            ctx,
            "session.logout",
            Some(&session.sid),
            SUCCESS,
            Some(detail),
            now,
        );
        Ok(())
    }

    /// `POST /v1/sessions/logout` with the access token as Bearer: revokes its session and the token.
    pub fn logout_with_access_token(&self, ctx: &Ctx, key: &ApiKeyRow, token: &str) -> Result<()> {
        let cfg = self.token_config()?;
        let now = self.now();
        let mut store = self.store();
        let published = store.published_signing_keys(now - RETIRED_KEY_PUBLISHED_S)?;
        let claims = match tokens::verify_access_token(&published, cfg, token, now, LOGOUT_LEEWAY_S) {
            Ok(c) if c.custom.tenant == key.tenant => c,
            Ok(c) => {
                let detail = json!({"reason": "other_tenant"});
                audit::record(
                    &mut store,
                    ctx,
                    "session.logout",
                    Some(&c.custom.sid),
                    FAILURE,
                    Some(detail),
                    now,
                );
                return Err(ApiError::new(
                    401,
                    "invalid_token",
                    "the access token belongs to another tenant",
                ));
            }
            Err(e) => {
                audit::record(
                    &mut store,
                    ctx,
                    "session.logout",
                    None,
                    FAILURE,
                    Some(json!({"reason": "invalid_token"})),
                    now,
                );
                return Err(e);
            }
        };
        let sid = claims.custom.sid.clone();
        let Some(session) = store.session(&sid)? else {
            return Err(ApiError::new(401, "invalid_token", "unknown session"));
        };
        let exp = claims
            .expires_at
            .map(|e| i64::try_from(e.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(now);
        let jti = claims.jwt_id.as_deref().map(|j| (j, exp));
        let outcome = store.revoke_session(&sid, "logout", jti, session.expires_at + ACCESS_TTL_S, now)?;
        let detail = json!({"via": "access_token", "jti": claims.jwt_id, "already_revoked": outcome == RevokeOutcome::AlreadyRevoked});
        audit::record(
            &mut store,
            ctx,
            "session.logout",
            Some(&sid),
            SUCCESS,
            Some(detail),
            now,
        );
        Ok(())
    }

    /// `POST /v1/subjects/logout-everywhere`: every session of the subject in the key's tenant,
    /// and `revoked_before = now + 1` for the subject.
    pub fn logout_everywhere(&self, ctx: &Ctx, key: &ApiKeyRow, req: SubjectRequest) -> Result<usize> {
        validate::subject(&req.subject)?;
        let now = self.now();
        let mut store = self.store();
        let rb = revoked_before(now);
        let n = store.revoke_subject(
            &req.subject,
            Some(&key.tenant),
            "logout_everywhere",
            rb,
            ACCESS_TTL_S,
            now,
        )?;
        let detail = json!({"sessions_revoked": n, "revoked_before": rb});
        audit::record(
            &mut store,
            ctx,
            "subject.logout_everywhere",
            Some(&req.subject),
            SUCCESS,
            Some(detail),
            now,
        );
        Ok(n)
    }

    // -------------------------------------------------------- admin revokes

    pub fn admin_revoke_session(&self, ctx: &Ctx, sid: &str) -> Result<Value> {
        self.admin(ctx, "session.revoke", Some(sid), |store, now| {
            let session = store
                .session(sid)?
                .ok_or_else(|| ApiError::not_found(format!("no session {sid}")))?;
            let outcome = store.revoke_session(sid, "admin", None, session.expires_at + ACCESS_TTL_S, now)?;
            let already = outcome == RevokeOutcome::AlreadyRevoked;
            Ok((
                json!({"sid": sid, "revoked": true, "already_revoked": already}),
                Some(json!({"already_revoked": already})),
            ))
        })
    }

    pub fn admin_revoke_subject(&self, ctx: &Ctx, subject: &str) -> Result<Value> {
        self.admin(ctx, "subject.revoke", Some(subject), |store, now| {
            validate::subject(subject)?;
            let rb = revoked_before(now);
            let n = store.revoke_subject(subject, None, "admin", rb, ACCESS_TTL_S, now)?;
            let out = json!({"subject": subject, "revoked_before": rb, "sessions_revoked": n});
            Ok((out.clone(), Some(out)))
        })
    }

    pub fn revoke_all(&self, ctx: &Ctx) -> Result<Value> {
        self.admin(ctx, "revoke_all", None, |store, now| {
            let rb = revoked_before(now);
            let n = store.revoke_all("revoke_all", rb, ACCESS_TTL_S, now)?;
            let out = json!({"revoked_before": rb, "sessions_revoked": n});
            Ok((out.clone(), Some(out)))
        })
    }

    // ---------------------------------------------------------- signing keys

    /// Makes a new current signing key; the old one stays in the JWKS for the token lifetime.
    pub fn rotate_signing_key(&self, ctx: &Ctx) -> Result<Value> {
        self.admin(ctx, "signing_key.rotate", None, |store, now| {
            let previous = store.current_signing_key()?.map(|k| k.kid);
            let key = tokens::generate_signing_key(now)?;
            store.install_signing_key(&key, true, now)?;
            let out =
                json!({"kid": key.kid, "previous_kid": previous, "created_at": now, "jwk": tokens::public_jwk(&key)?});
            Ok((out, Some(json!({"kid": key.kid, "previous_kid": previous}))))
        })
    }

    /// The JWKS: the current key and keys retired less than the access-token lifetime ago.
    pub fn jwks(&self) -> Result<Value> {
        let now = self.now();
        let keys = self.store().published_signing_keys(now - RETIRED_KEY_PUBLISHED_S)?;
        tokens::jwks(&keys)
    }

    // ------------------------------------------------------------ revocation

    pub fn revocations(&self, since: Option<&str>) -> Result<Feed> {
        self.revocation_polls.fetch_add(1, Ordering::Relaxed);
        let now = self.now();
        revocation::feed(&mut self.store(), since, now)
    }

    // ----------------------------------------------------------------- audit

    pub fn audit_events(&self, limit: u32) -> Result<Vec<AuditEvent>> {
        self.store().audit_events(limit.clamp(1, 1000))
    }
}
