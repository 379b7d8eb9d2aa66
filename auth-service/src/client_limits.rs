//! Failed client authentication at the token endpoint, limited per client id (the
//! per-address limit is `guard`'s): each failure for a client takes a token from its
//! bucket (`burst`, refilled at `per_s` a second, as `GuardConfig` says); a client
//! whose bucket is empty is refused `429` before its secret is checked, from any
//! address, until a token is back. That bounds how fast one client's secret can be
//! tried however many addresses an attacker has.
//!
//! Memory is bounded: only ids of clients that exist are tracked (unknown ids are
//! refused before they get here), at most `max_clients` of them; when the table is
//! full, clients whose bucket is full again are forgotten, and if it is still full a
//! new client is not tracked (its failures still count against the addresses).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::guard::GuardConfig;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: i64,
}

pub struct ClientLimits {
    cfg: GuardConfig,
    buckets: Mutex<HashMap<String, Bucket>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ClientLimits {
    pub fn new(cfg: GuardConfig) -> ClientLimits {
        ClientLimits {
            cfg,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refill(&self, b: &mut Bucket, now: i64) {
        let elapsed = (now - b.at).max(0) as f64;
        b.tokens = (b.tokens + elapsed * self.cfg.per_s).min(f64::from(self.cfg.burst));
        b.at = now;
    }

    fn retry_after(&self, b: &Bucket) -> Option<u64> {
        (b.tokens < 1.0).then(|| {
            if self.cfg.per_s <= 0.0 {
                u64::MAX
            } else {
                ((1.0 - b.tokens) / self.cfg.per_s).ceil().max(1.0) as u64
            }
        })
    }

    /// If `client_id` is limited now: the seconds until it may fail again.
    pub fn limited(&self, client_id: &str, now: i64) -> Option<u64> {
        let mut buckets = lock(&self.buckets);
        let b = buckets.get_mut(client_id)?;
        self.refill(b, now);
        self.retry_after(b)
    }

    /// Counts a failure for `client_id`; the seconds to wait if it is now limited.
    pub fn fail(&self, client_id: &str, now: i64) -> Option<u64> {
        let mut buckets = lock(&self.buckets);
        if !buckets.contains_key(client_id) && buckets.len() >= self.cfg.max_clients {
            let (cfg, full) = (&self.cfg, f64::from(self.cfg.burst));
            buckets.retain(|_, b| {
                let elapsed = (now - b.at).max(0) as f64;
                b.tokens + elapsed * cfg.per_s < full
            });
            if buckets.len() >= self.cfg.max_clients {
                return None;
            }
        }
        let b = buckets.entry(client_id.to_owned()).or_insert(Bucket {
            tokens: f64::from(self.cfg.burst),
            at: now,
        });
        self.refill(b, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            None
        } else {
            self.retry_after(b)
        }
    }

    /// Clients tracked now.
    pub fn tracked(&self) -> usize {
        lock(&self.buckets).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(burst: u32, max_clients: usize) -> ClientLimits {
        ClientLimits::new(GuardConfig {
            burst,
            per_s: 0.5,
            max_clients,
            max_rows: 10,
        })
    }

    #[test]
    fn a_client_is_limited_after_its_burst_and_recovers() {
        let l = limits(3, 10);
        assert_eq!(l.limited("a", 0), None);
        assert_eq!(l.fail("a", 0), None);
        assert_eq!(l.fail("a", 0), None);
        assert_eq!(l.fail("a", 0), None);
        assert_eq!(l.limited("a", 0), Some(2));
        assert_eq!(l.fail("a", 0), Some(2));
        // Another client is not affected.
        assert_eq!(l.limited("b", 0), None);
        // One token back after 2 s at 0.5/s.
        assert_eq!(l.limited("a", 2), None);
    }

    #[test]
    fn memory_is_bounded() {
        let l = limits(2, 3);
        for i in 0..100 {
            l.fail(&format!("c{i}"), 0);
            assert!(l.tracked() <= 3);
        }
        // Once their buckets are full again, old clients make room for new ones.
        l.fail("late", 10);
        assert_eq!(l.limited("late", 10), None);
        l.fail("late", 10);
        assert!(l.limited("late", 10).is_some());
    }
}
