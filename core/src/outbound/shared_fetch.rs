//! One fetch per Envoy: the revocation feed and each remote JWKS are
//! fetched by one worker, elected through a lease in shared data, which
//! publishes what it got there for the others.
//!
//! Why a lease and not Envoy's singleton Wasm service
//! (`envoy.bootstrap.wasm`, `singleton: true`): the lease works wherever
//! the filter is loaded as an HTTP filter (plain Envoy, func-e, Istio's
//! WasmPlugin, other proxy-wasm hosts), with nothing to add to the
//! bootstrap; a singleton needs a bootstrap extension with a matching
//! `vm_id`, which a WasmPlugin cannot express.
//!
//! Every name below is made of a stable identity of what is fetched (the
//! cluster, authority and path, and for the feed a fingerprint of the
//! service token), never of the configuration's generation: proxy-wasm
//! shared data has no delete, so names must not grow with reloads, and a
//! reloaded configuration that polls the same feed finds its state at once.
//! The full identity is inside every value and checked on read.
//!
//! - `edge-auth.<kind>.<id>.lease`: `lease <identity> <holder> <until_ms>`,
//!   claimed and renewed with compare-and-swap. The holder renews it on its
//!   tick; if it goes away (its configuration unloaded, its VM gone, its
//!   worker stuck), the lease runs out after [`LEASE_MS`] and the next
//!   worker's tick claims it. (It is not given up explicitly when a
//!   configuration is unloaded: that would take `proxy_on_done`, which the
//!   build removes because Envoy would call it on every request.)
//! - `edge-auth.<kind>.<id>.head`: `head <identity> <seq> <fetched_at_ms>
//!   <attempted_at_ms>`: small, read by every worker on every tick. `seq`
//!   moves when the published body changes; `fetched_at_ms` is when the
//!   last good answer arrived, `attempted_at_ms` when the last fetch was
//!   sent (what a new holder schedules its first fetch from).
//! - `edge-auth.<kind>.<id>.body`: `body <identity> <seq>\n` and the bytes:
//!   read only when `seq` moved.

use sha2::{Digest, Sha256};

use super::Host;
use crate::config::AuthService;
use crate::jwt::RemoteJwks;

/// How long a lease lasts past its holder's last renewal. With the tick
/// ([`super::TICK_MS`]), another worker takes over at most
/// `LEASE_MS + TICK_MS` (1 s) after the holder's last tick: within one
/// interval, since the shortest poll interval is 1 s.
pub const LEASE_MS: u64 = 800;
/// The key holding the last instance number given out.
const INSTANCES: &str = "edge-auth.instances";
/// Attempts at a compare-and-swap write before giving up for this tick.
const CAS_TRIES: usize = 4;

/// The shared-data names of one fetched thing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shared {
    /// `sha256` of the identity, in hex.
    identity: String,
    /// `edge-auth.<kind>.<first 16 hex of identity>.`
    prefix: String,
}

impl Shared {
    fn new(kind: &str, parts: &[&str]) -> Shared {
        let mut h = Sha256::new();
        h.update(kind.as_bytes());
        for p in parts {
            // length-prefixed: no two lists of parts hash alike
            h.update((p.len() as u64).to_be_bytes());
            h.update(p.as_bytes());
        }
        let identity = crate::api_key::hex(&h.finalize().into());
        let prefix = format!("edge-auth.{kind}.{}.", &identity[..16]);
        Shared { identity, prefix }
    }

    /// The revocation feed of `svc`: cluster, authority, feed path and the
    /// service token (only its hash, inside the identity's hash).
    pub fn revocation(svc: &AuthService) -> Shared {
        let token = crate::api_key::hex(&Sha256::digest(svc.token.as_bytes()).into());
        Shared::new("rev", &[&svc.cluster, &svc.authority, &svc.revocations_path, &token])
    }

    /// The API-key lookup endpoint of `svc`: cluster, authority, lookup path
    /// and the service token (only its hash). Names the tables of answers,
    /// lookup markers and lookup budgets ([`crate::api_key::shared_cache`],
    /// [`crate::api_key::budget`]).
    pub fn lookups(svc: &AuthService, lookup_path: &str) -> Shared {
        let token = crate::api_key::hex(&Sha256::digest(svc.token.as_bytes()).into());
        Shared::new("keys", &[&svc.cluster, &svc.authority, lookup_path, &token])
    }

    /// A remote JWKS: cluster, authority and path.
    pub fn jwks(remote: &RemoteJwks) -> Shared {
        Shared::new("jwks", &[&remote.cluster, &remote.authority, &remote.path])
    }

    /// An `egress_tokens` entry's token: cluster, authority, path, client id,
    /// audience, scopes and the client secret (only its hash).
    pub fn egress(e: &crate::egress::EgressToken) -> Shared {
        let secret = crate::api_key::hex(&Sha256::digest(e.client_secret.expose().as_bytes()).into());
        let scopes = e.scopes.join(" ");
        let audience = e.audience.as_deref().unwrap_or("");
        Shared::new(
            "egress",
            &[
                &e.cluster,
                &e.authority,
                &e.path,
                &e.client_id,
                audience,
                &scopes,
                &secret,
            ],
        )
    }

    /// The name of one of its keys (`lease`, `head`, `body`).
    pub fn key(&self, part: &str) -> String {
        format!("{}{part}", self.prefix)
    }

    /// The full identity (hex), as the values carry it.
    pub fn identity(&self) -> &str {
        &self.identity
    }
}

/// A number no other root context of this proxy holds, from a counter in
/// shared data (0 if the counter cannot be moved: such a worker never
/// holds a lease, since 0 is the "nobody" holder).
pub fn instance_id(host: &mut dyn Host) -> u64 {
    for _ in 0..CAS_TRIES {
        let (value, cas) = host.shared_get(INSTANCES);
        let last = value
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        let next = last.wrapping_add(1).max(1);
        let Some(cas) = cas.or_else(|| create(host, INSTANCES)) else {
            continue;
        };
        if host
            .shared_set(INSTANCES, next.to_string().as_bytes(), Some(cas))
            .is_ok()
        {
            return next;
        }
    }
    0
}

/// Writes an empty value under a name never written, so that it has a
/// compare-and-swap version to claim it with. (Creation itself cannot be
/// compared and swapped: two workers creating it at once both succeed, and
/// the later claim wins, which the other sees on its next read.)
pub(super) fn create(host: &mut dyn Host, key: &str) -> Option<u32> {
    let _ = host.shared_set(key, b"", None);
    host.shared_get(key).1
}

/// A lease as read: its holder and until when.
fn read_lease(value: Option<&[u8]>, shared: &Shared) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(value?).ok()?;
    let mut f = text.split(' ');
    if f.next()? != "lease" || f.next()? != shared.identity {
        return None;
    }
    let holder = f.next()?.parse().ok()?;
    let until = f.next()?.parse().ok()?;
    f.next().is_none().then_some((holder, until))
}

/// Whether `me` holds `shared`'s lease after this call: renewed when held
/// and half run out, claimed when nobody holds it (free, run out, or
/// unreadable). `me == 0` never holds it.
pub fn hold(host: &mut dyn Host, shared: &Shared, me: u64, now_ms: u64) -> bool {
    if me == 0 {
        return false;
    }
    let key = shared.key("lease");
    let (value, cas) = host.shared_get(&key);
    match read_lease(value.as_deref(), shared) {
        Some((holder, until)) if holder != me && holder != 0 && now_ms < until => return false,
        Some((holder, until)) if holder == me && until.saturating_sub(now_ms) > LEASE_MS / 2 => return true,
        _ => {}
    }
    let Some(cas) = cas.or_else(|| create(host, &key)) else {
        return false;
    };
    let claim = format!("lease {} {me} {}", shared.identity, now_ms.saturating_add(LEASE_MS));
    host.shared_set(&key, claim.as_bytes(), Some(cas)).is_ok()
}

/// What the holder last published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    /// Moves when the body changes; 0: nothing published yet.
    pub seq: u64,
    /// When the last good answer arrived (0: never).
    pub fetched_at_ms: u64,
    /// When the last fetch was sent.
    pub attempted_at_ms: u64,
}

fn parse_head(value: &[u8], shared: &Shared) -> Option<Head> {
    let text = std::str::from_utf8(value).ok()?;
    let mut f = text.split(' ');
    if f.next()? != "head" || f.next()? != shared.identity {
        return None;
    }
    let head = Head {
        seq: f.next()?.parse().ok()?,
        fetched_at_ms: f.next()?.parse().ok()?,
        attempted_at_ms: f.next()?.parse().ok()?,
    };
    f.next().is_none().then_some(head)
}

/// The head as published, `None` when nothing (readable, of this identity) is.
pub fn read_head(host: &mut dyn Host, shared: &Shared) -> Option<Head> {
    parse_head(&host.shared_get(&shared.key("head")).0?, shared)
}

/// The body published with `seq`; `None` when the body held is another's
/// (a newer one being written, or unreadable).
pub fn read_body(host: &mut dyn Host, shared: &Shared, seq: u64) -> Option<Vec<u8>> {
    let value = host.shared_get(&shared.key("body")).0?;
    let nl = value.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&value[..nl]).ok()?;
    (header == format!("body {} {seq}", shared.identity)).then(|| value[nl + 1..].to_vec())
}

/// What a fetch brought, to publish.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    /// A new body (the state changed), or `None` (it did not, or the fetch failed).
    pub body: Option<&'a [u8]>,
    /// Whether the fetch succeeded (`fetched_at_ms` moves to now).
    pub fetched: bool,
    /// When the fetch was sent.
    pub attempted_at_ms: u64,
}

/// Publishes a fetch's outcome: the body first (with the next `seq`), then
/// the head, compare-and-swapped so that no two writers skip a `seq`.
/// Returns the `seq` the head holds afterwards (`None`: not written).
pub fn publish(host: &mut dyn Host, shared: &Shared, out: Outcome<'_>, now_ms: u64) -> Option<u64> {
    let key = shared.key("head");
    for _ in 0..CAS_TRIES {
        let (value, cas) = host.shared_get(&key);
        let old = value.as_deref().and_then(|v| parse_head(v, shared)).unwrap_or_default();
        let seq = old.seq.saturating_add(u64::from(out.body.is_some()));
        if let Some(body) = out.body {
            let mut v = format!("body {} {seq}\n", shared.identity).into_bytes();
            v.extend_from_slice(body);
            host.shared_set(&shared.key("body"), &v, None).ok()?;
        }
        let head = Head {
            seq,
            fetched_at_ms: if out.fetched { now_ms } else { old.fetched_at_ms },
            attempted_at_ms: out.attempted_at_ms.max(old.attempted_at_ms),
        };
        let text = format!(
            "head {} {} {} {}",
            shared.identity, head.seq, head.fetched_at_ms, head.attempted_at_ms
        );
        let Some(cas) = cas.or_else(|| create(host, &key)) else {
            continue;
        };
        if host.shared_set(&key, text.as_bytes(), Some(cas)).is_ok() {
            return Some(seq);
        }
    }
    None
}
