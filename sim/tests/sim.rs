//! Small scenarios (at most 100 nodes, seconds of wall time; the 10-minute churn with
//! pruning takes about a minute in a debug build) that check the simulator itself:
//! determinism, convergence checks, fault-injection effects, and that broken invariants
//! are caught.

use std::process::Command;

use countermesh_sim::report::Failure;
use countermesh_sim::scenario::ScenarioError;
use countermesh_sim::{Report, RunOptions, Scenario, run, standard};

/// A 30-node mesh that adds for 8 s on a 1%-lossy network.
const BASE: &str = r#"
seed = 7
[run]
duration_s = 20
settle_max_s = 30
idle_window_s = 3
[[join]]
count = 30
[workload]
counters = 3
adds_per_writer_per_s = 2.0
start_s = 2
stop_s = 10
[probes]
every_s = 0.5
"#;

fn scenario(extra: &str) -> Scenario {
    scenario_on("loss = 0.01", extra)
}

/// The base scenario with `network` as its `[network]` table.
fn scenario_on(network: &str, extra: &str) -> Scenario {
    Scenario::parse(&format!("{BASE}\n{extra}\n[network]\n{network}\n"), "test")
        .expect("test scenario is valid")
}

fn run_seed(scenario: &Scenario, seed: u64) -> Report {
    run(
        scenario,
        &RunOptions {
            seed: Some(seed),
            ..RunOptions::default()
        },
    )
}

fn assert_passed(report: &Report) {
    assert!(
        report.passed(),
        "seed {}: {:?} {:?}\n{report}",
        report.seed,
        report.incomplete,
        report.failures
    );
}

#[test]
fn same_seed_same_run_other_seed_other_run() {
    let s = scenario("");
    let a = run_seed(&s, 11);
    let b = run_seed(&s, 11);
    assert_passed(&a);
    assert_eq!(a.figures, b.figures, "same seed, different figures");
    assert_eq!(a.series, b.series, "same seed, different time series");
    assert_eq!(a.probes, b.probes);
    let c = run_seed(&s, 12);
    assert_passed(&c);
    assert_ne!(
        a.figures.traffic, c.figures.traffic,
        "the seed changes nothing"
    );
}

#[test]
fn steady_mesh_converges_exactly_and_measures_everything() {
    let report = run_seed(&scenario(""), 1);
    assert_passed(&report);
    let f = &report.figures;
    assert_eq!(f.live_end, 30);
    assert!(f.adds.0 > 300, "adds were made: {:?}", f.adds);
    let (done, timed_out, aborted) = f.probes;
    assert_eq!((timed_out, aborted), (0, 0));
    assert!(done >= 15, "probes completed: {done}");
    assert!(
        f.p99_rounds
            .is_some_and(|r| r >= f.p50_rounds.unwrap_or(0.0))
    );
    assert!(f.membership_full_s.is_some(), "full membership measured");
    assert!(f.converged_after_s.is_some());
    let idle = f.idle.expect("idle window measured");
    assert!(idle.bytes_per_node_s() > 0.0, "idle nodes still gossip");
    assert_eq!(idle.live, 30);
    assert_eq!(f.budget_violations, 0);
    assert_eq!((f.lost_uncommitted, f.vanished), (0, 0));
    assert!(!report.series.is_empty());
}

#[test]
fn loss_and_duplication_are_applied_and_tolerated() {
    let report = run_seed(
        &scenario_on("loss = 0.2\nduplicate = 0.1\nreorder = 0.2", ""),
        3,
    );
    assert_passed(&report);
    let fates = report.figures.fates;
    let sent = report.figures.traffic.total_messages() as f64;
    let lost = fates.lost as f64 / sent;
    assert!((0.17..0.23).contains(&lost), "loss rate {lost}");
    let dup = fates.duplicated as f64 / (sent - fates.lost as f64);
    assert!((0.08..0.12).contains(&dup), "duplication rate {dup}");
}

#[test]
fn a_partition_blocks_traffic_until_it_heals() {
    let report = run_seed(
        &scenario(
            r#"
[[partition]]
at_s = 3
heal_at_s = 9
groups = ["0..15"]
"#,
        ),
        5,
    );
    assert_passed(&report);
    assert!(report.figures.fates.partitioned > 0);
    // A probe made while the mesh was split cannot have reached the other half before
    // the heal, so it took at least until then.
    let split: Vec<_> = report
        .probes
        .iter()
        .filter(|p| (3.5e9..8e9).contains(&(p.start as f64)))
        .collect();
    assert!(!split.is_empty());
    for p in split {
        let countermesh_sim::probes::ProbeOutcome::Done(rounds) = p.outcome else {
            panic!("probe {} did not complete: {:?}", p.id, p.outcome);
        };
        let reached_at = p.start as f64 / 1e9 + rounds * 0.1;
        assert!(
            reached_at >= 9.0,
            "probe {} crossed the partition at {reached_at}",
            p.id
        );
    }
}

#[test]
fn one_way_links_and_slow_nodes_slow_propagation_down() {
    let base = run_seed(&scenario(""), 9);
    let faulty = run_seed(
        &scenario(
            r#"
[[link]]
from = "0..15"
to = "15..30"
loss = 1.0
at_s = 2
until_s = 8
[[slow]]
nodes = "15..30"
extra_latency_ms = 150
timer_lag_ms = 50
"#,
        ),
        9,
    );
    assert_passed(&base);
    assert_passed(&faulty);
    let (b, f) = (base.figures, faulty.figures);
    assert!(
        f.fates.lost > 5 * b.fates.lost,
        "{} vs {}",
        f.fates.lost,
        b.fates.lost
    );
    assert!(
        f.p50_rounds > b.p50_rounds,
        "slow nodes and a dead direction did not slow probes: {:?} vs {:?}",
        f.p50_rounds,
        b.p50_rounds
    );
}

#[test]
fn durable_restarts_keep_committed_adds_and_wiped_ones_start_over() {
    let durable = run_seed(
        &scenario(
            r#"
[protocol]
data_dir = true
[[crash]]
at_s = 4
nodes = "10..15"
restart_after_s = 2
[[crash]]
at_s = 5
nodes = "20..25"
restart_after_s = 1
durable = false
"#,
        ),
        13,
    );
    assert_passed(&durable);
    assert!(durable.figures.fates.from_crashed + durable.figures.fates.to_down > 0);
    assert_eq!(durable.figures.live_end, 30);
    // Ten restarted processes, each a new actor (durable ones restore the old actor's
    // committed entries as a peer's).
    assert_eq!(durable.figures.actors, 40);
    assert!(durable.figures.lost_uncommitted >= 0);
    let in_memory = run_seed(
        &scenario(
            r#"
[[crash]]
at_s = 6
count = 4
restart_after_s = 1
[[leave]]
at_s = 7
nodes = "25..30"
"#,
        ),
        13,
    );
    assert_passed(&in_memory);
    assert_eq!(in_memory.figures.live_end, 25);
    assert_eq!(in_memory.figures.nodes, 30);
    // In-memory restarts always start a fresh actor.
    assert_eq!(in_memory.figures.actors, 34);
}

#[test]
fn a_rolling_durable_restart_is_exact_with_a_new_actor_per_start() {
    // The deprecated spelling of `data_dir = true`, kept here so that it keeps working.
    let report = run_seed(
        &scenario(
            r#"
[protocol]
persistence = "required"
[[rolling_restart]]
at_s = 3
every_s = 0.2
downtime_s = 1
"#,
        ),
        17,
    );
    assert_passed(&report);
    assert_eq!(report.figures.live_end, 30);
    assert_eq!(
        report.figures.actors, 60,
        "every start, from the data directory too, counts under a new actor"
    );
    assert!(
        report.figures.fates.to_down > 0,
        "nodes were down while others sent to them"
    );
}

#[test]
fn churn_keeps_the_mesh_exact() {
    let report = run_seed(
        &scenario(
            r#"
[churn]
rate_per_s = 2
start_s = 3
stop_s = 8
mode = "leave-join"
"#,
        ),
        21,
    );
    assert_passed(&report);
    assert!(report.figures.nodes > 30, "churn joined new nodes");
    assert_eq!(report.figures.live_end, 30);
}

/// Issue 11's churn, small: 30 nodes, 10% replaced per minute (half leave and are
/// replaced by a fresh node, half crash and restart from their data directory under a
/// new actor) for 7 minutes of a 10-minute run, with pruning tuned to happen within it.
const CHURN_PRUNE: &str = r#"
[run]
duration_s = 600
settle_max_s = 120
idle_window_s = 5
sample_interval_s = 5
[protocol]
data_dir = true
[protocol.prune]
after_down_s = 60
after_replaced_s = 15
interval_s = 5
intent_timeout_s = 20
[[join]]
count = 30
[workload]
counters = 3
adds_per_writer_per_s = 1.0
start_s = 2
stop_s = 430
[probes]
every_s = 0
[network]
loss = 0.01
[[churn]]
rate_per_s = 0.025
start_s = 10
stop_s = 420
mode = "leave-join"
[[churn]]
rate_per_s = 0.025
start_s = 10
stop_s = 420
mode = "crash-restart"
downtime_s = 3
"#;

#[test]
fn churn_with_pruning_is_exact_and_keeps_actors_near_the_live_nodes() {
    let s = Scenario::parse(CHURN_PRUNE, "churn-prune-30").expect("valid");
    let seed = 3;
    let report = run_seed(&s, seed);
    assert_passed(&report);
    let p = &report.figures.pruning;
    assert_eq!(report.figures.live_end, 30, "seed {seed}\n{report}");
    assert!(
        report.figures.actors > 45,
        "seed {seed}: churn made few new actors\n{report}"
    );
    assert!(
        p.counts.prunes > 0 && p.counts.actors_pruned > 0 && p.tombstones.1 > 0,
        "seed {seed}: nothing was pruned\n{report}"
    );
    let ratio = p.actors_per_live_node().unwrap_or(f64::INFINITY);
    assert!(
        ratio <= 2.0,
        "seed {seed}: {ratio} actors per running node after pruning\n{report}"
    );
    assert_eq!(p.sinks_refused, 0, "seed {seed}: a double fold\n{report}");
}

#[test]
fn data_dir_and_prune_settings_load_and_the_old_key_is_noted() {
    let base = BASE.replace("seed = 7", "seed = 7\n");
    let new = Scenario::parse(&format!("{base}\n[protocol]\ndata_dir = true"), "x").expect("valid");
    assert!(new.data_dir && new.deprecations.is_empty());
    let old = Scenario::parse(
        &format!("{base}\n[protocol]\npersistence = \"required\""),
        "x",
    )
    .expect("valid");
    assert!(old.data_dir);
    assert!(old.deprecations[0].contains("data_dir = true"));
    let clash = Scenario::parse(
        &format!("{base}\n[protocol]\ndata_dir = false\npersistence = \"required\""),
        "x",
    );
    assert!(
        matches!(clash, Err(ScenarioError::Invalid { .. })),
        "{clash:?}"
    );
    let default = Scenario::parse(&base, "x").expect("valid");
    assert_eq!(
        default.prune,
        Some(countermesh_core::PruneConfig::default())
    );
    let off = Scenario::parse(&format!("{base}\n[protocol]\nprune = false"), "x").expect("valid");
    assert_eq!(off.prune, None);
    assert_eq!(countermesh_sim::node_config(&off).prune, None);
    let tuned = Scenario::parse(
        &format!("{base}\n[protocol.prune]\nafter_down_s = 120\nafter_replaced_s = 30"),
        "x",
    )
    .expect("valid");
    let config = tuned.prune.expect("on");
    assert_eq!(config.after_down, std::time::Duration::from_secs(120));
    assert_eq!(config.after_replaced, std::time::Duration::from_secs(30));
    assert_eq!(
        config.interval,
        countermesh_core::PruneConfig::default().interval
    );
    let zero = Scenario::parse(&format!("{base}\n[protocol.prune]\ninterval_s = 0"), "x");
    assert!(
        matches!(zero, Err(ScenarioError::Invalid { .. })),
        "{zero:?}"
    );
    let typo = Scenario::parse(&format!("{base}\n[protocol.prune]\nafter_dwn_s = 1"), "x");
    assert!(matches!(typo, Err(ScenarioError::Parse(_))), "{typo:?}");
    let churns = Scenario::parse(
        &format!(
            "{base}\n[[churn]]\nrate_per_s = 1\nstart_s = 1\nstop_s = 5\nmode = \"leave-join\"\n[[churn]]\nrate_per_s = 1\nstart_s = 1\nstop_s = 30\nmode = \"crash-join\""
        ),
        "x",
    );
    assert!(
        matches!(churns, Err(ScenarioError::Invalid { ref field, .. }) if field == "run.duration_s"),
        "{churns:?}"
    );
}

#[test]
fn an_unrecorded_add_is_caught() {
    let report = run_seed(
        &scenario("[[sabotage]]\nkind = \"unrecorded-add\"\nat_s = 5\nnode = 3"),
        1,
    );
    assert!(report.incomplete.is_none());
    assert!(
        matches!(
            report.failures.as_slice(),
            [Failure::NotConverged { read, expected, .. }] if read - expected == 1
        ),
        "{:?}",
        report.failures
    );
}

#[test]
fn reusing_an_actor_after_losing_its_data_is_caught() {
    let report = run_seed(
        &scenario("[[sabotage]]\nkind = \"wipe-reusing-actor\"\nat_s = 6\nnode = 4"),
        1,
    );
    assert!(
        // The old maximum hides the new adds (not converged), or the mesh holds more for
        // the actor than its new process made (counted twice): either is a catch.
        matches!(
            report.failures.as_slice(),
            [Failure::NotConverged { .. } | Failure::Oracle(_)]
        ),
        "{:?}",
        report.failures
    );
}

#[test]
fn an_oversized_message_is_caught() {
    let report = run_seed(
        &scenario("[[sabotage]]\nkind = \"stream-budget\"\nbytes = 200"),
        1,
    );
    assert!(
        report
            .failures
            .iter()
            .any(|f| matches!(f, Failure::Budget { budget: 200, .. })),
        "{:?}",
        report.failures
    );
}

#[test]
fn the_binary_exits_non_zero_with_the_seed_on_a_failed_check() {
    let dir = std::env::temp_dir().join(format!("countermesh-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("sabotaged.toml");
    std::fs::write(
        &path,
        format!("{BASE}\n[[sabotage]]\nkind = \"unrecorded-add\"\nat_s = 5\nnode = 3\n"),
    )
    .expect("write scenario");
    let out = Command::new(env!("CARGO_BIN_EXE_countermesh-sim"))
        .arg(&path)
        .args(["--seed", "4242", "--no-progress", "--no-plots", "--out"])
        .arg(dir.join("out"))
        .output()
        .expect("run the binary");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("--seed 4242"), "stderr: {stderr}");
    assert!(dir.join("out/timeseries.csv").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_wall_budget_stops_the_run_and_the_summary_says_nan() {
    let s = Scenario::parse(
        &BASE.replace("seed = 7", "name = \"steady-10k\"\nseed = 7"),
        "x",
    )
    .expect("valid");
    let report = run(
        &s,
        &RunOptions {
            wall_budget: Some(std::time::Duration::from_millis(1)),
            ..RunOptions::default()
        },
    );
    assert!(
        report
            .incomplete
            .as_deref()
            .is_some_and(|w| w.contains("budget"))
    );
    let lines = standard::lines(std::slice::from_ref(&report));
    let printed: Vec<String> = lines.iter().map(ToString::to_string).collect();
    assert_eq!(printed[1], "sim_p99_rounds_10k: nan");
    assert_eq!(printed[5], "sim_wall_s_10k: nan");
    assert_eq!(printed[6], "sim_churn_actors_per_live_node: nan");
    assert_eq!(printed[7], "sim_churn_exact: nan");
    assert!(lines.iter().all(|l| l.why_missing.is_some()));
}

#[test]
fn bad_scenarios_are_typed_errors() {
    let unknown = Scenario::parse(&format!("{BASE}\nbogus = 1"), "x");
    assert!(
        matches!(unknown, Err(ScenarioError::Parse(_))),
        "{unknown:?}"
    );
    let range = Scenario::parse(
        &format!("{BASE}\n[[leave]]\nat_s = 1\nnodes = \"0..99\""),
        "x",
    );
    assert!(
        matches!(range, Err(ScenarioError::Range { .. })),
        "{range:?}"
    );
    let loss = Scenario::parse(&format!("{BASE}\n[network]\nloss = 1.5"), "x");
    assert!(
        matches!(loss, Err(ScenarioError::Invalid { .. })),
        "{loss:?}"
    );
    let durable = Scenario::parse(
        &format!("{BASE}\n[[crash]]\nat_s = 1\ncount = 1\nrestart_after_s = 1\ndurable = true"),
        "x",
    );
    assert!(
        matches!(durable, Err(ScenarioError::Invalid { .. })),
        "{durable:?}"
    );
    let late = Scenario::parse(&format!("{BASE}\n[[crash]]\nat_s = 100\ncount = 1"), "x");
    assert!(
        matches!(late, Err(ScenarioError::Invalid { .. })),
        "{late:?}"
    );
    let time = Scenario::parse(&BASE.replace("duration_s = 20", "duration_s = -1"), "x");
    assert!(
        matches!(time, Err(ScenarioError::Invalid { .. })),
        "{time:?}"
    );
}

#[test]
fn every_shipped_scenario_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("scenarios dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            count += 1;
        }
    }
    assert!(count >= 7, "{count} scenarios");
    assert!(standard::load(&dir).is_ok());
}
