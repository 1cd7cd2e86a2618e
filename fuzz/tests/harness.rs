//! The harness itself: its operations reach the node, honest peers keep every check
//! green, and the checks catch the violations they are meant to catch.

use std::borrow::Cow;
use std::time::Instant;

use countermesh_core::{ActorId, Channel, Delta, DeltaEntry, Run, Store};
use countermesh_fuzz::honest::Honest;
use countermesh_fuzz::node_ops::{Op, Scenario, run};
use countermesh_fuzz::protocol::{Setup, announce, peer_actor, peer_addr};

fn setup() -> Setup {
    Setup::plain()
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

/// A peer's run of the node's own actor above its local version is refused and changes
/// nothing: the own entries stay exactly what local adds made.
#[test]
fn own_runs_from_peers_are_refused() {
    use countermesh_fuzz::protocol::{
        ActorSpec, AmountSpec, DeltaSpec, EntrySpec, RunSpec, VersionSpec,
    };
    let node = run(&Scenario {
        setup: setup(),
        ops: vec![
            Op::Add { name: 1, amount: 4 },
            Op::Flush,
            Op::Delta {
                peer: 0,
                delta: DeltaSpec {
                    runs: vec![RunSpec {
                        actor: ActorSpec::Node,
                        after: VersionSpec::Small(0),
                        span: VersionSpec::NearMax(0),
                        entries: vec![EntrySpec {
                            name: 0,
                            gap: VersionSpec::Small(1),
                            p: AmountSpec::Small(9),
                            n: AmountSpec::Small(0),
                        }],
                    }],
                },
            },
            Op::Add { name: 1, amount: 1 },
        ],
    });
    assert_eq!(node.stats().own_runs_refused, 1);
    assert_eq!(node.store().local_version(), 2);
    assert_eq!(node.store().value("a"), None);
    assert_eq!(node.store().value("b"), Some(5));
}

/// A complete sink from a peer prunes the honest actor it covers (its counts now held by
/// the sink) and every check stays green, the committer's disk included.
#[test]
fn a_sink_prunes_an_honest_actor_and_the_disk_follows() {
    use countermesh_fuzz::protocol::{ActorSpec, AmountSpec, SinkSpec, VersionSpec};
    let mut ops = vec![
        Op::Truth {
            actor: 0,
            name: 2,
            amount: 6,
        },
        Op::Honest {
            peer: 1,
            actor: 0,
            after: 0,
            cut: 1,
            extra: false,
        },
        Op::TakeChanges,
    ];
    ops.push(Op::Sink {
        peer: 2,
        sink: SinkSpec {
            sink: 0,
            victims: vec![(ActorSpec::Peer(0), VersionSpec::Small(1))],
            counters: vec![(2, AmountSpec::Small(6), AmountSpec::Small(0))],
            cut: None,
            after: 0,
        },
    });
    ops.push(Op::TakeChanges);
    let node = run(&Scenario {
        setup: Setup {
            track_changes: true,
            ..setup()
        },
        ops,
    });
    assert!(node.store().tombstone(peer_actor(0)).is_some());
    assert_eq!(node.store().value("c"), Some(6));
    assert_eq!(node.store().watermark(peer_actor(0)), 0);
}
