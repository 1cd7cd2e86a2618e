//! [`KeyStore`]: the idempotency keys of eventual writes (single adds and batches) this
//! agent remembers, so a retried request is answered without adding again.
//!
//! Eventual writes have no ZooKeeper receipt to consult, so the agent keeps, per key, a
//! 128-bit fingerprint of the request and the instant it was applied, for a bounded
//! window (`--idempotency-window`) and at most `--idempotency-max-keys` keys, oldest
//! evicted first. The answer to an eventual write is determined by the request itself
//! (`{"name","delta"}`, `{"applied"}`), so a repeat is answered from the request and
//! nothing else needs storing. Keys live in this process only: **a restarted agent has
//! forgotten every key**, and a key sent to two agents is applied by each.
//!
//! Memory per key is about its length twice (map and age queue) plus ~100 bytes: a
//! UUID key costs ~170 bytes, so the default 100,000 keys stay under ~20 MB.

use std::collections::VecDeque;
use std::collections::hash_map::{Entry, HashMap, RandomState};
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a request is, for telling a retry from another request under the same key.
pub(crate) type Fingerprint = u128;

/// The outcome of [`KeyStore::once`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Once<T> {
    /// The key was new: `apply` ran and returned this.
    Applied(T),
    /// The same request was applied under this key within the window; nothing ran.
    Repeat,
    /// The key was used within the window for a different request; nothing ran.
    Conflict,
}

/// Remembered keys with their fingerprints, bounded in time and number.
#[derive(Debug)]
pub(crate) struct KeyStore {
    window: Duration,
    max_keys: usize,
    inner: Mutex<Inner>,
    /// Two independently keyed SipHash instances make a 128-bit fingerprint: keyed per
    /// process so a client cannot craft two bodies that collide, and wide enough that
    /// chance collisions do not matter. Fingerprints never leave the process, so they
    /// need not be stable across runs.
    hashers: (RandomState, RandomState),
    hits: AtomicU64,
    conflicts: AtomicU64,
    evictions: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    keys: HashMap<Box<str>, Remembered>,
    /// Keys in the order they were applied, with that instant: the oldest is in front.
    /// Keys leave `keys` only through this queue, so each has exactly one record here.
    ages: VecDeque<(Box<str>, Instant)>,
}

#[derive(Debug, Clone, Copy)]
struct Remembered {
    fingerprint: Fingerprint,
    at: Instant,
}

impl KeyStore {
    /// Remembers keys for `window`, at most `max_keys` of them (at least 1).
    pub(crate) fn new(window: Duration, max_keys: usize) -> Self {
        Self {
            window,
            max_keys: max_keys.max(1),
            inner: Mutex::default(),
            hashers: (RandomState::new(), RandomState::new()),
            hits: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// The fingerprint of a request described by `parts`.
    pub(crate) fn fingerprint(&self, parts: impl Hash) -> Fingerprint {
        let high = self.hashers.0.hash_one(&parts);
        let low = self.hashers.1.hash_one(&parts);
        (u128::from(high) << 64) | u128::from(low)
    }

    /// Runs `apply` unless `key` was used within the window: with the same fingerprint
    /// that is a [`Once::Repeat`], with another a [`Once::Conflict`]. `apply` runs under
    /// the store's lock, so two concurrent requests with one key apply once; it must be
    /// quick and must not fail (validate and open everything before).
    pub(crate) fn once<T>(
        &self,
        key: &str,
        fingerprint: Fingerprint,
        now: Instant,
        apply: impl FnOnce() -> T,
    ) -> Once<T> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.expire(&mut inner, now);
        match inner.keys.entry(key.into()) {
            Entry::Occupied(seen) if seen.get().fingerprint == fingerprint => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Once::Repeat
            }
            Entry::Occupied(_) => {
                self.conflicts.fetch_add(1, Ordering::Relaxed);
                Once::Conflict
            }
            Entry::Vacant(slot) => {
                let key = slot.key().clone();
                slot.insert(Remembered {
                    fingerprint,
                    at: now,
                });
                inner.ages.push_back((key, now));
                let applied = apply();
                while inner.keys.len() > self.max_keys && !inner.ages.is_empty() {
                    if Self::forget_oldest(&mut inner) {
                        self.evictions.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Once::Applied(applied)
            }
        }
    }

    /// Forgets the keys applied longer than the window before `now`.
    fn expire(&self, inner: &mut Inner, now: Instant) {
        while let Some((_, at)) = inner.ages.front() {
            if now.saturating_duration_since(*at) < self.window {
                break;
            }
            Self::forget_oldest(inner);
        }
    }

    /// Removes the oldest record and its key. Returns whether a key was removed (the
    /// instant is compared all the same, so a record that somehow fell out of step can
    /// never remove a newer use of its key).
    fn forget_oldest(inner: &mut Inner) -> bool {
        let Some((key, at)) = inner.ages.pop_front() else {
            return false;
        };
        match inner.keys.get(&key) {
            Some(remembered) if remembered.at == at => {
                inner.keys.remove(&key);
                true
            }
            _ => false,
        }
    }

    /// Keys remembered right now (some may have expired since the last request).
    pub(crate) fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys
            .len()
    }

    /// Repeats answered without applying.
    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Keys reused for a different request (refused).
    pub(crate) fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }

    /// Keys forgotten before their window ended because `max_keys` were remembered.
    pub(crate) fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_repeat_is_not_applied_and_another_request_is_a_conflict() {
        let store = KeyStore::new(MINUTE, 10);
        let now = Instant::now();
        let add_one = store.fingerprint(("add", "a", 1_i64));
        let add_two = store.fingerprint(("add", "a", 2_i64));
        assert_ne!(add_one, add_two);
        let mut applied = 0;
        assert_eq!(
            store.once("k", add_one, now, || applied += 1),
            Once::Applied(())
        );
        assert_eq!(store.once("k", add_one, now, || applied += 1), Once::Repeat);
        assert_eq!(
            store.once("k", add_two, now, || applied += 1),
            Once::Conflict
        );
        assert_eq!(
            store.once("j", add_two, now, || applied += 1),
            Once::Applied(())
        );
        assert_eq!(applied, 2);
        assert_eq!((store.hits(), store.conflicts(), store.len()), (1, 1, 2));
    }

    #[test]
    fn keys_expire_after_the_window() {
        let store = KeyStore::new(MINUTE, 10);
        let start = Instant::now();
        let f = store.fingerprint(1);
        assert!(matches!(
            store.once("k", f, start, || ()),
            Once::Applied(())
        ));
        let later = start + MINUTE - Duration::from_millis(1);
        assert_eq!(store.once("k", f, later, || ()), Once::Repeat);
        // Applied again once the window has passed, then remembered from that instant.
        let expired = start + MINUTE;
        assert_eq!(store.once("k", f, expired, || ()), Once::Applied(()));
        assert_eq!(
            store.once("k", f, expired + MINUTE / 2, || ()),
            Once::Repeat
        );
        assert_eq!(store.len(), 1);
        assert_eq!(store.evictions(), 0, "expiry is not eviction");
    }

    #[test]
    fn the_oldest_keys_are_evicted_beyond_the_bound() {
        let store = KeyStore::new(MINUTE, 3);
        let now = Instant::now();
        let f = store.fingerprint(0);
        for (i, key) in ["a", "b", "c", "d", "e"].into_iter().enumerate() {
            let at = now + Duration::from_millis(i as u64);
            assert_eq!(store.once(key, f, at, || ()), Once::Applied(()));
        }
        assert_eq!((store.len(), store.evictions()), (3, 2));
        let at = now + Duration::from_millis(10);
        assert_eq!(store.once("e", f, at, || ()), Once::Repeat);
        assert_eq!(store.once("a", f, at, || ()), Once::Applied(()), "evicted");
    }
}
