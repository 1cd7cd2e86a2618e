//! Property tests: state merge is commutative, associative and idempotent, and agrees
//! with `crdts::PNCounter`'s merge (the reference semantics).

use crdts::CvRDT;
use proptest::prelude::*;

use crate::support::{EntrySpec, build_store, fingerprint};

/// An entry of a valid history: an actor's version identifies exactly one change of one
/// counter, so two counters never share an `(actor, version)` (a state that breaks this
/// is corrupt, and the store refuses its second entry).
fn entry() -> impl Strategy<Value = EntrySpec> {
    (1u64..=5, 0u8..6, 1u64..50, any::<u64>(), any::<u64>()).prop_map(
        |(actor, counter, step, p, n)| EntrySpec {
            actor,
            counter,
            version: step * 8 + u64::from(counter),
            p,
            n,
        },
    )
}

fn state() -> impl Strategy<Value = (Vec<EntrySpec>, Vec<(u64, u64)>)> {
    (
        prop::collection::vec(entry(), 0..24),
        prop::collection::vec((1u64..=5, 0u64..60), 0..5),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn merge_is_commutative(a in state(), b in state()) {
        let mut ab = build_store(100, &a.0, &a.1);
        ab.merge(&build_store(101, &b.0, &b.1));
        let mut ba = build_store(100, &b.0, &b.1);
        ba.merge(&build_store(101, &a.0, &a.1));
        prop_assert_eq!(fingerprint(&ab), fingerprint(&ba));
    }

    #[test]
    fn merge_is_associative(a in state(), b in state(), c in state()) {
        // (a ⊔ b) ⊔ c
        let mut left = build_store(100, &a.0, &a.1);
        left.merge(&build_store(101, &b.0, &b.1));
        left.merge(&build_store(102, &c.0, &c.1));
        // a ⊔ (b ⊔ c)
        let mut bc = build_store(101, &b.0, &b.1);
        bc.merge(&build_store(102, &c.0, &c.1));
        let mut right = build_store(100, &a.0, &a.1);
        right.merge(&bc);
        prop_assert_eq!(fingerprint(&left), fingerprint(&right));
    }

    #[test]
    fn merge_is_idempotent(a in state()) {
        let mut twice = build_store(100, &a.0, &a.1);
        let once = fingerprint(&twice);
        twice.merge(&build_store(101, &a.0, &a.1));
        twice.merge(&build_store(102, &a.0, &a.1));
        prop_assert_eq!(fingerprint(&twice), once);
    }

    #[test]
    fn merge_agrees_with_crdts_pncounter(a in state(), b in state()) {
        let left = build_store(100, &a.0, &a.1);
        let right = build_store(101, &b.0, &b.1);
        let mut merged = build_store(100, &a.0, &a.1);
        merged.merge(&right);
        for counter in 0..6 {
            let name = format!("c{counter}");
            let mut reference = left.to_crdts(&name).unwrap_or_default();
            reference.merge(right.to_crdts(&name).unwrap_or_default());
            let ours = merged.to_crdts(&name).unwrap_or_default();
            prop_assert_eq!(&ours, &reference);
            let value = merged.value(&name).unwrap_or(0);
            prop_assert_eq!(num_value(&reference), value);
        }
    }
}

fn num_value(counter: &crdts::PNCounter<countermesh_core::ActorId>) -> i128 {
    counter.read().to_string().parse().unwrap()
}
