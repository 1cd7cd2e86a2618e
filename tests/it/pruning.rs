//! Pruning in deterministic clusters: churn, partitions that heal, two would-be pruners,
//! and a node restored from an old data directory that holds pruned actors' entries.
//! Every run ends with exact totals everywhere, and no sink is ever refused as a double
//! fold.

use std::collections::HashMap;
use std::time::Duration;

use countermesh_core::testkit::{Cluster, Durability, Faults, seed_from_env};
use countermesh_core::{Config, Event, PruneConfig};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

fn config() -> Config {
    Config {
        prune: Some(PruneConfig {
            after_down: Duration::from_secs(40),
            after_replaced: Duration::from_secs(3),
            interval: Duration::from_secs(1),
            intent_timeout: Duration::from_secs(10),
        }),
        ..Config::default()
    }
}

struct Churn {
    cluster: Cluster,
    rng: SmallRng,
    expected: HashMap<String, i128>,
}

impl Churn {
    fn new(seed: u64, nodes: usize, durability: Option<Durability>) -> Self {
        let mut cluster = Cluster::new(seed, config());
        cluster.set_durability(durability);
        cluster.add_nodes(nodes);
        cluster.run_for(Duration::from_secs(3));
        Self {
            cluster,
            rng: SmallRng::seed_from_u64(seed ^ 0xc4),
            expected: HashMap::new(),
        }
    }

    fn adds(&mut self, count: usize) {
        let alive = self.cluster.alive();
        for _ in 0..count {
            let node = alive[self.rng.random_range(0..alive.len())];
            let name = format!("c{}", self.rng.random_range(0..20));
            let delta = self.rng.random_range(-5i64..=20);
            self.cluster.add(node, &name, delta);
            *self.expected.entry(name).or_default() += i128::from(delta);
        }
    }

    /// One node leaves for good and a fresh one takes its place. The cluster converges
    /// first: a node that leaves (or dies) right after adding can take adds no peer
    /// received yet with it, a loss that is not pruning's doing and that the totals
    /// checked here must not include.
    fn replace_one(&mut self) {
        self.converge(Duration::from_secs(60));
        let alive = self.cluster.alive();
        let gone = alive[self.rng.random_range(0..alive.len())];
        self.cluster.leave(gone);
        self.cluster.add_node();
        // Let the newcomer join before its seed may be the next to go.
        self.cluster.run_for(Duration::from_secs(1));
    }

    fn converge(&mut self, limit: Duration) -> Duration {
        let expected = self.expected.clone();
        let seed = self.cluster.seed();
        let took = self
            .cluster
            .run_until(limit, |c| c.converged(&expected))
            .unwrap_or_else(|| {
                let cluster = &self.cluster;
                let wrong: Vec<String> = cluster
                    .alive()
                    .into_iter()
                    .flat_map(|i| {
                        expected.iter().filter_map(move |(name, v)| {
                            let got = cluster.value(i, name).unwrap_or(0);
                            (got != *v).then(|| {
                                let store = cluster.node(i).store();
                                format!(
                                    "node {i} {name}: {got} != {v} (members {}, actors {}, sinks {:?}, tombstones {})",
                                    cluster.node(i).members().len(),
                                    store.actor_count(),
                                    store.sinks().collect::<Vec<_>>(),
                                    store.tombstone_count()
                                )
                            })
                        })
                    })
                    .take(6)
                    .collect();
                // Compare one wrong counter's contributions with a right node's.
                if let Some((name, v)) = expected.iter().find(|(n, v)| {
                    cluster.alive().iter().any(|&i| cluster.value(i, n).unwrap_or(0) != **v)
                }) {
                    for i in cluster.alive() {
                        let c = cluster.node(i).store().contributions(name).unwrap_or_default();
                        let ok = cluster.value(i, name).unwrap_or(0) == *v;
                        println!("node {i} ok={ok} {name}: {c:?}");
                    }
                }
                panic!("not exact within {limit:?} (seed {seed}): {wrong:#?}")
            });
        for node in self.cluster.alive() {
            if let Err(broken) = self.cluster.node(node).store().check_invariants() {
                panic!("node {node}: {broken} (seed {seed})");
            }
        }
        took
    }

    fn max_actors(&self) -> usize {
        self.cluster
            .alive()
            .into_iter()
            .map(|i| self.cluster.node(i).store().actor_count())
            .max()
            .unwrap_or(0)
    }

    fn assert_no_double_fold(&self) {
        for (node, event) in self.cluster.events() {
            if matches!(event, Event::SinkRefused(_) | Event::Pruned { .. }) {
                println!("node {node}: {event:?}");
            }
        }
        let refused = self
            .cluster
            .events()
            .iter()
            .filter(|(_, e)| matches!(e, Event::SinkRefused(_)))
            .count();
        assert_eq!(
            refused,
            0,
            "a sink was refused (seed {})",
            self.cluster.seed()
        );
    }
}

/// A quarter of the nodes replaced every 10 s for 5 minutes, adds everywhere: the
/// departed actors are pruned, totals stay exact, actors held stay below twice the
/// live nodes.
#[test]
fn churn_prunes_departed_actors_and_stays_exact() {
    for round in 0..2 {
        let seed = seed_from_env(0x11) ^ round;
        let nodes = 8;
        let mut churn = Churn::new(seed, nodes, None);
        churn.cluster.set_faults(Faults::lossy(0.02, 0.01));
        let mut peak = 0;
        for _ in 0..30 {
            churn.adds(40);
            churn.replace_one();
            churn.replace_one();
            churn.cluster.run_for(Duration::from_secs(10));
            peak = peak.max(churn.max_actors());
        }
        churn.adds(40);
        churn.converge(Duration::from_secs(60));
        // Let the last departures pass `after_down` and be pruned.
        churn.cluster.run_for(Duration::from_secs(60));
        churn.converge(Duration::from_secs(10));
        let held = churn.max_actors();
        println!(
            "seed {seed}: {} departures; actors held per node: peak {peak}, at the end {held} \
             for {nodes} live nodes",
            2 * 30
        );
        assert!(
            held <= 2 * nodes,
            "{held} actors held for {nodes} live nodes (seed {seed})"
        );
        churn.assert_no_double_fold();
    }
}

/// A partition while actors are being pruned: the two sides' lowest members both want
/// to prune the same departed actors, but each needs the other side's seals, so nothing
/// is folded twice; after the heal one of them prunes, and totals are exact.
#[test]
fn two_would_be_pruners_never_fold_twice() {
    for round in 0..3 {
        let seed = seed_from_env(0x22) ^ round;
        let mut churn = Churn::new(seed, 8, None);
        churn.adds(100);
        churn.replace_one();
        churn.replace_one();
        churn.converge(Duration::from_secs(30));
        let alive = churn.cluster.alive();
        let half: Vec<usize> = alive[..alive.len() / 2].to_vec();
        churn.cluster.partition(&[&half]);
        // Long enough for both sides to consider the departed actors dead and try,
        // shorter than `after_down` for the other side's members.
        for _ in 0..8 {
            churn.adds(20);
            churn.cluster.run_for(Duration::from_secs(2));
        }
        churn.cluster.heal();
        churn.adds(20);
        churn.converge(Duration::from_secs(60));
        churn.cluster.run_for(Duration::from_secs(60));
        churn.converge(Duration::from_secs(10));
        churn.assert_no_double_fold();
        let sinks: usize = churn
            .cluster
            .events()
            .iter()
            .filter(|(_, e)| matches!(e, Event::Pruned { .. }))
            .count();
        assert!(
            sinks > 0,
            "the departed actors were pruned after the heal (seed {seed})"
        );
    }
}

/// A node restored from an old data directory that still holds entries of actors pruned
/// since: it counts them until it holds the sink, then drops them; nobody counts twice.
#[test]
fn a_node_restored_with_pruned_actors_entries_stays_exact() {
    let seed = seed_from_env(0x33);
    let mut churn = Churn::new(seed, 6, Some(Durability::INSTANT));
    churn.adds(100);
    churn.converge(Duration::from_secs(30));
    let old_disk = churn.cluster.disk(1);
    churn.replace_one();
    churn.replace_one();
    churn.adds(50);
    churn.converge(Duration::from_secs(30));
    // The departed actors are pruned.
    churn.cluster.run_for(Duration::from_secs(60));
    churn.converge(Duration::from_secs(10));
    let pruned = churn
        .cluster
        .events()
        .iter()
        .any(|(_, e)| matches!(e, Event::Pruned { dropped, .. } if *dropped > 0));
    assert!(pruned, "something was pruned (seed {seed})");
    // Node 1 (if still running) is restored from its old disk, holding the pruned
    // actors' entries; otherwise a fresh slot gets that disk.
    let target = if churn.cluster.alive().contains(&1) {
        churn.cluster.crash(1);
        1
    } else {
        let i = churn.cluster.add_node();
        churn.cluster.crash(i);
        i
    };
    churn.cluster.restore_disk(target, old_disk);
    churn.cluster.restart(target);
    churn.adds(30);
    churn.converge(Duration::from_secs(60));
    churn.cluster.run_for(Duration::from_secs(60));
    churn.converge(Duration::from_secs(10));
    churn.assert_no_double_fold();
}

/// A restarted node knows its previous incarnation is gone (it restored that
/// incarnation's data directory), so it prunes it after `after_replaced` even when it is
/// the pruner itself and never saw that incarnation's member replaced. Before this, such
/// a node (one that drew the lowest actor id) waited `after_down` (an hour by default).
/// Alone, the node needs nobody's seal, so the fold happens at its next prune check.
#[test]
fn a_restarted_pruner_prunes_its_own_previous_incarnation_after_replaced() {
    use countermesh_core::{ActorId, Node, NodeId, Restored, Store, StoredEntry};
    let seed = seed_from_env(0x51);
    let mut rng = SmallRng::seed_from_u64(seed);
    let previous = ActorId::random(&mut rng);
    let me = ActorId::random(&mut rng);
    let restored = Restored {
        actor: previous,
        local_version: 2,
        entries: vec![
            StoredEntry {
                name: "orders".into(),
                actor: previous,
                version: 1,
                p: 10,
                n: 0,
            },
            StoredEntry {
                name: "views".into(),
                actor: previous,
                version: 2,
                p: 5,
                n: 1,
            },
        ],
        watermarks: Vec::new(),
    };
    let store = Store::restore(&restored, me, seed, countermesh_core::Limits::default())
        .expect("a valid directory restores");
    let now = std::time::Instant::now();
    let id = NodeId::new("127.0.0.1:7000".parse().expect("address"), me, 1);
    let mut node = Node::new(config(), id, store, seed, now).expect("valid node");
    // Twice `after_replaced` (3 s) of timers; far below `after_down` (40 s).
    let end = now + Duration::from_secs(6);
    while let Some(at) = node.poll_timeout().filter(|&at| at <= end) {
        node.handle_timeout(at);
        while node.poll_transmit().is_some() {}
        while node.poll_event().is_some() {}
    }
    let tombstone = node.store().tombstone(previous);
    assert!(
        tombstone.is_some(),
        "the previous incarnation was not pruned within 2 × after_replaced (seed {seed})"
    );
    assert_eq!(node.store().value("orders"), Some(10), "seed {seed}");
    assert_eq!(node.store().value("views"), Some(4), "seed {seed}");
}
