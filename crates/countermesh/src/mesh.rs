//! [`Mesh`]: a running node. Counter handles, reads, flush, membership, metrics, stop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use countermesh_core::{ActorId, CounterName, MessageKind, NodeId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::info;

use crate::driver::Shared;
use crate::durability::Request;
use crate::metrics::{
    DurabilityMetrics, MeshMetrics, PeerLag, PruningMetrics, RefusalMetrics, read,
};
use crate::storage::Storage;
use crate::{Counter, Member, MeshBuilder, MeshError, StorageError};

pub(crate) struct Inner {
    pub(crate) shared: Arc<Shared>,
    pub(crate) committer: Option<(mpsc::Sender<Request>, JoinHandle<()>)>,
    pub(crate) storage: Option<Arc<Storage>>,
    pub(crate) id: NodeId,
    pub(crate) local_addr: SocketAddr,
    pub(crate) data_dir: Option<PathBuf>,
}

/// One running countermesh node: **eventually consistent** counters shared with every
/// peer of the cluster.
///
/// Reads ([`Counter::value`], [`Mesh::value`]) return this node's view: its own adds
/// plus what it has merged from peers so far. They converge to the exact sum of every
/// add in the cluster once gossip has delivered them (a few gossip intervals on a
/// healthy network); they are never linearizable. Use `countermesh-strict` for that.
///
/// Stop a mesh with [`Mesh::shutdown`] (flush, announce leave, close). Dropping it
/// instead stops every task at once, as a crash would, without leaving or flushing.
pub struct Mesh {
    inner: Option<Inner>,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_struct("Mesh");
        if let Some(inner) = &self.inner {
            s.field("id", &inner.id)
                .field("local_addr", &inner.local_addr);
        }
        s.finish_non_exhaustive()
    }
}

/// One counter's value as this node sees it, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterValue {
    /// The counter.
    pub name: CounterName,
    /// Its merged, eventually consistent value (exact: `i128` cannot overflow here).
    pub value: i128,
    /// How many actors (nodes, past and present) contributed to it.
    pub contributors: usize,
}

impl Mesh {
    /// Starts configuring a node.
    pub fn builder() -> MeshBuilder {
        MeshBuilder::default()
    }

    pub(crate) fn from_inner(inner: Inner) -> Self {
        Self { inner: Some(inner) }
    }

    fn inner(&self) -> &Inner {
        // `inner` is only taken by the consuming `shutdown`/`kill` and by `Drop`.
        self.inner
            .as_ref()
            .expect("present until shutdown, kill or drop consumes the mesh")
    }

    /// A handle to the counter `name`, created (at 0) if this node has not seen it.
    ///
    /// The handle is cheap to clone and share between threads; keep it rather than
    /// calling this per add. Names are 1 to 256 bytes of UTF-8 without control
    /// characters.
    pub fn counter(&self, name: &str) -> Result<Counter, MeshError> {
        self.health()?;
        let mut locked = self.inner().shared.lock();
        Ok(locked.node.store_mut().counter(name)?)
    }

    /// How many counters this node knows: those created here and those learned from
    /// peers.
    pub fn counter_count(&self) -> usize {
        self.inner().shared.lock().node.store().len()
    }

    /// The eventually consistent value of `name` with how many actors contributed, or
    /// `None` if this node has never heard of it.
    pub fn value(&self, name: &str) -> Option<CounterValue> {
        let locked = self.inner().shared.lock();
        let store = locked.node.store();
        let value = store.value(name)?;
        Some(CounterValue {
            name: CounterName::new(name).ok()?,
            value,
            contributors: store.contributors(name).unwrap_or(0),
        })
    }

    /// Every counter whose name starts with `prefix`, sorted by name.
    pub fn counters(&self, prefix: &str) -> Vec<CounterValue> {
        let locked = self.inner().shared.lock();
        let store = locked.node.store();
        let mut out: Vec<CounterValue> = store
            .values()
            .filter(|(name, _)| name.as_str().starts_with(prefix))
            .map(|(name, value)| CounterValue {
                name: name.clone(),
                value,
                contributors: store.contributors(name.as_str()).unwrap_or(0),
            })
            .collect();
        out.sort_by(|a, b| a.name.as_str().cmp(b.name.as_str()));
        out
    }

    /// The first `limit` counters (by name) whose name starts with `prefix`, and whether
    /// more matched. Unlike [`Mesh::counters`] it copies only what it returns, so a
    /// status page or listing stays cheap on a node with a million counters.
    pub fn counters_page(&self, prefix: &str, limit: usize) -> (Vec<CounterValue>, bool) {
        self.counters_page_after(prefix, "", limit)
    }

    /// Like [`Mesh::counters_page`], but only counters whose name sorts after `after`:
    /// passing the last name of one page gives the next, so a listing can be walked in
    /// bounded pages. The bool says whether more matched after this page.
    pub fn counters_page_after(
        &self,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> (Vec<CounterValue>, bool) {
        use std::collections::BinaryHeap;
        let locked = self.inner().shared.lock();
        let store = locked.node.store();
        // A max-heap of the `limit` smallest names seen so far.
        let mut heap: BinaryHeap<(&str, i128)> = BinaryHeap::with_capacity(limit.min(4096) + 1);
        let mut matched = 0usize;
        for (name, value) in store.values() {
            if !name.as_str().starts_with(prefix) || name.as_str() <= after {
                continue;
            }
            matched += 1;
            if limit == 0 {
                continue;
            }
            if heap.len() < limit {
                heap.push((name.as_str(), value));
            } else if heap.peek().is_some_and(|(top, _)| name.as_str() < *top) {
                heap.pop();
                heap.push((name.as_str(), value));
            }
        }
        let page: Vec<CounterValue> = heap
            .into_sorted_vec()
            .into_iter()
            .filter_map(|(name, value)| {
                Some(CounterValue {
                    name: CounterName::new(name).ok()?,
                    value,
                    contributors: store.contributors(name).unwrap_or(0),
                })
            })
            .collect();
        let truncated = matched > page.len();
        (page, truncated)
    }

    /// Whether the node is healthy: `Err(MeshError::Failed)` once one of its tasks died
    /// (a bug). A failed node has stopped gossiping and closed its endpoint, so peers
    /// declare it down instead of keeping a zombie member; restart it.
    pub fn health(&self) -> Result<(), MeshError> {
        match self.inner().shared.failure() {
            Some(reason) => Err(MeshError::Failed(reason.to_owned())),
            None => Ok(()),
        }
    }

    /// Makes every add made before this call durable in the data directory. Without a
    /// data directory this folds pending adds into the gossiped state and returns:
    /// nothing is durable then.
    pub async fn flush(&self) -> Result<(), MeshError> {
        self.health()?;
        let inner = self.inner();
        let Some((requests, _)) = &inner.committer else {
            inner.shared.with_node(|node, _| {
                node.store_mut().flush();
            });
            return Ok(());
        };
        let (waiter, answer) = oneshot::channel();
        requests
            .send(Request::Flush(waiter))
            .await
            .map_err(|_| MeshError::ShutDown)?;
        match answer.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) if matches!(*error, StorageError::Closed) => Err(MeshError::ShutDown),
            Ok(Err(error)) => Err(MeshError::Flush(error)),
            Err(_) => Err(MeshError::ShutDown),
        }
    }

    /// Makes the node's timer task panic, as a bug in it would: the mesh must then fail
    /// loudly ([`Mesh::health`]) rather than linger as a zombie member. For tests.
    #[cfg(feature = "fault-injection")]
    pub fn inject_timer_panic(&self) {
        let shared = &self.inner().shared;
        shared
            .panic_timer
            .store(true, std::sync::atomic::Ordering::Relaxed);
        shared.wake_timer();
    }

    /// This node's identity (address, actor, incarnation).
    pub fn id(&self) -> &NodeId {
        &self.inner().id
    }

    /// The actor whose counts this node carries. Every start of a node gets a fresh one,
    /// even from the same data directory (earlier incarnations' counts stay, under their
    /// own actors).
    pub fn actor_id(&self) -> ActorId {
        self.inner().id.actor()
    }

    /// The socket address the node is bound to (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner().local_addr
    }

    /// The data directory, if the node has one.
    pub fn data_dir(&self) -> Option<&Path> {
        self.inner().data_dir.as_deref()
    }

    /// Every peer SWIM knows, with its state. Down members stay listed for a while so
    /// operators can see who left; their counts stay in every counter for good.
    pub fn members(&self) -> Vec<Member> {
        let locked = self.inner().shared.lock();
        let mut members: Vec<Member> = locked
            .node
            .membership()
            .map(|(id, state)| Member {
                addr: id.addr(),
                actor: id.actor(),
                incarnation: id.incarnation(),
                state: state.into(),
            })
            .collect();
        members.sort_by_key(|m| (m.addr, m.incarnation));
        members
    }

    /// A snapshot of this node's metrics.
    pub fn metrics(&self) -> MeshMetrics {
        let inner = self.inner();
        let members = self.members();
        let shared = &inner.shared;
        let locked = shared.lock();
        let node = &locked.node;
        let store = node.store();
        let stats = node.stats();
        let local = store.local_version();
        let tombstones = store.tombstone_count();
        let mut peer_lag: Vec<PeerLag> = node
            .acknowledged_versions()
            .map(|(addr, acked)| PeerLag {
                addr,
                versions_behind: local.saturating_sub(acked),
            })
            .collect();
        peer_lag.sort_by_key(|lag| lag.addr);
        let counters = &shared.counters;
        MeshMetrics {
            members,
            counters: store.len(),
            actors: store.actor_count(),
            rounds: stats.rounds,
            sent: MessageKind::ALL
                .iter()
                .map(|&kind| {
                    let (messages, bytes) = stats.sent(kind);
                    (kind, messages, bytes)
                })
                .collect(),
            received: MessageKind::ALL
                .iter()
                .map(|&kind| {
                    let (messages, bytes) = stats.received(kind);
                    (kind, messages, bytes)
                })
                .collect(),
            messages_dropped: stats.messages_dropped,
            entries_merged: stats.entries_merged,
            transport: counters.transport(),
            durability: DurabilityMetrics {
                commits: read(&counters.commits),
                commit_failures: read(&counters.commit_failures),
                entries_written: read(&counters.entries_written),
                last_commit_micros: read(&counters.last_commit_micros),
                local_version: local,
                durable_version: read(&counters.durable_version),
            },
            peer_lag,
            refusals: RefusalMetrics {
                limit_refusals: stats.limit_refusals,
                entries_conflicting: stats.entries_conflicting,
                own_runs_refused: stats.own_runs_refused,
                internal_errors: stats.internal_errors,
                task_failures: read(&counters.task_failures),
            },
            pruning: PruningMetrics {
                prunes: stats.prunes,
                sinks_completed: stats.sinks_completed,
                actors_pruned: stats.actors_pruned,
                entries_refused: stats.entries_pruned_refused,
                tombstones: tombstones as u64,
            },
            failure: shared.failure().map(str::to_owned),
        }
    }

    /// Stops gracefully: makes every add durable (with a data directory), pushes this
    /// node's last changes, announces that it leaves, and closes every connection and
    /// task. Peers keep this node's counts.
    pub async fn shutdown(mut self) -> Result<(), MeshError> {
        let flushed = if self.inner().committer.is_some() {
            self.flush().await
        } else {
            Ok(())
        };
        let Some(inner) = self.inner.take() else {
            return Ok(());
        };
        inner
            .shared
            .leaving
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(reason) = inner.shared.failure() {
            // A failed node has already closed its endpoint; there is no one to tell.
            let reason = reason.to_owned();
            stop(inner).await;
            return Err(MeshError::Failed(reason));
        }
        inner.shared.with_node(|node, now| {
            node.gossip_now(now);
            node.leave(now);
        });
        // Let the queues drain and the peers acknowledge the last deltas (bounded), so
        // the leave announcement and this node's final adds reach the cluster.
        inner.shared.transport.drain().await;
        stop(inner).await;
        info!("mesh shut down");
        flushed
    }

    /// Stops at once, as a crash would: no final commit, no leave announcement, no
    /// draining. Adds not yet committed are lost. Meant for tests and for embedding
    /// applications that must exit immediately; waits until every task has ended and
    /// the data directory is closed, so a new mesh may open it right after.
    pub async fn kill(mut self) {
        if let Some(inner) = self.inner.take() {
            stop(inner).await;
        }
    }
}

async fn stop(inner: Inner) {
    let Inner {
        shared,
        committer,
        storage,
        ..
    } = inner;
    // Tasks ending from here on are being stopped, not failing.
    shared
        .stopping
        .store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some((requests, handle)) = committer {
        let _ = requests.send(Request::Stop).await;
        let _ = handle.await;
    }
    shared.transport.endpoint().close(0u32.into(), b"shutdown");
    shared.tasks.shutdown().await;
    shared.transport.forget_all();
    // Bounded: a peer that never acknowledges the close must not hold us up.
    let _ = tokio::time::timeout(
        Duration::from_millis(500),
        shared.transport.endpoint().wait_idle(),
    )
    .await;
    drop(storage);
}

impl Drop for Mesh {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner
                .shared
                .stopping
                .store(true, std::sync::atomic::Ordering::Relaxed);
            if let Some((requests, _)) = &inner.committer {
                let _ = requests.try_send(Request::Stop);
            }
            inner
                .shared
                .transport
                .endpoint()
                .close(0u32.into(), b"dropped");
            inner.shared.tasks.abort_now();
            inner.shared.transport.forget_all();
        }
    }
}
