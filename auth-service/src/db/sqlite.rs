//! SQLite: one file in WAL mode, one writer connection (behind a mutex: SQLite
//! allows one writer at a time anyway) and a pool of read-only connections that
//! never wait for it.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, ToSql, TransactionBehavior};

use super::pool::{Manager, Pool};
use super::{Conn, DbConfig, Dialect, Row, Val, WriteFn};
use crate::error::{Error, Result};

impl ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Val::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Val::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Val::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Val::Blob(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
        })
    }
}

/// Maps SQLite's errors: busy or locked past the busy timeout is `Unavailable`.
fn sql_error(e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::unavailable(format_args!("sqlite: {e}")),
        _ => Error::internal(format_args!("sqlite: {e}")),
    }
}

fn value(v: ValueRef<'_>) -> Result<Val> {
    Ok(match v {
        ValueRef::Null => Val::Null,
        ValueRef::Integer(i) => Val::Int(i),
        ValueRef::Text(t) => Val::Text(
            std::str::from_utf8(t)
                .map_err(|e| Error::internal(format_args!("sqlite: text is not UTF-8: {e}")))?
                .to_owned(),
        ),
        ValueRef::Blob(b) => Val::Blob(b.to_vec()),
        ValueRef::Real(_) => return Err(Error::internal("sqlite: unexpected REAL value")),
    })
}

/// A connection (or a transaction, which derefs to one).
pub(super) struct SqliteConn<'a>(pub(super) &'a Connection);

impl Conn for SqliteConn<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Val]) -> Result<u64> {
        let mut st = self.0.prepare_cached(sql).map_err(sql_error)?;
        let n = st
            .execute(rusqlite::params_from_iter(params.iter()))
            .map_err(sql_error)?;
        Ok(n as u64)
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        self.0.execute_batch(sql).map_err(sql_error)
    }

    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>> {
        let mut st = self.0.prepare_cached(sql).map_err(sql_error)?;
        let width = st.column_count();
        let mut rows = st.query(rusqlite::params_from_iter(params.iter())).map_err(sql_error)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(sql_error)? {
            let mut row = Vec::with_capacity(width);
            for i in 0..width {
                row.push(value(r.get_ref(i).map_err(sql_error)?)?);
            }
            out.push(Row(row));
        }
        Ok(out)
    }
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
        Err(e) => Err(Error::internal(format_args!("cannot create {}: {e}", path.display()))),
    }
}

#[cfg(not(unix))]
fn create_private_file(_path: &Path) -> Result<()> {
    Ok(())
}

fn connect(path: &Path, busy: Duration, read_only: bool) -> Result<Connection> {
    let conn = Connection::open(path).map_err(sql_error)?;
    conn.busy_timeout(busy).map_err(sql_error)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(sql_error)?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(sql_error)?;
    if read_only {
        conn.pragma_update(None, "query_only", "ON").map_err(sql_error)?;
    }
    Ok(conn)
}

struct Readers {
    path: PathBuf,
    busy: Duration,
}

impl Manager for Readers {
    type Conn = Connection;

    fn connect(&self) -> Result<Connection> {
        connect(&self.path, self.busy, true)
    }

    fn is_broken(&self, conn: &mut Connection) -> bool {
        !conn.is_autocommit()
    }
}

pub struct SqliteDb {
    writer: Mutex<Connection>,
    readers: Pool<Readers>,
}

impl SqliteDb {
    pub fn open(path: &Path, config: &DbConfig) -> Result<SqliteDb> {
        create_private_file(path)?;
        let writer = connect(path, config.busy_timeout, false)?;
        writer.pragma_update(None, "journal_mode", "WAL").map_err(sql_error)?;
        let readers = Readers {
            path: path.to_owned(),
            busy: config.busy_timeout,
        };
        Ok(SqliteDb {
            writer: Mutex::new(writer),
            readers: Pool::new(readers, config.read_pool, config.busy_timeout, "sqlite read"),
        })
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn read<T>(&self, f: impl FnOnce(&mut dyn Conn) -> Result<T>, snapshot: bool) -> Result<T> {
        let mut pooled = self.readers.get()?;
        let conn = pooled.conn()?;
        if !snapshot {
            return f(&mut SqliteConn(conn));
        }
        // A deferred transaction on a WAL database reads one snapshot and takes no lock a writer waits for.
        let tx = conn.transaction().map_err(sql_error)?;
        let out = f(&mut SqliteConn(&tx));
        tx.finish().map_err(sql_error)?;
        out
    }

    pub fn write<T>(&self, f: WriteFn<'_, T>) -> Result<T> {
        let mut writer = self.writer();
        let tx = writer
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_error)?;
        let out = f(&mut SqliteConn(&tx))?;
        tx.commit().map_err(sql_error)?;
        Ok(out)
    }
}
