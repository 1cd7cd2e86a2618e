//! The demo's strict side: sequential strict adds on ZooKeeper (one the user named, or
//! one started for the demo), timed so their cost can be printed beside an eventual add.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use countermesh_strict::{StrictClient, StrictOptions};

use crate::demo::percentile;
use crate::demo::zookeeper::LocalZooKeeper;

/// ZooKeeper for the strict side: one the user named, or one started in a temp dir
/// from Debian's package when it is installed.
pub(crate) struct StrictSide {
    client: StrictClient,
    /// Where ZooKeeper is, for the banner.
    pub(crate) location: String,
    stop: Arc<AtomicBool>,
    _server: Option<LocalZooKeeper>,
}

/// What the strict driver measured.
pub(crate) struct StrictReport {
    pub(crate) adds: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) final_value: i64,
}

impl StrictSide {
    /// Connects to `connect`, or starts a local server; `None` when neither works (the
    /// demo then shows eventual mode only).
    pub(crate) async fn start(connect: Option<String>) -> Option<Self> {
        let (connect, server) = match connect {
            Some(connect) => (connect, None),
            None => {
                if !LocalZooKeeper::installed() {
                    return None;
                }
                let server = tokio::task::spawn_blocking(LocalZooKeeper::start)
                    .await
                    .ok()?
                    .ok()?;
                (
                    format!("{}/countermesh-demo", server.connect_string()),
                    Some(server),
                )
            }
        };
        let client = tokio::time::timeout(
            Duration::from_secs(10),
            StrictClient::connect(&connect, StrictOptions::default()),
        )
        .await
        .ok()?
        .ok()?;
        let location = if server.is_some() {
            format!("{connect} (started for this demo in a temp dir)")
        } else {
            connect
        };
        Some(Self {
            client,
            location,
            stop: Arc::new(AtomicBool::new(false)),
            _server: server,
        })
    }

    /// Asks the driver to stop after its current add.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Sequential strict adds to `tickets` until the demo stops.
    pub(crate) fn drive(&self) -> tokio::task::JoinHandle<Result<StrictReport>> {
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
            Ok(StrictReport {
                adds: latencies.len() as u64,
                p50_ms: percentile(&latencies, 0.5),
                p99_ms: percentile(&latencies, 0.99),
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
