//! `countermesh demo`: a local mesh on loopback in one process (real QUIC, mutual TLS
//! with generated certificates, a data directory per node), adds at every node, a live
//! view of each node's total converging, a crash and restart, and, when ZooKeeper is
//! available, strict adds beside eventual ones with their measured costs.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use countermesh::{CertificateAuthority, Counter, MemberState, Mesh, TlsConfig};
use tokio::sync::Mutex;

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
    addr: std::net::SocketAddr,
    tls: TlsConfig,
}

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
    async fn start_node(&self, i: usize, seeds: Vec<std::net::SocketAddr>) -> Result<Mesh> {
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

pub(crate) async fn run(args: DemoArgs) -> Result<()> {
    let n = usize::from(args.nodes);
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
    let demo = Arc::new(Demo {
        nodes,
        total: AtomicI64::new(0),
        adds: AtomicU64::new(0),
        up: (0..n).map(|_| AtomicBool::new(false)).collect(),
        stop: AtomicBool::new(false),
        gossip: args.gossip_interval,
        bytes_of_dead: AtomicU64::new(0),
    });
    let addrs: Vec<_> = {
        let mut v = Vec::new();
        for node in &demo.nodes {
            v.push(node.lock().await.addr);
        }
        v
    };
    for i in 0..n {
        let seeds = addrs[..i].to_vec();
        let mesh = demo.start_node(i, seeds).await?;
        demo.nodes[i].lock().await.mesh = Some(mesh);
    }
    say(&format!(
        "countermesh demo: {n} nodes on 127.0.0.1, QUIC with mutual TLS (generated cluster CA), \
         gossip every {:?}, a data directory per node",
        args.gossip_interval
    ));

    let strict = if args.no_strict {
        None
    } else {
        StrictSide::start(args.zookeeper.clone()).await
    };
    match &strict {
        Some(side) => say(&format!("strict side: ZooKeeper at {}", side.where_)),
        None if args.no_strict => {}
        None => say("strict side: no ZooKeeper reachable or installed; showing eventual mode only"),
    }

    // Wait for full membership so the first lines are meaningful.
    let joined = Instant::now();
    while joined.elapsed() < Duration::from_secs(10) {
        if full_membership(&demo).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let add_ns = measure_add_ns(&demo).await?;
    say(&format!(
        "membership complete after {:.0?}; one eventual add costs {add_ns:.1} ns here (a local atomic add)",
        joined.elapsed()
    ));
    say(&format!(
        "columns: each node's view of {SHOWN:?}; * = the exact total of every add made so far\n"
    ));

    let started = Instant::now();
    let drivers: Vec<_> = (0..n)
        .map(|i| tokio::spawn(drive(demo.clone(), i, args.rate)))
        .collect();
    let probe = tokio::spawn(probe(demo.clone()));
    let strict_task = strict.as_ref().map(|side| side.drive());

    let victim = n - 1;
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
            // Stop adding there and flush: a flushed add survives a crash.
            demo.up[victim].store(false, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            let mut node = demo.nodes[victim].lock().await;
            if let Some(mesh) = node.mesh.take() {
                mesh.flush().await?;
                let bytes: u64 = mesh.metrics().sent.iter().map(|s| s.2).sum();
                demo.bytes_of_dead.fetch_add(bytes, Ordering::Relaxed);
                mesh.kill().await;
            }
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
        say(&row(&demo, elapsed, event).await);
        if !args.forever && elapsed >= args.duration {
            break;
        }
    }

    // Stop adding, then wait for the mesh to settle on the exact total.
    demo.stop.store(true, Ordering::SeqCst);
    if let Some(side) = &strict {
        side.stop.store(true, Ordering::SeqCst);
    }
    for driver in drivers {
        driver.await??;
    }
    // Adds have stopped: time how long until every node reads the exact total.
    let settle = Instant::now();
    let expected = i128::from(demo.total.load(Ordering::SeqCst));
    let mut exact = false;
    while settle.elapsed() < Duration::from_secs(15) {
        if views(&demo).await.iter().flatten().all(|v| *v == expected) {
            exact = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let settled_in = settle.elapsed();
    let convergence = probe.await??;
    let strict_report = match (strict_task, &strict) {
        (Some(task), Some(_)) => Some(task.await??),
        _ => None,
    };
    say(&row(&demo, started.elapsed(), "final").await);

    let elapsed = started.elapsed().as_secs_f64();
    let adds = demo.adds.load(Ordering::Relaxed);
    let mut bytes = demo.bytes_of_dead.load(Ordering::Relaxed);
    let mut alive = 0;
    for node in &demo.nodes {
        if let Some(mesh) = &node.lock().await.mesh {
            bytes += mesh.metrics().sent.iter().map(|s| s.2).sum::<u64>();
            alive += 1;
        }
    }
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
            group_i(expected),
            if exact { "yes" } else { "NO" },
            if exact {
                format!(" (settled {settled_in:.0?} after the last add)")
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
    if killed {
        summary.push(format!(
            "  crash/restart:   node {} was killed after a flush and restarted from its data directory; nothing lost, nothing double-counted",
            victim + 1
        ));
    }
    if let Some(report) = strict_report {
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
    say(&summary.join("\n"));

    for node in &demo.nodes {
        if let Some(mesh) = node.lock().await.mesh.take() {
            mesh.shutdown().await?;
        }
    }
    drop(strict);
    anyhow::ensure!(exact, "the mesh did not settle on the exact total");
    Ok(())
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

/// Adds at node `i` at `rate` adds per second until the demo stops.
async fn drive(demo: Arc<Demo>, i: usize, rate: u64) -> Result<()> {
    demo.up[i].store(true, Ordering::SeqCst);
    let mut counter: Option<(Counter, Counter)> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let per_tick = (rate / 100).max(1);
    let mut round: u64 = 0;
    while !demo.stop.load(Ordering::SeqCst) {
        tick.tick().await;
        if !demo.up[i].load(Ordering::SeqCst) {
            counter = None;
            continue;
        }
        if counter.is_none() {
            let node = demo.nodes[i].lock().await;
            if let Some(mesh) = &node.mesh {
                counter = Some((mesh.counter(SHOWN)?, mesh.counter("api_calls")?));
            }
        }
        let Some((views, calls)) = &counter else {
            continue;
        };
        round += 1;
        // A little variety: some ticks add more, and api_calls also goes down sometimes.
        let n = per_tick + (round * 7 + i as u64 * 13) % (per_tick / 4 + 1);
        for _ in 0..n {
            views.add(1);
        }
        calls.add(if round.is_multiple_of(5) { -3 } else { 2 });
        demo.total.fetch_add(n as i64, Ordering::SeqCst);
        demo.adds.fetch_add(n + 1, Ordering::Relaxed);
    }
    Ok(())
}

struct Convergence {
    p50_ms: f64,
    p99_ms: f64,
    samples: usize,
}

/// Every 700 ms adds 1 to a probe counter at one running node and times how long until
/// every running node reads the new probe total.
async fn probe(demo: Arc<Demo>) -> Result<Convergence> {
    let mut expected: i128 = 0;
    let mut samples = Vec::new();
    let mut k = 0usize;
    while !demo.stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let n = demo.nodes.len();
        let i = k % n;
        k += 1;
        let counter = {
            let node = demo.nodes[i].lock().await;
            match &node.mesh {
                Some(mesh) if demo.up[i].load(Ordering::SeqCst) => mesh.counter("demo.probe")?,
                _ => continue,
            }
        };
        counter.add(1);
        expected += 1;
        let start = Instant::now();
        loop {
            let mut all = true;
            for node in &demo.nodes {
                let node = node.lock().await;
                if let Some(mesh) = &node.mesh
                    && mesh.value("demo.probe").map(|v| v.value) != Some(expected)
                {
                    all = false;
                    break;
                }
            }
            if all {
                samples.push(start.elapsed().as_secs_f64() * 1e3);
                break;
            }
            if start.elapsed() > Duration::from_secs(10) || demo.stop.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    samples.sort_by(f64::total_cmp);
    let pick = |p: f64| {
        if samples.is_empty() {
            f64::NAN
        } else {
            samples[((samples.len() - 1) as f64 * p).round() as usize]
        }
    };
    Ok(Convergence {
        p50_ms: pick(0.5),
        p99_ms: pick(0.99),
        samples: samples.len(),
    })
}

async fn views(demo: &Demo) -> Vec<Option<i128>> {
    let mut out = Vec::new();
    for node in &demo.nodes {
        let node = node.lock().await;
        out.push(
            node.mesh
                .as_ref()
                .map(|m| m.value(SHOWN).map_or(0, |v| v.value)),
        );
    }
    out
}

async fn row(demo: &Demo, elapsed: Duration, event: &str) -> String {
    let expected = i128::from(demo.total.load(Ordering::SeqCst));
    let views = views(demo).await;
    let mut line = format!("{:>6.1}s  {:<13}", elapsed.as_secs_f64(), event);
    let mut exact = 0;
    let mut running = 0;
    for view in &views {
        match view {
            Some(v) => {
                running += 1;
                let mark = if *v == expected {
                    exact += 1;
                    '*'
                } else {
                    ' '
                };
                line.push_str(&format!(" {:>12}{mark}", group_i(*v)));
            }
            None => line.push_str(&format!(" {:>12} ", "down")),
        }
    }
    line.push_str(&format!(
        "  | {exact}/{running} exact (total {})",
        group_i(expected)
    ));
    line
}

fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn group_i(n: i128) -> String {
    let body = group(u64::try_from(n.unsigned_abs()).unwrap_or(u64::MAX));
    if n < 0 { format!("-{body}") } else { body }
}

/// ZooKeeper for the strict side: one the user named, or one started in a temp dir
/// from Debian's package when it is installed.
struct StrictSide {
    client: countermesh_strict::StrictClient,
    where_: String,
    stop: Arc<AtomicBool>,
    _server: Option<countermesh_strict::harness::ZkCluster>,
}

struct StrictReport {
    adds: u64,
    p50_ms: f64,
    p99_ms: f64,
    final_value: i64,
}

impl StrictSide {
    async fn start(connect: Option<String>) -> Option<Self> {
        let (connect, server) = match connect {
            Some(connect) => (connect, None),
            None => {
                if !std::path::Path::new("/usr/share/java/zookeeper.jar").exists() {
                    return None;
                }
                let server =
                    tokio::task::spawn_blocking(countermesh_strict::harness::ZkCluster::standalone)
                        .await
                        .ok()?
                        .ok()?;
                (
                    format!("{}/countermesh-demo", server.connect_string()),
                    Some(server),
                )
            }
        };
        let options = countermesh_strict::StrictOptions::default();
        let client = tokio::time::timeout(
            Duration::from_secs(10),
            countermesh_strict::StrictClient::connect(&connect, options),
        )
        .await
        .ok()?
        .ok()?;
        let where_ = if server.is_some() {
            format!("{connect} (started for this demo in a temp dir)")
        } else {
            connect
        };
        Some(Self {
            client,
            where_,
            stop: Arc::new(AtomicBool::new(false)),
            _server: server,
        })
    }

    /// Sequential strict adds to `tickets` until the demo stops.
    fn drive(&self) -> tokio::task::JoinHandle<Result<StrictReport>> {
        let client = self.client.clone();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            let tickets = client.counter("tickets").await?;
            tickets.set(0).await?;
            let mut latencies = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(3600);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let start = Instant::now();
                tickets.add(1).await?;
                latencies.push(start.elapsed().as_secs_f64() * 1e3);
                if latencies.len() % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            let final_value = tickets.get().await?;
            latencies.sort_by(f64::total_cmp);
            let pick = |p: f64| {
                if latencies.is_empty() {
                    f64::NAN
                } else {
                    latencies[((latencies.len() - 1) as f64 * p).round() as usize]
                }
            };
            Ok(StrictReport {
                adds: latencies.len() as u64,
                p50_ms: pick(0.5),
                p99_ms: pick(0.99),
                final_value,
            })
        })
    }
}

impl Drop for StrictSide {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
