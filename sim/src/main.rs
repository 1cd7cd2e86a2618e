//! `countermesh-sim`: run one scenario, or the standard set with `--summary`.
//!
//! Exit status: 0 when every check held, 1 when a check failed (the seed is printed),
//! 2 for a bad scenario or command line, 3 when a run hit its wall-clock or memory
//! budget before finishing.
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use countermesh_sim::{Report, RunOptions, Scenario, output, standard};

/// Deterministic simulation of a countermesh of up to 100k+ real protocol nodes.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Scenario file (TOML), e.g. sim/scenarios/steady-100.toml.
    scenario: Option<PathBuf>,
    /// Seed; default the scenario's own. Every run prints the seed it used.
    #[arg(long)]
    seed: Option<u64>,
    /// Output directory; default target/sim/<scenario>/.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Stop a run after this many wall-clock seconds (reported as incomplete).
    #[arg(long)]
    wall_budget: Option<f64>,
    /// Stop a run when resident memory passes this many MiB (0 = no limit).
    #[arg(long, default_value_t = 20_480)]
    rss_budget_mb: u64,
    /// Do not draw the progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Do not write SVG plots.
    #[arg(long)]
    no_plots: bool,
    /// Run the standard set (steady-100, membership-1k, steady-1k, steady-10k,
    /// churn-prune-100) and print the summary lines.
    #[arg(long, conflicts_with = "scenario")]
    summary: bool,
    /// Where the standard set's scenario files are.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios"))]
    scenarios: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match real_main(&args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("countermesh-sim: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn options(args: &Args) -> anyhow::Result<RunOptions> {
    let wall_budget = match args.wall_budget {
        Some(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
        Some(s) => anyhow::bail!("--wall-budget {s} is not a positive number of seconds"),
        None => None,
    };
    Ok(RunOptions {
        seed: args.seed,
        wall_budget,
        rss_budget: (args.rss_budget_mb > 0).then_some(args.rss_budget_mb << 20),
        progress: !args.no_progress,
    })
}

fn out_dir(args: &Args, scenario: &str) -> PathBuf {
    args.out.clone().unwrap_or_else(|| {
        let target =
            std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| "target".into(), PathBuf::from);
        target.join("sim").join(scenario)
    })
}

/// Prints a report and writes its files; returns whether its checks held.
fn finish(args: &Args, report: &Report, dir: PathBuf) -> anyhow::Result<()> {
    println!("{report}");
    let files = output::write(report, &dir, !args.no_plots)
        .with_context(|| format!("writing results into {}", dir.display()))?;
    println!("  files: {} in {}", files.len(), dir.display());
    if let Some(why) = &report.incomplete {
        eprintln!(
            "{}: incomplete: {why} (seed {})",
            report.scenario, report.seed
        );
    }
    if !report.failures.is_empty() {
        eprintln!(
            "{}: CHECK FAILED with seed {}; reproduce with --seed {}",
            report.scenario, report.seed, report.seed
        );
    }
    Ok(())
}

fn real_main(args: &Args) -> anyhow::Result<ExitCode> {
    let options = options(args)?;
    if args.summary {
        return summary(args, &options);
    }
    let Some(path) = &args.scenario else {
        anyhow::bail!("give a scenario file, or --summary (see --help)");
    };
    let scenario = Scenario::load(path)?;
    for note in &scenario.deprecations {
        eprintln!("countermesh-sim: {}: {note}", scenario.name);
    }
    let seed = options.seed.unwrap_or(scenario.file.seed);
    eprintln!(
        "countermesh-sim: {} ({} nodes), seed {seed}",
        scenario.name, scenario.initial_nodes
    );
    let report = countermesh_sim::run(&scenario, &options);
    let dir = out_dir(args, &scenario.name);
    finish(args, &report, dir)?;
    Ok(exit_code(std::slice::from_ref(&report)))
}

fn exit_code(reports: &[Report]) -> ExitCode {
    if reports.iter().any(|r| !r.failures.is_empty()) {
        ExitCode::from(1)
    } else if reports.iter().any(|r| r.incomplete.is_some()) {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}

fn summary(args: &Args, options: &RunOptions) -> anyhow::Result<ExitCode> {
    let scenarios = standard::load(&args.scenarios)?;
    let mut errors = Vec::new();
    let reports = standard::run_all(&scenarios, options, |report| {
        eprintln!(
            "countermesh-sim: {} done (seed {})",
            report.scenario, report.seed
        );
        if let Err(e) = finish(args, report, out_dir(args, &report.scenario)) {
            errors.push(e);
        }
    });
    if let Some(error) = errors.pop() {
        return Err(error);
    }
    let lines = standard::lines(&reports);
    for line in &lines {
        if let Some(why) = &line.why_missing {
            eprintln!("{}: nan because {why}", line.name);
        }
    }
    for line in &lines {
        println!("{line}");
    }
    // A run stopped by its budget still yields its lines (as nan); only a failed check
    // fails the summary.
    Ok(if reports.iter().any(|r| !r.failures.is_empty()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
