//! The per-client budget of uncached lookups (`api_keys.lookup_budget`): a
//! token bucket per client address, kept in proxy-wasm shared data so that
//! one budget holds for the whole Envoy, whatever its worker count. No I/O:
//! the outbound calls read and compare-and-swap the bytes this module names
//! and encodes ([`crate::outbound`]).
//!
//! - **Who is a client.** The address the rule's `ip` checks establish (with
//!   their trusted X-Forwarded-For hops), IPv4-mapped IPv6 taken as its IPv4,
//!   and IPv6 cut to its first `ipv6_prefix` bits (one host commonly holds a
//!   whole /64). A request whose address cannot be established is charged to
//!   one bucket shared by every such request.
//! - **Bounded memory.** The shared store has no delete, so the budgets are
//!   a fixed table of `slots` buckets: a client's slot is a keyed hash of its
//!   address (the key is the lookup endpoint's identity, which includes a
//!   digest of the service token, so a caller cannot aim at another client's
//!   slot). Clients that share a slot share its bucket: however many
//!   addresses a flood uses, the Envoy makes at most `slots` × (`burst` +
//!   `per_minute` a minute) budgeted lookups.
//! - **Stable names.** `edge-auth.budget.<id>.<slot>`, where `<id>` is the
//!   lookup endpoint's identity, not the configuration's generation: a reload
//!   adds no names and keeps the budgets. The value is
//!   `budget <identity> <level> <at_ms>`; anything else (another identity,
//!   malformed bytes) is read as a full bucket, never trusted as more.
//! - **The clock.** A bucket refills by the time since its last charge by
//!   the host's clock; a clock that went backwards refills nothing.

use std::net::IpAddr;

use sha2::{Digest, Sha256};

/// The most slots `lookup_budget.slots` may configure.
pub const MAX_SLOTS: usize = 100_000;

/// Units of one lookup in a bucket: a minute in milliseconds, so that a rate
/// of `per_minute` lookups a minute refills exactly `per_minute` units a
/// millisecond, in integers.
const UNIT: u64 = 60_000;

/// A budget's settings (validated at configure time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetPolicy {
    /// Lookups a client may make at once, from a full bucket.
    pub burst: u32,
    /// Lookups a minute the bucket refills.
    pub per_minute: u32,
    /// Buckets in the table.
    pub slots: usize,
    /// Leading bits of an IPv6 address that name its client.
    pub ipv6_prefix: u8,
}

impl BudgetPolicy {
    fn capacity(&self) -> u64 {
        u64::from(self.burst.max(1)) * UNIT
    }
}

/// A client, as budgets are kept: a family tag and 16 address bytes.
pub type ClientKey = [u8; 17];

/// The client of `addr` (`None`: the address could not be established).
pub fn client_key(addr: Option<IpAddr>, ipv6_prefix: u8) -> ClientKey {
    let mut key = [0u8; 17];
    match addr.map(|a| a.to_canonical()) {
        None => {}
        Some(IpAddr::V4(v4)) => {
            key[0] = 4;
            key[1..5].copy_from_slice(&v4.octets());
        }
        Some(IpAddr::V6(v6)) => {
            key[0] = 6;
            let bits = u32::from(ipv6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            key[1..].copy_from_slice(&(u128::from(v6) & mask).to_be_bytes());
        }
    }
    key
}

/// A token bucket: `level` units (a lookup costs [`UNIT`]) as of `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub level: u64,
    pub at_ms: u64,
}

impl Bucket {
    /// A full bucket at `now_ms`.
    pub fn full(policy: &BudgetPolicy, now_ms: u64) -> Bucket {
        Bucket {
            level: policy.capacity(),
            at_ms: now_ms,
        }
    }

    /// The bucket refilled to `now_ms`, never above the burst. A clock that
    /// went backwards refills nothing (and the time is moved back with it,
    /// so that only time the clock really moves forward ever refills).
    pub fn refilled(self, policy: &BudgetPolicy, now_ms: u64) -> Bucket {
        let elapsed = now_ms.saturating_sub(self.at_ms);
        let level = self
            .level
            .saturating_add(elapsed.saturating_mul(u64::from(policy.per_minute)))
            .min(policy.capacity());
        Bucket { level, at_ms: now_ms }
    }

    /// Takes one lookup from the bucket at `now_ms`; `Err` with the seconds
    /// until one is available (at least 1) when the bucket is empty. A
    /// refused charge takes nothing.
    pub fn charge(self, policy: &BudgetPolicy, now_ms: u64) -> Result<Bucket, u64> {
        let b = self.refilled(policy, now_ms);
        if b.level >= UNIT {
            return Ok(Bucket {
                level: b.level - UNIT,
                ..b
            });
        }
        let missing_ms = (UNIT - b.level).div_ceil(u64::from(policy.per_minute.max(1)));
        Err(missing_ms.div_ceil(1000).max(1))
    }
}

/// What charging a bucket decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// `Err`: over budget, with the seconds until a lookup is available.
    pub allowed: Result<(), u64>,
    /// The bucket's new bytes, to compare-and-swap in.
    pub write: Option<Vec<u8>>,
}

/// The budget table of one lookup endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetTable {
    /// The endpoint's identity (hex), inside every value and the slot hash's key.
    identity: String,
    /// `edge-auth.budget.<first 16 hex of identity>.`
    prefix: String,
}

impl BudgetTable {
    /// The table of the lookup endpoint of this identity (64 hex digits:
    /// [`crate::outbound::shared_fetch::Shared::identity`]).
    pub fn new(identity: &str) -> BudgetTable {
        BudgetTable {
            identity: identity.to_owned(),
            prefix: format!("edge-auth.budget.{}.", identity.get(..16).unwrap_or(identity)),
        }
    }

    /// The slot of a client among `slots`.
    pub fn slot(&self, client: &ClientKey, slots: usize) -> usize {
        let d = Sha256::new()
            .chain_update(self.identity.as_bytes())
            .chain_update(client)
            .finalize();
        let mut lead = [0u8; 8];
        lead.copy_from_slice(d.get(..8).unwrap_or(&[0; 8]));
        usize::try_from(u64::from_be_bytes(lead) % (slots.max(1) as u64)).unwrap_or(0)
    }

    /// The shared-data name of a client's bucket.
    pub fn slot_name(&self, client: &ClientKey, slots: usize) -> String {
        format!("{}{}", self.prefix, self.slot(client, slots))
    }

    /// A slot's bucket as stored, or a full one at `now_ms` when it holds
    /// nothing this table wrote (never written, another identity,
    /// malformed). A level above the burst (the burst was lowered since) is
    /// cut to it.
    pub fn read(&self, bytes: Option<&[u8]>, policy: &BudgetPolicy, now_ms: u64) -> Bucket {
        let parsed = bytes
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|t| t.strip_prefix("budget "))
            .and_then(|t| t.strip_prefix(self.identity.as_str()))
            .and_then(|t| t.strip_prefix(' '))
            .and_then(|t| {
                let (level, at) = t.split_once(' ')?;
                let num = |s: &str| (s.bytes().all(|c| c.is_ascii_digit())).then(|| s.parse::<u64>().ok())?;
                Some(Bucket {
                    level: num(level)?,
                    at_ms: num(at)?,
                })
            });
        match parsed {
            Some(b) => Bucket {
                level: b.level.min(policy.capacity()),
                ..b
            },
            None => Bucket::full(policy, now_ms),
        }
    }

    /// Charges one lookup to the bucket in a slot's bytes at `now_ms`:
    /// whether it is allowed (`Err`: the seconds to wait), and the bytes to
    /// write back, if any. A refusal writes nothing, unless the clock went
    /// back since the bucket was written: it is then rebased to now, so that
    /// it refills from now on instead of waiting for the clock to catch up.
    pub fn charge(&self, bytes: Option<&[u8]>, policy: &BudgetPolicy, now_ms: u64) -> Charge {
        let held = self.read(bytes, policy, now_ms);
        match held.charge(policy, now_ms) {
            Ok(b) => Charge {
                allowed: Ok(()),
                write: Some(self.encode(&b)),
            },
            Err(s) => Charge {
                allowed: Err(s),
                write: (held.at_ms > now_ms).then(|| self.encode(&held.refilled(policy, now_ms))),
            },
        }
    }

    /// A bucket's bytes.
    pub fn encode(&self, b: &Bucket) -> Vec<u8> {
        format!("budget {} {} {}", self.identity, b.level, b.at_ms).into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use std::collections::{HashMap, HashSet};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const T0: u64 = 1_800_000_000_000;
    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn policy(burst: u32, per_minute: u32) -> BudgetPolicy {
        BudgetPolicy {
            burst,
            per_minute,
            slots: 64,
            ipv6_prefix: 64,
        }
    }

    /// Charges `n` times at `now_ms` through the encoded bytes, as the
    /// workers do; returns how many were allowed and the last refusal's delay.
    fn charge_n(
        t: &BudgetTable,
        store: &mut Option<Vec<u8>>,
        p: &BudgetPolicy,
        now_ms: u64,
        n: usize,
    ) -> (usize, Option<u64>) {
        let mut allowed = 0;
        let mut retry = None;
        for _ in 0..n {
            let c = t.charge(store.as_deref(), p, now_ms);
            match c.allowed {
                Ok(()) => allowed += 1,
                Err(s) => retry = Some(s),
            }
            if let Some(w) = c.write {
                *store = Some(w);
            }
        }
        (allowed, retry)
    }

    #[test]
    fn burst_then_refill_at_the_rate() {
        let t = BudgetTable::new(ID);
        let p = policy(5, 60); // one a second
        let mut store = None;
        assert_eq!(charge_n(&t, &mut store, &p, T0, 7), (5, Some(1)));
        // 999 ms later: not yet one back
        assert_eq!(charge_n(&t, &mut store, &p, T0 + 999, 1), (0, Some(1)));
        assert_eq!(charge_n(&t, &mut store, &p, T0 + 1000, 2), (1, Some(1)));
        // 10 s idle refill the burst, never more
        assert_eq!(charge_n(&t, &mut store, &p, T0 + 60_000, 9), (5, Some(1)));
        // a slow rate: the delay is the time to one lookup, rounded up
        let slow = policy(1, 1);
        let mut s = None;
        assert_eq!(charge_n(&t, &mut s, &slow, T0, 2), (1, Some(60)));
        assert_eq!(charge_n(&t, &mut s, &slow, T0 + 30_000, 1), (0, Some(30)));
        assert_eq!(charge_n(&t, &mut s, &slow, T0 + 59_999, 1), (0, Some(1)));
        assert_eq!(charge_n(&t, &mut s, &slow, T0 + 60_000, 1), (1, None));
        // a fast rate: refused less than a second, still told 1 s
        let fast = policy(1, 600_000);
        let mut f = None;
        assert_eq!(charge_n(&t, &mut f, &fast, T0, 2), (1, Some(1)));
        // 1 ms refills ten lookups, capped by the burst of one
        assert_eq!(charge_n(&t, &mut f, &fast, T0 + 1, 3), (1, Some(1)));
    }

    #[test]
    fn a_clock_going_backwards_refills_nothing() {
        let t = BudgetTable::new(ID);
        let p = policy(2, 60);
        let mut store = None;
        assert_eq!(charge_n(&t, &mut store, &p, T0, 2).0, 2);
        // an hour back: no refill, and no credit for the jump
        assert_eq!(charge_n(&t, &mut store, &p, T0 - 3_600_000, 1), (0, Some(1)));
        assert_eq!(charge_n(&t, &mut store, &p, T0 - 3_600_000 + 500, 1).0, 0);
        // only real forward time refills: 1 s after the jump back, one lookup
        assert_eq!(charge_n(&t, &mut store, &p, T0 - 3_600_000 + 1000, 2).0, 1);
        // time zero and u64::MAX never panic
        let b = Bucket {
            level: 0,
            at_ms: u64::MAX,
        };
        assert!(b.charge(&p, 0).is_err());
        assert_eq!(Bucket { level: 0, at_ms: 0 }.refilled(&p, u64::MAX).level, 2 * UNIT);
    }

    #[test]
    fn ipv4_mapped_and_one_ipv6_prefix_are_one_client() {
        let v4 = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
        let mapped = IpAddr::V6(Ipv4Addr::new(198, 51, 100, 7).to_ipv6_mapped());
        assert_eq!(client_key(Some(v4), 64), client_key(Some(mapped), 64));
        // the IPv4-compatible form (::c633:6407) is an IPv6 address, not this client
        let compat = IpAddr::V6(Ipv4Addr::new(198, 51, 100, 7).to_ipv6_compatible());
        assert_ne!(client_key(Some(v4), 64), client_key(Some(compat), 64));
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(Some(a), 64), client_key(Some(b), 64));
        assert_ne!(client_key(Some(a), 64), client_key(Some(c), 64));
        assert_eq!(client_key(Some(a), 48), client_key(Some(c), 48));
        assert_ne!(client_key(Some(a), 128), client_key(Some(b), 128));
        // an IPv4 address and the IPv6 address of the same bytes differ
        let same_bytes = IpAddr::V6(Ipv6Addr::from(u128::from(0xc633_6407u32) << 96));
        assert_ne!(client_key(Some(v4), 32), client_key(Some(same_bytes), 32));
        // no address: its own client, unlike 0.0.0.0 and ::
        let none = client_key(None, 64);
        assert_ne!(none, client_key(Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), 64));
        assert_ne!(none, client_key(Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)), 64));
        // prefixes out of range never panic
        assert_eq!(client_key(Some(a), 0), client_key(Some(c), 0));
        assert_eq!(client_key(Some(a), 200), client_key(Some(a), 128));
    }

    #[test]
    fn many_addresses_fill_a_fixed_table_and_stay_bounded() {
        let t = BudgetTable::new(ID);
        let p = BudgetPolicy {
            slots: 256,
            ..policy(3, 60)
        };
        let mut table: HashMap<String, Vec<u8>> = HashMap::new();
        let mut allowed = 0usize;
        // 100,000 distinct addresses (IPv4 and IPv6 /64s), all at once
        for i in 0..100_000u32 {
            let addr = if i % 2 == 0 {
                IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
            } else {
                IpAddr::V6(Ipv6Addr::from(u128::from(i) << 64))
            };
            let name = t.slot_name(&client_key(Some(addr), 64), p.slots);
            let c = t.charge(table.get(&name).map(Vec::as_slice), &p, T0);
            if c.allowed.is_ok() {
                allowed += 1;
            }
            if let Some(w) = c.write {
                table.insert(name, w);
            }
        }
        assert!(table.len() <= 256, "{} names", table.len());
        assert!(table.len() > 250, "the slots spread: {}", table.len());
        // every slot gave its burst, no more: the flood's cost is bounded by slots × burst
        assert_eq!(allowed, table.len() * 3);
        for name in table.keys() {
            let n: usize = name
                .strip_prefix("edge-auth.budget.0123456789abcdef.")
                .unwrap()
                .parse()
                .unwrap();
            assert!(n < 256);
        }
    }

    #[test]
    fn slots_are_keyed_by_the_endpoint_identity() {
        let a = BudgetTable::new(ID);
        let b = BudgetTable::new(&"f".repeat(64));
        let clients: Vec<ClientKey> = (0..64u32)
            .map(|i| client_key(Some(IpAddr::V4(Ipv4Addr::from(i))), 64))
            .collect();
        // another identity places the same clients elsewhere (a caller cannot
        // aim at a slot without the service token)
        let moved = clients.iter().filter(|c| a.slot(c, 1000) != b.slot(c, 1000)).count();
        assert!(moved > 50, "{moved}");
        let used: HashSet<usize> = clients.iter().map(|c| a.slot(c, 1000)).collect();
        assert!(used.len() > 55);
        assert_eq!(a.slot(&clients[0], 0), 0);
        assert_eq!(a.slot(&clients[0], 1), 0);
    }

    #[test]
    fn clients_in_one_slot_share_its_bucket() {
        let t = BudgetTable::new(ID);
        let p = BudgetPolicy {
            slots: 1,
            ..policy(4, 60)
        };
        let x = client_key(Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))), 64);
        let y = client_key(Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2))), 64);
        assert_eq!(t.slot_name(&x, 1), t.slot_name(&y, 1));
        let mut store = None;
        assert_eq!(charge_n(&t, &mut store, &p, T0, 3).0, 3);
        // the other client of the slot gets what is left, not a new burst
        assert_eq!(charge_n(&t, &mut store, &p, T0, 3).0, 1);
    }

    #[test]
    fn garbage_and_other_identities_are_a_full_bucket_never_more() {
        let t = BudgetTable::new(ID);
        let p = policy(3, 60);
        let full = Bucket::full(&p, T0);
        let other = BudgetTable::new(&"e".repeat(64)).encode(&Bucket { level: 0, at_ms: T0 });
        for bad in [
            &b""[..],
            b"budget",
            b"budget ",
            other.as_slice(),
            format!("budget {ID}").as_bytes(),
            format!("budget {ID} 1").as_bytes(),
            format!("budget {ID} -1 {T0}").as_bytes(),
            format!("budget {ID} +1 {T0}").as_bytes(),
            format!("budget {ID} 1 {T0} 5").as_bytes(),
            format!("budget {ID}  1 {T0}").as_bytes(),
            format!("budget {ID} 99999999999999999999999 {T0}").as_bytes(),
            format!("budget {} 0 {T0}", &ID[..63]).as_bytes(),
            &[0xff, 0xfe, b' ', b'1'],
            &[b'x'; 10_000],
        ] {
            assert_eq!(t.read(Some(bad), &p, T0), full, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(t.read(None, &p, T0), full);
        // a level above the burst (a larger burst before a reload, or a forged
        // value) is cut to the burst
        let huge = format!("budget {ID} {} {T0}", u64::MAX);
        assert_eq!(t.read(Some(huge.as_bytes()), &p, T0), full);
        // a time in the future (the clock went back since, or a forged value)
        // refills nothing, and is rebased to now by the refusal
        let future = format!("budget {ID} 0 {}", u64::MAX);
        let c = t.charge(Some(future.as_bytes()), &p, T0);
        assert_eq!(c.allowed, Err(1));
        assert_eq!(c.write, Some(t.encode(&Bucket { level: 0, at_ms: T0 })));
        // round trip
        let b = Bucket {
            level: 12_345,
            at_ms: T0,
        };
        assert_eq!(t.read(Some(&t.encode(&b)), &p, T0 + 5), b);
        // a refused charge of a bucket written in the past writes nothing
        let empty = t.encode(&Bucket { level: 0, at_ms: T0 });
        assert_eq!(t.charge(Some(&empty), &p, T0 + 10).write, None);
    }
}
