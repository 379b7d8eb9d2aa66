//! A fake auth service and identity provider that counts what an edge
//! fetches from it: revocation-feed polls (`GET /internal/v1/revocations`,
//! a snapshot revoking [`REVOKED_JTI`] without `since`, an empty increment
//! with it) and JWKS fetches (`GET /jwks`). Each one serves one Envoy (or
//! one fleet), so its counts are that Envoy's load on the service; with
//! [`FetchCounter::failing`] the feed answers 503 (a failing service).
//!
//! [`FetchCounter::plugin_config`] is a filter configuration that polls it
//! and fetches its keys every second; [`FetchCounter::token`] signs a
//! token it accepts (with `jti`), and [`FetchCounter::window`] counts
//! what arrives in a time window.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::tokens::{claims, jwks, Alg, TestKey};
use crate::{Reply, TestServer};

/// The service token the configuration reads from `FETCH_COUNTER_TOKEN`.
pub const SERVICE_TOKEN: &str = "svc-fetch-counter-0123456789abcdef0123456789";
/// The jti the feed revokes.
pub const REVOKED_JTI: &str = "revoked-by-the-feed";
pub const ISSUER: &str = "https://fetch-counter.e2e";
pub const AUDIENCE: &str = "counted";
/// Feed path and JWKS path.
pub const FEED_PATH: &str = "/internal/v1/revocations";
pub const JWKS_PATH: &str = "/jwks";

/// Polls and JWKS fetches received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fetches {
    pub polls: usize,
    pub jwks: usize,
}

pub struct FetchCounter {
    pub server: TestServer,
    pub key: TestKey,
    failing: Arc<AtomicBool>,
}

impl FetchCounter {
    pub fn start() -> FetchCounter {
        FetchCounter::with_revoked(0)
    }

    /// With `extra` more revoked jtis in the snapshot (`extra-<n>`), for a
    /// state of some size.
    pub fn with_revoked(extra: usize) -> FetchCounter {
        let key = TestKey::generate(Alg::ES256, "counted-1");
        let keys = jwks(&[&key]);
        let failing = Arc::new(AtomicBool::new(false));
        let fail = Arc::clone(&failing);
        let server = TestServer::start(move |r| {
            let path = r.path_only();
            if path == JWKS_PATH {
                return Reply::json(200, &keys);
            }
            if path != FEED_PATH {
                return Reply::new(404);
            }
            if fail.load(Ordering::SeqCst) {
                return Reply::json(503, &json!({"error": "unavailable"}));
            }
            let reset = !r.path.contains("since=");
            let jtis: Vec<Value> = if reset {
                let exp = crate::now() + 3600;
                std::iter::once(REVOKED_JTI.to_owned())
                    .chain((0..extra).map(|n| format!("extra-{n}")))
                    .map(|jti| json!({"jti": jti, "expires_at": exp}))
                    .collect()
            } else {
                Vec::new()
            };
            Reply::json(
                200,
                &json!({"cursor": "c1", "reset": reset, "poll_interval_s": 1, "revoked_before": null,
                        "subjects": [], "sessions": [], "jtis": jtis}),
            )
        });
        FetchCounter { server, key, failing }
    }

    /// The feed answers 503 from now on (or again 200).
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// What it received so far.
    pub fn fetches(&self) -> Fetches {
        let mut f = Fetches::default();
        for r in self.server.requests() {
            match r.path_only() {
                FEED_PATH => f.polls += 1,
                JWKS_PATH => f.jwks += 1,
                _ => {}
            }
        }
        f
    }

    /// What it receives during `d`.
    pub fn window(&self, d: Duration) -> Fetches {
        let a = self.fetches();
        std::thread::sleep(d);
        let b = self.fetches();
        Fetches {
            polls: b.polls - a.polls,
            jwks: b.jwks - a.jwks,
        }
    }

    /// A filter configuration: one provider with this server's JWKS
    /// (cluster `counted`, refreshed every second) and revocation checks
    /// (feed polled every second, stale after 3 s), `rule` naming its only
    /// rule (change it to change the configuration's generation).
    pub fn plugin_config(rule: &str) -> Value {
        json!({
            "auth_service": {"cluster": "counted", "token_env": "FETCH_COUNTER_TOKEN", "timeout_ms": 500,
                             "revocation_poll_s": 1, "revocation_max_staleness_s": 3},
            "providers": [{
                "name": "counted", "issuer": ISSUER, "audiences": [AUDIENCE], "algorithms": ["ES256"],
                "check_revocation": true,
                "remote_jwks": {"cluster": "counted", "path": JWKS_PATH, "timeout_ms": 500,
                                "refresh_interval_s": 1, "min_refetch_interval_s": 1}
            }],
            "rules": [{"name": rule, "match": {"prefix": "/"}, "jwt": {"providers": ["counted"]}}]
        })
    }

    /// Envoy options for [`Self::plugin_config`] in front of `upstream_port`.
    pub fn envoy_options(&self, upstream_port: u16, concurrency: u32) -> crate::EnvoyOptions {
        let mut o = crate::EnvoyOptions::new(FetchCounter::plugin_config("counted"), upstream_port)
            .cluster("counted", self.server.port())
            .env("FETCH_COUNTER_TOKEN", SERVICE_TOKEN);
        o.concurrency = concurrency;
        o
    }

    /// A token this provider accepts, with `jti`.
    pub fn token(&self, jti: &str) -> String {
        let mut c = claims(ISSUER, AUDIENCE, "alice", 600);
        c["jti"] = json!(jti);
        self.key.sign(&c)
    }
}
