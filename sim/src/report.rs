//! [`Report`]: what a run measured and whether its checks held, with the summary table.

use std::fmt;
use std::time::Instant;

use countermesh_core::MessageKind;

use crate::engine::World;
use crate::metrics::{Fates, PruneCounts, Sample, Traffic};
use crate::observe::Idle;
use crate::oracle::OracleViolation;
use crate::probes::{ProbeOutcome, ProbeResult, percentile};

/// A check that did not hold.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// After adds stopped, some running node never read the exact expected values.
    #[error(
        "{nodes} running node(s) never read the exact sums; e.g. node {node} reads {read} for {counter:?}, expected {expected}"
    )]
    NotConverged {
        /// How many nodes disagree.
        nodes: usize,
        /// One of them.
        node: usize,
        /// A counter it reads wrongly.
        counter: String,
        /// What it reads.
        read: i128,
        /// What it should read.
        expected: i128,
    },
    /// A message exceeded its channel's budget.
    #[error(
        "{count} message(s) over their channel budget; first: node {node} sent a {kind} message of {len} bytes (budget {budget})"
    )]
    Budget {
        /// How many.
        count: u64,
        /// First sender.
        node: usize,
        /// Its kind.
        kind: &'static str,
        /// Its size.
        len: usize,
        /// The budget.
        budget: usize,
    },
    /// The nodes hold more of an actor than it ever added.
    #[error(transparent)]
    Oracle(#[from] OracleViolation),
}

/// Figures that are a function of the scenario and the seed alone (no wall clock), so
/// two runs with one seed report identical figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    /// Node slots used (started at least once).
    pub nodes: usize,
    /// Running nodes at the end.
    pub live_end: usize,
    /// Distinct actors the processes ran as (a durable restart keeps its actor).
    pub actors: usize,
    /// Virtual seconds simulated.
    pub virtual_s: f64,
    /// Events processed.
    pub events: u64,
    /// Probes that reached every target, timed out, were aborted.
    pub probes: (usize, usize, usize),
    /// p50 and p99 rounds for one add to reach all (nearest rank; timeouts infinite).
    pub p50_rounds: Option<f64>,
    /// See `p50_rounds`.
    pub p99_rounds: Option<f64>,
    /// Seconds from the first join wave to a verified full view everywhere.
    pub membership_full_s: Option<f64>,
    /// Seconds from the end of adds and lifecycle changes to exact convergence.
    pub converged_after_s: Option<f64>,
    /// The idle window.
    pub idle: Option<Idle>,
    /// Everything sent.
    pub traffic: Traffic,
    /// What happened to messages.
    pub fates: Fates,
    /// Adds made and their sum.
    pub adds: (u64, i128),
    /// Units lost because a durable node crashed before committing them (by design).
    pub lost_uncommitted: i128,
    /// Units added by departed in-memory actors that survive nowhere (by design).
    pub vanished: i128,
    /// Messages over their budget.
    pub budget_violations: u64,
    /// At the end: running nodes without a full view, missing `(node, member)` pairs,
    /// and the node missing from the most member lists (and from how many).
    pub membership_gaps: (usize, usize, Option<(usize, usize)>),
    /// Mean actors, counters and entries per running node at the end.
    pub state: (f64, f64, f64),
    /// FNV-1a hash of every running node's value of every counter at the end.
    pub fingerprint: u64,
    /// What pruning left at the end.
    pub pruning: PruneFigures,
}

/// Pruning at the end of a run (ARCHITECTURE.md, "Simulator metrics").
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PruneFigures {
    /// Running nodes at the end.
    pub live: usize,
    /// Actors held per running node (`Store::actor_count`: its own, peers', sinks),
    /// mean and maximum.
    pub actors: (f64, usize),
    /// Sinks held per running node (complete or not), mean and maximum.
    pub sinks: (f64, usize),
    /// Tombstones per running node, mean and maximum.
    pub tombstones: (f64, usize),
    /// `(counter, actor)` entries per running node (`Store::entry_count`, sink headers
    /// and records included), mean and maximum.
    pub entries: (f64, usize),
    /// Counters of every process that ran (stopped ones included).
    pub counts: PruneCounts,
    /// Sinks refused as double folds (`Event::SinkRefused`), every process.
    pub sinks_refused: u64,
    /// The highest mean actors per running node over the running nodes in any sample,
    /// and when: how far the actors grew while churn went on, not only at the end.
    pub peak_mean_ratio: Option<(f64, f64)>,
}

impl PruneFigures {
    /// The largest number of actors any running node holds, over the running nodes: the
    /// figure issue 11 bounds by 2.
    pub fn actors_per_live_node(&self) -> Option<f64> {
        (self.live > 0).then(|| self.actors.1 as f64 / self.live as f64)
    }

    /// Mean actors held per running node, over the running nodes.
    pub fn mean_actors_per_live_node(&self) -> Option<f64> {
        (self.live > 0).then(|| self.actors.0 / self.live as f64)
    }
}

/// Wall-clock and memory figures (vary between runs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Perf {
    /// Wall seconds for the whole run.
    pub wall_s: f64,
    /// Wall seconds until virtual time reached the scenario's duration.
    pub wall_at_duration_s: Option<f64>,
    /// CPU seconds of the simulator's thread for the whole run.
    pub cpu_s: Option<f64>,
    /// CPU seconds until virtual time reached the scenario's duration.
    pub cpu_at_duration_s: Option<f64>,
    /// Share of the wall time spent inside the nodes' `handle_message` and
    /// `handle_timeout` (the protocol); the rest is the simulator and its checks.
    pub protocol_share: f64,
    /// Peak resident set size of the process, bytes.
    pub peak_rss: Option<u64>,
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct Report {
    /// Scenario name.
    pub scenario: String,
    /// The seed; rerun with `--seed` to reproduce.
    pub seed: u64,
    /// The scenario's duration in virtual seconds.
    pub duration_s: f64,
    /// Why the run stopped early (a budget), if it did.
    pub incomplete: Option<String>,
    /// Checks that failed.
    pub failures: Vec<Failure>,
    /// Deterministic figures.
    pub figures: Figures,
    /// Wall-clock and memory figures.
    pub perf: Perf,
    /// The time series.
    pub series: Vec<Sample>,
    /// Every probe.
    pub probes: Vec<ProbeResult>,
    /// Rounds to reach each (probe, target) pair.
    pub reach_rounds: Vec<f32>,
}

impl Report {
    /// Whether every check held (an incomplete run has checked nothing).
    pub fn passed(&self) -> bool {
        self.failures.is_empty() && self.incomplete.is_none()
    }
}

fn fnv(hash: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *hash ^= u64::from(b);
        *hash = hash.wrapping_mul(0x100_0000_01b3);
    }
}

impl World {
    /// Final checks and figures.
    pub(crate) fn finish(mut self, started: Instant, incomplete: Option<String>) -> Report {
        self.progress.finish();
        self.probes.finish();
        if incomplete.is_none() {
            self.final_checks();
        }
        let mut fingerprint = 0xcbf2_9ce4_8422_2325u64;
        for i in self.live.sorted() {
            if let Some(node) = self.hosts[i].node.as_ref() {
                fnv(&mut fingerprint, &(i as u64).to_le_bytes());
                for c in 0..self.names.len() as u32 {
                    let value = node.store().value(self.names.name(c)).unwrap_or(0);
                    fnv(&mut fingerprint, &value.to_le_bytes());
                }
            }
        }
        let results = self.probes.results().to_vec();
        let count = |f: fn(&ProbeOutcome) -> bool| results.iter().filter(|r| f(&r.outcome)).count();
        let w = &self.watch;
        let check_from = self.scenario.adds_stop.max(self.scenario.last_lifecycle);
        let figures = Figures {
            nodes: self.hosts.iter().filter(|h| h.record != usize::MAX).count(),
            live_end: self.live.len(),
            actors: self.oracle.actors(),
            virtual_s: self.now as f64 / 1e9,
            events: self.metrics.events,
            probes: (
                count(|o| matches!(o, ProbeOutcome::Done(_))),
                count(|o| *o == ProbeOutcome::TimedOut),
                count(|o| *o == ProbeOutcome::Aborted),
            ),
            p50_rounds: percentile(&results, 50.0),
            p99_rounds: percentile(&results, 99.0),
            membership_full_s: w
                .membership_full_at
                .map(|t| (t - w.first_join) as f64 / 1e9),
            converged_after_s: w
                .converged_at
                .map(|t| t.saturating_sub(check_from) as f64 / 1e9),
            idle: w.idle,
            traffic: self.metrics.traffic,
            fates: self.metrics.fates,
            adds: self.oracle.totals(),
            lost_uncommitted: self.oracle.lost_uncommitted(),
            vanished: w.vanished,
            budget_violations: self.metrics.budget_violations,
            membership_gaps: self.membership_gaps(),
            state: self.state_means(),
            fingerprint,
            pruning: PruneFigures {
                peak_mean_ratio: self
                    .metrics
                    .samples
                    .iter()
                    .filter(|s| s.live > 0)
                    .map(|s| (s.actors / s.live as f64, s.t_s))
                    .max_by(|a, b| a.0.total_cmp(&b.0)),
                ..self.prune_figures()
            },
        };
        let peak = crate::usage::rss().map(|(_, peak)| peak);
        let wall = started.elapsed();
        Report {
            scenario: self.scenario.name.clone(),
            seed: self.seed,
            duration_s: self.scenario.duration as f64 / 1e9,
            incomplete,
            failures: std::mem::take(&mut self.failures),
            perf: Perf {
                wall_s: wall.as_secs_f64(),
                protocol_share: self.protocol_time.as_secs_f64() / wall.as_secs_f64().max(1e-9),
                wall_at_duration_s: self.progress.wall_at_duration,
                cpu_s: self.progress.cpu_s(),
                cpu_at_duration_s: self.progress.cpu_at_duration,
                peak_rss: peak.max(self.progress.peak_rss),
            },
            series: std::mem::take(&mut self.metrics.samples),
            probes: results,
            reach_rounds: self.probes.reach_rounds().to_vec(),
            figures,
        }
    }

    /// Pruning figures over the running nodes, and counters over every process.
    fn prune_figures(&self) -> PruneFigures {
        let mut f = PruneFigures {
            counts: self.metrics.pruning_stopped,
            sinks_refused: self.metrics.sinks_refused,
            ..PruneFigures::default()
        };
        let mut sums = [0usize; 4];
        for i in self.live.sorted() {
            let Some(node) = self.hosts[i].node.as_ref() else {
                continue;
            };
            let store = node.store();
            let held = [
                store.actor_count(),
                store.sinks().count(),
                store.tombstone_count(),
                store.entry_count(),
            ];
            for (k, &x) in held.iter().enumerate() {
                sums[k] += x;
            }
            f.actors.1 = f.actors.1.max(held[0]);
            f.sinks.1 = f.sinks.1.max(held[1]);
            f.tombstones.1 = f.tombstones.1.max(held[2]);
            f.entries.1 = f.entries.1.max(held[3]);
            f.counts.add(node.stats());
            f.live += 1;
        }
        let n = f.live.max(1) as f64;
        f.actors.0 = sums[0] as f64 / n;
        f.sinks.0 = sums[1] as f64 / n;
        f.tombstones.0 = sums[2] as f64 / n;
        f.entries.0 = sums[3] as f64 / n;
        f
    }

    fn final_checks(&mut self) {
        match self.final_mismatches() {
            Err(failure) => self.failures.push(failure),
            Ok(mismatches) => {
                if let Some((node, counter, read, expected)) = mismatches.first().cloned() {
                    self.failures.push(Failure::NotConverged {
                        nodes: mismatches.len(),
                        node,
                        counter,
                        read,
                        expected,
                    });
                }
            }
        }
        if let Some((node, kind, len, budget)) = self.metrics.first_violation {
            self.failures.push(Failure::Budget {
                count: self.metrics.budget_violations,
                node,
                kind: kind_name(kind),
                len,
                budget,
            });
        }
        // Duplicate failures (an oracle violation seen by a poll and again here).
        self.failures.dedup();
    }
}

fn kind_name(kind: MessageKind) -> &'static str {
    kind.as_str()
}

/// `x` with one decimal, or `-` when absent.
fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

fn bytes(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2} MB", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.2} KB", x / 1e3)
    } else {
        format!("{x:.0} B")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.figures;
        let row = |f: &mut fmt::Formatter<'_>, k: &str, v: String| writeln!(f, "  {k:<42} {v}");
        writeln!(f, "scenario {} (seed {})", self.scenario, self.seed)?;
        let status = match (&self.incomplete, self.failures.is_empty()) {
            (Some(why), _) => format!("INCOMPLETE: {why}"),
            (None, true) => "all checks passed".to_owned(),
            (None, false) => format!("FAILED ({} check(s))", self.failures.len()),
        };
        row(f, "result", status)?;
        row(
            f,
            "nodes (slots used / running at end / actors)",
            format!("{} / {} / {}", g.nodes, g.live_end, g.actors),
        )?;
        row(
            f,
            "virtual time simulated",
            format!("{:.1} s of {:.1} s", g.virtual_s, self.duration_s),
        )?;
        let (done, timed_out, aborted) = g.probes;
        row(
            f,
            "probes (done / timed out / aborted)",
            format!("{done} / {timed_out} / {aborted}"),
        )?;
        row(
            f,
            "rounds for one add to reach all p50",
            opt(g.p50_rounds, 2),
        )?;
        row(
            f,
            "rounds for one add to reach all p99",
            opt(g.p99_rounds, 2),
        )?;
        row(
            f,
            "full membership time",
            format!("{} s", opt(g.membership_full_s, 2)),
        )?;
        let (gap_nodes, gap_pairs, worst) = g.membership_gaps;
        let worst = worst.map_or(String::new(), |(j, n)| {
            format!("; node {j} is missing from {n} lists")
        });
        row(
            f,
            "members missing at the end (nodes / pairs)",
            format!("{gap_nodes} / {gap_pairs}{worst}"),
        )?;
        row(
            f,
            "exact convergence after adds stop",
            format!("{} s", opt(g.converged_after_s, 2)),
        )?;
        let idle = g.idle.map(|i| {
            format!(
                "{}/s (swim {}, sync {}, delta {}) over {:.0} s, {} nodes, {:.1}% with a full view",
                bytes(i.bytes_per_node_s()),
                bytes(i.kind_per_node_s(0)),
                bytes(i.kind_per_node_s(1)),
                bytes(i.kind_per_node_s(2)),
                i.window_s,
                i.live,
                i.full * 100.0
            )
        });
        row(
            f,
            "idle wire bytes per node per second",
            idle.unwrap_or_else(|| "-".to_owned()),
        )?;
        let t = &g.traffic;
        row(
            f,
            "messages sent (swim / sync / delta / prune)",
            format!(
                "{} / {} / {} / {}",
                t.messages[0], t.messages[1], t.messages[2], t.messages[3]
            ),
        )?;
        row(f, "bytes sent", bytes(t.total_bytes() as f64))?;
        let fa = &g.fates;
        row(
            f,
            "delivered / lost / partitioned / dup",
            format!(
                "{} / {} / {} / {}",
                fa.delivered, fa.lost, fa.partitioned, fa.duplicated
            ),
        )?;
        row(
            f,
            "to down / from crashed / refused / limited",
            format!(
                "{} / {} / {} / {}",
                fa.to_down, fa.from_crashed, fa.refused, fa.rate_limited
            ),
        )?;
        row(
            f,
            "adds (count / units)",
            format!("{} / {}", g.adds.0, g.adds.1),
        )?;
        row(
            f,
            "units lost uncommitted / vanished",
            format!("{} / {}", g.lost_uncommitted, g.vanished),
        )?;
        row(f, "budget violations", g.budget_violations.to_string())?;
        let (a, c, e) = g.state;
        row(
            f,
            "state per node (actors/counters/entries)",
            format!("{a:.0} / {c:.0} / {e:.0}"),
        )?;
        let pr = &g.pruning;
        let ratio = |x: Option<f64>| opt(x, 3);
        row(
            f,
            "actors per running node (mean / max)",
            format!(
                "{:.1} / {}; per running node {} / {}",
                pr.actors.0,
                pr.actors.1,
                ratio(pr.mean_actors_per_live_node()),
                ratio(pr.actors_per_live_node())
            ),
        )?;
        row(
            f,
            "peak mean actors per running node (at)",
            pr.peak_mean_ratio.map_or("-".to_owned(), |(r, t)| {
                format!("{r:.3} per running node (at {t:.0} s)")
            }),
        )?;
        row(
            f,
            "sinks / tombstones per node (mean / max)",
            format!(
                "{:.1} / {} ; {:.1} / {}",
                pr.sinks.0, pr.sinks.1, pr.tombstones.0, pr.tombstones.1
            ),
        )?;
        row(
            f,
            "entries per node (mean / max)",
            format!("{:.1} / {}", pr.entries.0, pr.entries.1),
        )?;
        let c = &pr.counts;
        row(
            f,
            "prunes / sinks completed / actors pruned",
            format!(
                "{} / {} / {} (summed over nodes)",
                c.prunes, c.sinks_completed, c.actors_pruned
            ),
        )?;
        row(
            f,
            "entries refused as pruned / sinks refused",
            format!("{} / {}", c.entries_pruned_refused, pr.sinks_refused),
        )?;
        row(f, "events", g.events.to_string())?;
        let p = &self.perf;
        let cpu = p
            .cpu_s
            .map_or(String::new(), |c| format!(" (CPU {c:.1} s)"));
        row(f, "wall time", format!("{:.1} s{cpu}", p.wall_s))?;
        row(
            f,
            "share of wall time inside the nodes",
            format!("{:.1}%", p.protocol_share * 100.0),
        )?;
        if let (Some(w), c) = (p.wall_at_duration_s, p.cpu_at_duration_s) {
            let cpu = c.map_or(String::new(), |c| format!(" (CPU {c:.1} s)"));
            row(
                f,
                "wall time to simulate the duration",
                format!("{w:.1} s{cpu}"),
            )?;
        }
        row(
            f,
            "peak RSS",
            self.perf
                .peak_rss
                .map_or("-".to_owned(), |b| format!("{} MiB", b >> 20)),
        )?;
        for failure in &self.failures {
            writeln!(f, "  CHECK FAILED: {failure}")?;
        }
        Ok(())
    }
}
