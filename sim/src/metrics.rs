//! [`Metrics`]: traffic counters, the membership histogram and the time series.
//!
//! Definitions (also in ARCHITECTURE.md):
//! * *bytes* are payload bytes of encoded messages as `Node::poll_transmit` returned
//!   them (envelope included, transport overhead excluded), counted when sent, SWIM
//!   included, whether or not the network then drops them.
//! * *bytes per node per second* over a window is the bytes sent in the window divided
//!   by the running nodes at the window's end and by the window's length.
//! * *members known* of a node is `Node::members().len()`; the *fraction* divides it by
//!   the running nodes minus one. A node has a *full view* when that count equals the
//!   running nodes minus one (exactness is verified when the whole mesh first gets there).

use countermesh_core::MessageKind;

/// Message and byte totals by kind (`MessageKind` order: swim, sync, delta, prune).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Messages sent, by kind.
    pub messages: [u64; 4],
    /// Payload bytes sent, by kind.
    pub bytes: [u64; 4],
}

impl Traffic {
    /// All bytes.
    pub fn total_bytes(&self) -> u64 {
        self.bytes.iter().sum()
    }

    /// All messages.
    pub fn total_messages(&self) -> u64 {
        self.messages.iter().sum()
    }

    /// `self - earlier`, kind by kind.
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        let mut out = Traffic::default();
        for k in 0..4 {
            out.messages[k] = self.messages[k] - earlier.messages[k];
            out.bytes[k] = self.bytes[k] - earlier.bytes[k];
        }
        out
    }
}

/// Index of a kind in [`Traffic`]'s arrays.
pub fn kind_index(kind: MessageKind) -> usize {
    match kind {
        MessageKind::Swim => 0,
        MessageKind::Sync => 1,
        MessageKind::Delta => 2,
        MessageKind::Prune => 3,
    }
}

/// What the network and the nodes did with messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fates {
    /// Lost to random loss.
    pub lost: u64,
    /// Dropped between partition groups.
    pub partitioned: u64,
    /// Addressed to a node that was not running when sent or when due.
    pub to_down: u64,
    /// Sent by a process that crashed before they arrived.
    pub from_crashed: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Delivered.
    pub delivered: u64,
    /// Refused by the receiving node (decode error, wrong channel, SWIM refusal).
    pub refused: u64,
    /// Refused because the sender exceeded its digest-answer rate.
    pub rate_limited: u64,
    /// Addressed to something that is not a simulated node.
    pub unroutable: u64,
}

/// Running nodes by the size of their member list, so "how many have a full view" is
/// O(1) whatever the number of nodes.
#[derive(Debug, Default, Clone)]
pub struct Membership {
    /// Per node, its last known `members().len()`, or `u32::MAX` while not running.
    len_of: Vec<u32>,
    /// Running nodes per member-list size.
    count_by_len: Vec<u32>,
    sum: u64,
}

impl Membership {
    /// Records node `node`'s member count (`None`: the node stopped).
    pub fn set(&mut self, node: usize, len: Option<usize>) {
        if node >= self.len_of.len() {
            self.len_of.resize(node + 1, u32::MAX);
        }
        let old = self.len_of[node];
        let new = len.map_or(u32::MAX, |l| l as u32);
        if old == new {
            return;
        }
        if old != u32::MAX {
            self.count_by_len[old as usize] -= 1;
            self.sum -= u64::from(old);
        }
        if new != u32::MAX {
            if new as usize >= self.count_by_len.len() {
                self.count_by_len.resize(new as usize + 1, 0);
            }
            self.count_by_len[new as usize] += 1;
            self.sum += u64::from(new);
        }
        self.len_of[node] = new;
    }

    /// Running nodes whose member list has exactly `live - 1` entries.
    pub fn full(&self, live: usize) -> usize {
        live.checked_sub(1)
            .and_then(|l| self.count_by_len.get(l))
            .map_or(0, |&c| c as usize)
    }

    /// Mean member count over running nodes.
    pub fn mean(&self, live: usize) -> f64 {
        if live == 0 {
            0.0
        } else {
            self.sum as f64 / live as f64
        }
    }

    /// Smallest member count of a running node.
    pub fn min(&self) -> usize {
        self.count_by_len
            .iter()
            .position(|&c| c > 0)
            .unwrap_or_default()
    }
}

/// One row of the time series.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Virtual seconds.
    pub t_s: f64,
    /// Running nodes.
    pub live: usize,
    /// Mean fraction of the other running nodes in a node's member list.
    pub members_mean: f64,
    /// Smallest such fraction.
    pub members_min: f64,
    /// Fraction of running nodes with a full view.
    pub full: f64,
    /// Bytes per node per second in the window: all, SWIM, sync, delta.
    pub bytes_per_node_s: [f64; 4],
    /// Largest bytes per second sent by one node in the window.
    pub max_node_bytes_s: f64,
    /// Messages per node per second in the window.
    pub messages_per_node_s: f64,
    /// Mean actors known per node.
    pub actors: f64,
    /// Mean counters known per node.
    pub counters: f64,
    /// Mean (counter, actor) entries per node.
    pub entries: f64,
    /// Messages in flight at the sample.
    pub in_flight: usize,
    /// Fraction of running nodes that read the exact expected value of every counter
    /// (known only once convergence polling has started).
    pub exact: Option<f64>,
}

/// Column names of [`Sample`] in CSV order.
pub const SAMPLE_COLUMNS: &str = "t_s,live,members_mean,members_min,full,bytes_per_node_s,swim_bytes_per_node_s,sync_bytes_per_node_s,delta_bytes_per_node_s,max_node_bytes_s,messages_per_node_s,actors,counters,entries,in_flight,exact";

impl Sample {
    /// The row as CSV.
    pub fn csv(&self) -> String {
        let b = self.bytes_per_node_s;
        format!(
            "{:.3},{},{:.5},{:.5},{:.5},{:.1},{:.1},{:.1},{:.1},{:.1},{:.2},{:.2},{:.2},{:.2},{},{}",
            self.t_s,
            self.live,
            self.members_mean,
            self.members_min,
            self.full,
            b[0],
            b[1],
            b[2],
            b[3],
            self.max_node_bytes_s,
            self.messages_per_node_s,
            self.actors,
            self.counters,
            self.entries,
            self.in_flight,
            self.exact.map_or_else(String::new, |e| format!("{e:.5}"))
        )
    }
}

/// Counters kept during a run.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Everything sent since the start.
    pub traffic: Traffic,
    /// Traffic at the previous sample.
    pub at_last_sample: Traffic,
    /// Bytes each node sent since the previous sample.
    pub node_bytes: Vec<u64>,
    /// Message fates.
    pub fates: Fates,
    /// Member-list sizes.
    pub membership: Membership,
    /// The time series.
    pub samples: Vec<Sample>,
    /// Messages larger than their channel's budget: count and the first one seen as
    /// `(node, kind, bytes, budget)`.
    pub budget_violations: u64,
    /// The first violation.
    pub first_violation: Option<(usize, MessageKind, usize, usize)>,
    /// Events processed (timers, deliveries, control events).
    pub events: u64,
    /// Pruning counters of processes that have stopped (their `Stats` end with them).
    pub pruning_stopped: PruneCounts,
    /// `Event::SinkRefused` reports (a double fold detected), from every process.
    pub sinks_refused: u64,
}

/// Pruning counters summed over processes, from the core's `Stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneCounts {
    /// Sinks made (folds performed by a pruner).
    pub prunes: u64,
    /// Sinks completed, summed over nodes (one sink completes once at every node).
    pub sinks_completed: u64,
    /// Actors pruned, summed over nodes.
    pub actors_pruned: u64,
    /// Entries refused because their actor was pruned or sealed below them.
    pub entries_pruned_refused: u64,
}

impl PruneCounts {
    /// Adds one process's counters.
    pub fn add(&mut self, stats: &countermesh_core::Stats) {
        self.prunes += stats.prunes;
        self.sinks_completed += stats.sinks_completed;
        self.actors_pruned += stats.actors_pruned;
        self.entries_pruned_refused += stats.entries_pruned_refused;
    }
}

impl Metrics {
    /// Counts a message node `node` sent.
    pub fn sent(&mut self, node: usize, kind: MessageKind, len: usize) {
        let k = kind_index(kind);
        self.traffic.messages[k] += 1;
        self.traffic.bytes[k] += len as u64;
        if node >= self.node_bytes.len() {
            self.node_bytes.resize(node + 1, 0);
        }
        self.node_bytes[node] += len as u64;
    }
}
