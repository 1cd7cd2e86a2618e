//! [`MeshMetrics`]: a point-in-time snapshot of what a node has done, for logs, tests
//! and the agent's Prometheus exporter; and the atomic counters the runtime updates.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use countermesh_core::MessageKind;

use crate::Member;

/// A snapshot of a node's metrics. Counters (`*_total` style fields) only grow for the
/// life of the mesh; gauges reflect the moment of the snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshMetrics {
    /// Known peers with their membership state.
    pub members: Vec<Member>,
    /// Distinct counters this node knows.
    pub counters: usize,
    /// Distinct actors (nodes, past and present) that contributed to any counter.
    pub actors: usize,
    /// Gossip rounds run.
    pub rounds: u64,
    /// Per message kind: `(kind, messages sent, bytes sent)`.
    pub sent: Vec<(MessageKind, u64, u64)>,
    /// Per message kind: `(kind, messages received, bytes received)`.
    pub received: Vec<(MessageKind, u64, u64)>,
    /// Received messages dropped because they did not decode or were not acceptable.
    pub messages_dropped: u64,
    /// Remote entries merged into this node's state.
    pub entries_merged: u64,
    /// Transport-level figures.
    pub transport: TransportMetrics,
    /// Data directory figures (all zero without a data directory).
    pub durability: DurabilityMetrics,
    /// How far each peer is behind on this node's own counts.
    pub peer_lag: Vec<PeerLag>,
    /// Refusals and failures.
    pub refusals: RefusalMetrics,
    /// Pruning of departed actors (ARCHITECTURE.md, "Pruning").
    pub pruning: PruningMetrics,
    /// Why the node failed, if it did (see [`crate::Mesh::health`]).
    pub failure: Option<String>,
}

/// Transport-level counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportMetrics {
    /// Outbound messages dropped because the peer's send queue was full (backpressure).
    pub queue_full_drops: u64,
    /// Outbound messages dropped because the peer could not be reached or the send
    /// failed (the protocol's anti-entropy resends what matters).
    pub send_failures: u64,
    /// Outgoing connections established.
    pub connections_dialed: u64,
    /// Outgoing connection attempts that failed (including certificate rejections).
    pub dial_failures: u64,
    /// Incoming connections that completed the mutual-TLS handshake.
    pub connections_accepted: u64,
    /// Incoming connections refused during the handshake (no certificate from the
    /// cluster CA, wrong protocol, or a broken handshake).
    pub handshakes_rejected: u64,
    /// Incoming streams dropped for exceeding the message size limit or timing out.
    pub streams_rejected: u64,
    /// Messages queued for sending right now, over all peers.
    pub queued: u64,
    /// Incoming connections refused because the peer already had the maximum number
    /// open, or the node had its maximum in all.
    pub connections_refused: u64,
}

/// Data directory counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DurabilityMetrics {
    /// Group commits written.
    pub commits: u64,
    /// Group commits that failed (they are retried with the next one).
    pub commit_failures: u64,
    /// Entries written over all commits.
    pub entries_written: u64,
    /// Duration of the last commit, in microseconds.
    pub last_commit_micros: u64,
    /// This node's own version: one per changed counter per flush.
    pub local_version: u64,
    /// Highest own version on disk.
    pub durable_version: u64,
}

/// What the node refused or failed at: each figure only grows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefusalMetrics {
    /// Entries, actors or counters refused by a store limit, by
    /// [`countermesh_core::LimitKind::ALL`] (counters, actors, entries).
    pub limit_refusals: [u64; 3],
    /// Remote entries refused because another counter held their actor's version.
    pub entries_conflicting: u64,
    /// Runs refused for claiming versions of this node's own actor it never issued.
    pub own_runs_refused: u64,
    /// Messages the node built but could not encode (bugs).
    pub internal_errors: u64,
    /// Tasks that panicked or ended unexpectedly (the mesh fails at the first).
    pub task_failures: u64,
}

/// Pruning counters: each figure only grows, except `tombstones`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruningMetrics {
    /// Sinks this node made (prunes it performed as the pruner).
    pub prunes: u64,
    /// Sinks completed here, made here or received.
    pub sinks_completed: u64,
    /// Actors whose entries this node dropped because a completed sink covers them.
    pub actors_pruned: u64,
    /// Entries refused because their actor was pruned (or sealed below them).
    pub entries_refused: u64,
    /// Pruned actors remembered (one small record each), right now.
    pub tombstones: u64,
}

/// How far one peer is behind on this node's own counts, as of the peer's latest digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLag {
    /// The peer.
    pub addr: SocketAddr,
    /// This node's own versions the peer has not yet acknowledged holding (0 = caught
    /// up). One version is one changed counter in one gossip round.
    pub versions_behind: u64,
}

/// The runtime's own counters, shared by its tasks.
#[derive(Debug, Default)]
pub(crate) struct RuntimeCounters {
    pub(crate) queue_full_drops: AtomicU64,
    pub(crate) send_failures: AtomicU64,
    pub(crate) connections_dialed: AtomicU64,
    pub(crate) dial_failures: AtomicU64,
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) handshakes_rejected: AtomicU64,
    pub(crate) streams_rejected: AtomicU64,
    pub(crate) queued: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) commit_failures: AtomicU64,
    pub(crate) entries_written: AtomicU64,
    pub(crate) last_commit_micros: AtomicU64,
    pub(crate) durable_version: AtomicU64,
    pub(crate) task_failures: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
}

/// Adds one to a counter. Relaxed ordering: these are statistics, not synchronisation.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl RuntimeCounters {
    pub(crate) fn transport(&self) -> TransportMetrics {
        TransportMetrics {
            queue_full_drops: read(&self.queue_full_drops),
            send_failures: read(&self.send_failures),
            connections_dialed: read(&self.connections_dialed),
            dial_failures: read(&self.dial_failures),
            connections_accepted: read(&self.connections_accepted),
            handshakes_rejected: read(&self.handshakes_rejected),
            streams_rejected: read(&self.streams_rejected),
            queued: read(&self.queued),
            connections_refused: read(&self.connections_refused),
        }
    }
}
