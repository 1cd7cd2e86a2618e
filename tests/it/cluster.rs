//! Deterministic in-memory clusters: random adds everywhere, a lossy, duplicating,
//! reordering network, partitions that heal, late joiners and crashes. Every node must
//! end with the exact sum and no message may exceed its channel's budget.
//!
//! Each test prints its seed on failure; rerun with `COUNTERMESH_SEED=<seed>`.

use std::collections::HashMap;
use std::time::Duration;

use countermesh_core::Config;
use countermesh_core::Event;
use countermesh_core::testkit::{Cluster, Durability, Faults, seed_from_env};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// A scripted scenario step, in the style of chitchat's scenario tests: every cluster
/// test is a list of these.
#[derive(Debug, Clone)]
enum Op {
    /// `count` random adds (some negative) at random running nodes.
    RandomAdds {
        count: usize,
    },
    /// One add at one node.
    Add(usize, &'static str, i64),
    /// Let virtual time pass.
    Wait(Duration),
    /// Split the listed nodes from the rest.
    Partition(Vec<usize>),
    Heal,
    /// Add a node that joins through the first running node.
    Join,
    Faults(Faults),
    /// Stop a node without a goodbye.
    Crash(usize),
    /// Stop a node gracefully (flush, final push, SWIM leave).
    Leave(usize),
    /// Restart a stopped node as a new incarnation (from its data directory, if the
    /// cluster has durability).
    Restart(usize),
    /// Run until every running node reads the exact sums, or fail after the limit.
    AssertConverged(Duration),
}

struct Scenario {
    cluster: Cluster,
    rng: SmallRng,
    expected: HashMap<String, i128>,
    counters: usize,
}

impl Scenario {
    fn new(seed: u64, nodes: usize, counters: usize, config: Config) -> Self {
        Self::with_durability(seed, nodes, counters, config, None)
    }

    fn with_durability(
        seed: u64,
        nodes: usize,
        counters: usize,
        config: Config,
        durability: Option<Durability>,
    ) -> Self {
        let mut cluster = Cluster::new(seed, config);
        cluster.set_durability(durability);
        cluster.add_nodes(nodes);
        Self {
            cluster,
            rng: SmallRng::seed_from_u64(seed ^ 0x5eed),
            expected: HashMap::new(),
            counters,
        }
    }

    fn run(&mut self, ops: &[Op]) {
        for op in ops {
            match op {
                Op::RandomAdds { count } => {
                    let alive = self.cluster.alive();
                    for _ in 0..*count {
                        let node = alive[self.rng.random_range(0..alive.len())];
                        let name =
                            format!("ctr-{:04}-abcdefg", self.rng.random_range(0..self.counters));
                        let delta = self.rng.random_range(-50i64..=100);
                        self.cluster.add(node, &name, delta);
                        *self.expected.entry(name).or_default() += i128::from(delta);
                    }
                }
                Op::Add(node, name, delta) => {
                    self.cluster.add(*node, name, *delta);
                    *self.expected.entry((*name).to_owned()).or_default() += i128::from(*delta);
                }
                Op::Wait(d) => self.cluster.run_for(*d),
                Op::Partition(side) => self.cluster.partition(&[side]),
                Op::Heal => self.cluster.heal(),
                Op::Join => {
                    self.cluster.add_node();
                }
                Op::Faults(f) => self.cluster.set_faults(*f),
                Op::Crash(node) => self.cluster.crash(*node),
                Op::Leave(node) => self.cluster.leave(*node),
                Op::Restart(node) => self.cluster.restart(*node),
                Op::AssertConverged(limit) => {
                    self.converge(*limit);
                }
            }
        }
    }

    /// Runs until every node reads the exact sums; returns the virtual time it took.
    fn converge(&mut self, limit: Duration) -> Duration {
        let expected = self.expected.clone();
        let took = self
            .cluster
            .run_until(limit, |c| c.converged(&expected))
            .unwrap_or_else(|| {
                let wrong: Vec<_> = self
                    .cluster
                    .alive()
                    .into_iter()
                    .flat_map(|i| {
                        let cluster = &self.cluster;
                        expected.iter().filter_map(move |(name, v)| {
                            let got = cluster.value(i, name).unwrap_or(0);
                            (got != *v).then(|| format!("node {i} {name}: {got} != {v}"))
                        })
                    })
                    .take(10)
                    .collect();
                panic!("no convergence within {limit:?}: {wrong:?}")
            });
        for node in self.cluster.alive() {
            if let Err(broken) = self.cluster.node(node).store().check_invariants() {
                panic!("node {node}: {broken}");
            }
        }
        assert!(
            self.cluster.budget_violations().is_empty(),
            "messages over budget: {:?}",
            &self.cluster.budget_violations()[..self.cluster.budget_violations().len().min(5)]
        );
        took
    }
}

fn hostile_run(seed: u64, nodes: usize, counters: usize) {
    let mut scenario = Scenario::new(seed, nodes, counters, Config::default());
    let half: Vec<usize> = (0..nodes / 2).collect();
    scenario.run(&[
        Op::Wait(Duration::from_secs(3)),
        Op::Faults(Faults::lossy(0.10, 0.10)),
        Op::RandomAdds { count: 500 },
        Op::Wait(Duration::from_millis(700)),
        Op::RandomAdds { count: 500 },
        Op::Partition(half),
        Op::RandomAdds { count: 500 },
        Op::Wait(Duration::from_secs(2)),
        Op::RandomAdds { count: 500 },
        Op::Wait(Duration::from_secs(1)),
        Op::Heal,
        Op::Join,
        Op::RandomAdds { count: 500 },
    ]);
    let took = scenario.converge(Duration::from_secs(120));
    let totals = scenario.cluster.wire_totals();
    println!(
        "seed {seed}: {nodes} nodes (+1 late) converged {took:?} after the last add; \
         wire: {} messages, {} bytes, {} dropped, {} duplicated, {} refused",
        totals.sent, totals.bytes, totals.dropped, totals.duplicated, totals.refused
    );
    assert!(
        totals.dropped > 0 && totals.duplicated > 0,
        "faults were applied"
    );
    let late = scenario.cluster.len() - 1;
    for name in scenario.expected.keys() {
        assert!(scenario.cluster.value(late, name).is_some());
    }
}

#[test]
fn five_nodes_converge_through_loss_duplication_partition_and_late_join() {
    hostile_run(seed_from_env(0xC0_FFEE), 5, 40);
}

#[test]
fn fifty_nodes_converge_through_loss_duplication_partition_and_late_join() {
    hostile_run(seed_from_env(0x50_50), 50, 200);
}

#[test]
fn several_seeds_of_the_small_cluster() {
    for seed in 1..=6 {
        hostile_run(seed_from_env(0) ^ seed, 5, 20);
    }
}

#[test]
fn a_crashed_nodes_counts_stay_in_the_sum() {
    let mut scenario = Scenario::new(seed_from_env(7), 4, 1, Config::default());
    scenario.run(&[
        Op::Wait(Duration::from_secs(2)),
        Op::Add(0, "visits", 10),
        Op::Add(1, "visits", 20),
        Op::Add(2, "visits", 30),
        Op::Add(3, "visits", 40),
        Op::AssertConverged(Duration::from_secs(10)),
        Op::Crash(3),
        // Long enough for SWIM to declare the node down.
        Op::Wait(Duration::from_secs(30)),
        Op::AssertConverged(Duration::ZERO),
        // A node joining now still learns the dead node's contribution.
        Op::Join,
        Op::AssertConverged(Duration::from_secs(10)),
    ]);
    let cluster = &scenario.cluster;
    let down = cluster
        .events()
        .iter()
        .filter(|(_, e)| matches!(e, Event::MemberDown(id) if id.addr().to_string().ends_with(".4:7946")))
        .count();
    assert!(down >= 1, "the crashed node was declared down");
    for i in 0..3 {
        assert_eq!(
            cluster.node(i).members().len(),
            3,
            "two survivors and the joiner"
        );
    }
    assert_eq!(
        cluster.node(4).store().contributors("visits"),
        Some(4),
        "all four actors, the dead one included"
    );
}

#[test]
fn a_graceful_leave_delivers_the_last_adds() {
    let mut scenario = Scenario::new(seed_from_env(11), 3, 1, Config::default());
    scenario.run(&[
        Op::Wait(Duration::from_secs(2)),
        Op::Add(2, "c", 42),
        Op::Leave(2),
        Op::AssertConverged(Duration::from_secs(5)),
    ]);
    let left = scenario
        .cluster
        .events()
        .iter()
        .any(|(i, e)| *i < 2 && matches!(e, Event::MemberDown(_)));
    assert!(left, "peers saw the leave");
}

/// Crashes and restarts with data directories behind a slow, jittery, failing disk:
/// every restart is a new actor that restores the old one's committed entries, and the
/// totals stay exact (the crashes happen after convergence, so every add was gossiped).
#[test]
fn restarts_from_slow_failing_disks_stay_exact() {
    let durability = Durability {
        commit_interval: Duration::from_millis(50),
        min_latency: Duration::from_millis(20),
        max_latency: Duration::from_millis(400),
        failure: 0.2,
    };
    for round in 0..3 {
        let seed = seed_from_env(31) ^ round;
        let mut scenario =
            Scenario::with_durability(seed, 5, 20, Config::default(), Some(durability));
        scenario.run(&[
            Op::Faults(Faults::lossy(0.1, 0.1)),
            Op::Wait(Duration::from_secs(2)),
            Op::RandomAdds { count: 300 },
            Op::AssertConverged(Duration::from_secs(30)),
            Op::Crash(1),
            Op::Leave(2),
            Op::RandomAdds { count: 300 },
            Op::Restart(1),
            Op::Restart(2),
            Op::RandomAdds { count: 300 },
            Op::AssertConverged(Duration::from_secs(30)),
            Op::Crash(0),
            Op::Restart(0),
            Op::RandomAdds { count: 100 },
            Op::AssertConverged(Duration::from_secs(30)),
        ]);
        let actors = scenario.cluster.node(3).store().actor_count();
        assert_eq!(
            actors, 8,
            "5 first incarnations and 3 restarts (seed {seed})"
        );
    }
}

#[test]
fn tiny_message_budgets_with_thousands_of_counters() {
    let seed = seed_from_env(23);
    let config = Config {
        max_message_bytes: countermesh_core::MIN_MESSAGE_BUDGET,
        max_sync_reply_bytes: 16 * 1024,
        ..Config::default()
    };
    let mut scenario = Scenario::new(seed, 4, 3000, config);
    scenario.run(&[
        Op::Wait(Duration::from_secs(2)),
        Op::Faults(Faults::lossy(0.05, 0.05)),
        Op::RandomAdds { count: 6000 },
    ]);
    let took = scenario.converge(Duration::from_secs(300));
    println!("seed {seed}: 3000 counters over 512-byte messages converged in {took:?}");
    scenario.run(&[Op::Join]);
    let took = scenario.converge(Duration::from_secs(300));
    println!("seed {seed}: a late joiner caught up in {took:?}");
}

#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let mut scenario = Scenario::new(seed, 6, 10, Config::default());
        scenario.run(&[
            Op::Faults(Faults::lossy(0.2, 0.2)),
            Op::RandomAdds { count: 100 },
            Op::Wait(Duration::from_secs(3)),
        ]);
        let took = scenario.converge(Duration::from_secs(60));
        (took, scenario.cluster.wire_totals())
    };
    assert_eq!(run(99), run(99));
}
