//! Counters of what the client did, for tests, benchmarks and dashboards.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A snapshot of [`crate::StrictClient::stats`]. Every field counts since `connect`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StrictStats {
    /// Operations submitted to combiners.
    pub ops: u64,
    /// Batches committed (each one ZooKeeper transaction, or more with retries).
    pub batches: u64,
    /// Version conflicts retried (another writer got there first, or a stale cache).
    pub conflicts: u64,
    /// Write batches that lost at least one reply (connection loss, session expiry,
    /// timeout): the cases where a plain compare-and-set retry cannot know whether it
    /// already counted.
    pub lost_replies: u64,
    /// Of those, batches whose retry found the receipt: the lost attempt had in fact
    /// committed, and a plain retry would have applied it twice.
    pub lost_replies_committed: u64,
    /// Of those, batches that ended in [`crate::StrictError::Ambiguous`].
    pub lost_replies_unresolved: u64,
    /// Sessions opened after the first one expired.
    pub sessions_renewed: u64,
    /// Background receipt sweeps that completed.
    pub sweeps: u64,
    /// Receipts those sweeps deleted (orphans, and op-id receipts past their lifetime).
    pub receipts_swept: u64,
    /// Time combiners spent waiting for ZooKeeper to answer their transactions. Against
    /// the callers' own latency, it shows what the client adds on top of ZooKeeper.
    pub commit_wait: Duration,
}

/// The live counters behind [`StrictStats`].
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) ops: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) conflicts: AtomicU64,
    pub(crate) lost_replies: AtomicU64,
    pub(crate) lost_replies_committed: AtomicU64,
    pub(crate) lost_replies_unresolved: AtomicU64,
    pub(crate) sweeps: AtomicU64,
    pub(crate) receipts_swept: AtomicU64,
    pub(crate) commit_wait_ns: AtomicU64,
}

impl Stats {
    pub(crate) fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, sessions_renewed: u64) -> StrictStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StrictStats {
            ops: get(&self.ops),
            batches: get(&self.batches),
            conflicts: get(&self.conflicts),
            lost_replies: get(&self.lost_replies),
            lost_replies_committed: get(&self.lost_replies_committed),
            lost_replies_unresolved: get(&self.lost_replies_unresolved),
            sessions_renewed,
            sweeps: get(&self.sweeps),
            receipts_swept: get(&self.receipts_swept),
            commit_wait: Duration::from_nanos(get(&self.commit_wait_ns)),
        }
    }
}
