//! Property tests: any delivery order and duplication of any set of deltas converges to
//! the value of applying every add exactly once, also when mixed with full-state merges.

use std::collections::BTreeMap;

use countermesh_core::{ActorId, Digest, Message, Store};
use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// One step at a source node.
#[derive(Debug, Clone)]
enum Step {
    Add {
        source: usize,
        counter: u8,
        delta: i64,
    },
    /// Flush, then emit a delta: 0 = push of fresh own entries, 1 = answer to an empty
    /// digest, 2 = answer to a stale digest.
    Emit { source: usize, how: u8 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0usize..3, 0u8..8, -1_000i64..1_000).prop_map(|(source, counter, delta)| Step::Add { source, counter, delta }),
        1 => (0usize..3, 0u8..3).prop_map(|(source, how)| Step::Emit { source, how }),
    ]
}

/// Messages as they would travel: encoded bytes.
fn emit(store: &Store, digest: &Digest, budget: usize, out: &mut Vec<Vec<u8>>) {
    for delta in store.delta_for(
        digest,
        countermesh_core::MessageBudget::new(budget).unwrap(),
    ) {
        let bytes = Message::Delta(delta).encode().unwrap();
        assert!(
            bytes.len() <= budget,
            "{} bytes over a budget of {budget}",
            bytes.len()
        );
        out.push(bytes);
    }
}

fn apply(store: &mut Store, bytes: &[u8]) {
    match Message::decode(bytes, usize::MAX).unwrap() {
        Message::Delta(delta) => {
            store.apply_delta(&delta).unwrap();
        }
        other => panic!("unexpected message {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_order_and_duplication_converges(
        steps in prop::collection::vec(step(), 1..120),
        budget in 512usize..2048,
        shuffle_seed in any::<u64>(),
    ) {
        let mut sources: Vec<Store> = (0..3u64)
            .map(|i| Store::new(ActorId::from_u64(i + 1), i))
            .collect();
        let mut pushed = [0u64; 3];
        let mut expected: BTreeMap<String, i128> = BTreeMap::new();
        let mut messages: Vec<Vec<u8>> = Vec::new();

        for step in &steps {
            match *step {
                Step::Add { source, counter, delta } => {
                    let name = format!("counter-{counter:02}-xyz"); // 16-byte names
                    sources[source].counter(&name).unwrap().add(delta);
                    *expected.entry(name).or_default() += i128::from(delta);
                }
                Step::Emit { source, how } => {
                    let store = &mut sources[source];
                    store.flush();
                    let me = store.actor_id();
                    let digest = match how {
                        0 => Digest::from_pairs([(me, pushed[source])]),
                        1 => Digest::default(),
                        _ => Digest::from_pairs([(me, store.local_version() / 2)]),
                    };
                    pushed[source] = store.local_version();
                    emit(store, &digest, budget, &mut messages);
                }
            }
        }
        // A final answer to an empty digest from every source makes the set complete.
        for store in &mut sources {
            store.flush();
            emit(store, &Digest::default(), budget, &mut messages);
        }

        // Receiver 1: a random permutation with random duplicates.
        let mut rng = SmallRng::seed_from_u64(shuffle_seed);
        let mut order: Vec<usize> = (0..messages.len()).collect();
        for _ in 0..messages.len().div_ceil(2) {
            order.push(rng.random_range(0..messages.len()));
        }
        for i in (1..order.len()).rev() {
            let j = rng.random_range(0..=i);
            order.swap(i, j);
        }
        let mut first = Store::new(ActorId::from_u64(99), 7);
        for &i in &order {
            apply(&mut first, &messages[i]);
        }

        // Receiver 2: reverse order, with a full-state merge of one source in the middle.
        let mut second = Store::new(ActorId::from_u64(98), 8);
        let middle = messages.len() / 2;
        for (k, bytes) in messages.iter().rev().enumerate() {
            if k == middle {
                second.merge(&sources[1]);
            }
            apply(&mut second, bytes);
        }

        for (name, value) in &expected {
            prop_assert_eq!(first.value(name).unwrap_or(0), *value, "receiver 1, {}", name);
            prop_assert_eq!(second.value(name).unwrap_or(0), *value, "receiver 2, {}", name);
        }
        // Both receivers hold every source's complete history.
        for source in &sources {
            let me = source.actor_id();
            prop_assert_eq!(first.watermark(me), source.local_version());
            prop_assert_eq!(second.watermark(me), source.local_version());
        }
        for store in sources.iter().chain([&first, &second]) {
            prop_assert_eq!(store.check_invariants(), Ok(()));
        }
    }
}
