//! [`Network`]: the seeded fault model that decides each message's fate: lost (loss,
//! partition, a down link), delayed (latency distribution, slow nodes, asymmetric
//! links, reordering) and possibly duplicated.
//!
//! Every random choice comes from the network's own RNG, drawn in send order, so a run
//! is reproduced exactly by its seed. Partitions, links and slow nodes change only at
//! scheduled instants; between those, deciding a fate costs O(1) plus one check per
//! active link rule.

use countermesh_core::Channel;
use rand::RngExt;
use rand::rngs::SmallRng;

use crate::latency::Latency;
use crate::nodes::NodeRange;
use crate::scenario::Scenario;

/// Why the network dropped a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Random loss (the network's or a link's).
    Loss,
    /// Sender and receiver are in different partition groups.
    Partition,
}

/// What happens to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Never arrives.
    Dropped(DropReason),
    /// Arrives after the first delay, and a second copy after the second if duplicated.
    Delivered([Option<u64>; 2]),
}

/// A directed link rule in force.
#[derive(Debug, Clone, Copy)]
struct Link {
    from: NodeRange,
    to: NodeRange,
    loss: Option<f64>,
    extra: u64,
}

/// The network model.
#[derive(Debug)]
pub struct Network {
    rng: SmallRng,
    latency: Latency,
    loss_datagram: f64,
    loss_stream: f64,
    duplicate: f64,
    reorder: f64,
    reorder_delay: u64,
    /// Partition group per node; messages cross groups only when all are 0.
    groups: Vec<u16>,
    partitioned: bool,
    /// Active link rules, by rule number (`None` while inactive).
    links: Vec<Option<Link>>,
    /// Per node: extra latency on every message to or from it, and timer lag.
    slow_latency: Vec<u64>,
    timer_lag: Vec<u64>,
}

impl Network {
    /// The network a scenario describes, with no partition, link or slow node active.
    pub fn new(scenario: &Scenario, rng: SmallRng) -> Self {
        let n = &scenario.file.network;
        Self {
            rng,
            latency: Latency::from_file(n.latency),
            loss_datagram: n.loss,
            loss_stream: n.stream_loss.unwrap_or(n.loss),
            duplicate: n.duplicate,
            reorder: n.reorder,
            reorder_delay: (n.reorder_delay_ms * 1e6).round() as u64,
            groups: Vec::new(),
            partitioned: false,
            links: vec![None; scenario.file.link.len()],
            slow_latency: Vec::new(),
            timer_lag: Vec::new(),
        }
    }

    /// Decides the fate of a message from `from` to `to`.
    pub fn fate(&mut self, from: usize, to: usize, channel: Channel) -> Fate {
        if self.partitioned && self.group(from) != self.group(to) {
            return Fate::Dropped(DropReason::Partition);
        }
        let mut loss = match channel {
            Channel::Datagram => self.loss_datagram,
            Channel::Stream => self.loss_stream,
        };
        let mut extra = self.slow(from) + self.slow(to);
        for link in self.links.iter().flatten() {
            if link.from.contains(from) && link.to.contains(to) {
                loss = link.loss.unwrap_or(loss);
                extra += link.extra;
            }
        }
        if loss > 0.0 && self.rng.random_bool(loss) {
            return Fate::Dropped(DropReason::Loss);
        }
        let first = Some(self.delay() + extra);
        let second = (self.duplicate > 0.0 && self.rng.random_bool(self.duplicate))
            .then(|| self.delay() + extra);
        Fate::Delivered([first, second])
    }

    fn delay(&mut self) -> u64 {
        let mut delay = self.latency.sample(&mut self.rng);
        if self.reorder > 0.0 && self.rng.random_bool(self.reorder) {
            delay += self.rng.random_range(0..=self.reorder_delay);
        }
        delay
    }

    fn group(&self, node: usize) -> u16 {
        self.groups.get(node).copied().unwrap_or(0)
    }

    fn slow(&self, node: usize) -> u64 {
        self.slow_latency.get(node).copied().unwrap_or(0)
    }

    /// How late node `node`'s timers fire.
    pub fn timer_lag(&self, node: usize) -> u64 {
        self.timer_lag.get(node).copied().unwrap_or(0)
    }

    /// Splits nodes `0..nodes` into the given groups plus one group of the rest.
    pub fn partition(&mut self, groups: &[NodeRange], nodes: usize) {
        let rest = groups.len() as u16 + 1;
        self.groups = vec![rest; nodes];
        for (g, range) in groups.iter().enumerate() {
            for i in range.start..range.end.min(nodes) {
                self.groups[i] = g as u16 + 1;
            }
        }
        self.partitioned = true;
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.groups.clear();
        self.partitioned = false;
    }

    /// Switches link rule `rule` on (with its parameters) or off.
    pub fn set_link(&mut self, rule: usize, on: Option<(NodeRange, NodeRange, Option<f64>, u64)>) {
        self.links[rule] = on.map(|(from, to, loss, extra)| Link {
            from,
            to,
            loss,
            extra,
        });
    }

    /// Adds (`sign = 1`) or removes (`sign = -1`) a slow-node rule's delays.
    pub fn adjust_slow(&mut self, nodes: NodeRange, latency: u64, lag: u64, add: bool) {
        if self.slow_latency.len() < nodes.end {
            self.slow_latency.resize(nodes.end, 0);
            self.timer_lag.resize(nodes.end, 0);
        }
        for i in nodes.start..nodes.end {
            if add {
                self.slow_latency[i] += latency;
                self.timer_lag[i] += lag;
            } else {
                self.slow_latency[i] -= latency;
                self.timer_lag[i] -= lag;
            }
        }
    }
}
