//! Regression tests for issue 8 (hardening), one per numbered item, named after it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use countermesh_core::testkit::{Cluster, Durability, Faults, seed_from_env};
use countermesh_core::{
    ActorId, Channel, Config, DecodeError, Delta, DeltaEntry, Digest, Event, HandleError,
    LimitKind, Limits, MessageBudget, Node, NodeId, Run, Store, encode_delta,
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

fn lone_node(me: u64, config: Config) -> Node {
    let actor = ActorId::from_u64(me);
    let addr: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    Node::new(
        config,
        NodeId::new(addr, actor, 1),
        Store::new(actor, 0),
        7,
        Instant::now(),
    )
    .unwrap()
}

/// Item 2: a node restored from an old copy of its data directory, while peers hold
/// newer entries of its actor, over a lossy network; and a second node started from the
/// same old copy (a cloned machine). Every restart counts under a fresh actor, so the
/// totals stay exact everywhere.
#[test]
fn item2_restore_from_an_old_data_dir_copy_stays_exact() {
    let seed = seed_from_env(0x8_2);
    let mut cluster = Cluster::new(seed, Config::default());
    cluster.set_durability(Some(Durability::INSTANT));
    cluster.add_nodes(4);
    cluster.set_faults(Faults::lossy(0.1, 0.05));
    let mut expected: HashMap<String, i128> = HashMap::new();
    let add = |cluster: &mut Cluster,
               expected: &mut HashMap<String, i128>,
               node: usize,
               name: &str,
               delta: i64| {
        cluster.add(node, name, delta);
        *expected.entry(name.to_owned()).or_default() += i128::from(delta);
    };
    cluster.run_for(Duration::from_secs(2));
    for i in 0..4 {
        add(&mut cluster, &mut expected, i, "orders", 10 + i as i64);
        add(&mut cluster, &mut expected, i, &format!("own-{i}"), 1);
    }
    cluster.run_for(Duration::from_secs(1));
    let old_copy = cluster.disk(1);
    // Node 1 keeps counting after the copy; its peers learn those newer entries.
    for round in 0..20 {
        add(&mut cluster, &mut expected, 1, "orders", 5);
        add(
            &mut cluster,
            &mut expected,
            1,
            &format!("late-{}", round % 4),
            3,
        );
        cluster.run_for(Duration::from_millis(100));
    }
    let snapshot = expected.clone();
    cluster
        .run_until(Duration::from_secs(20), |c| c.converged(&snapshot))
        .expect("converges before the restore");
    // The machine is restored from the old copy, and a clone is started from it too.
    cluster.crash(1);
    cluster.restore_disk(1, old_copy.clone());
    cluster.restart(1);
    let clone = cluster.add_node();
    cluster.crash(clone);
    cluster.restore_disk(clone, old_copy);
    cluster.restart(clone);
    // Both count at once, before hearing from anyone.
    for node in [1, clone] {
        add(&mut cluster, &mut expected, node, "orders", 7);
        add(&mut cluster, &mut expected, node, "own-1", 2);
    }
    for round in 0..10 {
        add(&mut cluster, &mut expected, round % 5, "orders", 1);
        cluster.run_for(Duration::from_millis(100));
    }
    cluster
        .run_until(Duration::from_secs(30), |c| c.converged(&expected))
        .unwrap_or_else(|| panic!("not exact after restoring an old copy (seed {seed})"));
    assert!(cluster.budget_violations().is_empty());
    for node in cluster.alive() {
        let stats = cluster.node(node).stats();
        assert_eq!(stats.entries_conflicting, 0, "no version was issued twice");
        assert_eq!(stats.own_runs_refused, 0);
    }
}

/// Item 3: with a slow, jittery, failing disk (commits take longer than the commit
/// interval), a node under sustained adds still gets every add to its peers within two
/// gossip rounds: gossip never waits for the disk.
#[test]
fn item3_own_adds_reach_peers_within_two_rounds_under_slow_disks() {
    let seed = seed_from_env(0x8_3);
    let config = Config::default();
    let round = config.gossip_interval;
    let mut cluster = Cluster::new(seed, config);
    cluster.set_durability(Some(Durability {
        commit_interval: Duration::from_millis(50),
        min_latency: Duration::from_millis(100),
        max_latency: Duration::from_millis(600),
        failure: 0.3,
    }));
    cluster.add_nodes(4);
    cluster.set_faults(Faults::NONE);
    cluster.run_for(Duration::from_secs(2));
    let step = Duration::from_millis(10);
    let mut history: Vec<(Duration, i128)> = Vec::new();
    let mut total = 0i128;
    let mut worst = Duration::ZERO;
    for tick in 0..500u32 {
        if tick % 2 == 0 {
            cluster.add(0, "sustained", 1);
            total += 1;
        }
        history.push((cluster.elapsed(), total));
        cluster.run_for(step);
        let now = cluster.elapsed();
        for peer in 1..4 {
            let seen = cluster.value(peer, "sustained").unwrap_or(0);
            // The earliest moment whose total the peer does not yet have.
            if let Some(&(at, _)) = history.iter().find(|(_, t)| *t > seen) {
                worst = worst.max(now - at);
            }
        }
    }
    println!("seed {seed}: worst add-to-peer delay {worst:?} with commits of 100-600 ms");
    assert!(
        worst <= 2 * round,
        "an own add took {worst:?} to reach a peer (limit: two rounds of {round:?}; seed {seed})"
    );
}

/// Item 4: version arithmetic. A peer's `u64::MAX` versions are refused at decoding; a
/// run claiming versions of this node's own actor above what it issued is refused and
/// counted, and the node's version does not move.
#[test]
fn item4_bogus_versions_are_refused_without_panic_or_wrap() {
    let mut node = lone_node(1, Config::default());
    let peer: SocketAddr = "127.0.0.1:7001".parse().unwrap();
    let now = Instant::now();
    // A raw delta: one run of actor 9, after 0, upto u64::MAX, no entries.
    let mut raw = vec![b'C', b'M', countermesh_core::PROTOCOL_VERSION, 3, 1];
    raw.extend_from_slice(&9u64.to_be_bytes());
    raw.push(0);
    raw.push(253);
    raw.extend_from_slice(&u64::MAX.to_le_bytes());
    raw.push(0);
    let refused = node.handle_message(peer, Channel::Stream, &raw, now);
    assert!(
        matches!(
            refused,
            Err(HandleError::Decode(DecodeError::InvalidDelta(_)))
        ),
        "{refused:?}"
    );
    assert_eq!(node.store().watermark(ActorId::from_u64(9)), 0);

    node.store_mut().counter("c").unwrap().add(1);
    node.store_mut().flush();
    let forged = encode_delta(&run(1, 0, 1 << 40, vec![entry("c", 1 << 40, 5)])).unwrap();
    node.handle_message(peer, Channel::Stream, &forged, now)
        .unwrap();
    assert_eq!(node.stats().own_runs_refused, 1);
    assert_eq!(node.store().local_version(), 1);
    let events: Vec<Event> = std::iter::from_fn(|| node.poll_event()).collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Refused { own_refused: 1, .. })),
        "{events:?}"
    );
    node.store().check_invariants().unwrap();
}

/// Item 5 (first half): a committer tick between `flush` and the final gossip round of
/// a graceful leave must not keep the last own adds from being pushed.
#[test]
fn item5_leave_pushes_entries_the_committer_folded() {
    let seed = seed_from_env(0x8_5);
    let mut cluster = Cluster::new(seed, Config::default());
    cluster.set_durability(Some(Durability::INSTANT));
    cluster.add_nodes(3);
    cluster.run_for(Duration::from_secs(2));
    cluster.add(2, "last", 42);
    // What a committer does right before the leave: fold and take the changes.
    let store = cluster.node_mut(2).store_mut();
    store.flush();
    let _ = store.take_changes();
    cluster.leave(2);
    let expected = HashMap::from([("last".to_owned(), 42i128)]);
    cluster
        .run_until(Duration::from_millis(300), |c| c.converged(&expected))
        .unwrap_or_else(|| panic!("the leaver's last adds were not pushed (seed {seed})"));
}

/// Item 5 (second half): nodes with different message budgets talk: every answer fits
/// the budget the requester announced, so a node with small messages catches up on
/// thousands of counters from one with large ones, and the reverse.
#[test]
fn item5_mixed_message_budgets_converge_within_each_receivers_budget() {
    let seed = seed_from_env(0x8_55);
    let big = Config::default();
    // Small messages, and a small appetite for catch-up per exchange and per peer.
    let small = Config {
        max_message_bytes: countermesh_core::MIN_MESSAGE_BUDGET,
        max_sync_reply_bytes: 16 * 1024,
        max_delta_bytes_per_peer: 64 * 1024,
        ..Config::default()
    };
    let mut cluster = Cluster::new(seed, big.clone());
    cluster.add_node_with(big.clone());
    cluster.add_node_with(big);
    cluster.run_for(Duration::from_secs(1));
    let mut expected = HashMap::new();
    for i in 0..2000 {
        let name = format!("counter-{i:05}-with-a-longish-name");
        cluster.add(i % 2, &name, 1 + i as i64);
        expected.insert(name, 1 + i128::from(i as i64));
    }
    cluster.run_for(Duration::from_secs(1));
    let late = cluster.add_node_with(small);
    for i in 0..500 {
        let name = format!("small-{i:04}-also-a-longish-name");
        cluster.add(late, &name, 1);
        expected.insert(name, 1);
    }
    cluster
        .run_until(Duration::from_secs(120), |c| c.converged(&expected))
        .unwrap_or_else(|| panic!("mixed budgets did not converge (seed {seed})"));
    assert!(
        cluster.budget_violations().is_empty(),
        "{:?}",
        &cluster.budget_violations()[..cluster.budget_violations().len().min(3)]
    );
    assert_eq!(cluster.wire_totals().refused, 0, "no message was refused");
}

/// Item 6: resource bounds. `max_entries` refuses entries without claiming them and is
/// reported as an event; a peer's delta bytes per interval are capped.
#[test]
fn item6_entry_limit_and_per_peer_delta_allowance() {
    let mut source = Store::new(ActorId::from_u64(2), 0);
    for i in 0..50 {
        source.counter(&format!("c{i}")).unwrap().add(1);
    }
    source.flush();
    let deltas: Vec<Vec<u8>> = source
        .delta_for(&Digest::default(), MessageBudget::new(600).unwrap())
        .iter()
        .map(|d| encode_delta(d).unwrap())
        .collect();

    let actor = ActorId::from_u64(1);
    let limits = Limits {
        max_entries: 20,
        ..Limits::default()
    };
    let addr: SocketAddr = "127.0.0.1:7000".parse().unwrap();
    let peer: SocketAddr = "127.0.0.1:7001".parse().unwrap();
    let now = Instant::now();
    let config = Config {
        max_sync_reply_bytes: 64 * 1024,
        max_delta_bytes_per_peer: 64 * 1024,
        ..Config::default()
    };
    let mut node = Node::new(
        config,
        NodeId::new(addr, actor, 1),
        Store::new(actor, 0).with_limits(limits),
        7,
        now,
    )
    .unwrap();
    for bytes in &deltas {
        node.handle_message(peer, Channel::Stream, bytes, now)
            .unwrap();
    }
    assert_eq!(node.store().entry_count(), 20);
    assert_eq!(node.stats().limit_refusals[LimitKind::Entries as usize], 30);
    assert_eq!(
        node.store().watermark(ActorId::from_u64(2)),
        0,
        "refused entries are not claimed"
    );
    let events: Vec<Event> = std::iter::from_fn(|| node.poll_event()).collect();
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::LimitReached {
                kind: LimitKind::Entries,
                limit: 20,
                ..
            }
        )),
        "{events:?}"
    );

    // The allowance: 64 KiB of deltas per peer per interval.
    let mut big = Store::new(ActorId::from_u64(3), 0);
    for i in 0..3000 {
        big.counter(&format!("counter-number-{i:06}"))
            .unwrap()
            .add(1);
    }
    big.flush();
    let payloads: Vec<Vec<u8>> = big
        .delta_for(&Digest::default(), MessageBudget::new(16 * 1024).unwrap())
        .iter()
        .map(|d| encode_delta(d).unwrap())
        .collect();
    let mut node = lone_node(
        1,
        Config {
            max_sync_reply_bytes: 64 * 1024,
            max_delta_bytes_per_peer: 64 * 1024,
            ..Config::default()
        },
    );
    let mut accepted = 0usize;
    let mut limited = 0;
    for bytes in &payloads {
        match node.handle_message(peer, Channel::Stream, bytes, now) {
            Ok(()) => accepted += bytes.len(),
            Err(HandleError::RateLimited(from)) => {
                assert_eq!(from, peer);
                limited += 1;
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert!(accepted <= 64 * 1024 && limited > 0, "{accepted} {limited}");
    // The next interval has a fresh allowance.
    let later = now + Config::default().gossip_interval;
    node.handle_message(peer, Channel::Stream, payloads.last().unwrap(), later)
        .unwrap();
}
