//! Shared helpers: seeds, ZooKeeper clusters, client options and history recording.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::Context;
use countermesh_strict::harness::{ClusterConfig, FaultProxy, ZkCluster};
use countermesh_strict::{Outcome, StrictError, StrictOptions};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::time::Instant;
use zookeeper_client as zk;

use crate::checker::{Call, Op, Ret};

/// An RNG from the seed of a randomized test (the workspace's one seed helper:
/// `COUNTERMESH_SEED` if set, else fresh, printed for replay).
pub(crate) fn seeded_rng(test: &str) -> SmallRng {
    let seed = countermesh_core::testkit::test_seed(test);
    SmallRng::seed_from_u64(seed)
}

/// Starts a cluster off the async runtime (starting JVMs blocks for seconds).
pub(crate) async fn start(config: ClusterConfig) -> anyhow::Result<ZkCluster> {
    tokio::task::spawn_blocking(move || ZkCluster::start(config))
        .await?
        .context("starting ZooKeeper")
}

/// A standalone server shared by the tests that neither stop nor pause it (each works
/// under its own root path). It is stopped when the last test holding it drops it, and
/// started again by the next one that needs it.
pub(crate) async fn shared_standalone() -> anyhow::Result<Arc<ZkCluster>> {
    static SHARED: Mutex<Weak<ZkCluster>> = Mutex::new(Weak::new());
    // One start at a time, so that two tests do not both start a server.
    static STARTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _starting = STARTING.lock().await;
    let running = SHARED.lock().unwrap_or_else(|e| e.into_inner()).upgrade();
    if let Some(zk) = running {
        return Ok(zk);
    }
    let zk = Arc::new(start(ClusterConfig::standalone()).await?);
    *SHARED.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(&zk);
    Ok(zk)
}

/// Runs a blocking harness call (kill, restart, pause…) off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    Ok(tokio::task::spawn_blocking(f).await?)
}

/// Starts a fault proxy in front of server `index`.
pub(crate) fn proxy(zk: &ZkCluster, index: usize) -> anyhow::Result<FaultProxy> {
    FaultProxy::start(zk.client_addr(index)).context("starting the fault proxy")
}

/// A raw ZooKeeper client, to look at or tamper with the tree behind the strict
/// client's back.
pub(crate) async fn raw(connect: &str) -> anyhow::Result<zk::Client> {
    Ok(zk::Client::connect(connect).await?)
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `limit`.
pub(crate) async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = check().await? {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("condition not met within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The children of `/receipts` under a raw client's root.
pub(crate) async fn receipts(raw: &zk::Client) -> anyhow::Result<Vec<String>> {
    Ok(raw.list_children("/receipts").await?)
}

/// Client options for tests: short session timeout so faults show quickly.
pub(crate) fn options() -> StrictOptions {
    StrictOptions::default()
        .with_session_timeout(Duration::from_secs(3))
        .with_op_timeout(Duration::from_secs(30))
}

/// Records operations for the linearizability checker.
#[derive(Debug)]
pub(crate) struct History {
    origin: Instant,
    ops: Mutex<Vec<Op>>,
    /// Operations that failed with an error meaning "no effect"; left out of the check.
    pub(crate) failed: std::sync::atomic::AtomicUsize,
}

impl History {
    pub(crate) fn new() -> Self {
        Self {
            origin: Instant::now(),
            ops: Mutex::new(Vec::new()),
            failed: Default::default(),
        }
    }

    /// The current time in the history's unit (nanoseconds since it began).
    pub(crate) fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// Records an operation invoked at `call` that has just completed with `result`.
    pub(crate) fn record<T>(
        &self,
        call: u64,
        input: Call,
        result: &Result<T, StrictError>,
        to_ret: impl Fn(&T) -> Ret,
    ) {
        let op = match result {
            Ok(value) => Op {
                call,
                ret: self.now(),
                input,
                output: to_ret(value),
            },
            Err(StrictError::Ambiguous { .. }) => Op {
                call,
                ret: u64::MAX,
                input,
                output: Ret::Unknown,
            },
            Err(_) => {
                self.failed
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            }
        };
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).push(op);
    }

    pub(crate) fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// How a compare-and-set result is written in a history.
pub(crate) fn cas_ret(outcome: &Outcome) -> Ret {
    match outcome {
        Outcome::Swapped => Ret::Swapped,
        Outcome::Mismatch { actual } => Ret::Mismatch(*actual),
    }
}
