//! Op-id receipts: naming and encoding them, deleting them once their result is known,
//! and sweeping the orphans of operations that never came back.
//!
//! A receipt is a persistent znode `receipts/<name>` created in the same `multi` as the
//! write it stands for, so it exists exactly when that write committed. A retry of the
//! same operation therefore fails with `NodeExists` instead of applying twice.
//!
//! * A batch receipt (`receipts/<op-id>`, the client's own op-id) holds the batch's base
//!   value; once the writer knows its result, it is queued here and deleted by the
//!   background flush (or on the side of a later write), so the tree stays small.
//! * The receipt of a caller-chosen op-id (`receipts/k:<counter>:<op-id>`) holds the
//!   value right before that operation and the operation itself, so a retry from any
//!   process gets the original result back. It is kept for its lifetime and then swept.
//!
//! Every receipt also records how long its writer needs it (its `receipt_max_age`); the
//! sweep never deletes a receipt before that, whatever its own settings.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use zookeeper_client as zk;

use crate::error::StrictError;
use crate::op::Op;
use crate::op_id::OpId;
use crate::session::RECEIPTS;

/// The path of the receipt named `name` (an op-id, or one of the names below).
pub(crate) fn receipt_path(name: &str) -> String {
    format!("{RECEIPTS}/{name}")
}

/// The receipt name of a caller-chosen op-id on `counter`. Counter names and op-ids never
/// contain `:`, so two different pairs never share a name, and generated op-ids (hex and
/// `-` only) never start with `k:`.
pub(crate) fn key_receipt_name(counter: &str, op_id: &OpId) -> String {
    format!("k:{counter}:{op_id}")
}

/// The name of the fence that lets exactly one writer roll the znode generation created
/// at `czxid` when its version is the wildcard `-1` (see `plan.rs`).
pub(crate) fn fence_name(counter: &str, czxid: i64) -> String {
    format!("roll:{counter}:{czxid:x}")
}

/// What a receipt says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Receipt {
    /// For a batch receipt, the counter's value right before the batch; for the receipt of
    /// a caller-chosen op-id, the value right before that one operation.
    pub(crate) base: i64,
    /// How long its writer needs it kept (ZooKeeper's clock, from its `ctime`). `None` for
    /// receipts written by versions of this crate that did not record it.
    pub(crate) hold: Option<Duration>,
    /// For the receipt of a caller-chosen op-id, the operation it stands for.
    pub(crate) op: Option<Op>,
}

/// The first byte of a batch receipt (also used for roll fences).
const BATCH: u8 = 1;
/// The first byte of the receipt of a caller-chosen op-id.
const KEYED: u8 = 2;
/// Tag byte + base + hold.
const BATCH_LEN: usize = 17;

/// Encodes a batch receipt: tag, base (big-endian `i64`), hold in milliseconds
/// (big-endian `u64`).
pub(crate) fn encode_batch(base: i64, hold: Duration) -> Vec<u8> {
    let mut out = Vec::with_capacity(BATCH_LEN);
    out.push(BATCH);
    out.extend_from_slice(&base.to_be_bytes());
    out.extend_from_slice(&hold_ms(hold).to_be_bytes());
    out
}

/// Encodes the receipt of a caller-chosen op-id: as a batch receipt (with the value
/// before `op`), then the operation: a kind byte and its arguments.
pub(crate) fn encode_keyed(pre: i64, hold: Duration, op: Op) -> Vec<u8> {
    let mut out = encode_batch(pre, hold);
    out[0] = KEYED;
    match op {
        Op::Add(delta) => {
            out.push(1);
            out.extend_from_slice(&delta.to_be_bytes());
        }
        Op::Set(value) => {
            out.push(2);
            out.extend_from_slice(&value.to_be_bytes());
        }
        Op::Cas { expected, new } => {
            out.push(3);
            out.extend_from_slice(&expected.to_be_bytes());
            out.extend_from_slice(&new.to_be_bytes());
        }
        // Reads carry no receipt; a kind byte that decodes to nothing keeps this total.
        Op::Get => out.push(0),
    }
    out
}

/// Decodes a receipt. Eight bytes are the format of earlier versions (the base only).
pub(crate) fn decode_receipt(path: &str, data: &[u8]) -> Result<Receipt, StrictError> {
    let corrupt = || StrictError::Corrupt {
        path: path.to_owned(),
        len: data.len(),
    };
    let i64_at = |at: usize| -> Option<i64> {
        Some(i64::from_be_bytes(data.get(at..at + 8)?.try_into().ok()?))
    };
    if data.len() == 8 {
        return Ok(Receipt {
            base: i64_at(0).ok_or_else(corrupt)?,
            hold: None,
            op: None,
        });
    }
    let (Some(&tag), Some(base), Some(hold)) = (data.first(), i64_at(1), i64_at(9)) else {
        return Err(corrupt());
    };
    let hold = Some(Duration::from_millis(hold as u64));
    let op = match (tag, data.get(BATCH_LEN), data.len()) {
        (BATCH, None, BATCH_LEN) => None,
        (KEYED, Some(1), 26) => Some(Op::Add(i64_at(18).ok_or_else(corrupt)?)),
        (KEYED, Some(2), 26) => Some(Op::Set(i64_at(18).ok_or_else(corrupt)?)),
        (KEYED, Some(3), 34) => Some(Op::Cas {
            expected: i64_at(18).ok_or_else(corrupt)?,
            new: i64_at(26).ok_or_else(corrupt)?,
        }),
        _ => return Err(corrupt()),
    };
    Ok(Receipt { base, hold, op })
}

fn hold_ms(hold: Duration) -> u64 {
    u64::try_from(hold.as_millis()).unwrap_or(u64::MAX)
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

/// Deletes every receipt that is older, by ZooKeeper's own clock, than both the hold its
/// writer recorded in it and `max_age` (this client's own
/// [`crate::StrictOptions::receipt_max_age`]).
///
/// The hold is the writer's `receipt_max_age`, which exceeds twice its `op_timeout`, so
/// a client with a short timeout never sweeps the receipt that a client with a long one
/// may still retry against: the safety does not depend on the sweeper's settings.
/// Receipts without a recorded hold (earlier versions) are swept after `max_age`.
///
/// The sweep first writes to the receipts directory: the `mtime` of that write is the
/// leader's current time, the same clock that stamped each receipt's `ctime`, so client
/// clock skew cannot make a young receipt look old.
pub(crate) async fn sweep(
    client: &zk::Client,
    max_age: Duration,
) -> Result<SweepReport, zk::Error> {
    let now = client.set_data(RECEIPTS, &[], None).await?.mtime;
    let children = client.list_children(RECEIPTS).await?;
    let reads: Vec<_> = children
        .iter()
        .map(|child| {
            // Creating every future before awaiting any pipelines the reads.
            let fut = client.get_data(&receipt_path(child));
            (child, fut)
        })
        .collect();
    let mut old = Vec::new();
    for (child, fut) in reads {
        let (data, stat) = match fut.await {
            Ok(read) => read,
            // Deleted since the listing (by its writer, or another sweep).
            Err(zk::Error::NoNode) => continue,
            Err(err) => return Err(err),
        };
        let hold = decode_receipt(child, &data)
            .ok()
            .and_then(|receipt| receipt.hold)
            .unwrap_or_default()
            .max(max_age);
        let hold_ms = i64::try_from(hold.as_millis()).unwrap_or(i64::MAX);
        if stat.ctime < now.saturating_sub(hold_ms) {
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
    fn receipts_round_trip_and_old_ones_still_decode() {
        let hold = Duration::from_secs(600);
        let batch = decode_receipt("/r", &encode_batch(-7, hold));
        assert_eq!(
            batch,
            Ok(Receipt {
                base: -7,
                hold: Some(hold),
                op: None
            })
        );
        for op in [
            Op::Add(i64::MIN),
            Op::Set(3),
            Op::Cas {
                expected: 1,
                new: -1,
            },
        ] {
            let keyed = decode_receipt("/r", &encode_keyed(42, hold, op));
            assert_eq!(keyed.map(|r| (r.base, r.op)), Ok((42, Some(op))));
        }
        let legacy = decode_receipt("/r", &5i64.to_be_bytes());
        assert_eq!(
            legacy,
            Ok(Receipt {
                base: 5,
                hold: None,
                op: None
            })
        );
        for bad in [&b""[..], b"xyz", &[1; 18], &[2; 17], &[9; 17]] {
            assert!(decode_receipt("/r", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn receipt_names_cannot_collide() {
        let key = OpId::new("b").unwrap_or_else(|_| unreachable!());
        let other = OpId::new("c.b").unwrap_or_else(|_| unreachable!());
        assert_ne!(key_receipt_name("a.c", &key), key_receipt_name("a", &other));
        assert_eq!(key_receipt_name("a", &key), "k:a:b");
        assert_eq!(fence_name("a", 255), "roll:a:ff");
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
