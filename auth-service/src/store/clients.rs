//! The SQL of machine clients (`crate::clients`), for both engines.

use super::{json_list, parse_list, prefixed, tenant_from_row, TENANT_COLUMNS};
use crate::clients::ClientRow;
use crate::db::{Conn, Row};
use crate::error::{Error, Result};
use crate::model::Tenant;
use crate::vals;

const CLIENT_COLUMNS: &str = "client_id, tenant, secret_hash, previous_secret_hash, previous_secret_deadline, \
                              audiences, scopes, ip_allowlist, created_at, rotated_at, disabled_at, \
                              token_lifetime_s";

fn client_from_row(r: &Row) -> Result<ClientRow> {
    Ok(ClientRow {
        client_id: r.text(0)?,
        tenant: r.text(1)?,
        secret_hash: r.text(2)?,
        previous_secret_hash: r.opt_text(3)?,
        previous_secret_deadline: r.opt_int(4)?,
        audiences: parse_list(&r.text(5)?)?,
        scopes: parse_list(&r.text(6)?)?,
        ip_allowlist: r.opt_text(7)?.as_deref().map(parse_list).transpose()?,
        created_at: r.int(8)?,
        rotated_at: r.opt_int(9)?,
        disabled_at: r.opt_int(10)?,
        token_lifetime_s: r.int(11)?,
    })
}

pub fn insert_client(c: &mut dyn Conn, k: &ClientRow) -> Result<()> {
    let ip = k.ip_allowlist.as_deref().map(json_list).transpose()?;
    c.execute(
        &format!(
            "INSERT INTO machine_clients ({CLIENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        ),
        vals![
            &k.client_id,
            &k.tenant,
            &k.secret_hash,
            &k.previous_secret_hash,
            k.previous_secret_deadline,
            json_list(&k.audiences)?,
            json_list(&k.scopes)?,
            ip,
            k.created_at,
            k.rotated_at,
            k.disabled_at,
            k.token_lifetime_s
        ],
    )?;
    Ok(())
}

pub fn client(c: &mut dyn Conn, client_id: &str) -> Result<Option<ClientRow>> {
    c.query_opt(
        &format!("SELECT {CLIENT_COLUMNS} FROM machine_clients WHERE client_id = ?1"),
        vals![client_id],
    )?
    .map(|r| client_from_row(&r))
    .transpose()
}

/// The client with this id and its tenant: what the token endpoint reads, in one query.
pub fn client_and_tenant(c: &mut dyn Conn, client_id: &str) -> Result<Option<(ClientRow, Tenant)>> {
    let sql = format!(
        "SELECT {}, {} FROM machine_clients m JOIN tenants t ON t.name = m.tenant WHERE m.client_id = ?1",
        prefixed(CLIENT_COLUMNS, "m"),
        prefixed(TENANT_COLUMNS, "t")
    );
    c.query_opt(&sql, vals![client_id])?
        .map(|r| {
            Ok((
                client_from_row(&r)?,
                tenant_from_row(&r, CLIENT_COLUMNS.split(", ").count())?,
            ))
        })
        .transpose()
}

pub fn clients_of_tenant(c: &mut dyn Conn, tenant: &str) -> Result<Vec<ClientRow>> {
    c.query(
        &format!("SELECT {CLIENT_COLUMNS} FROM machine_clients WHERE tenant = ?1 ORDER BY created_at, client_id"),
        vals![tenant],
    )?
    .iter()
    .map(client_from_row)
    .collect()
}

/// Makes `new_hash` the client's secret and the current one its previous, valid until
/// `deadline` (an older previous secret is dropped). False if there is no such client.
pub fn rotate_client_secret(
    c: &mut dyn Conn,
    client_id: &str,
    new_hash: &str,
    deadline: i64,
    now: i64,
) -> Result<bool> {
    let n = c.execute(
        "UPDATE machine_clients SET previous_secret_hash = secret_hash, previous_secret_deadline = ?3, \
         secret_hash = ?2, rotated_at = ?4 WHERE client_id = ?1",
        vals![client_id, new_hash, deadline, now],
    )?;
    Ok(n > 0)
}

/// Disables a client. False if it was already disabled (or does not exist).
pub fn disable_client(c: &mut dyn Conn, client_id: &str, now: i64) -> Result<bool> {
    let n = c.execute(
        "UPDATE machine_clients SET disabled_at = ?2 WHERE client_id = ?1 AND disabled_at IS NULL",
        vals![client_id, now],
    )?;
    Ok(n > 0)
}

/// Sets a client's access-token lifetime. False if there is no such client.
pub fn set_client_token_lifetime(c: &mut dyn Conn, client_id: &str, lifetime_s: i64) -> Result<bool> {
    let n = c.execute(
        "UPDATE machine_clients SET token_lifetime_s = ?2 WHERE client_id = ?1",
        vals![client_id, lifetime_s],
    )?;
    Ok(n > 0)
}

/// The `meta` row of the longest access-token lifetime any client has had (schema 7).
const LONGEST_LIFETIME: &str = "longest_client_token_lifetime_s";

/// The longest access-token lifetime any client has had; with `lock`, its row is locked
/// until the transaction ends, so that a raise (which locks it too) is either seen or
/// waits (in a write transaction only).
pub fn longest_token_lifetime(c: &mut dyn Conn, lock: bool) -> Result<i64> {
    if lock {
        c.execute("UPDATE meta SET value = value WHERE key = ?1", vals![LONGEST_LIFETIME])?;
    }
    match c.query_opt("SELECT value FROM meta WHERE key = ?1", vals![LONGEST_LIFETIME])? {
        Some(r) => r.text(0)?.parse::<i64>().map_err(Error::internal),
        None => Ok(0),
    }
}

/// Raises the longest client token lifetime to `lifetime_s` (it is never lowered: tokens
/// issued with a longer one may still be live), and extends the cut-offs in force that can
/// cover client tokens (`tenant`, `global`, a subject named like a client id) so that they
/// last while a token of that lifetime issued before them can be accepted.
pub fn raise_longest_token_lifetime(c: &mut dyn Conn, lifetime_s: i64, leeway_s: i64, now: i64) -> Result<()> {
    if lifetime_s <= longest_token_lifetime(c, true)? {
        return Ok(());
    }
    c.execute(
        "UPDATE meta SET value = ?2 WHERE key = ?1",
        vals![LONGEST_LIFETIME, lifetime_s.to_string()],
    )?;
    c.execute(
        "UPDATE revocation_events SET expires_at = revoked_before + ?1 \
         WHERE expires_at > ?2 AND revoked_before IS NOT NULL AND expires_at < revoked_before + ?1 \
         AND (kind IN ('tenant', 'global') OR (kind = 'subject' AND substr(value, 1, 3) = 'mc_'))",
        vals![lifetime_s + leeway_s, now],
    )?;
    Ok(())
}

/// Enables a disabled client. False if it was enabled already (or does not exist).
pub fn enable_client(c: &mut dyn Conn, client_id: &str) -> Result<bool> {
    let n = c.execute(
        "UPDATE machine_clients SET disabled_at = NULL WHERE client_id = ?1 AND disabled_at IS NOT NULL",
        vals![client_id],
    )?;
    Ok(n > 0)
}

/// The latest `revoked_before` of the subject cut-offs still in the feed for `client_id`
/// in `tenant` (those its disabling or deletion published), if any.
pub fn client_cut_off(c: &mut dyn Conn, client_id: &str, tenant: &str) -> Result<Option<i64>> {
    c.query_one(
        "SELECT MAX(revoked_before) FROM revocation_events WHERE kind = 'subject' AND value = ?1 AND tenant = ?2",
        vals![client_id, tenant],
    )?
    .opt_int(0)
}

/// Locks an enabled client's row until the transaction ends (a disable or delete of it
/// waits, or is seen). False if the client is disabled or gone.
pub fn lock_enabled_client(c: &mut dyn Conn, client_id: &str) -> Result<bool> {
    let n = c.execute(
        "UPDATE machine_clients SET client_id = client_id WHERE client_id = ?1 AND disabled_at IS NULL",
        vals![client_id],
    )?;
    Ok(n > 0)
}

/// Deletes a client. False if there was none.
pub fn delete_client(c: &mut dyn Conn, client_id: &str) -> Result<bool> {
    Ok(c.execute("DELETE FROM machine_clients WHERE client_id = ?1", vals![client_id])? > 0)
}
