//! The edge-auth end-to-end harness.
//!
//! Everything runs on loopback (127.0.0.1 and [::1]) with bounded waits:
//!
//! * [`http`]: a small blocking HTTP/1.1 client over `std::net`, able to send
//!   raw and malformed requests ([`http::raw`]) and to reuse one connection
//!   ([`http::Conn`]).
//! * [`servers`]: test servers on ephemeral ports: the [`servers::EchoServer`]
//!   upstream, a [`servers::JwksServer`] whose answer changes at runtime, and the
//!   programmable [`servers::TestServer`] both are built on.
//! * [`envoy`]: starts the real Envoy (`$ENVOY_BIN`) with a generated bootstrap
//!   that loads the filter (`$EDGE_AUTH_WASM`) in front of an upstream.
//! * [`context`]: forged context headers, and verifying the signed ones.
//! * [`fleet`]: several Envoys against one auth service, each through a counting
//!   proxy, with steady load, floods and revocation timing (issue 14).
//! * [`service`]: the reference auth service as a child process, with its
//!   admin API and counters.
//! * [`fetch_counter`]: a fake auth service and JWKS that counts the polls
//!   and fetches an edge sends it; [`lds`]: an Envoy whose listener comes from
//!   a watched file, to reload the filter's configuration.
//! * [`egress`]: Envoy's credential_injector (the peer of edge-auth's egress
//!   token injection) and extra listeners in a generated bootstrap.
//! * [`issuer`]: a programmable OAuth 2.0 client-credentials issuer (503, 429,
//!   401 `invalid_client`, slow answers on demand) that records every token
//!   request and token, and an upstream stamping what it received (issue 16).
//! * [`tokens`]: key pairs for every supported algorithm (generated at test
//!   time, cached per process), JWKS/PEM export and token signing, including
//!   hand-crafted headers.

pub mod context;
pub mod egress;
pub mod envoy;
pub mod fetch_counter;
pub mod fleet;
pub mod http;
pub mod issuer;
pub mod lds;
pub mod servers;
pub mod service;
pub mod tokens;

use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use envoy::{Envoy, EnvoyOptions};
pub use http::{raw, request, Conn, Response};
pub use servers::{EchoServer, JwksServer, Reply, ServedRequest, TestServer};
pub use tokens::{Alg, TestKey};

/// Polls until `check` holds for [`IN_A_ROW`] answers in a row, or `timeout` passes. Every
/// request is a new connection and Envoy spreads connections over its workers at random
/// (SO_REUSEPORT hashing), so with two workers the chance that all of them landed on one
/// worker, and the other still answers the old way, is 2^-15. Four in a row (1 in 8) made
/// CI flaky: a state change seen by one worker only passed for "every worker".
pub fn settles(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    wait_until(timeout, || (0..IN_A_ROW).all(|_| check()))
}

/// How many answers in a row [`settles`] asks for.
pub const IN_A_ROW: usize = 16;

/// Polls `cond` every 20 ms until it holds or `timeout` elapses; returns
/// whether it held. Use it for anything asynchronous (JWKS refresh, stats).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The workspace root (the directory holding the root Cargo.toml).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Seconds since the Unix epoch, for `iat`/`nbf`/`exp` claims.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
