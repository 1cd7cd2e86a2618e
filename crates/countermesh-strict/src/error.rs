//! The typed error every strict-mode operation returns.

use std::time::Duration;

/// Why a strict-mode operation failed.
///
/// Every variant says whether the operation took effect. Only [`StrictError::Ambiguous`]
/// leaves that open; every other variant means the operation had **no effect** on the
/// counter (or, for [`StrictError::ZooKeeper`], see its own note).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StrictError {
    /// The counter name is not usable as a znode name. Nothing was sent to ZooKeeper.
    #[error("invalid counter name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Which rule it broke.
        reason: &'static str,
    },

    /// The connect string or an option is unusable. Nothing was sent to ZooKeeper.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),

    /// The counter does not exist (it was never created, or it was deleted). No effect.
    #[error("counter {name:?} does not exist")]
    NotFound {
        /// The counter's name.
        name: String,
    },

    /// Adding `delta` to `current` would leave the `i64` range. The counter keeps
    /// `current`: overflow is an error, never a wrap.
    #[error("adding {delta} to {current} overflows i64")]
    Overflow {
        /// The counter's value when the add was ordered.
        current: i64,
        /// The rejected delta.
        delta: i64,
    },

    /// The znode's data is not in this crate's encoding (exactly 8 bytes, a big-endian
    /// two's-complement `i64`). The znode was left as it is.
    #[error("znode {path} holds {len} bytes, not an 8-byte big-endian i64")]
    Corrupt {
        /// The offending znode, relative to the client's root.
        path: String,
        /// How many bytes it holds.
        len: usize,
    },

    /// Other writers kept changing the counter: the retry budget
    /// ([`crate::StrictOptions::max_conflict_retries`]) was spent. No effect.
    #[error("gave up after {attempts} version conflicts")]
    Conflict {
        /// Attempts made, each one beaten by another writer.
        attempts: u32,
    },

    /// No ZooKeeper quorum could be reached before the operation's deadline, and no write
    /// of this operation can have taken effect. No effect.
    #[error("ZooKeeper unavailable within {deadline:?}")]
    Unavailable {
        /// The deadline that ran out ([`crate::StrictOptions::op_timeout`]).
        deadline: Duration,
    },

    /// The ZooKeeper session expired and
    /// [`crate::StrictOptions::reconnect_on_expiry`] is off, so the client does not open
    /// a new one. Returned only for operations whose outcome is known to be "no effect";
    /// one with a write in flight reports [`StrictError::Ambiguous`] instead.
    #[error("ZooKeeper session expired")]
    SessionExpired,

    /// The operation's write was sent, its reply was lost, and ZooKeeper stayed
    /// unreachable until the deadline, so the retry that would have settled the question
    /// (through the op-id receipt) never got an answer. The write may or may not have
    /// taken effect; it is applied at most once either way. With a reachable quorum this
    /// is never returned.
    #[error(
        "outcome unknown: the write was sent but ZooKeeper stayed unreachable for {deadline:?}"
    )]
    Ambiguous {
        /// The operation's op-id: its receipt znode is `receipts/<op_id>` and exists (until
        /// swept) exactly when the write took effect.
        op_id: String,
        /// The deadline that ran out.
        deadline: Duration,
    },

    /// ZooKeeper refused the request for a reason this crate does not retry (for
    /// example missing ACL permissions, or a protocol error). Permission and argument
    /// errors are rejections with no effect.
    #[error("ZooKeeper error: {0}")]
    ZooKeeper(#[source] zookeeper_client::Error),
}

/// Shorthand for results of this crate.
pub type Result<T, E = StrictError> = std::result::Result<T, E>;
