//! Regression tests for issue 8 (hardening), one per numbered item, named after it.

use std::net::SocketAddr;
use std::time::Instant;

use countermesh_core::{
    ActorId, Channel, Config, Delta, DeltaEntry, Digest, MessageBudget, Node, NodeId, Run, Store,
    encode_delta,
};

fn entry(name: &str, version: u64, p: u64) -> DeltaEntry<'static> {
    DeltaEntry {
        name: name.to_owned().into(),
        version,
        p,
        n: 0,
    }
}

fn run(actor: u64, after: u64, upto: u64, entries: Vec<DeltaEntry<'static>>) -> Delta<'static> {
    Delta {
        runs: vec![Run {
            actor: ActorId::from_u64(actor),
            after,
            upto,
            entries,
        }],
    }
}

/// Item 1: two valid-looking deltas give actor X version 5 for two different counters.
/// The second must be refused (typed, counted), and the node must keep answering.
#[test]
fn item1_conflicting_versions_are_refused_and_never_panic() {
    let me = ActorId::from_u64(1);
    let addr: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    let peer: SocketAddr = "127.0.0.1:7001".parse().unwrap();
    let now = Instant::now();
    let mut node = Node::new(
        Config::default(),
        NodeId::new(addr, me, 1),
        Store::new(me, 0),
        7,
        now,
    )
    .unwrap();
    let first = encode_delta(&run(9, 0, 5, vec![entry("a", 5, 1)])).unwrap();
    let second = encode_delta(&run(9, 0, 5, vec![entry("b", 5, 2)])).unwrap();
    node.handle_message(peer, Channel::Stream, &first, now)
        .unwrap();
    let _ = node.handle_message(peer, Channel::Stream, &second, now);
    // Exactly one entry of actor 9 holds version 5.
    let store = node.store();
    let held: Vec<_> = ["a", "b"]
        .iter()
        .filter_map(|name| store.contributions(name))
        .flatten()
        .filter(|c| c.actor == ActorId::from_u64(9) && c.version == 5)
        .collect();
    assert_eq!(held.len(), 1, "two entries of one actor share version 5");
    // Answering a digest that lacks actor 9 builds a run over its entries: no panic,
    // and every delta the store builds encodes.
    for delta in store.delta_for(&Digest::default(), MessageBudget::new(64 * 1024).unwrap()) {
        encode_delta(&delta).expect("the store built an invalid delta");
    }
}
