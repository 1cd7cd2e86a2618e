//! SVG plots of a run (plotters' SVG backend, so no system font library is needed):
//! convergence CDF, bytes per node over time, members known over time, state size.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::probes::ProbeOutcome;
use crate::report::Report;

/// A named line of `(x, y)` points.
type Line = (&'static str, Vec<(f64, f64)>);

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

/// Draws the four plots into `dir`; returns their paths.
pub fn draw(report: &Report, dir: &Path) -> Result<Vec<PathBuf>, String> {
    let title = |what: &str| format!("{what} ({}, seed {})", report.scenario, report.seed);
    let series = &report.series;
    let t = |f: fn(&crate::metrics::Sample) -> f64| -> Vec<(f64, f64)> {
        series.iter().map(|s| (s.t_s, f(s))).collect()
    };
    let mut written = Vec::new();
    let mut plot = |name: &str, title: String, x: &str, y: &str, lines: Vec<Line>| {
        let path = dir.join(name);
        // A CDF climbs to the upper right, so its legend goes lower right.
        let legend = if name.contains("cdf") {
            SeriesLabelPosition::LowerRight
        } else {
            SeriesLabelPosition::UpperRight
        };
        line_chart(&path, &title, (x, y), legend, &lines)?;
        written.push(path);
        Ok::<(), String>(())
    };
    plot(
        "convergence_cdf.svg",
        title("one add reaching every node"),
        "rounds since the add",
        "fraction",
        vec![
            ("probes complete (all targets)", probe_cdf(report)),
            (
                "(probe, node) pairs reached",
                cdf(report.reach_rounds.iter().map(|&r| f64::from(r)).collect()),
            ),
        ],
    )?;
    plot(
        "bytes_per_node.svg",
        title("wire bytes per node per second"),
        "virtual seconds",
        "bytes / node / s",
        vec![
            ("all", t(|s| s.bytes_per_node_s[0])),
            ("swim", t(|s| s.bytes_per_node_s[1])),
            ("sync (digests)", t(|s| s.bytes_per_node_s[2])),
            ("delta", t(|s| s.bytes_per_node_s[3])),
        ],
    )?;
    plot(
        "members_known.svg",
        title("members known"),
        "virtual seconds",
        "fraction of the other running nodes",
        vec![
            ("mean", t(|s| s.members_mean)),
            ("minimum", t(|s| s.members_min)),
            ("nodes with a full view", t(|s| s.full)),
        ],
    )?;
    plot(
        "state_size.svg",
        title("state per node"),
        "virtual seconds",
        "mean per running node",
        vec![
            ("actors known", t(|s| s.actors)),
            ("counters", t(|s| s.counters)),
            ("(counter, actor) entries", t(|s| s.entries)),
        ],
    )?;
    Ok(written)
}

/// Most points drawn for one CDF; a 10k-node run has millions of (probe, node) pairs,
/// and an SVG of all of them would be tens of megabytes.
const MAX_CDF_POINTS: usize = 2_000;

/// The empirical CDF of `values` as a step line, at most [`MAX_CDF_POINTS`] steps
/// (evenly spaced ranks).
fn cdf(mut values: Vec<f64>) -> Vec<(f64, f64)> {
    values.retain(|v| v.is_finite());
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let steps = n.min(MAX_CDF_POINTS);
    let mut points = Vec::with_capacity(steps * 2);
    for k in 0..steps {
        let (lo, hi) = (k * n / steps, (k + 1) * n / steps);
        let v = values[hi - 1];
        points.push((v, lo as f64 / n as f64));
        points.push((v, hi as f64 / n as f64));
    }
    points
}

/// CDF of completed probes' rounds, over all probes that count (timeouts never reach 1).
fn probe_cdf(report: &Report) -> Vec<(f64, f64)> {
    let counted = report
        .probes
        .iter()
        .filter(|p| p.outcome != ProbeOutcome::Aborted)
        .count()
        .max(1) as f64;
    let mut done: Vec<f64> = report
        .probes
        .iter()
        .filter_map(|p| match p.outcome {
            ProbeOutcome::Done(r) => Some(r),
            _ => None,
        })
        .collect();
    done.sort_by(f64::total_cmp);
    let mut points = Vec::new();
    for (i, r) in done.iter().enumerate() {
        points.push((*r, i as f64 / counted));
        points.push((*r, (i + 1) as f64 / counted));
    }
    points
}

fn line_chart(
    path: &Path,
    title: &str,
    (x, y): (&str, &str),
    legend: SeriesLabelPosition,
    lines: &[Line],
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("plot {}: {e}", path.display());
    let finite = |v: &f64| v.is_finite();
    let xs = lines
        .iter()
        .flat_map(|(_, l)| l.iter().map(|p| p.0))
        .filter(finite);
    let ys = lines
        .iter()
        .flat_map(|(_, l)| l.iter().map(|p| p.1))
        .filter(finite);
    let x_max = xs.fold(0.0f64, f64::max).max(1e-9) * 1.02;
    let y_max = ys.fold(0.0f64, f64::max).max(1e-9) * 1.05;
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc(x)
        .y_desc(y)
        .draw()
        .map_err(|e| err(&e))?;
    for (k, (name, points)) in lines.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let points = points
            .iter()
            .copied()
            .filter(|(a, b)| a.is_finite() && b.is_finite());
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(legend)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
