//! The database: SQLite (one file, the embedded default) or PostgreSQL (for
//! several replicas), behind one small interface so that every SQL statement of
//! the service is written once (`store`).
//!
//! * Statements use `?1, ?2, ...` placeholders (PostgreSQL's `$1` is derived) and
//!   SQL both engines accept; the few differences are [`Dialect`] methods.
//! * Reads and writes use different connections. Reads ([`Database::read`],
//!   [`Database::read_snapshot`]) come from a pool of read connections and never
//!   wait for a writer: SQLite runs in WAL mode (readers see the last commit while
//!   a write is in progress), PostgreSQL has MVCC. Writes ([`Database::write`]) run
//!   in one transaction on a writer connection: SQLite has exactly one (a write
//!   waits for the previous one, and for other processes up to the busy timeout),
//!   PostgreSQL a pool of them.
//! * A write closure's `Err` rolls the transaction back: nothing it did stays.

mod migrations;
mod pool;
mod postgres;
mod sqlite;

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

pub use migrations::SCHEMA_VERSION;

/// A value bound to or read from a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::Int(v)
    }
}

impl From<&str> for Val {
    fn from(v: &str) -> Val {
        Val::Text(v.to_owned())
    }
}

impl From<&String> for Val {
    fn from(v: &String) -> Val {
        Val::Text(v.clone())
    }
}

impl From<String> for Val {
    fn from(v: String) -> Val {
        Val::Text(v)
    }
}

impl From<&[u8]> for Val {
    fn from(v: &[u8]) -> Val {
        Val::Blob(v.to_vec())
    }
}

impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Val {
        v.map_or(Val::Null, Into::into)
    }
}

impl From<&Option<String>> for Val {
    fn from(v: &Option<String>) -> Val {
        v.as_deref().map_or(Val::Null, Val::from)
    }
}

/// `vals![a, b, ...]`: statement parameters.
#[macro_export]
macro_rules! vals {
    ($($v:expr),* $(,)?) => { &[$($crate::db::Val::from($v)),*][..] };
}

/// One result row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row(pub Vec<Val>);

fn column_error(i: usize, want: &str, got: &Val) -> Error {
    Error::internal(format_args!("column {i}: expected {want}, found {got:?}"))
}

impl Row {
    fn at(&self, i: usize) -> Result<&Val> {
        self.0
            .get(i)
            .ok_or_else(|| Error::internal(format_args!("no column {i}")))
    }

    pub fn int(&self, i: usize) -> Result<i64> {
        match self.at(i)? {
            Val::Int(v) => Ok(*v),
            other => Err(column_error(i, "an integer", other)),
        }
    }

    pub fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.at(i)? {
            Val::Null => Ok(None),
            Val::Int(v) => Ok(Some(*v)),
            other => Err(column_error(i, "an integer or null", other)),
        }
    }

    pub fn text(&self, i: usize) -> Result<String> {
        match self.at(i)? {
            Val::Text(v) => Ok(v.clone()),
            other => Err(column_error(i, "text", other)),
        }
    }

    pub fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.at(i)? {
            Val::Null => Ok(None),
            Val::Text(v) => Ok(Some(v.clone())),
            other => Err(column_error(i, "text or null", other)),
        }
    }

    pub fn blob(&self, i: usize) -> Result<Vec<u8>> {
        match self.at(i)? {
            Val::Blob(v) => Ok(v.clone()),
            other => Err(column_error(i, "a blob", other)),
        }
    }
}

/// Which engine a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The suffix that locks the selected rows until the transaction ends. SQLite
    /// has none and needs none: its write transactions are exclusive.
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }
}

/// Locks named with [`Conn::lock`]: each serialises the transactions that take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// Schema migrations (PostgreSQL: several replicas may start at once).
    Migrations = 0x6561_0001,
    /// Installing or rotating the signing key.
    SigningKey = 0x6561_0002,
}

/// A connection, or a transaction on one.
pub trait Conn {
    fn dialect(&self) -> Dialect;
    /// Runs a statement; returns the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[Val]) -> Result<u64>;
    /// Runs a query; returns every row.
    fn query(&mut self, sql: &str, params: &[Val]) -> Result<Vec<Row>>;
    /// Runs several statements without parameters (migrations).
    fn batch(&mut self, sql: &str) -> Result<()>;

    /// The first row, if any.
    fn query_opt(&mut self, sql: &str, params: &[Val]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Exactly one row.
    fn query_one(&mut self, sql: &str, params: &[Val]) -> Result<Row> {
        self.query_opt(sql, params)?
            .ok_or_else(|| Error::internal(format_args!("no row for: {sql}")))
    }

    /// Takes `lock` until the transaction ends (PostgreSQL advisory lock; a no-op in
    /// SQLite, whose write transactions already exclude each other).
    fn lock(&mut self, lock: Lock) -> Result<()> {
        match self.dialect() {
            Dialect::Sqlite => Ok(()),
            Dialect::Postgres => self
                .query("SELECT pg_advisory_xact_lock(?1)", vals![lock as i64])
                .map(|_| ()),
        }
    }
}

/// Where the data lives, and the connections' limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An SQLite file (created `0600` if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL connection string (`postgresql://...` or `host=... user=...`),
    /// and the schema to use (created if missing), if not the default one.
    Postgres { url: String, schema: Option<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbConfig {
    pub location: Location,
    /// Read connections (lookups, feed, listings).
    pub read_pool: u32,
    /// Write connections (PostgreSQL; SQLite always has exactly one writer).
    pub write_pool: u32,
    /// How long a request waits for a free connection, or a writer for a lock held
    /// elsewhere, before the request fails with `temporarily_unavailable`.
    pub busy_timeout: Duration,
}

impl DbConfig {
    pub fn new(location: Location) -> DbConfig {
        DbConfig {
            location,
            read_pool: 8,
            write_pool: 4,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

enum Backend {
    Sqlite(Box<sqlite::SqliteDb>),
    Postgres(Box<postgres::PgDb>),
}

/// The database: a read pool and a writer (SQLite) or write pool (PostgreSQL).
pub struct Database {
    backend: Backend,
}

type WriteFn<'a, T> = &'a mut dyn FnMut(&mut dyn Conn) -> Result<T>;

impl Database {
    /// Connects, and migrates the schema (once, even when several replicas start at once).
    pub fn open(config: &DbConfig) -> Result<Database> {
        let backend = match &config.location {
            Location::Sqlite(path) => Backend::Sqlite(Box::new(sqlite::SqliteDb::open(path, config)?)),
            Location::Postgres { url, schema } => {
                Backend::Postgres(Box::new(postgres::PgDb::open(url, schema.as_deref(), config)?))
            }
        };
        let db = Database { backend };
        db.write(|c| migrations::migrate(c))?;
        Ok(db)
    }

    pub fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Runs `f` on a read connection, each statement on the latest committed state.
    pub fn read<T>(&self, f: impl FnOnce(&mut dyn Conn) -> Result<T>) -> Result<T> {
        match &self.backend {
            Backend::Sqlite(db) => db.read(f, false),
            Backend::Postgres(db) => db.read(f, false),
        }
    }

    /// Runs `f` on a read connection in a read-only transaction: every statement sees
    /// the same committed state.
    pub fn read_snapshot<T>(&self, f: impl FnOnce(&mut dyn Conn) -> Result<T>) -> Result<T> {
        match &self.backend {
            Backend::Sqlite(db) => db.read(f, true),
            Backend::Postgres(db) => db.read(f, true),
        }
    }

    /// Runs `f` in one write transaction, committed if `f` returns `Ok`, rolled back
    /// otherwise. PostgreSQL may run `f` again after a deadlock or serialisation
    /// failure, so `f` must not have effects outside the transaction.
    pub fn write<T>(&self, mut f: impl FnMut(&mut dyn Conn) -> Result<T>) -> Result<T> {
        let f: WriteFn<'_, T> = &mut f;
        match &self.backend {
            Backend::Sqlite(db) => db.write(f),
            Backend::Postgres(db) => db.write(f),
        }
    }

    /// Whether the database answers a trivial query now (readiness).
    pub fn ping(&self) -> Result<()> {
        self.read(|c| c.query_one("SELECT 1", &[]).map(|_| ()))
    }
}
