//! `countermesh demo`: a local mesh on loopback in one process (real QUIC, mutual TLS
//! with generated certificates, a data directory per node), adds at every node, a live
//! view of each node's total converging, a crash and restart, and, when ZooKeeper is
//! available, strict adds beside eventual ones with their measured costs.

mod load;
mod strict;
mod table;
mod zookeeper;

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use countermesh::{CertificateAuthority, MemberState, Mesh, TlsConfig};
use tokio::sync::Mutex;

use self::load::{Convergence, drive, probe};
use self::strict::{StrictReport, StrictSide};
use self::table::{group, group_i, row, views};

/// Options of `countermesh demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// How many nodes to start.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(2..=32))]
    nodes: u16,
    /// How long to drive adds before the summary.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Run until Ctrl-C instead of for `--duration`.
    #[arg(long)]
    forever: bool,
    /// Gossip interval of every node.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    gossip_interval: Duration,
    /// Eventual adds per node per second.
    #[arg(long, default_value_t = 200_000)]
    rate: u64,
    /// Use this ZooKeeper for the strict side instead of starting one.
    #[arg(long)]
    zookeeper: Option<String>,
    /// Skip the strict (ZooKeeper) side.
    #[arg(long)]
    no_strict: bool,
}

/// The counter whose per-node view the live table shows.
const SHOWN: &str = "page_views";

struct Node {
    mesh: Option<Mesh>,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    tls: TlsConfig,
}

/// The demo's shared state: its nodes and what the drivers have added.
struct Demo {
    nodes: Vec<Mutex<Node>>,
    /// Sum of every eventual add made to `SHOWN`, anywhere.
    total: AtomicI64,
    adds: AtomicU64,
    /// Per node, whether the driver should add there (false while it is down).
    up: Vec<AtomicBool>,
    stop: AtomicBool,
    gossip: Duration,
    /// Wire bytes of node incarnations that have been killed.
    bytes_of_dead: AtomicU64,
}

impl Demo {
    /// `n` nodes with certificates from a fresh CA, a reserved loopback port and a data
    /// directory each; none started yet.
    fn create(n: usize, gossip: Duration) -> Result<Self> {
        let ca = CertificateAuthority::generate("countermesh demo CA")?;
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let cert = ca.issue(&format!("demo-node-{i}"))?;
            let tls = TlsConfig::from_node_certificate(&ca.cert_pem, &cert)?;
            // Reserve a port per node so a restarted node comes back at its address.
            let probe = std::net::UdpSocket::bind("127.0.0.1:0")?;
            let addr = probe.local_addr()?;
            drop(probe);
            nodes.push(Mutex::new(Node {
                mesh: None,
                dir: tempfile::tempdir()?,
                addr,
                tls,
            }));
        }
        Ok(Self {
            nodes,
            total: AtomicI64::new(0),
            adds: AtomicU64::new(0),
            up: (0..n).map(|_| AtomicBool::new(false)).collect(),
            stop: AtomicBool::new(false),
            gossip,
            bytes_of_dead: AtomicU64::new(0),
        })
    }

    async fn addrs(&self) -> Vec<SocketAddr> {
        let mut addrs = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            addrs.push(node.lock().await.addr);
        }
        addrs
    }

    async fn start_node(&self, i: usize, seeds: Vec<SocketAddr>) -> Result<Mesh> {
        let node = self.nodes[i].lock().await;
        let started = Instant::now();
        loop {
            let result = Mesh::builder()
                .bind(node.addr)
                .seeds(seeds.clone())
                .tls(node.tls.clone())
                .data_dir(node.dir.path())
                .gossip_interval(self.gossip)
                .start()
                .await;
            match result {
                Ok(mesh) => return Ok(mesh),
                // A restarted node's previous socket may take a moment to be released.
                Err(countermesh::MeshError::Bind { .. })
                    if started.elapsed() < Duration::from_secs(5) =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e).context("starting a demo node"),
            }
        }
    }
}

#[allow(clippy::print_stdout)]
fn say(line: &str) {
    println!("{line}");
}

/// What [`run_schedule`] did.
struct Schedule {
    killed: bool,
    victim: usize,
}

/// Everything the summary reports.
struct Outcome {
    elapsed: Duration,
    add_ns: f64,
    exact: bool,
    expected: i128,
    settled_in: Duration,
    convergence: Convergence,
    strict: Option<StrictReport>,
    schedule: Schedule,
}

pub(crate) async fn run(args: DemoArgs) -> Result<()> {
    let n = usize::from(args.nodes);
    let demo = Arc::new(Demo::create(n, args.gossip_interval)?);
    let addrs = demo.addrs().await;
    for i in 0..n {
        let mesh = demo.start_node(i, addrs[..i].to_vec()).await?;
        demo.nodes[i].lock().await.mesh = Some(mesh);
    }
    say(&format!(
        "countermesh demo: {n} nodes on 127.0.0.1, QUIC with mutual TLS (generated cluster CA), \
         gossip every {:?}, a data directory per node",
        args.gossip_interval
    ));
    let strict = start_strict(&args).await;
    let add_ns = wait_and_measure(&demo).await?;

    let started = Instant::now();
    let drivers: Vec<_> = (0..n)
        .map(|i| tokio::spawn(drive(demo.clone(), i, args.rate)))
        .collect();
    let probe = tokio::spawn(probe(demo.clone()));
    let strict_task = strict.as_ref().map(StrictSide::drive);
    let schedule = run_schedule(&demo, &args, &addrs, started).await?;

    // Stop adding, then wait for the mesh to settle on the exact total.
    demo.stop.store(true, Ordering::SeqCst);
    if let Some(side) = &strict {
        side.stop();
    }
    for driver in drivers {
        driver.await??;
    }
    let (exact, expected, settled_in) = settle(&demo).await;
    let convergence = probe.await??;
    let strict_report = match strict_task {
        Some(task) => Some(task.await??),
        None => None,
    };
    say(&row(&demo, started.elapsed(), "final").await);

    let outcome = Outcome {
        elapsed: started.elapsed(),
        add_ns,
        exact,
        expected,
        settled_in,
        convergence,
        strict: strict_report,
        schedule,
    };
    say(&summary(&demo, &args, outcome).await.join("\n"));

    for node in &demo.nodes {
        if let Some(mesh) = node.lock().await.mesh.take() {
            mesh.shutdown().await?;
        }
    }
    drop(strict);
    anyhow::ensure!(exact, "the mesh did not settle on the exact total");
    Ok(())
}

/// Starts (or connects to) the strict side unless `--no-strict`, and says which.
async fn start_strict(args: &DemoArgs) -> Option<StrictSide> {
    let strict = if args.no_strict {
        None
    } else {
        StrictSide::start(args.zookeeper.clone()).await
    };
    match &strict {
        Some(side) => say(&format!("strict side: ZooKeeper at {}", side.location)),
        None if args.no_strict => {}
        None => say("strict side: no ZooKeeper reachable or installed; showing eventual mode only"),
    }
    strict
}

/// Waits for full membership (so the first lines are meaningful), measures the cost of
/// one add, and prints the table's header.
async fn wait_and_measure(demo: &Demo) -> Result<f64> {
    let joined = Instant::now();
    while joined.elapsed() < Duration::from_secs(10) {
        if full_membership(demo).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let add_ns = measure_add_ns(demo).await?;
    say(&format!(
        "membership complete after {:.0?}; one eventual add costs {add_ns:.1} ns here (a local atomic add)",
        joined.elapsed()
    ));
    say(&format!(
        "columns: each node's view of {SHOWN:?}; * = the exact total of every add made so far\n"
    ));
    Ok(add_ns)
}

/// Prints a row a second until `--duration` (or Ctrl-C), crashing the last node at 35%
/// of the run and restarting it from its data directory at 60%.
async fn run_schedule(
    demo: &Demo,
    args: &DemoArgs,
    addrs: &[SocketAddr],
    started: Instant,
) -> Result<Schedule> {
    let victim = demo.nodes.len() - 1;
    let (kill_at, restart_at) = (args.duration.mul_f64(0.35), args.duration.mul_f64(0.6));
    let (mut killed, mut restarted) = (false, false);
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut ctrl_c => break,
        }
        let elapsed = started.elapsed();
        let mut event = "adds";
        if !args.forever && !killed && elapsed >= kill_at {
            crash(demo, victim).await?;
            killed = true;
            event = "node crashed";
        } else if !args.forever && killed && !restarted && elapsed >= restart_at {
            let seeds: Vec<_> = addrs
                .iter()
                .copied()
                .filter(|a| *a != addrs[victim])
                .collect();
            let mesh = demo.start_node(victim, seeds).await?;
            demo.nodes[victim].lock().await.mesh = Some(mesh);
            demo.up[victim].store(true, Ordering::SeqCst);
            restarted = true;
            event = "restarted";
        }
        say(&row(demo, elapsed, event).await);
        if !args.forever && elapsed >= args.duration {
            break;
        }
    }
    Ok(Schedule { killed, victim })
}

/// Stops adding at node `victim`, flushes it (a flushed add survives a crash) and kills
/// it without a graceful leave.
async fn crash(demo: &Demo, victim: usize) -> Result<()> {
    demo.up[victim].store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut node = demo.nodes[victim].lock().await;
    if let Some(mesh) = node.mesh.take() {
        mesh.flush().await?;
        let bytes: u64 = mesh.metrics().sent.iter().map(|s| s.2).sum();
        demo.bytes_of_dead.fetch_add(bytes, Ordering::Relaxed);
        mesh.kill().await;
    }
    Ok(())
}

/// Adds have stopped: waits (at most 15 s) until every node reads the exact total.
/// Returns whether they did, the total, and how long it took.
async fn settle(demo: &Demo) -> (bool, i128, Duration) {
    let settle = Instant::now();
    let expected = i128::from(demo.total.load(Ordering::SeqCst));
    let mut exact = false;
    while settle.elapsed() < Duration::from_secs(15) {
        if views(demo).await.iter().flatten().all(|v| *v == expected) {
            exact = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    (exact, expected, settle.elapsed())
}

/// The summary lines printed at the end.
async fn summary(demo: &Demo, args: &DemoArgs, outcome: Outcome) -> Vec<String> {
    let n = demo.nodes.len();
    let elapsed = outcome.elapsed.as_secs_f64();
    let add_ns = outcome.add_ns;
    let adds = demo.adds.load(Ordering::Relaxed);
    let mut bytes = demo.bytes_of_dead.load(Ordering::Relaxed);
    let mut alive = 0;
    for node in &demo.nodes {
        if let Some(mesh) = &node.lock().await.mesh {
            bytes += mesh.metrics().sent.iter().map(|s| s.2).sum::<u64>();
            alive += 1;
        }
    }
    let convergence = &outcome.convergence;
    let mut summary = vec![
        String::new(),
        format!("summary ({elapsed:.1} s, {alive} nodes running)"),
        format!(
            "  eventual adds:   {} ({:.2} M adds/s over {n} nodes, each a local atomic add of ~{add_ns:.1} ns)",
            group(adds),
            adds as f64 / elapsed / 1e6
        ),
        format!(
            "  {SHOWN}:      every node reads {} = the exact total: {}{}",
            group_i(outcome.expected),
            if outcome.exact { "yes" } else { "NO" },
            if outcome.exact {
                format!(" (settled {:.0?} after the last add)", outcome.settled_in)
            } else {
                String::new()
            }
        ),
        format!(
            "  convergence:     after an add at one node, all nodes read it in p50 {:.0} ms, p99 {:.0} ms ({} probes, gossip every {:?})",
            convergence.p50_ms, convergence.p99_ms, convergence.samples, args.gossip_interval
        ),
        format!(
            "  wire:            {} bytes sent in all ({:.1} KB/s per node)",
            group(bytes),
            bytes as f64 / elapsed / n as f64 / 1e3
        ),
    ];
    if outcome.schedule.killed {
        summary.push(format!(
            "  crash/restart:   node {} was killed after a flush and restarted from its data directory; nothing lost, nothing double-counted",
            outcome.schedule.victim + 1
        ));
    }
    if let Some(report) = outcome.strict {
        summary.push(format!(
            "  strict adds:     {} on ZooKeeper, linearizable, p50 {:.2} ms, p99 {:.2} ms each; tickets = {} (exact: {})",
            group(report.adds),
            report.p50_ms,
            report.p99_ms,
            report.final_value,
            report.final_value == report.adds as i64
        ));
        summary.push(format!(
            "  trade-off:       a strict add costs ~{:.0}x an eventual add ({:.2} ms vs {add_ns:.1} ns), and buys a linearizable answer",
            report.p50_ms * 1e6 / add_ns,
            report.p50_ms
        ));
    }
    summary
}

async fn full_membership(demo: &Demo) -> bool {
    let n = demo.nodes.len();
    for node in &demo.nodes {
        let node = node.lock().await;
        let Some(mesh) = &node.mesh else { continue };
        let alive = mesh
            .members()
            .iter()
            .filter(|m| m.state == MemberState::Alive)
            .count();
        if alive < n - 1 {
            return false;
        }
    }
    true
}

/// Nanoseconds per `Counter::add`, measured on a scratch counter.
async fn measure_add_ns(demo: &Demo) -> Result<f64> {
    let counter = {
        let node = demo.nodes[0].lock().await;
        node.mesh
            .as_ref()
            .context("node 1 runs")?
            .counter("demo.cost")?
    };
    let ops = 5_000_000u64;
    let start = Instant::now();
    for _ in 0..ops {
        counter.add(black_box(1));
    }
    Ok(start.elapsed().as_nanos() as f64 / ops as f64)
}

/// The `p` quantile (0 to 1) of `sorted`, NaN when it is empty.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        f64::NAN
    } else {
        sorted[((sorted.len() - 1) as f64 * p).round() as usize]
    }
}
