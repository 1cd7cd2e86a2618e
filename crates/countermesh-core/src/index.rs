//! [`VersionIndex`]: per actor, its entries in version order, and the only place an
//! entry's version is stored.
//!
//! Two uses. Answering a digest needs "every entry of actor A with a version above w"
//! in version order; with the index that costs O(log n + answer), not a scan of every
//! entry of every counter. And an actor's versions must be unique across its entries
//! (each version is one change of one counter): a second counter claiming a version the
//! index already maps elsewhere is a conflicting entry and is refused.
//!
//! Layout, chosen for memory: per actor a vector of 12-byte items `(version, slot)`
//! sorted by version, and each entry stores the position of its item (4 bytes) instead
//! of its version (8 bytes), so an indexed entry costs 24 + 12 bytes where an unindexed
//! one with a version cost 32. When an entry moves to a newer version its old item is
//! left vacant (the order stays intact) and a new one is appended; vacant items are
//! squeezed out once they outnumber the live ones, and the caller is told which entries'
//! positions moved. An actor with a single entry keeps its item inline, without a heap
//! allocation (a large mesh holds thousands of such actors per node).

use std::ops::Range;

/// Marks a vacant item.
const VACANT: u32 = u32::MAX;

/// One `(version, slot)`, 12 bytes (4-byte aligned, so no padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Item {
    lo: u32,
    hi: u32,
    slot: u32,
}

impl Item {
    fn new(version: u64, slot: u32) -> Self {
        Self {
            lo: version as u32,
            hi: (version >> 32) as u32,
            slot,
        }
    }

    fn version(&self) -> u64 {
        u64::from(self.hi) << 32 | u64::from(self.lo)
    }

    fn live(&self) -> bool {
        self.slot != VACANT
    }
}

/// One actor's items.
#[derive(Debug, Clone, Default)]
enum Items {
    #[default]
    Empty,
    One(Item),
    Many {
        items: Vec<Item>,
        vacant: u32,
    },
}

/// What a change to the index did to the positions of other items of the same actor;
/// the store updates the entries it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Moved {
    /// Nothing else moved.
    Nothing,
    /// The items at these positions (after the change) moved one place up.
    ShiftedUp(Range<u32>),
    /// The actor's items were compacted: every live item may have a new position.
    Compacted,
}

/// Per actor (by dense index), its items in version order.
#[derive(Debug, Default)]
pub(crate) struct VersionIndex {
    actors: Vec<Items>,
    live: usize,
}

impl VersionIndex {
    fn items(&self, actor: u32) -> &[Item] {
        match self.actors.get(actor as usize) {
            None | Some(Items::Empty) => &[],
            Some(Items::One(item)) => std::slice::from_ref(item),
            Some(Items::Many { items, .. }) => items,
        }
    }

    /// The version of the item at `pos`.
    pub(crate) fn version(&self, actor: u32, pos: u32) -> u64 {
        self.items(actor).get(pos as usize).map_or(0, Item::version)
    }

    /// The slot holding `actor`'s entry at `version`, if any.
    pub(crate) fn get(&self, actor: u32, version: u64) -> Option<u32> {
        let items = self.items(actor);
        let start = items.partition_point(|item| item.version() < version);
        items[start..]
            .iter()
            .take_while(|item| item.version() == version)
            .find(|item| item.live())
            .map(|item| item.slot)
    }

    /// `actor`'s live items with a version above `after`, ascending: `(version, slot)`.
    pub(crate) fn above(&self, actor: u32, after: u64) -> impl Iterator<Item = (u64, u32)> + '_ {
        let items = self.items(actor);
        let start = items.partition_point(|item| item.version() <= after);
        items[start..]
            .iter()
            .filter(|item| item.live())
            .map(|item| (item.version(), item.slot))
    }

    /// `actor`'s live items with their positions: `(pos, slot)`.
    pub(crate) fn positions(&self, actor: u32) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.items(actor)
            .iter()
            .enumerate()
            .filter(|(_, item)| item.live())
            .map(|(pos, item)| (pos as u32, item.slot))
    }

    /// Adds `actor`'s entry at `version` in `slot`. The version must not be indexed yet
    /// (the store checks with [`VersionIndex::get`] first). Returns its position and
    /// what moved.
    pub(crate) fn insert(&mut self, actor: u32, version: u64, slot: u32) -> (u32, Moved) {
        if self.actors.len() <= actor as usize {
            self.actors.resize(actor as usize + 1, Items::Empty);
        }
        self.live += 1;
        let item = Item::new(version, slot);
        let entry = &mut self.actors[actor as usize];
        match entry {
            Items::Empty => {
                *entry = Items::One(item);
                (0, Moved::Nothing)
            }
            Items::One(only) => {
                let only = *only;
                let (items, pos) = if only.version() < version {
                    (vec![only, item], 1)
                } else {
                    (vec![item, only], 0)
                };
                let vacant = u32::from(!only.live());
                *entry = Items::Many { items, vacant };
                let moved = if pos == 0 {
                    Moved::ShiftedUp(1..2)
                } else {
                    Moved::Nothing
                };
                (pos, moved)
            }
            Items::Many { items, vacant } => {
                if items.last().is_none_or(|last| last.version() < version) {
                    items.push(item);
                    return ((items.len() - 1) as u32, Moved::Nothing);
                }
                // Out of order (a late run): insert in place, shifting the tail, or
                // reuse a vacant item of the same version.
                let pos = items.partition_point(|i| i.version() < version);
                if items[pos].version() == version && !items[pos].live() {
                    items[pos] = item;
                    *vacant -= 1;
                    return (pos as u32, Moved::Nothing);
                }
                items.insert(pos, item);
                let moved = Moved::ShiftedUp(pos as u32 + 1..items.len() as u32);
                (pos as u32, moved)
            }
        }
    }

    /// Leaves the item at `pos` vacant (its entry moved to a newer version). Compacts the
    /// actor's items once vacant ones outnumber live ones; the store must then re-read
    /// every position of the actor ([`Moved::Compacted`]).
    pub(crate) fn vacate(&mut self, actor: u32, pos: u32) -> Moved {
        let Some(entry) = self.actors.get_mut(actor as usize) else {
            return Moved::Nothing;
        };
        match entry {
            Items::Empty => Moved::Nothing,
            Items::One(item) => {
                if item.live() {
                    self.live -= 1;
                }
                *entry = Items::Empty;
                Moved::Nothing
            }
            Items::Many { items, vacant } => {
                let Some(item) = items.get_mut(pos as usize).filter(|i| i.live()) else {
                    return Moved::Nothing;
                };
                item.slot = VACANT;
                self.live -= 1;
                *vacant += 1;
                let live = items.len() - *vacant as usize;
                if (*vacant as usize) <= live.max(4) {
                    return Moved::Nothing;
                }
                items.retain(Item::live);
                *vacant = 0;
                match items.len() {
                    0 => *entry = Items::Empty,
                    1 => *entry = Items::One(items[0]),
                    _ => items.shrink_to(items.len() * 2),
                }
                Moved::Compacted
            }
        }
    }

    /// Forgets every item of `actor` (it was pruned).
    pub(crate) fn clear(&mut self, actor: u32) {
        let live = self.items(actor).iter().filter(|i| i.live()).count();
        self.live -= live;
        if let Some(items) = self.actors.get_mut(actor as usize) {
            *items = Items::Empty;
        }
    }

    /// Number of live (indexed) entries.
    pub(crate) fn len(&self) -> usize {
        self.live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(index: &VersionIndex, actor: u32) -> Vec<(u64, u32)> {
        index.above(actor, 0).collect()
    }

    #[test]
    fn items_are_twelve_bytes_and_small_actors_stay_inline() {
        assert_eq!(size_of::<Item>(), 12);
        assert!(size_of::<Items>() <= 32);
    }

    #[test]
    fn insert_vacate_and_compact_keep_version_order() {
        let mut index = VersionIndex::default();
        assert_eq!(index.insert(3, 10, 100), (0, Moved::Nothing));
        assert_eq!(index.insert(3, 20, 200), (1, Moved::Nothing));
        // A late run: version 15 goes in between, the item at 1 moves up.
        assert_eq!(index.insert(3, 15, 150), (1, Moved::ShiftedUp(2..3)));
        assert_eq!(live(&index, 3), vec![(10, 100), (15, 150), (20, 200)]);
        assert_eq!(index.get(3, 15), Some(150));
        assert_eq!(index.version(3, 2), 20);
        assert_eq!(index.above(3, 10).count(), 2);
        // Vacating the first three of many compacts.
        for v in 21..30 {
            index.insert(3, v, v as u32);
        }
        let mut compacted = false;
        for pos in 0..9 {
            if index.vacate(3, pos) == Moved::Compacted {
                compacted = true;
                break;
            }
        }
        assert!(compacted);
        assert_eq!(index.len(), live(&index, 3).len());
        assert!(live(&index, 3).windows(2).all(|w| w[0].0 < w[1].0));
        for (pos, slot) in index.positions(3) {
            assert_eq!(index.get(3, index.version(3, pos)), Some(slot));
        }
        assert_eq!(index.get(3, 10), None);
    }

    #[test]
    fn one_item_actors_round_trip() {
        let mut index = VersionIndex::default();
        index.insert(0, 7, 1);
        assert_eq!(index.get(0, 7), Some(1));
        assert_eq!(index.vacate(0, 0), Moved::Nothing);
        assert_eq!(index.get(0, 7), None);
        assert_eq!(index.len(), 0);
        // Inserting below an existing single item shifts it.
        index.insert(1, 9, 2);
        assert_eq!(index.insert(1, 4, 3), (0, Moved::ShiftedUp(1..2)));
        assert_eq!(live(&index, 1), vec![(4, 3), (9, 2)]);
    }
}
