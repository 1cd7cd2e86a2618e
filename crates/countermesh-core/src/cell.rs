//! The hot path: a counter's lock-free local accumulator and its published merged value.
//!
//! A [`Cell`] is shared (through an `Arc`) between the [`Store`](crate::Store) that owns
//! the counter and every [`Counter`](crate::Counter) handle for it. Handles add to the
//! local accumulator; the store folds the accumulator into CRDT state and publishes the
//! value of everything else, so that a handle can read the merged value without taking
//! a lock or touching the store.
//!
//! The accumulator is built from *owned slots*: a slot belongs to one thread, which
//! updates it with a plain load and store (no locked read-modify-write), while readers
//! only load. The first thread to add to a counter owns the slot inline in the cell; the
//! first time another thread adds, a set of cache-padded stripes is allocated and each
//! thread claims the stripe its id maps to. Threads that find their stripe owned by
//! another thread fall back to compare-and-swap on a shared padded atomic. A plain store
//! costs a fraction of an atomic add (see BENCHMARKS.md), and no two adding threads
//! write the same cache line, so an add never waits on another core.

use std::cell::{Cell as ThreadCell, OnceCell};
use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering, fence};
use std::sync::{Mutex, OnceLock};

use crate::CounterName;

/// Number of owned stripes a counter gets once a second thread adds to it.
///
/// Eight keeps a multi-threaded counter at about 1 KiB while giving a typical edge box
/// (2 to 8 cores) a private stripe per worker thread most of the time.
const STRIPES: usize = 8;

/// A slot one thread owns. `owner` is 0 while unclaimed; thread ids start at 1 and are
/// recycled when threads exit (see [`FREE_IDS`]).
#[derive(Debug, Default)]
struct Slot {
    owner: AtomicU64,
    value: AtomicI64,
}

impl Slot {
    /// Adds `delta` if the calling thread (`thread`) owns or can claim this slot.
    #[inline]
    fn try_add(&self, thread: u64, delta: i64, spill: impl FnOnce(i64)) -> bool {
        let owner = self.owner.load(Ordering::Relaxed);
        if owner != thread
            && (owner != 0
                || self
                    .owner
                    .compare_exchange(0, thread, Ordering::Acquire, Ordering::Relaxed)
                    .is_err())
        {
            return false;
        }
        // Only the owner writes `value`, so load-then-store cannot lose an update; a
        // concurrent reader sees either the old or the new total.
        let current = self.value.load(Ordering::Relaxed);
        match current.checked_add(delta) {
            Some(next) => self.value.store(next, Ordering::Relaxed),
            None => spill(delta),
        }
        true
    }
}

/// One value on its own pair of cache lines, so that two cores never share a line.
/// 128 bytes covers the adjacent-line prefetcher on x86 as well as 128-byte lines on
/// some ARM cores.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// State that only exists once a second thread has added to the counter.
#[derive(Debug, Default)]
struct Slow {
    stripes: [Padded<Slot>; STRIPES],
    /// For threads whose stripe another thread owns.
    shared: Padded<AtomicI64>,
    /// Set before the first write to `spill`, so that readers only lock when needed.
    spilled: AtomicBool,
    /// Amounts that would have overflowed an `i64` slot. An `i128` needs 2^64 adds of
    /// `i64::MAX` to overflow, which no process lives long enough to perform.
    spill: Mutex<i128>,
}

/// A counter's shared cell: local accumulator plus the published value of the rest.
#[derive(Debug)]
pub(crate) struct Cell {
    name: CounterName,
    /// The slot of the first thread that added to this counter.
    home: Slot,
    slow: OnceLock<Box<Slow>>,
    published: Published,
}

impl Cell {
    pub(crate) fn new(name: CounterName, published: i128) -> Self {
        let cell = Self {
            name,
            home: Slot::default(),
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
    /// one time a second thread first adds to this counter.
    #[inline]
    pub(crate) fn add(&self, delta: i64) {
        let thread = thread_id();
        if self.home.owner.load(Ordering::Relaxed) == thread {
            let current = self.home.value.load(Ordering::Relaxed);
            if let Some(next) = current.checked_add(delta) {
                self.home.value.store(next, Ordering::Relaxed);
                return;
            }
        }
        self.add_other(thread, delta);
    }

    #[inline(never)]
    fn add_other(&self, thread: u64, delta: i64) {
        if thread != EXITING && self.home.try_add(thread, delta, |d| self.spill(d)) {
            return;
        }
        let slow = self.slow.get_or_init(Box::default);
        let stripe = &slow.stripes[(thread as usize) % STRIPES].0;
        if thread != EXITING && stripe.try_add(thread, delta, |d| slow.spill(d)) {
            return;
        }
        // The stripe belongs to another thread: share one atomic with the other
        // leftovers. Compare-and-swap rather than `fetch_add`, because a wrapped
        // `fetch_add` could not be undone without racing other adders.
        let shared = &slow.shared.0;
        let mut current = shared.load(Ordering::Relaxed);
        loop {
            let Some(next) = current.checked_add(delta) else {
                slow.spill(delta);
                return;
            };
            match shared.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    #[cold]
    fn spill(&self, delta: i64) {
        self.slow.get_or_init(Box::default).spill(delta);
    }

    /// The sum of every add made through this cell since it was created.
    ///
    /// Each component is read atomically but not all at the same instant; adds that race
    /// with the read are simply picked up by the next read. Nothing is lost or doubled,
    /// because the store only ever folds the difference between two reads.
    pub(crate) fn local_sum(&self) -> i128 {
        let mut sum = i128::from(self.home.value.load(Ordering::Relaxed));
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
            .map(|s| i128::from(s.0.value.load(Ordering::Relaxed)))
            .sum();
        sum += i128::from(self.shared.0.load(Ordering::Relaxed));
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
    /// This thread's id for slot ownership; 0 means "not assigned yet".
    static THREAD_ID: ThreadCell<u64> = const { ThreadCell::new(0) };
    /// Returns the id to the free list when the thread exits.
    static ID_GUARD: OnceCell<IdGuard> = const { OnceCell::new() };
}

/// The id of a thread whose id has already been returned: it owns no slot and may not
/// claim one, so its adds (from other thread-local destructors) take the shared path.
const EXITING: u64 = u64::MAX;

/// Ids of exited threads, reused by new threads.
///
/// Reuse is what keeps owned slots from leaking when threads come and go: a new thread
/// that gets a recycled id inherits the slots its previous holder owned. The old thread
/// is gone, so there is still a single writer, and the mutex orders the old thread's
/// last stores before the new thread's first loads.
static FREE_IDS: Mutex<Vec<u64>> = Mutex::new(Vec::new());
static NEXT_THREAD_ID: AtomicU64 = AtomicU64::new(1);

struct IdGuard(u64);

impl Drop for IdGuard {
    fn drop(&mut self) {
        THREAD_ID.set(EXITING);
        FREE_IDS
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(self.0);
    }
}

#[inline]
fn thread_id() -> u64 {
    let id = THREAD_ID.get();
    if id != 0 {
        return id;
    }
    assign_thread_id()
}

#[cold]
fn assign_thread_id() -> u64 {
    let recycled = FREE_IDS
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .pop();
    let id = recycled.unwrap_or_else(|| NEXT_THREAD_ID.fetch_add(1, Ordering::Relaxed));
    // If the thread is already tearing down its thread-locals, the guard cannot be
    // registered; give the id back at once and take the shared path instead.
    let registered = ID_GUARD
        .try_with(|guard| guard.set(IdGuard(id)).is_ok())
        .unwrap_or(false);
    if !registered {
        FREE_IDS
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(id);
        THREAD_ID.set(EXITING);
        return EXITING;
    }
    THREAD_ID.set(id);
    id
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
    fn many_threads_share_stripes_exactly() {
        // More threads than stripes: some share the fallback atomic.
        let c = Arc::new(cell());
        let threads: Vec<_> = (0..(STRIPES * 2 + 3))
            .map(|_| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        c.add(1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.local_sum(), 20_000 * (STRIPES as i128 * 2 + 3));
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
