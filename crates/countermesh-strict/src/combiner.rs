//! The per-counter combiner: batches every operation queued on one counter in this
//! process into one exactly-once ZooKeeper transaction.
//!
//! One task per counter owns the queue. It takes whatever queued up while its previous
//! write was in flight (at most `max_batch` operations), applies them in queue order to
//! the counter's value ([`crate::op::apply`]) and commits the outcome with one `multi`:
//!
//! * `create(receipts/<op-id>, base)` when the batch holds a write, first, so that a
//!   retry of an attempt that already committed fails right there with `NodeExists`;
//! * `set_data(counter, end, version)` when the value changes, else
//!   `check_version(counter, version)`: either way a quorum transaction that pins the
//!   value the batch saw, which is what makes reads linearizable;
//! * `delete(receipts/<old>)` for receipts of earlier writes whose results are known.
//!
//! The `(value, version)` pair is cached after each commit, so a lone caller pays one
//! round trip per operation; a stale cache costs one `BadVersion` and a re-read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use zookeeper_client as zk;

use crate::backoff::Backoff;
use crate::client::ClientShared;
use crate::encoding::{decode, encode};
use crate::error::StrictError;
use crate::op::{Op, Reply, apply};
use crate::receipts::receipt_path;
use crate::session::{Failure, Handle, NoClient, classify};
use crate::stats::Stats;

/// Receipts are plain persistent znodes, open to anyone who can write the counters.
const RECEIPT_MODE: zk::CreateOptions<'static> =
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());

/// One queued operation and where its result goes.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) op: Op,
    pub(crate) reply: oneshot::Sender<Result<Reply, StrictError>>,
}

/// The counter's value and data version as of the last transaction this task saw.
#[derive(Debug, Clone, Copy)]
struct Known {
    value: i64,
    version: i32,
}

/// The state of one counter's combiner task.
#[derive(Debug)]
pub(crate) struct Combiner {
    client: Arc<ClientShared>,
    name: String,
    path: String,
    // Bumped when this process deletes the counter, so a cached version of the old
    // incarnation is never trusted again.
    epoch: Arc<AtomicU64>,
    seen_epoch: u64,
    cache: Option<Known>,
    backoff: Backoff,
    // Whether the batch in progress lost the reply of a write that carried its receipt.
    lost_reply: bool,
}

/// Why reading a znode did not produce a value.
enum ReadError {
    NotFound,
    Failed(Failure),
}

impl Combiner {
    pub(crate) fn new(
        client: Arc<ClientShared>,
        name: String,
        path: String,
        epoch: Arc<AtomicU64>,
    ) -> Self {
        let seed = client
            .op_ids
            .next()
            .bytes()
            .fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b));
        Self {
            client,
            name,
            path,
            epoch,
            seen_epoch: 0,
            cache: None,
            backoff: Backoff::new(seed),
            lost_reply: false,
        }
    }

    /// Serves the queue until every handle of the counter is gone.
    pub(crate) async fn run(mut self, mut queue: mpsc::UnboundedReceiver<Request>) {
        let max_batch = self.client.opts.max_batch;
        let window = self.client.opts.batch_window;
        while let Some(first) = queue.recv().await {
            if !window.is_zero() {
                tokio::time::sleep(window).await;
            }
            let mut batch = vec![first];
            while batch.len() < max_batch {
                match queue.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            // A caller that gave up before its batch formed is left out: its operation
            // never reaches ZooKeeper.
            batch.retain(|request| !request.reply.is_closed());
            if batch.is_empty() {
                continue;
            }
            let ops: Vec<Op> = batch.iter().map(|request| request.op).collect();
            match self.execute(&ops).await {
                Ok(results) => {
                    for (request, result) in batch.into_iter().zip(results) {
                        let _ = request.reply.send(result);
                    }
                }
                Err(err) => {
                    for request in batch {
                        let _ = request.reply.send(Err(err.clone()));
                    }
                }
            }
        }
    }

    /// Commits one batch exactly once and returns one result per operation.
    async fn execute(
        &mut self,
        ops: &[Op],
    ) -> Result<Vec<Result<Reply, StrictError>>, StrictError> {
        let epoch = self.epoch.load(Ordering::Acquire);
        if epoch != self.seen_epoch {
            self.seen_epoch = epoch;
            self.cache = None;
        }
        let op_id = ops
            .iter()
            .any(|op| op.mutates())
            .then(|| self.client.op_ids.next());
        let mut deletes = self.client.pending.take(self.client.opts.piggyback_deletes);
        self.lost_reply = false;
        let stats = &self.client.stats;
        Stats::bump(&stats.ops, ops.len() as u64);
        let outcome = self.commit(ops, op_id.as_deref(), &mut deletes).await;
        let stats = &self.client.stats;
        if outcome.is_ok() {
            Stats::bump(&stats.batches, 1);
        }
        if self.lost_reply {
            Stats::bump(&stats.lost_replies, 1);
            if matches!(outcome, Err(StrictError::Ambiguous { .. })) {
                Stats::bump(&stats.lost_replies_unresolved, 1);
            }
        }
        match &outcome {
            Ok(_) => {
                // Whichever attempt committed also deleted `deletes` (those dropped on the
                // way were already gone), and this batch's own receipt has done its job.
                if let Some(op_id) = op_id {
                    self.client.pending.push(op_id);
                }
            }
            Err(_) => self.client.pending.give_back(deletes),
        }
        outcome
    }

    async fn commit(
        &mut self,
        ops: &[Op],
        op_id: Option<&str>,
        deletes: &mut Vec<String>,
    ) -> Result<Vec<Result<Reply, StrictError>>, StrictError> {
        let op_timeout = self.client.opts.op_timeout;
        let deadline = Instant::now() + op_timeout;
        // Set once an attempt carrying the receipt may have committed without us seeing
        // the reply; cleared only by learning the answer (a commit, or `NodeExists`).
        let mut unresolved = false;
        let mut conflicts = 0u32;
        let ambiguous = || StrictError::Ambiguous {
            op_id: op_id.unwrap_or_default().to_owned(),
            deadline: op_timeout,
        };
        let gave_up = |unresolved: bool| {
            if unresolved {
                ambiguous()
            } else {
                StrictError::Unavailable {
                    deadline: op_timeout,
                }
            }
        };
        let counter_index = usize::from(op_id.is_some());
        let first_delete = counter_index + 1;
        loop {
            if Instant::now() >= deadline {
                return Err(gave_up(unresolved));
            }
            let handle = match self.client.session.client(deadline).await {
                Ok(handle) => handle,
                Err(NoClient::Deadline) => return Err(gave_up(unresolved)),
                Err(NoClient::Expired) => {
                    return Err(if unresolved {
                        ambiguous()
                    } else {
                        StrictError::SessionExpired
                    });
                }
            };
            let known = match self.cache {
                Some(known) => known,
                None => match self.read_counter(&handle.client, deadline).await {
                    Ok(known) => known,
                    Err(ReadError::NotFound) => {
                        // The counter is gone. If an earlier attempt committed before that,
                        // its receipt says so; otherwise nothing can commit any more.
                        if let Some(id) = op_id.filter(|_| unresolved)
                            && let Some(base) = self.receipt_base(&handle, id, deadline).await?
                        {
                            return Ok(apply(base, ops).1);
                        }
                        return Err(StrictError::NotFound {
                            name: self.name.clone(),
                        });
                    }
                    Err(ReadError::Failed(failure)) => {
                        self.on_failure(failure, &handle, op_id, false, &mut unresolved, deadline)
                            .await?;
                        continue;
                    }
                },
            };
            let (end, results) = apply(known.value, ops);
            let mut writer = handle.client.new_multi_writer();
            let built = (|| {
                if let Some(id) = op_id {
                    writer.add_create(&receipt_path(id), &encode(known.value), &RECEIPT_MODE)?;
                }
                if end == known.value {
                    writer.add_check_version(&self.path, known.version)?;
                } else {
                    writer.add_set_data(&self.path, &encode(end), Some(known.version))?;
                }
                for old in deletes.iter() {
                    writer.add_delete(&receipt_path(old), None)?;
                }
                Ok::<_, zk::Error>(())
            })();
            built.map_err(StrictError::ZooKeeper)?;
            match tokio::time::timeout_at(deadline, writer.commit()).await {
                Err(_elapsed) => {
                    unresolved |= op_id.is_some();
                    self.lost_reply |= op_id.is_some();
                    self.cache = None;
                }
                Ok(Ok(replies)) => {
                    let version = replies
                        .iter()
                        .find_map(|reply| match reply {
                            zk::MultiWriteResult::SetData { stat } => Some(stat.version),
                            _ => None,
                        })
                        .unwrap_or(known.version);
                    self.cache = Some(Known {
                        value: end,
                        version,
                    });
                    return Ok(results);
                }
                Ok(Err(zk::MultiWriteError::OperationFailed { index, source })) => {
                    self.cache = None;
                    match source {
                        zk::Error::NodeExists if index == 0 && op_id.is_some() => {
                            // An earlier attempt of this very batch committed; its receipt
                            // holds the base it was applied to.
                            let id = op_id.unwrap_or_default();
                            Stats::bump(&self.client.stats.lost_replies_committed, 1);
                            return match self.receipt_base(&handle, id, deadline).await? {
                                Some(base) => Ok(apply(base, ops).1),
                                // Only a sweep with a too-short age could remove it this
                                // early; the result can then no longer be computed.
                                None => Err(ambiguous()),
                            };
                        }
                        zk::Error::BadVersion if index == counter_index => {
                            conflicts += 1;
                            Stats::bump(&self.client.stats.conflicts, 1);
                            if conflicts > self.client.opts.max_conflict_retries {
                                return Err(if unresolved {
                                    ambiguous()
                                } else {
                                    StrictError::Conflict {
                                        attempts: conflicts,
                                    }
                                });
                            }
                            self.backoff.after_conflict(conflicts, deadline).await;
                        }
                        zk::Error::NoNode if index == counter_index => {
                            if let Some(id) = op_id.filter(|_| unresolved)
                                && let Some(base) = self.receipt_base(&handle, id, deadline).await?
                            {
                                return Ok(apply(base, ops).1);
                            }
                            return Err(StrictError::NotFound {
                                name: self.name.clone(),
                            });
                        }
                        zk::Error::NoNode
                            if index >= first_delete && index - first_delete < deletes.len() =>
                        {
                            // That old receipt is already gone (swept, or deleted by an
                            // earlier attempt of this batch); drop it and go again.
                            deletes.remove(index - first_delete);
                        }
                        other => {
                            let failure = classify(other);
                            self.on_failure(
                                failure,
                                &handle,
                                op_id,
                                true,
                                &mut unresolved,
                                deadline,
                            )
                            .await?;
                        }
                    }
                }
                Ok(Err(zk::MultiWriteError::RequestFailed { source })) => {
                    self.cache = None;
                    let failure = classify(source);
                    self.on_failure(failure, &handle, op_id, true, &mut unresolved, deadline)
                        .await?;
                }
            }
        }
    }

    /// Reacts to a transport failure of a read, or of a write (`wrote`) that carried the
    /// receipt of `op_id` if any: remembers that such a write may have landed, replaces an
    /// expired session, and pauses. Fatal errors end the operation.
    async fn on_failure(
        &mut self,
        failure: Failure,
        handle: &Handle,
        op_id: Option<&str>,
        wrote: bool,
        unresolved: &mut bool,
        deadline: Instant,
    ) -> Result<(), StrictError> {
        let wrote = wrote && op_id.is_some();
        if wrote && matches!(failure, Failure::Lost | Failure::Expired) {
            self.lost_reply = true;
        }
        let op_id = op_id.unwrap_or_default();
        match failure {
            Failure::Lost => {
                *unresolved |= wrote;
                self.backoff.after_failure(deadline).await;
            }
            Failure::Expired => {
                *unresolved |= wrote;
                self.client.session.invalidate(handle.generation);
            }
            Failure::Refused => self.backoff.after_failure(deadline).await,
            Failure::Fatal(err) => {
                return Err(if *unresolved {
                    StrictError::Ambiguous {
                        op_id: op_id.to_owned(),
                        deadline: self.client.opts.op_timeout,
                    }
                } else {
                    err
                });
            }
        }
        Ok(())
    }

    /// Reads the counter's value and version.
    async fn read_counter(
        &self,
        client: &zk::Client,
        deadline: Instant,
    ) -> Result<Known, ReadError> {
        match tokio::time::timeout_at(deadline, client.get_data(&self.path)).await {
            Err(_elapsed) => Err(ReadError::Failed(Failure::Lost)),
            Ok(Ok((data, stat))) => match decode(&self.path, &data) {
                Ok(value) => Ok(Known {
                    value,
                    version: stat.version,
                }),
                Err(err) => Err(ReadError::Failed(Failure::Fatal(err))),
            },
            Ok(Err(zk::Error::NoNode)) => Err(ReadError::NotFound),
            Ok(Err(err)) => Err(ReadError::Failed(classify(err))),
        }
    }

    /// Reads the base value stored in the receipt of `op_id`: `Some` if the receipt
    /// exists (so that batch committed), `None` if it does not.
    async fn receipt_base(
        &mut self,
        handle: &Handle,
        op_id: &str,
        deadline: Instant,
    ) -> Result<Option<i64>, StrictError> {
        let path = receipt_path(op_id);
        let mut handle = handle.clone();
        loop {
            let read = tokio::time::timeout_at(deadline, handle.client.get_data(&path)).await;
            let failure = match read {
                Ok(Ok((data, _))) => return decode(&path, &data).map(Some),
                Ok(Err(zk::Error::NoNode)) => return Ok(None),
                Ok(Err(err)) => classify(err),
                Err(_elapsed) => Failure::Lost,
            };
            if let Failure::Fatal(err) = failure {
                return Err(err);
            }
            if failure == Failure::Expired {
                self.client.session.invalidate(handle.generation);
            } else {
                self.backoff.after_failure(deadline).await;
            }
            // The commit is certain; only its result is still unread.
            handle = match self.client.session.client(deadline).await {
                Ok(handle) => handle,
                Err(_) => {
                    return Err(StrictError::Ambiguous {
                        op_id: op_id.to_owned(),
                        deadline: self.client.opts.op_timeout,
                    });
                }
            };
        }
    }
}
