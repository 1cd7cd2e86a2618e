//! The per-counter combiner: batches every operation queued on one counter in this
//! process into one exactly-once ZooKeeper transaction.
//!
//! One task per counter owns the queue. It takes whatever queued up while its previous
//! write was in flight (at most `max_batch` operations), applies them in queue order to
//! the counter's value ([`crate::op::apply_steps`]) and commits the outcome with one
//! `multi` laid out by [`crate::plan::Plan`]:
//!
//! * `create(receipts/<op-id>, base)` when the batch holds a write, first, so that a
//!   retry of an attempt that already committed fails right there with `NodeExists`;
//! * `set_data(counter, end, version)` when the value changes, else
//!   `check_version(counter, version)`: either way a quorum transaction that pins the
//!   value the batch saw, which is what makes reads linearizable (or a roll to a fresh
//!   znode generation near the version wrap);
//! * `create(receipts/k:<name>:<op-id>)` for each operation with a caller-chosen op-id;
//! * `delete(receipts/<old>)` for receipts of earlier writes whose results are known.
//!
//! The `(value, version)` pair is cached after each commit, so a lone caller pays one
//! round trip per operation; a stale cache costs one `BadVersion` and a re-read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use zookeeper_client as zk;

use crate::backoff::Backoff;
use crate::client::ClientShared;
use crate::encoding::decode;
use crate::error::StrictError;
use crate::op::{Op, Reply, apply, apply_steps};
use crate::op_id::OpId;
use crate::plan::{Known, Plan, Role, Spec};
use crate::receipts::{Receipt, decode_receipt, encode_keyed, key_receipt_name, receipt_path};
use crate::session::{Failure, Handle, NoClient, classify};
use crate::stats::Stats;

/// How long a cached `(value, version)` is trusted. A counter's version only comes back
/// to a value it had after a roll and 2^31 − 2^20 further writes, which ZooKeeper cannot
/// commit within this time (it would take over 35 million writes a second), so a cached
/// version can never match a later generation by chance.
const CACHE_TTL: Duration = Duration::from_secs(60);

fn nanos(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}

/// One queued operation and where its result goes.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) op: Op,
    /// The caller-chosen op-id, for writes only.
    pub(crate) key: Option<OpId>,
    pub(crate) reply: oneshot::Sender<Result<Reply, StrictError>>,
}

/// The operations of one batch (one per distinct caller op-id) and the results known so
/// far.
#[derive(Debug)]
struct Batch {
    ops: Vec<Op>,
    keys: Vec<Option<OpId>>,
    results: Vec<Option<Result<Reply, StrictError>>>,
}

/// Where the result of one queued request comes from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// The batch slot with this index.
    Slot(usize),
    /// The same op-id and operation as an earlier request of the batch: its slot.
    SameAs(usize),
    /// The same op-id as an earlier request of the batch, with another operation.
    Reused,
}

impl Batch {
    /// Builds a batch from queued requests. A caller op-id that appears twice (a client
    /// retried while its first attempt was still queued) runs once; the later request
    /// shares the first one's result, or is refused if it names another operation.
    fn new(requests: &[(Op, Option<OpId>)]) -> (Self, Vec<Source>) {
        let mut batch = Batch {
            ops: Vec::with_capacity(requests.len()),
            keys: Vec::with_capacity(requests.len()),
            results: Vec::with_capacity(requests.len()),
        };
        let mut sources = Vec::with_capacity(requests.len());
        for (op, key) in requests {
            let earlier = key
                .as_ref()
                .and_then(|key| batch.keys.iter().position(|k| k.as_ref() == Some(key)));
            sources.push(match earlier {
                Some(slot) if batch.ops[slot] == *op => Source::SameAs(slot),
                Some(_) => Source::Reused,
                None => {
                    batch.ops.push(*op);
                    batch.keys.push(key.clone());
                    batch.results.push(None);
                    Source::Slot(batch.ops.len() - 1)
                }
            });
        }
        (batch, sources)
    }

    /// The slots whose results are still unknown.
    fn active(&self) -> Vec<usize> {
        (0..self.ops.len())
            .filter(|&i| self.results[i].is_none())
            .collect()
    }

    fn is_done(&self) -> bool {
        self.results.iter().all(Option::is_some)
    }

    fn fill(
        &mut self,
        slots: &[usize],
        results: impl IntoIterator<Item = Result<Reply, StrictError>>,
    ) {
        for (&slot, result) in slots.iter().zip(results) {
            self.results[slot] = Some(result);
        }
    }
}

/// One batch's commit across its attempts.
#[derive(Debug)]
struct Run {
    /// The batch's receipt name, if it writes.
    op_id: Option<String>,
    deadline: Instant,
    op_timeout: Duration,
    /// Set once an attempt carrying the receipt may have committed without us seeing the
    /// reply; cleared only by learning the answer.
    unresolved: bool,
    /// Whether some attempt that carried the receipt lost its reply (for the stats).
    lost_reply: bool,
    /// Whether the batch receipt is known to exist (an attempt committed).
    committed: bool,
    conflicts: u32,
    /// Finished receipts this batch deletes on the side.
    deletes: Vec<String>,
}

impl Run {
    fn ambiguous(&self) -> StrictError {
        StrictError::Ambiguous {
            op_id: self.op_id.clone().unwrap_or_default(),
            deadline: self.op_timeout,
        }
    }

    /// The error when the deadline passed or no connection came back.
    fn gave_up(&self) -> StrictError {
        if self.unresolved {
            self.ambiguous()
        } else {
            StrictError::Unavailable {
                deadline: self.op_timeout,
            }
        }
    }
}

/// What reading a receipt found.
#[derive(Debug)]
enum ReceiptRead {
    Found(Receipt),
    Absent,
    /// It could not be read (or decoded) before the deadline.
    Unreadable,
}

/// Why reading a znode did not produce a value.
enum ReadError {
    NotFound,
    Failed(Failure),
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
            let requests: Vec<_> = batch.iter().map(|r| (r.op, r.key.clone())).collect();
            let results = self.execute(&requests).await;
            for (request, result) in batch.into_iter().zip(results) {
                let _ = request.reply.send(result);
            }
        }
    }

    /// Commits one batch exactly once and returns one result per request.
    async fn execute(
        &mut self,
        requests: &[(Op, Option<OpId>)],
    ) -> Vec<Result<Reply, StrictError>> {
        let epoch = self.epoch.load(Ordering::Acquire);
        if epoch != self.seen_epoch {
            self.seen_epoch = epoch;
            self.cache = None;
        }
        let (mut batch, sources) = Batch::new(requests);
        let opts = &self.client.opts;
        let mut run = Run {
            op_id: batch
                .ops
                .iter()
                .any(|op| op.mutates())
                .then(|| self.client.op_ids.next()),
            deadline: Instant::now() + opts.op_timeout,
            op_timeout: opts.op_timeout,
            unresolved: false,
            lost_reply: false,
            committed: false,
            conflicts: 0,
            deletes: self.client.pending.take(opts.piggyback_deletes),
        };
        Stats::bump(&self.client.stats.ops, requests.len() as u64);
        let outcome = self.commit(&mut batch, &mut run).await;
        self.record(&outcome, &run);
        match &outcome {
            // Whichever attempt committed also deleted `deletes` (those dropped on the way
            // were already gone), and the batch's own receipt has done its job.
            Ok(()) => {
                if let Some(op_id) = run.op_id.take().filter(|_| run.committed) {
                    self.client.pending.push(op_id);
                }
            }
            Err(_) => self
                .client
                .pending
                .give_back(std::mem::take(&mut run.deletes)),
        }
        let results: Vec<_> = batch
            .results
            .into_iter()
            .map(|result| match (result, &outcome) {
                (Some(result), _) => result,
                (None, Err(err)) => Err(err.clone()),
                // `commit` returns Ok only once every slot has a result.
                (None, Ok(())) => Err(run.gave_up()),
            })
            .collect();
        sources
            .iter()
            .zip(requests)
            .map(|(source, (_, key))| match source {
                Source::Slot(slot) | Source::SameAs(slot) => results[*slot].clone(),
                Source::Reused => Err(StrictError::OpIdReused {
                    op_id: key.as_ref().map(ToString::to_string).unwrap_or_default(),
                }),
            })
            .collect()
    }

    fn record(&self, outcome: &Result<(), StrictError>, run: &Run) {
        let stats = &self.client.stats;
        if outcome.is_ok() {
            Stats::bump(&stats.batches, 1);
        }
        if run.lost_reply {
            Stats::bump(&stats.lost_replies, 1);
            if matches!(outcome, Err(StrictError::Ambiguous { .. })) {
                Stats::bump(&stats.lost_replies_unresolved, 1);
            }
        }
    }

    /// Runs attempts until every slot of the batch has a result, or fails the rest.
    async fn commit(&mut self, batch: &mut Batch, run: &mut Run) -> Result<(), StrictError> {
        loop {
            if batch.is_done() {
                return Ok(());
            }
            if Instant::now() >= run.deadline {
                return Err(run.gave_up());
            }
            let handle = match self.client.session.client(run.deadline).await {
                Ok(handle) => handle,
                Err(NoClient::Deadline) => return Err(run.gave_up()),
                Err(NoClient::Expired) if run.unresolved => return Err(run.ambiguous()),
                Err(NoClient::Expired) => return Err(StrictError::SessionExpired),
            };
            let cached = self
                .cache
                .filter(|known| known.version >= 0 && known.at.elapsed() < CACHE_TTL);
            let known = match cached {
                Some(known) => known,
                None => match self.read_counter(&handle.client, run.deadline).await {
                    Ok(known) => known,
                    Err(ReadError::NotFound) => {
                        return self.counter_gone(&handle, batch, run).await;
                    }
                    Err(ReadError::Failed(failure)) => {
                        self.on_failure(failure, &handle, run, false).await?;
                        continue;
                    }
                },
            };
            self.attempt(&handle, known, batch, run).await?;
        }
    }

    /// Builds and commits one attempt from `known`. Returns `Ok` to go on (the batch is
    /// done, or the attempt failed in a way another attempt may fix).
    async fn attempt(
        &mut self,
        handle: &Handle,
        known: Known,
        batch: &mut Batch,
        run: &mut Run,
    ) -> Result<(), StrictError> {
        let active = batch.active();
        let ops: Vec<Op> = active.iter().map(|&slot| batch.ops[slot]).collect();
        let (end, steps) = apply_steps(known.value, &ops);
        let hold = self.client.opts.receipt_max_age;
        // An operation that fails on its own (overflow) had no effect and gets no receipt.
        let keyed = active
            .iter()
            .zip(&steps)
            .filter(|(_, step)| step.result.is_ok())
            .filter_map(|(&slot, step)| {
                let key = batch.keys[slot].as_ref()?;
                let name = key_receipt_name(&self.name, key);
                Some((slot, name, encode_keyed(step.pre, hold, batch.ops[slot])))
            })
            .collect();
        let spec = Spec {
            name: &self.name,
            path: &self.path,
            known,
            end,
            op_id: run.op_id.as_deref(),
            keyed,
            deletes: &run.deletes,
            mode: &self.client.create_mode,
            hold,
        };
        let mut writer = handle.client.new_multi_writer();
        let plan = Plan::build(&mut writer, &spec)?;
        let wrote = run.op_id.is_some();
        let sent = Instant::now();
        let answer = tokio::time::timeout_at(run.deadline, writer.commit()).await;
        Stats::bump(&self.client.stats.commit_wait_ns, nanos(sent.elapsed()));
        match answer {
            Err(_elapsed) => {
                run.unresolved |= wrote;
                run.lost_reply |= wrote;
                self.cache = None;
                Ok(())
            }
            Ok(Ok(replies)) => {
                self.cache = plan.after_commit(known, end, &replies);
                run.committed = true;
                batch.fill(&active, steps.into_iter().map(|step| step.result));
                Ok(())
            }
            Ok(Err(zk::MultiWriteError::OperationFailed { index, source })) => {
                self.cache = None;
                self.refused(plan.role(index), source, handle, batch, run)
                    .await
            }
            Ok(Err(zk::MultiWriteError::RequestFailed { source })) => {
                self.cache = None;
                self.on_failure(classify(source), handle, run, true).await
            }
        }
    }

    /// Reacts to the operation with `role` failing with `err` (the whole `multi` had no
    /// effect).
    async fn refused(
        &mut self,
        role: Option<Role>,
        err: zk::Error,
        handle: &Handle,
        batch: &mut Batch,
        run: &mut Run,
    ) -> Result<(), StrictError> {
        match (role, err) {
            (Some(Role::BatchReceipt), zk::Error::NodeExists) => {
                // An earlier attempt of this very batch committed; its receipt holds the
                // base it was applied to.
                Stats::bump(&self.client.stats.lost_replies_committed, 1);
                run.committed = true;
                self.resolve_from_batch_receipt(handle, batch, run, true)
                    .await
            }
            (Some(Role::Counter), zk::Error::BadVersion)
            | (Some(Role::Fence), zk::Error::NodeExists) => {
                run.conflicts += 1;
                Stats::bump(&self.client.stats.conflicts, 1);
                if run.conflicts > self.client.opts.max_conflict_retries {
                    return Err(if run.unresolved {
                        run.ambiguous()
                    } else {
                        StrictError::Conflict {
                            attempts: run.conflicts,
                        }
                    });
                }
                self.backoff
                    .after_conflict(run.conflicts, run.deadline)
                    .await;
                Ok(())
            }
            (Some(Role::Counter), zk::Error::NoNode) => self.counter_gone(handle, batch, run).await,
            (Some(Role::KeyReceipt(slot)), zk::Error::NodeExists) => {
                self.resolve_key(handle, slot, batch, run).await;
                Ok(())
            }
            (Some(Role::Delete(i)), zk::Error::NoNode) => {
                // That old receipt is already gone (swept, or deleted by an earlier
                // attempt of this batch); drop it and go again.
                run.deletes.remove(i);
                Ok(())
            }
            (_, other) => self.on_failure(classify(other), handle, run, true).await,
        }
    }

    /// Fills the batch from its own receipt. `proven` says the receipt is known to exist
    /// (`NodeExists`); otherwise an absent receipt means no attempt committed.
    async fn resolve_from_batch_receipt(
        &mut self,
        handle: &Handle,
        batch: &mut Batch,
        run: &Run,
        proven: bool,
    ) -> Result<(), StrictError> {
        let op_id = run.op_id.clone().unwrap_or_default();
        match self.read_receipt(handle, &op_id, run.deadline).await {
            ReceiptRead::Found(receipt) => {
                // Every attempt under one op-id carries the same slots: the set only
                // shrinks when a caller op-id turns out taken, and then no earlier attempt
                // can commit any more (it would create that same taken receipt).
                let active = batch.active();
                let ops: Vec<Op> = active.iter().map(|&slot| batch.ops[slot]).collect();
                batch.fill(&active, apply(receipt.base, &ops).1);
                Ok(())
            }
            ReceiptRead::Absent if !proven => Err(StrictError::NotFound {
                name: self.name.clone(),
            }),
            // The write committed but its result cannot be computed (the receipt was
            // swept or tampered with, or ZooKeeper went away): never "no effect".
            ReceiptRead::Absent | ReceiptRead::Unreadable => Err(run.ambiguous()),
        }
    }

    /// The counter znode is gone. If an earlier attempt committed before that, its
    /// receipt says so; otherwise nothing can commit any more.
    async fn counter_gone(
        &mut self,
        handle: &Handle,
        batch: &mut Batch,
        run: &Run,
    ) -> Result<(), StrictError> {
        if run.unresolved && run.op_id.is_some() {
            return self
                .resolve_from_batch_receipt(handle, batch, run, false)
                .await;
        }
        Err(StrictError::NotFound {
            name: self.name.clone(),
        })
    }

    /// The receipt of the caller op-id of `slot` exists: that operation already ran (in
    /// this process or another). Its receipt gives back the original result.
    async fn resolve_key(&mut self, handle: &Handle, slot: usize, batch: &mut Batch, run: &Run) {
        let Some(key) = batch.keys[slot].clone() else {
            return;
        };
        let name = key_receipt_name(&self.name, &key);
        let op = batch.ops[slot];
        batch.results[slot] = match self.read_receipt(handle, &name, run.deadline).await {
            ReceiptRead::Found(Receipt {
                base,
                op: Some(original),
                ..
            }) if original == op => Some(op.apply_to(base).1),
            ReceiptRead::Found(_) => Some(Err(StrictError::OpIdReused {
                op_id: key.to_string(),
            })),
            // Swept since: the op-id's lifetime is over, so the operation runs anew.
            ReceiptRead::Absent => None,
            // It ran, but its result cannot be read back: its receipt tells the truth.
            ReceiptRead::Unreadable => Some(Err(StrictError::Ambiguous {
                op_id: name,
                deadline: run.op_timeout,
            })),
        };
    }

    /// Reacts to a transport failure of a read, or of a write (`wrote`) that carried the
    /// batch's receipt if any: remembers that such a write may have landed, replaces an
    /// expired session, and pauses. Fatal errors end the operation.
    async fn on_failure(
        &mut self,
        failure: Failure,
        handle: &Handle,
        run: &mut Run,
        wrote: bool,
    ) -> Result<(), StrictError> {
        let wrote = wrote && run.op_id.is_some();
        if wrote && matches!(failure, Failure::Lost | Failure::Expired) {
            run.lost_reply = true;
        }
        match failure {
            Failure::Lost => {
                run.unresolved |= wrote;
                self.backoff.after_failure(run.deadline).await;
            }
            Failure::Expired => {
                run.unresolved |= wrote;
                self.client.session.invalidate(handle.generation);
            }
            Failure::Refused => self.backoff.after_failure(run.deadline).await,
            Failure::Fatal(err) if run.unresolved => {
                tracing::debug!(%err, "fatal error after a lost reply");
                return Err(run.ambiguous());
            }
            Failure::Fatal(err) => return Err(err),
        }
        Ok(())
    }

    /// Reads the counter's value, version and generation.
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
                    czxid: stat.czxid,
                    at: Instant::now(),
                }),
                Err(err) => Err(ReadError::Failed(Failure::Fatal(err))),
            },
            Ok(Err(zk::Error::NoNode)) => Err(ReadError::NotFound),
            Ok(Err(err)) => Err(ReadError::Failed(classify(err))),
        }
    }

    /// Reads the receipt `name`, retrying transport failures until the deadline.
    async fn read_receipt(
        &mut self,
        handle: &Handle,
        name: &str,
        deadline: Instant,
    ) -> ReceiptRead {
        let path = receipt_path(name);
        let mut handle = handle.clone();
        loop {
            let read = tokio::time::timeout_at(deadline, handle.client.get_data(&path)).await;
            let failure = match read {
                Ok(Ok((data, _))) => {
                    return decode_receipt(&path, &data)
                        .map_or(ReceiptRead::Unreadable, ReceiptRead::Found);
                }
                Ok(Err(zk::Error::NoNode)) => return ReceiptRead::Absent,
                Ok(Err(err)) => classify(err),
                Err(_elapsed) => Failure::Lost,
            };
            match failure {
                Failure::Fatal(_) => return ReceiptRead::Unreadable,
                Failure::Expired => self.client.session.invalidate(handle.generation),
                Failure::Lost | Failure::Refused => self.backoff.after_failure(deadline).await,
            }
            handle = match self.client.session.client(deadline).await {
                Ok(handle) => handle,
                Err(_) => return ReceiptRead::Unreadable,
            };
        }
    }
}
