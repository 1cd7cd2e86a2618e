//! [`Probes`]: single adds whose spread is timed, for "rounds for one add to reach all".
//!
//! A probe adds 1 to a counter of its own (`probe<k>`) at a random running node at time
//! `t0`. Its *targets* are the nodes running at `t0`; a target is *reached* when its
//! store's value of the probe counter is at least 1 (the origin is reached at `t0`,
//! since a node's value includes its own unflushed adds). Values only change when a
//! node handles a message, so the simulator checks a target exactly then: the reach
//! time is exact, not sampled. The probe completes when every target still running is
//! reached; its figure is `(t_last - t0) / gossip_interval` in rounds, which includes
//! the wait (up to one interval) for the origin's next gossip round.
//!
//! A target that crashes or leaves before it is reached is dropped from the targets; a
//! node started after `t0` is not a target. A probe whose origin stops before the probe
//! completes is *aborted* (its add may have died with it) and left out of the figures.
//! A probe not complete after the timeout has *timed out* and counts as infinitely slow.

use countermesh_core::Store;

use crate::nodes::BitSet;

/// How a probe ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ProbeOutcome {
    /// Every target read it; rounds from the add to the last target.
    Done(f64),
    /// Not every target read it within the timeout.
    TimedOut,
    /// The origin stopped before the probe completed.
    Aborted,
}

/// One finished probe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeResult {
    /// Probe number.
    pub id: u32,
    /// Node that made the add.
    pub origin: usize,
    /// When (ns).
    pub start: u64,
    /// Targets at the start.
    pub targets: usize,
    /// How it ended.
    pub outcome: ProbeOutcome,
}

#[derive(Debug)]
struct Active {
    id: u32,
    name: String,
    origin: usize,
    start: u64,
    targets: usize,
    pending: BitSet,
    remaining: usize,
    last_reach: u64,
}

/// Probes in progress and finished.
#[derive(Debug, Default)]
pub struct Probes {
    active: Vec<Active>,
    finished: Vec<ProbeResult>,
    /// For every (probe, target) reached: rounds from the add to the reach, for the
    /// convergence CDF.
    reach_rounds: Vec<f32>,
    interval: u64,
}

impl Probes {
    /// Probes measured in rounds of `gossip_interval` ns.
    pub fn new(gossip_interval: u64) -> Self {
        Self {
            interval: gossip_interval,
            ..Self::default()
        }
    }

    /// Starts probe `id` on counter `name` at `origin`; `targets` are the running nodes.
    pub fn start(
        &mut self,
        id: u32,
        name: String,
        origin: usize,
        now: u64,
        targets: impl Iterator<Item = usize>,
    ) {
        let mut pending = BitSet::default();
        let mut count = 0;
        for t in targets {
            if t != origin {
                pending.insert(t);
                count += 1;
            }
        }
        self.reach_rounds.push(0.0);
        self.active.push(Active {
            id,
            name,
            origin,
            start: now,
            targets: count + 1,
            pending,
            remaining: count,
            last_reach: now,
        });
        self.complete(now);
    }

    /// Whether any probe is in progress (so deliveries need checking).
    pub fn any_active(&self) -> bool {
        !self.active.is_empty()
    }

    /// Node `node` handled a message at `now`; checks whether it now reads any probe.
    pub fn observe(&mut self, node: usize, store: &Store, now: u64) {
        let mut any = false;
        for probe in &mut self.active {
            if probe.pending.contains(node) && store.value(&probe.name).unwrap_or(0) >= 1 {
                probe.pending.remove(node);
                probe.remaining -= 1;
                probe.last_reach = now;
                self.reach_rounds
                    .push(((now - probe.start) as f64 / self.interval as f64) as f32);
                any = true;
            }
        }
        if any {
            self.complete(now);
        }
    }

    /// Node `node` stopped at `now`.
    pub fn stopped(&mut self, node: usize, now: u64) {
        for probe in &mut self.active {
            if probe.origin == node {
                probe.remaining = usize::MAX;
            } else if probe.pending.remove(node) {
                probe.remaining -= 1;
            }
        }
        self.active.retain(|p| {
            if p.remaining == usize::MAX {
                self.finished.push(result(p, ProbeOutcome::Aborted));
                false
            } else {
                true
            }
        });
        self.complete(now);
    }

    /// Ends probes older than `timeout` at `now`.
    pub fn expire(&mut self, now: u64, timeout: u64) {
        self.active.retain(|p| {
            if now.saturating_sub(p.start) > timeout {
                self.finished.push(result(p, ProbeOutcome::TimedOut));
                false
            } else {
                true
            }
        });
    }

    /// Ends every probe still running (at the end of a run) as timed out.
    pub fn finish(&mut self) {
        for p in std::mem::take(&mut self.active) {
            self.finished.push(result(&p, ProbeOutcome::TimedOut));
        }
        self.finished.sort_by_key(|r| r.id);
    }

    fn complete(&mut self, _now: u64) {
        let interval = self.interval as f64;
        self.active.retain(|p| {
            if p.remaining == 0 {
                let rounds = (p.last_reach - p.start) as f64 / interval;
                self.finished.push(result(p, ProbeOutcome::Done(rounds)));
                false
            } else {
                true
            }
        });
    }

    /// Finished probes.
    pub fn results(&self) -> &[ProbeResult] {
        &self.finished
    }

    /// Rounds to reach each (probe, target) pair, origins included at 0.
    pub fn reach_rounds(&self) -> &[f32] {
        &self.reach_rounds
    }
}

fn result(p: &Active, outcome: ProbeOutcome) -> ProbeResult {
    ProbeResult {
        id: p.id,
        origin: p.origin,
        start: p.start,
        targets: p.targets,
        outcome,
    }
}

/// The nearest-rank percentile `q` (0..=100) of the probes' rounds: the value at rank
/// `ceil(q/100 · n)` of the sorted figures, where timed-out probes count as infinite and
/// aborted ones are left out. `None` without any figure.
pub fn percentile(results: &[ProbeResult], q: f64) -> Option<f64> {
    let mut rounds: Vec<f64> = results
        .iter()
        .filter_map(|r| match r.outcome {
            ProbeOutcome::Done(x) => Some(x),
            ProbeOutcome::TimedOut => Some(f64::INFINITY),
            ProbeOutcome::Aborted => None,
        })
        .collect();
    if rounds.is_empty() {
        return None;
    }
    rounds.sort_by(f64::total_cmp);
    let rank = ((q / 100.0) * rounds.len() as f64).ceil().max(1.0) as usize;
    Some(rounds[rank.min(rounds.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(id: u32, rounds: f64) -> ProbeResult {
        ProbeResult {
            id,
            origin: 0,
            start: 0,
            targets: 2,
            outcome: ProbeOutcome::Done(rounds),
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        let results: Vec<ProbeResult> = (1..=100).map(|i| done(i, f64::from(i))).collect();
        assert_eq!(percentile(&results, 50.0), Some(50.0));
        assert_eq!(percentile(&results, 99.0), Some(99.0));
        let few = [done(0, 3.0), done(1, 1.0)];
        assert_eq!(percentile(&few, 99.0), Some(3.0));
        assert_eq!(percentile(&few, 50.0), Some(1.0));
        let mut with_timeout = few.to_vec();
        with_timeout[0].outcome = ProbeOutcome::TimedOut;
        assert_eq!(percentile(&with_timeout, 99.0), Some(f64::INFINITY));
        assert_eq!(percentile(&[], 99.0), None);
    }
}
