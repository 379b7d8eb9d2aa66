//! edge-auth-service: the reference auth service behind the edge-auth filter.
//!
//! It keeps tenants, API keys (hashed), sessions and refresh tokens (hashed),
//! revocations and ES256 signing keys in SQLite (one file) or PostgreSQL (shared
//! by several replicas), answers the edge's API-key lookups and revocation polls,
//! serves the JWKS, issues sessions to SaaS backends, and offers an admin API and
//! command line. See `docs/auth-service-api.md` for the contract.
//!
//! Layers, each depending only on those below it: `cli`, `runtime` (the threads
//! that serve) and `http` (the outside), `background`, `service` (the operations),
//! `revocation`, `keys`, `clients` (machine clients, the client-credentials grant),
//! `client_limits`, `tokens`, `audit`, `guard`, `validate`, `store` (every SQL
//! statement), `db` (the engines), `model`, `ids`, `error`.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod audit;
pub mod background;
pub mod cli;
pub mod client_limits;
pub mod clients;
pub mod db;
pub mod edge_context;
pub mod error;
pub mod guard;
pub mod http;
pub mod ids;
pub mod key_tags;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod revocation;
pub mod runtime;
pub mod secrets;
pub mod service;
pub mod store;
pub mod tokens;
pub mod usage;
pub mod validate;

pub use error::Error;
pub use service::{Clock, ManualClock, Service, SystemClock};
