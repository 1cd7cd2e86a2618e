//! Mesh benchmarks over real QUIC on loopback (mutual TLS, five nodes, 100 ms gossip):
//! convergence time after a burst, wire bytes against add rate, and the local add while
//! gossip runs. Every ratio compares figures measured in this same run.
//!
//! Run with `cargo bench -p countermesh`. The run ends with one `name: value` line per
//! target (see BENCHMARKS.md). `cargo test --benches` runs a tiny version of each part
//! (without `--bench`) so the code cannot rot; it prints no figures then.
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use countermesh::{CertificateAuthority, MemberState, Mesh, MessageKind, TlsConfig};

const NODES: usize = 5;
const GOSSIP: Duration = Duration::from_millis(100);

struct Plan {
    bursts: usize,
    window: Duration,
    add_trials: usize,
    add_ops: u64,
}

const FULL: Plan = Plan {
    bursts: 120,
    window: Duration::from_secs(5),
    add_trials: 15,
    add_ops: 20_000_000,
};

const QUICK: Plan = Plan {
    bursts: 3,
    window: Duration::from_millis(300),
    add_trials: 1,
    add_ops: 10_000,
};

fn main() -> Result<()> {
    let full = std::env::args().any(|a| a == "--bench");
    let plan = if full { FULL } else { QUICK };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(&plan, full))
}

async fn start_cluster() -> Result<Vec<Mesh>> {
    let ca = CertificateAuthority::generate("bench CA")?;
    let mut nodes: Vec<Mesh> = Vec::new();
    for _ in 0..NODES {
        let cert = ca.issue("bench node")?;
        let seeds: Vec<_> = nodes.iter().map(Mesh::local_addr).collect();
        let mesh = Mesh::builder()
            .bind("127.0.0.1:0".parse()?)
            .seeds(seeds)
            .tls(TlsConfig::from_node_certificate(&ca.cert_pem, &cert)?)
            .gossip_interval(GOSSIP)
            .start()
            .await?;
        nodes.push(mesh);
    }
    let started = Instant::now();
    loop {
        let complete = nodes.iter().all(|n| {
            n.members()
                .iter()
                .filter(|m| m.state == MemberState::Alive)
                .count()
                == NODES - 1
        });
        if complete {
            return Ok(nodes);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "no full membership"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// After a burst of adds at one node, how long until all nodes read the new total.
async fn convergence(nodes: &[Mesh], plan: &Plan) -> Result<Vec<f64>> {
    let handles: Vec<_> = nodes
        .iter()
        .map(|n| n.counter("bench.burst"))
        .collect::<Result<_, _>>()?;
    let mut expected: i128 = 0;
    let mut intervals = Vec::with_capacity(plan.bursts);
    for burst in 0..plan.bursts {
        // Start bursts at varying phases of the gossip cycle.
        tokio::time::sleep(Duration::from_millis(37 + (burst as u64 * 53) % 100)).await;
        let at = burst % NODES;
        for _ in 0..1_000 {
            handles[at].add(1);
        }
        expected += 1_000;
        let start = Instant::now();
        loop {
            if handles.iter().all(|h| h.value_i128() == expected) {
                break;
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(30),
                "burst {burst} did not converge"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        intervals.push(start.elapsed().as_secs_f64() / GOSSIP.as_secs_f64());
    }
    intervals.sort_by(f64::total_cmp);
    Ok(intervals)
}

fn bytes_sent(nodes: &[Mesh]) -> u64 {
    nodes
        .iter()
        .flat_map(|n| n.metrics().sent)
        .map(|(_, _, bytes)| bytes)
        .sum()
}

fn bytes_sent_of(nodes: &[Mesh], kind: MessageKind) -> u64 {
    nodes
        .iter()
        .flat_map(|n| n.metrics().sent)
        .filter(|(k, _, _)| *k == kind)
        .map(|(_, _, bytes)| bytes)
        .sum()
}

/// Wire bytes per node per second while the same 100 counters (at every node) get
/// `adds_per_round` adds each per gossip round.
async fn wire_bytes(
    nodes: &[Mesh],
    prefix: &str,
    adds_per_round: u64,
    window: Duration,
) -> Result<f64> {
    let mut handles = Vec::new();
    for node in nodes {
        for c in 0..100 {
            handles.push(node.counter(&format!("{prefix}.{c:03}"))?);
        }
    }
    let before = bytes_sent(nodes);
    let start = Instant::now();
    let mut next = start;
    while start.elapsed() < window {
        for handle in &handles {
            for _ in 0..adds_per_round {
                handle.add(1);
            }
        }
        next += GOSSIP;
        tokio::time::sleep_until(next.into()).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok((bytes_sent(nodes) - before) as f64 / NODES as f64 / elapsed)
}

/// Nanoseconds per op for `Counter::add` and for a bare atomic, interleaved trials on a
/// blocking thread while the mesh keeps gossiping on the runtime.
fn add_vs_atomic(nodes: &[Mesh], plan: &Plan) -> Result<(f64, f64)> {
    let counter = nodes[0].counter("bench.hot")?;
    let atomic = AtomicI64::new(0);
    let mut add_ns = Vec::new();
    let mut atomic_ns = Vec::new();
    for _ in 0..plan.add_trials {
        let start = Instant::now();
        for _ in 0..plan.add_ops {
            counter.add(black_box(1));
        }
        add_ns.push(start.elapsed().as_nanos() as f64 / plan.add_ops as f64);
        let start = Instant::now();
        for _ in 0..plan.add_ops {
            atomic.fetch_add(black_box(1), Ordering::Relaxed);
        }
        atomic_ns.push(start.elapsed().as_nanos() as f64 / plan.add_ops as f64);
    }
    black_box(atomic.load(Ordering::Relaxed));
    add_ns.sort_by(f64::total_cmp);
    atomic_ns.sort_by(f64::total_cmp);
    Ok((percentile(&add_ns, 50.0), percentile(&atomic_ns, 50.0)))
}

async fn run(plan: &Plan, full: bool) -> Result<()> {
    let nodes = start_cluster()
        .await
        .context("starting the bench cluster")?;
    if full {
        println!("{NODES} nodes on loopback, mutual TLS, gossip interval {GOSSIP:?}");
    }

    let intervals = convergence(&nodes, plan).await?;
    let (p50, p99) = (percentile(&intervals, 50.0), percentile(&intervals, 99.0));
    if full {
        println!(
            "convergence after a burst of 1000 adds at one node, {} bursts: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            intervals.len(),
            p50 * GOSSIP.as_secs_f64() * 1e3,
            p99 * GOSSIP.as_secs_f64() * 1e3,
            intervals.last().copied().unwrap_or(f64::NAN) * GOSSIP.as_secs_f64() * 1e3,
        );
    }

    // Counters starting from zero: the 1000-adds run ends with totals ~1000x larger,
    // whose varints are 2 bytes longer per entry.
    let swim_before = bytes_sent_of(&nodes, MessageKind::Swim);
    let low_zero = wire_bytes(&nodes, "bench.zero.low", 1, plan.window).await?;
    let high_zero = wire_bytes(&nodes, "bench.zero.high", 1_000, plan.window).await?;
    let swim = (bytes_sent_of(&nodes, MessageKind::Swim) - swim_before) as f64
        / NODES as f64
        / (2.0 * plan.window.as_secs_f64());
    // The target's experiment: only the add rate differs. Both counter sets start at
    // the same total (10^9), so their varints have the same width in both runs.
    for prefix in ["bench.same.low", "bench.same.high"] {
        for node in &nodes {
            for c in 0..100 {
                node.counter(&format!("{prefix}.{c:03}"))?
                    .add(1_000_000_000);
            }
        }
    }
    tokio::time::sleep(GOSSIP * 10).await;
    let low = wire_bytes(&nodes, "bench.same.low", 1, plan.window).await?;
    let high = wire_bytes(&nodes, "bench.same.high", 1_000, plan.window).await?;
    if full {
        println!(
            "wire bytes per node per second, 100 counters changed per round at every node:\n  \
             same starting totals: 1 add each {low:.0} B/s, 1000 adds each {high:.0} B/s\n  \
             starting from zero:   1 add each {low_zero:.0} B/s, 1000 adds each {high_zero:.0} B/s \
             (ratio {:.3})\n  SWIM share {swim:.0} B/s",
            high_zero / low_zero
        );
    }

    let (add_ns, atomic_ns) = tokio::task::block_in_place(|| add_vs_atomic(&nodes, plan))?;
    if full {
        println!(
            "local add while gossiping: Counter::add {add_ns:.2} ns/op, AtomicI64::fetch_add {atomic_ns:.2} ns/op"
        );
    }

    for node in nodes {
        node.shutdown().await?;
    }
    if full {
        println!();
        println!("convergence_p50_intervals: {p50:.2}");
        println!("convergence_p99_intervals: {p99:.2}");
        println!("wire_bytes_ratio_1m_vs_10_adds: {:.3}", high / low);
        println!(
            "add_under_gossip_vs_atomic_ratio: {:.3}",
            atomic_ns / add_ns
        );
    }
    Ok(())
}
