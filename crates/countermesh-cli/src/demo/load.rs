//! The demo's workload: eventual adds at every running node, and convergence probes
//! that time how long one add takes to reach every node.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Result;
use countermesh::Counter;

use crate::demo::{Demo, SHOWN, percentile};

/// Adds at node `i` at `rate` adds per second until the demo stops.
pub(crate) async fn drive(demo: Arc<Demo>, i: usize, rate: u64) -> Result<()> {
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

/// Convergence times measured by [`probe`].
pub(crate) struct Convergence {
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) samples: usize,
}

/// Every 700 ms adds 1 to a probe counter at one running node and times how long until
/// every running node reads the new probe total.
pub(crate) async fn probe(demo: Arc<Demo>) -> Result<Convergence> {
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
        if let Some(took) = time_until_everywhere(&demo, expected).await {
            samples.push(took.as_secs_f64() * 1e3);
        }
    }
    samples.sort_by(f64::total_cmp);
    Ok(Convergence {
        p50_ms: percentile(&samples, 0.5),
        p99_ms: percentile(&samples, 0.99),
        samples: samples.len(),
    })
}

/// How long until every running node reads `expected` on the probe counter; `None`
/// after 10 s or when the demo stops.
async fn time_until_everywhere(demo: &Demo, expected: i128) -> Option<Duration> {
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
            return Some(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(10) || demo.stop.load(Ordering::SeqCst) {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
