//! The command line: `serve`, and admin commands that work on the database directly.
//!
//! The database is an SQLite file (`--db` / `EDGE_AUTH_DB`) or PostgreSQL, whose
//! connection string comes from the environment only (`EDGE_AUTH_DATABASE_URL`: it
//! may hold a password, and a command line is visible to every local user).
//! Results are JSON on standard output; a closed output (`| head -1`) ends the
//! command quietly.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use serde_json::json;

use crate::audit::Ctx;
use crate::background::{self, Schedule};
use crate::db::{DbConfig, Location};
use crate::edge_context::{self, EdgeContextConfig};
use crate::error::Error;
use crate::guard::GuardConfig;
use crate::http::{self, Api, AppState, HttpConfig, Secret, MAX_TOKEN_LEN, MIN_TOKEN_LEN};
use crate::logging;
use crate::runtime::{self, Threads};
use crate::secrets::KeyRing;
use crate::service::{
    AuditQuery, ClientRequest, ClientUpdate, KeyRequest, Options, Retention, RotateRequest, Service, SystemClock,
    TenantRequest, TenantUpdate, DEFAULT_GRACE_S,
};
use crate::store::AuditFilter;
use crate::tokens::TokenConfig;

/// The environment variable holding the admin token.
pub const ADMIN_TOKEN_ENV: &str = "EDGE_AUTH_ADMIN_TOKEN";
/// The environment variable holding the service token (shared with the edge).
pub const SERVICE_TOKEN_ENV: &str = "EDGE_AUTH_SERVICE_TOKEN";
/// The environment variable holding a PostgreSQL connection string.
pub const DATABASE_URL_ENV: &str = "EDGE_AUTH_DATABASE_URL";
/// The environment variable naming the PostgreSQL schema to use (created if missing).
pub const DATABASE_SCHEMA_ENV: &str = "EDGE_AUTH_DATABASE_SCHEMA";
/// The edge's context signing key (`context.signing_key_env` at the edge), if the
/// service is to believe the edge's signed context headers.
pub const CONTEXT_KEY_ENV: &str = "EDGE_AUTH_CONTEXT_KEY";
/// The previous context signing key, during a rotation.
pub const CONTEXT_KEY_PREVIOUS_ENV: &str = "EDGE_AUTH_CONTEXT_KEY_PREVIOUS";
/// The edge's context header prefix (`context.prefix`), if not `x-edge-auth-`.
pub const CONTEXT_PREFIX_ENV: &str = "EDGE_AUTH_CONTEXT_PREFIX";

#[derive(Debug, Parser)]
#[command(
    name = "edge-auth-service",
    version,
    about = "Reference auth service for the edge-auth filter"
)]
pub struct Cli {
    /// The SQLite database file (created and migrated if needed). For PostgreSQL, set
    /// EDGE_AUTH_DATABASE_URL instead (never on the command line: it may hold a password).
    #[arg(long, global = true, env = "EDGE_AUTH_DB", value_name = "PATH")]
    pub db: Option<PathBuf>,
    #[command(flatten)]
    pub pools: PoolArgs,
    /// The edges' leeway, in seconds: a revocation stays in the feed until the tokens it
    /// covers are past their expiry plus this (0 to 3600; the filter's default leeway is 60).
    #[arg(long, global = true, env = "EDGE_AUTH_FEED_LEEWAY_S", default_value_t = 60)]
    pub feed_leeway_s: u32,
    #[command(subcommand)]
    pub command: Command,
}

/// Database connections.
#[derive(Debug, Clone, Args)]
pub struct PoolArgs {
    /// Read connections (lookups, the feed, listings).
    #[arg(long, global = true, env = "EDGE_AUTH_DB_READ_POOL", default_value_t = 8)]
    pub db_read_pool: u32,
    /// Write connections (PostgreSQL; SQLite has one writer).
    #[arg(long, global = true, env = "EDGE_AUTH_DB_WRITE_POOL", default_value_t = 4)]
    pub db_write_pool: u32,
    /// How long a request waits for a connection, or a write for a lock, before it fails with 503.
    #[arg(long, global = true, env = "EDGE_AUTH_DB_BUSY_TIMEOUT_MS", default_value_t = 5000)]
    pub db_busy_timeout_ms: u64,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// The `iss` of issued access tokens.
    #[arg(long)]
    pub issuer: String,
    /// The `aud` of issued access tokens.
    #[arg(long)]
    pub audience: String,
    /// Seconds for a request's headers to arrive; also how long an idle connection stays open.
    #[arg(long, env = "EDGE_AUTH_HEADER_TIMEOUT_S", default_value_t = 10)]
    pub header_timeout_s: u64,
    /// Seconds for a request's body to arrive (then 408).
    #[arg(long, env = "EDGE_AUTH_BODY_TIMEOUT_S", default_value_t = 10)]
    pub body_timeout_s: u64,
    /// Largest request line plus headers, in bytes (at least 8192); larger ones get 431.
    #[arg(long, env = "EDGE_AUTH_MAX_HEADER_BYTES", default_value_t = 32 * 1024)]
    pub max_header_bytes: usize,
    /// Connections open at once (more wait to be accepted).
    #[arg(long, env = "EDGE_AUTH_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Connections open at once from one client address (more are closed).
    #[arg(long, env = "EDGE_AUTH_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 256)]
    pub max_connections_per_client: usize,
    /// Seconds requests in flight may take to finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "EDGE_AUTH_SHUTDOWN_GRACE_S", default_value_t = 10)]
    pub shutdown_grace_s: u64,
    /// Failed authentications a client address may make at once before it gets 429.
    #[arg(long, env = "EDGE_AUTH_AUTH_FAILURE_BURST", default_value_t = 100)]
    pub auth_failure_burst: u32,
    /// Failed authentications a second a client address regains.
    #[arg(long, env = "EDGE_AUTH_AUTH_FAILURE_PER_S", default_value_t = 10.0)]
    pub auth_failure_per_s: f64,
    /// Seconds over which failed authentications are counted into one audit row per kind, route and client.
    #[arg(long, env = "EDGE_AUTH_AUTH_FAILURE_WINDOW_S", default_value_t = 60)]
    pub auth_failure_window_s: u64,
    /// Audit events older than this many days are deleted.
    #[arg(long, env = "EDGE_AUTH_AUDIT_MAX_AGE_DAYS", default_value_t = 90)]
    pub audit_max_age_days: u32,
    /// At most this many audit events are kept (the newest).
    #[arg(long, env = "EDGE_AUTH_AUDIT_MAX_ROWS", default_value_t = 10_000_000)]
    pub audit_max_rows: u64,
    /// Seconds between two retention runs.
    #[arg(long, env = "EDGE_AUTH_RETENTION_INTERVAL_S", default_value_t = 300)]
    pub retention_interval_s: u64,
    /// A second address, for the edges' API alone (API-key lookups, the revocation feed,
    /// the JWKS, /health, /ready), served by threads of its own; --listen then serves
    /// everything else, on threads of a lower priority (--public-nice).
    #[arg(long, env = "EDGE_AUTH_EDGE_LISTEN", value_name = "ADDR")]
    pub edge_listen: Option<SocketAddr>,
    /// Threads serving the edge listener.
    #[arg(long, env = "EDGE_AUTH_EDGE_THREADS", default_value_t = 2)]
    pub edge_threads: usize,
    /// With --edge-listen: how much lower the public listener's threads run (a nice
    /// value added to the process's, 0 to 19; 0 = the same priority).
    #[arg(long, env = "EDGE_AUTH_PUBLIC_NICE", default_value_t = 10)]
    pub public_nice: i32,
    /// How old the edge's signed context may be, in seconds (with EDGE_AUTH_CONTEXT_KEY).
    #[arg(long, env = "EDGE_AUTH_CONTEXT_MAX_AGE_S", default_value_t = edge_context::DEFAULT_MAX_AGE_S)]
    pub context_max_age_s: u64,
    /// Log level: error, warn, info (one line per request), debug, trace or off.
    #[arg(long, env = "EDGE_AUTH_LOG", default_value = "info")]
    pub log_level: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API. Needs EDGE_AUTH_ADMIN_TOKEN and EDGE_AUTH_SERVICE_TOKEN (32+ characters each).
    Serve(Box<ServeArgs>),
    /// Tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Sessions.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Subjects (end users).
    #[command(subcommand)]
    Subject(SubjectCommand),
    /// Emergency: revoke every token issued until now.
    RevokeAll,
    /// Access-token signing keys.
    #[command(subcommand)]
    SigningKey(SigningKeyCommand),
    /// Show audit events: newest first (--before to page back), or oldest first after a
    /// cursor (--after, to follow the log); filtered by time, tenant, action, outcome, actor.
    Audit {
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// A `next` cursor of a previous newest-first page.
        #[arg(long, conflicts_with = "after")]
        before: Option<String>,
        /// Events after this cursor, oldest first.
        #[arg(long)]
        after: Option<String>,
        /// Events at or after this Unix time.
        #[arg(long)]
        since: Option<i64>,
        /// Events before this Unix time.
        #[arg(long)]
        until: Option<i64>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        outcome: Option<String>,
        #[arg(long)]
        actor: Option<String>,
    },
    /// Apply the schema migrations and exit (replicas also migrate when they start).
    Migrate,
    /// Machine clients (the client-credentials grant of POST /oauth/token).
    #[command(subcommand)]
    Client(ClientCommand),
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        name: String,
        /// An allowed browser origin (repeatable), e.g. https://app.acme.example
        #[arg(long = "origin")]
        origins: Vec<String>,
        /// An allowed client address or CIDR (repeatable); none = any address.
        #[arg(long = "ip")]
        ips: Vec<String>,
    },
    /// List tenants.
    List,
    /// Replace a tenant's allowed origins and/or IP allowlist (the lists given).
    Update {
        name: String,
        /// An allowed browser origin (repeatable): replaces the origins.
        #[arg(long = "origin")]
        origins: Vec<String>,
        /// No allowed origin at all.
        #[arg(long, conflicts_with = "origins")]
        no_origins: bool,
        /// An allowed client address or CIDR (repeatable): replaces the allowlist.
        #[arg(long = "ip")]
        ips: Vec<String>,
        /// No IP allowlist (any address).
        #[arg(long, conflicts_with = "ips")]
        any_ip: bool,
    },
    /// Disable a tenant: its keys are refused, its sessions and tokens revoked.
    Disable { name: String },
    /// Enable a disabled tenant again.
    Enable { name: String },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an API key; the raw key is printed this once only.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        subject: String,
        /// A scope (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A role the key may grant to its sessions (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Lifetime in seconds; none = no expiry.
        #[arg(long)]
        expires_in_s: Option<i64>,
        /// The key's own allowed address or CIDR (repeatable); none = the tenant's list.
        #[arg(long = "ip")]
        ips: Vec<String>,
    },
    /// List a tenant's keys (metadata only).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Replace a key; the old one stays valid for the grace period.
    Rotate {
        key_id: String,
        #[arg(long, default_value_t = DEFAULT_GRACE_S)]
        grace_s: i64,
    },
    /// Revoke a key now.
    Revoke { key_id: String },
    /// Emergency: revoke every API key now, of one tenant (--tenant) or of all.
    RevokeAll {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Revoke a session.
    Revoke { sid: String },
}

#[derive(Debug, Subcommand)]
pub enum SubjectCommand {
    /// Revoke every token of a subject issued until now, in every tenant (or in --tenant only).
    Revoke {
        subject: String,
        /// Only in this tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SigningKeyCommand {
    /// Make a new current signing key; the old one stays in the JWKS for the token lifetime.
    Rotate,
    /// Seal every signing key with EDGE_AUTH_SIGNING_KEK (keys in clear, and keys sealed
    /// with EDGE_AUTH_SIGNING_KEK_PREVIOUS).
    Encrypt,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create a machine client; its secret is printed this once only.
    Create {
        #[arg(long)]
        tenant: String,
        /// An audience its tokens may be for (repeatable, at least one; the first is the default).
        #[arg(long = "audience", required = true)]
        audiences: Vec<String>,
        /// A scope it may ask for (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Its own allowed address or CIDR (repeatable); none = the tenant's list.
        #[arg(long = "ip")]
        ips: Vec<String>,
        /// Its access tokens' lifetime in seconds (60 to 86400; default 900).
        #[arg(long)]
        token_lifetime_s: Option<i64>,
    },
    /// List a tenant's clients (metadata only).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Show a client (metadata only).
    Show { client_id: String },
    /// Give a client a new secret (printed this once); the current one stays valid for
    /// the grace period.
    Rotate {
        client_id: String,
        #[arg(long, default_value_t = DEFAULT_GRACE_S)]
        grace_s: i64,
    },
    /// Disable a client: no more tokens, and the edges refuse those it has within a poll.
    Disable { client_id: String },
    /// Delete a client (its tokens are refused as when disabled).
    Delete { client_id: String },
    /// Enable a disabled client: it gets tokens again; those it had stay refused.
    Enable { client_id: String },
    /// Change a client's access-token lifetime (for the tokens issued from now on).
    Update {
        client_id: String,
        /// Seconds, 60 to 86400.
        #[arg(long)]
        token_lifetime_s: i64,
    },
}

/// A bearer token from the environment, and the previous one during a rollover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollingToken {
    pub current: String,
    pub previous: Option<String>,
}

impl RollingToken {
    pub fn secret(&self) -> Secret {
        Secret::rolling(&self.current, self.previous.as_deref())
    }
}

/// The admin and service tokens from the environment (`EDGE_AUTH_ADMIN_TOKEN`,
/// `EDGE_AUTH_SERVICE_TOKEN`, and their `_PREVIOUS` during a rollover), checked: each
/// at least 32 characters, and no admin token equal to a service token.
pub fn secrets_from_env(get: impl Fn(&str) -> Option<String>) -> Result<(RollingToken, RollingToken), String> {
    let check = |name: &str, v: String| -> Result<String, String> {
        if v.chars().count() < MIN_TOKEN_LEN {
            return Err(format!(
                "{name} is shorter than {MIN_TOKEN_LEN} characters: use a long random token"
            ));
        }
        if v.len() > MAX_TOKEN_LEN {
            return Err(format!("{name} is longer than {MAX_TOKEN_LEN} bytes"));
        }
        Ok(v)
    };
    let read = |name: &str| -> Result<RollingToken, String> {
        let v = get(name).ok_or_else(|| format!("{name} is not set: serve needs it from the environment"))?;
        let current = check(name, v)?;
        let previous_name = format!("{name}_PREVIOUS");
        let previous = get(&previous_name)
            .filter(|p| !p.is_empty())
            .map(|p| check(&previous_name, p))
            .transpose()?;
        if previous.as_ref() == Some(&current) {
            return Err(format!(
                "{previous_name} equals {name}: give the token being replaced, or unset it"
            ));
        }
        Ok(RollingToken { current, previous })
    };
    let admin = read(ADMIN_TOKEN_ENV)?;
    let service = read(SERVICE_TOKEN_ENV)?;
    let all = |t: &RollingToken| {
        [Some(t.current.clone()), t.previous.clone()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
    };
    if all(&admin).iter().any(|a| all(&service).contains(a)) {
        return Err(format!(
            "{ADMIN_TOKEN_ENV} and {SERVICE_TOKEN_ENV} (and their _PREVIOUS) must differ: the edge holds the service token"
        ));
    }
    Ok((admin, service))
}

/// How to check the edge's signed context, from the environment: `None` without
/// `EDGE_AUTH_CONTEXT_KEY` (the service then never believes those headers).
pub fn edge_context_from_env(
    get: impl Fn(&str) -> Option<String>,
    max_age_s: u64,
) -> Result<Option<EdgeContextConfig>, String> {
    let Some(current) = get(CONTEXT_KEY_ENV).filter(|k| !k.is_empty()) else {
        if get(CONTEXT_KEY_PREVIOUS_ENV).is_some_and(|k| !k.is_empty()) {
            return Err(format!("{CONTEXT_KEY_PREVIOUS_ENV} is set without {CONTEXT_KEY_ENV}"));
        }
        return Ok(None);
    };
    let mut keys = vec![current.into_bytes()];
    if let Some(previous) = get(CONTEXT_KEY_PREVIOUS_ENV).filter(|k| !k.is_empty()) {
        keys.push(previous.into_bytes());
    }
    let prefix = get(CONTEXT_PREFIX_ENV).unwrap_or_else(|| edge_auth_core::context::DEFAULT_PREFIX.to_owned());
    EdgeContextConfig::new(&prefix, keys, max_age_s)
        .map(Some)
        .map_err(|e| format!("the edge's context ({CONTEXT_KEY_ENV}, {CONTEXT_PREFIX_ENV}): {e}"))
}

/// Why a command ended without its result.
#[derive(Debug)]
pub enum Failure {
    /// Standard output was closed (`| head -1`): nothing more to say.
    OutputClosed,
    Message(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Failure {
        Failure::Message(s)
    }
}

impl From<&str> for Failure {
    fn from(s: &str) -> Failure {
        Failure::Message(s.to_owned())
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Message(e.to_string())
    }
}

/// Writes `v` as pretty JSON to `out`.
pub fn write_json<T: Serialize>(out: &mut dyn Write, v: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Failure::Message(format!("json: {e}")))?;
    let written = writeln!(out, "{text}").and_then(|()| out.flush());
    match written {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure::OutputClosed),
        Err(e) => Err(Failure::Message(format!("cannot write the output: {e}"))),
    }
}

fn print<T: Serialize>(v: &T) -> Result<(), Failure> {
    write_json(&mut std::io::stdout().lock(), v)
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) | Err(Failure::OutputClosed) => ExitCode::SUCCESS,
        Err(Failure::Message(m)) => {
            // The command's answer to its user (not a log line).
            let _ = writeln!(std::io::stderr(), "edge-auth-service: {m}");
            ExitCode::FAILURE
        }
    }
}

/// The database from the command line and the environment (`get`).
pub fn db_config(
    cli_db: Option<PathBuf>,
    pools: &PoolArgs,
    get: impl Fn(&str) -> Option<String>,
) -> Result<DbConfig, String> {
    let url = get(DATABASE_URL_ENV).filter(|u| !u.trim().is_empty());
    let location = match (cli_db, url) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "both --db (or EDGE_AUTH_DB) and {DATABASE_URL_ENV} are set: choose SQLite or PostgreSQL"
            ))
        }
        (Some(path), None) => Location::Sqlite(path),
        (None, Some(url)) => Location::Postgres {
            url,
            schema: get(DATABASE_SCHEMA_ENV).filter(|s| !s.is_empty()),
        },
        (None, None) => {
            return Err(format!(
                "--db PATH (or EDGE_AUTH_DB) for SQLite, or {DATABASE_URL_ENV} for PostgreSQL, is required"
            ))
        }
    };
    Ok(DbConfig {
        location,
        read_pool: pools.db_read_pool.max(1),
        write_pool: pools.db_write_pool.max(1),
        busy_timeout: Duration::from_millis(pools.db_busy_timeout_ms.max(1)),
    })
}

/// Where the data is, without secrets (for the startup line).
fn describe(db: &DbConfig) -> String {
    match &db.location {
        Location::Sqlite(p) => format!("sqlite:{}", p.display()),
        Location::Postgres { schema, .. } => format!("postgresql (schema {})", schema.as_deref().unwrap_or("default")),
    }
}

pub fn run(cli: Cli) -> Result<(), Failure> {
    let db = db_config(cli.db, &cli.pools, |k| std::env::var(k).ok())?;
    if cli.feed_leeway_s > 3600 {
        return Err("--feed-leeway-s must be at most 3600".into());
    }
    let options = Options {
        feed_leeway_s: i64::from(cli.feed_leeway_s),
        keks: KeyRing::from_env(|k| std::env::var(k).ok())?,
        key_tags: crate::key_tags::from_env(|k| std::env::var(k).ok())?,
        ..Options::default()
    };
    if let Command::Serve(args) = cli.command {
        return serve(db, *args, options).map_err(Failure::Message);
    }
    let svc = Service::open_with(&db, options, Arc::new(SystemClock))?;
    admin_command(&svc, cli.command)
}

fn admin_command(svc: &Service, command: Command) -> Result<(), Failure> {
    let ctx = Ctx::cli();
    match command {
        Command::Serve(_) => Ok(()),
        Command::Migrate => print(&json!({"schema_version": svc.db().read(crate::store::schema_version)?})),
        Command::Tenant(TenantCommand::Create { name, origins, ips }) => print(&svc.create_tenant(
            &ctx,
            TenantRequest {
                name,
                allowed_origins: origins,
                ip_allowlist: ips,
            },
        )?),
        Command::Tenant(TenantCommand::List) => print(&json!({ "tenants": svc.list_tenants()? })),
        Command::Tenant(TenantCommand::Update {
            name,
            origins,
            no_origins,
            ips,
            any_ip,
        }) => {
            let list = |v: Vec<String>, none: bool| (none || !v.is_empty()).then_some(v);
            let req = TenantUpdate {
                allowed_origins: list(origins, no_origins),
                ip_allowlist: list(ips, any_ip),
            };
            print(&svc.update_tenant(&ctx, &name, req)?)
        }
        Command::Tenant(TenantCommand::Disable { name }) => print(&svc.disable_tenant(&ctx, &name)?),
        Command::Tenant(TenantCommand::Enable { name }) => print(&svc.enable_tenant(&ctx, &name)?),
        Command::Key(KeyCommand::Create {
            tenant,
            subject,
            scopes,
            roles,
            expires_in_s,
            ips,
        }) => {
            let ip_allowlist = (!ips.is_empty()).then_some(ips);
            print(&svc.create_key(
                &ctx,
                &tenant,
                KeyRequest {
                    subject,
                    scopes,
                    roles,
                    expires_in_s,
                    ip_allowlist,
                },
            )?)
        }
        Command::Key(KeyCommand::List { tenant }) => print(&json!({ "keys": svc.list_keys(&tenant)? })),
        Command::Key(KeyCommand::Rotate { key_id, grace_s }) => {
            print(&svc.rotate_key(&ctx, &key_id, RotateRequest { grace_s })?)
        }
        Command::Key(KeyCommand::Revoke { key_id }) => print(&svc.revoke_key(&ctx, &key_id)?),
        Command::Key(KeyCommand::RevokeAll { tenant }) => print(&svc.revoke_all_keys(&ctx, tenant.as_deref())?),
        Command::Session(SessionCommand::Revoke { sid }) => print(&svc.admin_revoke_session(&ctx, &sid)?),
        Command::Subject(SubjectCommand::Revoke { subject, tenant }) => {
            print(&svc.admin_revoke_subject(&ctx, &subject, tenant.as_deref())?)
        }
        Command::RevokeAll => print(&svc.revoke_all(&ctx)?),
        Command::SigningKey(SigningKeyCommand::Rotate) => print(&svc.rotate_signing_key(&ctx)?),
        Command::SigningKey(SigningKeyCommand::Encrypt) => print(&svc.encrypt_signing_keys(&ctx)?),
        Command::Client(c) => run_client(svc, &ctx, c),
        Command::Audit {
            limit,
            before,
            after,
            since,
            until,
            tenant,
            action,
            outcome,
            actor,
        } => {
            let q = AuditQuery {
                limit,
                before,
                after,
                filter: AuditFilter {
                    since,
                    until,
                    tenant,
                    action,
                    outcome,
                    actor,
                },
            };
            print(&svc.audit_page(&q)?)
        }
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn serve(db: DbConfig, args: ServeArgs, base: Options) -> Result<(), String> {
    let level = logging::parse_level(&args.log_level).ok_or_else(|| {
        format!(
            "unknown log level {:?}: use error, warn, info, debug, trace or off",
            args.log_level
        )
    })?;
    let sink = logging::init(level);
    let out = run_server(db, args, base);
    if let Some(sink) = sink {
        sink.close(secs(2));
    }
    out
}

fn run_server(db: DbConfig, args: ServeArgs, base: Options) -> Result<(), String> {
    let (admin, service_token) = secrets_from_env(|k| std::env::var(k).ok())?;
    let edge_context = edge_context_from_env(|k| std::env::var(k).ok(), args.context_max_age_s)?;
    if args.issuer.trim().is_empty() || args.audience.trim().is_empty() {
        return Err("--issuer and --audience must not be empty".into());
    }
    if !(args.auth_failure_per_s.is_finite() && args.auth_failure_per_s >= 0.0) {
        return Err("--auth-failure-per-s must be a number of at least 0".into());
    }
    if !(0..=runtime::MAX_NICE).contains(&args.public_nice) {
        return Err(format!("--public-nice must be between 0 and {}", runtime::MAX_NICE));
    }
    if args.edge_listen.is_some_and(|e| e == args.listen && e.port() != 0) {
        return Err("--edge-listen must differ from --listen".into());
    }
    if !(1..=64).contains(&args.edge_threads) {
        return Err("--edge-threads must be between 1 and 64".into());
    }
    let options = Options {
        tokens: Some(TokenConfig {
            issuer: args.issuer,
            audience: args.audience,
        }),
        guard: GuardConfig {
            burst: args.auth_failure_burst,
            per_s: args.auth_failure_per_s,
            ..GuardConfig::default()
        },
        retention: Retention {
            max_age_s: i64::from(args.audit_max_age_days) * 24 * 3600,
            max_rows: args.audit_max_rows,
        },
        ..base
    };
    let svc = Arc::new(
        Service::open_with(&db, options, Arc::new(SystemClock))
            .map_err(|e| format!("cannot open the database: {e}"))?,
    );
    match svc.key_tags() {
        Some(t) => tracing::info!(
            current = t.current().id(),
            previous = t.previous().map(|p| p.id()),
            "new API keys are tagged (key_tags)"
        ),
        None => tracing::info!(
            "{} is not set: new API keys are untagged",
            crate::key_tags::KEY_TAG_SECRET_ENV
        ),
    }
    let http_config = HttpConfig {
        header_timeout: secs(args.header_timeout_s.max(1)),
        body_timeout: secs(args.body_timeout_s.max(1)),
        max_connections: args.max_connections.max(1),
        max_connections_per_client: args.max_connections_per_client.max(1),
        shutdown_grace: secs(args.shutdown_grace_s),
        max_header_bytes: args.max_header_bytes.max(8192),
        ..HttpConfig::default()
    };
    let grace = http_config.shutdown_grace;
    let state = AppState {
        service: svc.clone(),
        admin_token: admin.secret(),
        service_token: service_token.secret(),
        http: Arc::new(http_config),
        edge_context: edge_context.map(Arc::new),
    };
    drop(admin);
    drop(service_token);
    let schedule = Schedule {
        flush_every: secs(args.auth_failure_window_s.max(1)),
        retention_every: secs(args.retention_interval_s.max(1)),
    };
    let base_nice = runtime::thread_nice().unwrap_or(0);
    let pools = usize::try_from(db.read_pool + db.write_pool).unwrap_or(16);
    let edge = args.edge_listen.is_some();
    let public_rt = runtime::build(
        Threads {
            name: if edge { "public" } else { "serve" },
            workers: 2,
            max_blocking: pools + 4,
            nice: if edge { args.public_nice } else { 0 },
        },
        base_nice,
    )
    .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let edge_rt = match args.edge_listen {
        None => None,
        Some(_) => Some(
            runtime::build(
                Threads {
                    name: "edge",
                    workers: args.edge_threads,
                    max_blocking: usize::try_from(db.read_pool).unwrap_or(8) + 2,
                    nice: 0,
                },
                base_nice,
            )
            .map_err(|e| format!("cannot start the edge runtime: {e}"))?,
        ),
    };
    // Each listener is registered with the runtime that serves it.
    let public_listener = bind(&public_rt, args.listen)?;
    let edge_listener = match (&edge_rt, args.edge_listen) {
        (Some(rt), Some(addr)) => Some((rt, bind(rt, addr)?)),
        _ => None,
    };
    let addr = public_listener.local_addr().map_err(|e| e.to_string())?;
    let edge_addr = match &edge_listener {
        Some((_, l)) => Some(l.local_addr().map_err(|e| e.to_string())?),
        None => None,
    };
    let public_nice = args.public_nice;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let edge_task = edge_listener.map(|(rt, listener)| {
        let (state, stopped) = (state.clone(), stopped(stopping.clone()));
        rt.spawn(http::serve_api(listener, state, Api::Edge, stopped))
    });
    let out = public_rt.block_on(async move {
        match edge_addr {
            Some(edge) => tracing::info!(
                address = %format!("http://{addr}"),
                edge_address = %format!("http://{edge}"),
                database = %describe(&db),
                public_nice,
                "listening"
            ),
            None => tracing::info!(address = %format!("http://{addr}"), database = %describe(&db), "listening"),
        }
        background::spawn(svc.clone(), schedule);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        });
        let api = if edge { Api::Public } else { Api::All };
        let public = tokio::spawn(http::serve_api(public_listener, state, api, stopped(stopping)));
        let served = public.await.map_err(|e| format!("server task: {e}"))?;
        served.map_err(|e| format!("server error: {e}"))?;
        if let Some(edge) = edge_task {
            let served = edge.await.map_err(|e| format!("edge server task: {e}"))?;
            served.map_err(|e| format!("edge server error: {e}"))?;
        }
        background::final_flush(svc, secs(2), schedule.flush_every).await;
        tracing::info!("stopped");
        Ok(())
    });
    // Connections still open after the grace period are dropped with the runtimes.
    public_rt.shutdown_timeout(grace.min(secs(1)));
    if let Some(rt) = edge_rt {
        rt.shutdown_timeout(grace.min(secs(1)));
    }
    out
}

fn run_client(svc: &Service, ctx: &Ctx, command: ClientCommand) -> Result<(), Failure> {
    match command {
        ClientCommand::Create {
            tenant,
            audiences,
            scopes,
            ips,
            token_lifetime_s,
        } => {
            let req = ClientRequest {
                audiences,
                scopes,
                ip_allowlist: (!ips.is_empty()).then_some(ips),
                token_lifetime_s,
            };
            print(&svc.create_client(ctx, &tenant, req)?)
        }
        ClientCommand::List { tenant } => print(&json!({ "clients": svc.list_clients(&tenant)? })),
        ClientCommand::Show { client_id } => print(&svc.get_client(&client_id)?),
        ClientCommand::Rotate { client_id, grace_s } => {
            print(&svc.rotate_client_secret(ctx, &client_id, RotateRequest { grace_s })?)
        }
        ClientCommand::Disable { client_id } => print(&svc.disable_client(ctx, &client_id)?),
        ClientCommand::Delete { client_id } => print(&svc.delete_client(ctx, &client_id)?),
        ClientCommand::Enable { client_id } => print(&svc.enable_client(ctx, &client_id)?),
        ClientCommand::Update {
            client_id,
            token_lifetime_s,
        } => print(&svc.update_client(ctx, &client_id, ClientUpdate { token_lifetime_s })?),
    }
}

/// A listening socket on `addr`, served by `rt`.
fn bind(rt: &tokio::runtime::Runtime, addr: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    rt.block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k: &str| map.get(k).cloned()
    }

    #[test]
    fn serve_refuses_missing_or_short_tokens() {
        let long = "x".repeat(32);
        let other = "y".repeat(40);
        let (a, s) = (ADMIN_TOKEN_ENV, SERVICE_TOKEN_ENV);
        let e = secrets_from_env(env_of(&[(s, &other)])).unwrap_err();
        assert!(e.contains(ADMIN_TOKEN_ENV), "{e}");
        let e = secrets_from_env(env_of(&[(a, &long)])).unwrap_err();
        assert!(e.contains(SERVICE_TOKEN_ENV), "{e}");
        let e = secrets_from_env(env_of(&[(a, "short"), (s, &other)])).unwrap_err();
        assert!(e.contains("shorter than 32"), "{e}");
        assert!(!e.contains("short\""), "the token itself is never echoed");
        assert!(secrets_from_env(env_of(&[(a, &"x".repeat(31)), (s, &other)])).is_err());
        let e = secrets_from_env(env_of(&[(a, &long), (s, &"y".repeat(1025))])).unwrap_err();
        assert!(e.contains("longer than 1024"), "{e}");
        assert!(secrets_from_env(env_of(&[(a, &long), (s, &"y".repeat(1024))])).is_ok());
        let e = secrets_from_env(env_of(&[(a, &long), (s, &long)])).unwrap_err();
        assert!(e.contains("must differ"), "{e}");
        let (admin, service) = secrets_from_env(env_of(&[(a, &long), (s, &other)])).unwrap();
        assert_eq!((admin.current, admin.previous), (long.clone(), None));
        assert_eq!(service.current, other);
    }

    #[test]
    fn tokens_roll_over_with_a_previous_one() {
        let (a, s) = (ADMIN_TOKEN_ENV, SERVICE_TOKEN_ENV);
        let (a_prev, s_prev) = ("EDGE_AUTH_ADMIN_TOKEN_PREVIOUS", "EDGE_AUTH_SERVICE_TOKEN_PREVIOUS");
        let (new_a, old_a, new_s, old_s) = ("a".repeat(32), "b".repeat(32), "c".repeat(32), "d".repeat(32));
        let (admin, service) =
            secrets_from_env(env_of(&[(a, &new_a), (a_prev, &old_a), (s, &new_s), (s_prev, &old_s)])).unwrap();
        assert_eq!(admin.previous.as_deref(), Some(old_a.as_str()));
        let secret = service.secret();
        assert_eq!(secret.check(&new_s), crate::http::Matched::Current);
        assert_eq!(secret.check(&old_s), crate::http::Matched::Previous);
        assert_eq!(secret.check(&new_a), crate::http::Matched::Neither);
        assert_eq!(secret.check(""), crate::http::Matched::Neither);
        // refused: a short previous, a previous equal to the current, an admin token that
        // is a service token in either role
        for bad in [
            vec![(a, new_a.as_str()), (a_prev, "short"), (s, new_s.as_str())],
            vec![(a, new_a.as_str()), (a_prev, new_a.as_str()), (s, new_s.as_str())],
            vec![(a, new_a.as_str()), (a_prev, new_s.as_str()), (s, new_s.as_str())],
            vec![(a, new_a.as_str()), (s, new_s.as_str()), (s_prev, new_a.as_str())],
            vec![
                (a, new_a.as_str()),
                (a_prev, old_s.as_str()),
                (s, new_s.as_str()),
                (s_prev, old_s.as_str()),
            ],
        ] {
            assert!(secrets_from_env(env_of(&bad)).is_err(), "{bad:?}");
        }
        // an empty previous is no previous
        let (admin, _) = secrets_from_env(env_of(&[(a, &new_a), (a_prev, ""), (s, &new_s)])).unwrap();
        assert_eq!(admin.previous, None);
    }

    #[test]
    fn the_edges_context_key_comes_from_the_environment() {
        let key = "k".repeat(32);
        let with = env_of;
        assert!(
            edge_context_from_env(with(&[]), 60).unwrap().is_none(),
            "off by default"
        );
        assert!(edge_context_from_env(with(&[(CONTEXT_KEY_ENV, &key)]), 60)
            .unwrap()
            .is_some());
        let both = [
            (CONTEXT_KEY_ENV, key.as_str()),
            (CONTEXT_KEY_PREVIOUS_ENV, "p".repeat(32).as_str()),
        ]
        .map(|(k, v)| (k, v.to_owned()));
        let both: Vec<(&str, &str)> = both.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert!(edge_context_from_env(with(&both), 60).unwrap().is_some());
        let e = edge_context_from_env(with(&[(CONTEXT_KEY_ENV, "short")]), 60).unwrap_err();
        assert!(e.contains("at least 32 bytes") && !e.contains("short\""), "{e}");
        assert!(edge_context_from_env(with(&[(CONTEXT_KEY_PREVIOUS_ENV, &key)]), 60).is_err());
        assert!(edge_context_from_env(with(&[(CONTEXT_KEY_ENV, &key), (CONTEXT_PREFIX_ENV, "X Bad")]), 60).is_err());
        assert!(edge_context_from_env(with(&[(CONTEXT_KEY_ENV, &key)]), 0).is_err());
    }

    #[test]
    fn command_line_parses() {
        let cli = Cli::try_parse_from([
            "edge-auth-service",
            "serve",
            "--db",
            "/tmp/x.db",
            "--listen",
            "127.0.0.1:0",
            "--issuer",
            "https://auth.test",
            "--audience",
            "api",
        ])
        .unwrap();
        assert_eq!(cli.db.as_deref(), Some(std::path::Path::new("/tmp/x.db")));
        assert!(matches!(cli.command, Command::Serve(_)));
        let cli = Cli::try_parse_from([
            "edge-auth-service",
            "--db",
            "x.db",
            "key",
            "create",
            "--tenant",
            "acme",
            "--subject",
            "svc",
            "--scope",
            "a",
            "--scope",
            "b",
        ])
        .unwrap();
        match cli.command {
            Command::Key(KeyCommand::Create { scopes, .. }) => assert_eq!(scopes, vec!["a", "b"]),
            other => panic!("{other:?}"),
        }
    }
}
