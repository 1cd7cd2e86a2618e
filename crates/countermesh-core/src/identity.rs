//! [`NodeId`]: a node's SWIM identity (address, actor, incarnation).

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::ActorId;

/// How a node is known to SWIM membership: where to reach it, whose counts it carries,
/// and which start of the process this is.
///
/// `incarnation` must grow across restarts of a node at the same address (runtimes use
/// the start time in milliseconds since the Unix epoch), so that a restarted node's new
/// identity wins over its old one, which peers may still remember as down. foca renews
/// an identity that was wrongly declared down by bumping the incarnation.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeId {
    addr: SocketAddr,
    actor: ActorId,
    incarnation: u64,
}

impl NodeId {
    /// A node reachable at `addr`, carrying `actor`, started as `incarnation` (must be
    /// at least 1; 0 is reserved for seed placeholders).
    pub fn new(addr: SocketAddr, actor: ActorId, incarnation: u64) -> Self {
        Self {
            addr,
            actor,
            incarnation: incarnation.max(1),
        }
    }

    /// A placeholder for a seed known only by address: any real identity at that
    /// address wins over it.
    pub(crate) fn seed(addr: SocketAddr) -> Self {
        Self {
            addr,
            actor: ActorId::from_u64(0),
            incarnation: 0,
        }
    }

    /// Where the node listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The actor whose counts this node carries.
    pub fn actor(&self) -> ActorId {
        self.actor
    }

    /// Which start of the node this is.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }
}

impl foca::Identity for NodeId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            incarnation: self.incarnation.checked_add(1)?,
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.incarnation, self.actor) > (adversary.incarnation, adversary.actor)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}#{}", self.actor, self.addr, self.incarnation)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
