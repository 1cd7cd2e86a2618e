//! Strict-mode benchmark against real ZooKeeper servers started by the harness: a
//! standalone server, then a three-server ensemble, each measured in this same run.
//!
//! * 1 caller: sequential `add` vs raw sequential `set_data` vs kazoo's `Counter` recipe,
//!   and, to find where the difference goes, a raw sequential `multi(create receipt,
//!   set_data)`: the transaction a strict add commits, without the combiner and without
//!   deleting the receipts afterwards; and strict `add` through a client whose receipt
//!   cleanup is deferred until after the clock stops (combiner and client overhead
//!   without cleanup).
//! * 64 callers in one process: `add` with combining vs kazoo with 64 threads vs raw
//!   sequential `set_data`.
//! * Latency of the linearizable `get` vs `get_sequential` (p50, p99).
//!
//! `cargo bench -p countermesh-strict` runs it in full and ends with one `name: value`
//! line per figure (see BENCHMARKS.md). Invoked without `--bench` (as `cargo test
//! --benches` does) it makes a quick pass of a few operations so the code cannot rot;
//! if kazoo is not installed then, only the kazoo part is skipped.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use countermesh_strict::harness::{ClusterConfig, ZkCluster};
use countermesh_strict::{StrictClient, StrictOptions};
use zookeeper_client as zk;

/// How many operations each measurement makes.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    warmup: usize,
    sequential: usize,
    callers: usize,
    per_caller: usize,
    kazoo_sequential: usize,
    kazoo_per_thread: usize,
    reads: usize,
}

const FULL: Sizes = Sizes {
    warmup: 500,
    sequential: 2000,
    callers: 64,
    per_caller: 100,
    kazoo_sequential: 1000,
    kazoo_per_thread: 20,
    reads: 1000,
};
const QUICK: Sizes = Sizes {
    warmup: 5,
    sequential: 20,
    callers: 64,
    per_caller: 2,
    kazoo_sequential: 10,
    kazoo_per_thread: 1,
    reads: 20,
};

/// The figures of one topology.
#[derive(Debug, Default)]
struct Figures {
    setdata: f64,
    raw_multi: f64,
    add_deferred_cleanup: f64,
    /// Of a deferred-cleanup add's latency, the share spent outside ZooKeeper's answer.
    client_overhead: f64,
    add: f64,
    add64: f64,
    kazoo: Option<f64>,
    kazoo64: Option<f64>,
    get_p50_ms: f64,
    get_p99_ms: f64,
    seq_p50_ms: f64,
    seq_p99_ms: f64,
}

fn main() -> anyhow::Result<()> {
    let full = std::env::args().any(|a| a == "--bench");
    let sizes = if full { FULL } else { QUICK };
    let kazoo = kazoo_available();
    if !kazoo {
        if full {
            bail!(
                "kazoo is not installed (python3 -c 'import kazoo' fails): run scripts/ensure-zookeeper"
            );
        }
        println!("kazoo is not installed: skipping the kazoo baselines in this quick run");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut results = Vec::new();
    for (prefix, config) in [
        ("", ClusterConfig::standalone()),
        ("ensemble_", ClusterConfig::ensemble()),
    ] {
        let cluster = ZkCluster::start(config)?;
        let figures = runtime.block_on(measure(&cluster, sizes, kazoo))?;
        print_details(prefix, &figures);
        results.push((prefix, figures));
        drop(cluster);
    }
    println!();
    for (prefix, f) in &results {
        println!(
            "{prefix}strict_add_vs_setdata_ratio: {:.2}",
            f.add / f.setdata
        );
        println!(
            "{prefix}raw_multi_receipt_vs_setdata_ratio: {:.2}",
            f.raw_multi / f.setdata
        );
        println!(
            "{prefix}strict_add_deferred_cleanup_vs_raw_multi_receipt_ratio: {:.2}",
            f.add_deferred_cleanup / f.raw_multi
        );
        println!(
            "{prefix}strict_add_vs_raw_multi_receipt_ratio: {:.2}",
            f.add / f.raw_multi
        );
        println!(
            "{prefix}strict_add_client_overhead_pct: {:.1}",
            f.client_overhead * 100.0
        );
        println!(
            "{prefix}strict_add64_vs_setdata_ratio: {:.2}",
            f.add64 / f.setdata
        );
        match (f.kazoo64, f.kazoo) {
            (Some(k64), Some(k)) => {
                println!(
                    "{prefix}strict_add64_vs_kazoo64_ratio: {:.2}",
                    f.add64 / k64
                );
                println!("{prefix}strict_add_vs_kazoo_ratio: {:.2}", f.add / k);
            }
            _ => {
                println!("{prefix}strict_add64_vs_kazoo64_ratio: skipped (no kazoo)");
                println!("{prefix}strict_add_vs_kazoo_ratio: skipped (no kazoo)");
            }
        }
        println!("{prefix}linearizable_get_p99_ms: {:.2}", f.get_p99_ms);
    }
    Ok(())
}

async fn measure(cluster: &ZkCluster, sizes: Sizes, kazoo: bool) -> anyhow::Result<Figures> {
    let hosts = cluster.connect_string();
    let opts = StrictOptions::default().with_op_timeout(Duration::from_secs(30));
    let client = StrictClient::connect(&format!("{hosts}/bench"), opts).await?;
    let raw = zk::Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(&hosts)
        .await?;
    let mut figures = Figures::default();
    // The same client with receipt cleanup put off until the clock stops.
    let deferred = StrictClient::connect(
        &format!("{hosts}/bench"),
        StrictOptions::default()
            .with_op_timeout(Duration::from_secs(30))
            .with_receipt_flush_interval(Duration::from_secs(3600)),
    )
    .await?;
    measure_sequential(&client, &deferred, &raw, sizes, &mut figures).await?;
    measure_combined(&client, sizes, &mut figures).await?;
    measure_reads(&client, sizes, &mut figures).await?;
    if kazoo {
        let path_single = "/bench/kazoo_single";
        figures.kazoo = Some(run_kazoo(&hosts, path_single, 1, sizes.kazoo_sequential)?);
        figures.kazoo64 = Some(run_kazoo(
            &hosts,
            "/bench/kazoo_shared",
            sizes.callers,
            sizes.kazoo_per_thread,
        )?);
    }
    Ok(figures)
}

/// One caller: raw `set_data`, raw `multi(create receipt, set_data)` and strict `add`,
/// alternating in rounds so that load from elsewhere on the machine falls on all alike.
/// Each strict round ends by deleting its remaining receipts, so that their cleanup is
/// charged to strict mode and not to the next raw round.
async fn measure_sequential(
    client: &StrictClient,
    deferred: &StrictClient,
    raw: &zk::Client,
    sizes: Sizes,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let mode = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    raw.mkdir("/bench/raw", &mode).await?;
    raw.mkdir("/bench/raw_receipts", &mode).await?;
    let single = client.counter("single").await?;
    let lazy = deferred.counter("lazy").await?;
    let mut receipt = 0u64;
    let mut raw_multi = async |value: i64| -> anyhow::Result<()> {
        receipt += 1;
        let mut writer = raw.new_multi_writer();
        writer.add_create(
            &format!("/bench/raw_receipts/{receipt:016x}"),
            &value.to_be_bytes(),
            &mode,
        )?;
        writer.add_set_data("/bench/raw", &value.to_be_bytes(), None)?;
        writer.commit().await?;
        Ok(())
    };
    // Warm up the JVMs' JIT on every path before any clock starts.
    for i in 0..sizes.warmup as i64 {
        raw.set_data("/bench/raw", &i.to_be_bytes(), None).await?;
        raw_multi(i).await?;
        single.add(1).await?;
        lazy.add(1).await?;
    }
    client.flush_receipts().await?;
    deferred.flush_receipts().await?;
    let rounds = 10;
    let per_round = sizes.sequential / rounds;
    let mut took = [Duration::ZERO; 4];
    let mut waited = Duration::ZERO;
    for _ in 0..rounds {
        let started = Instant::now();
        for i in 0..per_round as i64 {
            raw.set_data("/bench/raw", &i.to_be_bytes(), None).await?;
        }
        took[0] += started.elapsed();
        let started = Instant::now();
        for i in 0..per_round as i64 {
            raw_multi(i).await?;
        }
        took[1] += started.elapsed();
        let started = Instant::now();
        for _ in 0..per_round {
            single.add(1).await?;
        }
        client.flush_receipts().await?;
        took[2] += started.elapsed();
        let started = Instant::now();
        let waited_before = deferred.stats().commit_wait;
        for _ in 0..per_round {
            lazy.add(1).await?;
        }
        took[3] += started.elapsed();
        waited += deferred.stats().commit_wait - waited_before;
        deferred.flush_receipts().await?;
    }
    let ops = rounds * per_round;
    figures.setdata = per_sec(ops, took[0]);
    figures.raw_multi = per_sec(ops, took[1]);
    figures.add = per_sec(ops, took[2]);
    figures.add_deferred_cleanup = per_sec(ops, took[3]);
    figures.client_overhead = 1.0 - waited.as_secs_f64() / took[3].as_secs_f64();
    // The raw receipts are removed outside any measurement.
    let leftovers = raw.list_children("/bench/raw_receipts").await?;
    for chunk in leftovers.chunks(256) {
        let mut writer = raw.new_multi_writer();
        for name in chunk {
            writer.add_delete(&format!("/bench/raw_receipts/{name}"), None)?;
        }
        writer.commit().await?;
    }
    Ok(())
}

/// 64 concurrent callers on one counter in this process: combining.
async fn measure_combined(
    client: &StrictClient,
    sizes: Sizes,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let shared = client.counter("shared").await?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..sizes.callers {
        let counter = shared.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..sizes.per_caller {
                counter.add(1).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    figures.add64 = per_sec(sizes.callers * sizes.per_caller, started.elapsed());
    let total = shared.get().await?;
    if total != (sizes.callers * sizes.per_caller) as i64 {
        bail!(
            "combined adds counted {total}, expected {}",
            sizes.callers * sizes.per_caller
        );
    }
    Ok(())
}

/// Read latency: linearizable get vs ZooKeeper's ordinary read.
async fn measure_reads(
    client: &StrictClient,
    sizes: Sizes,
    figures: &mut Figures,
) -> anyhow::Result<()> {
    let single = client.counter("single").await?;
    let mut lin = Vec::with_capacity(sizes.reads);
    let mut seq = Vec::with_capacity(sizes.reads);
    for _ in 0..sizes.reads {
        let t = Instant::now();
        single.get().await?;
        lin.push(t.elapsed());
        let t = Instant::now();
        single.get_sequential().await?;
        seq.push(t.elapsed());
    }
    (figures.get_p50_ms, figures.get_p99_ms) =
        (percentile_ms(&mut lin, 50.0), percentile_ms(&mut lin, 99.0));
    (figures.seq_p50_ms, figures.seq_p99_ms) =
        (percentile_ms(&mut seq, 50.0), percentile_ms(&mut seq, 99.0));
    Ok(())
}

fn per_sec(ops: usize, took: Duration) -> f64 {
    ops as f64 / took.as_secs_f64()
}

fn percentile_ms(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1].as_secs_f64() * 1e3
}

fn kazoo_available() -> bool {
    Command::new("python3")
        .args(["-c", "import kazoo"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs the kazoo script and returns its throughput in increments per second.
fn run_kazoo(hosts: &str, path: &str, threads: usize, per_thread: usize) -> anyhow::Result<f64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/kazoo_counter.py");
    let output = Command::new("python3")
        .arg(&script)
        .args([hosts, path, &threads.to_string(), &per_thread.to_string()])
        .output()
        .context("running kazoo_counter.py")?;
    if !output.status.success() {
        bail!(
            "kazoo_counter.py failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let json: serde_json::Value =
        serde_json::from_str(line).with_context(|| format!("parsing {line:?}"))?;
    let ops = json["ops"].as_f64().context("ops missing")?;
    let secs = json["secs"].as_f64().context("secs missing")?;
    Ok(ops / secs)
}

fn print_details(prefix: &str, f: &Figures) {
    let topology = if prefix.is_empty() {
        "standalone"
    } else {
        "3-node ensemble"
    };
    println!("== {topology}");
    println!("  raw sequential set_data      {:>9.0} ops/s", f.setdata);
    println!(
        "  raw multi(create, set_data)  {:>9.0} ops/s (receipts not deleted)",
        f.raw_multi
    );
    println!("  strict add, 1 caller         {:>9.0} ops/s", f.add);
    println!(
        "  strict add, cleanup deferred {:>9.0} ops/s ({:.1}% of its latency outside ZooKeeper's answer)",
        f.add_deferred_cleanup,
        f.client_overhead * 100.0
    );
    println!(
        "  strict add, 64 callers       {:>9.0} ops/s (combining)",
        f.add64
    );
    if let (Some(k), Some(k64)) = (f.kazoo, f.kazoo64) {
        println!("  kazoo Counter, 1 thread      {k:>9.0} ops/s");
        println!("  kazoo Counter, 64 threads    {k64:>9.0} ops/s");
    }
    println!(
        "  linearizable get             p50 {:.2} ms, p99 {:.2} ms",
        f.get_p50_ms, f.get_p99_ms
    );
    println!(
        "  get_sequential               p50 {:.2} ms, p99 {:.2} ms",
        f.seq_p50_ms, f.seq_p99_ms
    );
}
