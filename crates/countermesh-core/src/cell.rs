//! The hot path: a counter's lock-free local accumulator and its published merged value.
//!
//! A [`Cell`] is shared (through an `Arc`) between the [`Store`](crate::Store) that owns
//! the counter and every [`Counter`](crate::Counter) handle for it. Handles add to the
//! local accumulator; the store folds the accumulator into CRDT state and publishes the
//! value of everything else, so that a handle can read the merged value without taking
//! a lock or touching the store.
//!
//! The accumulator follows the shape of Java's `LongAdder`: one base atomic that an
//! uncontended add updates with a single compare-and-swap, and a set of cache-padded
//! stripes that is allocated the first time two threads collide on the base. Counters
//! that are never contended therefore cost 8 bytes of accumulator, not a stripe array.

use std::cell::Cell as ThreadCell;
use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering, fence};
use std::sync::{Mutex, OnceLock};

use crate::CounterName;

/// Number of stripes a contended counter spreads its adds over.
///
/// Eight keeps a hot counter at 1 KiB of stripes while giving a typical edge box
/// (2 to 8 cores) a stripe per core most of the time.
const STRIPES: usize = 8;

/// One stripe on its own pair of cache lines, so that two cores never share a line.
/// 128 bytes covers the adjacent-line prefetcher on x86 as well as 128-byte lines on
/// some ARM cores.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(AtomicI64);

/// State that only exists once a counter has seen contention or an `i64` overflow.
#[derive(Debug, Default)]
struct Slow {
    stripes: [Padded; STRIPES],
    /// Set before the first write to `spill`, so that readers only lock when needed.
    spilled: AtomicBool,
    /// Amounts that would have overflowed an `i64` stripe. An `i128` needs 2^64 adds of
    /// `i64::MAX` to overflow, which no process lives long enough to perform.
    spill: Mutex<i128>,
}

/// A counter's shared cell: local accumulator plus the published value of the rest.
#[derive(Debug)]
pub(crate) struct Cell {
    name: CounterName,
    base: AtomicI64,
    slow: OnceLock<Box<Slow>>,
    published: Published,
}

impl Cell {
    pub(crate) fn new(name: CounterName, published: i128) -> Self {
        let cell = Self {
            name,
            base: AtomicI64::new(0),
            slow: OnceLock::new(),
            published: Published::default(),
        };
        cell.published.store(published);
        cell
    }

    pub(crate) fn name(&self) -> &CounterName {
        &self.name
    }

    /// Adds `delta` to the local accumulator. Lock-free; never allocates except the
    /// one time a counter first becomes contended.
    #[inline]
    pub(crate) fn add(&self, delta: i64) {
        if let Some(slow) = self.slow.get() {
            slow.add(delta);
            return;
        }
        let current = self.base.load(Ordering::Relaxed);
        if let Some(next) = current.checked_add(delta) {
            // A single compare-and-swap costs the same as `fetch_add` when uncontended,
            // and unlike `fetch_add` its failure tells us that another thread is here.
            if self
                .base
                .compare_exchange(current, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
        self.add_cold(delta);
    }

    #[cold]
    #[inline(never)]
    fn add_cold(&self, delta: i64) {
        self.slow.get_or_init(Box::default).add(delta);
    }

    /// The sum of every add made through this cell since it was created.
    ///
    /// Each component is read atomically but not all at the same instant; adds that race
    /// with the read are simply picked up by the next read. Nothing is lost or doubled,
    /// because the store only ever folds the difference between two reads.
    pub(crate) fn local_sum(&self) -> i128 {
        let mut sum = i128::from(self.base.load(Ordering::Relaxed));
        if let Some(slow) = self.slow.get() {
            sum += slow.sum();
        }
        sum
    }

    /// The merged value of all other contributions (see [`Published`]).
    pub(crate) fn published(&self) -> i128 {
        self.published.load()
    }

    /// Replaces the published value. Only the owning store calls this, and it holds
    /// `&mut` to itself while doing so, which makes it the single writer.
    pub(crate) fn publish(&self, value: i128) {
        self.published.store(value);
    }

    /// The value a reader sees: published value plus local adds.
    pub(crate) fn value(&self) -> i128 {
        self.published() + self.local_sum()
    }
}

impl Slow {
    fn add(&self, delta: i64) {
        let mut index = stripe_index();
        // Compare-and-swap rather than `fetch_add`: a wrapped `fetch_add` could not be
        // undone without racing other adders, whereas a failed check leaves the stripe
        // untouched. Each failed swap moves this thread to another stripe, which spreads
        // colliding threads apart. The loop is lock-free: a swap only fails because
        // another thread's swap succeeded.
        loop {
            let stripe = &self.stripes[index % STRIPES].0;
            let current = stripe.load(Ordering::Relaxed);
            let Some(next) = current.checked_add(delta) else {
                self.spill(delta);
                return;
            };
            if stripe
                .compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
            index = rehash_stripe_index();
        }
    }

    #[cold]
    fn spill(&self, delta: i64) {
        self.spilled.store(true, Ordering::Release);
        let mut spill = self
            .spill
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        *spill = spill.saturating_add(i128::from(delta));
    }

    fn sum(&self) -> i128 {
        let mut sum: i128 = self
            .stripes
            .iter()
            .map(|s| i128::from(s.0.load(Ordering::Relaxed)))
            .sum();
        if self.spilled.load(Ordering::Acquire) {
            sum += *self
                .spill
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
        }
        sum
    }
}

thread_local! {
    /// This thread's preferred stripe; 0 means "not assigned yet".
    static STRIPE_PROBE: ThreadCell<u32> = const { ThreadCell::new(0) };
}

/// Seeds for new threads. Successive threads get well-spread probes.
static NEXT_PROBE: AtomicU32 = AtomicU32::new(0x9E37_79B9);

fn stripe_index() -> usize {
    STRIPE_PROBE.with(|probe| {
        let mut value = probe.get();
        if value == 0 {
            value = NEXT_PROBE.fetch_add(0x9E37_79B9, Ordering::Relaxed) | 1;
            probe.set(value);
        }
        value as usize
    })
}

fn rehash_stripe_index() -> usize {
    STRIPE_PROBE.with(|probe| {
        // xorshift32: cheap, never reaches zero from a non-zero state.
        let mut x = probe.get() | 1;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        probe.set(x);
        x as usize
    })
}

/// An `i128` that one writer updates and many readers read, as a sequence lock.
///
/// There is no stable `AtomicI128`; the value is stored as two halves, and readers retry
/// while a write is in progress (odd sequence) or if one happened during the read.
#[derive(Debug, Default)]
struct Published {
    seq: AtomicU32,
    high: AtomicI64,
    low: AtomicU64,
}

impl Published {
    fn store(&self, value: i128) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.high.store((value >> 64) as i64, Ordering::Relaxed);
        self.low.store(value as u64, Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    fn load(&self) -> i128 {
        loop {
            let before = self.seq.load(Ordering::Acquire);
            if before & 1 == 1 {
                spin_loop();
                continue;
            }
            let high = self.high.load(Ordering::Relaxed);
            let low = self.low.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                return (i128::from(high) << 64) | i128::from(low);
            }
            spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn cell() -> Cell {
        Cell::new(CounterName::new("c").unwrap(), 0)
    }

    #[test]
    fn adds_positive_and_negative() {
        let c = cell();
        c.add(5);
        c.add(-7);
        c.add(0);
        assert_eq!(c.local_sum(), -2);
    }

    #[test]
    fn overflowing_adds_spill_instead_of_wrapping() {
        let c = cell();
        c.add(i64::MAX);
        c.add(i64::MAX);
        c.add(i64::MAX);
        c.add(i64::MIN);
        assert_eq!(
            c.local_sum(),
            3 * i128::from(i64::MAX) + i128::from(i64::MIN)
        );
    }

    #[test]
    fn published_round_trips_the_full_i128_range() {
        let c = cell();
        for v in [0, -1, 1, i128::MAX, i128::MIN, 1 << 64, -(1 << 64) - 3] {
            c.publish(v);
            assert_eq!(c.published(), v);
        }
    }

    #[test]
    fn concurrent_adds_are_all_counted() {
        let c = Arc::new(cell());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    for i in 0..100_000i64 {
                        c.add(if (i + t) % 3 == 0 { -2 } else { 3 });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let expected: i128 = (0..4i64)
            .map(|t| {
                (0..100_000i64)
                    .map(|i| if (i + t) % 3 == 0 { -2i128 } else { 3 })
                    .sum::<i128>()
            })
            .sum();
        assert_eq!(c.local_sum(), expected);
    }

    #[test]
    fn concurrent_overflowing_adds_are_exact() {
        let c = Arc::new(cell());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.add(i64::MAX / 3);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.local_sum(), 4000 * i128::from(i64::MAX / 3));
    }
}
