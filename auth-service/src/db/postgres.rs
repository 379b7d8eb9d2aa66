//! PostgreSQL: a pool of read connections and a pool of write connections, each
//! keeping its prepared statements (a lookup is then one round trip). Reads never
//! wait for writes (MVCC); a write that waits for a row lock longer than the busy
//! timeout fails (`lock_timeout`), and one caught in a deadlock or serialisation
//! failure is run again.

use std::collections::HashMap;
use std::time::Duration;

use bytes::BytesMut;
use postgres::error::SqlState;
use postgres::types::{IsNull, ToSql, Type};
use postgres::{Client, GenericClient, IsolationLevel, NoTls, Statement};

use super::pool::{Manager, Pool};
use super::{Conn, DbConfig, Dialect, Row, Val, WriteFn};
use crate::error::{Error, Result};

/// How many times a write caught in a deadlock or serialisation failure is tried.
const WRITE_ATTEMPTS: u32 = 4;
/// Longest statement on a read connection.
const READ_STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);
/// A transaction left idle this long is ended by the server.
const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Val {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, BoxError> {
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                _ => Err(format!("an integer cannot be bound to {ty}").into()),
            },
            Val::Text(v) => v.as_str().to_sql(ty, out),
            Val::Blob(v) => v.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn is_retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// Maps PostgreSQL's errors: a lost connection, a lock or statement timeout, or a
/// server shutting down is `Unavailable`; anything else is internal.
fn pg_error(e: &postgres::Error) -> Error {
    let unavailable = e.is_closed()
        || e.as_db_error().is_none() && e.code().is_none()
        || matches!(
            e.code(),
            Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE
                || *c == SqlState::QUERY_CANCELED
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || *c == SqlState::TOO_MANY_CONNECTIONS
        );
    // The server's code and message, never its detail (which may quote row values).
    let what = match e.as_db_error() {
        Some(db) => format!("{} {}", db.code().code(), db.message()),
        None => e.to_string(),
    };
    if unavailable {
        Error::unavailable(format_args!("postgres: {what}"))
    } else {
        Error::internal(format_args!("postgres: {what}"))
    }
}

fn value(row: &postgres::Row, i: usize) -> std::result::Result<Val, postgres::Error> {
    let ty = row.columns()[i].type_();
    Ok(match *ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map_or(Val::Null, Val::Int),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)?
            .map_or(Val::Null, |v| Val::Int(v.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)?
            .map_or(Val::Null, |v| Val::Int(v.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)?
            .map_or(Val::Null, |v| Val::Int(v.into())),
        Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i)?.map_or(Val::Null, Val::Blob),
        Type::VOID => Val::Null,
        _ => row.try_get::<_, Option<String>>(i)?.map_or(Val::Null, Val::Text),
    })
}

/// `?1, ?2, ...` to `$1, $2, ...` (the service's SQL has no `?` anywhere else).
fn placeholders(sql: &str) -> String {
    sql.replace('?', "$")
}

/// A pooled client and the statements prepared on it.
pub struct PgClient {
    /// Always `Some` until dropped.
    client: Option<Client>,
    statements: HashMap<String, Statement>,
}

impl PgClient {
    fn parts(&mut self) -> Result<(&mut Client, &mut HashMap<String, Statement>)> {
        match self.client.as_mut() {
            Some(c) => Ok((c, &mut self.statements)),
            None => Err(Error::internal("postgres client already closed")),
        }
    }
}

/// Closing a client runs its own small runtime, which cannot start on a thread that
/// drives a Tokio runtime: such a close is moved to a thread of its own.
impl Drop for PgClient {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::Builder::new()
                    .name("pg-close".into())
                    .spawn(move || drop(client));
            }
        }
    }
}

/// A client or a transaction, with the client's statement cache.
struct PgConn<'a, C: GenericClient> {
    c: &'a mut C,
    statements: &'a mut HashMap<String, Statement>,
    /// The last failure was a deadlock or serialisation failure: the write may be tried again.
    retryable: bool,
}

impl<C: GenericClient> PgConn<'_, C> {
    fn fail(&mut self, e: postgres::Error) -> Error {
        self.retryable = is_retryable(&e);
        pg_error(&e)
    }

    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self.c.prepare(&placeholders(sql)).map_err(|e| self.fail(e))?;
        self.statements.insert(sql.to_owned(), st.clone());
        Ok(st)
    }
}

fn params(values: &[Val]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

impl<C: GenericClient> Conn for PgConn<'_, C> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, values: &[Val]) -> Result<u64> {
        let st = self.statement(sql)?;
        self.c.execute(&st, &params(values)).map_err(|e| self.fail(e))
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        self.c.batch_execute(sql).map_err(|e| self.fail(e))
    }

    fn query(&mut self, sql: &str, values: &[Val]) -> Result<Vec<Row>> {
        let st = self.statement(sql)?;
        let rows = self.c.query(&st, &params(values)).map_err(|e| self.fail(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut row = Vec::with_capacity(r.len());
            for i in 0..r.len() {
                row.push(value(r, i).map_err(|e| self.fail(e))?);
            }
            out.push(Row(row));
        }
        Ok(out)
    }
}

struct Connector {
    config: postgres::Config,
}

impl Manager for Connector {
    type Conn = PgClient;

    fn connect(&self) -> Result<PgClient> {
        let client = self
            .config
            .connect(NoTls)
            .map_err(|e| Error::unavailable(format_args!("cannot connect to PostgreSQL: {e}")))?;
        Ok(PgClient {
            client: Some(client),
            statements: HashMap::new(),
        })
    }

    fn is_broken(&self, conn: &mut PgClient) -> bool {
        conn.client.as_ref().is_none_or(Client::is_closed)
    }
}

/// A schema name the service accepts: `[a-z_][a-z0-9_]{0,62}` (no quoting needed).
pub fn valid_schema(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        && !name.as_bytes()[0].is_ascii_digit()
}

/// The connection settings from the connection string; never echoes it (it may hold a password).
fn parse_config(url: &str, schema: Option<&str>, busy: Duration, read: bool) -> Result<postgres::Config> {
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e| Error::invalid_request(format!("invalid PostgreSQL connection string: {e}")))?;
    if config.get_ssl_mode() == postgres::config::SslMode::Require {
        return Err(Error::invalid_request(
            "sslmode=require is not supported by this build: connect over a Unix socket or a private network",
        ));
    }
    let mut options = config.get_options().unwrap_or_default().to_owned();
    if let Some(schema) = schema {
        options.push_str(&format!(" -c search_path={schema}"));
    }
    let ms = |d: Duration| d.as_millis();
    options.push_str(&format!(
        " -c lock_timeout={} -c idle_in_transaction_session_timeout={}",
        ms(busy),
        ms(IDLE_IN_TRANSACTION_TIMEOUT)
    ));
    if read {
        options.push_str(&format!(" -c statement_timeout={}", ms(READ_STATEMENT_TIMEOUT)));
    }
    config.options(options.trim());
    config.application_name("edge-auth-service");
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(busy);
    }
    Ok(config)
}

pub struct PgDb {
    read: Pool<Connector>,
    write: Pool<Connector>,
}

impl PgDb {
    pub fn open(url: &str, schema: Option<&str>, config: &DbConfig) -> Result<PgDb> {
        if let Some(s) = schema {
            if !valid_schema(s) {
                return Err(Error::invalid_request(format!(
                    "invalid schema name {s:?}: 1 to 63 of a-z, 0-9 and _, not starting with a digit"
                )));
            }
        }
        let busy = config.busy_timeout;
        let db = PgDb {
            read: Pool::new(
                Connector {
                    config: parse_config(url, schema, busy, true)?,
                },
                config.read_pool,
                busy,
                "postgres read",
            ),
            write: Pool::new(
                Connector {
                    config: parse_config(url, schema, busy, false)?,
                },
                config.write_pool,
                busy,
                "postgres write",
            ),
        };
        if let Some(s) = schema {
            // Before anything uses the search path; under the migrations lock, since two
            // replicas creating it at once would collide.
            db.write(&mut |c| {
                c.lock(super::Lock::Migrations)?;
                c.execute(&format!("CREATE SCHEMA IF NOT EXISTS {s}"), &[]).map(|_| ())
            })?;
        }
        Ok(db)
    }

    pub fn read<T>(&self, f: impl FnOnce(&mut dyn Conn) -> Result<T>, snapshot: bool) -> Result<T> {
        let mut pooled = self.read.get()?;
        let (client, statements) = pooled.conn()?.parts()?;
        if !snapshot {
            return f(&mut PgConn {
                c: client,
                statements,
                retryable: false,
            });
        }
        let mut tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(|e| pg_error(&e))?;
        let out = f(&mut PgConn {
            c: &mut tx,
            statements,
            retryable: false,
        })?;
        tx.commit().map_err(|e| pg_error(&e))?;
        Ok(out)
    }

    pub fn write<T>(&self, f: WriteFn<'_, T>) -> Result<T> {
        let mut pooled = self.write.get()?;
        let (client, statements) = pooled.conn()?.parts()?;
        let mut attempt = 1;
        loop {
            let mut tx = client.transaction().map_err(|e| pg_error(&e))?;
            let mut conn = PgConn {
                c: &mut tx,
                statements: &mut *statements,
                retryable: false,
            };
            let out = f(&mut conn);
            let retry = conn.retryable;
            match out {
                Ok(v) => match tx.commit() {
                    Ok(()) => return Ok(v),
                    Err(e) if is_retryable(&e) && attempt < WRITE_ATTEMPTS => {}
                    Err(e) => return Err(pg_error(&e)),
                },
                Err(e) => {
                    drop(tx);
                    if !(retry && attempt < WRITE_ATTEMPTS) {
                        return Err(e);
                    }
                }
            }
            tracing::debug!(
                attempt,
                "write transaction retried after a deadlock or serialisation failure"
            );
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        for ok in ["a", "edge_auth", "t_0123", &"a".repeat(63)] {
            assert!(valid_schema(ok), "{ok}");
        }
        for bad in ["", "0a", "A", "a-b", "a;drop", "a b", "\"a\"", &"a".repeat(64)] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }

    #[test]
    fn connection_strings_are_never_echoed() {
        let busy = Duration::from_secs(5);
        let e = parse_config("postgresql://u:s3cret@host:notaport/db", None, busy, true).unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let e = parse_config("postgresql://u:s3cret@h/db?sslmode=require", None, busy, true).unwrap_err();
        assert!(e.to_string().contains("sslmode=require"), "{e}");
        let c = parse_config(
            "postgresql://u@h/db?options=-c%20work_mem%3D4MB",
            Some("s1"),
            busy,
            true,
        )
        .unwrap();
        let opts = c.get_options().unwrap();
        assert!(
            opts.contains("work_mem=4MB") && opts.contains("search_path=s1"),
            "{opts}"
        );
        assert!(
            opts.contains("lock_timeout=5000") && opts.contains("statement_timeout="),
            "{opts}"
        );
        assert_eq!(placeholders("a = ?1 AND b = ?12"), "a = $1 AND b = $12");
    }
}
