//! [`Event`]s a [`Node`](crate::Node) reports to its runtime.

use crate::{CounterName, NodeId};

/// Something the runtime may want to log, export or react to.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}
