//! The command line: `serve`, and admin commands that work on the database file directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use serde::Serialize;
use serde_json::json;

use crate::audit::Ctx;
use crate::error::ApiError;
use crate::http::{self, AppState, Secret, MIN_TOKEN_LEN};
use crate::service::{KeyRequest, RotateRequest, Service, SystemClock, TenantRequest, DEFAULT_GRACE_S};
use crate::tokens::TokenConfig;

/// The environment variable holding the admin token.
pub const ADMIN_TOKEN_ENV: &str = "EDGE_AUTH_ADMIN_TOKEN";
/// The environment variable holding the service token (shared with the edge).
pub const SERVICE_TOKEN_ENV: &str = "EDGE_AUTH_SERVICE_TOKEN";

#[derive(Debug, Parser)]
#[command(
    name = "edge-auth-service",
    version,
    about = "Reference auth service for the edge-auth filter"
)]
pub struct Cli {
    /// The SQLite database file (created and migrated if needed).
    #[arg(long, global = true, env = "EDGE_AUTH_DB", value_name = "PATH")]
    pub db: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API. Needs EDGE_AUTH_ADMIN_TOKEN and EDGE_AUTH_SERVICE_TOKEN (32+ characters each).
    Serve {
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        /// The `iss` of issued access tokens.
        #[arg(long)]
        issuer: String,
        /// The `aud` of issued access tokens.
        #[arg(long)]
        audience: String,
    },
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
    /// Show recent audit events, newest first.
    Audit {
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
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
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Revoke a session.
    Revoke { sid: String },
}

#[derive(Debug, Subcommand)]
pub enum SubjectCommand {
    /// Revoke every token of a subject issued until now, in every tenant.
    Revoke { subject: String },
}

#[derive(Debug, Subcommand)]
pub enum SigningKeyCommand {
    /// Make a new current signing key; the old one stays in the JWKS for the token lifetime.
    Rotate,
}

/// The admin and service tokens from the environment, checked.
pub fn secrets_from_env(get: impl Fn(&str) -> Option<String>) -> Result<(String, String), String> {
    let read = |name: &str| -> Result<String, String> {
        let v = get(name).ok_or_else(|| format!("{name} is not set: serve needs it from the environment"))?;
        if v.chars().count() < MIN_TOKEN_LEN {
            return Err(format!(
                "{name} is shorter than {MIN_TOKEN_LEN} characters: use a long random token"
            ));
        }
        Ok(v)
    };
    let admin = read(ADMIN_TOKEN_ENV)?;
    let service = read(SERVICE_TOKEN_ENV)?;
    if admin == service {
        return Err(format!(
            "{ADMIN_TOKEN_ENV} and {SERVICE_TOKEN_ENV} must differ: the edge holds the service token"
        ));
    }
    Ok((admin, service))
}

fn print<T: Serialize>(v: &T) -> Result<(), ApiError> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-auth-service: {e}");
            ExitCode::FAILURE
        }
    }
}

pub fn run(cli: Cli) -> Result<(), String> {
    let db = cli.db.ok_or("--db PATH (or EDGE_AUTH_DB) is required")?;
    if let Command::Serve {
        listen,
        issuer,
        audience,
    } = cli.command
    {
        return serve(db, listen, issuer, audience);
    }
    let svc = Service::open(&db, None, Arc::new(SystemClock)).map_err(|e| e.to_string())?;
    admin_command(&svc, cli.command).map_err(|e| e.to_string())
}

fn admin_command(svc: &Service, command: Command) -> Result<(), ApiError> {
    let ctx = Ctx::cli();
    match command {
        Command::Serve { .. } => Ok(()),
        Command::Tenant(TenantCommand::Create { name, origins, ips }) => print(&svc.create_tenant(
            &ctx,
            TenantRequest {
                name,
                allowed_origins: origins,
                ip_allowlist: ips,
            },
        )?),
        Command::Tenant(TenantCommand::List) => print(&json!({ "tenants": svc.list_tenants()? })),
        Command::Key(KeyCommand::Create {
            tenant,
            subject,
            scopes,
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
        Command::Session(SessionCommand::Revoke { sid }) => print(&svc.admin_revoke_session(&ctx, &sid)?),
        Command::Subject(SubjectCommand::Revoke { subject }) => print(&svc.admin_revoke_subject(&ctx, &subject)?),
        Command::RevokeAll => print(&svc.revoke_all(&ctx)?),
        Command::SigningKey(SigningKeyCommand::Rotate) => print(&svc.rotate_signing_key(&ctx)?),
        Command::Audit { limit } => print(&json!({ "events": svc.audit_events(limit)? })),
    }
}

fn serve(db: PathBuf, listen: SocketAddr, issuer: String, audience: String) -> Result<(), String> {
    let (admin, service_token) = secrets_from_env(|k| std::env::var(k).ok())?;
    if issuer.trim().is_empty() || audience.trim().is_empty() {
        return Err("--issuer and --audience must not be empty".into());
    }
    let svc = Service::open(&db, Some(TokenConfig { issuer, audience }), Arc::new(SystemClock))
        .map_err(|e| format!("cannot open {}: {e}", db.display()))?;
    let state = AppState {
        service: Arc::new(svc),
        admin_token: Secret::new(&admin),
        service_token: Secret::new(&service_token),
    };
    drop(admin);
    drop(service_token);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        eprintln!(
            "edge-auth-service: listening on http://{addr} (database {})",
            db.display()
        );
        http::serve(listener, state, shutdown_signal())
            .await
            .map_err(|e| format!("server error: {e}"))?;
        eprintln!("edge-auth-service: stopped");
        Ok(())
    })
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_refuses_missing_or_short_tokens() {
        let long = "x".repeat(32);
        let other = "y".repeat(40);
        let env = |a: Option<&str>, s: Option<&str>| {
            let (a, s) = (a.map(str::to_owned), s.map(str::to_owned));
            move |k: &str| if k == ADMIN_TOKEN_ENV { a.clone() } else { s.clone() }
        };
        let e = secrets_from_env(env(None, Some(&other))).unwrap_err();
        assert!(e.contains(ADMIN_TOKEN_ENV), "{e}");
        let e = secrets_from_env(env(Some(&long), None)).unwrap_err();
        assert!(e.contains(SERVICE_TOKEN_ENV), "{e}");
        let e = secrets_from_env(env(Some("short"), Some(&other))).unwrap_err();
        assert!(e.contains("shorter than 32"), "{e}");
        assert!(!e.contains("short\""), "the token itself is never echoed");
        assert!(secrets_from_env(env(Some(&"x".repeat(31)), Some(&other))).is_err());
        let e = secrets_from_env(env(Some(&long), Some(&long))).unwrap_err();
        assert!(e.contains("must differ"), "{e}");
        assert_eq!(secrets_from_env(env(Some(&long), Some(&other))).unwrap(), (long, other));
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
        assert!(matches!(cli.command, Command::Serve { .. }));
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
