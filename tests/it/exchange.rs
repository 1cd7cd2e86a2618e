//! Anti-entropy exchanges with summarised digests: equal stores settle in one small
//! message, different stores end holding the union of their entries, and the bytes an
//! exchange costs follow the differences, not the number of actors.

use countermesh_core::{
    ActorId, Delta, DeltaEntry, ExchangeLimits, Message, MessageBudget, Run, Store, SyncRequest,
};
use proptest::prelude::*;

use crate::support::fingerprint;

fn limits(budget: usize) -> ExchangeLimits {
    ExchangeLimits {
        budget: MessageBudget::new(budget).unwrap(),
        reply_bytes: 4 << 20,
    }
}

/// Bytes and messages one exchange took.
#[derive(Debug, Default)]
struct Cost {
    messages: usize,
    bytes: usize,
}

/// Runs one exchange started by `a`, delivering every message (encoded and decoded, as
/// on the wire) until none is left. Returns what it cost.
fn exchange(a: &mut Store, b: &mut Store, budget: usize) -> Cost {
    let limits = limits(budget);
    let mut cost = Cost::default();
    // (to_b, request)
    let mut queue: Vec<(bool, SyncRequest)> = vec![(true, a.sync_start(limits))];
    while let Some((to_b, request)) = queue.pop() {
        let bytes = Message::Sync(request.clone()).encode().unwrap();
        assert!(bytes.len() <= budget);
        cost.messages += 1;
        cost.bytes += bytes.len();
        let answerer = if to_b { &*b } else { &*a };
        let answer = answerer.answer_sync(&request, limits);
        let deltas: Vec<Vec<u8>> = answer
            .deltas
            .iter()
            .map(|d| Message::Delta(d.clone()).encode().unwrap())
            .collect();
        for reply in answer.replies {
            queue.push((!to_b, reply));
        }
        let target = if to_b { &mut *a } else { &mut *b };
        for bytes in deltas {
            assert!(bytes.len() <= budget);
            cost.messages += 1;
            cost.bytes += bytes.len();
            let Message::Delta(delta) = Message::decode(&bytes, budget).unwrap() else {
                unreachable!()
            };
            target.apply_delta(&delta).unwrap();
        }
    }
    cost
}

/// A store that has heard from `actors` actors, one counter each.
fn wide_store(me: u64, actors: u64) -> Store {
    let mut store = Store::new(ActorId::from_u64(me), me);
    for a in 1..=actors {
        let actor = (a.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1) & (u64::MAX >> 1);
        store
            .apply_delta(&Delta {
                runs: vec![Run {
                    actor: ActorId::from_u64(actor),
                    after: 0,
                    upto: 1,
                    entries: vec![DeltaEntry {
                        name: format!("c{}", a % 100).into(),
                        version: 1,
                        p: a,
                        n: 0,
                    }],
                }],
            })
            .unwrap();
    }
    store
}

#[test]
fn equal_stores_settle_in_one_small_message() {
    let mut a = wide_store(1, 10_000);
    let mut b = wide_store(2, 10_000);
    let cost = exchange(&mut a, &mut b, 64 * 1024);
    assert_eq!(cost.messages, 1);
    assert!(
        cost.bytes <= 32,
        "an idle exchange cost {} bytes",
        cost.bytes
    );
    println!("idle exchange over 10,000 actors: {} bytes", cost.bytes);
}

#[test]
fn one_new_actor_among_ten_thousand_costs_little() {
    let mut a = wide_store(1, 10_000);
    let mut b = wide_store(2, 10_000);
    b.counter("fresh").unwrap().add(5);
    b.flush();
    let cost = exchange(&mut a, &mut b, 64 * 1024);
    assert_eq!(a.value("fresh"), Some(5));
    assert_eq!(a.watermark(b.actor_id()), b.local_version());
    // The full digest would be about 17 bytes per actor: 170 KB.
    assert!(cost.bytes < 4 * 1024, "{cost:?}");
    println!("one changed actor among 10,000: {cost:?}");
}

/// One actor's true history: change `v` (1-based) adds `delta` to counter `counter`.
#[derive(Debug, Clone)]
struct History {
    actor: u64,
    changes: Vec<(u8, u64)>,
}

/// What one store holds of one actor: every change up to `watermark` (as the latest
/// state of each counter), plus the latest state of some counters changed later (held
/// out of order, without a claim).
#[derive(Debug, Clone)]
struct View {
    watermark: usize,
    extras: Vec<usize>,
}

fn history() -> impl Strategy<Value = History> {
    (
        any::<u64>(),
        prop::collection::vec((0u8..5, 1u64..1000), 1..12),
    )
        .prop_map(|(actor, changes)| History {
            actor: (actor | 1) & (u64::MAX >> 1),
            changes,
        })
}

fn view() -> impl Strategy<Value = View> {
    (0usize..13, prop::collection::vec(0usize..13, 0..3))
        .prop_map(|(watermark, extras)| View { watermark, extras })
}

/// The entries a store with `view` of `history` holds: `(version, counter, total)`,
/// ascending by version, and the watermark it claims.
fn entries_of(history: &History, view: &View) -> (Vec<(u64, u8, u64)>, u64) {
    let len = history.changes.len();
    let watermark = view.watermark.min(len);
    // The state of each counter after each version.
    let mut totals = [0u64; 5];
    let mut states = Vec::new();
    for (i, &(counter, delta)) in history.changes.iter().enumerate() {
        totals[counter as usize] += delta;
        states.push((i as u64 + 1, counter, totals[counter as usize]));
    }
    // Latest change of each counter up to the watermark, then extras above it.
    let mut held: std::collections::BTreeMap<u8, (u64, u64)> = Default::default();
    for &(version, counter, total) in &states[..watermark] {
        held.insert(counter, (version, total));
    }
    for &extra in &view.extras {
        if extra < len && extra >= watermark {
            let (version, counter, total) = states[extra];
            let newer = held.get(&counter).is_none_or(|&(v, _)| v < version);
            if newer {
                held.insert(counter, (version, total));
            }
        }
    }
    let mut entries: Vec<(u64, u8, u64)> = held.iter().map(|(&c, &(v, t))| (v, c, t)).collect();
    entries.sort_unstable();
    (entries, watermark as u64)
}

/// Delivers `entries` of `actor` claiming `(after, upto]` to `store`.
fn deliver(store: &mut Store, actor: u64, after: u64, upto: u64, entries: &[(u64, u8, u64)]) {
    store
        .apply_delta(&Delta {
            runs: vec![Run {
                actor: ActorId::from_u64(actor),
                after,
                upto,
                entries: entries
                    .iter()
                    .filter(|e| e.0 > after)
                    .map(|&(version, counter, total)| DeltaEntry {
                        name: format!("c{counter}").into(),
                        version,
                        p: total,
                        n: 0,
                    })
                    .collect(),
            }],
        })
        .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// After an exchange (started by either side) both stores hold the union of what
    /// they held and the same watermarks, whatever they held and whatever the budget.
    #[test]
    fn an_exchange_brings_both_to_the_larger_watermarks(
        histories in prop::collection::vec((history(), view(), view()), 0..30),
        budget in 512usize..4096,
        a_starts in any::<bool>(),
    ) {
        let mut a = Store::new(ActorId::from_u64(2), 2);
        let mut b = Store::new(ActorId::from_u64(4), 4);
        // What each should hold afterwards: its own view, and for every actor on which
        // the other is ahead, the other's entries above its own watermark.
        let mut expect_a = Store::new(ActorId::from_u64(6), 6);
        let mut expect_b = Store::new(ActorId::from_u64(8), 8);
        for (history, va, vb) in &histories {
            let (ea, wa) = entries_of(history, va);
            let (eb, wb) = entries_of(history, vb);
            deliver(&mut a, history.actor, 0, wa, &ea);
            deliver(&mut b, history.actor, 0, wb, &eb);
            deliver(&mut expect_a, history.actor, 0, wa, &ea);
            deliver(&mut expect_b, history.actor, 0, wb, &eb);
            if wb > wa {
                deliver(&mut expect_a, history.actor, wa, wb, &eb);
            }
            if wa > wb {
                deliver(&mut expect_b, history.actor, wb, wa, &ea);
            }
        }
        if a_starts {
            exchange(&mut a, &mut b, budget);
        } else {
            exchange(&mut b, &mut a, budget);
        }
        let (fa, fb) = (fingerprint(&a), fingerprint(&b));
        prop_assert_eq!(&fa.counters, &fingerprint(&expect_a).counters);
        prop_assert_eq!(&fb.counters, &fingerprint(&expect_b).counters);
        prop_assert_eq!(&fa.watermarks, &fb.watermarks, "both claim the larger watermark");
        prop_assert_eq!(a.check_invariants(), Ok(()));
        prop_assert_eq!(b.check_invariants(), Ok(()));
    }
}
