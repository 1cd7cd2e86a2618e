//! Writing a run's files: CSV time series, probes, summary, and plots.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::metrics::SAMPLE_COLUMNS;
use crate::probes::ProbeOutcome;
use crate::report::Report;

/// Writes `timeseries.csv`, `probes.csv`, `summary.csv` and `summary.txt` (and the plots
/// if `plots`) into `dir`, creating it. Returns the files written.
pub fn write(report: &Report, dir: &Path, plots: bool) -> std::io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let mut file = |name: &str, text: String| -> std::io::Result<()> {
        let path = dir.join(name);
        fs::File::create(&path)?.write_all(text.as_bytes())?;
        written.push(path);
        Ok(())
    };
    let mut series = String::from(SAMPLE_COLUMNS);
    series.push('\n');
    for sample in &report.series {
        series.push_str(&sample.csv());
        series.push('\n');
    }
    file("timeseries.csv", series)?;
    let mut probes = String::from("id,origin,start_s,targets,outcome,rounds\n");
    for p in &report.probes {
        let (outcome, rounds) = match p.outcome {
            ProbeOutcome::Done(r) => ("done", format!("{r:.3}")),
            ProbeOutcome::TimedOut => ("timed-out", String::new()),
            ProbeOutcome::Aborted => ("aborted", String::new()),
        };
        probes.push_str(&format!(
            "{},{},{:.3},{},{outcome},{rounds}\n",
            p.id,
            p.origin,
            p.start as f64 / 1e9,
            p.targets
        ));
    }
    file("probes.csv", probes)?;
    let mut summary = String::from("name,value\n");
    for (name, value) in summary_pairs(report) {
        summary.push_str(&format!("{name},{value}\n"));
    }
    file("summary.csv", summary)?;
    file("summary.txt", report.to_string())?;
    if plots {
        written.extend(crate::plots::draw(report, dir).map_err(std::io::Error::other)?);
    }
    Ok(written)
}

fn num(x: Option<f64>) -> String {
    x.map_or_else(|| "nan".to_owned(), |v| format!("{v}"))
}

/// The summary as `(name, value)` pairs.
pub fn summary_pairs(report: &Report) -> Vec<(&'static str, String)> {
    let g = &report.figures;
    vec![
        ("scenario", report.scenario.clone()),
        ("seed", report.seed.to_string()),
        ("passed", report.passed().to_string()),
        ("nodes", g.nodes.to_string()),
        ("live_end", g.live_end.to_string()),
        ("actors", g.actors.to_string()),
        ("virtual_s", format!("{}", g.virtual_s)),
        ("p50_rounds", num(g.p50_rounds)),
        ("p99_rounds", num(g.p99_rounds)),
        ("probes_done", g.probes.0.to_string()),
        ("probes_timed_out", g.probes.1.to_string()),
        ("probes_aborted", g.probes.2.to_string()),
        ("membership_full_s", num(g.membership_full_s)),
        ("converged_after_s", num(g.converged_after_s)),
        ("nodes_without_full_view", g.membership_gaps.0.to_string()),
        ("missing_member_pairs", g.membership_gaps.1.to_string()),
        (
            "idle_bytes_per_node_s",
            num(g.idle.map(|i| i.bytes_per_node_s())),
        ),
        ("idle_full_view_fraction", num(g.idle.map(|i| i.full))),
        ("bytes_sent", g.traffic.total_bytes().to_string()),
        ("messages_sent", g.traffic.total_messages().to_string()),
        ("budget_violations", g.budget_violations.to_string()),
        ("lost_uncommitted", g.lost_uncommitted.to_string()),
        ("vanished", g.vanished.to_string()),
        ("events", g.events.to_string()),
        ("wall_s", format!("{:.3}", report.perf.wall_s)),
        ("wall_at_duration_s", num(report.perf.wall_at_duration_s)),
        ("cpu_s", num(report.perf.cpu_s)),
        (
            "protocol_share",
            format!("{:.4}", report.perf.protocol_share),
        ),
        ("cpu_at_duration_s", num(report.perf.cpu_at_duration_s)),
        (
            "peak_rss_bytes",
            report
                .perf
                .peak_rss
                .map_or("nan".to_owned(), |b| b.to_string()),
        ),
    ]
}
