//! The event loop: virtual time, the per-node timer heap, the wire, scheduled control
//! events, and the glue that feeds each node its input and routes its output.
//!
//! Every step takes the earliest of three queues: control events (lifecycle, workload,
//! sampling), messages in flight, and node deadlines. Each is a binary heap, so a step
//! costs O(log N) plus the node's own work; nothing scans all nodes per event. Ties are
//! broken control first, then messages, then timers, each in a fixed order (schedule
//! order, send order, node index), which makes a run a function of its seed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use countermesh_core::{ActorId, Channel, Config, Counter, HandleError, Node};

use crate::restart::Persistence;
use rand::SeedableRng;
use rand::rngs::SmallRng;

use crate::inflight::{InFlight, Wire};
use crate::lifecycle::Control;
use crate::metrics::Metrics;
use crate::names::Names;
use crate::network::{DropReason, Fate, Network};
use crate::nodes::{LiveSet, address, index_of};
use crate::oracle::Oracle;
use crate::probes::Probes;
use crate::report::{Failure, Report};
use crate::restart::Disk;
use crate::scenario::{SabotageFile, Scenario};
use crate::timers::TimerHeap;

/// How to run a scenario.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Seed; default the scenario's.
    pub seed: Option<u64>,
    /// Stop (incomplete) after this much wall time; default the scenario's budget.
    pub wall_budget: Option<Duration>,
    /// Stop (incomplete) when the process's resident memory passes this many bytes.
    pub rss_budget: Option<u64>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

/// The node config a scenario asks for.
pub fn node_config(scenario: &Scenario) -> Config {
    let p = &scenario.file.protocol;
    let hint = match p.cluster_size_hint {
        0 => scenario.initial_nodes as u32,
        n => n,
    };
    let mut config = Config::for_cluster_size(hint);
    config.gossip_interval = Duration::from_nanos(scenario.gossip_interval());
    config.fanout = p.fanout;
    if let Some(bytes) = p.max_datagram_bytes {
        config.max_datagram_bytes = bytes;
    }
    if let Some(bytes) = p.max_message_bytes {
        config.max_message_bytes = bytes;
    }
    config.prune = scenario.prune;
    config
}

/// Where a node slot is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostState {
    /// Scheduled to start later.
    NotStarted,
    /// A process runs.
    Running,
    /// Crashed; may restart.
    Down,
    /// Left gracefully for good.
    Left,
}

/// One node slot (one address) and the process running there, if any.
#[derive(Debug)]
pub(crate) struct Host {
    pub(crate) node: Option<Box<Node>>,
    pub(crate) state: HostState,
    /// Bumped whenever the process stops; messages carry the epochs of both ends.
    pub(crate) epoch: u32,
    /// Epochs whose process crashed (what they sent in flight is discarded).
    pub(crate) crashed: Vec<u32>,
    pub(crate) incarnation: u64,
    pub(crate) actor: ActorId,
    /// The oracle record of the running (or last) process.
    pub(crate) record: usize,
    /// Cached handles of workload counters, by workload counter index.
    pub(crate) handles: Vec<Option<Counter>>,
    pub(crate) disk: Option<Disk>,
    pub(crate) next_commit: u64,
}

impl Host {
    fn new() -> Self {
        Self {
            node: None,
            state: HostState::NotStarted,
            epoch: 0,
            crashed: Vec::new(),
            incarnation: 0,
            actor: ActorId::from_u64(0),
            record: usize::MAX,
            handles: Vec::new(),
            disk: None,
            next_commit: 0,
        }
    }
}

/// The whole simulated world.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) scenario: Scenario,
    pub(crate) seed: u64,
    pub(crate) config: Config,
    pub(crate) persistence: Persistence,
    base: Instant,
    pub(crate) now: u64,
    pub(crate) hosts: Vec<Host>,
    pub(crate) live: LiveSet,
    timers: TimerHeap,
    wire: Wire,
    control: BinaryHeap<Reverse<(u64, u64, usize)>>,
    pub(crate) controls: Vec<Option<Control>>,
    control_seq: u64,
    pub(crate) net: Network,
    pub(crate) rng: SmallRng,
    pub(crate) names: Names,
    pub(crate) oracle: Oracle,
    pub(crate) probes: Probes,
    pub(crate) metrics: Metrics,
    pub(crate) failures: Vec<Failure>,
    pub(crate) stream_budget_check: usize,
    pub(crate) watch: crate::observe::Watch,
    /// Wall time spent inside `Node::handle_message` and `Node::handle_timeout` (and
    /// commits), to show how much of a run is the protocol and how much the simulator.
    pub(crate) protocol_time: Duration,
    pub(crate) progress: crate::progress::Progress,
}

/// What the loop should do after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Continue,
    Done,
}

impl World {
    fn new(scenario: &Scenario, options: &RunOptions) -> Self {
        let seed = options.seed.unwrap_or(scenario.file.seed);
        let mut master = SmallRng::seed_from_u64(seed);
        let net_rng = SmallRng::from_rng(&mut master);
        let config = node_config(scenario);
        let persistence = if scenario.data_dir {
            Persistence::Required
        } else {
            Persistence::None
        };
        let stream_budget_check = scenario
            .file
            .sabotage
            .iter()
            .find_map(|s| match s {
                SabotageFile::StreamBudget { bytes } => Some(*bytes),
                _ => None,
            })
            .unwrap_or(config.max_message_bytes);
        let mut hosts = Vec::with_capacity(scenario.initial_nodes);
        hosts.resize_with(scenario.initial_nodes, Host::new);
        Self {
            seed,
            persistence,
            base: Instant::now(),
            now: 0,
            hosts,
            live: LiveSet::default(),
            timers: TimerHeap::default(),
            wire: Wire::default(),
            control: BinaryHeap::new(),
            controls: Vec::new(),
            control_seq: 0,
            net: Network::new(scenario, net_rng),
            rng: master,
            names: Names::default(),
            oracle: Oracle::default(),
            probes: Probes::new(scenario.gossip_interval()),
            metrics: Metrics::default(),
            failures: Vec::new(),
            stream_budget_check,
            watch: crate::observe::Watch::new(scenario),
            protocol_time: Duration::ZERO,
            progress: crate::progress::Progress::new(scenario, options),
            config,
            scenario: scenario.clone(),
        }
    }

    /// The node clock at virtual time `ns`.
    pub(crate) fn instant(&self, ns: u64) -> Instant {
        self.base + Duration::from_nanos(ns)
    }

    /// Schedules a control event.
    pub(crate) fn schedule(&mut self, at: u64, control: Control) {
        self.controls.push(Some(control));
        self.control
            .push(Reverse((at, self.control_seq, self.controls.len() - 1)));
        self.control_seq += 1;
    }

    /// Runs until the end condition or a budget stops it.
    fn run(&mut self) -> Option<String> {
        loop {
            if let Some(reason) = self.progress.over_budget(self.metrics.events, self.now) {
                return Some(reason);
            }
            match self.step() {
                Step::Continue => {}
                Step::Done => return None,
            }
        }
    }

    fn step(&mut self) -> Step {
        let control = self.control.peek().map(|Reverse((at, _, _))| *at);
        let message = self.wire.peek_time();
        let timer = self.timers.peek().map(|(at, _)| at);
        let next = [control, message, timer].into_iter().flatten().min();
        let Some(next) = next else {
            return Step::Done;
        };
        self.now = self.now.max(next);
        self.metrics.events += 1;
        if control == Some(next) {
            let Some(Reverse((_, _, index))) = self.control.pop() else {
                return Step::Done;
            };
            let control = self.controls[index].take().expect("each control runs once");
            return match self.handle_control(control) {
                true => Step::Done,
                false => Step::Continue,
            };
        }
        if message == Some(next) {
            if let Some(m) = self.wire.pop() {
                self.deliver(m);
            }
            return Step::Continue;
        }
        if let Some((_, node)) = self.timers.peek() {
            self.fire_timer(node);
        }
        Step::Continue
    }

    fn deliver(&mut self, m: InFlight) {
        let (from, to) = (m.from as usize, m.to as usize);
        if self.hosts[from].crashed.contains(&m.from_epoch) {
            self.metrics.fates.from_crashed += 1;
            return;
        }
        let now = self.instant(self.now);
        let host = &mut self.hosts[to];
        let Some(node) = host.node.as_mut().filter(|_| host.epoch == m.to_epoch) else {
            self.metrics.fates.to_down += 1;
            return;
        };
        self.metrics.fates.delivered += 1;
        let clock = Instant::now();
        let result = node.handle_message(address(from), m.channel, &m.payload, now);
        self.protocol_time += clock.elapsed();
        match result {
            Ok(()) => {}
            Err(HandleError::RateLimited(_)) => self.metrics.fates.rate_limited += 1,
            Err(_) => self.metrics.fates.refused += 1,
        }
        if self.probes.any_active() {
            let store = self.hosts[to].node.as_ref().map(|n| n.store());
            if let Some(store) = store {
                self.probes.observe(to, store, self.now);
            }
        }
        self.drain(to);
    }

    fn fire_timer(&mut self, i: usize) {
        let now = self.instant(self.now);
        let commit_interval = (self.scenario.file.protocol.commit_interval_ms * 1e6) as u64;
        let host = &mut self.hosts[i];
        let Some(node) = host.node.as_mut() else {
            self.timers.set(i, None);
            return;
        };
        let clock = Instant::now();
        if let Some(disk) = host.disk.as_mut()
            && self.now >= host.next_commit
        {
            crate::restart::commit(node, disk, &mut self.names);
            self.oracle.commit(host.record);
            host.next_commit = self.now + commit_interval;
        }
        node.handle_timeout(now);
        self.protocol_time += clock.elapsed();
        self.drain(i);
    }

    /// Routes node `i`'s output, tracks its membership and reschedules its timer.
    pub(crate) fn drain(&mut self, i: usize) {
        let epoch = self.hosts[i].epoch;
        loop {
            let Some(node) = self.hosts[i].node.as_mut() else {
                return;
            };
            // Membership is read from `members()` below; of the events, only a refused
            // sink (a double fold the store caught) is counted.
            while let Some(event) = node.poll_event() {
                if let countermesh_core::Event::SinkRefused(_) = event {
                    self.metrics.sinks_refused += 1;
                }
            }
            let Some(transmit) = node.poll_transmit() else {
                break;
            };
            self.route(i, epoch, transmit);
        }
        let Some(node) = self.hosts[i].node.as_ref() else {
            return;
        };
        let members = node.members().len();
        let deadline = node.poll_timeout().map(|at| {
            let ns = at.saturating_duration_since(self.base).as_nanos() as u64;
            ns.max(self.now) + self.net.timer_lag(i)
        });
        self.timers.set(i, deadline);
        self.metrics.membership.set(i, Some(members));
        self.membership_check();
    }

    fn route(&mut self, from: usize, from_epoch: u32, t: countermesh_core::Transmit) {
        let len = t.payload.len();
        let budget = match t.channel {
            Channel::Datagram => self.config.max_datagram_bytes,
            Channel::Stream => self.stream_budget_check,
        };
        if len > budget {
            self.metrics.budget_violations += 1;
            self.metrics
                .first_violation
                .get_or_insert((from, t.kind, len, budget));
        }
        self.metrics.sent(from, t.kind, len);
        let Some(to) = index_of(t.destination).filter(|&to| to < self.hosts.len()) else {
            self.metrics.fates.unroutable += 1;
            return;
        };
        let host = &self.hosts[to];
        if host.node.is_none() {
            self.metrics.fates.to_down += 1;
            return;
        }
        let to_epoch = host.epoch;
        match self.net.fate(from, to, t.channel) {
            Fate::Dropped(DropReason::Loss) => self.metrics.fates.lost += 1,
            Fate::Dropped(DropReason::Partition) => self.metrics.fates.partitioned += 1,
            Fate::Delivered([first, second]) => {
                let message = |at: u64, payload: Vec<u8>| InFlight {
                    at,
                    seq: 0,
                    from: from as u32,
                    to: to as u32,
                    to_epoch,
                    from_epoch,
                    channel: t.channel,
                    kind: t.kind,
                    payload,
                };
                if let Some(delay) = second {
                    self.metrics.fates.duplicated += 1;
                    self.wire.push(message(self.now + delay, t.payload.clone()));
                }
                if let Some(delay) = first {
                    self.wire.push(message(self.now + delay, t.payload));
                }
            }
        }
    }

    /// Removes node `i`'s deadline (its process stopped).
    pub(crate) fn unschedule(&mut self, i: usize) {
        self.timers.set(i, None);
        self.metrics.membership.set(i, None);
    }

    /// Adds a host slot for a node that joins later; returns its index.
    pub(crate) fn add_host(&mut self) -> usize {
        self.hosts.push(Host::new());
        self.hosts.len() - 1
    }

    /// Messages and payload bytes in flight.
    pub(crate) fn in_flight(&self) -> (usize, u64) {
        (self.wire.len(), self.wire.bytes())
    }
}

/// Runs a scenario and reports what happened. Never panics on a failed check: failures
/// are in the report, and the caller decides the exit status.
pub fn run(scenario: &Scenario, options: &RunOptions) -> Report {
    let started = Instant::now();
    let mut world = World::new(scenario, options);
    world.schedule_scenario();
    let incomplete = world.run();
    world.finish(started, incomplete)
}
