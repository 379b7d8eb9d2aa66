//! The schema and its migrations, one list per engine with the same versions.
//!
//! The version is kept in `schema_version`. Each migration runs once, in the
//! transaction that records it, under the migrations lock: opening a database
//! again, or several replicas opening it at once, applies each migration exactly
//! once. Never edit a released migration: append a new one to both lists.

use super::{Conn, Dialect, Lock};
use crate::error::{Error, Result};
use crate::vals;

const SQLITE: &[&str] = &[
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
    // 2: the feed's head (event ids are given from it, in commit order), and indexes
    // for retention and pruning.
    r#"
    CREATE TABLE feed_head (
        id      INTEGER PRIMARY KEY CHECK (id = 1),
        last_id INTEGER NOT NULL
    );
    INSERT INTO feed_head (id, last_id)
        SELECT 1, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'revocation_events'), 0);
    CREATE INDEX audit_events_ts ON audit_events(ts);
    CREATE INDEX revocation_events_expires ON revocation_events(expires_at);
    "#,
    // 3: tenant-scoped revocations: a tenant on each event, and the 'tenant' kind (a
    // disabled tenant's cut-off). SQLite cannot change a CHECK constraint: the table
    // is rebuilt (event ids are kept: they come from feed_head). Tenants can be disabled.
    // Roles: those a key may grant, and those of a session. When a key was last used.
    // The audit's tenant, and an order that paging can rely on. Sealed signing keys.
    r#"
    CREATE TABLE revocation_events_3 (
        id             INTEGER PRIMARY KEY,
        kind           TEXT NOT NULL CHECK (kind IN ('jti', 'session', 'subject', 'global', 'tenant')),
        value          TEXT,
        tenant         TEXT,              -- NULL: every tenant (an operator's cut-off)
        revoked_before INTEGER,
        expires_at     INTEGER NOT NULL,
        created_at     INTEGER NOT NULL
    );
    INSERT INTO revocation_events_3 (id, kind, value, tenant, revoked_before, expires_at, created_at)
        SELECT id, kind, value, NULL, revoked_before, expires_at, created_at FROM revocation_events;
    DROP TABLE revocation_events;
    ALTER TABLE revocation_events_3 RENAME TO revocation_events;
    CREATE INDEX revocation_events_expires ON revocation_events(expires_at);
    ALTER TABLE tenants ADD COLUMN disabled_at INTEGER;  -- NULL: enabled
    ALTER TABLE api_keys ADD COLUMN roles TEXT NOT NULL DEFAULT '[]';  -- JSON array: the roles it may grant
    ALTER TABLE sessions ADD COLUMN roles TEXT NOT NULL DEFAULT '[]';  -- JSON array: the session's roles
    ALTER TABLE api_keys ADD COLUMN last_used_at INTEGER;  -- coarse: written in batches
    ALTER TABLE audit_events ADD COLUMN tenant TEXT;
    -- The audit's order: (tx, id). SQLite has one writer, so ids are in commit order: tx 0.
    ALTER TABLE audit_events ADD COLUMN tx INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX audit_events_order ON audit_events(tx, id);
    CREATE INDEX audit_events_tenant ON audit_events(tenant, tx, id);
    CREATE INDEX audit_events_action ON audit_events(action, tx, id);
    ALTER TABLE signing_keys ADD COLUMN kek_id TEXT;  -- NULL: private_key in clear; else sealed with that KEK
    "#,
    // 4: API-key revocations in the feed (contract 1.3): a key revoked one by one
    // ('key': value is its key_id, key_hash its hash), a tenant's key cut-off
    // ('key_tenant') and the global one ('key_global'). The table is rebuilt for the
    // CHECK constraint, as in 3.
    r#"
    CREATE TABLE revocation_events_4 (
        id             INTEGER PRIMARY KEY,
        kind           TEXT NOT NULL CHECK (kind IN ('jti', 'session', 'subject', 'global', 'tenant',
                                                     'key', 'key_tenant', 'key_global')),
        value          TEXT,
        tenant         TEXT,
        revoked_before INTEGER,
        expires_at     INTEGER NOT NULL,
        created_at     INTEGER NOT NULL,
        key_hash       TEXT               -- 'key' events only
    );
    INSERT INTO revocation_events_4 (id, kind, value, tenant, revoked_before, expires_at, created_at)
        SELECT id, kind, value, tenant, revoked_before, expires_at, created_at FROM revocation_events;
    DROP TABLE revocation_events;
    ALTER TABLE revocation_events_4 RENAME TO revocation_events;
    CREATE INDEX revocation_events_expires ON revocation_events(expires_at);
    "#,
    // 5: machine clients (the client-credentials grant, `clients`). Only SHA-256s of
    // their secrets are stored; during a rotation the previous secret's hash stays valid
    // until its deadline.
    r#"
    CREATE TABLE machine_clients (
        client_id                TEXT PRIMARY KEY,
        tenant                   TEXT NOT NULL REFERENCES tenants(name),
        secret_hash              TEXT NOT NULL,   -- SHA-256 of the secret; the secret is never stored
        previous_secret_hash     TEXT,            -- the rotated-out secret's, valid until the deadline
        previous_secret_deadline INTEGER,
        audiences                TEXT NOT NULL,   -- JSON array
        scopes                   TEXT NOT NULL,   -- JSON array
        ip_allowlist             TEXT,            -- JSON array, NULL = the tenant's
        created_at               INTEGER NOT NULL,
        rotated_at               INTEGER,
        disabled_at              INTEGER          -- NULL: enabled
    );
    CREATE INDEX machine_clients_tenant ON machine_clients(tenant);
    "#,
    // 6: key tags (contract 1.4): the id of the key-tag secret that tagged a key;
    // NULL for a key minted without one.
    r#"
    ALTER TABLE api_keys ADD COLUMN tag_secret_id TEXT;
    "#,
    // 7: a machine client's access-token lifetime (contract 1.6); existing clients keep
    // the 900 s they had. The longest any client has had (never lowered): how long the
    // cut-offs that can cover client tokens, and retired signing keys, must last.
    r#"
    ALTER TABLE machine_clients ADD COLUMN token_lifetime_s INTEGER NOT NULL DEFAULT 900;
    INSERT INTO meta (key, value) VALUES ('longest_client_token_lifetime_s', '900')
        ON CONFLICT (key) DO NOTHING;
    "#,
];

const POSTGRES: &[&str] = &[
    // 1: the initial schema (as SQLite's 1).
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE tenants (
        name            TEXT PRIMARY KEY,
        allowed_origins TEXT NOT NULL,
        ip_allowlist    TEXT NOT NULL,
        created_at      BIGINT NOT NULL
    );
    CREATE TABLE api_keys (
        key_id            TEXT PRIMARY KEY,
        tenant            TEXT NOT NULL REFERENCES tenants(name),
        subject           TEXT NOT NULL,
        key_hash          TEXT NOT NULL UNIQUE,
        scopes            TEXT NOT NULL,
        ip_allowlist      TEXT,
        created_at        BIGINT NOT NULL,
        expires_at        BIGINT,
        rotated_at        BIGINT,
        rotation_deadline BIGINT,
        replaced_by       TEXT,
        revoked_at        BIGINT
    );
    CREATE INDEX api_keys_tenant ON api_keys(tenant);
    CREATE TABLE sessions (
        sid           TEXT PRIMARY KEY,
        tenant        TEXT NOT NULL,
        subject       TEXT NOT NULL,
        scopes        TEXT NOT NULL,
        key_id        TEXT NOT NULL,
        created_at    BIGINT NOT NULL,
        expires_at    BIGINT NOT NULL,
        revoked_at    BIGINT,
        revoke_reason TEXT
    );
    CREATE INDEX sessions_subject ON sessions(subject);
    CREATE TABLE refresh_tokens (
        token_hash TEXT PRIMARY KEY,
        sid        TEXT NOT NULL REFERENCES sessions(sid),
        created_at BIGINT NOT NULL,
        spent_at   BIGINT
    );
    CREATE INDEX refresh_tokens_sid ON refresh_tokens(sid);
    CREATE TABLE revocation_events (
        id             BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        kind           TEXT NOT NULL CHECK (kind IN ('jti', 'session', 'subject', 'global')),
        value          TEXT,
        revoked_before BIGINT,
        expires_at     BIGINT NOT NULL,
        created_at     BIGINT NOT NULL
    );
    CREATE TABLE signing_keys (
        kid         TEXT PRIMARY KEY,
        private_key BYTEA NOT NULL,
        created_at  BIGINT NOT NULL,
        retired_at  BIGINT
    );
    CREATE TABLE audit_events (
        id            BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        ts            BIGINT NOT NULL,
        actor         TEXT NOT NULL,
        action        TEXT NOT NULL,
        target        TEXT,
        outcome       TEXT NOT NULL,
        peer          TEXT,
        forwarded_for TEXT,
        detail        TEXT
    );
    "#,
    // 2: as SQLite's 2.
    r#"
    CREATE TABLE feed_head (
        id      INTEGER PRIMARY KEY CHECK (id = 1),
        last_id BIGINT NOT NULL
    );
    INSERT INTO feed_head (id, last_id) SELECT 1, COALESCE(MAX(id), 0) FROM revocation_events;
    CREATE INDEX audit_events_ts ON audit_events(ts);
    CREATE INDEX revocation_events_expires ON revocation_events(expires_at);
    "#,
    // 3: as SQLite's 3.
    r#"
    ALTER TABLE revocation_events ADD COLUMN tenant TEXT;
    ALTER TABLE revocation_events DROP CONSTRAINT revocation_events_kind_check;
    ALTER TABLE revocation_events ADD CONSTRAINT revocation_events_kind_check
        CHECK (kind IN ('jti', 'session', 'subject', 'global', 'tenant'));
    ALTER TABLE tenants ADD COLUMN disabled_at BIGINT;
    ALTER TABLE api_keys ADD COLUMN roles TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE sessions ADD COLUMN roles TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;
    ALTER TABLE audit_events ADD COLUMN tenant TEXT;
    -- The writing transaction's id: ids are not in commit order across transactions;
    -- store::audit_horizon says up to which transaction the log is final.
    ALTER TABLE audit_events ADD COLUMN tx BIGINT NOT NULL DEFAULT txid_current();
    CREATE INDEX audit_events_order ON audit_events(tx, id);
    CREATE INDEX audit_events_tenant ON audit_events(tenant, tx, id);
    CREATE INDEX audit_events_action ON audit_events(action, tx, id);
    ALTER TABLE signing_keys ADD COLUMN kek_id TEXT;
    "#,
    // 4: as SQLite's 4.
    r#"
    ALTER TABLE revocation_events ADD COLUMN key_hash TEXT;
    ALTER TABLE revocation_events DROP CONSTRAINT revocation_events_kind_check;
    ALTER TABLE revocation_events ADD CONSTRAINT revocation_events_kind_check
        CHECK (kind IN ('jti', 'session', 'subject', 'global', 'tenant', 'key', 'key_tenant', 'key_global'));
    "#,
    // 5: as SQLite's 5.
    r#"
    CREATE TABLE machine_clients (
        client_id                TEXT PRIMARY KEY,
        tenant                   TEXT NOT NULL REFERENCES tenants(name),
        secret_hash              TEXT NOT NULL,
        previous_secret_hash     TEXT,
        previous_secret_deadline BIGINT,
        audiences                TEXT NOT NULL,
        scopes                   TEXT NOT NULL,
        ip_allowlist             TEXT,
        created_at               BIGINT NOT NULL,
        rotated_at               BIGINT,
        disabled_at              BIGINT
    );
    CREATE INDEX machine_clients_tenant ON machine_clients(tenant);
    "#,
    // 6: as SQLite's 6.
    r#"
    ALTER TABLE api_keys ADD COLUMN tag_secret_id TEXT;
    "#,
    // 7: as SQLite's 7.
    r#"
    ALTER TABLE machine_clients ADD COLUMN token_lifetime_s BIGINT NOT NULL DEFAULT 900;
    INSERT INTO meta (key, value) VALUES ('longest_client_token_lifetime_s', '900')
        ON CONFLICT (key) DO NOTHING;
    "#,
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = SQLITE.len() as i64;

const _: () = assert!(SQLITE.len() == POSTGRES.len(), "both engines have the same versions");

/// Applies every migration not yet applied, and gives a new database its instance id. Idempotent.
pub fn migrate(c: &mut dyn Conn) -> Result<()> {
    c.lock(Lock::Migrations)?;
    c.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
        &[],
    )?;
    let current = c
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])?
        .int(0)?;
    if current > SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    let migrations = match c.dialect() {
        Dialect::Sqlite => SQLITE,
        Dialect::Postgres => POSTGRES,
    };
    for (i, sql) in migrations
        .iter()
        .enumerate()
        .skip(usize::try_from(current).unwrap_or(0))
    {
        let version = i as i64 + 1;
        c.batch(sql)?;
        c.execute("INSERT INTO schema_version (version) VALUES (?1)", vals![version])?;
        tracing::info!(version, "schema migrated");
    }
    let instance = format!("i{}", crate::ids::base32(&crate::ids::random_bytes::<10>()?));
    c.execute(
        "INSERT INTO meta (key, value) VALUES ('instance_id', ?1) ON CONFLICT (key) DO NOTHING",
        vals![instance],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::sqlite::SqliteConn;
    use super::*;
    use crate::store;

    /// A version-6 database's machine clients keep the 900 s token lifetime they had.
    #[test]
    fn version_7_gives_existing_clients_the_900_s_they_had() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        for sql in &SQLITE[..6] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (6); \
             INSERT INTO tenants (name, allowed_origins, ip_allowlist, created_at) VALUES ('acme', '[]', '[]', 1); \
             INSERT INTO machine_clients (client_id, tenant, secret_hash, audiences, scopes, created_at) \
                 VALUES ('mc_aaaaaaaaaaaaaaaaaaaaaaaaaa', 'acme', 'h', '[\"api\"]', '[]', 1);",
        )
        .unwrap();
        let c = &mut SqliteConn(&conn);
        migrate(c).unwrap();
        let client = store::client(c, "mc_aaaaaaaaaaaaaaaaaaaaaaaaaa").unwrap().unwrap();
        assert_eq!(client.token_lifetime_s, 900);
        assert_eq!(store::longest_token_lifetime(c, true).unwrap(), 900);
        assert_eq!(store::schema_version(c).unwrap(), SCHEMA_VERSION);
    }

    /// A database made by a binary that knew version 1 only (events numbered by
    /// AUTOINCREMENT, some pruned): version 2 starts the feed's head at the highest
    /// number ever given, so the cursors the edges hold stay valid.
    #[test]
    fn version_2_keeps_the_cursors_of_a_version_1_database() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(SQLITE[0]).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (1); \
             INSERT INTO meta VALUES ('instance_id', 'iold'); \
             INSERT INTO revocation_events (kind, value, expires_at, created_at) VALUES ('jti', 'a', 10, 1), ('jti', 'b', 10, 1); \
             DELETE FROM revocation_events WHERE value = 'b';",
        )
        .unwrap();
        let c = &mut SqliteConn(&conn);
        migrate(c).unwrap();
        assert_eq!(store::schema_version(c).unwrap(), SCHEMA_VERSION);
        assert_eq!(store::instance_id(c).unwrap(), "iold", "the instance id is kept");
        assert_eq!(
            store::feed_head(c).unwrap(),
            2,
            "the highest number ever given, pruned or not"
        );
        let e = crate::model::NewRevocation {
            kind: crate::model::RevocationKind::Jti,
            value: Some("c".into()),
            tenant: None,
            revoked_before: None,
            expires_at: 10,
            key_hash: None,
        };
        store::insert_events(c, &[e], 1).unwrap();
        let head = store::feed_head(c).unwrap();
        let kept = store::events_between(c, 0, 2, 0).unwrap();
        assert_eq!(kept.len(), 1, "version 3 rebuilt the events table with its rows");
        assert_eq!(
            (kept[0].id, kept[0].value.as_deref(), kept[0].tenant.as_deref()),
            (1, Some("a"), None)
        );
        let after = store::events_between(c, 2, head, 0).unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!((after[0].id, after[0].value.as_deref()), (3, Some("c")));
        migrate(c).unwrap();
        assert_eq!(store::migrations_applied(c).unwrap(), SCHEMA_VERSION, "idempotent");
    }
}
