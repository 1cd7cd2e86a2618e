//! Op-id receipts: naming them, deleting them once their result is known, and sweeping
//! the orphans of operations that never came back.
//!
//! A receipt is a persistent znode `receipts/<op-id>` created in the same `multi` as the
//! write it stands for, so it exists exactly when that write committed. A retry of the
//! same operation therefore fails with `NodeExists` instead of applying twice. Once the
//! writer knows its result, the receipt has done its job: it is queued here and deleted
//! on the side of a later write (or by the background flush), so the tree stays small.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::{SmallRng, SysRng};
use rand::{Rng, SeedableRng};
use tokio::time::Instant;
use zookeeper_client as zk;

use crate::session::RECEIPTS;

/// The path of the receipt of `op_id`.
pub(crate) fn receipt_path(op_id: &str) -> String {
    format!("{RECEIPTS}/{op_id}")
}

/// Hands out op-ids that are unique across processes: a 128-bit random prefix drawn once
/// per client, then a counter.
#[derive(Debug)]
pub(crate) struct OpIds {
    prefix: String,
    next: AtomicU64,
}

impl OpIds {
    pub(crate) fn new() -> Self {
        let mut rng = SmallRng::try_from_rng(&mut SysRng).unwrap_or_else(|_| fallback_rng());
        let prefix = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
        Self {
            prefix,
            next: AtomicU64::new(0),
        }
    }

    /// A fresh op-id.
    pub(crate) fn next(&self) -> String {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{seq:016x}", self.prefix)
    }
}

/// Seeds from the clock, the process id and std's per-process hash keys when the OS
/// random source fails, so op-ids stay unique across processes even then.
fn fallback_rng() -> SmallRng {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since.as_nanos());
    }
    SmallRng::seed_from_u64(hasher.finish())
}

/// Receipts whose results are known and which only wait to be deleted.
#[derive(Debug, Default)]
pub(crate) struct PendingDeletes {
    queue: Mutex<VecDeque<(String, Instant)>>,
}

impl PendingDeletes {
    /// Queues a finished receipt.
    pub(crate) fn push(&self, op_id: String) {
        self.lock().push_back((op_id, Instant::now()));
    }

    /// Takes up to `n` receipts to delete on the side of a write.
    pub(crate) fn take(&self, n: usize) -> Vec<String> {
        let mut queue = self.lock();
        let n = n.min(queue.len());
        queue.drain(..n).map(|(id, _)| id).collect()
    }

    /// Takes every receipt queued before `before`.
    pub(crate) fn take_older(&self, before: Instant) -> Vec<String> {
        let mut queue = self.lock();
        let n = queue.iter().take_while(|(_, at)| *at < before).count();
        queue.drain(..n).map(|(id, _)| id).collect()
    }

    /// Returns receipts that a failed write did not delete.
    pub(crate) fn give_back(&self, op_ids: Vec<String>) {
        let now = Instant::now();
        let mut queue = self.lock();
        for id in op_ids.into_iter().rev() {
            queue.push_front((id, now));
        }
    }

    /// How many receipts wait to be deleted.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(String, Instant)>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Receipts deleted by one `multi` in [`delete_all`]. Paths are ~50 bytes, so a chunk is
/// far below ZooKeeper's 1 MiB request limit.
const DELETES_PER_MULTI: usize = 256;

/// Deletes `op_ids`, a chunk per `multi`: one transaction (one log record) deletes up to
/// [`DELETES_PER_MULTI`] receipts, which costs the server far less than a transaction
/// each. A `multi` is all-or-nothing, so a chunk that fails (typically because a receipt
/// is already gone) is retried one delete at a time. Returns the receipts that could
/// not be deleted for a reason other than already being gone.
pub(crate) async fn delete_all(client: &zk::Client, op_ids: Vec<String>) -> Vec<String> {
    let mut failed = Vec::new();
    for chunk in op_ids.chunks(DELETES_PER_MULTI) {
        let mut writer = client.new_multi_writer();
        let built = chunk
            .iter()
            .try_for_each(|id| writer.add_delete(&receipt_path(id), None));
        if built.is_ok() && writer.commit().await.is_ok() {
            continue;
        }
        failed.extend(delete_each(client, chunk.to_vec()).await);
    }
    failed
}

/// Deletes `op_ids` with pipelined single requests.
async fn delete_each(client: &zk::Client, op_ids: Vec<String>) -> Vec<String> {
    let pending: Vec<_> = op_ids
        .into_iter()
        .map(|id| {
            // Creating every future before awaiting any pipelines the requests.
            let fut = client.delete(&receipt_path(&id), None);
            (id, fut)
        })
        .collect();
    let mut failed = Vec::new();
    for (id, fut) in pending {
        match fut.await {
            Ok(()) | Err(zk::Error::NoNode) => {}
            Err(_) => failed.push(id),
        }
    }
    failed
}

/// What one sweep found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Receipts looked at.
    pub scanned: usize,
    /// Orphans (older than the maximum age) deleted.
    pub deleted: usize,
}

/// Deletes every receipt older than `max_age` by ZooKeeper's own clock.
///
/// The sweep first writes to the receipts directory: the `mtime` of that write is the
/// leader's current time, the same clock that stamped each receipt's `ctime`, so client
/// clock skew cannot make a young receipt look old.
pub(crate) async fn sweep(
    client: &zk::Client,
    max_age: Duration,
) -> Result<SweepReport, zk::Error> {
    let now = client.set_data(RECEIPTS, &[], None).await?.mtime;
    let max_age_ms = i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now.saturating_sub(max_age_ms);
    let children = client.list_children(RECEIPTS).await?;
    let stats: Vec<_> = children
        .iter()
        .map(|child| {
            let fut = client.check_stat(&receipt_path(child));
            (child, fut)
        })
        .collect();
    let mut old = Vec::new();
    for (child, fut) in stats {
        if let Some(stat) = fut.await?
            && stat.ctime < cutoff
        {
            old.push(child.clone());
        }
    }
    let deleted = old.len();
    let failed = delete_all(client, old).await;
    Ok(SweepReport {
        scanned: children.len(),
        deleted: deleted - failed.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_ids_are_unique_and_znode_safe() {
        let a = OpIds::new();
        let b = OpIds::new();
        let ids = [a.next(), a.next(), b.next()];
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[0], ids[2]);
        for id in &ids {
            assert!(
                id.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-'),
                "{id}"
            );
        }
    }

    #[tokio::test]
    async fn pending_deletes_keep_order_and_take_back() {
        let pending = PendingDeletes::default();
        for i in 0..5 {
            pending.push(format!("r{i}"));
        }
        let first = pending.take(2);
        assert_eq!(first, ["r0", "r1"]);
        pending.give_back(first);
        assert_eq!(pending.len(), 5);
        assert_eq!(
            pending
                .take_older(Instant::now() + Duration::from_secs(1))
                .len(),
            5
        );
        assert_eq!(pending.len(), 0);
    }
}
