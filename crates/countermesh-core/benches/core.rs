//! Core benchmarks: the hot-path add against its baselines, memory per entry, and delta
//! bytes per changed entry. Every ratio compares measurements taken in this same run.
//!
//! Run with `cargo bench -p countermesh-core`. The run ends with one `name: value` line
//! per target (see BENCHMARKS.md), which scripts read back.
#![allow(clippy::print_stdout)]

use std::alloc::System;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use countermesh_core::{ActorId, Delta, DeltaEntry, Digest, Message, MessageBudget, Run, Store};
use crdts::CmRDT;
use criterion::{Criterion, Throughput};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Records the nanoseconds per operation of every sample criterion takes, so the
/// summary can compare medians measured in this very run.
#[derive(Default)]
struct Samples(RefCell<Vec<f64>>);

impl Samples {
    fn record(&self, ops: u64, took: Duration) -> Duration {
        if ops > 0 {
            self.0
                .borrow_mut()
                .push(took.as_nanos() as f64 / ops as f64);
        }
        took
    }

    /// Median nanoseconds per operation, or NaN if nothing was measured (`--test`).
    fn median_ns(&self) -> f64 {
        let mut v = self.0.borrow().clone();
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
}

/// A cache-padded atomic, so the baseline does not share a line with anything.
#[repr(align(128))]
struct PaddedAtomic(AtomicI64);

/// Runs `op` `iters` times on `threads` threads (1 or 2, splitting the work) and returns
/// the wall time for all of it.
fn run_ops<F: Fn() + Sync>(threads: u64, iters: u64, op: &F) -> Duration {
    if threads == 1 {
        let start = Instant::now();
        for _ in 0..iters {
            op();
        }
        return start.elapsed();
    }
    let barrier = Barrier::new(threads as usize + 1);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                barrier.wait();
                for _ in 0..iters / threads {
                    op();
                }
            });
        }
        barrier.wait();
        // Leaving the scope joins the threads, so this measures until the last finishes.
        Instant::now()
    })
    .elapsed()
}

/// Benchmarks `op` under `name`, recording every sample into the returned `Samples`.
///
/// Generic rather than `dyn Fn`, so that `op` is inlined into the timing loop and the
/// measurement is the operation, not an indirect call.
fn bench_op<F: Fn() + Sync>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    threads: u64,
    op: &F,
) -> Samples {
    let samples = Samples::default();
    group.bench_function(name, |b| {
        b.iter_custom(|iters| samples.record(iters, run_ops(threads, iters, op)));
    });
    samples
}

fn bench_single_thread(c: &mut Criterion) -> (Samples, Samples, Samples) {
    let mut group = c.benchmark_group("add_1_thread");
    group.throughput(Throughput::Elements(1));
    let mut store = Store::new(ActorId::from_u64(1), 0);
    let counter = store.counter("page_views").unwrap();
    let ours = bench_op(&mut group, "countermesh_counter_add", 1, &|| {
        counter.add(black_box(1));
    });
    let bare = PaddedAtomic(AtomicI64::new(0));
    let atomic = bench_op(&mut group, "atomic_i64_fetch_add_relaxed", 1, &|| {
        bare.0.fetch_add(black_box(1), Ordering::Relaxed);
    });
    let locked = Mutex::new(crdts::PNCounter::<u64>::new());
    let mutex = bench_op(&mut group, "mutex_crdts_pncounter_inc", 1, &|| {
        let mut pn = locked.lock().unwrap();
        let op = pn.inc(black_box(1));
        pn.apply(op);
    });
    group.finish();
    black_box(store.flush());
    (ours, atomic, mutex)
}

fn bench_two_threads(c: &mut Criterion) -> (Samples, Samples) {
    let mut group = c.benchmark_group("add_2_threads_same_counter");
    group.throughput(Throughput::Elements(1));
    let mut store = Store::new(ActorId::from_u64(1), 0);
    let counter = store.counter("page_views").unwrap();
    let ours = bench_op(&mut group, "countermesh_counter_add", 2, &|| {
        counter.add(black_box(1));
    });
    let shared = PaddedAtomic(AtomicI64::new(0));
    let atomic = bench_op(&mut group, "shared_atomic_fetch_add_relaxed", 2, &|| {
        shared.0.fetch_add(black_box(1), Ordering::Relaxed);
    });
    group.finish();
    black_box(store.flush());
    (ours, atomic)
}

/// 16-byte counter names, as the targets specify.
fn name(i: usize) -> String {
    format!("counter-{i:08}")
}

/// Net heap bytes allocated since `region` began. stats_alloc already folds a
/// realloc's growth or shrinkage into `bytes_allocated`/`bytes_deallocated`.
fn live_bytes(region: &Region<'_, System>) -> isize {
    let change = region.change();
    change.bytes_allocated as isize - change.bytes_deallocated as isize
}

/// One remote actor's entries for every counter, as a single delta.
fn remote_delta(actor: u64, counters: usize) -> Delta<'static> {
    Delta {
        runs: vec![Run {
            actor: ActorId::from_u64(actor),
            after: 0,
            upto: counters as u64,
            entries: (0..counters)
                .map(|i| DeltaEntry {
                    name: name(i).into(),
                    version: i as u64 + 1,
                    p: 1_000 + i as u64,
                    n: 7,
                })
                .collect(),
        }],
    }
}

struct Memory {
    with_handles: f64,
    without_handles: f64,
    crdts_baseline: f64,
}

/// Live heap bytes per (counter, actor) entry at 100k counters x 10 actors.
fn memory(counters: usize, actors: u64) -> Memory {
    let entries = counters as f64 * actors as f64;

    // This node adds to every counter (so each has a handle and an own entry), and
    // learns the other nine actors' entries from deltas.
    let region = Region::new(GLOBAL);
    let mut store = Store::new(ActorId::from_u64(1), 0);
    let handles: Vec<_> = (0..counters)
        .map(|i| {
            let c = store.counter(&name(i)).unwrap();
            c.add(1);
            c
        })
        .collect();
    store.flush();
    let mut bytes = live_bytes(&region);
    for actor in 2..=actors {
        let delta = remote_delta(actor, counters);
        let region = Region::new(GLOBAL);
        store.apply_delta(&delta).unwrap();
        bytes += live_bytes(&region);
    }
    // The handles themselves belong to the application, but their cells are state.
    let with_handles = bytes as f64 / entries;
    drop(handles);
    drop(store);

    // A node that only relays: all ten actors are remote, no handles.
    let mut store = Store::new(ActorId::from_u64(1_000), 0);
    let mut bytes = 0;
    for actor in 2..=actors + 1 {
        let delta = remote_delta(actor, counters);
        let region = Region::new(GLOBAL);
        store.apply_delta(&delta).unwrap();
        bytes += live_bytes(&region);
    }
    let without_handles = bytes as f64 / entries;
    drop(store);

    // Baseline: crdts::PNCounter as is, keyed by ActorId, in a HashMap by name (and
    // without any per-entry version, which deltas need).
    let region = Region::new(GLOBAL);
    let mut map: HashMap<String, crdts::PNCounter<ActorId>> = HashMap::new();
    for i in 0..counters {
        let counter = map.entry(name(i)).or_default();
        for actor in 1..=actors {
            let op = counter.inc_many(ActorId::from_u64(actor), 1_000 + i as u64);
            counter.apply(op);
            let op = counter.dec_many(ActorId::from_u64(actor), 7);
            counter.apply(op);
        }
    }
    let crdts_baseline = live_bytes(&region) as f64 / entries;
    drop(map);
    Memory {
        with_handles,
        without_handles,
        crdts_baseline,
    }
}

struct DeltaBytes {
    per_changed_entry: f64,
    ratio_1m_vs_1: f64,
    cold_ratio_1m_vs_1: f64,
    full_state_bytes: usize,
    changed_bytes: usize,
}

fn encoded_bytes(deltas: &[Delta<'_>]) -> usize {
    deltas
        .iter()
        .map(|d| Message::Delta(d.clone()).encode().unwrap().len())
        .sum()
}

/// Delta bytes for the entries that changed in one round, in 1200-byte messages.
fn delta_bytes() -> DeltaBytes {
    let budget = MessageBudget::new(1200).expect("a valid budget");
    let me = ActorId::from_u64(0x5151_5151_5151_5151);

    // 1,000 of 100,000 counters change in a round, after a warm-up that gives every
    // counter a realistic total (about a million).
    let mut store = Store::new(me, 0);
    let handles: Vec<_> = (0..100_000)
        .map(|i| store.counter(&name(i)).unwrap())
        .collect();
    for h in &handles {
        h.add(1_000_000);
    }
    store.flush();
    let full_state_bytes = encoded_bytes(&store.delta_for(&Digest::default(), budget));
    let before = store.local_version();
    for h in handles.iter().step_by(100) {
        h.add(3);
    }
    store.flush();
    let deltas = store.delta_for(&Digest::from_pairs([(me, before)]), budget);
    let entries: usize = deltas.iter().map(Delta::entry_count).sum();
    assert_eq!(entries, 1_000);
    let changed_bytes = encoded_bytes(&deltas);

    // One counter: 1 add vs 1,000,000 adds between two rounds, from the same total.
    let round = |adds: u64, warm: bool| {
        let mut store = Store::new(me, 0);
        let c = store.counter(&name(0)).unwrap();
        if warm {
            c.add(1_000_000);
        }
        store.flush();
        let before = store.local_version();
        for _ in 0..adds {
            c.add(1);
        }
        store.flush();
        encoded_bytes(&store.delta_for(&Digest::from_pairs([(me, before)]), budget))
    };
    DeltaBytes {
        per_changed_entry: changed_bytes as f64 / entries as f64,
        ratio_1m_vs_1: round(1_000_000, true) as f64 / round(1, true) as f64,
        cold_ratio_1m_vs_1: round(1_000_000, false) as f64 / round(1, false) as f64,
        full_state_bytes,
        changed_bytes,
    }
}

/// A store holding `counters` counters written by 10 peer actors, where one actor has
/// just made one more change; and the digest of a peer that lacks only that change.
fn one_change_behind(counters: usize) -> (Store, Digest) {
    let mut store = Store::new(ActorId::from_u64(1), 0);
    let names: Vec<String> = (0..counters).map(name).collect();
    let mut digest = Vec::new();
    for a in 0..10u64 {
        let actor = ActorId::from_u64(0x1000 + a);
        let entries: Vec<DeltaEntry<'_>> = names
            .iter()
            .enumerate()
            .map(|(i, n)| DeltaEntry {
                name: n.as_str().into(),
                version: i as u64 + 1,
                p: 1_000,
                n: 0,
            })
            .collect();
        store
            .apply_delta(&Delta {
                runs: vec![Run {
                    actor,
                    after: 0,
                    upto: counters as u64,
                    entries,
                }],
            })
            .unwrap();
        digest.push((actor, counters as u64));
    }
    let changed = ActorId::from_u64(0x1000);
    store
        .apply_delta(&Delta {
            runs: vec![Run {
                actor: changed,
                after: counters as u64,
                upto: counters as u64 + 1,
                entries: vec![DeltaEntry {
                    name: names[counters / 2].as_str().into(),
                    version: counters as u64 + 1,
                    p: 1_001,
                    n: 0,
                }],
            }],
        })
        .unwrap();
    (store, Digest::from_pairs(digest))
}

/// Answering a digest that lacks one change, in stores of 1,000 and 100,000 counters
/// (10 actors each): with the version index both cost about the same.
fn bench_delta_answer(c: &mut Criterion) -> (Samples, Samples) {
    let mut group = c.benchmark_group("delta_answer_1_change");
    let budget = MessageBudget::new(64 * 1024).expect("a valid budget");
    let mut results = Vec::new();
    for counters in [1_000, 100_000] {
        let (store, digest) = one_change_behind(counters);
        assert_eq!(
            store
                .delta_for(&digest, budget)
                .iter()
                .map(Delta::entry_count)
                .sum::<usize>(),
            1
        );
        let samples = bench_op(&mut group, &format!("{counters}_counters"), 1, &|| {
            black_box(store.delta_for(black_box(&digest), budget));
        });
        results.push(samples);
    }
    group.finish();
    let large = results.pop().expect("two sizes");
    let small = results.pop().expect("two sizes");
    (small, large)
}

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let (ours, atomic, mutex) = bench_single_thread(&mut criterion);
    let (ours2, atomic2) = bench_two_threads(&mut criterion);
    let (answer_1k, answer_100k) = bench_delta_answer(&mut criterion);
    criterion.final_summary();

    let memory = memory(100_000, 10);
    let delta = delta_bytes();

    let ns = |s: &Samples| s.median_ns();
    // `cargo test --benches` runs each benchmark once, without `--bench`: the code paths
    // are exercised but the timings mean nothing, so no timing figure is printed.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "test mode: each benchmark ran once; memory {:.1} B/entry, delta {:.1} B/entry \
             (run `cargo bench -p countermesh-core` for timings)",
            memory.with_handles, delta.per_changed_entry
        );
        return;
    }
    println!();
    println!("countermesh-core benchmark details (medians of criterion's samples):");
    println!(
        "  add, 1 thread: Counter::add {:.2} ns, AtomicI64::fetch_add {:.2} ns, Mutex<crdts::PNCounter> {:.2} ns",
        ns(&ours),
        ns(&atomic),
        ns(&mutex)
    );
    println!(
        "  add, 2 threads same counter: Counter::add {:.2} ns/op, shared atomic {:.2} ns/op",
        ns(&ours2),
        ns(&atomic2)
    );
    println!(
        "  memory per (counter, actor) entry, 100k counters x 10 actors: {:.1} B with a handle per counter, \
         {:.1} B without handles, crdts::PNCounter map {:.1} B (live heap bytes requested)",
        memory.with_handles, memory.without_handles, memory.crdts_baseline
    );
    println!(
        "  delta for 1,000 changed of 100,000 counters: {} B ({:.1} B/entry); full state: {} B ({:.0}x)",
        delta.changed_bytes,
        delta.per_changed_entry,
        delta.full_state_bytes,
        delta.full_state_bytes as f64 / delta.changed_bytes as f64
    );
    println!(
        "  1,000,000 adds vs 1 add in a round from a zero total: delta size ratio {:.3} (varint width of the total)",
        delta.cold_ratio_1m_vs_1
    );
    println!(
        "  answering a digest one change behind, 10 actors: {:.2} us at 1,000 counters, {:.2} us at 100,000",
        ns(&answer_1k) / 1_000.0,
        ns(&answer_100k) / 1_000.0
    );
    println!();
    println!("add_vs_atomic_ratio: {:.3}", ns(&atomic) / ns(&ours));
    println!("add_vs_mutex_ratio: {:.3}", ns(&mutex) / ns(&ours));
    println!(
        "add_2threads_vs_shared_atomic_ratio: {:.3}",
        ns(&atomic2) / ns(&ours2)
    );
    println!("bytes_per_entry: {:.1}", memory.with_handles);
    println!("delta_bytes_per_entry: {:.1}", delta.per_changed_entry);
    println!("delta_bytes_1m_vs_1_add_ratio: {:.3}", delta.ratio_1m_vs_1);
    println!(
        "delta_answer_us_100k_counters_1_change: {:.2}",
        ns(&answer_100k) / 1_000.0
    );
    println!(
        "delta_answer_100k_vs_1k_counters_ratio: {:.2}",
        ns(&answer_100k) / ns(&answer_1k)
    );
}
