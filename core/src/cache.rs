//! A bounded cache whose entries expire.
//!
//! Entries live in a fixed array of slots allocated up front, indexed by a
//! hash map and linked in insertion order. When the cache is full, an insert
//! first sweeps a few slots for expired entries (a cursor walks the whole
//! array over successive inserts); if none is free it evicts the oldest
//! entry. Every operation is O(1) amortised.
//!
//! Keys are hashed under a key drawn at random for each cache: by default
//! with the standard library's SipHash; caches whose entries nobody but the
//! filter can create (verified tokens) may use the cheaper [`QuickHash`].

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};

use sha2::{Digest, Sha256};

/// A digest cache key: a SHA-256 digest.
pub type CacheKey = [u8; 32];

/// The SHA-256 digest of a credential (API keys are cached and looked up by it).
pub fn token_key(token: &str) -> CacheKey {
    Sha256::digest(token.as_bytes()).into()
}

/// A seeded multiply-rotate hash, eight bytes per step: about a quarter of
/// SipHash's work on a long token. It is not meant to resist anyone who
/// chooses keys to collide; use it only for an index whose keys the filter
/// alone admits (tokens that passed verification), where colliding keys
/// could at worst lengthen a lookup among entries the filter vouched for.
#[derive(Debug, Clone, Copy)]
pub struct QuickHash {
    seed: u64,
}

impl Default for QuickHash {
    /// A state seeded from the standard library's random hash keys.
    fn default() -> QuickHash {
        QuickHash {
            seed: RandomState::new().hash_one(0x5eed_u64),
        }
    }
}

impl BuildHasher for QuickHash {
    type Hasher = QuickHasher;

    fn build_hasher(&self) -> QuickHasher {
        QuickHasher { h: self.seed }
    }
}

/// The hasher of [`QuickHash`].
#[derive(Debug, Clone)]
pub struct QuickHasher {
    h: u64,
}

const QUICK_M: u64 = 0x9e37_79b9_7f4a_7c15;

impl QuickHasher {
    fn mix(&mut self, w: u64) {
        self.h = (self.h ^ w).wrapping_mul(QUICK_M).rotate_left(31);
    }
}

impl Hasher for QuickHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for chunk in words.by_ref() {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(b));
        }
        let rest = words.remainder();
        let mut b = [0u8; 8];
        if let Some(dst) = b.get_mut(..rest.len()) {
            dst.copy_from_slice(rest);
        }
        // the length goes in too, so trailing zero bytes still count
        self.mix(u64::from_le_bytes(b) ^ ((bytes.len() as u64) << 56));
    }

    fn finish(&self) -> u64 {
        // MurmurHash3's finaliser: every output bit depends on every input bit.
        let mut k = self.h;
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        k ^ (k >> 33)
    }
}

/// Slots examined for expired entries per insert into a full cache.
const SWEEP: usize = 8;

const NIL: usize = usize::MAX;

#[derive(Debug)]
struct Slot<K, V> {
    key: K,
    expires_at: u64,
    /// `None` while the slot is free.
    value: Option<V>,
    /// Neighbours in insertion order (`NIL` at the ends).
    prev: usize,
    next: usize,
}

/// A map from `K` (by default a [`CacheKey`]) to `V` holding at most
/// `max_entries` entries, each valid until its `expires_at` (unix seconds,
/// exclusive).
#[derive(Debug)]
pub struct BoundedCache<V, K = CacheKey, S = RandomState> {
    max: usize,
    slots: Vec<Slot<K, V>>,
    index: HashMap<K, usize, S>,
    /// Free slot indices below `slots.len()`.
    free: Vec<usize>,
    /// Oldest and newest live slots.
    head: usize,
    tail: usize,
    /// Next slot the expiry sweep examines.
    sweep: usize,
}

impl<V, K: Hash + Eq + Clone> BoundedCache<V, K> {
    /// A cache of at most `max_entries` entries, allocated now; 0 disables it.
    pub fn new(max_entries: usize) -> Self {
        BoundedCache::with_hasher(max_entries, RandomState::new())
    }
}

impl<V, K: Hash + Eq + Clone, S: BuildHasher> BoundedCache<V, K, S> {
    /// [`BoundedCache::new`] with the index hashed by `hasher`.
    pub fn with_hasher(max_entries: usize, hasher: S) -> Self {
        BoundedCache {
            max: max_entries,
            slots: Vec::with_capacity(max_entries),
            index: HashMap::with_capacity_and_hasher(max_entries, hasher),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            sweep: 0,
        }
    }

    /// The value for `key` if present and `now < expires_at`.
    pub fn get<Q>(&self, key: &Q, now: u64) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let slot = self.slots.get(*self.index.get(key)?)?;
        if slot.expires_at <= now {
            return None;
        }
        slot.value.as_ref()
    }

    /// Stores `value` for `key` until `expires_at`, replacing any previous
    /// entry (which becomes the newest). A value already expired at `now` is
    /// not stored and removes any previous entry.
    pub fn insert(&mut self, key: K, value: V, expires_at: u64, now: u64) {
        if expires_at <= now {
            self.remove(&key);
            return;
        }
        if self.max == 0 {
            return;
        }
        if let Some(&i) = self.index.get(&key) {
            self.unlink(i);
            if let Some(slot) = self.slots.get_mut(i) {
                slot.value = Some(value);
                slot.expires_at = expires_at;
            }
            self.link_tail(i);
            return;
        }
        let Some(i) = self.vacant_slot(now) else {
            return;
        };
        let slot = Slot {
            key: key.clone(),
            expires_at,
            value: Some(value),
            prev: NIL,
            next: NIL,
        };
        match self.slots.get_mut(i) {
            Some(s) => *s = slot,
            None => self.slots.push(slot),
        }
        self.index.insert(key, i);
        self.link_tail(i);
    }

    /// Removes the entry for `key`, if any.
    pub fn remove<Q>(&mut self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(i) = self.index.remove(key) {
            self.release(i);
        }
    }

    /// Removes every entry, keeping the allocation.
    pub fn clear(&mut self) {
        self.slots.clear();
        self.index.clear();
        self.free.clear();
        self.head = NIL;
        self.tail = NIL;
        self.sweep = 0;
    }

    /// Entries stored, expired ones not yet dropped included.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The maximum number of entries.
    pub fn capacity(&self) -> usize {
        self.max
    }

    /// A slot index for a new entry: a free slot, a slot never used yet, a
    /// slot freed by sweeping expired entries, or the oldest entry's slot.
    fn vacant_slot(&mut self, now: u64) -> Option<usize> {
        if let Some(i) = self.free.pop() {
            return Some(i);
        }
        if self.slots.len() < self.max {
            return Some(self.slots.len());
        }
        self.sweep_expired(now);
        if let Some(i) = self.free.pop() {
            return Some(i);
        }
        let oldest = self.head;
        self.index.remove(&self.slots.get(oldest)?.key);
        self.release(oldest);
        self.free.pop()
    }

    /// Drops the expired entries among the next [`SWEEP`] slots.
    fn sweep_expired(&mut self, now: u64) {
        let n = self.slots.len();
        if n == 0 {
            return;
        }
        for _ in 0..SWEEP.min(n) {
            let i = self.sweep % n;
            self.sweep = (i + 1) % n;
            if let Some(s) = self.slots.get(i) {
                if s.value.is_some() && s.expires_at <= now {
                    self.index.remove(&s.key);
                    self.release(i);
                }
            }
        }
    }

    /// Unlinks slot `i` (already out of the index), drops its value and frees it.
    fn release(&mut self, i: usize) {
        self.unlink(i);
        if let Some(slot) = self.slots.get_mut(i) {
            slot.value = None;
            self.free.push(i);
        }
    }

    fn unlink(&mut self, i: usize) {
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        let (prev, next) = (slot.prev, slot.next);
        slot.prev = NIL;
        slot.next = NIL;
        match self.slots.get_mut(prev) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.slots.get_mut(next) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
    }

    fn link_tail(&mut self, i: usize) {
        let tail = self.tail;
        if let Some(slot) = self.slots.get_mut(i) {
            slot.prev = tail;
            slot.next = NIL;
        }
        match self.slots.get_mut(tail) {
            Some(t) => t.next = i,
            None => self.head = i,
        }
        self.tail = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn k(n: u32) -> CacheKey {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&n.to_be_bytes());
        key
    }

    /// Walks the order list and checks it against the index and free list.
    fn check<V, K: Hash + Eq + Clone, S: BuildHasher>(c: &BoundedCache<V, K, S>) {
        assert!(c.len() <= c.capacity());
        assert!(c.slots.len() <= c.capacity());
        let mut seen = 0;
        let mut prev = NIL;
        let mut i = c.head;
        while i != NIL {
            let s = &c.slots[i];
            assert_eq!(s.prev, prev);
            assert!(s.value.is_some());
            assert_eq!(c.index.get(&s.key), Some(&i));
            seen += 1;
            assert!(seen <= c.len(), "cycle in order list");
            prev = i;
            i = s.next;
        }
        assert_eq!(c.tail, prev);
        assert_eq!(seen, c.len());
        assert_eq!(c.len() + c.free.len(), c.slots.len());
        for &f in &c.free {
            assert!(c.slots[f].value.is_none());
        }
    }

    #[test]
    fn token_key_is_sha256() {
        // SHA-256("abc"), FIPS 180-2 test vector.
        let want = [
            0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03,
            0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
        ];
        assert_eq!(token_key("abc"), want);
        assert_ne!(token_key("abc"), token_key("abd"));
        assert_ne!(token_key(""), token_key(" "));
        assert_eq!(token_key(&"x".repeat(1 << 20)), token_key(&"x".repeat(1 << 20)));
    }

    #[test]
    fn get_insert_remove() {
        let mut c = BoundedCache::new(4);
        assert!(c.is_empty());
        assert_eq!(c.capacity(), 4);
        c.insert(k(1), "one", 100, 10);
        c.insert(k(2), "two", 100, 10);
        assert_eq!(c.get(&k(1), 10), Some(&"one"));
        assert_eq!(c.get(&k(2), 99), Some(&"two"));
        assert_eq!(c.get(&k(3), 10), None);
        assert_eq!(c.len(), 2);
        c.remove(&k(1));
        c.remove(&k(1));
        c.remove(&k(9));
        assert_eq!(c.get(&k(1), 10), None);
        assert_eq!(c.len(), 1);
        check(&c);
    }

    #[test]
    fn expiry_boundary() {
        let mut c = BoundedCache::new(2);
        c.insert(k(1), 1, 100, 50);
        assert_eq!(c.get(&k(1), 99), Some(&1));
        assert_eq!(c.get(&k(1), 100), None);
        assert_eq!(c.get(&k(1), 101), None);
        assert_eq!(c.get(&k(1), u64::MAX), None);
        // Already expired inserts are ignored.
        c.insert(k(2), 2, 50, 50);
        c.insert(k(3), 3, 0, 50);
        assert_eq!(c.get(&k(2), 0), None);
        assert_eq!(c.len(), 1);
        // The far future is fine.
        c.insert(k(4), 4, u64::MAX, u64::MAX - 1);
        assert_eq!(c.get(&k(4), u64::MAX - 1), Some(&4));
        check(&c);
    }

    #[test]
    fn expired_insert_removes_previous_value() {
        let mut c = BoundedCache::new(2);
        c.insert(k(1), "stale", 100, 0);
        c.insert(k(1), "revoked", 10, 10);
        assert_eq!(c.get(&k(1), 10), None);
        assert_eq!(c.len(), 0);
        check(&c);
    }

    #[test]
    fn bound_holds_under_heavy_insertion() {
        let cap = 16;
        let mut c = BoundedCache::new(cap);
        for n in 0..(10 * cap as u32) {
            c.insert(k(n), n, 1_000, 0);
            assert!(c.len() <= cap);
        }
        assert_eq!(c.len(), cap);
        check(&c);
        // FIFO: exactly the last `cap` keys remain.
        let last = 10 * cap as u32;
        for n in 0..last {
            assert_eq!(c.get(&k(n), 0).is_some(), n >= last - cap as u32, "{n}");
        }
        assert_eq!(c.slots.capacity(), cap);
    }

    #[test]
    fn replacing_does_not_grow_or_leave_stale_order() {
        let mut c = BoundedCache::new(3);
        c.insert(k(1), 10, 100, 0);
        c.insert(k(2), 20, 100, 0);
        c.insert(k(3), 30, 100, 0);
        for v in 0..50 {
            c.insert(k(1), v, 100, 0);
            assert_eq!(c.len(), 3);
        }
        check(&c);
        // k(1) is now the newest: k(2) and k(3) go first.
        c.insert(k(4), 40, 100, 0);
        assert_eq!(c.get(&k(2), 0), None);
        assert_eq!(c.get(&k(1), 0), Some(&49));
        c.insert(k(5), 50, 100, 0);
        assert_eq!(c.get(&k(3), 0), None);
        assert_eq!(c.get(&k(1), 0), Some(&49));
        c.insert(k(6), 60, 100, 0);
        assert_eq!(c.get(&k(1), 0), None);
        assert_eq!(c.len(), 3);
        check(&c);
    }

    #[test]
    fn replacing_updates_expiry() {
        let mut c = BoundedCache::new(2);
        c.insert(k(1), 1, 100, 0);
        c.insert(k(1), 2, 20, 0);
        assert_eq!(c.get(&k(1), 20), None);
        c.insert(k(1), 3, 200, 0);
        assert_eq!(c.get(&k(1), 150), Some(&3));
        check(&c);
    }

    #[test]
    fn expired_entries_are_dropped_before_live_ones() {
        let mut c = BoundedCache::new(4);
        c.insert(k(1), 1, 1_000, 0); // oldest, long-lived
        c.insert(k(2), 2, 10, 0);
        c.insert(k(3), 3, 10, 0);
        c.insert(k(4), 4, 1_000, 0);
        // At 10, k(2) and k(3) are expired: they make room, k(1) stays.
        c.insert(k(5), 5, 1_000, 10);
        c.insert(k(6), 6, 1_000, 10);
        assert_eq!(c.get(&k(1), 10), Some(&1));
        assert_eq!(c.get(&k(4), 10), Some(&4));
        assert_eq!(c.get(&k(5), 10), Some(&5));
        assert_eq!(c.get(&k(6), 10), Some(&6));
        assert_eq!(c.len(), 4);
        check(&c);
        // Now full of live entries: the oldest goes.
        c.insert(k(7), 7, 1_000, 10);
        assert_eq!(c.get(&k(1), 10), None);
        check(&c);
    }

    #[test]
    fn sweep_covers_the_whole_cache_over_time() {
        let cap = 64;
        let mut c = BoundedCache::new(cap);
        // Live entries first (oldest), then expiring ones.
        for n in 0..(cap / 2) as u32 {
            c.insert(k(n), n, 1_000_000, 0);
        }
        for n in (cap / 2) as u32..cap as u32 {
            c.insert(k(n), n, 5, 0);
        }
        // Each expired entry is reclaimed before any live one is evicted,
        // as long as the sweep reaches it in time.
        for n in 0..(cap / 2) as u32 {
            c.insert(k(1_000 + n), n, 1_000_000, 5);
            check(&c);
        }
        let live_old = (0..(cap / 2) as u32).filter(|&n| c.get(&k(n), 5).is_some()).count();
        assert!(live_old >= cap / 4, "only {live_old} old live entries kept");
        assert!((0..(cap / 2) as u32).all(|n| c.get(&k(1_000 + n), 5).is_some()));
        assert_eq!(c.len(), cap / 2 + live_old);
    }

    #[test]
    fn text_keys_are_looked_up_by_str_and_exactly() {
        let mut c: BoundedCache<u32, Rc<str>, QuickHash> = BoundedCache::with_hasher(2, QuickHash::default());
        c.insert(Rc::from("token-a"), 1, 100, 0);
        c.insert(Rc::from("token-b"), 2, 100, 0);
        assert_eq!(c.get("token-a", 0), Some(&1));
        assert_eq!(c.get("token-b", 0), Some(&2));
        for near in ["token-", "token-a ", "Token-a", "token-c", ""] {
            assert_eq!(c.get(near, 0), None, "{near:?}");
        }
        c.insert(Rc::from("token-c"), 3, 100, 0); // evicts the oldest, token-a
        assert_eq!(c.get("token-a", 0), None);
        assert_eq!(c.get("token-c", 0), Some(&3));
        c.remove("token-b");
        assert_eq!(c.get("token-b", 0), None);
        check(&c);
    }

    #[test]
    fn quick_hash_tells_near_keys_apart() {
        let q = QuickHash::default();
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVzLWhlcmU";
        let mut seen = std::collections::HashSet::new();
        assert!(seen.insert(q.hash_one(token)));
        assert_eq!(
            q.hash_one(token),
            q.hash_one(String::from(token).as_str()),
            "deterministic per state"
        );
        // every one-byte change, at every position, and every truncation
        for i in 0..token.len() {
            let mut b = token.as_bytes().to_vec();
            b[i] ^= 1;
            assert!(seen.insert(q.hash_one(&b[..])), "flip at {i}");
            assert!(seen.insert(q.hash_one(&token.as_bytes()[..i])), "cut at {i}");
        }
        // trailing zero bytes change the hash
        assert_ne!(q.hash_one(&b"ab"[..]), q.hash_one(&b"ab\0"[..]));
        // another state, another hash
        let other = QuickHash { seed: q.seed ^ 1 };
        assert_ne!(q.hash_one(token), other.hash_one(token));
        // low bits (hashbrown's bucket index) spread over sequential keys
        let buckets: std::collections::HashSet<u64> =
            (0..1024u32).map(|n| q.hash_one(format!("token-{n}")) & 1023).collect();
        assert!(buckets.len() > 550, "{}", buckets.len());
    }

    #[test]
    fn disabled_cache() {
        let mut c = BoundedCache::new(0);
        c.insert(k(1), 1, 100, 0);
        assert_eq!(c.get(&k(1), 0), None);
        assert_eq!(c.len(), 0);
        assert!(c.is_empty());
        assert_eq!(c.capacity(), 0);
        c.remove(&k(1));
        c.clear();
        check(&c);
    }

    #[test]
    fn capacity_one() {
        let mut c = BoundedCache::new(1);
        for n in 0..100 {
            c.insert(k(n), n, 100, 0);
            assert_eq!(c.get(&k(n), 0), Some(&n));
            assert_eq!(c.len(), 1);
            check(&c);
        }
        c.insert(k(99), 0, 100, 0);
        assert_eq!(c.get(&k(99), 0), Some(&0));
        check(&c);
    }

    #[test]
    fn clear_and_reuse() {
        let mut c = BoundedCache::new(3);
        for n in 0..5 {
            c.insert(k(n), n, 100, 0);
        }
        c.clear();
        assert!(c.is_empty());
        assert_eq!(c.get(&k(4), 0), None);
        check(&c);
        for n in 10..20 {
            c.insert(k(n), n, 100, 0);
            check(&c);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&k(19), 0), Some(&19));
    }

    #[test]
    fn values_are_dropped_when_evicted_or_removed() {
        let v = Rc::new(());
        let mut c = BoundedCache::new(2);
        c.insert(k(1), Rc::clone(&v), 100, 0);
        c.insert(k(2), Rc::clone(&v), 100, 0);
        c.insert(k(3), Rc::clone(&v), 100, 0); // evicts k(1)
        assert_eq!(Rc::strong_count(&v), 3);
        c.remove(&k(2));
        assert_eq!(Rc::strong_count(&v), 2);
        c.insert(k(3), Rc::clone(&v), 100, 0); // replaces
        assert_eq!(Rc::strong_count(&v), 2);
        c.clear();
        assert_eq!(Rc::strong_count(&v), 1);
    }

    #[test]
    fn randomised_against_a_model() {
        // A small xorshift PRNG keeps the test deterministic and dependency-free.
        let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move |m: u64| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s % m
        };
        let cap = 8;
        let mut c = BoundedCache::new(cap);
        let mut model: std::collections::HashMap<u32, (u64, u64)> = Default::default();
        let mut now = 0;
        for step in 0..20_000u64 {
            now += rnd(3);
            let key = rnd(24) as u32;
            match rnd(10) {
                0 => {
                    c.remove(&k(key));
                    model.remove(&key);
                }
                1 if step % 1000 == 0 => {
                    c.clear();
                    model.clear();
                }
                2..=6 => {
                    let exp = now + rnd(20);
                    c.insert(k(key), step, exp, now);
                    if exp > now {
                        model.insert(key, (step, exp));
                    } else {
                        model.remove(&key);
                    }
                }
                _ => {
                    // Anything returned must be the latest live value; misses
                    // are allowed (evictions).
                    if let Some(&v) = c.get(&k(key), now) {
                        let &(mv, mexp) = model.get(&key).expect("returned a removed key");
                        assert_eq!(v, mv);
                        assert!(mexp > now);
                    }
                }
            }
            assert!(c.len() <= cap);
            if step % 97 == 0 {
                check(&c);
            }
        }
        check(&c);
    }
}
