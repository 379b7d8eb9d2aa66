//! SQLite storage: the schema, its migrations and every SQL statement of the service.
//!
//! The database is one file. The schema is versioned in `schema_version`; each
//! migration runs once, in a transaction, so opening a database again (or by an
//! older binary's schema) is idempotent. Multi-statement changes run in
//! transactions, so a failure changes nothing.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use serde::Serialize;

use crate::error::{ApiError, Result};

/// The migrations, in order. Migration `i` (1-based) brings the schema to version `i`.
/// Never edit a released migration: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE tenants (
        name            TEXT PRIMARY KEY,
        allowed_origins TEXT NOT NULL,   -- JSON array of strings
        ip_allowlist    TEXT NOT NULL,   -- JSON array of strings
        created_at      INTEGER NOT NULL
    );
    CREATE TABLE api_keys (
        key_id            TEXT PRIMARY KEY,
        tenant            TEXT NOT NULL REFERENCES tenants(name),
        subject           TEXT NOT NULL,
        key_hash          TEXT NOT NULL UNIQUE,  -- SHA-256 of the raw key; the raw key is never stored
        scopes            TEXT NOT NULL,         -- JSON array
        ip_allowlist      TEXT,                  -- JSON array, NULL = the tenant's
        created_at        INTEGER NOT NULL,
        expires_at        INTEGER,
        rotated_at        INTEGER,
        rotation_deadline INTEGER,
        replaced_by       TEXT,
        revoked_at        INTEGER
    );
    CREATE INDEX api_keys_tenant ON api_keys(tenant);
    CREATE TABLE sessions (
        sid        TEXT PRIMARY KEY,
        tenant     TEXT NOT NULL,
        subject    TEXT NOT NULL,
        scopes     TEXT NOT NULL,
        key_id     TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        revoked_at INTEGER,
        revoke_reason TEXT
    );
    CREATE INDEX sessions_subject ON sessions(subject);
    CREATE TABLE refresh_tokens (
        token_hash TEXT PRIMARY KEY,  -- SHA-256 of the raw refresh token
        sid        TEXT NOT NULL REFERENCES sessions(sid),
        created_at INTEGER NOT NULL,
        spent_at   INTEGER
    );
    CREATE INDEX refresh_tokens_sid ON refresh_tokens(sid);
    CREATE TABLE revocation_events (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        kind           TEXT NOT NULL CHECK (kind IN ('jti', 'session', 'subject', 'global')),
        value          TEXT,
        revoked_before INTEGER,
        expires_at     INTEGER NOT NULL,  -- after this, no token the entry covers can be valid
        created_at     INTEGER NOT NULL
    );
    CREATE TABLE signing_keys (
        kid         TEXT PRIMARY KEY,
        private_key BLOB NOT NULL,
        created_at  INTEGER NOT NULL,
        retired_at  INTEGER
    );
    CREATE TABLE audit_events (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        ts            INTEGER NOT NULL,
        actor         TEXT NOT NULL,
        action        TEXT NOT NULL,
        target        TEXT,
        outcome       TEXT NOT NULL,
        peer          TEXT,
        forwarded_for TEXT,
        detail        TEXT
    );
    "#,
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    pub name: String,
    pub allowed_origins: Vec<String>,
    pub ip_allowlist: Vec<String>,
    pub created_at: i64,
}

/// A stored API key. Holds the hash: never serialise it to a client (see `KeyView`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRow {
    pub key_id: String,
    pub tenant: String,
    pub subject: String,
    pub key_hash: String,
    pub scopes: Vec<String>,
    pub ip_allowlist: Option<Vec<String>>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub rotated_at: Option<i64>,
    pub rotation_deadline: Option<i64>,
    pub replaced_by: Option<String>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionRow {
    pub sid: String,
    pub tenant: String,
    pub subject: String,
    pub scopes: Vec<String>,
    pub key_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRow {
    pub sid: String,
    pub created_at: i64,
    pub spent_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRow {
    pub kid: String,
    pub private_key: Vec<u8>,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationKind {
    Jti,
    Session,
    Subject,
    Global,
}

impl RevocationKind {
    fn as_str(self) -> &'static str {
        match self {
            RevocationKind::Jti => "jti",
            RevocationKind::Session => "session",
            RevocationKind::Subject => "subject",
            RevocationKind::Global => "global",
        }
    }

    fn parse(s: &str) -> Option<RevocationKind> {
        Some(match s {
            "jti" => RevocationKind::Jti,
            "session" => RevocationKind::Session,
            "subject" => RevocationKind::Subject,
            "global" => RevocationKind::Global,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationEvent {
    pub id: i64,
    pub kind: RevocationKind,
    pub value: Option<String>,
    pub revoked_before: Option<i64>,
    pub expires_at: i64,
    pub created_at: i64,
}

/// An audit event to record. Never put a secret, key or token in any field.
#[derive(Debug, Clone, Default)]
pub struct NewAudit {
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub peer: Option<String>,
    pub forwarded_for: Option<String>,
    pub detail: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEvent {
    pub id: i64,
    pub ts: i64,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub peer: Option<String>,
    pub forwarded_for: Option<String>,
    pub detail: Option<serde_json::Value>,
}

/// What `revoke_session` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeOutcome {
    Revoked,
    AlreadyRevoked,
    NotFound,
}

/// The database. Not `Sync`: share it behind a mutex.
pub struct Store {
    conn: Connection,
}

fn json_list(v: &[String]) -> Result<String> {
    Ok(serde_json::to_string(v)?)
}

fn parse_list(s: &str) -> rusqlite::Result<Vec<String>> {
    serde_json::from_str(s)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into()))
}

const KEY_COLUMNS: &str = "key_id, tenant, subject, key_hash, scopes, ip_allowlist, created_at, expires_at, \
                           rotated_at, rotation_deadline, replaced_by, revoked_at";

fn key_from_row(r: &Row<'_>) -> rusqlite::Result<ApiKeyRow> {
    let ip: Option<String> = r.get(5)?;
    Ok(ApiKeyRow {
        key_id: r.get(0)?,
        tenant: r.get(1)?,
        subject: r.get(2)?,
        key_hash: r.get(3)?,
        scopes: parse_list(&r.get::<_, String>(4)?)?,
        ip_allowlist: ip.as_deref().map(parse_list).transpose()?,
        created_at: r.get(6)?,
        expires_at: r.get(7)?,
        rotated_at: r.get(8)?,
        rotation_deadline: r.get(9)?,
        replaced_by: r.get(10)?,
        revoked_at: r.get(11)?,
    })
}

const TENANT_COLUMNS: &str = "name, allowed_origins, ip_allowlist, created_at";

fn tenant_from_row(r: &Row<'_>, at: usize) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        name: r.get(at)?,
        allowed_origins: parse_list(&r.get::<_, String>(at + 1)?)?,
        ip_allowlist: parse_list(&r.get::<_, String>(at + 2)?)?,
        created_at: r.get(at + 3)?,
    })
}

const SESSION_COLUMNS: &str = "sid, tenant, subject, scopes, key_id, created_at, expires_at, revoked_at";

fn session_from_row(r: &Row<'_>, at: usize) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        sid: r.get(at)?,
        tenant: r.get(at + 1)?,
        subject: r.get(at + 2)?,
        scopes: parse_list(&r.get::<_, String>(at + 3)?)?,
        key_id: r.get(at + 4)?,
        created_at: r.get(at + 5)?,
        expires_at: r.get(at + 6)?,
        revoked_at: r.get(at + 7)?,
    })
}

fn event_from_row(r: &Row<'_>) -> rusqlite::Result<RevocationEvent> {
    let kind: String = r.get(1)?;
    Ok(RevocationEvent {
        id: r.get(0)?,
        kind: RevocationKind::parse(&kind).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, "unknown revocation kind".into())
        })?,
        value: r.get(2)?,
        revoked_before: r.get(3)?,
        expires_at: r.get(4)?,
        created_at: r.get(5)?,
    })
}

fn insert_event(
    tx: &Transaction<'_>,
    kind: RevocationKind,
    value: Option<&str>,
    revoked_before: Option<i64>,
    expires_at: i64,
    now: i64,
) -> Result<i64> {
    tx.execute(
        "INSERT INTO revocation_events (kind, value, revoked_before, expires_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![kind.as_str(), value, revoked_before, expires_at, now],
    )?;
    Ok(tx.last_insert_rowid())
}

/// Creates the file readable by its owner only (it holds the signing keys) if it does not exist.
#[cfg(unix)]
fn create_private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(());
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(ApiError::internal(format_args!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(not(unix))]
fn create_private_file(_path: &Path) -> Result<()> {
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the database file and migrates it.
    pub fn open(path: &Path) -> Result<Store> {
        create_private_file(path)?;
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        Store::init(conn)
    }

    /// A private in-memory database (tests).
    pub fn open_in_memory() -> Result<Store> {
        Store::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Store> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        let mut store = Store { conn };
        store.migrate()?;
        Ok(store)
    }

    /// Applies every migration not yet applied. Idempotent.
    pub fn migrate(&mut self) -> Result<()> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
            [],
        )?;
        let current: i64 = tx.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_version", [], |r| r.get(0))?;
        if current > SCHEMA_VERSION {
            return Err(ApiError::new(
                500,
                "schema_too_new",
                format!("the database has schema version {current}; this binary knows up to {SCHEMA_VERSION}"),
            ));
        }
        for (i, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(current).unwrap_or(0))
        {
            let version = i as i64 + 1;
            tx.execute_batch(sql)?;
            tx.execute("INSERT INTO schema_version (version) VALUES (?1)", params![version])?;
        }
        let instance = format!("i{}", crate::keys::base32(&crate::keys::random_bytes::<10>()?));
        tx.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('instance_id', ?1)",
            params![instance],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The schema version of the database.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT COALESCE(MAX(version), 0) FROM schema_version", [], |r| r.get(0))?)
    }

    /// How many migrations were recorded (one row per applied migration).
    pub fn migrations_applied(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM schema_version", [], |r| r.get(0))?)
    }

    /// A random id made when the database was created; part of revocation cursors.
    pub fn instance_id(&self) -> Result<String> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'instance_id'", [], |r| r.get(0))?)
    }

    // ---------------------------------------------------------------- tenants

    pub fn insert_tenant(&mut self, t: &Tenant) -> Result<()> {
        let n = self.conn.execute(
            "INSERT INTO tenants (name, allowed_origins, ip_allowlist, created_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT(name) DO NOTHING",
            params![
                t.name,
                json_list(&t.allowed_origins)?,
                json_list(&t.ip_allowlist)?,
                t.created_at
            ],
        )?;
        if n == 0 {
            return Err(ApiError::conflict(format!("tenant {:?} already exists", t.name)));
        }
        Ok(())
    }

    pub fn tenant(&self, name: &str) -> Result<Option<Tenant>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE name = ?1"),
                params![name],
                |r| tenant_from_row(r, 0),
            )
            .optional()?)
    }

    pub fn tenants(&self) -> Result<Vec<Tenant>> {
        let mut st = self
            .conn
            .prepare(&format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY name"))?;
        let rows = st.query_map([], |r| tenant_from_row(r, 0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    // --------------------------------------------------------------- API keys

    pub fn insert_key(&mut self, k: &ApiKeyRow) -> Result<()> {
        let tx = self.conn.transaction()?;
        Store::insert_key_tx(&tx, k)?;
        tx.commit()?;
        Ok(())
    }

    fn insert_key_tx(tx: &Transaction<'_>, k: &ApiKeyRow) -> Result<()> {
        let ip = k.ip_allowlist.as_deref().map(json_list).transpose()?;
        tx.execute(
            &format!("INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
            params![
                k.key_id,
                k.tenant,
                k.subject,
                k.key_hash,
                json_list(&k.scopes)?,
                ip,
                k.created_at,
                k.expires_at,
                k.rotated_at,
                k.rotation_deadline,
                k.replaced_by,
                k.revoked_at
            ],
        )?;
        Ok(())
    }

    pub fn key_by_id(&self, key_id: &str) -> Result<Option<ApiKeyRow>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = ?1"),
                params![key_id],
                key_from_row,
            )
            .optional()?)
    }

    /// The key with this hash and its tenant.
    pub fn key_by_hash(&self, key_hash: &str) -> Result<Option<(ApiKeyRow, Tenant)>> {
        let cols = prefixed(KEY_COLUMNS, "k");
        let sql = format!(
            "SELECT {cols}, t.name, t.allowed_origins, t.ip_allowlist, t.created_at \
             FROM api_keys k JOIN tenants t ON t.name = k.tenant WHERE k.key_hash = ?1"
        );
        Ok(self
            .conn
            .query_row(&sql, params![key_hash], |r| {
                Ok((key_from_row(r)?, tenant_from_row(r, 12)?))
            })
            .optional()?)
    }

    pub fn keys_of_tenant(&self, tenant: &str) -> Result<Vec<ApiKeyRow>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant = ?1 ORDER BY created_at, key_id"
        ))?;
        let rows = st.query_map(params![tenant], key_from_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Inserts `new` and marks `old_id` as rotated (valid until `deadline`), atomically.
    /// Fails with 409 if the old key was rotated or revoked meanwhile.
    pub fn rotate_key(&mut self, old_id: &str, new: &ApiKeyRow, deadline: i64, now: i64) -> Result<()> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE api_keys SET rotated_at = ?2, rotation_deadline = ?3, replaced_by = ?4 \
             WHERE key_id = ?1 AND rotated_at IS NULL AND revoked_at IS NULL",
            params![old_id, now, deadline, new.key_id],
        )?;
        if n == 0 {
            return Err(ApiError::conflict(format!(
                "key {old_id} was already rotated or revoked"
            )));
        }
        Store::insert_key_tx(&tx, new)?;
        tx.commit()?;
        Ok(())
    }

    /// Marks a key revoked. False if it was already revoked.
    pub fn revoke_key(&mut self, key_id: &str, now: i64) -> Result<bool> {
        let n = self.conn.execute(
            "UPDATE api_keys SET revoked_at = ?2 WHERE key_id = ?1 AND revoked_at IS NULL",
            params![key_id, now],
        )?;
        Ok(n > 0)
    }

    // --------------------------------------------------------------- sessions

    /// Inserts a session and its first refresh token, atomically.
    pub fn insert_session(&mut self, s: &SessionRow, refresh_hash: &str) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            &format!("INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
            params![
                s.sid,
                s.tenant,
                s.subject,
                json_list(&s.scopes)?,
                s.key_id,
                s.created_at,
                s.expires_at,
                s.revoked_at
            ],
        )?;
        tx.execute(
            "INSERT INTO refresh_tokens (token_hash, sid, created_at, spent_at) VALUES (?1, ?2, ?3, NULL)",
            params![refresh_hash, s.sid, s.created_at],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn session(&self, sid: &str) -> Result<Option<SessionRow>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE sid = ?1"),
                params![sid],
                |r| session_from_row(r, 0),
            )
            .optional()?)
    }

    /// A refresh token (by hash) and its session.
    pub fn refresh_token(&self, token_hash: &str) -> Result<Option<(RefreshRow, SessionRow)>> {
        let cols = prefixed(SESSION_COLUMNS, "s");
        let sql = format!(
            "SELECT r.sid, r.created_at, r.spent_at, {cols} FROM refresh_tokens r JOIN sessions s ON s.sid = r.sid \
             WHERE r.token_hash = ?1"
        );
        Ok(self
            .conn
            .query_row(&sql, params![token_hash], |r| {
                Ok((
                    RefreshRow {
                        sid: r.get(0)?,
                        created_at: r.get(1)?,
                        spent_at: r.get(2)?,
                    },
                    session_from_row(r, 3)?,
                ))
            })
            .optional()?)
    }

    /// Spends `old_hash` and stores `new_hash` for the same session, atomically.
    /// False (and nothing changed) if the old token was spent meanwhile or its session revoked.
    pub fn rotate_refresh(&mut self, old_hash: &str, new_hash: &str, sid: &str, now: i64) -> Result<bool> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE refresh_tokens SET spent_at = ?2 WHERE token_hash = ?1 AND spent_at IS NULL \
             AND sid IN (SELECT sid FROM sessions WHERE sid = ?3 AND revoked_at IS NULL AND expires_at > ?2)",
            params![old_hash, now, sid],
        )?;
        if n == 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO refresh_tokens (token_hash, sid, created_at, spent_at) VALUES (?1, ?2, ?3, NULL)",
            params![new_hash, sid, now],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Revokes a session and publishes it in the revocation feed (until `feed_expires_at`);
    /// with `jti`, also that access token.
    pub fn revoke_session(
        &mut self,
        sid: &str,
        reason: &str,
        jti: Option<(&str, i64)>,
        feed_expires_at: i64,
        now: i64,
    ) -> Result<RevokeOutcome> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let exists: Option<Option<i64>> = tx
            .query_row("SELECT revoked_at FROM sessions WHERE sid = ?1", params![sid], |r| {
                r.get(0)
            })
            .optional()?;
        let outcome = match exists {
            None => return Ok(RevokeOutcome::NotFound),
            Some(Some(_)) => RevokeOutcome::AlreadyRevoked,
            Some(None) => {
                tx.execute(
                    "UPDATE sessions SET revoked_at = ?2, revoke_reason = ?3 WHERE sid = ?1",
                    params![sid, now, reason],
                )?;
                insert_event(&tx, RevocationKind::Session, Some(sid), None, feed_expires_at, now)?;
                RevokeOutcome::Revoked
            }
        };
        if let Some((jti, exp)) = jti {
            if exp > now {
                insert_event(&tx, RevocationKind::Jti, Some(jti), None, exp, now)?;
            }
        }
        tx.commit()?;
        Ok(outcome)
    }

    /// Revokes every live session of `subject` (in `tenant`, or in every tenant) and
    /// publishes `revoked_before` for the subject plus each revoked session.
    /// `access_ttl` bounds how long the subject entry matters; sessions are published
    /// until their expiry plus `access_ttl`. Returns how many sessions were revoked.
    pub fn revoke_subject(
        &mut self,
        subject: &str,
        tenant: Option<&str>,
        reason: &str,
        revoked_before: i64,
        access_ttl: i64,
        now: i64,
    ) -> Result<usize> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let revoked = Store::revoke_live_sessions_tx(&tx, Some(subject), tenant, reason, access_ttl, now)?;
        insert_event(
            &tx,
            RevocationKind::Subject,
            Some(subject),
            Some(revoked_before),
            revoked_before + access_ttl,
            now,
        )?;
        tx.commit()?;
        Ok(revoked)
    }

    /// Emergency: revokes every live session and publishes a global `revoked_before`.
    pub fn revoke_all(&mut self, reason: &str, revoked_before: i64, access_ttl: i64, now: i64) -> Result<usize> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let revoked = Store::revoke_live_sessions_tx(&tx, None, None, reason, access_ttl, now)?;
        insert_event(
            &tx,
            RevocationKind::Global,
            None,
            Some(revoked_before),
            revoked_before + access_ttl,
            now,
        )?;
        tx.commit()?;
        Ok(revoked)
    }

    /// Revokes the live sessions of `subject` (in `tenant`), or all of them,
    /// publishing each in the feed until its expiry plus `access_ttl`.
    fn revoke_live_sessions_tx(
        tx: &Transaction<'_>,
        subject: Option<&str>,
        tenant: Option<&str>,
        reason: &str,
        access_ttl: i64,
        now: i64,
    ) -> Result<usize> {
        let sessions = Store::live_sessions_tx(tx, subject, tenant, now)?;
        for (sid, expires_at) in &sessions {
            tx.execute(
                "UPDATE sessions SET revoked_at = ?2, revoke_reason = ?3 WHERE sid = ?1",
                params![sid, now, reason],
            )?;
            insert_event(
                tx,
                RevocationKind::Session,
                Some(sid),
                None,
                expires_at + access_ttl,
                now,
            )?;
        }
        Ok(sessions.len())
    }

    fn live_sessions_tx(
        tx: &Transaction<'_>,
        subject: Option<&str>,
        tenant: Option<&str>,
        now: i64,
    ) -> Result<Vec<(String, i64)>> {
        let mut st = tx.prepare(
            "SELECT sid, expires_at FROM sessions WHERE revoked_at IS NULL AND expires_at > ?1 \
             AND (?2 IS NULL OR subject = ?2) AND (?3 IS NULL OR tenant = ?3) ORDER BY sid",
        )?;
        let rows = st.query_map(params![now, subject, tenant], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    // ------------------------------------------------------ revocation events

    /// The highest revocation event id ever written (0 if none).
    pub fn max_event_id(&self) -> Result<i64> {
        // sqlite_sequence keeps the AUTOINCREMENT high-water mark even after pruning.
        Ok(self
            .conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'revocation_events'",
                [],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    /// Events with `after < id <= upto` still in force at `now` (`expires_at > now`), in id order.
    pub fn events_between(&self, after: i64, upto: i64, now: i64) -> Result<Vec<RevocationEvent>> {
        let mut st = self.conn.prepare(
            "SELECT id, kind, value, revoked_before, expires_at, created_at FROM revocation_events \
             WHERE id > ?1 AND id <= ?2 AND expires_at > ?3 ORDER BY id",
        )?;
        let rows = st.query_map(params![after, upto, now], event_from_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Deletes events no longer in force. Cursors stay valid: a pruned event could not matter.
    pub fn prune_events(&mut self, now: i64) -> Result<usize> {
        Ok(self
            .conn
            .execute("DELETE FROM revocation_events WHERE expires_at <= ?1", params![now])?)
    }

    /// Runs `f` in a read transaction, so several reads see one state.
    pub fn read<T>(&mut self, f: impl FnOnce(&Store) -> Result<T>) -> Result<T> {
        self.conn.execute_batch("BEGIN DEFERRED")?;
        let out = f(self);
        let end = if out.is_ok() { "COMMIT" } else { "ROLLBACK" };
        self.conn.execute_batch(end)?;
        out
    }

    // ----------------------------------------------------------- signing keys

    /// The current (unretired) signing key, the newest if several.
    pub fn current_signing_key(&self) -> Result<Option<SigningKeyRow>> {
        Ok(self
            .conn
            .query_row(
                "SELECT kid, private_key, created_at, retired_at FROM signing_keys WHERE retired_at IS NULL \
                 ORDER BY created_at DESC, rowid DESC LIMIT 1",
                [],
                |r| {
                    Ok(SigningKeyRow {
                        kid: r.get(0)?,
                        private_key: r.get(1)?,
                        created_at: r.get(2)?,
                        retired_at: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// Every key unretired or retired after `retired_after`, newest first.
    pub fn published_signing_keys(&self, retired_after: i64) -> Result<Vec<SigningKeyRow>> {
        let mut st = self.conn.prepare(
            "SELECT kid, private_key, created_at, retired_at FROM signing_keys \
             WHERE retired_at IS NULL OR retired_at > ?1 ORDER BY created_at DESC, rowid DESC",
        )?;
        let rows = st.query_map(params![retired_after], |r| {
            Ok(SigningKeyRow {
                kid: r.get(0)?,
                private_key: r.get(1)?,
                created_at: r.get(2)?,
                retired_at: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Inserts `new` as the current key. With `retire_current`, retires the previous one(s) at `now`;
    /// without it, inserts only if there is no current key (first start). Returns whether it inserted.
    pub fn install_signing_key(&mut self, new: &SigningKeyRow, retire_current: bool, now: i64) -> Result<bool> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if retire_current {
            tx.execute(
                "UPDATE signing_keys SET retired_at = ?1 WHERE retired_at IS NULL",
                params![now],
            )?;
        } else {
            let current: i64 = tx.query_row("SELECT COUNT(*) FROM signing_keys WHERE retired_at IS NULL", [], |r| {
                r.get(0)
            })?;
            if current > 0 {
                return Ok(false);
            }
        }
        tx.execute(
            "INSERT INTO signing_keys (kid, private_key, created_at, retired_at) VALUES (?1, ?2, ?3, NULL)",
            params![new.kid, new.private_key, new.created_at],
        )?;
        tx.commit()?;
        Ok(true)
    }

    // ------------------------------------------------------------------ audit

    pub fn insert_audit(&mut self, e: &NewAudit, now: i64) -> Result<()> {
        let detail = e.detail.as_ref().map(serde_json::to_string).transpose()?;
        self.conn.execute(
            "INSERT INTO audit_events (ts, actor, action, target, outcome, peer, forwarded_for, detail) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                now,
                e.actor,
                e.action,
                e.target,
                e.outcome,
                e.peer,
                e.forwarded_for,
                detail
            ],
        )?;
        Ok(())
    }

    /// The most recent `limit` audit events, newest first.
    pub fn audit_events(&self, limit: u32) -> Result<Vec<AuditEvent>> {
        let mut st = self.conn.prepare(
            "SELECT id, ts, actor, action, target, outcome, peer, forwarded_for, detail FROM audit_events \
             ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = st.query_map(params![limit], |r| {
            let detail: Option<String> = r.get(8)?;
            Ok(AuditEvent {
                id: r.get(0)?,
                ts: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                target: r.get(4)?,
                outcome: r.get(5)?,
                peer: r.get(6)?,
                forwarded_for: r.get(7)?,
                detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Counts rows of a table (tests, diagnostics). `table` must be one of the schema's tables.
    pub fn count(&self, table: &str) -> Result<i64> {
        const TABLES: &[&str] = &[
            "tenants",
            "api_keys",
            "sessions",
            "refresh_tokens",
            "revocation_events",
            "signing_keys",
            "audit_events",
        ];
        if !TABLES.contains(&table) {
            return Err(ApiError::invalid_request(format!("unknown table {table}")));
        }
        Ok(self
            .conn
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?)
    }
}

/// A comma-separated column list with each column qualified by a table alias.
fn prefixed(columns: &str, alias: &str) -> String {
    columns
        .split(", ")
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}
