//! The group committer: on every commit interval, and whenever `flush` asks, it folds
//! pending adds, takes what changed from the store and writes it to the data directory
//! in one transaction.
//!
//! Gossip does not wait for commits. A restarted node counts under a fresh actor (see
//! `Store::restore`), so peers holding more of its previous actor than its disk is
//! harmless: those entries come back by anti-entropy, and no version is ever issued
//! twice. A commit that fails is retried, merged with the next one.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use countermesh_core::Changes;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, warn};

use crate::StorageError;
use crate::driver::Shared;
use crate::metrics::bump;
use crate::storage::Storage;

/// A `flush` waiting for the next commit.
pub(crate) type FlushWaiter = oneshot::Sender<Result<(), Arc<StorageError>>>;

/// Requests to the committer.
#[derive(Debug)]
pub(crate) enum Request {
    /// Commit now and report when everything folded so far is durable.
    Flush(FlushWaiter),
    /// Stop after the commit in progress, without committing again.
    Stop,
}

/// The committer task's state.
pub(crate) struct Committer {
    pub(crate) shared: Arc<Shared>,
    pub(crate) storage: Arc<Storage>,
    pub(crate) interval: Duration,
    /// Changes from a commit that failed, retried with the next one.
    pub(crate) carry: Option<Changes>,
}

impl Committer {
    pub(crate) async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut waiters = Vec::new();
            let mut stop = false;
            tokio::select! {
                _ = ticker.tick() => {}
                request = requests.recv() => match request {
                    Some(Request::Flush(waiter)) => waiters.push(waiter),
                    Some(Request::Stop) | None => stop = true,
                },
            }
            // Everyone who asked before this point is served by this commit.
            while let Ok(request) = requests.try_recv() {
                match request {
                    Request::Flush(waiter) => waiters.push(waiter),
                    Request::Stop => stop = true,
                }
            }
            if stop {
                for waiter in waiters {
                    let _ = waiter.send(Err(Arc::new(StorageError::Closed)));
                }
                break;
            }
            let result = self.commit_once().await;
            for waiter in waiters {
                let _ = waiter.send(result.clone());
            }
        }
    }

    /// Folds, takes and writes the current changes. Returns once they are durable.
    async fn commit_once(&mut self) -> Result<(), Arc<StorageError>> {
        let (changes, saturated) = self.shared.with_node(|node, _| {
            let outcome = node.store_mut().flush();
            (node.store_mut().take_changes(), outcome.saturated)
        });
        for name in saturated {
            warn!(counter = %name, "own total reached u64::MAX; excess stays local");
        }
        let mut batch = self.carry.take().unwrap_or_default();
        let durable_before = self.shared.counters.durable_version.load(Ordering::Relaxed);
        if changes.is_empty() && batch.is_empty() && changes.local_version <= durable_before {
            return Ok(());
        }
        batch.absorb(changes);
        let storage = self.storage.clone();
        let started = Instant::now();
        // Keep a copy: if the commit task dies, the batch must still be retried, or a
        // later commit could write watermarks whose entries were never written.
        let retry = batch.clone();
        let (batch, result) = match tokio::task::spawn_blocking(move || {
            let result = storage.commit(&batch);
            (batch, result)
        })
        .await
        {
            Ok(done) => done,
            Err(e) => {
                bump(&self.shared.counters.commit_failures);
                error!(error = %e, "commit task failed; will retry");
                self.carry = Some(retry);
                return Err(Arc::new(StorageError::Corrupt {
                    path: self.storage.path().to_owned(),
                    reason: format!("commit task failed: {e}"),
                }));
            }
        };
        let counters = &self.shared.counters;
        match result {
            Ok(()) => {
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                counters.last_commit_micros.store(micros, Ordering::Relaxed);
                counters
                    .entries_written
                    .fetch_add(batch.entries.len() as u64, Ordering::Relaxed);
                bump(&counters.commits);
                debug!(
                    entries = batch.entries.len(),
                    version = batch.local_version,
                    micros,
                    "committed"
                );
                counters
                    .durable_version
                    .fetch_max(batch.local_version, Ordering::Relaxed);
                Ok(())
            }
            Err(err) => {
                bump(&counters.commit_failures);
                error!(error = %err, "commit to the data directory failed; will retry");
                self.carry = Some(batch);
                Err(Arc::new(err))
            }
        }
    }
}
