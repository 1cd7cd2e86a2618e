//! [`VersionIndex`]: which counter holds each `(actor, version)`.
//!
//! Two uses. Answering a digest needs "every entry of actor A with a version above w"
//! in version order; with the index that costs O(log n + answer), not a scan of every
//! entry of every counter. And an actor's versions must be unique across its entries
//! (each version is one change of one counter): a second counter claiming a version the
//! index already maps elsewhere is a conflicting entry and is refused.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::actors::ActorIdx;

/// `(actor, version) -> slot` for every entry whose version is above 0.
#[derive(Debug, Default)]
pub(crate) struct VersionIndex {
    map: BTreeMap<(ActorIdx, u64), u32>,
}

impl VersionIndex {
    /// The slot holding `actor`'s entry at `version`, if any.
    pub(crate) fn get(&self, actor: ActorIdx, version: u64) -> Option<u32> {
        self.map.get(&(actor, version)).copied()
    }

    /// Records that `slot`'s entry of `actor` moved from version `old` (0 = new entry) to
    /// `new`.
    pub(crate) fn moved(&mut self, actor: ActorIdx, slot: u32, old: u64, new: u64) {
        if old > 0 {
            let removed = self.map.remove(&(actor, old));
            debug_assert_eq!(removed, Some(slot), "index out of step");
        }
        if new > 0 {
            self.map.insert((actor, new), slot);
        }
    }

    /// `actor`'s entries with a version above `after`, ascending: `(version, slot)`.
    pub(crate) fn above(
        &self,
        actor: ActorIdx,
        after: u64,
    ) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.map
            .range((
                Bound::Excluded((actor, after)),
                Bound::Included((actor, u64::MAX)),
            ))
            .map(|(&(_, version), &slot)| (version, slot))
    }

    /// Number of indexed entries.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}
