//! [`Member`]: a peer as SWIM membership sees it.

use std::net::SocketAddr;

use countermesh_core::ActorId;

/// A peer's membership state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberState {
    /// Answering probes.
    Alive,
    /// Missed probes; the cluster is waiting for it to refute the suspicion.
    Suspect,
    /// Declared down (it left, or stopped answering). Its counts stay in every counter.
    Down,
}

impl MemberState {
    /// A lowercase name for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Alive => "alive",
            MemberState::Suspect => "suspect",
            MemberState::Down => "down",
        }
    }
}

impl From<countermesh_core::foca::State> for MemberState {
    fn from(state: countermesh_core::foca::State) -> Self {
        match state {
            countermesh_core::foca::State::Alive => MemberState::Alive,
            countermesh_core::foca::State::Suspect => MemberState::Suspect,
            countermesh_core::foca::State::Down => MemberState::Down,
        }
    }
}

/// A peer known to this node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Member {
    /// Where the peer listens.
    pub addr: SocketAddr,
    /// The actor whose counts the peer carries.
    pub actor: ActorId,
    /// Which start of the peer this is (milliseconds since the Unix epoch at start,
    /// bumped when SWIM renews the identity).
    pub incarnation: u64,
    /// The peer's membership state.
    pub state: MemberState,
}
