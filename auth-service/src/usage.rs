//! When API keys were last used, recorded without making anyone wait.
//!
//! A lookup or an SDK request with a valid key only notes the key id and the time in
//! memory (a short mutex, no database work); the background task writes the notes in
//! one transaction every minute, moving each key's `last_used_at` forward. Coarse by
//! design: a key already known to be used within the last [`GRANULARITY_S`] is not
//! noted again, and at most [`MAX_PENDING`] keys wait to be written (more are dropped
//! and counted: they are noted again at their next use). A crash loses at most one
//! interval of notes.

use std::collections::HashMap;
use std::sync::Mutex;

/// The resolution of `last_used_at`, in seconds.
pub const GRANULARITY_S: i64 = 60;
/// Keys waiting to be written, at most.
pub const MAX_PENDING: usize = 100_000;

#[derive(Debug, Default)]
pub struct KeyUsage {
    pending: Mutex<HashMap<String, i64>>,
    dropped: std::sync::atomic::AtomicU64,
}

impl KeyUsage {
    pub fn new() -> KeyUsage {
        KeyUsage::default()
    }

    /// Notes that `key_id` was used at `now`; `stored` is its `last_used_at` as read.
    pub fn note(&self, key_id: &str, stored: Option<i64>, now: i64) {
        if stored.is_some_and(|t| now - t < GRANULARITY_S) {
            return;
        }
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        let room = pending.len() < MAX_PENDING;
        match pending.get_mut(key_id) {
            Some(t) => *t = (*t).max(now),
            None if room => {
                pending.insert(key_id.to_owned(), now);
            }
            None => {
                self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Takes the notes to write (sorted, for a stable lock order across replicas).
    pub fn take(&self) -> Vec<(String, i64)> {
        let mut out: Vec<(String, i64)> = match self.pending.lock() {
            Ok(mut p) => p.drain().collect(),
            Err(_) => Vec::new(),
        };
        out.sort();
        out
    }

    /// Puts back notes that could not be written (as far as there is room).
    pub fn restore(&self, notes: Vec<(String, i64)>) {
        for (key_id, at) in notes {
            self.note(&key_id, None, at);
        }
    }

    /// Notes dropped because [`MAX_PENDING`] keys were waiting.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn pending(&self) -> usize {
        self.pending.lock().map_or(0, |p| p.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_coarse_merged_and_bounded() {
        let u = KeyUsage::new();
        u.note("key_a", Some(100), 159);
        assert_eq!(u.pending(), 0, "used within the last minute: nothing to write");
        u.note("key_a", Some(100), 160);
        u.note("key_a", None, 150);
        u.note("key_b", None, 7);
        assert_eq!(u.take(), vec![("key_a".to_owned(), 160), ("key_b".to_owned(), 7)]);
        assert!(u.take().is_empty());
        u.restore(vec![("key_c".into(), 9)]);
        assert_eq!(u.take(), vec![("key_c".to_owned(), 9)]);
        for i in 0..MAX_PENDING + 5 {
            u.note(&format!("key_{i}"), None, 1);
        }
        assert_eq!(u.pending(), MAX_PENDING);
        assert_eq!(u.dropped(), 5);
    }
}
