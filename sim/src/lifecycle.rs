//! Node lifecycle and scheduled changes: the scenario's timeline as control events
//! (join waves, crashes, restarts, leaves, rolling restarts, churn, partitions, link
//! faults, slow nodes), and what each does to the world.
//!
//! Random choices ("crash 5 running nodes", churn) use the world's lifecycle RNG and
//! spare the seed nodes, as operators keep seeds stable; explicit node ranges may name
//! any node.

use rand::RngExt;

use crate::engine::{HostState, World};
use crate::nodes::{NodeRange, address};
use crate::restart::{self, BootParams, RestartKind, Started};
use crate::scenario::{ChurnMode, SabotageFile};

/// Which nodes a lifecycle change applies to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Selection {
    /// These nodes (those running).
    Range(NodeRange),
    /// This many random running nodes, seeds spared.
    Random(usize),
}

/// A scheduled event that is not a message or a node timer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Control {
    /// Start node `n` (first start) and join the seeds.
    Start(usize),
    /// Crash nodes; restart each after a delay, if given.
    Crash {
        nodes: Selection,
        restart: Option<(u64, RestartKind)>,
    },
    /// Restart a crashed node.
    Restart { node: usize, kind: RestartKind },
    /// Nodes leave gracefully.
    Leave(Selection),
    /// Partition rule `k` starts.
    Partition(usize),
    /// Every partition heals.
    Heal,
    /// Link rule `k` switches on or off.
    Link(usize, bool),
    /// Slow-node rule `k` switches on or off.
    Slow(usize, bool),
    /// One event of churn table `k`, then its next is scheduled.
    Churn(usize),
    /// One batch of workload adds.
    Workload,
    /// Probe `k`.
    Probe(u32),
    /// A time-series sample.
    Sample,
    /// A convergence poll (and the end-of-run decision).
    Poll,
    /// Sabotage: an add the oracle does not hear of.
    UnrecordedAdd(usize),
}

impl World {
    /// Puts the scenario's whole timeline into the control queue.
    pub(crate) fn schedule_scenario(&mut self) {
        let s = self.scenario.clone();
        let f = &s.file;
        let mut next = 0;
        for wave in &f.join {
            let at = crate::scenario::secs("", wave.at_s).unwrap_or(0);
            let spread = crate::scenario::secs("", wave.spread_s).unwrap_or(0);
            for k in 0..wave.count {
                let offset = if wave.count > 1 {
                    spread * k as u64 / (wave.count as u64 - 1)
                } else {
                    0
                };
                self.schedule(at + offset, Control::Start(next));
                next += 1;
            }
        }
        self.schedule_faults();
        self.schedule_lifecycle();
        for sabotage in &f.sabotage {
            match *sabotage {
                SabotageFile::UnrecordedAdd { at_s, node } => {
                    self.schedule(secs(at_s), Control::UnrecordedAdd(node));
                }
                SabotageFile::WipeReusingActor { at_s, node } => {
                    let nodes = Selection::Range(NodeRange {
                        start: node,
                        end: node + 1,
                    });
                    let restart = Some((2_000_000_000, RestartKind::WipedReusingActor));
                    self.schedule(secs(at_s), Control::Crash { nodes, restart });
                }
                SabotageFile::StreamBudget { .. } => {}
            }
        }
        self.schedule(s.adds_start, Control::Workload);
        if f.probes.every_s > 0.0 {
            let start = f.probes.start_s.map_or(s.adds_start, secs);
            self.schedule(start, Control::Probe(0));
        }
        self.schedule(0, Control::Sample);
        self.schedule(s.adds_stop.max(s.last_lifecycle), Control::Poll);
    }

    fn schedule_faults(&mut self) {
        let f = self.scenario.file.clone();
        for (k, p) in f.partition.iter().enumerate() {
            self.schedule(secs(p.at_s), Control::Partition(k));
            if let Some(heal) = p.heal_at_s {
                self.schedule(secs(heal), Control::Heal);
            }
        }
        for (k, l) in f.link.iter().enumerate() {
            self.schedule(secs(l.at_s), Control::Link(k, true));
            if let Some(until) = l.until_s {
                self.schedule(secs(until), Control::Link(k, false));
            }
        }
        for (k, l) in f.slow.iter().enumerate() {
            self.schedule(secs(l.at_s), Control::Slow(k, true));
            if let Some(until) = l.until_s {
                self.schedule(secs(until), Control::Slow(k, false));
            }
        }
    }

    fn schedule_lifecycle(&mut self) {
        let s = self.scenario.clone();
        let durable_default = s.durable_default();
        let kind = |durable: Option<bool>| match durable.unwrap_or(durable_default) {
            true => RestartKind::Durable,
            false => RestartKind::Wiped,
        };
        for c in &s.file.crash {
            let nodes = match (&c.nodes, c.count) {
                (Some(range), _) => Selection::Range(self.range(range)),
                (None, count) => Selection::Random(count.unwrap_or(0)),
            };
            let restart = c
                .restart_after_s
                .map(|after| (secs(after), kind(c.durable)));
            self.schedule(secs(c.at_s), Control::Crash { nodes, restart });
        }
        for l in &s.file.leave {
            let nodes = match (&l.nodes, l.count) {
                (Some(range), _) => Selection::Range(self.range(range)),
                (None, count) => Selection::Random(count.unwrap_or(0)),
            };
            self.schedule(secs(l.at_s), Control::Leave(nodes));
        }
        for r in &s.file.rolling_restart {
            let range = match &r.nodes {
                Some(range) => self.range(range),
                None => NodeRange {
                    start: 0,
                    end: s.initial_nodes,
                },
            };
            let (at, every) = (secs(r.at_s), secs(r.every_s));
            let restart = Some((secs(r.downtime_s), kind(r.durable)));
            for (k, node) in (range.start..range.end).enumerate() {
                let nodes = Selection::Range(NodeRange {
                    start: node,
                    end: node + 1,
                });
                self.schedule(at + every * k as u64, Control::Crash { nodes, restart });
            }
        }
        for (k, c) in s.file.churn.iter().enumerate() {
            if c.rate_per_s > 0.0 {
                let first = secs(c.start_s) + self.churn_gap(c.rate_per_s);
                self.schedule(first, Control::Churn(k));
            }
        }
    }

    fn range(&self, text: &str) -> NodeRange {
        self.scenario
            .range("", text)
            .expect("ranges were validated with the scenario")
    }

    /// Exponential gap between churn events (a Poisson process at `rate` per second).
    fn churn_gap(&mut self, rate: f64) -> u64 {
        let u: f64 = self.rng.random_range(f64::EPSILON..1.0);
        (-u.ln() / rate * 1e9) as u64
    }

    /// Runs a control event. Returns true when the run is over.
    pub(crate) fn handle_control(&mut self, control: Control) -> bool {
        match control {
            Control::Start(n) => self.start(n),
            Control::Crash { nodes, restart } => {
                for node in self.select(nodes) {
                    self.crash(node, restart);
                }
            }
            Control::Restart { node, kind } => self.restart(node, kind),
            Control::Leave(nodes) => {
                for node in self.select(nodes) {
                    self.leave(node);
                }
            }
            Control::Partition(k) => {
                let groups: Vec<NodeRange> = self.scenario.file.partition[k]
                    .groups
                    .iter()
                    .map(|g| self.range(g))
                    .collect();
                self.net.partition(&groups, self.hosts.len());
            }
            Control::Heal => self.net.heal(),
            Control::Link(k, on) => {
                let l = self.scenario.file.link[k].clone();
                let rule = on.then(|| {
                    let extra = (l.extra_latency_ms * 1e6) as u64;
                    (self.range(&l.from), self.range(&l.to), l.loss, extra)
                });
                self.net.set_link(k, rule);
            }
            Control::Slow(k, on) => {
                let l = self.scenario.file.slow[k].clone();
                let (lat, lag) = (
                    (l.extra_latency_ms * 1e6) as u64,
                    (l.timer_lag_ms * 1e6) as u64,
                );
                self.net.adjust_slow(self.range(&l.nodes), lat, lag, on);
            }
            Control::Churn(k) => self.churn(k),
            Control::Workload => self.workload_tick(),
            Control::Probe(k) => self.probe(k),
            Control::Sample => self.sample(),
            Control::Poll => return self.poll(),
            Control::UnrecordedAdd(node) => self.unrecorded_add(node),
        }
        false
    }

    fn select(&mut self, selection: Selection) -> Vec<usize> {
        match selection {
            Selection::Range(range) => (range.start..range.end)
                .filter(|&i| self.hosts[i].state == HostState::Running)
                .collect(),
            Selection::Random(count) => {
                let seeds = self.scenario.file.protocol.seeds;
                let mut chosen: Vec<usize> = Vec::with_capacity(count);
                let mut attempts = 0;
                while chosen.len() < count && attempts < 100 * count + 100 && !self.live.is_empty()
                {
                    attempts += 1;
                    let k = self.rng.random_range(0..self.live.len());
                    let node = self.live.nth(k);
                    if node >= seeds && !chosen.contains(&node) {
                        chosen.push(node);
                    }
                }
                chosen
            }
        }
    }

    fn boot_params(&self, i: usize) -> BootParams<'_> {
        BootParams {
            config: &self.config,
            persistence: self.persistence,
            addr: address(i),
            previous_incarnation: self.hosts[i].incarnation,
            now_ns: self.now,
            now: self.instant(self.now),
        }
    }

    /// Installs a started process at slot `i` and has it join the seeds.
    fn install(&mut self, i: usize, started: Started, record: usize) {
        let host = &mut self.hosts[i];
        host.incarnation = started.node.id().incarnation();
        host.actor = started.actor;
        host.record = record;
        host.disk = started.disk;
        host.node = Some(Box::new(started.node));
        host.state = HostState::Running;
        host.next_commit = self.now;
        self.live.insert(i);
        let now = self.instant(self.now);
        let seeds = self
            .scenario
            .file
            .protocol
            .seeds
            .min(self.scenario.initial_nodes);
        if let Some(node) = self.hosts[i].node.as_mut() {
            for seed in (0..seeds).filter(|&s| s != i) {
                node.join(address(seed), now);
            }
        }
        self.drain(i);
        self.membership_check();
    }

    fn start(&mut self, i: usize) {
        if self.hosts[i].state != HostState::NotStarted {
            return;
        }
        let mut rng = rand::rngs::SmallRng::from_rng(&mut self.rng);
        let started = restart::boot(&self.boot_params(i), &mut rng);
        let record = self.oracle.start(started.actor);
        self.install(i, started, record);
    }

    /// Stops slot `i`'s process; `crashed` discards what it sent that is in flight.
    fn stop(&mut self, i: usize, crashed: bool, state: HostState) {
        let host = &mut self.hosts[i];
        if let Some(node) = host.node.as_ref() {
            self.metrics.pruning_stopped.add(node.stats());
        }
        host.node = None;
        host.handles.clear();
        if crashed {
            host.crashed.push(host.epoch);
        }
        host.epoch += 1;
        host.state = state;
        self.live.remove(i);
        self.unschedule(i);
        self.probes.stopped(i, self.now);
        self.membership_check();
    }

    fn crash(&mut self, i: usize, restart: Option<(u64, RestartKind)>) {
        if self.hosts[i].state != HostState::Running {
            return;
        }
        let keeps = restart.is_some_and(|(_, kind)| restart::keeps_committed(kind));
        self.oracle.crash(self.hosts[i].record, keeps);
        if !keeps {
            self.hosts[i].disk = None;
        }
        self.stop(i, true, HostState::Down);
        if let Some((after, kind)) = restart {
            self.schedule(self.now + after.max(1), Control::Restart { node: i, kind });
        }
    }

    fn restart(&mut self, i: usize, kind: RestartKind) {
        if self.hosts[i].state != HostState::Down {
            return;
        }
        let mut rng = rand::rngs::SmallRng::from_rng(&mut self.rng);
        let disk = self.hosts[i].disk.take();
        let old_actor = self.hosts[i].actor;
        let started = restart::restart(
            &self.boot_params(i),
            kind,
            old_actor,
            disk,
            &self.names,
            &mut rng,
        );
        let record = self.oracle.restart(self.hosts[i].record, started.actor);
        self.install(i, started, record);
    }

    fn leave(&mut self, i: usize) {
        if self.hosts[i].state != HostState::Running {
            return;
        }
        let now = self.instant(self.now);
        let host = &mut self.hosts[i];
        let Some(node) = host.node.as_mut() else {
            return;
        };
        // A runtime shutting down commits, gossips once more, then says goodbye.
        if let Some(disk) = host.disk.as_mut() {
            restart::commit(node, disk, &mut self.names);
            self.oracle.commit(host.record);
        }
        node.gossip_now(now);
        node.leave(now);
        self.drain(i);
        self.oracle.leave(self.hosts[i].record);
        self.stop(i, false, HostState::Left);
    }

    fn churn(&mut self, k: usize) {
        let Some(c) = self.scenario.file.churn.get(k).cloned() else {
            return;
        };
        if self.now >= secs(c.stop_s) {
            return;
        }
        let durable = c.durable.unwrap_or(self.scenario.durable_default());
        let kind = if durable {
            RestartKind::Durable
        } else {
            RestartKind::Wiped
        };
        if let Some(&node) = self.select(Selection::Random(1)).first() {
            match c.mode {
                ChurnMode::CrashRestart => {
                    self.crash(node, Some((secs(c.downtime_s), kind)));
                }
                ChurnMode::LeaveJoin | ChurnMode::CrashJoin => {
                    if c.mode == ChurnMode::LeaveJoin {
                        self.leave(node);
                    } else {
                        self.crash(node, None);
                    }
                    let fresh = self.add_host();
                    self.start(fresh);
                }
            }
        }
        let next = self.now + self.churn_gap(c.rate_per_s);
        if next < secs(c.stop_s) {
            self.schedule(next, Control::Churn(k));
        }
    }
}

/// Seconds of a validated scenario field to nanoseconds.
pub(crate) fn secs(s: f64) -> u64 {
    (s * 1e9).round() as u64
}

use rand::SeedableRng as _;
