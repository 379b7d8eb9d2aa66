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
mod tests;
