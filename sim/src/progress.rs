//! The progress bar (indicatif, on stderr) and the wall-clock and memory budgets.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::RunOptions;
use crate::metrics::Sample;
use crate::scenario::Scenario;

/// How often (in events) the budgets are checked; reading the clock per event would
/// cost more than some events.
const CHECK_EVERY: u64 = 1024;

/// Progress display and budget checks.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    /// Without a terminal, a plain line on stderr every tenth of the duration instead.
    lines: Option<(String, u64, u64)>,
    started: Instant,
    wall_budget: Option<Duration>,
    rss_budget: Option<u64>,
    duration: u64,
    now: u64,
    /// Wall seconds when virtual time first reached the scenario's duration.
    pub(crate) wall_at_duration: Option<f64>,
    /// CPU seconds when virtual time first reached the scenario's duration.
    pub(crate) cpu_at_duration: Option<f64>,
    cpu_start: f64,
    /// Largest resident set size seen, in bytes.
    pub(crate) peak_rss: Option<u64>,
}

impl Progress {
    pub(crate) fn new(scenario: &Scenario, options: &RunOptions) -> Self {
        let budget = scenario.file.run.wall_budget_s;
        let wall_budget = options
            .wall_budget
            .or_else(|| (budget > 0.0).then(|| Duration::from_secs_f64(budget)));
        let terminal = std::io::stderr().is_terminal();
        let lines = (options.progress && !terminal)
            .then(|| (scenario.name.clone(), (scenario.duration / 10).max(1), 0));
        let bar = (options.progress && terminal).then(|| {
            let bar = ProgressBar::with_draw_target(
                Some(scenario.duration / 1_000_000),
                ProgressDrawTarget::stderr(),
            );
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{elapsed_precise}] {bar:30} {pos}/{len} virtual ms  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_prefix(scenario.name.clone());
            bar
        });
        Self {
            bar,
            lines,
            started: Instant::now(),
            wall_budget,
            rss_budget: options.rss_budget,
            duration: scenario.duration,
            now: 0,
            wall_at_duration: None,
            cpu_at_duration: None,
            cpu_start: crate::usage::cpu_s().unwrap_or(0.0),
            peak_rss: None,
        }
    }

    /// Wall seconds since the run started.
    pub(crate) fn wall_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// CPU seconds of the simulator's thread since the run started.
    pub(crate) fn cpu_s(&self) -> Option<f64> {
        crate::usage::cpu_s().map(|s| s - self.cpu_start)
    }

    /// Whether a budget is exhausted; checked every [`CHECK_EVERY`] events.
    pub(crate) fn over_budget(&mut self, events: u64, now: u64) -> Option<String> {
        if !events.is_multiple_of(CHECK_EVERY) {
            return None;
        }
        self.now = now;
        let virtual_s = self.now as f64 / 1e9;
        if let Some(budget) = self.wall_budget
            && self.started.elapsed() > budget
        {
            return Some(format!(
                "wall-clock budget of {:.0} s exhausted at {virtual_s:.1} s of virtual time",
                budget.as_secs_f64()
            ));
        }
        if let (Some(limit), Some((rss, peak))) = (self.rss_budget, crate::usage::rss()) {
            self.peak_rss = Some(self.peak_rss.unwrap_or(0).max(peak));
            if rss > limit {
                return Some(format!(
                    "memory budget of {} MiB exhausted ({} MiB resident) at {virtual_s:.1} s of virtual time",
                    limit >> 20,
                    rss >> 20
                ));
            }
        }
        None
    }

    /// Records a sample: moves the bar, remembers when the duration was reached.
    pub(crate) fn update(&mut self, now: u64, sample: &Sample) {
        self.now = now;
        if now >= self.duration && self.wall_at_duration.is_none() {
            self.wall_at_duration = Some(self.wall_s());
            self.cpu_at_duration = self.cpu_s();
        }
        let rss = crate::usage::rss();
        if let Some((_, peak)) = rss {
            self.peak_rss = Some(self.peak_rss.unwrap_or(0).max(peak));
        }
        let wall = self.wall_s();
        if let Some((name, every, next)) = &mut self.lines
            && now >= *next
        {
            *next = now + *every;
            // The plain progress line is this binary's output on stderr by design.
            #[allow(clippy::print_stderr)]
            {
                eprintln!(
                    "{name}: {:.0}/{:.0} s virtual, {} nodes, {:.0}% full view, {:.0} B/s/node, RSS {} MiB, wall {:.0} s",
                    now as f64 / 1e9,
                    self.duration as f64 / 1e9,
                    sample.live,
                    sample.full * 100.0,
                    sample.bytes_per_node_s[0],
                    rss.map_or(0, |(r, _)| r >> 20),
                    wall
                );
            }
        }
        if let Some(bar) = &self.bar {
            bar.set_position((now / 1_000_000).min(self.duration / 1_000_000));
            bar.set_message(format!(
                "{} nodes, {:.0}% full view, {:.0} B/s/node, RSS {} MiB",
                sample.live,
                sample.full * 100.0,
                sample.bytes_per_node_s[0],
                rss.map_or(0, |(r, _)| r >> 20)
            ));
        }
    }

    /// Removes the bar.
    pub(crate) fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}
