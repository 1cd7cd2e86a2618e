//! Watching a run: full-membership detection, convergence polling, the idle-bandwidth
//! window, time-series samples, and the end-of-run decision.
//!
//! * *Full membership time*: the first virtual instant, at or after the start of the
//!   last node of the last join wave, at which every running node's `members()` holds exactly every other running
//!   node's current identity. The member-count histogram flags candidates in O(1) per
//!   event; a candidate is verified exactly (every member is the current identity of a
//!   distinct running node), at most once per sample interval.
//! * *Convergence*: polled every gossip interval from the moment adds stop and the last
//!   lifecycle change is done. A node is exact when it reads the oracle's expected
//!   value for every counter the run used; the mesh has converged when every running
//!   node is exact (a full pass confirms the incremental one).
//! * *Idle window*: starts at the first poll at which the mesh has converged (polls
//!   start only once adds have stopped and the last lifecycle change is done, so no node
//!   joins or leaves during the window), lasts `idle_window_s`; its figure is the bytes
//!   sent in it per running node per second. SWIM may still be refuting false
//!   suspicions in a large mesh, so a full view everywhere is not required; the fraction
//!   of nodes with one at the window's start is reported with it.

use crate::engine::World;
use crate::lifecycle::Control;
use crate::metrics::{Sample, Traffic};
use crate::nodes::{BitSet, index_of};
use crate::report::Failure;
use crate::scenario::Scenario;

/// The idle-window figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Idle {
    /// Window length in virtual seconds.
    pub window_s: f64,
    /// Running nodes during the window.
    pub live: usize,
    /// Fraction of them with a full view when the window started.
    pub full: f64,
    /// Traffic sent in the window.
    pub traffic: Traffic,
}

impl Idle {
    /// Bytes per running node per second, all kinds.
    pub fn bytes_per_node_s(&self) -> f64 {
        self.traffic.total_bytes() as f64 / self.live.max(1) as f64 / self.window_s
    }

    /// Bytes per running node per second of one kind (index as in [`Traffic`]).
    pub fn kind_per_node_s(&self, k: usize) -> f64 {
        self.traffic.bytes[k] as f64 / self.live.max(1) as f64 / self.window_s
    }
}

/// State of the observers.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    /// Fractional workload adds carried to the next tick.
    pub(crate) add_carry: f64,
    /// Start of the first join wave, and when the last wave's last node starts.
    pub(crate) first_join: u64,
    pub(crate) last_join: u64,
    pub(crate) membership_full_at: Option<u64>,
    last_verify: Option<u64>,
    polling: bool,
    expected: Vec<i128>,
    unconverged: Vec<usize>,
    pub(crate) converged_at: Option<u64>,
    pub(crate) vanished: i128,
    idle_start: Option<(u64, Traffic, usize, f64)>,
    pub(crate) idle: Option<Idle>,
    fatal: bool,
}

impl Watch {
    pub(crate) fn new(scenario: &Scenario) -> Self {
        let ns = |s: f64| (s * 1e9).round() as u64;
        let waves = scenario.file.join.iter();
        Self {
            first_join: waves.clone().map(|j| ns(j.at_s)).min().unwrap_or(0),
            last_join: waves.map(|j| ns(j.at_s + j.spread_s)).max().unwrap_or(0),
            ..Self::default()
        }
    }
}

impl World {
    /// Called after every change of a member count or of the running set: O(1) unless
    /// the whole mesh looks fully joined, then an exact check (rate-limited).
    pub(crate) fn membership_check(&mut self) {
        let live = self.live.len();
        let w = &self.watch;
        if w.membership_full_at.is_some()
            || self.now < w.last_join
            || live < 2
            || self.metrics.membership.full(live) != live
            || w.last_verify
                .is_some_and(|t| self.now < t + self.scenario.sample_interval)
        {
            return;
        }
        self.watch.last_verify = Some(self.now);
        if self.membership_exact() {
            self.watch.membership_full_at = Some(self.now);
        }
    }

    /// Whether every running node's members are exactly the other running nodes'
    /// current identities.
    fn membership_exact(&self) -> bool {
        let mut seen = BitSet::new(self.hosts.len());
        for k in 0..self.live.len() {
            let i = self.live.nth(k);
            let Some(node) = self.hosts[i].node.as_ref() else {
                return false;
            };
            let mut exact = true;
            for member in node.members() {
                let j = index_of(member.addr());
                let current = j.and_then(|j| self.hosts.get(j)?.node.as_ref());
                let valid = j.is_some_and(|j| j != i && seen.insert(j))
                    && current.is_some_and(|n| n.id() == member);
                if !valid {
                    exact = false;
                    break;
                }
            }
            for member in node.members() {
                if let Some(j) = index_of(member.addr()) {
                    seen.remove(j);
                }
            }
            if !exact {
                return false;
            }
        }
        true
    }

    /// At the end of a run: running nodes without a full view, `(node, member)` pairs
    /// missing, and the running node missing from the most member lists (with how
    /// many). O(N · members); called once.
    pub(crate) fn membership_gaps(&self) -> (usize, usize, Option<(usize, usize)>) {
        let mut missing_at = vec![0usize; self.hosts.len()];
        let (mut nodes, mut pairs) = (0, 0);
        let live = self.live.sorted();
        for &i in &live {
            let Some(node) = self.hosts[i].node.as_ref() else {
                continue;
            };
            let mut known = BitSet::new(self.hosts.len());
            for member in node.members() {
                if let Some(j) = index_of(member.addr())
                    && self
                        .hosts
                        .get(j)
                        .and_then(|h| h.node.as_ref())
                        .is_some_and(|n| n.id() == member)
                {
                    known.insert(j);
                }
            }
            let mut gap = false;
            for &j in &live {
                if j != i && !known.contains(j) {
                    missing_at[j] += 1;
                    pairs += 1;
                    gap = true;
                }
            }
            nodes += usize::from(gap);
        }
        let worst = (0..missing_at.len())
            .max_by_key(|&j| (missing_at[j], std::cmp::Reverse(j)))
            .filter(|&j| missing_at[j] > 0)
            .map(|j| (j, missing_at[j]));
        (nodes, pairs, worst)
    }

    /// A convergence poll; returns true when the run is over.
    pub(crate) fn poll(&mut self) -> bool {
        self.watch.polling = true;
        if self.watch.converged_at.is_none() {
            self.check_convergence();
        }
        let live = self.live.len();
        if self.watch.converged_at.is_some() && self.watch.idle_start.is_none() {
            let full = self.metrics.membership.full(live) as f64 / live.max(1) as f64;
            self.watch.idle_start = Some((self.now, self.metrics.traffic, live, full));
        }
        if let (Some((start, traffic, live, full)), None) = (self.watch.idle_start, self.watch.idle)
            && self.now >= start + self.scenario.idle_window
        {
            let window_s = (self.now - start) as f64 / 1e9;
            self.watch.idle = Some(Idle {
                window_s,
                live,
                full,
                traffic: self.metrics.traffic.since(&traffic),
            });
        }
        let s = &self.scenario;
        let settled =
            self.watch.converged_at.is_some() && (self.watch.idle.is_some() || s.idle_window == 0);
        // A run also waits (within `settle_max`) for the first full view everywhere, so
        // that the full-membership time is measured whenever the protocol gets there.
        let settled = settled && self.watch.membership_full_at.is_some();
        let done = self.watch.fatal
            || (self.now >= s.duration && settled)
            || self.now >= s.duration + s.settle_max;
        if !done {
            self.schedule(self.now + s.gossip_interval(), Control::Poll);
        }
        done
    }

    fn check_convergence(&mut self) {
        let Some(reference) = self.live.first() else {
            return;
        };
        let Some(store) = self.hosts[reference].node.as_ref().map(|n| n.store()) else {
            return;
        };
        let (expected, vanished) = match self.oracle.expected(&self.names, store) {
            Ok(found) => found,
            Err(violation) => {
                self.failures.push(Failure::Oracle(violation));
                self.watch.fatal = true;
                return;
            }
        };
        self.watch.vanished = vanished;
        if expected != self.watch.expected {
            self.watch.expected = expected;
            self.watch.unconverged = self.live.sorted();
        }
        let unconverged = std::mem::take(&mut self.watch.unconverged);
        self.watch.unconverged = unconverged
            .into_iter()
            .filter(|&i| self.hosts[i].node.is_some() && self.first_mismatch(i).is_some())
            .collect();
        if self.watch.unconverged.is_empty() {
            let all = self.live.sorted();
            self.watch.unconverged = all
                .into_iter()
                .filter(|&i| self.first_mismatch(i).is_some())
                .collect();
            if self.watch.unconverged.is_empty() {
                self.watch.converged_at = Some(self.now);
            }
        }
    }

    /// The first counter node `i` reads differently from the expected value, as
    /// `(counter, read, expected)`.
    pub(crate) fn first_mismatch(&self, i: usize) -> Option<(String, i128, i128)> {
        let store = self.hosts[i].node.as_ref()?.store();
        (0..self.names.len() as u32).find_map(|c| {
            let name = self.names.name(c);
            let read = store.value(name).unwrap_or(0);
            let want = self.watch.expected.get(c as usize).copied().unwrap_or(0);
            (read != want).then(|| (name.to_owned(), read, want))
        })
    }

    /// Recomputes the expected values and lists running nodes that disagree, as
    /// `(node, counter, read, expected)`; for the final check.
    pub(crate) fn final_mismatches(&mut self) -> Result<Vec<(usize, String, i128, i128)>, Failure> {
        let Some(reference) = self.live.first() else {
            return Ok(Vec::new());
        };
        let Some(store) = self.hosts[reference].node.as_ref().map(|n| n.store()) else {
            return Ok(Vec::new());
        };
        let (expected, vanished) = self
            .oracle
            .expected(&self.names, store)
            .map_err(Failure::Oracle)?;
        self.watch.expected = expected;
        self.watch.vanished = vanished;
        Ok(self
            .live
            .sorted()
            .into_iter()
            .filter_map(|i| self.first_mismatch(i).map(|(c, r, e)| (i, c, r, e)))
            .collect())
    }

    /// Takes one time-series sample and schedules the next.
    pub(crate) fn sample(&mut self) {
        let interval = self.scenario.sample_interval;
        let window_s = interval as f64 / 1e9;
        let live = self.live.len();
        let per_node = |x: f64| {
            if live == 0 {
                0.0
            } else {
                x / live as f64 / window_s
            }
        };
        let traffic = self.metrics.traffic.since(&self.metrics.at_last_sample);
        self.metrics.at_last_sample = self.metrics.traffic;
        let max_node = self.metrics.node_bytes.iter().copied().max().unwrap_or(0);
        self.metrics.node_bytes.iter_mut().for_each(|b| *b = 0);
        let (actors, counters, entries) = self.state_means();
        let others = live.saturating_sub(1).max(1) as f64;
        let m = &self.metrics.membership;
        let b = traffic.bytes;
        let sample = Sample {
            t_s: self.now as f64 / 1e9,
            live,
            members_mean: m.mean(live) / others,
            members_min: if live == 0 {
                0.0
            } else {
                m.min() as f64 / others
            },
            full: if live == 0 {
                0.0
            } else {
                m.full(live) as f64 / live as f64
            },
            bytes_per_node_s: [
                per_node(traffic.total_bytes() as f64),
                per_node(b[0] as f64),
                per_node(b[1] as f64),
                per_node(b[2] as f64),
            ],
            max_node_bytes_s: max_node as f64 / window_s,
            messages_per_node_s: per_node(traffic.total_messages() as f64),
            actors,
            counters,
            entries,
            in_flight: self.in_flight().0,
            exact: (self.watch.polling && live > 0)
                .then(|| (live - self.watch.unconverged.len().min(live)) as f64 / live as f64),
        };
        self.metrics.samples.push(sample);
        let timeout = crate::lifecycle::secs(self.scenario.file.probes.timeout_s);
        self.probes.expire(self.now, timeout);
        self.progress.update(self.now, &sample);
        self.schedule(self.now + interval, Control::Sample);
    }

    /// Mean actors, counters and entries per running node.
    pub(crate) fn state_means(&self) -> (f64, f64, f64) {
        let live = self.live.len();
        if live == 0 {
            return (0.0, 0.0, 0.0);
        }
        let (mut actors, mut counters, mut entries) = (0usize, 0usize, 0usize);
        for k in 0..live {
            let Some(node) = self.hosts[self.live.nth(k)].node.as_ref() else {
                continue;
            };
            let store = node.store();
            actors += store.actor_count();
            counters += store.len();
            entries += (0..self.names.len() as u32)
                .filter_map(|c| store.contributors(self.names.name(c)))
                .sum::<usize>();
        }
        let n = live as f64;
        (actors as f64 / n, counters as f64 / n, entries as f64 / n)
    }
}
