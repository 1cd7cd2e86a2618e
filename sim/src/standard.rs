//! The standard set behind `--summary`: `steady-100`, `membership-1k`, `steady-1k`,
//! `steady-10k` and `churn-prune-100`, and the eight summary lines computed from them.
//! `sim_membership_full_s_1k` comes from `membership-1k` (a simultaneous 1k join without
//! adds, run until the view is full or 300 s), the other 1k line from `steady-1k`, and
//! the two `sim_churn_*` lines (issue 11) from `churn-prune-100`: **100 nodes**, 15
//! minutes of 10%-per-minute churn with pruning, then a settle phase (a 1k churn run
//! would take hours of wall time on today's machine).

use std::path::Path;

use crate::engine::{RunOptions, run};
use crate::report::{Failure, Report};
use crate::scenario::{Scenario, ScenarioError};

/// The scenarios of the standard set, in run order.
pub const STANDARD_SET: [&str; 5] = [
    "steady-100",
    "membership-1k",
    "steady-1k",
    "steady-10k",
    "churn-prune-100",
];

/// One summary line: a name and its value (`None` prints as `nan`).
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The line's name.
    pub name: &'static str,
    /// Its value.
    pub value: Option<f64>,
    /// Why the value is missing, if it is.
    pub why_missing: Option<String>,
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.value {
            Some(v) if v.is_finite() => write!(f, "{}: {v:.3}", self.name),
            Some(v) => write!(f, "{}: {v}", self.name),
            None => write!(f, "{}: nan", self.name),
        }
    }
}

/// Loads the standard scenarios from `dir`.
pub fn load(dir: &Path) -> Result<Vec<Scenario>, ScenarioError> {
    STANDARD_SET
        .iter()
        .map(|name| Scenario::load(&dir.join(format!("{name}.toml"))))
        .collect()
}

/// Runs the standard scenarios; `each` sees every report as it finishes.
pub fn run_all(
    scenarios: &[Scenario],
    options: &RunOptions,
    mut each: impl FnMut(&Report),
) -> Vec<Report> {
    scenarios
        .iter()
        .map(|scenario| {
            let report = run(scenario, options);
            each(&report);
            report
        })
        .collect()
}

/// A figure of a report, or why there is none.
fn figure(
    report: Option<&Report>,
    what: &str,
    get: impl Fn(&Report) -> Option<f64>,
) -> (Option<f64>, Option<String>) {
    let Some(report) = report else {
        return (None, Some("the scenario was not run".to_owned()));
    };
    if let Some(why) = &report.incomplete {
        return (
            None,
            Some(format!("{} did not finish: {why}", report.scenario)),
        );
    }
    if !report.failures.is_empty() {
        return (None, Some(format!("{} failed its checks", report.scenario)));
    }
    match get(report) {
        Some(v) => (Some(v), None),
        None => (
            None,
            Some(format!("{} measured no {what}", report.scenario)),
        ),
    }
}

/// The eight summary lines from the standard reports (matched by scenario name).
pub fn lines(reports: &[Report]) -> Vec<Line> {
    let find = |name: &str| reports.iter().find(|r| r.scenario == name);
    let (r100, r1k, r10k) = (find("steady-100"), find("steady-1k"), find("steady-10k"));
    let p99 = |r: &Report| r.figures.p99_rounds;
    let idle = |r: &Report| r.figures.idle.map(|i| i.bytes_per_node_s());
    let mut out = Vec::new();
    let mut push = |name: &'static str, (value, why_missing): (Option<f64>, Option<String>)| {
        out.push(Line {
            name,
            value,
            why_missing,
        });
    };
    push("sim_p99_rounds_1k", figure(r1k, "probe", p99));
    push("sim_p99_rounds_10k", figure(r10k, "probe", p99));
    push(
        "sim_idle_bytes_per_node_s_10k",
        figure(r10k, "idle window", idle),
    );
    let ratio = match (
        figure(r10k, "idle window", idle),
        figure(r100, "idle window", idle),
    ) {
        ((Some(a), _), (Some(b), _)) if b > 0.0 => (Some(a / b), None),
        ((_, Some(why)), _) | (_, (_, Some(why))) => (None, Some(why)),
        _ => (None, Some("the 100-node idle figure is zero".to_owned())),
    };
    push("sim_idle_bytes_ratio_10k_vs_100", ratio);
    push(
        "sim_membership_full_s_1k",
        figure(find("membership-1k"), "full membership", |r| {
            r.figures.membership_full_s
        }),
    );
    // Wall time to simulate the scenario's 60 s; a run that failed its checks after
    // simulating them still measured it.
    let wall = match r10k {
        Some(r) => match r.perf.wall_at_duration_s {
            Some(w) => (Some(w), None),
            None => (
                None,
                Some(format!(
                    "steady-10k did not reach {:.0} s of virtual time: {}",
                    r.duration_s,
                    r.incomplete.as_deref().unwrap_or("stopped early")
                )),
            ),
        },
        None => (None, Some("the scenario was not run".to_owned())),
    };
    push("sim_wall_s_10k", wall);
    let churn = find("churn-prune-100");
    // At the end of `churn-prune-100` (100 nodes): the most actors (sinks included) any
    // running node holds, divided by the running nodes. Issue 11 bounds it by 2.
    push(
        "sim_churn_actors_per_live_node",
        figure(churn, "running node", |r| {
            r.figures.pruning.actors_per_live_node()
        }),
    );
    push("sim_churn_exact", churn_exact(churn));
    out
}

/// `sim_churn_exact`: 1 when `churn-prune-100` ended with every running node reading
/// every counter's exact total and nothing counted twice, 0 when a convergence or
/// oracle check failed, `nan` when the run did not finish (nothing was checked).
fn churn_exact(report: Option<&Report>) -> (Option<f64>, Option<String>) {
    let Some(report) = report else {
        return (None, Some("the scenario was not run".to_owned()));
    };
    if let Some(why) = &report.incomplete {
        return (
            None,
            Some(format!("{} did not finish: {why}", report.scenario)),
        );
    }
    let inexact = report
        .failures
        .iter()
        .any(|f| matches!(f, Failure::NotConverged { .. } | Failure::Oracle(_)));
    (Some(if inexact { 0.0 } else { 1.0 }), None)
}
