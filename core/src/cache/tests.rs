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
