//! One attempt of a batch as a ZooKeeper `multi`: which operations it holds, in which
//! order, and what a failure at each index means.
//!
//! The order is fixed: the batch receipt first (so that a retry of an attempt that
//! already committed fails right there with `NodeExists`), then the roll fence if one is
//! needed, then the counter itself, then the receipts of caller-chosen op-ids, then
//! deletes of finished receipts.
//!
//! **Version wrap.** ZooKeeper's data version is an `int` that wraps to negative after
//! 2^31 − 1 changes, and `-1` means "any version" to `check` and `setData`: a counter
//! at that version would lose its guard. So the counter is never conditioned on a
//! negative version, and a write that finds the version at or past [`ROLL_VERSION`] (or
//! negative, if something else wrapped it) rolls the counter to a fresh znode generation
//! instead: `delete(counter, version)` + `create(counter, value)` in the same `multi`,
//! which is as much a compare-and-set as `setData` and leaves the new generation at
//! version 0. At the wildcard version `-1` the delete cannot be conditioned, so a fence
//! receipt named after the generation's creation zxid (`receipts/roll:<name>:<czxid>`)
//! lets exactly one writer roll it.

use std::time::Duration;

use tokio::time::Instant;
use zookeeper_client as zk;

use crate::encoding::encode;
use crate::receipts::{encode_batch, fence_name, receipt_path};

/// The data version at which the next write of a counter rolls it to a fresh znode
/// generation (version 0) instead of incrementing the version. 2^20 below `i32::MAX`,
/// so that writers that do not roll (older versions of this crate, other tools) still
/// have room before the wrap.
pub const ROLL_VERSION: i32 = i32::MAX - (1 << 20);

/// The counter's value and data version as of the last transaction a combiner saw.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Known {
    pub(crate) value: i64,
    pub(crate) version: i32,
    /// The zxid that created this znode generation.
    pub(crate) czxid: i64,
    /// When it was learned, to bound how long it is trusted.
    pub(crate) at: Instant,
}

/// How an attempt writes the counter znode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CounterWrite {
    /// The value does not change: `check_version`, which still makes the attempt a quorum
    /// transaction that pins the value.
    Check,
    /// `set_data` conditioned on the version.
    Set,
    /// Delete this generation and create the next one (version 0).
    Roll {
        /// The version is the wildcard `-1`: a fence receipt guards the delete.
        fenced: bool,
    },
}

impl CounterWrite {
    /// How to write a counter known as `known` so that it ends at `end`.
    pub(crate) fn for_attempt(known: &Known, end: i64) -> Self {
        if known.version < 0 {
            Self::Roll {
                fenced: known.version == -1,
            }
        } else if end == known.value {
            Self::Check
        } else if known.version >= ROLL_VERSION {
            Self::Roll { fenced: false }
        } else {
            Self::Set
        }
    }
}

/// What the operation at one index of the `multi` is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// `create(receipts/<op-id>)` of the batch.
    BatchReceipt,
    /// `create(receipts/roll:…)` guarding a roll at version `-1`.
    Fence,
    /// The write of the counter: check, set, or the delete of a roll.
    Counter,
    /// The create of the counter's next generation in a roll.
    NextGeneration,
    /// `create(receipts/k:…)` of the slot with this index.
    KeyReceipt(usize),
    /// The delete of the finished receipt with this index in the attempt's delete list.
    Delete(usize),
}

/// What one attempt writes besides the counter.
#[derive(Debug)]
pub(crate) struct Spec<'a> {
    pub(crate) name: &'a str,
    pub(crate) path: &'a str,
    pub(crate) known: Known,
    pub(crate) end: i64,
    /// The batch's op-id, if it writes.
    pub(crate) op_id: Option<&'a str>,
    /// Receipts of caller-chosen op-ids: slot index, receipt name, data.
    pub(crate) keyed: Vec<(usize, String, Vec<u8>)>,
    pub(crate) deletes: &'a [String],
    pub(crate) mode: &'a zk::CreateOptions<'static>,
    /// The writer's receipt hold ([`crate::StrictOptions::receipt_max_age`]).
    pub(crate) hold: Duration,
}

/// The layout of one built attempt.
#[derive(Debug)]
pub(crate) struct Plan {
    roles: Vec<Role>,
    write: CounterWrite,
}

impl Plan {
    /// Adds the attempt's operations to `writer` in the fixed order.
    pub(crate) fn build(
        writer: &mut zk::MultiWriter<'_>,
        spec: &Spec<'_>,
    ) -> Result<Self, zk::Error> {
        let known = spec.known;
        let write = CounterWrite::for_attempt(&known, spec.end);
        let mut roles = Vec::with_capacity(4 + spec.keyed.len() + spec.deletes.len());
        if let Some(op_id) = spec.op_id {
            writer.add_create(
                &receipt_path(op_id),
                &encode_batch(known.value, spec.hold),
                spec.mode,
            )?;
            roles.push(Role::BatchReceipt);
        }
        let data = encode(spec.end);
        match write {
            CounterWrite::Check => {
                writer.add_check_version(spec.path, known.version)?;
                roles.push(Role::Counter);
            }
            CounterWrite::Set => {
                writer.add_set_data(spec.path, &data, Some(known.version))?;
                roles.push(Role::Counter);
            }
            CounterWrite::Roll { fenced } => {
                if fenced {
                    writer.add_create(
                        &receipt_path(&fence_name(spec.name, known.czxid)),
                        &encode_batch(known.value, spec.hold),
                        spec.mode,
                    )?;
                    roles.push(Role::Fence);
                }
                // At -1 the delete is unconditional; the fence above is its guard.
                let version = (!fenced).then_some(known.version);
                writer.add_delete(spec.path, version)?;
                roles.push(Role::Counter);
                writer.add_create(spec.path, &data, spec.mode)?;
                roles.push(Role::NextGeneration);
            }
        }
        for (slot, name, data) in &spec.keyed {
            writer.add_create(&receipt_path(name), data, spec.mode)?;
            roles.push(Role::KeyReceipt(*slot));
        }
        for (i, old) in spec.deletes.iter().enumerate() {
            writer.add_delete(&receipt_path(old), None)?;
            roles.push(Role::Delete(i));
        }
        Ok(Self { roles, write })
    }

    /// What the operation at `index` is for.
    pub(crate) fn role(&self, index: usize) -> Option<Role> {
        self.roles.get(index).copied()
    }

    /// What the counter is known to be after the attempt committed with `replies`, or
    /// `None` if that cannot be trusted. A negative version is never cached.
    pub(crate) fn after_commit(
        &self,
        known: Known,
        end: i64,
        replies: &[zk::MultiWriteResult],
    ) -> Option<Known> {
        let at = Instant::now();
        match self.write {
            CounterWrite::Check => Some(Known { at, ..known }),
            CounterWrite::Set => replies.iter().find_map(|reply| match reply {
                zk::MultiWriteResult::SetData { stat } if stat.version >= 0 => Some(Known {
                    value: end,
                    version: stat.version,
                    czxid: stat.czxid,
                    at,
                }),
                _ => None,
            }),
            // A fresh znode is at version 0 by definition; its creation zxid is only
            // needed for a roll at version -1, which a fresh generation is far from.
            CounterWrite::Roll { .. } => Some(Known {
                value: end,
                version: 0,
                czxid: 0,
                at,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(value: i64, version: i32) -> Known {
        Known {
            value,
            version,
            czxid: 7,
            at: Instant::now(),
        }
    }

    #[test]
    fn never_conditions_on_a_negative_version() {
        assert_eq!(
            CounterWrite::for_attempt(&known(1, -1), 1),
            CounterWrite::Roll { fenced: true }
        );
        assert_eq!(
            CounterWrite::for_attempt(&known(1, -2), 2),
            CounterWrite::Roll { fenced: false }
        );
        assert_eq!(
            CounterWrite::for_attempt(&known(1, i32::MIN), 1),
            CounterWrite::Roll { fenced: false }
        );
    }

    #[test]
    fn rolls_before_the_wrap_and_only_when_writing() {
        assert_eq!(
            CounterWrite::for_attempt(&known(1, 5), 2),
            CounterWrite::Set
        );
        assert_eq!(
            CounterWrite::for_attempt(&known(1, 5), 1),
            CounterWrite::Check
        );
        assert_eq!(
            CounterWrite::for_attempt(&known(1, ROLL_VERSION - 1), 2),
            CounterWrite::Set
        );
        assert_eq!(
            CounterWrite::for_attempt(&known(1, ROLL_VERSION), 2),
            CounterWrite::Roll { fenced: false }
        );
        assert_eq!(
            CounterWrite::for_attempt(&known(1, i32::MAX), 1),
            CounterWrite::Check
        );
    }
}
