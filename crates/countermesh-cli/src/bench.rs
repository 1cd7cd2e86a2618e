//! `countermesh bench`: drive load and report throughput and convergence, either through
//! running agents' HTTP APIs (`--agent`, batch adds) or against an in-process mesh.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use countermesh::{CertificateAuthority, MemberState, Mesh, TlsConfig};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

/// Options of `countermesh bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Agents to load (HTTP base URLs, comma-separated). Adds go round-robin to all of
    /// them; convergence is checked on all of them. Without it, an in-process mesh is
    /// started instead.
    #[arg(long, value_delimiter = ',')]
    agent: Vec<String>,
    /// Bearer token for the agents.
    #[arg(long, env = "COUNTERMESH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How long to drive load.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Distinct counters the adds spread over.
    #[arg(long, default_value_t = 100)]
    counters: usize,
    /// In-process mode: how many nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Agent mode: adds per HTTP batch request.
    #[arg(long, default_value_t = 1_000)]
    batch: usize,
    /// Agent mode: concurrent requests.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

fn progress(duration: Duration) -> ProgressBar {
    let bar = ProgressBar::new(duration.as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Shows a progress bar with the add rate while the load runs for `duration`, then
/// tells the drivers to stop. Returns the seconds the load ran.
async fn drive_for(duration: Duration, adds: &AtomicU64, stop: &AtomicBool) -> f64 {
    let bar = progress(duration);
    let start = Instant::now();
    while start.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(100)).await;
        bar.set_position(start.elapsed().as_millis() as u64);
        bar.set_message(format!(
            "{:.0} adds/s",
            adds.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
        ));
    }
    stop.store(true, Ordering::Relaxed);
    bar.finish_and_clear();
    start.elapsed().as_secs_f64()
}

#[allow(clippy::print_stdout)]
fn say(line: &str) {
    println!("{line}");
}

pub(crate) async fn run(args: BenchArgs) -> Result<()> {
    anyhow::ensure!(args.counters > 0, "--counters must be at least 1");
    anyhow::ensure!(args.nodes >= 1, "--nodes must be at least 1");
    anyhow::ensure!(
        args.batch > 0 && args.concurrency > 0,
        "--batch and --concurrency must be at least 1"
    );
    if args.agent.is_empty() {
        in_process(&args).await
    } else {
        against_agents(&args).await
    }
}

fn name(i: usize) -> String {
    format!("bench.{i:05}")
}

async fn in_process(args: &BenchArgs) -> Result<()> {
    let nodes = start_mesh(args.nodes).await?;
    let started = Instant::now();
    say(&format!(
        "in-process mesh: {} nodes on loopback (QUIC, mutual TLS), {} counters, {:?}",
        args.nodes, args.counters, args.duration
    ));

    let adds = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut drivers = Vec::new();
    for node in &nodes {
        let handles: Vec<_> = (0..args.counters)
            .map(|i| node.counter(&name(i)))
            .collect::<Result<_, _>>()?;
        drivers.push(tokio::spawn(add_locally(
            handles,
            adds.clone(),
            stop.clone(),
        )));
    }
    let load_secs = drive_for(args.duration, &adds, &stop).await;
    let mut expected = vec![0i128; args.counters];
    for driver in drivers {
        for (sum, add) in expected.iter_mut().zip(driver.await?) {
            *sum += add;
        }
    }
    let settled = wait_exact(&nodes, &expected).await?;
    let total = adds.load(Ordering::Relaxed);
    let bytes: u64 = nodes
        .iter()
        .flat_map(|n| n.metrics().sent)
        .map(|s| s.2)
        .sum();
    say(&format!(
        "adds:         {total} in {load_secs:.1} s = {:.2} M adds/s (all nodes)",
        total as f64 / load_secs / 1e6
    ));
    say(&format!(
        "convergence:  every node exact on all {} counters {settled:.1?} after the last add",
        args.counters
    ));
    say(&format!(
        "wire:         {bytes} bytes sent, {:.1} KB/s per node",
        bytes as f64 / started.elapsed().as_secs_f64() / args.nodes as f64 / 1e3
    ));
    for node in nodes {
        node.shutdown().await?;
    }
    Ok(())
}

/// `n` nodes on loopback with certificates from a fresh CA, each seeded with the ones
/// before it; waits (at most 10 s) for full membership.
async fn start_mesh(n: usize) -> Result<Vec<Mesh>> {
    let ca = CertificateAuthority::generate("bench CA")?;
    let mut nodes: Vec<Mesh> = Vec::new();
    for i in 0..n {
        let cert = ca.issue(&format!("bench-{i}"))?;
        let seeds: Vec<_> = nodes.iter().map(Mesh::local_addr).collect();
        nodes.push(
            Mesh::builder()
                .bind("127.0.0.1:0".parse()?)
                .seeds(seeds)
                .tls(TlsConfig::from_node_certificate(&ca.cert_pem, &cert)?)
                .start()
                .await?,
        );
    }
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let complete = nodes.iter().all(|node| {
            node.members()
                .iter()
                .filter(|m| m.state == MemberState::Alive)
                .count()
                + 1
                >= n
        });
        if complete {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(nodes)
}

/// Adds 1 round-robin over `handles` until `stop`; returns what it added to each.
async fn add_locally(
    handles: Vec<countermesh::Counter>,
    adds: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Vec<i128> {
    let mut sums = vec![0i128; handles.len()];
    let mut k = 0usize;
    while !stop.load(Ordering::Relaxed) {
        // Adds in slices, yielding so gossip keeps running on this runtime.
        for _ in 0..10_000 {
            let which = k % handles.len();
            handles[which].add(1);
            sums[which] += 1;
            k = k.wrapping_add(7);
        }
        adds.fetch_add(10_000, Ordering::Relaxed);
        tokio::task::yield_now().await;
    }
    sums
}

/// Waits until every node reads `expected` on every bench counter; fails after 30 s.
async fn wait_exact(nodes: &[Mesh], expected: &[i128]) -> Result<Duration> {
    let settle = Instant::now();
    loop {
        let exact = nodes.iter().all(|n| {
            (0..expected.len()).all(|i| n.value(&name(i)).map(|v| v.value) == Some(expected[i]))
        });
        if exact {
            return Ok(settle.elapsed());
        }
        anyhow::ensure!(
            settle.elapsed() < Duration::from_secs(30),
            "the mesh did not converge within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// What one batch worker sends: where, how much, and its share of the round-robin.
#[derive(Clone)]
struct Worker {
    client: reqwest::Client,
    agents: Vec<String>,
    token: Option<String>,
    batch: usize,
    counters: usize,
}

impl Worker {
    /// Sends batches until `stop`; returns what it added to each counter and every
    /// request's latency in milliseconds.
    async fn run(
        self,
        first: usize,
        adds: Arc<AtomicU64>,
        stop: Arc<AtomicBool>,
    ) -> Result<(Vec<i128>, Vec<f64>)> {
        let mut latencies = Vec::new();
        let mut sums = vec![0i128; self.counters];
        let mut k = first;
        while !stop.load(Ordering::Relaxed) {
            let agent = &self.agents[k % self.agents.len()];
            let mut entries = Vec::with_capacity(self.batch);
            for j in 0..self.batch {
                let which = (k + j) % self.counters;
                entries.push(json!({ "name": name(which), "delta": 1 }));
                sums[which] += 1;
            }
            k += 1;
            let mut request = self
                .client
                .post(format!("{agent}/v1/counters:batch"))
                .json(&json!({ "adds": entries }));
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let start = Instant::now();
            let response = request.send().await.context("batch request failed")?;
            anyhow::ensure!(
                response.status().is_success(),
                "batch request answered {}: {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
            latencies.push(start.elapsed().as_secs_f64() * 1e3);
            adds.fetch_add(self.batch as u64, Ordering::Relaxed);
        }
        Ok((sums, latencies))
    }
}

async fn against_agents(args: &BenchArgs) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let agents: Vec<String> = args
        .agent
        .iter()
        .map(|a| a.trim_end_matches('/').to_owned())
        .collect();
    // Baseline: what the counters hold before this run, on the first agent.
    let mut expected: BTreeMap<String, i128> = BTreeMap::new();
    for i in 0..args.counters {
        let value = read(&client, &agents[0], &name(i), args.token.as_deref()).await?;
        expected.insert(name(i), value.unwrap_or(0));
    }
    say(&format!(
        "load: {} agents, {} counters, batches of {}, {} concurrent requests, {:?}",
        agents.len(),
        args.counters,
        args.batch,
        args.concurrency,
        args.duration
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let adds = Arc::new(AtomicU64::new(0));
    let worker = Worker {
        client: client.clone(),
        agents: agents.clone(),
        token: args.token.clone(),
        batch: args.batch,
        counters: args.counters,
    };
    let workers: Vec<_> = (0..args.concurrency)
        .map(|w| tokio::spawn(worker.clone().run(w, adds.clone(), stop.clone())))
        .collect();
    let load_secs = drive_for(args.duration, &adds, &stop).await;
    let mut latencies = Vec::new();
    for worker in workers {
        let (sums, lat) = worker.await??;
        for (i, sum) in sums.into_iter().enumerate() {
            *expected.entry(name(i)).or_default() += sum;
        }
        latencies.extend(lat);
    }
    latencies.sort_by(f64::total_cmp);
    let pick = |p: f64| {
        latencies
            .get(((latencies.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let total = adds.load(Ordering::Relaxed);
    say(&format!(
        "adds:         {total} in {load_secs:.1} s = {:.0} adds/s; batch latency p50 {:.2} ms, p99 {:.2} ms",
        total as f64 / load_secs,
        pick(0.5),
        pick(0.99)
    ));
    let settled = wait_agents_exact(&client, &agents, &expected, args.token.as_deref()).await?;
    say(&format!(
        "convergence:  all {} agents exact on all {} counters {settled:.1?} after the last add",
        agents.len(),
        args.counters,
    ));
    Ok(())
}

/// Waits until every agent reads every counter's expected total (valid when no one
/// else adds to these counters meanwhile); fails after 60 s.
async fn wait_agents_exact(
    client: &reqwest::Client,
    agents: &[String],
    expected: &BTreeMap<String, i128>,
    token: Option<&str>,
) -> Result<Duration> {
    let settle = Instant::now();
    'outer: loop {
        for agent in agents {
            for (counter, want) in expected {
                let got = read(client, agent, counter, token).await?;
                if got != Some(*want) {
                    anyhow::ensure!(
                        settle.elapsed() < Duration::from_secs(60),
                        "{agent} reads {counter} = {got:?}, expected {want}, after 60 s"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue 'outer;
                }
            }
        }
        return Ok(settle.elapsed());
    }
}

async fn read(
    client: &reqwest::Client,
    agent: &str,
    counter: &str,
    token: Option<&str>,
) -> Result<Option<i128>> {
    let mut request = client.get(format!("{agent}/v1/counters/{counter}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach {agent}"))?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    anyhow::ensure!(
        response.status().is_success(),
        "{agent} answered {}",
        response.status()
    );
    let body: Value = response.json().await?;
    let value = body
        .get("value")
        .and_then(|v| v.as_i64().map(i128::from))
        .context("the agent's answer has no integer value")?;
    Ok(Some(value))
}
