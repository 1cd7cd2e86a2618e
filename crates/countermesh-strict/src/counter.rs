//! [`Counter`]: the handle callers use for one strict counter.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::sync::{mpsc, oneshot};

use crate::client::ClientShared;
use crate::combiner::Request;
use crate::error::{StrictError, ZooKeeperError, ZooKeeperErrorKind};
use crate::op::{Op, Outcome, Reply};
use crate::op_id::OpId;

/// A strict-mode counter: a signed 64-bit integer stored in one ZooKeeper znode.
///
/// Every operation except [`Counter::get_sequential`] is linearizable, and every write
/// takes effect exactly once, even when a reply is lost and the write is retried.
/// Concurrent operations from one process are combined into one ZooKeeper transaction;
/// each caller still gets its own result.
///
/// Dropping an operation's future before it completes withdraws the operation if its
/// batch has not formed yet; after that, the operation completes (or fails) anyway.
#[derive(Debug, Clone)]
pub struct Counter {
    shared: Arc<CounterShared>,
}

/// What every handle to one counter shares; dropping the last one stops its combiner.
#[derive(Debug)]
pub(crate) struct CounterShared {
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) queue: mpsc::UnboundedSender<Request>,
    pub(crate) epoch: Arc<AtomicU64>,
    pub(crate) client: Arc<ClientShared>,
}

impl Counter {
    pub(crate) fn from_shared(shared: Arc<CounterShared>) -> Self {
        Self { shared }
    }

    /// The counter's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Adds `delta` (which may be negative) and returns the value right after this add.
    ///
    /// Fails with [`StrictError::Overflow`], changing nothing, if the result would leave
    /// the `i64` range.
    pub async fn add(&self, delta: i64) -> Result<i64, StrictError> {
        value(self.submit(Op::Add(delta), None).await?)
    }

    /// [`Counter::add`] under a caller-chosen op-id: a retry with the same `op_id` (from
    /// this process or another client of the same root, within its lifetime, see
    /// [`OpId`]) returns the original post-value and adds nothing.
    pub async fn add_with_op_id(&self, delta: i64, op_id: &OpId) -> Result<i64, StrictError> {
        value(self.submit(Op::Add(delta), Some(op_id.clone())).await?)
    }

    /// Reads the value linearizably: the value is confirmed by a quorum transaction
    /// (a `multi` holding only a version check) after it was read, so it is never older
    /// than any operation that completed before this call began.
    pub async fn get(&self) -> Result<i64, StrictError> {
        value(self.submit(Op::Get, None).await?)
    }

    /// Reads the value with ZooKeeper's ordinary guarantee: one local read on the server
    /// this client is connected to. Within one session it sees every write of this client
    /// and never goes back in time, but it may miss writes other clients have completed
    /// (and, after an expired session was replaced, this client's own latest writes).
    /// Cheaper than [`Counter::get`] (no quorum transaction); not combined.
    pub async fn get_sequential(&self) -> Result<i64, StrictError> {
        let client = &self.shared.client;
        client
            .read(client.deadline(), &self.shared.name, &self.shared.path)
            .await
    }

    /// Sets the value to `new` if it is `expected`, linearizably and exactly once.
    pub async fn compare_and_set(&self, expected: i64, new: i64) -> Result<Outcome, StrictError> {
        cas(self.submit(Op::Cas { expected, new }, None).await?)
    }

    /// [`Counter::compare_and_set`] under a caller-chosen op-id: a retry with the same
    /// `op_id` returns the original outcome (`Swapped`, or `Mismatch` with the value seen
    /// then) and changes nothing.
    pub async fn compare_and_set_with_op_id(
        &self,
        expected: i64,
        new: i64,
        op_id: &OpId,
    ) -> Result<Outcome, StrictError> {
        cas(self
            .submit(Op::Cas { expected, new }, Some(op_id.clone()))
            .await?)
    }

    /// Sets the value, linearizably and exactly once (a retried `set` never overwrites
    /// a later write).
    pub async fn set(&self, value: i64) -> Result<(), StrictError> {
        done(self.submit(Op::Set(value), None).await?)
    }

    /// [`Counter::set`] under a caller-chosen op-id: a retry with the same `op_id`
    /// returns `Ok` without writing again (so it cannot overwrite a later write).
    pub async fn set_with_op_id(&self, value: i64, op_id: &OpId) -> Result<(), StrictError> {
        done(self.submit(Op::Set(value), Some(op_id.clone())).await?)
    }

    async fn submit(&self, op: Op, key: Option<OpId>) -> Result<Reply, StrictError> {
        let (reply, result) = oneshot::channel();
        let unavailable = || StrictError::Unavailable {
            deadline: self.shared.client.opts.op_timeout,
        };
        // The combiner runs as long as a handle exists, so neither channel end can close
        // early unless its task was aborted by a runtime shutting down.
        self.shared
            .queue
            .send(Request { op, key, reply })
            .map_err(|_| unavailable())?;
        result.await.map_err(|_| unavailable())?
    }
}

fn value(reply: Reply) -> Result<i64, StrictError> {
    match reply {
        Reply::Value(value) => Ok(value),
        other => Err(unexpected(other)),
    }
}

fn cas(reply: Reply) -> Result<Outcome, StrictError> {
    match reply {
        Reply::Cas(outcome) => Ok(outcome),
        other => Err(unexpected(other)),
    }
}

fn done(reply: Reply) -> Result<(), StrictError> {
    match reply {
        Reply::Set => Ok(()),
        other => Err(unexpected(other)),
    }
}

/// A reply of the wrong kind cannot happen: each operation kind has one reply kind.
/// Reported as a typed error rather than a panic all the same.
fn unexpected(reply: Reply) -> StrictError {
    tracing::error!(?reply, "combiner returned a reply of the wrong kind");
    StrictError::ZooKeeper(ZooKeeperError::new(
        ZooKeeperErrorKind::Other,
        format!("unexpected reply {reply:?}"),
    ))
}
