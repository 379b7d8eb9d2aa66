//! Every SQL statement of the service, written once for both engines (see `db`).
//! Each function runs on the connection or transaction it is given; the caller
//! decides what goes into one transaction.

use crate::db::{Conn, Dialect, Lock, Row, Val};
use crate::error::{Error, Result};
use crate::model::{
    ApiKeyRow, AuditEvent, NewAudit, NewRevocation, RefreshRow, RevocationEvent, RevocationKind, RevokeOutcome,
    SessionRow, SigningKeyRow, Tenant,
};
use crate::vals;

pub use crate::db::SCHEMA_VERSION;

mod clients;
pub use clients::*;

fn json_list(v: &[String]) -> Result<String> {
    Ok(serde_json::to_string(v)?)
}

fn parse_list(s: &str) -> Result<Vec<String>> {
    serde_json::from_str(s).map_err(|e| Error::internal(format_args!("stored list: {e}")))
}

// ------------------------------------------------------------------ database

/// The schema version of the database.
pub fn schema_version(c: &mut dyn Conn) -> Result<i64> {
    c.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])?
        .int(0)
}

/// How many migrations were recorded (one row per applied migration).
pub fn migrations_applied(c: &mut dyn Conn) -> Result<i64> {
    c.query_one("SELECT COUNT(*) FROM schema_version", &[])?.int(0)
}

/// A random id made when the database was created; part of revocation cursors.
pub fn instance_id(c: &mut dyn Conn) -> Result<String> {
    c.query_one("SELECT value FROM meta WHERE key = 'instance_id'", &[])?
        .text(0)
}

// ------------------------------------------------------------------- tenants

const TENANT_COLUMNS: &str = "name, allowed_origins, ip_allowlist, created_at, disabled_at";

fn tenant_from_row(r: &Row, at: usize) -> Result<Tenant> {
    Ok(Tenant {
        name: r.text(at)?,
        allowed_origins: parse_list(&r.text(at + 1)?)?,
        ip_allowlist: parse_list(&r.text(at + 2)?)?,
        created_at: r.int(at + 3)?,
        disabled_at: r.opt_int(at + 4)?,
    })
}

/// Inserts a tenant; `Conflict` if the name exists.
pub fn insert_tenant(c: &mut dyn Conn, t: &Tenant) -> Result<()> {
    let n = c.execute(
        "INSERT INTO tenants (name, allowed_origins, ip_allowlist, created_at, disabled_at) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (name) DO NOTHING",
        vals![
            &t.name,
            json_list(&t.allowed_origins)?,
            json_list(&t.ip_allowlist)?,
            t.created_at,
            t.disabled_at
        ],
    )?;
    if n == 0 {
        return Err(Error::conflict(format!("tenant {:?} already exists", t.name)));
    }
    Ok(())
}

/// Replaces a tenant's lists (those given). False if there is no such tenant.
pub fn update_tenant(
    c: &mut dyn Conn,
    name: &str,
    allowed_origins: Option<&[String]>,
    ip_allowlist: Option<&[String]>,
) -> Result<bool> {
    let n = c.execute(
        "UPDATE tenants SET allowed_origins = COALESCE(?2, allowed_origins), \
         ip_allowlist = COALESCE(?3, ip_allowlist) WHERE name = ?1",
        vals![
            name,
            allowed_origins.map(json_list).transpose()?,
            ip_allowlist.map(json_list).transpose()?
        ],
    )?;
    Ok(n > 0)
}

/// Disables (`Some(now)`) or enables (`None`) a tenant. False if it already was so
/// (or does not exist).
pub fn set_tenant_disabled(c: &mut dyn Conn, name: &str, disabled_at: Option<i64>) -> Result<bool> {
    let n = match disabled_at {
        Some(t) => c.execute(
            "UPDATE tenants SET disabled_at = ?2 WHERE name = ?1 AND disabled_at IS NULL",
            vals![name, t],
        )?,
        None => c.execute(
            "UPDATE tenants SET disabled_at = NULL WHERE name = ?1 AND disabled_at IS NOT NULL",
            vals![name],
        )?,
    };
    Ok(n > 0)
}

pub fn tenant(c: &mut dyn Conn, name: &str) -> Result<Option<Tenant>> {
    c.query_opt(
        &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE name = ?1"),
        vals![name],
    )?
    .map(|r| tenant_from_row(&r, 0))
    .transpose()
}

pub fn tenants(c: &mut dyn Conn) -> Result<Vec<Tenant>> {
    c.query(&format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY name"), &[])?
        .iter()
        .map(|r| tenant_from_row(r, 0))
        .collect()
}

// ------------------------------------------------------------------ API keys

const KEY_COLUMNS: &str = "key_id, tenant, subject, key_hash, scopes, ip_allowlist, created_at, expires_at, \
                           rotated_at, rotation_deadline, replaced_by, revoked_at, roles, last_used_at, \
                           tag_secret_id";

fn key_from_row(r: &Row) -> Result<ApiKeyRow> {
    Ok(ApiKeyRow {
        key_id: r.text(0)?,
        tenant: r.text(1)?,
        subject: r.text(2)?,
        key_hash: r.text(3)?,
        scopes: parse_list(&r.text(4)?)?,
        ip_allowlist: r.opt_text(5)?.as_deref().map(parse_list).transpose()?,
        created_at: r.int(6)?,
        expires_at: r.opt_int(7)?,
        rotated_at: r.opt_int(8)?,
        rotation_deadline: r.opt_int(9)?,
        replaced_by: r.opt_text(10)?,
        revoked_at: r.opt_int(11)?,
        roles: parse_list(&r.text(12)?)?,
        last_used_at: r.opt_int(13)?,
        tag_secret_id: r.opt_text(14)?,
    })
}

pub fn insert_key(c: &mut dyn Conn, k: &ApiKeyRow) -> Result<()> {
    let ip = k.ip_allowlist.as_deref().map(json_list).transpose()?;
    c.execute(
        &format!(
            "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
        ),
        vals![
            &k.key_id,
            &k.tenant,
            &k.subject,
            &k.key_hash,
            json_list(&k.scopes)?,
            ip,
            k.created_at,
            k.expires_at,
            k.rotated_at,
            k.rotation_deadline,
            &k.replaced_by,
            k.revoked_at,
            json_list(&k.roles)?,
            k.last_used_at,
            &k.tag_secret_id
        ],
    )?;
    Ok(())
}

pub fn key_by_id(c: &mut dyn Conn, key_id: &str) -> Result<Option<ApiKeyRow>> {
    c.query_opt(
        &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = ?1"),
        vals![key_id],
    )?
    .map(|r| key_from_row(&r))
    .transpose()
}

/// The key with this hash and its tenant: the edge's lookup, one indexed read.
/// Built once rather than on every call.
pub(crate) static KEY_BY_HASH_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| key_and_tenant_sql("key_hash"));
static KEY_AND_TENANT_BY_ID_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| key_and_tenant_sql("key_id"));

pub fn key_by_hash(c: &mut dyn Conn, key_hash: &str) -> Result<Option<(ApiKeyRow, Tenant)>> {
    key_and_tenant(c, &KEY_BY_HASH_SQL, key_hash)
}

/// The key with this id and its tenant.
pub fn key_and_tenant_by_id(c: &mut dyn Conn, key_id: &str) -> Result<Option<(ApiKeyRow, Tenant)>> {
    key_and_tenant(c, &KEY_AND_TENANT_BY_ID_SQL, key_id)
}

/// `column` is `key_hash` or `key_id` (both unique and indexed).
fn key_and_tenant_sql(column: &str) -> String {
    format!(
        "SELECT {}, {} FROM api_keys k JOIN tenants t ON t.name = k.tenant WHERE k.{column} = ?1",
        prefixed(KEY_COLUMNS, "k"),
        prefixed(TENANT_COLUMNS, "t")
    )
}

fn key_and_tenant(c: &mut dyn Conn, sql: &str, value: &str) -> Result<Option<(ApiKeyRow, Tenant)>> {
    c.query_opt(sql, vals![value])?
        .map(|r| Ok((key_from_row(&r)?, tenant_from_row(&r, KEY_COLUMNS.split(", ").count())?)))
        .transpose()
}

pub fn keys_of_tenant(c: &mut dyn Conn, tenant: &str) -> Result<Vec<ApiKeyRow>> {
    c.query(
        &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant = ?1 ORDER BY created_at, key_id"),
        vals![tenant],
    )?
    .iter()
    .map(key_from_row)
    .collect()
}

/// Inserts `new` and marks `old_id` as rotated (valid until `deadline`).
/// `Conflict` if the old key was rotated or revoked meanwhile.
pub fn rotate_key(c: &mut dyn Conn, old_id: &str, new: &ApiKeyRow, deadline: i64, now: i64) -> Result<()> {
    let n = c.execute(
        "UPDATE api_keys SET rotated_at = ?2, rotation_deadline = ?3, replaced_by = ?4 \
         WHERE key_id = ?1 AND rotated_at IS NULL AND revoked_at IS NULL",
        vals![old_id, now, deadline, &new.key_id],
    )?;
    if n == 0 {
        return Err(Error::conflict(format!("key {old_id} was already rotated or revoked")));
    }
    insert_key(c, new)
}

/// Marks a key revoked. False if it was already revoked.
pub fn revoke_key(c: &mut dyn Conn, key_id: &str, now: i64) -> Result<bool> {
    let n = c.execute(
        "UPDATE api_keys SET revoked_at = ?2 WHERE key_id = ?1 AND revoked_at IS NULL",
        vals![key_id, now],
    )?;
    Ok(n > 0)
}

/// Revokes every key not yet revoked, of `tenant` or of every tenant. Returns how many.
pub fn revoke_all_keys(c: &mut dyn Conn, tenant: Option<&str>, now: i64) -> Result<u64> {
    match tenant {
        Some(t) => c.execute(
            "UPDATE api_keys SET revoked_at = ?1 WHERE revoked_at IS NULL AND tenant = ?2",
            vals![now, t],
        ),
        None => c.execute(
            "UPDATE api_keys SET revoked_at = ?1 WHERE revoked_at IS NULL",
            vals![now],
        ),
    }
}

/// Records when keys were last used: each `(key_id, at)` moves `last_used_at` forward,
/// never back (several replicas write their own batches).
pub fn record_key_use(c: &mut dyn Conn, uses: &[(String, i64)]) -> Result<()> {
    for (key_id, at) in uses {
        c.execute(
            "UPDATE api_keys SET last_used_at = ?2 WHERE key_id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2)",
            vals![key_id, *at],
        )?;
    }
    Ok(())
}

// ------------------------------------------------------------------ sessions

const SESSION_COLUMNS: &str = "sid, tenant, subject, scopes, key_id, created_at, expires_at, revoked_at, roles";

fn session_from_row(r: &Row, at: usize) -> Result<SessionRow> {
    Ok(SessionRow {
        sid: r.text(at)?,
        tenant: r.text(at + 1)?,
        subject: r.text(at + 2)?,
        scopes: parse_list(&r.text(at + 3)?)?,
        key_id: r.text(at + 4)?,
        created_at: r.int(at + 5)?,
        expires_at: r.int(at + 6)?,
        revoked_at: r.opt_int(at + 7)?,
        roles: parse_list(&r.text(at + 8)?)?,
    })
}

/// Inserts a session and its first refresh token.
pub fn insert_session(c: &mut dyn Conn, s: &SessionRow, refresh_hash: &str) -> Result<()> {
    c.execute(
        &format!("INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
        vals![
            &s.sid,
            &s.tenant,
            &s.subject,
            json_list(&s.scopes)?,
            &s.key_id,
            s.created_at,
            s.expires_at,
            s.revoked_at,
            json_list(&s.roles)?
        ],
    )?;
    c.execute(
        "INSERT INTO refresh_tokens (token_hash, sid, created_at, spent_at) VALUES (?1, ?2, ?3, NULL)",
        vals![refresh_hash, &s.sid, s.created_at],
    )?;
    Ok(())
}

pub fn session(c: &mut dyn Conn, sid: &str) -> Result<Option<SessionRow>> {
    c.query_opt(
        &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE sid = ?1"),
        vals![sid],
    )?
    .map(|r| session_from_row(&r, 0))
    .transpose()
}

/// A refresh token (by hash) and its session. In a write transaction, the token's
/// row stays locked until the transaction ends, so concurrent refreshes of one token
/// (on any replica) take turns and each sees what the previous one did.
pub fn refresh_token(c: &mut dyn Conn, token_hash: &str) -> Result<Option<(RefreshRow, SessionRow)>> {
    let sql = format!(
        "SELECT r.sid, r.created_at, r.spent_at, {} FROM refresh_tokens r JOIN sessions s ON s.sid = r.sid \
         WHERE r.token_hash = ?1{}",
        prefixed(SESSION_COLUMNS, "s"),
        c.dialect().for_update()
    );
    c.query_opt(&sql, vals![token_hash])?
        .map(|r| {
            Ok((
                RefreshRow {
                    sid: r.text(0)?,
                    created_at: r.int(1)?,
                    spent_at: r.opt_int(2)?,
                },
                session_from_row(&r, 3)?,
            ))
        })
        .transpose()
}

/// Spends `old_hash` and stores `new_hash` for the same session. False (and
/// nothing changed) if the old token was spent meanwhile or its session revoked.
pub fn rotate_refresh(c: &mut dyn Conn, old_hash: &str, new_hash: &str, sid: &str, now: i64) -> Result<bool> {
    let n = c.execute(
        "UPDATE refresh_tokens SET spent_at = ?2 WHERE token_hash = ?1 AND spent_at IS NULL \
         AND sid IN (SELECT sid FROM sessions WHERE sid = ?3 AND revoked_at IS NULL AND expires_at > ?2)",
        vals![old_hash, now, sid],
    )?;
    if n == 0 {
        return Ok(false);
    }
    c.execute(
        "INSERT INTO refresh_tokens (token_hash, sid, created_at, spent_at) VALUES (?1, ?2, ?3, NULL)",
        vals![new_hash, sid, now],
    )?;
    Ok(true)
}

/// Revokes a session and publishes it in the revocation feed until `feed_expires_at`
/// (nothing is published when that has passed: no token of the session is left); with
/// `jti`, also that access token, until the time given with it.
pub fn revoke_session(
    c: &mut dyn Conn,
    sid: &str,
    reason: &str,
    jti: Option<(&str, i64)>,
    feed_expires_at: i64,
    now: i64,
) -> Result<RevokeOutcome> {
    let n = c.execute(
        "UPDATE sessions SET revoked_at = ?2, revoke_reason = ?3 WHERE sid = ?1 AND revoked_at IS NULL",
        vals![sid, now, reason],
    )?;
    let mut events = Vec::new();
    let outcome = if n > 0 {
        if feed_expires_at > now {
            events.push(NewRevocation {
                kind: RevocationKind::Session,
                value: Some(sid.to_owned()),
                tenant: None,
                revoked_before: None,
                expires_at: feed_expires_at,
                key_hash: None,
            });
        }
        RevokeOutcome::Revoked
    } else if session(c, sid)?.is_some() {
        RevokeOutcome::AlreadyRevoked
    } else {
        return Ok(RevokeOutcome::NotFound);
    };
    if let Some((jti, until)) = jti {
        if until > now {
            events.push(NewRevocation {
                kind: RevocationKind::Jti,
                value: Some(jti.to_owned()),
                tenant: None,
                revoked_before: None,
                expires_at: until,
                key_hash: None,
            });
        }
    }
    insert_events(c, &events, now)?;
    Ok(outcome)
}

/// Revokes the live sessions of `subject` (in `tenant`), or all of them, and publishes
/// `cut_off` (a subject, tenant or global cut-off), which covers every access token
/// of those sessions: their ids are not published one by one (the feed stays small
/// whatever their number). Returns how many sessions were revoked.
pub fn revoke_live_sessions(
    c: &mut dyn Conn,
    subject: Option<&str>,
    tenant: Option<&str>,
    reason: &str,
    cut_off: NewRevocation,
    now: i64,
) -> Result<u64> {
    // One statement per shape, so that the subject's (or tenant's) index is used.
    let mut sql = "UPDATE sessions SET revoked_at = ?1, revoke_reason = ?2 \
                   WHERE revoked_at IS NULL AND expires_at > ?1"
        .to_owned();
    let mut params = vals![now, reason].to_vec();
    for (column, value) in [("subject", subject), ("tenant", tenant)] {
        if let Some(v) = value {
            params.push(v.into());
            sql.push_str(&format!(" AND {column} = ?{}", params.len()));
        }
    }
    let n = c.execute(&sql, &params)?;
    insert_events(c, &[cut_off], now)?;
    Ok(n)
}

/// Deletes at most `batch` sessions that ended before `before`, with their refresh
/// tokens. Returns how many sessions were deleted; call again while it is `batch`.
pub fn prune_sessions(c: &mut dyn Conn, before: i64, batch: u32) -> Result<u64> {
    // The same sessions in both statements: a total order, in one transaction.
    const OLDEST: &str = "SELECT sid FROM sessions WHERE expires_at < ?1 ORDER BY expires_at, sid LIMIT ?2";
    c.execute(
        &format!("DELETE FROM refresh_tokens WHERE sid IN ({OLDEST})"),
        vals![before, i64::from(batch)],
    )?;
    c.execute(
        &format!("DELETE FROM sessions WHERE sid IN ({OLDEST})"),
        vals![before, i64::from(batch)],
    )
}

// ------------------------------------------------------- revocation events

/// Publishes `events`, with ids taken from the feed's head in the same transaction.
/// The head's row stays locked until the transaction ends, so event ids become
/// visible in the order they were given: a reader that sees the head at `n` sees
/// every event up to `n` that will ever exist (see `revocation`).
pub fn insert_events(c: &mut dyn Conn, events: &[NewRevocation], now: i64) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let count = i64::try_from(events.len()).map_err(Error::internal)?;
    let last = c
        .query_one(
            "UPDATE feed_head SET last_id = last_id + ?1 WHERE id = 1 RETURNING last_id",
            vals![count],
        )?
        .int(0)?;
    for (id, e) in (last - count + 1..).zip(events) {
        c.execute(
            "INSERT INTO revocation_events (id, kind, value, tenant, revoked_before, expires_at, created_at, key_hash) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            vals![
                id,
                e.kind.as_str(),
                &e.value,
                &e.tenant,
                e.revoked_before,
                e.expires_at,
                now,
                &e.key_hash
            ],
        )?;
    }
    Ok(())
}

/// The highest revocation event id ever given (0 if none).
pub fn feed_head(c: &mut dyn Conn) -> Result<i64> {
    c.query_one("SELECT last_id FROM feed_head WHERE id = 1", &[])?.int(0)
}

fn event_from_row(r: &Row) -> Result<RevocationEvent> {
    let kind = r.text(1)?;
    Ok(RevocationEvent {
        id: r.int(0)?,
        kind: RevocationKind::parse(&kind)
            .ok_or_else(|| Error::internal(format_args!("unknown revocation kind {kind:?}")))?,
        value: r.opt_text(2)?,
        tenant: r.opt_text(3)?,
        revoked_before: r.opt_int(4)?,
        expires_at: r.int(5)?,
        created_at: r.int(6)?,
        key_hash: r.opt_text(7)?,
    })
}

/// Events with `after < id <= upto` still in force at `now` (`expires_at > now`), in id order.
pub fn events_between(c: &mut dyn Conn, after: i64, upto: i64, now: i64) -> Result<Vec<RevocationEvent>> {
    c.query(
        "SELECT id, kind, value, tenant, revoked_before, expires_at, created_at, key_hash FROM revocation_events \
         WHERE id > ?1 AND id <= ?2 AND expires_at > ?3 ORDER BY id",
        vals![after, upto, now],
    )?
    .iter()
    .map(event_from_row)
    .collect()
}

/// Deletes events no longer in force. Cursors stay valid: a pruned event could not matter.
pub fn prune_events(c: &mut dyn Conn, now: i64) -> Result<u64> {
    c.execute("DELETE FROM revocation_events WHERE expires_at <= ?1", vals![now])
}

// -------------------------------------------------------------- signing keys

const SIGNING_COLUMNS: &str = "kid, private_key, created_at, retired_at, kek_id";

fn signing_key_from_row(r: &Row) -> Result<SigningKeyRow> {
    Ok(SigningKeyRow {
        kid: r.text(0)?,
        private_key: r.blob(1)?,
        created_at: r.int(2)?,
        retired_at: r.opt_int(3)?,
        kek_id: r.opt_text(4)?,
    })
}

/// The current (unretired) signing key.
pub fn current_signing_key(c: &mut dyn Conn) -> Result<Option<SigningKeyRow>> {
    c.query_opt(
        &format!(
            "SELECT {SIGNING_COLUMNS} FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC, kid LIMIT 1"
        ),
        &[],
    )?
    .map(|r| signing_key_from_row(&r))
    .transpose()
}

/// The current key and every key retired after `retired_after`: current first, then newest retired first.
pub fn published_signing_keys(c: &mut dyn Conn, retired_after: i64) -> Result<Vec<SigningKeyRow>> {
    c.query(
        &format!(
            "SELECT {SIGNING_COLUMNS} FROM signing_keys WHERE retired_at IS NULL OR retired_at > ?1 \
             ORDER BY (retired_at IS NULL) DESC, retired_at DESC, created_at DESC, kid"
        ),
        vals![retired_after],
    )?
    .iter()
    .map(signing_key_from_row)
    .collect()
}

/// Inserts `new` as the current key. With `retire_current`, retires the previous one
/// at `now`; without it, inserts only if there is no current key (first start; two
/// replicas starting at once make one key). Returns whether it inserted.
pub fn install_signing_key(c: &mut dyn Conn, new: &SigningKeyRow, retire_current: bool, now: i64) -> Result<bool> {
    c.lock(Lock::SigningKey)?;
    if retire_current {
        c.execute(
            "UPDATE signing_keys SET retired_at = ?1 WHERE retired_at IS NULL",
            vals![now],
        )?;
    } else if current_signing_key(c)?.is_some() {
        return Ok(false);
    }
    c.execute(
        "INSERT INTO signing_keys (kid, private_key, created_at, retired_at, kek_id) VALUES (?1, ?2, ?3, NULL, ?4)",
        vals![&new.kid, new.private_key.as_slice(), new.created_at, &new.kek_id],
    )?;
    Ok(true)
}

/// Every signing key, retired ones included (for sealing them all).
pub fn all_signing_keys(c: &mut dyn Conn) -> Result<Vec<SigningKeyRow>> {
    c.query(
        &format!("SELECT {SIGNING_COLUMNS} FROM signing_keys ORDER BY created_at, kid"),
        &[],
    )?
    .iter()
    .map(signing_key_from_row)
    .collect()
}

/// Replaces a key's stored private key (sealed again, or sealed for the first time).
pub fn reseal_signing_key(c: &mut dyn Conn, kid: &str, private_key: &[u8], kek_id: Option<&str>) -> Result<()> {
    c.execute(
        "UPDATE signing_keys SET private_key = ?2, kek_id = ?3 WHERE kid = ?1",
        vals![kid, private_key, kek_id],
    )?;
    Ok(())
}

// --------------------------------------------------------------------- audit

pub fn insert_audit(c: &mut dyn Conn, e: &NewAudit) -> Result<()> {
    let detail = e.detail.as_ref().map(serde_json::to_string).transpose()?;
    c.execute(
        "INSERT INTO audit_events (ts, actor, action, target, outcome, peer, forwarded_for, detail, tenant) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        vals![
            e.ts,
            &e.actor,
            &e.action,
            &e.target,
            &e.outcome,
            &e.peer,
            &e.forwarded_for,
            detail,
            &e.tenant
        ],
    )?;
    Ok(())
}

/// Declares, first thing in a write transaction, that it may write audit events. On
/// PostgreSQL it takes `ROW EXCLUSIVE` on `audit_events` (writers do not conflict with
/// one another) before the transaction has an id, so that [`audit_horizon`] sees every
/// transaction that may still add audit rows. Every transaction that writes audit rows
/// calls it (the service's writes all do). SQLite has one writer: nothing to do.
pub fn lock_for_audit(c: &mut dyn Conn) -> Result<()> {
    match c.dialect() {
        Dialect::Sqlite => Ok(()),
        Dialect::Postgres => c.batch("LOCK TABLE audit_events IN ROW EXCLUSIVE MODE"),
    }
}

/// The transaction id below which the audit log is final, read before the page (in a
/// statement of its own): no transaction with a lower id can still add a row. `None` on
/// SQLite (one writer: every committed row is final, ids in commit order).
///
/// On PostgreSQL ids are handed out before commit, so a writer that took a lower id may
/// commit after a later one. The horizon is the lowest id among the transactions that
/// hold [`lock_for_audit`]'s lock now, and at most the next id to be handed out (a
/// transaction that has none yet will get a higher one). Other transactions on the
/// server (another schema, another database) do not hold it back.
pub fn audit_horizon(c: &mut dyn Conn) -> Result<Option<i64>> {
    if c.dialect() == Dialect::Sqlite {
        return Ok(None);
    }
    // Row 0: the next transaction id (64 bits); then the 32-bit ids of the holders.
    let rows = c.query(
        "SELECT 0, txid_snapshot_xmax(txid_current_snapshot()) \
         UNION ALL \
         SELECT 1, t.transactionid::text::bigint FROM pg_locks r JOIN pg_locks t \
           ON t.virtualtransaction = r.virtualtransaction AND t.locktype = 'transactionid' \
           AND t.mode = 'ExclusiveLock' AND t.granted \
         WHERE r.locktype = 'relation' AND r.relation = 'audit_events'::regclass \
           AND r.mode = 'RowExclusiveLock' AND r.granted",
        &[],
    )?;
    let mut next = None;
    let mut holders = Vec::new();
    for r in &rows {
        match r.int(0)? {
            0 => next = Some(r.int(1)?),
            _ => holders.push(r.int(1)?),
        }
    }
    let next = next.ok_or_else(|| Error::internal("no transaction horizon"))?;
    Ok(Some(
        holders.into_iter().map(|x| widen_xid(x, next)).fold(next, i64::min),
    ))
}

/// The 64-bit transaction id whose low 32 bits are `x32`, just below `next` (ids in use
/// are within 2^31 of the next one).
fn widen_xid(x32: i64, next: i64) -> i64 {
    let candidate = (next & !0xffff_ffff) | (x32 & 0xffff_ffff);
    if candidate > next {
        candidate - (1 << 32)
    } else {
        candidate
    }
}

/// Which audit events to list (all conditions together).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// `ts >= since`.
    pub since: Option<i64>,
    /// `ts < until`.
    pub until: Option<i64>,
    pub tenant: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub actor: Option<String>,
}

/// The direction of a page, from a position `(tx, id)` in the audit's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditPage {
    /// Newest first, before the position (from the newest without one).
    Before(Option<(i64, i64)>),
    /// Oldest first, after the position: for following the log.
    After((i64, i64)),
}

/// A page of at most `limit` audit events matching `filter`, in the audit's order
/// `(tx, id)`, among the rows below `horizon` ([`audit_horizon`], read in an earlier
/// statement): a row committed after a page was read always sorts after every row that
/// page could have shown, so following `After` cursors never skips one.
pub fn audit_page(
    c: &mut dyn Conn,
    filter: &AuditFilter,
    page: AuditPage,
    limit: u32,
    horizon: Option<i64>,
) -> Result<Vec<AuditEvent>> {
    let mut sql = "SELECT id, ts, actor, action, target, outcome, peer, forwarded_for, detail, tenant, tx \
                   FROM audit_events WHERE 1 = 1"
        .to_owned();
    let mut params: Vec<Val> = Vec::new();
    let f = filter;
    for (cond, v) in [
        ("tx <", horizon.map(Val::Int)),
        ("ts >=", f.since.map(Val::Int)),
        ("ts <", f.until.map(Val::Int)),
        ("tenant =", f.tenant.clone().map(Val::Text)),
        ("action =", f.action.clone().map(Val::Text)),
        ("outcome =", f.outcome.clone().map(Val::Text)),
        ("actor =", f.actor.clone().map(Val::Text)),
    ] {
        if let Some(v) = v {
            params.push(v);
            sql.push_str(&format!(" AND {cond} ?{}", params.len()));
        }
    }
    let (position, comparison, order) = match page {
        AuditPage::Before(p) => (p, "<", "DESC"),
        AuditPage::After(p) => (Some(p), ">", "ASC"),
    };
    if let Some((tx, id)) = position {
        params.push(Val::Int(tx));
        params.push(Val::Int(id));
        let n = params.len();
        sql.push_str(&format!(" AND (tx, id) {comparison} (?{}, ?{n})", n - 1));
    }
    params.push(Val::Int(i64::from(limit)));
    sql.push_str(&format!(" ORDER BY tx {order}, id {order} LIMIT ?{}", params.len()));
    c.query(&sql, &params)?
        .iter()
        .map(|r| {
            Ok(AuditEvent {
                id: r.int(0)?,
                ts: r.int(1)?,
                actor: r.text(2)?,
                action: r.text(3)?,
                target: r.opt_text(4)?,
                outcome: r.text(5)?,
                peer: r.opt_text(6)?,
                forwarded_for: r.opt_text(7)?,
                detail: r.opt_text(8)?.and_then(|d| serde_json::from_str(&d).ok()),
                tenant: r.opt_text(9)?,
                tx: r.int(10)?,
            })
        })
        .collect()
}

/// The most recent `limit` audit events, newest first.
pub fn audit_events(c: &mut dyn Conn, limit: u32) -> Result<Vec<AuditEvent>> {
    let horizon = audit_horizon(c)?;
    audit_page(c, &AuditFilter::default(), AuditPage::Before(None), limit, horizon)
}

/// Deletes at most `batch` audit events older than `before` (by `ts`), or beyond the
/// newest `keep` (by id). Returns how many were deleted; call again while it is `batch`.
pub fn prune_audit(c: &mut dyn Conn, before: i64, keep: u64, batch: u32) -> Result<u64> {
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    // The id of the newest event beyond the newest `keep`, if there are that many.
    let cutoff = c
        .query_opt(
            "SELECT id FROM audit_events ORDER BY id DESC LIMIT 1 OFFSET ?1",
            vals![keep],
        )?
        .map(|r| r.int(0))
        .transpose()?
        .unwrap_or(0);
    c.execute(
        "DELETE FROM audit_events WHERE id IN \
         (SELECT id FROM audit_events WHERE ts < ?1 OR id <= ?2 ORDER BY id LIMIT ?3)",
        vals![before, cutoff, i64::from(batch)],
    )
}

/// Counts rows of a table (tests, diagnostics). `table` must be one of the schema's tables.
pub fn count(c: &mut dyn Conn, table: &str) -> Result<i64> {
    const TABLES: &[&str] = &[
        "tenants",
        "api_keys",
        "sessions",
        "refresh_tokens",
        "revocation_events",
        "signing_keys",
        "audit_events",
        "machine_clients",
    ];
    if !TABLES.contains(&table) {
        return Err(Error::invalid_request(format!("unknown table {table}")));
    }
    c.query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])?.int(0)
}

/// A comma-separated column list with each column qualified by a table alias.
fn prefixed(columns: &str, alias: &str) -> String {
    columns
        .split(", ")
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::widen_xid;

    #[test]
    fn a_32_bit_transaction_id_is_read_in_the_epoch_of_the_next_one() {
        let e = 7_i64 << 32;
        assert_eq!(widen_xid(100, e + 200), e + 100);
        assert_eq!(widen_xid(200, e + 200), e + 200);
        // just before a wrap: the holder is in the previous epoch
        assert_eq!(widen_xid(0xffff_fff0, e + 5), e - 16);
        assert_eq!(widen_xid(0, 1000), 0);
    }
}
