//! Actor identities: who contributed which part of a counter.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Identifies one incarnation of durable counter state.
///
/// A node keeps its `ActorId` for as long as it keeps its data: a restart with the same
/// data directory reuses it, a node whose data is lost must pick a fresh one with
/// [`ActorId::random`]. Reusing an old id after losing data would hide new increments
/// behind the maximum that peers already hold for that id, because merge takes the
/// per-actor maximum.
///
/// On the wire an `ActorId` is always 8 bytes (big-endian), never a varint: ids are
/// random, so a varint would cost 9 bytes for most of them.
///
/// The top bit tells the two kinds of actor apart: a node's actor has it clear, a *sink*
/// (the actor a pruner creates to hold the folded counts of departed actors, see
/// ARCHITECTURE.md, "Pruning") has it set.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "[u8; 8]", into = "[u8; 8]")]
pub struct ActorId(u64);

impl ActorId {
    /// The bit that marks a sink.
    const SINK: u64 = 1 << 63;

    /// Picks a random, non-zero node actor id (top bit clear). Zero is reserved for
    /// placeholders.
    pub fn random(rng: &mut impl Rng) -> Self {
        loop {
            let raw = rng.next_u64() & !Self::SINK;
            if raw != 0 {
                return Self(raw);
            }
        }
    }

    /// Picks a random sink actor id (top bit set).
    pub fn random_sink(rng: &mut impl Rng) -> Self {
        Self(rng.next_u64() | Self::SINK)
    }

    /// Whether this is a sink: an actor that holds the folded counts of pruned actors.
    pub const fn is_sink(self) -> bool {
        self.0 & Self::SINK != 0
    }

    /// Wraps a raw id, for example one read back from disk.
    pub const fn from_u64(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw id.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl From<[u8; 8]> for ActorId {
    fn from(bytes: [u8; 8]) -> Self {
        Self(u64::from_be_bytes(bytes))
    }
}

impl From<ActorId> for [u8; 8] {
    fn from(id: ActorId) -> Self {
        id.0.to_be_bytes()
    }
}

impl fmt::Debug for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActorId({:016x})", self.0)
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}
