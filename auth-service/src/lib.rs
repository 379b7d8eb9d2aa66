//! edge-auth-service: the reference auth service behind the edge-auth filter.
//!
//! It keeps tenants, API keys (hashed), sessions and refresh tokens (hashed),
//! revocations and ES256 signing keys in one SQLite file, answers the edge's
//! API-key lookups and revocation polls, serves the JWKS, issues sessions to SaaS
//! backends, and offers an admin API and command line. See
//! `docs/auth-service-api.md` for the contract.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod audit;
pub mod cli;
pub mod error;
pub mod http;
pub mod keys;
pub mod revocation;
pub mod service;
pub mod store;
pub mod tokens;
pub mod validate;

pub use error::ApiError;
pub use service::{Clock, ManualClock, Service, SystemClock};
