//! The typed errors every strict-mode operation returns.

use std::fmt;
use std::time::Duration;

use zookeeper_client as zk;

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

    /// A caller-supplied op-id ([`crate::OpId`]) is not acceptable. Nothing was sent to
    /// ZooKeeper.
    #[error("invalid op-id {op_id:?}: {reason}")]
    InvalidOpId {
        /// The rejected op-id.
        op_id: String,
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

    /// The znode's data is not in this crate's encoding (a counter holds exactly 8 bytes,
    /// a big-endian two's-complement `i64`). The znode was left as it is. No effect.
    #[error("znode {path} holds {len} bytes that are not in this crate's encoding")]
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

    /// The caller-supplied op-id was already used, within its lifetime, for a different
    /// operation on this counter (another kind, or other arguments). This request had no
    /// effect; the earlier operation keeps its result. Op-ids are per counter.
    #[error("op-id {op_id:?} was already used for a different operation on this counter")]
    OpIdReused {
        /// The op-id.
        op_id: String,
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

    /// The operation's write was sent and its outcome could not be learned before the
    /// deadline: its reply was lost and ZooKeeper stayed unreachable, so the retry that
    /// would have settled the question (through the op-id receipt) never got an answer;
    /// or the receipt proved the write committed but could not be read back. The write
    /// may or may not have taken effect; it is applied at most once either way. With a
    /// reachable quorum and untouched receipts this is never returned.
    #[error(
        "outcome unknown: the write was sent but ZooKeeper stayed unreachable for {deadline:?}"
    )]
    Ambiguous {
        /// The operation's op-id: its receipt znode is `receipts/<op_id>` and exists
        /// (until swept, [`crate::StrictOptions::receipt_max_age`]) exactly when the write
        /// took effect.
        op_id: String,
        /// The deadline that ran out.
        deadline: Duration,
    },

    /// ZooKeeper refused the request for a reason this crate does not retry (missing
    /// ACL permissions, failed authentication, an argument the server rejects). These
    /// are rejections with no effect.
    #[error("ZooKeeper error: {0}")]
    ZooKeeper(ZooKeeperError),
}

/// A ZooKeeper refusal, owned and independent of the client library's error type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ZooKeeperError {
    kind: ZooKeeperErrorKind,
    message: String,
}

/// What kind of refusal a [`ZooKeeperError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ZooKeeperErrorKind {
    /// The session lacks the ACL permission the request needs (`NoAuth`): for example an
    /// unauthenticated client on a tree created with creator-only ACLs.
    NoAuth,
    /// The server rejected the session's credentials (`AuthFailed`).
    AuthFailed,
    /// The ACL asked for cannot be set (`InvalidACL`): creator-only ACLs need an
    /// authenticated session.
    InvalidAcl,
    /// The server rejected an argument (`BadArguments`, `NoChildrenForEphemerals`, …).
    BadArguments,
    /// The server does not implement the request (`Unimplemented`).
    Unimplemented,
    /// Anything else, described by the message.
    Other,
}

impl fmt::Display for ZooKeeperErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoAuth => "not authorized",
            Self::AuthFailed => "authentication failed",
            Self::InvalidAcl => "invalid ACL",
            Self::BadArguments => "bad arguments",
            Self::Unimplemented => "unimplemented",
            Self::Other => "error",
        })
    }
}

impl ZooKeeperError {
    /// The kind of refusal.
    pub fn kind(&self) -> ZooKeeperErrorKind {
        self.kind
    }

    /// The client library's description of it.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn new(kind: ZooKeeperErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl From<zk::Error> for ZooKeeperError {
    fn from(err: zk::Error) -> Self {
        let kind = match err {
            zk::Error::NoAuth => ZooKeeperErrorKind::NoAuth,
            zk::Error::AuthFailed => ZooKeeperErrorKind::AuthFailed,
            zk::Error::InvalidAcl => ZooKeeperErrorKind::InvalidAcl,
            zk::Error::BadArguments(_) | zk::Error::NoChildrenForEphemerals => {
                ZooKeeperErrorKind::BadArguments
            }
            zk::Error::Unimplemented => ZooKeeperErrorKind::Unimplemented,
            _ => ZooKeeperErrorKind::Other,
        };
        Self::new(kind, err.to_string())
    }
}

impl From<zk::Error> for StrictError {
    fn from(err: zk::Error) -> Self {
        StrictError::ZooKeeper(err.into())
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = StrictError> = std::result::Result<T, E>;
