//! A fleet on one machine (issue 14): several Envoys, each with the filter and its own
//! `--concurrency`, in front of one real upstream, all asking one real auth service.
//!
//! Each Envoy reaches the service through a [`CountingProxy`] of its own, so that the
//! service's load can be split per Envoy and per endpoint (lookups, feed polls, JWKS),
//! which the service's own counters cannot do. [`Fleet`] starts the stack, keeps steady
//! load on every Envoy ([`Load`]), floods them with invented keys, restarts one Envoy, and
//! times revocations from the service's acknowledgement to the last edge refusing
//! ([`Fleet::time_to_refusal`]). Used by `tests/e2e/fleet.rs` and by `make bench-fleet`
//! (`src/bin/fleet_bench.rs`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::service::{AuthService, KEY_TAG_ENV, KEY_TAG_SECRET, SERVICE_TOKEN};
use crate::{http, EchoServer, Envoy, EnvoyOptions, Reply, TestServer};

/// The counter the shared verified-token table of issue 14 adds; absent on older filters.
pub const SIGNATURE_VERIFICATIONS: &str = "edge_auth.jwt.signature_verifications";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What an Envoy asked the service, by endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calls {
    pub lookups: u64,
    pub feed: u64,
    pub jwks: u64,
    pub other: u64,
}

impl Calls {
    pub fn total(&self) -> u64 {
        self.lookups + self.feed + self.jwks + self.other
    }

    /// `self - before`, per endpoint.
    pub fn since(&self, before: &Calls) -> Calls {
        Calls {
            lookups: self.lookups - before.lookups,
            feed: self.feed - before.feed,
            jwks: self.jwks - before.jwks,
            other: self.other - before.other,
        }
    }
}

/// A forwarding HTTP proxy in front of the service that counts what passes, by endpoint.
pub struct CountingProxy {
    pub server: TestServer,
    calls: Arc<Mutex<Calls>>,
}

const HOP_HEADERS: [&str; 5] = [
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
];

impl CountingProxy {
    pub fn start(service_port: u16) -> CountingProxy {
        let calls = Arc::new(Mutex::new(Calls::default()));
        let counted = Arc::clone(&calls);
        let server = TestServer::start(move |req| {
            {
                let mut c = lock(&counted);
                match req.path_only() {
                    "/internal/v1/api-keys/lookup" => c.lookups += 1,
                    "/internal/v1/revocations" => c.feed += 1,
                    "/.well-known/jwks.json" => c.jwks += 1,
                    _ => c.other += 1,
                }
            }
            let headers: Vec<(&str, &str)> = req
                .headers
                .iter()
                .filter(|(k, _)| !HOP_HEADERS.contains(&k.to_ascii_lowercase().as_str()))
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            match http::try_request(("127.0.0.1", service_port), &req.method, &req.path, &headers, &req.body) {
                Ok(r) => {
                    let mut reply = Reply::new(r.status).body(r.body);
                    for (k, v) in r.headers {
                        if !HOP_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                            reply = reply.header(&k, &v);
                        }
                    }
                    reply
                }
                Err(_) => Reply::new(502),
            }
        });
        CountingProxy { server, calls }
    }

    pub fn port(&self) -> u16 {
        self.server.addr().port()
    }

    pub fn calls(&self) -> Calls {
        *lock(&self.calls)
    }
}

/// Knobs of one fleet.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    pub envoys: usize,
    pub concurrency: u32,
    pub revocation_poll_s: u64,
    /// `api_keys.max_cache_ttl_s`: how long a valid key answer is used at the edge.
    pub key_cache_ttl_s: u64,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            envoys: 3,
            concurrency: 2,
            revocation_poll_s: 1,
            key_cache_ttl_s: 300,
        }
    }
}

/// The filter's configuration for every Envoy of the fleet: `/api/` takes the service's
/// tokens (checked against its feed), `/k/` takes API keys, tagged (`key_tags`, with the
/// secret the fleet's service mints with), so an invented key costs no lookup.
pub fn edge_config(svc: &AuthService, opts: &FleetOptions) -> Value {
    json!({
        "auth_service": {"cluster": "auth", "token_env": "E2E_SERVICE_TOKEN", "timeout_ms": 500,
                         "revocation_poll_s": opts.revocation_poll_s,
                         "revocation_max_staleness_s": (opts.revocation_poll_s * 5).max(3)},
        "providers": [{
            "name": "svc", "issuer": format!("http://127.0.0.1:{}", svc.port), "audiences": ["e2e-app"],
            "algorithms": ["ES256"], "check_revocation": true, "max_lifetime_s": 900,
            "remote_jwks": {"cluster": "auth", "path": "/.well-known/jwks.json", "min_refetch_interval_s": 1}
        }],
        "api_keys": {"sources": [{"header": "x-api-key"}], "max_cache_ttl_s": opts.key_cache_ttl_s,
                     "key_tags": {"secret_env": KEY_TAG_ENV}},
        "rules": [
            {"name": "user", "match": {"prefix": "/api/"}, "jwt": {"providers": ["svc"]}},
            {"name": "keys", "match": {"prefix": "/k/"}, "api_key": {}}
        ]
    })
}

/// One edge: its Envoy and the proxy it reaches the service through.
pub struct Edge {
    pub envoy: Envoy,
    pub proxy: CountingProxy,
}

/// The stack: one service, one upstream, `opts.envoys` edges.
pub struct Fleet {
    pub svc: AuthService,
    pub upstream: EchoServer,
    pub edges: Vec<Edge>,
    pub opts: FleetOptions,
    /// The edges' listener addresses, shared with [`Load`] threads (updated on restart).
    pub addrs: Arc<Mutex<Vec<SocketAddr>>>,
    /// Edges restarted so far (their index).
    pub restarted: Vec<usize>,
}

/// A credential the load or a probe sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Token(String),
    Key(String),
}

impl Credential {
    fn path(&self) -> &'static str {
        match self {
            Credential::Token(_) => "/api/x",
            Credential::Key(_) => "/k/x",
        }
    }
}

/// One request with `cred` to `addr` on a fresh connection (so that successive calls spread
/// over the Envoy's workers); the status, or 0 if the request failed.
pub fn call(addr: SocketAddr, cred: &Credential) -> u16 {
    let (name, value) = match cred {
        Credential::Token(t) => ("authorization", format!("Bearer {t}")),
        Credential::Key(k) => ("x-api-key", k.clone()),
    };
    http::try_request(addr, "GET", cred.path(), &[(name, value.as_str())], "").map_or(0, |r| r.status)
}

impl Fleet {
    pub fn start(opts: FleetOptions) -> Fleet {
        let svc = AuthService::start_tagged();
        svc.tenant("acme", &[], &[]);
        let upstream = EchoServer::start();
        let mut fleet = Fleet {
            svc,
            upstream,
            edges: Vec::new(),
            opts: opts.clone(),
            addrs: Arc::new(Mutex::new(Vec::new())),
            restarted: Vec::new(),
        };
        for _ in 0..opts.envoys {
            let edge = fleet.start_edge();
            lock(&fleet.addrs).push(edge.envoy.addr());
            fleet.edges.push(edge);
        }
        fleet
    }

    fn start_edge(&self) -> Edge {
        let proxy = CountingProxy::start(self.svc.port);
        let mut opts = EnvoyOptions::new(edge_config(&self.svc, &self.opts), self.upstream.port())
            .cluster("auth", proxy.port())
            .env("E2E_SERVICE_TOKEN", SERVICE_TOKEN)
            .env(KEY_TAG_ENV, KEY_TAG_SECRET);
        opts.concurrency = self.opts.concurrency;
        // several Envoys start on a shared, busy machine
        opts.startup_timeout = Duration::from_secs(60);
        let envoy = Envoy::start(opts).unwrap_or_else(|e| panic!("{e}"));
        Edge { envoy, proxy }
    }

    /// Replaces edge `i` by a new Envoy process (a restart: its workers start with empty
    /// caches and no revocation state); it is ready when this returns.
    pub fn restart(&mut self, i: usize) {
        let edge = self.start_edge();
        lock(&self.addrs)[i] = edge.envoy.addr();
        self.edges[i] = edge;
        self.restarted.push(i);
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        lock(&self.addrs).clone()
    }

    /// What each edge has asked the service so far.
    pub fn calls(&self) -> Vec<Calls> {
        self.edges.iter().map(|e| e.proxy.calls()).collect()
    }

    /// A new API key of `tenant`: `(api_key, key_id)`.
    pub fn key(&self, tenant: &str, subject: &str) -> (String, String) {
        self.svc.key(tenant, json!({"subject": subject, "scopes": []}))
    }

    /// A session of `subject` created with `api_key` at the service: its access token.
    pub fn session(&self, api_key: &str, subject: &str) -> String {
        let r = http::request(
            ("127.0.0.1", self.svc.port),
            "POST",
            "/v1/sessions",
            &[("x-api-key", api_key), ("content-type", "application/json")],
            json!({"subject": subject}).to_string(),
        );
        assert_eq!(r.status, 201, "create a session: {}", r.summary());
        r.json()["access_token"].as_str().unwrap_or_default().to_owned()
    }

    /// Waits until `cred` is accepted by every edge `repeat` times in a row (fresh
    /// connections, so that several workers answer); false after `timeout`.
    pub fn accepted_everywhere(&self, cred: &Credential, repeat: usize, timeout: Duration) -> bool {
        crate::wait_until(timeout, || {
            self.addrs().iter().all(|a| (0..repeat).all(|_| call(*a, cred) == 200))
        })
    }

    /// Polls every edge every `every` until each has refused `cred` (401) `confirm` times in
    /// a row; the time from `acknowledged` to the last edge's first refusal of that run, or
    /// None if some edge still accepts it at `deadline`.
    pub fn time_to_refusal(
        &self,
        cred: &Credential,
        acknowledged: Instant,
        deadline: Duration,
        confirm: usize,
    ) -> Option<Duration> {
        let addrs = self.addrs();
        let mut streak = vec![0usize; addrs.len()];
        let mut first = vec![None::<Instant>; addrs.len()];
        loop {
            for (i, a) in addrs.iter().enumerate() {
                if streak[i] >= confirm {
                    continue;
                }
                let at = Instant::now();
                if call(*a, cred) == 401 {
                    if streak[i] == 0 {
                        first[i] = Some(at);
                    }
                    streak[i] += 1;
                } else {
                    streak[i] = 0;
                }
            }
            if streak.iter().all(|s| *s >= confirm) {
                return first
                    .iter()
                    .flatten()
                    .max()
                    .map(|t| t.saturating_duration_since(acknowledged));
            }
            if acknowledged.elapsed() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Signature verifications per edge: the counter of issue 14 if the filter has it.
    pub fn signature_verifications(&self) -> Vec<Option<u64>> {
        self.edges
            .iter()
            .map(|e| e.envoy.try_stat(SIGNATURE_VERIFICATIONS))
            .collect()
    }

    /// Verified-token cache misses per edge (`token_cache.miss`, summed over workers).
    pub fn token_cache_misses(&self) -> Vec<u64> {
        self.edges
            .iter()
            .map(|e| e.envoy.try_stat("edge_auth.token_cache.miss").unwrap_or(0))
            .collect()
    }
}

/// An operator's revocation, as the service acknowledges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Revocation {
    Session,
    Subject,
    Global,
    Key,
    TenantKeys,
}

impl Revocation {
    pub const ALL: [Revocation; 5] = [
        Revocation::Session,
        Revocation::Subject,
        Revocation::Global,
        Revocation::Key,
        Revocation::TenantKeys,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Revocation::Session => "session",
            Revocation::Subject => "subject",
            Revocation::Global => "global (revoke-all)",
            Revocation::Key => "one API key",
            Revocation::TenantKeys => "all keys of a tenant",
        }
    }
}

/// The latest `revoked_before` a global revocation set (tokens must be issued after it).
static LAST_GLOBAL_CUTOFF: AtomicU64 = AtomicU64::new(0);

/// Prepares a fresh credential of `kind` (trial `n`), accepted at every edge, then revokes it
/// at the service and returns it with the instant the admin call returned 200.
pub fn revoke(fleet: &Fleet, kind: Revocation, n: usize) -> (Credential, Instant) {
    let tenant = format!("t{n}-{}", kind as u8);
    let (cred, path) = match kind {
        Revocation::Session | Revocation::Subject | Revocation::Global => {
            // a token issued before the last global cut-off is born revoked
            let cutoff = LAST_GLOBAL_CUTOFF.load(Ordering::Relaxed);
            crate::wait_until(Duration::from_secs(3), || crate::now() >= cutoff);
            let (key, _) = fleet.key("acme", &format!("sdk-{n}"));
            let subject = format!("user-{}-{n}", kind as u8);
            let token = fleet.session(&key, &subject);
            let claims = crate::tokens::decode_unverified(&token)
                .map(|(_, c)| c)
                .unwrap_or_default();
            let path = match kind {
                Revocation::Session => format!("/admin/v1/sessions/{}/revoke", claims["sid"].as_str().unwrap_or("")),
                Revocation::Subject => format!("/admin/v1/tenants/acme/subjects/{subject}/revoke"),
                _ => "/admin/v1/revoke-all".to_owned(),
            };
            (Credential::Token(token), path)
        }
        Revocation::Key => {
            let (key, id) = fleet.key("acme", &format!("svc-{n}"));
            (Credential::Key(key), format!("/admin/v1/keys/{id}/revoke"))
        }
        Revocation::TenantKeys => {
            fleet.svc.tenant(&tenant, &[], &[]);
            let (key, _) = fleet.key(&tenant, &format!("svc-{n}"));
            (
                Credential::Key(key),
                format!("/admin/v1/tenants/{tenant}/keys/revoke-all"),
            )
        }
    };
    assert!(
        fleet.accepted_everywhere(&cred, 4, Duration::from_secs(10)),
        "a fresh {} credential is not accepted at every edge",
        kind.name()
    );
    let r = fleet.svc.admin(&path, json!({}));
    let acknowledged = Instant::now();
    assert_eq!(r.status, 200, "{path}: {}", r.summary());
    if let Some(cutoff) = r.json()["revoked_before"].as_u64() {
        LAST_GLOBAL_CUTOFF.fetch_max(cutoff, Ordering::Relaxed);
    }
    (cred, acknowledged)
}

/// Steady load: `per_edge` threads per edge, each sending its credentials in turn, one
/// request every `pause`, on fresh connections. Stops (and joins) when dropped.
pub struct Load {
    stop: Arc<AtomicBool>,
    pub sent: Arc<AtomicU64>,
    pub ok: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    pub fn start(
        addrs: &Arc<Mutex<Vec<SocketAddr>>>,
        creds: Vec<Credential>,
        per_edge: usize,
        pause: Duration,
    ) -> Load {
        Load::spawn(addrs, per_edge, pause, move |i| creds[i % creds.len()].clone())
    }

    /// A flood of invented, well-formed keys (`sk_` + 64 random hex digits), each new.
    pub fn flood(addrs: &Arc<Mutex<Vec<SocketAddr>>>, per_edge: usize, pause: Duration) -> Load {
        Load::spawn(addrs, per_edge, pause, |_| {
            Credential::Key(format!("sk_{}", random_hex(64)))
        })
    }

    fn spawn(
        addrs: &Arc<Mutex<Vec<SocketAddr>>>,
        per_edge: usize,
        pause: Duration,
        next: impl Fn(usize) -> Credential + Send + Sync + 'static,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let ok = Arc::new(AtomicU64::new(0));
        let next = Arc::new(next);
        let edges = lock(addrs).len();
        let mut threads = Vec::new();
        for t in 0..edges * per_edge {
            let (stop, sent, ok, next, addrs) = (stop.clone(), sent.clone(), ok.clone(), next.clone(), addrs.clone());
            threads.push(std::thread::spawn(move || {
                let mut n = t;
                while !stop.load(Ordering::Relaxed) {
                    let addr = lock(&addrs)[t % edges];
                    if call(addr, &next(n)) == 200 {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                    std::thread::sleep(pause);
                }
            }));
        }
        Load {
            stop,
            sent,
            ok,
            threads,
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// `n` random lower-case hex digits (from the OS's randomness via std's hasher keys and the
/// clock; invented keys only need to be distinct and unpredictable to the cache).
pub fn random_hex(n: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::with_capacity(n + 16);
    while out.len() < n {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(Instant::now().elapsed().as_nanos());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(n);
    out
}

impl Fleet {
    /// What each edge asked the service during `window`, after `warmup`, while the load
    /// sends `creds` (and, with `flood`, invented keys) to every edge.
    pub fn steady_calls(
        &self,
        creds: &[Credential],
        flood: bool,
        warmup: Duration,
        window: Duration,
    ) -> (Vec<Calls>, u64) {
        let _load = Load::start(&self.addrs, creds.to_vec(), 2, Duration::from_millis(20));
        let flood = flood.then(|| Load::flood(&self.addrs, 2, Duration::ZERO));
        std::thread::sleep(warmup);
        let before = self.calls();
        let sent_before = flood.as_ref().map_or(0, |f| f.sent.load(Ordering::Relaxed));
        std::thread::sleep(window);
        let after = self.calls();
        let flooded = flood.as_ref().map_or(0, |f| f.sent.load(Ordering::Relaxed)) - sent_before;
        (after.iter().zip(&before).map(|(a, b)| a.since(b)).collect(), flooded)
    }
}
