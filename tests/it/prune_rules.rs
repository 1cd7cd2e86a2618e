//! Pruning, the store's half: folding departed actors into a sink, completing a sink
//! elsewhere, tombstones, seals, compaction and double folds. Totals stay exact at every
//! step: a covered actor counts through its own entries until the sink is complete,
//! and through the sink after.

use countermesh_core::{
    ActorId, Delta, DeltaEntry, Digest, FoldError, Limits, Message, MessageBudget, Run,
    SealRefusal, Store,
};

fn sync(from: &Store, to: &mut Store, budget: usize) {
    let budget = MessageBudget::new(budget).unwrap();
    for delta in from.delta_for(&to.digest(), budget) {
        let bytes = Message::Delta(delta).encode().unwrap();
        let Message::Delta(delta) = Message::decode(&bytes, budget.get()).unwrap() else {
            unreachable!()
        };
        to.apply_delta(&delta).unwrap();
    }
}

/// A departed node's store: actor `id` added `amount` to each of `counters`.
fn departed(id: u64, counters: &[&str], amount: i64) -> Store {
    let mut store = Store::new(ActorId::from_u64(id), id);
    for name in counters {
        store.counter(name).unwrap().add(amount);
    }
    store.flush();
    store
}

fn sink(n: u64) -> ActorId {
    ActorId::from_u64(n | 1 << 63)
}

fn totals(store: &Store) -> Vec<(String, i128)> {
    let mut v: Vec<(String, i128)> = store.values().map(|(n, v)| (n.to_string(), v)).collect();
    v.sort();
    v
}

#[test]
fn a_fold_keeps_totals_and_drops_the_departed() {
    let d1 = departed(11, &["a", "b"], 5);
    let d2 = departed(12, &["b", "c"], -2);
    let mut p = Store::new(ActorId::from_u64(1), 1);
    p.counter("a").unwrap().add(100);
    p.flush();
    sync(&d1, &mut p, 1200);
    sync(&d2, &mut p, 1200);
    let before = totals(&p);
    assert_eq!(p.actor_count(), 3);

    let done = p
        .fold(sink(7), &[ActorId::from_u64(11), ActorId::from_u64(12)])
        .unwrap();
    assert_eq!((done.covered, done.dropped), (2, 2));
    assert_eq!(totals(&p), before, "folding changes no total");
    assert_eq!(p.actor_count(), 2, "own actor and the sink");
    assert_eq!(p.contributors("b"), Some(1), "only the sink holds b now");
    assert!(p.tombstone(ActorId::from_u64(11)).is_some());
    p.check_invariants().unwrap();

    // A late copy of a departed actor's entries is refused.
    let late = Delta {
        runs: vec![Run {
            actor: ActorId::from_u64(11),
            after: 0,
            upto: 2,
            entries: vec![DeltaEntry {
                name: "a".into(),
                version: 1,
                p: 5,
                n: 0,
            }],
        }],
    };
    let outcome = p.apply_delta(&late).unwrap();
    assert_eq!(outcome.pruned_refused, 1);
    assert_eq!(totals(&p), before);
}

#[test]
fn a_sink_counts_only_once_complete_elsewhere() {
    let names: Vec<String> = (0..80).map(|i| format!("counter-{i:03}")).collect();
    let first: Vec<&str> = names[..60].iter().map(String::as_str).collect();
    let second: Vec<&str> = names[20..].iter().map(String::as_str).collect();
    let d1 = departed(11, &first, 5);
    let d2 = departed(12, &second, -2);
    let mut p = Store::new(ActorId::from_u64(1), 1);
    let mut r = Store::new(ActorId::from_u64(2), 2);
    for d in [&d1, &d2] {
        sync(d, &mut p, 1200);
    }
    // r holds d1 fully but has not heard from d2 yet.
    sync(&d1, &mut r, 1200);
    p.fold(sink(7), &[ActorId::from_u64(11), ActorId::from_u64(12)])
        .unwrap();
    let expected = totals(&p);
    // Deliver the sink message by message, last message first: until the sink is
    // complete r counts d1 through d1's own entries, never twice.
    let budget = MessageBudget::new(512).unwrap();
    let mut deltas: Vec<Delta<'_>> = p.delta_for(&r.digest(), budget);
    assert!(deltas.len() > 2, "the sink spans several messages");
    deltas.reverse();
    let d1_only = totals(&r);
    for (i, delta) in deltas.iter().enumerate() {
        r.apply_delta(delta).unwrap();
        r.check_invariants().unwrap();
        if i + 1 < deltas.len() {
            // New counters may appear (at 0); nothing may count before completion.
            let now: Vec<_> = totals(&r).into_iter().filter(|(_, v)| *v != 0).collect();
            assert_eq!(now, d1_only, "counted before complete");
        }
    }
    assert_eq!(totals(&r), expected);
    assert_eq!(r.actor_count(), 2, "own actor and the sink");
    assert!(r.tombstone(ActorId::from_u64(12)).is_some());
    // d2 catching up later is refused.
    sync(&d2, &mut r, 1200);
    assert_eq!(totals(&r), expected);
}

#[test]
fn sinks_fold_into_one_and_carry_their_records() {
    let ds: Vec<Store> = (0..4)
        .map(|i| departed(20 + i, &["x", &format!("only-{i}")], i as i64 + 1))
        .collect();
    let mut p = Store::new(ActorId::from_u64(1), 1);
    for d in &ds {
        sync(d, &mut p, 1200);
    }
    // A node that held d0 and never heard of the first sink.
    let mut r = Store::new(ActorId::from_u64(2), 2);
    sync(&ds[0], &mut r, 1200);
    p.fold(sink(1), &[ActorId::from_u64(20), ActorId::from_u64(21)])
        .unwrap();
    p.fold(sink(2), &[ActorId::from_u64(22)]).unwrap();
    let done = p
        .fold(sink(3), &[sink(1), sink(2), ActorId::from_u64(23)])
        .unwrap();
    assert_eq!(done.covered, 6, "two sinks, what they covered, and d3");
    assert_eq!(p.actor_count(), 2);
    assert_eq!(p.tombstone(ActorId::from_u64(20)).unwrap().sink, sink(3));
    let expected = totals(&p);
    sync(&p, &mut r, 700);
    assert_eq!(
        totals(&r),
        expected,
        "d0 dropped through the compacted records"
    );
    assert_eq!(r.actor_count(), 2);
    r.check_invariants().unwrap();
}

#[test]
fn a_double_fold_is_never_counted_twice() {
    let d = departed(30, &["k"], 9);
    let mut p1 = Store::new(ActorId::from_u64(1), 1);
    let mut p2 = Store::new(ActorId::from_u64(2), 2);
    let mut r = Store::new(ActorId::from_u64(3), 3);
    for s in [&mut p1, &mut p2, &mut r] {
        sync(&d, s, 1200);
    }
    p1.fold(sink(1), &[ActorId::from_u64(30)]).unwrap();
    p2.fold(sink(2), &[ActorId::from_u64(30)]).unwrap();
    sync(&p1, &mut r, 1200);
    assert_eq!(r.value("k"), Some(9));
    sync(&p2, &mut r, 1200);
    assert_eq!(r.value("k"), Some(9), "the second sink is refused");
    assert_eq!(r.take_refused_sinks(), vec![sink(2)]);
}

#[test]
fn seals_refuse_what_they_promise_to_refuse() {
    let d = departed(40, &["k"], 3);
    let mut r = Store::new(ActorId::from_u64(2), 2);
    sync(&d, &mut r, 1200);
    let victim = ActorId::from_u64(40);
    let pruner = ActorId::from_u64(1);
    assert_eq!(r.seal(victim, 0, pruner, 1), Err(SealRefusal::HoldsMore));
    assert_eq!(r.seal(r.actor_id(), 5, pruner, 1), Err(SealRefusal::Own));
    r.seal(victim, 1, pruner, 1).unwrap();
    assert_eq!(
        r.seal(victim, 1, ActorId::from_u64(9), 4),
        Err(SealRefusal::SealedElsewhere)
    );
    // Entries above the sealed version are refused while the seal holds.
    let above = Delta {
        runs: vec![Run {
            actor: victim,
            after: 1,
            upto: 2,
            entries: vec![DeltaEntry {
                name: "k".into(),
                version: 2,
                p: 8,
                n: 0,
            }],
        }],
    };
    assert_eq!(r.apply_delta(&above).unwrap().pruned_refused, 1);
    assert_eq!(r.value("k"), Some(3));
    r.unseal_intent(pruner, 1);
    assert_eq!(r.apply_delta(&above).unwrap().pruned_refused, 0);
    assert_eq!(r.value("k"), Some(8));
    // Not prunable at a version it does not hold completely.
    assert!(matches!(
        r.fold(sink(5), &[ActorId::from_u64(99)]),
        Err(FoldError::NotPrunable(_))
    ));
}

#[test]
fn a_restored_store_keeps_its_sinks_and_tombstones() {
    let d = departed(50, &["k", "j"], 4);
    let mut p = Store::new(ActorId::from_u64(1), 1).with_change_tracking(true);
    sync(&d, &mut p, 1200);
    let first = p.take_changes();
    p.fold(sink(1), &[ActorId::from_u64(50)]).unwrap();
    let second = p.take_changes();
    assert_eq!(second.retired, vec![ActorId::from_u64(50)]);
    assert_eq!(second.removed.len(), 2);
    // Replay both commits the way a data directory would.
    let mut batch = first;
    batch.absorb(second);
    let restored = countermesh_core::Restored {
        actor: ActorId::from_u64(1),
        local_version: batch.local_version,
        entries: batch.entries,
        watermarks: batch.watermarks,
    };
    let r = Store::restore(&restored, ActorId::from_u64(9), 0, Limits::default()).unwrap();
    assert_eq!(r.value("k"), Some(4));
    assert_eq!(r.value("j"), Some(4));
    assert!(r.tombstone(ActorId::from_u64(50)).is_some());
    assert_eq!(r.sinks().collect::<Vec<_>>(), vec![(sink(1), true)]);
    assert_eq!(r.len(), 2, "record slots are not counters");
    r.check_invariants().unwrap();
    let mut fresh = Store::new(ActorId::from_u64(3), 3);
    sync(&r, &mut fresh, 1200);
    assert_eq!(fresh.value("k"), Some(4));
    assert_eq!(
        fresh.digest().len(),
        1,
        "only the sink; the departed actor is gone"
    );
    let _ = Digest::default();
}

/// Found by the `node_ops` fuzzer: a peer sent more entries of a sink that was already
/// complete (versions above the sink's final version, and a header claiming a later
/// final version). The store took them, so the complete sink counted the forged entries,
/// and after a restart the header's new final version left the sink incomplete: the
/// same data directory restored to different totals. A sink never changes after it is
/// made, so both are refused.
#[test]
fn a_complete_sink_refuses_entries_above_its_final_version() {
    let d1 = departed(11, &["a"], 5);
    let mut p = Store::new(ActorId::from_u64(1), 1);
    sync(&d1, &mut p, 1200);
    p.fold(sink(7), &[ActorId::from_u64(11)]).unwrap();
    let mut r = Store::new(ActorId::from_u64(2), 2);
    sync(&p, &mut r, 1200);
    let expected = totals(&r);
    assert_eq!(expected, vec![("a".to_owned(), 5)]);
    let last = r.watermark(sink(7));

    let forged = Delta {
        runs: vec![Run {
            actor: sink(7),
            after: last,
            upto: last + 2,
            entries: vec![
                DeltaEntry {
                    name: "a".into(),
                    version: last + 1,
                    p: 1_000,
                    n: 0,
                },
                DeltaEntry {
                    name: "b".into(),
                    version: last + 2,
                    p: 7,
                    n: 0,
                },
            ],
        }],
    };
    let outcome = r.apply_delta(&forged).unwrap();
    assert_eq!(outcome.conflicting, 2, "{outcome:?}");
    let now: Vec<_> = totals(&r).into_iter().filter(|(_, v)| *v != 0).collect();
    assert_eq!(now, expected, "a complete sink changed what it counts");
    r.check_invariants().unwrap();
}
