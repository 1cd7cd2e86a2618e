//! [`Event`]s a [`Node`](crate::Node) reports to its runtime.

use std::net::SocketAddr;

use crate::{CounterName, LimitKind, NodeId};

/// Something the runtime may want to log, export or react to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A peer became an active member.
    MemberUp(NodeId),
    /// A peer was declared down (it left, or stopped answering probes). Its counts stay
    /// in every counter: membership never deletes counter state.
    MemberDown(NodeId),
    /// A peer restarted or renewed its identity at the same address.
    MemberRenamed {
        /// The identity that was known.
        old: NodeId,
        /// The identity that replaced it.
        new: NodeId,
    },
    /// At least one peer knows this node: it has joined a cluster.
    Joined,
    /// Every known peer is down or gone; the node keeps counting locally and keeps
    /// announcing itself to its seeds.
    Isolated,
    /// The cluster declared this node down and it renewed its identity to rejoin.
    Rejoined(NodeId),
    /// The cluster declared this node down and it cannot renew its identity.
    Defunct,
    /// This node's own total for a counter reached `u64::MAX` in one direction; further
    /// adds in that direction are counted locally but cannot be gossiped.
    Saturated(CounterName),
    /// A [`Limits`](crate::Limits) bound refused entries, actors or counters: totals
    /// at this node lack what was refused until the limit is raised (the refused
    /// entries are offered again by later exchanges). Reported at most once a minute per
    /// kind; `refused` counts what was refused since the previous report.
    LimitReached {
        /// Which bound.
        kind: LimitKind,
        /// Its configured value.
        limit: usize,
        /// Refusals since the previous report.
        refused: u64,
    },
    /// A peer sent entries that contradict what this node holds (another counter already
    /// holds the actor's version), or claimed versions of this node's own actor that it
    /// never issued. They were refused; the peer's state is corrupt or forged. Reported
    /// at most once a minute; the counts cover everything since the previous report.
    Refused {
        /// The peer that sent the latest refused data.
        from: SocketAddr,
        /// Entries refused for a conflicting version.
        conflicting: u64,
        /// Runs refused for claiming own versions never issued.
        own_refused: u64,
    },
    /// A sink completed here: the actors it covers are pruned (dropped, tombstoned) and
    /// count through the sink from now on.
    Pruned {
        /// The sink.
        sink: crate::ActorId,
        /// Actors it covers.
        covered: usize,
        /// Of those, actors whose entries this node held and dropped.
        dropped: usize,
    },
    /// A sink was refused: it covers an actor that another sink already covers here (two
    /// pruners folded it, which the protocol prevents unless a partition outlasted
    /// `after_down`), or this node's own actor. It stays held and never counts, so
    /// nothing is counted twice; the counts it alone holds are missing here.
    SinkRefused(crate::ActorId),
    /// The node built a message it could not encode. This is a bug: the message was
    /// dropped and the node carries on, and anti-entropy resends what mattered.
    InternalError(String),
}
