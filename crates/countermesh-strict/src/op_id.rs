//! Op-ids: the caller-chosen [`OpId`] that makes a retry from outside the process
//! exactly-once, and the generator of the client's own batch op-ids.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::rngs::{SmallRng, SysRng};
use rand::{Rng, SeedableRng};

use crate::error::StrictError;

/// A caller-chosen id of one write (add, set, compare-and-set) on one counter, such as an
/// HTTP `Idempotency-Key`.
///
/// A write carrying an op-id commits together with a receipt named after it. Sending the
/// same op-id again, from this process or any other client of the same ZooKeeper root,
/// returns the **original** result and applies nothing; sending it with a different
/// operation returns [`StrictError::OpIdReused`]. This holds for
/// [`crate::StrictOptions::receipt_max_age`] (10 minutes by default) after the first
/// commit, measured by ZooKeeper's clock; after that the receipt may be swept and the
/// op-id is forgotten. An operation that failed with a "no effect" error left no receipt,
/// so retrying it really runs it.
///
/// Accepted: 1 to [`OpId::MAX_LEN`] bytes of ASCII letters, digits, `-`, `_`, `.` and
/// `~` (URL-unreserved characters: UUIDs, ULIDs, hex and unpadded base64url fit).
/// Op-ids are per counter: the same op-id on two counters names two operations.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(String);

impl OpId {
    /// The longest accepted op-id, in bytes.
    pub const MAX_LEN: usize = 128;

    /// Validates `id`.
    pub fn new(id: impl Into<String>) -> Result<Self, StrictError> {
        let id = id.into();
        let reason = if id.is_empty() {
            Some("empty")
        } else if id.len() > Self::MAX_LEN {
            Some("longer than 128 bytes")
        } else if !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
        {
            Some("only ASCII letters, digits, '-', '_', '.' and '~' are allowed")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(StrictError::InvalidOpId { op_id: id, reason }),
            None => Ok(Self(id)),
        }
    }

    /// The op-id as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for OpId {
    type Err = StrictError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for OpId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Hands out the client's own op-ids, unique across processes: a 128-bit random prefix
/// drawn once per client, then a counter. They are lowercase hex and `-` only, so they
/// can never collide with the receipts of caller-chosen op-ids (`k:…`) or roll fences
/// (`roll:…`).
#[derive(Debug)]
pub(crate) struct OpIds {
    prefix: String,
    next: AtomicU64,
}

impl OpIds {
    pub(crate) fn new() -> Self {
        let mut rng = SmallRng::try_from_rng(&mut SysRng).unwrap_or_else(|_| fallback_rng());
        let prefix = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
        Self {
            prefix,
            next: AtomicU64::new(0),
        }
    }

    /// A fresh op-id.
    pub(crate) fn next(&self) -> String {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{seq:016x}", self.prefix)
    }
}

/// Seeds from the clock, the process id and std's per-process hash keys when the OS
/// random source fails, so op-ids stay unique across processes even then.
fn fallback_rng() -> SmallRng {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(since) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since.as_nanos());
    }
    SmallRng::seed_from_u64(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_op_ids_are_unique_and_znode_safe() {
        let a = OpIds::new();
        let b = OpIds::new();
        let ids = [a.next(), a.next(), b.next()];
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[0], ids[2]);
        for id in &ids {
            assert!(
                id.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-'),
                "{id}"
            );
        }
    }

    #[test]
    fn caller_op_ids_accept_common_key_formats() {
        for ok in [
            "3f1c2a9e-7b4d-4c1a-9f0e-2d5b8c7a6e10",
            "01HZY3J5Q8K9V2W7X4N6M0P1R3",
            "a",
            "retry_1.v2~x",
            &"x".repeat(OpId::MAX_LEN),
        ] {
            assert_eq!(OpId::new(ok).map(|id| id.to_string()), Ok(ok.to_owned()));
        }
    }

    #[test]
    fn caller_op_ids_reject_what_could_break_a_znode_name() {
        let long = "x".repeat(OpId::MAX_LEN + 1);
        for bad in [
            "",
            "a/b",
            "a:b",
            "with space",
            "ü",
            "a\nb",
            "abc=",
            long.as_str(),
        ] {
            assert!(
                matches!(OpId::new(bad), Err(StrictError::InvalidOpId { .. })),
                "{bad:?} was accepted"
            );
        }
    }
}
