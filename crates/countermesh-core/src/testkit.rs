//! A deterministic in-memory cluster: many [`Node`]s, a virtual clock, a seeded RNG, a
//! network that drops, duplicates, delays, reorders and partitions messages, and (if
//! asked) a data directory per node behind a group committer with latency, jitter and
//! failures, so crashes and restarts from disk are part of the model.
//!
//! Everything that varies comes from one seed, so a failing run is reproduced exactly by
//! its seed; the cluster prints it if the test panics (rerun with
//! `COUNTERMESH_SEED=<seed>`, read by [`seed_from_env`]). This is the harness shape of
//! `quinn-proto`'s test `Pair` and of turmoil: crash, partition, hold and heal are plain
//! method calls.

use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, RngExt, SeedableRng};

use crate::{
    ActorId, Changes, Channel, Config, Counter, Event, Limits, Node, NodeId, Restored, Store,
    StoredEntry,
};

/// Faults the simulated network applies to every message, independently.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a delivered message is delivered a second time (with its own
    /// random delay, so the copies can arrive in either order).
    pub duplicate: f64,
    /// Smallest one-way delay.
    pub min_delay: Duration,
    /// Largest one-way delay. A spread between the two reorders messages.
    pub max_delay: Duration,
}

impl Faults {
    /// A perfect network with a fixed 1 ms delay.
    pub const NONE: Faults = Faults {
        loss: 0.0,
        duplicate: 0.0,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
    };

    /// Loss and duplication at the given rates, with delays of 1 to 30 ms (reordering).
    pub fn lossy(loss: f64, duplicate: f64) -> Self {
        Faults {
            loss,
            duplicate,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(30),
        }
    }
}

/// A data directory per node, written by a group committer as the runtime's is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Durability {
    /// How often the committer folds adds and starts a commit.
    pub commit_interval: Duration,
    /// Shortest time a commit takes (the fsync).
    pub min_latency: Duration,
    /// Longest time a commit takes; the spread is jitter.
    pub max_latency: Duration,
    /// Probability that a commit fails; its changes are retried with the next one.
    pub failure: f64,
}

impl Durability {
    /// Instant, reliable storage committing every 50 ms.
    pub const INSTANT: Durability = Durability {
        commit_interval: Duration::from_millis(50),
        min_latency: Duration::ZERO,
        max_latency: Duration::ZERO,
        failure: 0.0,
    };
}

/// What a node's data directory holds: the durable state of its latest incarnation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Disk {
    actor: Option<ActorId>,
    local_version: u64,
    entries: std::collections::BTreeMap<(String, ActorId), (u64, u64, u64)>,
    watermarks: std::collections::BTreeMap<ActorId, u64>,
}

impl Disk {
    fn commit(&mut self, changes: &Changes) {
        for e in &changes.entries {
            self.entries
                .insert((e.name.to_string(), e.actor), (e.version, e.p, e.n));
        }
        for &(actor, version) in &changes.watermarks {
            self.watermarks.insert(actor, version);
        }
        // As the runtime's storage does: removals after writes, so a removal wins.
        for (name, actor) in &changes.removed {
            self.entries.remove(&(name.clone(), *actor));
        }
        for actor in &changes.retired {
            self.watermarks.remove(actor);
        }
        self.local_version = self.local_version.max(changes.local_version);
    }

    /// A new incarnation takes over the directory: the old actor's committed version
    /// becomes a watermark, as the runtime's storage does at start.
    fn begin(&mut self, actor: ActorId) {
        if let Some(previous) = self.actor.replace(actor) {
            let held = self.watermarks.entry(previous).or_insert(0);
            *held = (*held).max(self.local_version);
        }
        self.local_version = 0;
    }

    fn restored(&self) -> Option<Restored<'static>> {
        let actor = self.actor?;
        Some(Restored {
            actor,
            local_version: self.local_version,
            entries: self
                .entries
                .iter()
                .map(|((name, actor), &(version, p, n))| StoredEntry {
                    name: name.clone().into(),
                    actor: *actor,
                    version,
                    p,
                    n,
                })
                .collect(),
            watermarks: self.watermarks.iter().map(|(&a, &v)| (a, v)).collect(),
        })
    }
}

/// The committer of one node: what it is writing and what failed and waits for retry.
#[derive(Debug, Default)]
struct Committer {
    next_commit: Option<Instant>,
    in_flight: Option<(Instant, Changes, bool)>,
    carry: Option<Changes>,
}

/// A message on the simulated wire.
#[derive(Debug)]
struct InFlight {
    at: Instant,
    seq: u64,
    from: SocketAddr,
    to: SocketAddr,
    channel: Channel,
    payload: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Reversed: `BinaryHeap` is a max-heap and the earliest message must come first.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// One simulated node: the protocol node plus the handles the test added through.
#[derive(Debug)]
pub struct SimNode {
    /// The protocol node.
    pub node: Node,
    counters: HashMap<String, Counter>,
    committer: Committer,
}

/// A message that was larger than the budget of the channel it was sent on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetViolation {
    /// Index of the sending node.
    pub node: usize,
    /// The channel.
    pub channel: Channel,
    /// The message size.
    pub len: usize,
    /// The channel's budget.
    pub budget: usize,
}

/// Message and byte totals seen on the simulated wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireTotals {
    /// Messages handed to the network.
    pub sent: u64,
    /// Bytes handed to the network.
    pub bytes: u64,
    /// Messages the network dropped (loss or partition).
    pub dropped: u64,
    /// Extra copies the network delivered.
    pub duplicated: u64,
    /// Messages the receiving node refused.
    pub refused: u64,
}

/// N nodes on a virtual network with a virtual clock.
#[derive(Debug)]
pub struct Cluster {
    seed: u64,
    rng: SmallRng,
    config: Config,
    durability: Option<Durability>,
    start: Instant,
    now: Instant,
    nodes: Vec<Option<SimNode>>,
    addrs: Vec<SocketAddr>,
    /// Per node, its data directory (only with [`Cluster::set_durability`]).
    disks: Vec<Disk>,
    /// Per node, its latest incarnation number.
    incarnations: Vec<u64>,
    /// Per node, its protocol configuration.
    configs: Vec<Config>,
    /// Partition group per node; messages only flow within a group.
    groups: Vec<u32>,
    wire: BinaryHeap<InFlight>,
    wire_seq: u64,
    faults: Faults,
    violations: Vec<BudgetViolation>,
    totals: WireTotals,
    events: Vec<(usize, Event)>,
}

/// The seed in `COUNTERMESH_SEED`, if set, else `default`. Tests use this so that a
/// printed seed can be replayed.
pub fn seed_from_env(default: u64) -> u64 {
    std::env::var("COUNTERMESH_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

/// The seed for a randomized test that has no fixed default (real networks, real
/// ZooKeeper): `COUNTERMESH_SEED` if set, else a fresh one from the clock. It is printed
/// with `test`'s name so that a failure can be replayed. This is the one seed helper of
/// every test crate in the workspace (deterministic tests use [`seed_from_env`]).
#[allow(clippy::print_stdout)] // The seed must reach the test's output to be replayable.
pub fn test_seed(test: &str) -> u64 {
    let seed = std::env::var("COUNTERMESH_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    println!("{test}: seed {seed} (rerun with COUNTERMESH_SEED={seed})");
    seed
}

impl Cluster {
    /// An empty cluster whose every random choice derives from `seed`.
    pub fn new(seed: u64, config: Config) -> Self {
        // A fixed base keeps runs identical; only differences between instants matter.
        let start = Instant::now();
        Self {
            seed,
            rng: SmallRng::seed_from_u64(seed),
            config,
            durability: None,
            start,
            now: start,
            nodes: Vec::new(),
            addrs: Vec::new(),
            disks: Vec::new(),
            incarnations: Vec::new(),
            configs: Vec::new(),
            groups: Vec::new(),
            wire: BinaryHeap::new(),
            wire_seq: 0,
            faults: Faults::NONE,
            violations: Vec::new(),
            totals: WireTotals::default(),
            events: Vec::new(),
        }
    }

    /// The seed this cluster was built from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Virtual time elapsed since the cluster was created.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Sets the faults applied to messages sent from now on.
    pub fn set_faults(&mut self, faults: Faults) {
        self.faults = faults;
    }

    /// Gives nodes added or restarted from now on a data directory written by a
    /// committer with the given latency, jitter and failure rate. Without one (the
    /// default), a restarted node starts empty.
    pub fn set_durability(&mut self, durability: Option<Durability>) {
        self.durability = durability;
    }

    /// Number of nodes ever added (crashed ones included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node was ever added.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Indices of nodes that are running.
    pub fn alive(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_some())
            .collect()
    }

    /// Adds a node and has it join through the lowest-numbered running node.
    pub fn add_node(&mut self) -> usize {
        self.add_node_with(self.config.clone())
    }

    /// Adds a node with its own configuration (for clusters of mixed settings).
    pub fn add_node_with(&mut self, config: Config) -> usize {
        let index = self.nodes.len();
        let addr = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(
                10,
                0,
                (index / 250) as u8,
                (index % 250 + 1) as u8,
            )),
            7946,
        );
        self.nodes.push(None);
        self.addrs.push(addr);
        self.groups.push(0);
        self.disks.push(Disk::default());
        self.incarnations.push(0);
        self.configs.push(config);
        self.boot(index);
        index
    }

    /// Starts node `index` (not running) as a new incarnation with a fresh actor: from
    /// its data directory if it has one, else empty. Joins through the lowest-numbered
    /// running node.
    fn boot(&mut self, index: usize) {
        let actor = ActorId::random(&mut self.rng);
        let hash_seed = self.rng.next_u64();
        let store = match (self.durability, self.disks[index].restored()) {
            (Some(_), Some(restored)) => {
                Store::restore(&restored, actor, hash_seed, Limits::default())
                    .expect("the committed state restores")
            }
            _ => Store::new(actor, hash_seed),
        };
        let store = store.with_change_tracking(self.durability.is_some());
        if self.durability.is_some() {
            self.disks[index].begin(actor);
        }
        self.incarnations[index] += 1;
        let id = NodeId::new(self.addrs[index], actor, self.incarnations[index]);
        let node = Node::new(
            self.configs[index].clone(),
            id,
            store,
            self.rng.next_u64(),
            self.now,
        )
        .expect("the cluster's config is valid");
        let seed = self.alive().first().map(|&i| self.addrs[i]);
        let committer = Committer {
            next_commit: self.durability.map(|d| self.now + d.commit_interval),
            ..Committer::default()
        };
        self.nodes[index] = Some(SimNode {
            node,
            counters: HashMap::new(),
            committer,
        });
        if let Some(seed) = seed {
            let now = self.now;
            self.node_mut(index).join(seed, now);
            self.collect(index);
        }
    }

    /// Restarts crashed node `index` at its address as a new incarnation (a fresh actor):
    /// from its data directory if the cluster has durability, else empty.
    pub fn restart(&mut self, index: usize) {
        assert!(self.nodes[index].is_none(), "node {index} is running");
        self.boot(index);
    }

    /// A copy of node `index`'s data directory (for example, to restore an old backup
    /// later with [`Cluster::restore_disk`]).
    pub fn disk(&self, index: usize) -> Disk {
        self.disks[index].clone()
    }

    /// Replaces crashed node `index`'s data directory with `disk`.
    pub fn restore_disk(&mut self, index: usize, disk: Disk) {
        assert!(self.nodes[index].is_none(), "node {index} is running");
        self.disks[index] = disk;
    }

    /// Adds `n` nodes.
    pub fn add_nodes(&mut self, n: usize) -> Vec<usize> {
        (0..n).map(|_| self.add_node()).collect()
    }

    /// The protocol node at `index`. Panics if it crashed.
    pub fn node(&self, index: usize) -> &Node {
        &self.nodes[index].as_ref().expect("node is running").node
    }

    /// The protocol node at `index`, mutably. Panics if it crashed.
    pub fn node_mut(&mut self, index: usize) -> &mut Node {
        &mut self.nodes[index].as_mut().expect("node is running").node
    }

    /// Adds `delta` to counter `name` at node `index` through a (cached) handle.
    pub fn add(&mut self, index: usize, name: &str, delta: i64) {
        let sim = self.nodes[index].as_mut().expect("node is running");
        let counter = match sim.counters.get(name) {
            Some(counter) => counter,
            None => {
                let counter = sim
                    .node
                    .store_mut()
                    .counter(name)
                    .expect("valid counter name");
                sim.counters.entry(name.to_owned()).or_insert(counter)
            }
        };
        counter.add(delta);
    }

    /// The value of `name` at node `index` (`None` if the node never heard of it).
    pub fn value(&self, index: usize, name: &str) -> Option<i128> {
        self.node(index).store().value(name)
    }

    /// Whether every running node reads exactly `expected` for every counter in it.
    pub fn converged(&self, expected: &HashMap<String, i128>) -> bool {
        self.alive().into_iter().all(|i| {
            expected
                .iter()
                .all(|(name, value)| self.value(i, name).unwrap_or(0) == *value)
        })
    }

    /// Stops node `index` without a goodbye: its queued messages vanish with it, and
    /// messages to it are dropped.
    pub fn crash(&mut self, index: usize) {
        self.nodes[index] = None;
    }

    /// Has node `index` leave the cluster gracefully (flush, final push, SWIM leave),
    /// then stops it.
    pub fn leave(&mut self, index: usize) {
        let now = self.now;
        if self.durability.is_some() {
            // `Mesh::shutdown` flushes to disk first and waits for it.
            let sim = self.nodes[index].as_mut().expect("node is running");
            let store = sim.node.store_mut();
            store.flush();
            let mut batch = sim.committer.carry.take().unwrap_or_default();
            if let Some((_, in_flight, _)) = sim.committer.in_flight.take() {
                batch.absorb(in_flight);
            }
            batch.absorb(store.take_changes());
            self.disks[index].commit(&batch);
        }
        let node = self.node_mut(index);
        node.gossip_now(now);
        node.leave(now);
        self.collect(index);
        self.nodes[index] = None;
    }

    /// Splits the cluster: messages only flow between nodes of the same group. Nodes not
    /// listed form one more group together.
    pub fn partition(&mut self, groups: &[&[usize]]) {
        let rest = groups.len() as u32 + 1;
        self.groups.iter_mut().for_each(|g| *g = rest);
        for (g, members) in groups.iter().enumerate() {
            for &i in *members {
                self.groups[i] = g as u32 + 1;
            }
        }
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.groups.iter_mut().for_each(|g| *g = 0);
    }

    /// Messages larger than their channel's budget, seen so far.
    pub fn budget_violations(&self) -> &[BudgetViolation] {
        &self.violations
    }

    /// Totals for everything sent on the simulated wire.
    pub fn wire_totals(&self) -> WireTotals {
        self.totals
    }

    /// Membership events reported by nodes, as `(node index, event)`.
    pub fn events(&self) -> &[(usize, Event)] {
        &self.events
    }

    /// Advances virtual time by `duration`, processing everything due on the way.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.step_until(end) {}
        self.now = end;
    }

    /// Runs until `done` holds (checked after each event), or `limit` of virtual time
    /// passes. Returns the virtual time it took, or `None` on timeout.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&Cluster) -> bool,
    ) -> Option<Duration> {
        let begin = self.now;
        let end = self.now + limit;
        loop {
            if done(self) {
                return Some(self.now - begin);
            }
            if !self.step_until(end) {
                self.now = end;
                return done(self).then(|| self.now - begin);
            }
        }
    }

    /// The earliest thing node `index` waits for: a protocol timer or its committer.
    fn next_due(sim: &SimNode) -> Option<Instant> {
        let commit = sim
            .committer
            .in_flight
            .as_ref()
            .map(|(at, _, _)| *at)
            .or(sim.committer.next_commit);
        match (sim.node.poll_timeout(), commit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Processes the next event if it is due by `end`. Returns false if none is.
    fn step_until(&mut self, end: Instant) -> bool {
        let next_timer = self.nodes.iter().flatten().filter_map(Self::next_due).min();
        let next_message = self.wire.peek().map(|m| m.at);
        let next = match (next_timer, next_message) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return false,
        };
        if next > end {
            return false;
        }
        self.now = self.now.max(next);
        let now = self.now;
        while self.wire.peek().is_some_and(|m| m.at <= now) {
            let Some(message) = self.wire.pop() else {
                break;
            };
            self.deliver(message);
        }
        for index in 0..self.nodes.len() {
            self.run_committer(index);
            let due = self.nodes[index]
                .as_ref()
                .and_then(|n| n.node.poll_timeout())
                .is_some_and(|at| at <= now);
            if due {
                self.node_mut(index).handle_timeout(now);
                self.collect(index);
            }
        }
        true
    }

    /// What the runtime's group committer does, with the configured latency and
    /// failures: fold and take changes every interval, write them, and on failure carry
    /// them over to the next commit.
    fn run_committer(&mut self, index: usize) {
        let (Some(durability), now) = (self.durability, self.now) else {
            return;
        };
        let Some(sim) = self.nodes[index].as_mut() else {
            return;
        };
        if let Some((at, _, _)) = &sim.committer.in_flight
            && *at <= now
        {
            let Some((_, batch, ok)) = sim.committer.in_flight.take() else {
                return;
            };
            if ok {
                self.disks[index].commit(&batch);
            } else {
                sim.committer.carry = Some(batch);
            }
        }
        let due = sim.committer.next_commit.is_some_and(|at| at <= now);
        if !due || sim.committer.in_flight.is_some() {
            return;
        }
        sim.committer.next_commit = Some(now + durability.commit_interval);
        let store = sim.node.store_mut();
        store.flush();
        let changes = store.take_changes();
        let mut batch = sim.committer.carry.take().unwrap_or_default();
        batch.absorb(changes);
        let span = durability
            .max_latency
            .saturating_sub(durability.min_latency)
            .as_micros() as u64;
        let latency = durability.min_latency
            + Duration::from_micros(if span == 0 {
                0
            } else {
                self.rng.random_range(0..=span)
            });
        let ok = !self.rng.random_bool(durability.failure);
        sim.committer.in_flight = Some((now + latency, batch, ok));
    }

    fn deliver(&mut self, message: InFlight) {
        let Some(index) = self.addrs.iter().position(|a| *a == message.to) else {
            return;
        };
        let now = self.now;
        let Some(sim) = self.nodes[index].as_mut() else {
            self.totals.dropped += 1;
            return;
        };
        if sim
            .node
            .handle_message(message.from, message.channel, &message.payload, now)
            .is_err()
        {
            self.totals.refused += 1;
        }
        self.collect(index);
    }

    /// Moves a node's output onto the wire, applying faults and partitions. A message
    /// larger than the sender's or the receiver's budget for its channel is recorded as
    /// a violation.
    fn collect(&mut self, index: usize) {
        let from = self.addrs[index];
        loop {
            let Some(sim) = self.nodes[index].as_mut() else {
                return;
            };
            if let Some(event) = sim.node.poll_event() {
                self.events.push((index, event));
                continue;
            }
            let Some(transmit) = sim.node.poll_transmit() else {
                return;
            };
            let receiver = self.addrs.iter().position(|a| *a == transmit.destination);
            let budget = [Some(index), receiver]
                .into_iter()
                .flatten()
                .map(|i| match transmit.channel {
                    Channel::Datagram => self.configs[i].max_datagram_bytes,
                    Channel::Stream => self.configs[i].max_message_bytes,
                })
                .min()
                .unwrap_or(usize::MAX);
            if transmit.payload.len() > budget {
                self.violations.push(BudgetViolation {
                    node: index,
                    channel: transmit.channel,
                    len: transmit.payload.len(),
                    budget,
                });
            }
            self.totals.sent += 1;
            self.totals.bytes += transmit.payload.len() as u64;
            let to_group = receiver.map(|i| self.groups[i]);
            if to_group != Some(self.groups[index]) || self.rng.random_bool(self.faults.loss) {
                self.totals.dropped += 1;
                continue;
            }
            let copies = if self.rng.random_bool(self.faults.duplicate) {
                self.totals.duplicated += 1;
                2
            } else {
                1
            };
            for _ in 0..copies {
                let delay = self.delay();
                self.wire_seq += 1;
                self.wire.push(InFlight {
                    at: self.now + delay,
                    seq: self.wire_seq,
                    from,
                    to: transmit.destination,
                    channel: transmit.channel,
                    payload: transmit.payload.clone(),
                });
            }
        }
    }

    fn delay(&mut self) -> Duration {
        let (min, max) = (self.faults.min_delay, self.faults.max_delay);
        if max <= min {
            return min;
        }
        let span = (max - min).as_micros() as u64;
        min + Duration::from_micros(self.rng.random_range(0..=span))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            #[allow(clippy::print_stderr)]
            {
                eprintln!(
                    "in-memory cluster failed with seed {seed}; rerun with COUNTERMESH_SEED={seed}",
                    seed = self.seed
                );
            }
        }
    }
}
