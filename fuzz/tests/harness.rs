//! The harness itself: its operations reach the node, honest peers keep every check
//! green, and the checks catch the violations they are meant to catch.

use std::borrow::Cow;
use std::time::Instant;

use countermesh_core::{ActorId, Channel, Delta, DeltaEntry, Run, Store};
use countermesh_fuzz::honest::Honest;
use countermesh_fuzz::node_ops::{Op, Scenario, run};
use countermesh_fuzz::protocol::{Setup, announce, peer_actor, peer_addr};

fn setup() -> Setup {
    Setup {
        durable: false,
        small_messages: true,
        small_datagrams: false,
        tight_limits: false,
        small_replies: false,
    }
}

#[test]
fn a_join_makes_the_peer_a_member() {
    let now = Instant::now();
    let mut node = setup().node(now);
    node.handle_message(peer_addr(2), Channel::Datagram, announce(2), now)
        .expect("the captured announce is accepted");
    let members: Vec<_> = node.members().iter().map(|m| m.addr()).collect();
    assert_eq!(members, vec![peer_addr(2)]);
}

#[test]
fn honest_slices_in_any_order_reach_the_latest_watermark() {
    let mut ops = Vec::new();
    for i in 0..12u8 {
        ops.push(Op::Truth {
            actor: 0,
            name: i % 5,
            amount: i16::from(i) - 4,
        });
    }
    // A late slice first (held out of order), then the start, then everything:
    // `after` and `cut` fold into the history, so (6, 3) is (6, 9].
    for (after, cut) in [(6, 3), (0, 6), (0, 11)] {
        ops.push(Op::Honest {
            peer: 1,
            actor: 0,
            after,
            cut,
            extra: false,
        });
    }
    ops.push(Op::Join { peer: 1 });
    ops.push(Op::Add { name: 0, amount: 5 });
    ops.push(Op::Advance { ms: 150 });
    let node = run(&Scenario {
        setup: setup(),
        ops,
    });
    // 12 changes, one of them by 0 (no new version): version 11.
    assert_eq!(node.store().watermark(peer_actor(0)), 11);
}

/// A lying peer claims actor 0's versions up to 2 without sending them.
#[test]
#[should_panic(expected = "which is not held")]
fn the_watermark_check_catches_a_claim_without_its_entries() {
    let mut honest = Honest::new();
    honest.histories[0].add(0, 3);
    honest.histories[0].add(1, 4);
    let mut store = Store::new(ActorId::from_u64(1), 1);
    store
        .apply_delta(&Delta {
            runs: vec![Run {
                actor: peer_actor(0),
                after: 0,
                upto: 2,
                entries: vec![DeltaEntry {
                    name: Cow::Borrowed("b"),
                    version: 2,
                    p: 4,
                    n: 0,
                }],
            }],
        })
        .expect("valid delta");
    honest.check(&store);
}
