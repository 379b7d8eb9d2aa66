//! Failed authentication: counted, rate-limited per client address, and audited
//! in bounded, aggregated form.
//!
//! * Each failure (a wrong admin or service token, an unknown API key, refresh
//!   token or access token...) takes a token from its client's bucket (`burst`
//!   tokens, refilled at `per_s` a second). A client whose bucket is empty is
//!   *limited*: its failures are answered `429` with `Retry-After`, and its API keys
//!   are refused before the database is asked. A valid admin or service token is
//!   always accepted (checking it costs no database work).
//! * Failures are not written one by one. They are counted in memory per (action,
//!   actor, route template, client) and written as one audit row per window with
//!   the count and the reasons: a flood of any size writes a bounded number of rows,
//!   and no row holds client-written text (routes are the router's templates).
//! * Memory is bounded: at most `max_clients` buckets (IPv6 clients are counted per
//!   /64) and `max_rows` aggregates per window; beyond them, clients share one
//!   overflow bucket and one overflow row (client `*`).
//! * A limited client's requests are refused before anything else is done with them
//!   ([`AuthGuard::limited_client`], [`AuthGuard::refuse`]): they are not logged one by
//!   one but counted per client, and [`AuthGuard::take_refused`] gives one log line's
//!   worth per client per window.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};

use serde_json::json;

use crate::audit::{truncate, FAILURE};
use crate::model::NewAudit;

#[derive(Debug, Clone, PartialEq)]
pub struct GuardConfig {
    /// Failures a client may make at once.
    pub burst: u32,
    /// Failures a second a client regains.
    pub per_s: f64,
    /// Clients tracked at once.
    pub max_clients: usize,
    /// Aggregated audit rows per window.
    pub max_rows: usize,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            burst: 100,
            per_s: 10.0,
            max_clients: 100_000,
            max_rows: 1_000,
        }
    }
}

/// Longest route template kept (templates come from the router; this is a safety net).
const MAX_ROUTE: usize = 128;

/// The client a failure is counted against: its address, IPv6 by /64.
/// `None` (no peer known) is one client.
pub fn client_of(peer: Option<&str>) -> Option<IpAddr> {
    Some(client_of_ip(peer?.parse().ok()?))
}

/// [`client_of`] for an address already parsed.
pub fn client_of_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(seg.into())
            }
        },
        v4 => v4,
    }
}

fn client_label(client: Option<IpAddr>) -> String {
    match client {
        Some(IpAddr::V6(v6)) => format!("{v6}/64"),
        Some(v4) => v4.to_string(),
        None => "unknown".to_owned(),
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: i64,
    /// Requests refused because the client was limited, since the last [`AuthGuard::take_refused`].
    refused: u64,
}

impl Bucket {
    fn refill(&mut self, cfg: &GuardConfig, now: i64) {
        let elapsed = (now - self.at).max(0) as f64;
        self.tokens = (self.tokens + elapsed * cfg.per_s).min(f64::from(cfg.burst));
        self.at = now;
    }

    /// Seconds until one token is back, if there is none now.
    fn retry_after(&self, cfg: &GuardConfig) -> Option<u64> {
        (self.tokens < 1.0).then(|| {
            if cfg.per_s <= 0.0 {
                u64::MAX
            } else {
                ((1.0 - self.tokens) / cfg.per_s).ceil().max(1.0) as u64
            }
        })
    }
}

/// One aggregated row being counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub count: u64,
    pub reasons: BTreeMap<&'static str, u64>,
    pub first: i64,
    pub last: i64,
}

/// Whose failures a row counts: a client, or every client beyond `max_rows` (`*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Who {
    Client(Option<IpAddr>),
    Overflow,
}

/// (action, actor, route template, client). Static actors and routes are not copied.
type TallyKey = (&'static str, Cow<'static, str>, Cow<'static, str>, Who);

/// The failures counted since the last flush.
#[derive(Debug, Default)]
pub struct Pending(HashMap<TallyKey, Tally>);

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The audit rows: one per key, with the count and reasons.
    pub fn rows(&self) -> Vec<NewAudit> {
        let mut rows: Vec<NewAudit> = self
            .0
            .iter()
            .map(|((action, actor, route, who), t)| NewAudit {
                ts: t.first,
                actor: actor.clone().into_owned(),
                tenant: None,
                action: (*action).to_owned(),
                target: Some(route.clone().into_owned()),
                outcome: FAILURE.to_owned(),
                peer: Some(match who {
                    Who::Client(c) => client_label(*c),
                    Who::Overflow => "*".to_owned(),
                }),
                forwarded_for: None,
                detail: Some(json!({
                    "count": t.count,
                    "reasons": t.reasons,
                    "first_ts": t.first,
                    "last_ts": t.last,
                })),
            })
            .collect();
        rows.sort_by(|a, b| (a.ts, &a.action, &a.target, &a.peer).cmp(&(b.ts, &b.action, &b.target, &b.peer)));
        rows
    }

    /// Failures counted, all rows together.
    pub fn failures(&self) -> u64 {
        self.0.values().map(|t| t.count).sum()
    }
}

/// A failed authentication to count.
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    /// The audit action: `admin.auth`, `service.auth`, `api_key.auth`, `session.refresh`, `session.logout`.
    pub action: &'static str,
    /// `anonymous`, or `api_key:<key id>` when a valid key presented a bad token.
    pub actor: &'a str,
    /// The route template (`/admin/v1/keys/{key_id}/revoke`), never the raw path.
    pub route: &'a str,
    pub reason: &'static str,
}

/// What [`AuthGuard::take_refused`] gives: requests refused because their client was
/// limited, per client (at most `max_rows` clients, the busiest), and the rest summed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Refused {
    /// (client label, requests refused), the most refused first.
    pub clients: Vec<(String, u64)>,
    /// Clients left out of `clients`, and the requests they were refused.
    pub other_clients: u64,
    pub other_requests: u64,
}

pub struct AuthGuard {
    cfg: GuardConfig,
    buckets: Mutex<HashMap<Option<IpAddr>, Bucket>>,
    overflow: Mutex<Bucket>,
    pending: Mutex<Pending>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AuthGuard {
    pub fn new(cfg: GuardConfig) -> AuthGuard {
        let full = Bucket {
            tokens: f64::from(cfg.burst),
            at: 0,
            refused: 0,
        };
        AuthGuard {
            cfg,
            buckets: Mutex::new(HashMap::new()),
            overflow: Mutex::new(full),
            pending: Mutex::new(Pending::default()),
        }
    }

    pub fn config(&self) -> &GuardConfig {
        &self.cfg
    }

    /// Runs `f` on the client's bucket (refilled to `now`), making one if needed.
    fn with_bucket<T>(&self, client: Option<IpAddr>, now: i64, f: impl FnOnce(&mut Bucket) -> T) -> T {
        let mut buckets = lock(&self.buckets);
        if !buckets.contains_key(&client) && buckets.len() >= self.cfg.max_clients {
            // Forget clients whose bucket is full again: they carry no state (but
            // refusals not yet logged).
            let cfg = &self.cfg;
            buckets.retain(|_, b| {
                b.refill(cfg, now);
                b.tokens < f64::from(cfg.burst) || b.refused > 0
            });
        }
        if buckets.contains_key(&client) || buckets.len() < self.cfg.max_clients {
            let b = buckets.entry(client).or_insert(Bucket {
                tokens: f64::from(self.cfg.burst),
                at: now,
                refused: 0,
            });
            b.refill(&self.cfg, now);
            return f(b);
        }
        drop(buckets);
        let mut b = lock(&self.overflow);
        b.refill(&self.cfg, now);
        f(&mut b)
    }

    /// If this client is limited now: the seconds until it may fail again.
    pub fn limited(&self, peer: Option<&str>, now: i64) -> Option<u64> {
        self.limited_client(client_of(peer), now)
    }

    /// [`AuthGuard::limited`] for a client already known (see [`client_of_ip`]).
    pub fn limited_client(&self, client: Option<IpAddr>, now: i64) -> Option<u64> {
        let mut buckets = lock(&self.buckets);
        if let Some(b) = buckets.get_mut(&client) {
            b.refill(&self.cfg, now);
            return b.retry_after(&self.cfg);
        }
        // Unknown clients are not limited (unless the table is full and the overflow bucket is empty).
        if buckets.len() < self.cfg.max_clients {
            return None;
        }
        drop(buckets);
        self.with_bucket(client, now, |b| b.retry_after(&self.cfg))
    }

    /// Counts a request refused because its client is limited: in the client's
    /// refusals (for the log) and in the audit aggregate (reason `rate_limited`).
    pub fn refuse(&self, action: &'static str, route: &'static str, client: Option<IpAddr>, now: i64) {
        self.with_bucket(client, now, |b| b.refused += 1);
        self.count(
            action,
            Cow::Borrowed("anonymous"),
            Cow::Borrowed(route),
            "rate_limited",
            client,
            now,
        );
    }

    /// Counts a connection refused at accept because its client is limited: in the
    /// client's refusals (for the log) only. Nothing was read from it, so nothing is
    /// audited: no request, route or credential is known.
    pub fn refuse_connection(&self, client: Option<IpAddr>, now: i64) {
        self.with_bucket(client, now, |b| b.refused += 1);
    }

    /// Takes a token from the client's bucket for a request refused before it could be
    /// read (a head over the size limit): such requests limit their client as failed
    /// authentications do, but are not audited (the metrics count them).
    pub fn strike(&self, client: Option<IpAddr>, now: i64) {
        self.with_bucket(client, now, |b| {
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
            }
        });
    }

    /// Takes the refusals counted per client since the last call (at most `max_rows`
    /// clients named, the most refused first; the others summed).
    pub fn take_refused(&self) -> Refused {
        let mut all: Vec<(Option<IpAddr>, u64)> = Vec::new();
        for (client, b) in lock(&self.buckets).iter_mut() {
            if b.refused > 0 {
                all.push((*client, std::mem::take(&mut b.refused)));
            }
        }
        let overflow = std::mem::take(&mut lock(&self.overflow).refused);
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let keep = self.cfg.max_rows.min(all.len());
        let rest = all.split_off(keep);
        let mut out = Refused {
            clients: all.into_iter().map(|(c, n)| (client_label(c), n)).collect(),
            other_clients: rest.len() as u64,
            other_requests: rest.iter().map(|r| r.1).sum(),
        };
        if overflow > 0 {
            // Clients beyond the table, sharing the overflow bucket: their number is unknown.
            out.clients.push(("*".to_owned(), overflow));
        }
        out
    }

    /// Counts a failure; returns the seconds to wait if the client is now limited.
    pub fn fail(&self, f: Failure<'_>, peer: Option<&str>, now: i64) -> Option<u64> {
        let client = client_of(peer);
        let limited = self.with_bucket(client, now, |b| {
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                None
            } else {
                b.retry_after(&self.cfg)
            }
        });
        let route = truncate(f.route, MAX_ROUTE).to_owned();
        self.count(
            f.action,
            Cow::Owned(f.actor.to_owned()),
            Cow::Owned(route),
            f.reason,
            client,
            now,
        );
        limited
    }

    fn count(
        &self,
        action: &'static str,
        actor: Cow<'static, str>,
        route: Cow<'static, str>,
        reason: &'static str,
        client: Option<IpAddr>,
        now: i64,
    ) {
        let mut pending = lock(&self.pending);
        let mut key = (action, actor, route, Who::Client(client));
        if !pending.0.contains_key(&key) && pending.0.len() >= self.cfg.max_rows {
            key.1 = Cow::Borrowed("*");
            key.2 = Cow::Borrowed("*");
            key.3 = Who::Overflow;
        }
        let t = pending.0.entry(key).or_insert_with(|| Tally {
            first: now,
            ..Tally::default()
        });
        t.count += 1;
        *t.reasons.entry(reason).or_insert(0) += 1;
        t.last = now;
    }

    /// Takes the failures counted so far (to write them).
    pub fn take(&self) -> Pending {
        std::mem::take(&mut lock(&self.pending))
    }

    /// Puts back failures that could not be written, added to those counted meanwhile.
    pub fn restore(&self, p: Pending) {
        let mut pending = lock(&self.pending);
        for (k, t) in p.0 {
            let slot = pending.0.entry(k).or_insert_with(|| Tally {
                first: t.first,
                last: t.last,
                ..Tally::default()
            });
            slot.count += t.count;
            slot.first = slot.first.min(t.first);
            slot.last = slot.last.max(t.last);
            for (r, n) in t.reasons {
                *slot.reasons.entry(r).or_insert(0) += n;
            }
        }
    }

    /// Failures counted and not yet written.
    pub fn pending_failures(&self) -> u64 {
        lock(&self.pending).failures()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(reason: &'static str) -> Failure<'static> {
        Failure {
            action: "admin.auth",
            actor: "anonymous",
            route: "/admin/v1/tenants",
            reason,
        }
    }

    fn guard(burst: u32, per_s: f64, max_clients: usize, max_rows: usize) -> AuthGuard {
        AuthGuard::new(GuardConfig {
            burst,
            per_s,
            max_clients,
            max_rows,
        })
    }

    #[test]
    fn strikes_limit_a_client_without_being_audited() {
        let g = guard(3, 1.0, 10, 10);
        let c = Some(IpAddr::from([192, 0, 2, 9]));
        for _ in 0..3 {
            assert_eq!(g.limited_client(c, 100), None);
            g.strike(c, 100);
        }
        assert_eq!(g.limited_client(c, 100), Some(1));
        assert_eq!(
            g.limited_client(Some(IpAddr::from([192, 0, 2, 10])), 100),
            None,
            "others are not"
        );
        assert!(g.take().is_empty(), "nothing to audit");
        assert_eq!(g.limited_client(c, 101), None, "a token back after 1 s");
        g.refuse_connection(c, 101);
        assert_eq!(g.take_refused().clients, vec![("192.0.2.9".to_owned(), 1)]);
    }

    #[test]
    fn a_client_is_limited_after_its_burst_and_recovers() {
        let g = guard(3, 0.5, 10, 10);
        let a = Some("192.0.2.1");
        assert_eq!(g.limited(a, 0), None);
        for _ in 0..3 {
            assert_eq!(g.fail(failure("wrong"), a, 0), None);
        }
        assert_eq!(g.limited(a, 0), Some(2), "one token back in 2 s at 0.5/s");
        assert_eq!(g.fail(failure("wrong"), a, 0), Some(2));
        assert_eq!(g.limited(Some("192.0.2.2"), 0), None, "other clients are not affected");
        assert_eq!(g.limited(a, 2), None);
        assert_eq!(g.pending_failures(), 4, "limited failures are counted too");
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let g = guard(1, 0.0, 10, 10);
        g.fail(failure("wrong"), Some("2001:db8:1:2:aaaa::1"), 0);
        assert!(g.limited(Some("2001:db8:1:2:ffff::9"), 0).is_some());
        assert!(g.limited(Some("2001:db8:1:3::1"), 0).is_none());
        assert_eq!(client_of(Some("::ffff:192.0.2.7")), client_of(Some("192.0.2.7")));
        assert_eq!(client_of(Some("not an address")), None);
    }

    #[test]
    fn memory_is_bounded_by_an_overflow_bucket_and_row() {
        let g = guard(2, 0.0, 4, 3);
        for i in 0..1000 {
            g.fail(failure("wrong"), Some(&format!("198.51.100.{}", i % 250)), 0);
        }
        assert!(lock(&g.buckets).len() <= 4);
        let p = g.take();
        assert!(p.0.len() <= 4, "at most max_rows rows plus the overflow row");
        assert_eq!(p.failures(), 1000);
        assert!(p.rows().iter().any(|r| r.peer.as_deref() == Some("*")));
        // The overflow bucket is shared, and empty now: new clients are limited.
        assert!(g.limited(Some("203.0.113.9"), 0).is_some());
    }

    #[test]
    fn many_failures_make_one_row_with_a_count() {
        let g = guard(1000, 1.0, 10, 10);
        for i in 0..500 {
            g.fail(
                failure(if i % 2 == 0 { "missing" } else { "wrong" }),
                Some("192.0.2.1"),
                7 + i / 100,
            );
        }
        let rows = g.take().rows();
        assert_eq!(rows.len(), 1);
        let d = rows[0].detail.clone().unwrap();
        assert_eq!(d["count"], 500);
        assert_eq!(d["reasons"], json!({"missing": 250, "wrong": 250}));
        assert_eq!((d["first_ts"].as_i64(), d["last_ts"].as_i64()), (Some(7), Some(11)));
        assert_eq!(rows[0].target.as_deref(), Some("/admin/v1/tenants"));
        assert!(g.take().is_empty());
    }

    #[test]
    fn refusals_are_counted_per_client_for_the_log_and_in_the_audit_aggregate() {
        let g = guard(1, 0.0, 100, 2);
        let ip = |s: &str| client_of(Some(s));
        for (peer, n) in [("192.0.2.1", 5), ("192.0.2.2", 50), ("192.0.2.3", 1), ("192.0.2.4", 2)] {
            g.fail(failure("wrong"), Some(peer), 0);
            assert!(g.limited_client(ip(peer), 0).is_some());
            for _ in 0..n {
                g.refuse("admin.auth", "/admin/v1/tenants", ip(peer), 0);
            }
        }
        let r = g.take_refused();
        assert_eq!(
            r.clients,
            vec![("192.0.2.2".to_owned(), 50), ("192.0.2.1".to_owned(), 5)],
            "at most max_rows clients, the most refused first"
        );
        assert_eq!((r.other_clients, r.other_requests), (2, 3));
        assert_eq!(g.take_refused(), Refused::default(), "taken: counted again from zero");
        // The audit aggregate has them too, as rate_limited, under the route template.
        let total: u64 = 4 + 5 + 50 + 1 + 2;
        let p = g.take();
        assert_eq!(p.failures(), total);
        let limited: u64 = p.0.values().filter_map(|t| t.reasons.get("rate_limited")).sum();
        assert_eq!(limited, 58);
    }

    #[test]
    fn refusals_of_clients_beyond_the_table_are_logged_as_one() {
        let g = guard(1, 0.0, 1, 10);
        g.fail(failure("wrong"), Some("192.0.2.1"), 0);
        // The table is full of a limited client: a new one shares the overflow bucket.
        g.fail(failure("wrong"), Some("192.0.2.9"), 0);
        assert!(g.limited_client(client_of(Some("192.0.2.9")), 0).is_some());
        g.refuse("admin.auth", "/admin/*", client_of(Some("192.0.2.9")), 0);
        g.refuse("admin.auth", "/admin/*", client_of(Some("192.0.2.8")), 0);
        let r = g.take_refused();
        assert_eq!(r.clients, vec![("*".to_owned(), 2)]);
    }

    #[test]
    fn a_client_with_refusals_not_yet_logged_keeps_its_place() {
        let g = guard(1, 1.0, 1, 10);
        g.fail(failure("wrong"), Some("192.0.2.1"), 0);
        g.refuse("admin.auth", "/admin/*", client_of(Some("192.0.2.1")), 0);
        // 192.0.2.1's bucket is full again at t=10, but its refusal is not logged yet.
        g.fail(failure("wrong"), Some("192.0.2.2"), 10);
        assert_eq!(g.take_refused().clients, vec![("192.0.2.1".to_owned(), 1)]);
    }

    #[test]
    fn restored_failures_are_merged() {
        let g = guard(10, 1.0, 10, 10);
        g.fail(failure("wrong"), None, 1);
        let p = g.take();
        g.fail(failure("missing"), None, 2);
        g.restore(p);
        let rows = g.take().rows();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].detail.as_ref().unwrap()["count"], 2);
        assert_eq!(rows[0].peer.as_deref(), Some("unknown"));
    }
}
