//! Digest summaries: a count and an order-independent hash of `{actor -> watermark}` per
//! actor-id range, kept up to date as watermarks move, so two nodes that hold the same
//! watermarks find out with one small message instead of exchanging every pair.
//!
//! Ranges are prefixes of the 64-bit actor id, 4 bits per level: level 0 is every actor,
//! level 1 splits it into 16 ranges by the top 4 bits, and so on down to level 16 (one
//! id). Actor ids are random, so every range at one level holds about the same number of
//! actors. The hash of a range is the wrapping sum of [`pair_hash`] over the pairs in it,
//! so it is updated in O(1) when one watermark changes and does not depend on the order
//! in which pairs were learned.

use serde::{Deserialize, Serialize};

use crate::ActorId;

/// Bits of the actor id consumed per level.
const BITS_PER_LEVEL: u32 = 4;
/// Children per range.
pub(crate) const FANOUT: u64 = 1 << BITS_PER_LEVEL;
/// The deepest level: a range of a single actor id.
pub const MAX_LEVEL: u8 = 16;
/// Levels whose buckets are maintained incrementally (0, 1 and 2: 1 + 16 + 256 buckets,
/// 3.3 KiB per node). Deeper ranges are summed on demand from the actors they hold,
/// about `actors / 256` of them.
const KEPT_LEVELS: usize = 3;

/// A range of actor ids: those whose top `4 × level` bits equal `prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ActorRange {
    level: u8,
    prefix: u64,
}

/// Why an [`ActorRange`] is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("actor range level {level} prefix {prefix:#x} is out of bounds")]
pub struct InvalidRange {
    /// The level given.
    pub level: u8,
    /// The prefix given.
    pub prefix: u64,
}

impl ActorRange {
    /// Every actor id.
    pub const ALL: ActorRange = ActorRange {
        level: 0,
        prefix: 0,
    };

    /// The range of ids whose top `4 × level` bits are `prefix`.
    pub fn new(level: u8, prefix: u64) -> Result<Self, InvalidRange> {
        let range = Self { level, prefix };
        range.check()?;
        Ok(range)
    }

    /// Checks the bounds (the decoder calls this on every range from the network).
    pub fn check(&self) -> Result<(), InvalidRange> {
        let valid = self.level <= MAX_LEVEL
            && (self.level == MAX_LEVEL
                || self.prefix < 1u64 << (BITS_PER_LEVEL * u32::from(self.level)));
        if valid {
            Ok(())
        } else {
            Err(InvalidRange {
                level: self.level,
                prefix: self.prefix,
            })
        }
    }

    /// The depth of the range (0 = every actor).
    pub fn level(&self) -> u8 {
        self.level
    }

    /// The shared top bits.
    pub fn prefix(&self) -> u64 {
        self.prefix
    }

    fn shift(&self) -> u32 {
        64 - BITS_PER_LEVEL * u32::from(self.level)
    }

    /// The smallest and largest actor id in the range.
    pub fn bounds(&self) -> (ActorId, ActorId) {
        if self.level == 0 {
            return (ActorId::from_u64(0), ActorId::from_u64(u64::MAX));
        }
        let shift = self.shift();
        if shift == 0 {
            return (
                ActorId::from_u64(self.prefix),
                ActorId::from_u64(self.prefix),
            );
        }
        let first = self.prefix << shift;
        let last = first | (u64::MAX >> (64 - shift));
        (ActorId::from_u64(first), ActorId::from_u64(last))
    }

    /// Whether `id` lies in the range.
    pub fn contains(&self, id: ActorId) -> bool {
        self.level == 0 || id.as_u64() >> self.shift() == self.prefix
    }

    /// The range at `level` that contains `id`.
    pub(crate) fn of(id: ActorId, level: u8) -> Self {
        let prefix = if level == 0 {
            0
        } else {
            id.as_u64() >> (64 - BITS_PER_LEVEL * u32::from(level))
        };
        Self { level, prefix }
    }

    /// The 16 ranges one level down, or `None` at [`MAX_LEVEL`].
    pub fn children(&self) -> Option<impl Iterator<Item = ActorRange>> {
        (self.level < MAX_LEVEL).then(|| {
            let level = self.level + 1;
            let base = self.prefix << BITS_PER_LEVEL;
            (0..FANOUT).map(move |i| ActorRange {
                level,
                prefix: base | i,
            })
        })
    }
}

/// The count and hash of the pairs in one range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeSummary {
    /// Actors with a watermark above 0.
    pub count: u32,
    /// Wrapping sum of [`pair_hash`] over those actors.
    pub hash: u64,
}

impl RangeSummary {
    pub(crate) fn add(&mut self, id: ActorId, watermark: u64) {
        self.count = self.count.wrapping_add(1);
        self.hash = self.hash.wrapping_add(pair_hash(id, watermark));
    }

    fn remove(&mut self, id: ActorId, watermark: u64) {
        self.count = self.count.wrapping_sub(1);
        self.hash = self.hash.wrapping_sub(pair_hash(id, watermark));
    }
}

/// The hash of one `(actor, watermark)` pair: splitmix64's finaliser applied twice, so
/// that pairs differing in one bit of either field hash far apart. Every node must use
/// the same function; it is part of the wire protocol.
pub fn pair_hash(id: ActorId, watermark: u64) -> u64 {
    mix(id.as_u64() ^ mix(watermark ^ 0x9e37_79b9_7f4a_7c15))
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Incrementally maintained summaries of levels 0 to 2.
#[derive(Debug, Clone)]
pub(crate) struct Summaries {
    levels: [Vec<RangeSummary>; KEPT_LEVELS],
}

impl Summaries {
    pub(crate) fn new() -> Self {
        Self {
            levels: [
                vec![RangeSummary::default(); 1],
                vec![RangeSummary::default(); FANOUT as usize],
                vec![RangeSummary::default(); (FANOUT * FANOUT) as usize],
            ],
        }
    }

    /// Records that `id`'s watermark moved from `old` to `new` (0 = absent).
    pub(crate) fn update(&mut self, id: ActorId, old: u64, new: u64) {
        if old == new {
            return;
        }
        for (level, buckets) in self.levels.iter_mut().enumerate() {
            let bucket = &mut buckets[ActorRange::of(id, level as u8).prefix as usize];
            if old > 0 {
                bucket.remove(id, old);
            }
            if new > 0 {
                bucket.add(id, new);
            }
        }
    }

    /// The kept summary of `range`, if its level is kept.
    pub(crate) fn get(&self, range: ActorRange) -> Option<RangeSummary> {
        self.levels
            .get(usize::from(range.level))
            .map(|buckets| buckets[range.prefix as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_cover_the_prefix() {
        let all = ActorRange::ALL.bounds();
        assert_eq!(all, (ActorId::from_u64(0), ActorId::from_u64(u64::MAX)));
        let r = ActorRange::new(1, 0xa).unwrap();
        let (first, last) = r.bounds();
        assert_eq!(first.as_u64(), 0xa000_0000_0000_0000);
        assert_eq!(last.as_u64(), 0xafff_ffff_ffff_ffff);
        assert!(r.contains(first) && r.contains(last));
        assert!(!r.contains(ActorId::from_u64(0xb000_0000_0000_0000)));
        let one = ActorRange::new(MAX_LEVEL, 0x1234).unwrap();
        assert_eq!(
            one.bounds(),
            (ActorId::from_u64(0x1234), ActorId::from_u64(0x1234))
        );
        assert!(one.children().is_none());
        assert!(ActorRange::new(1, 16).is_err());
        assert!(ActorRange::new(17, 0).is_err());
    }

    #[test]
    fn children_partition_the_parent() {
        let parent = ActorRange::new(2, 0x3c).unwrap();
        let children: Vec<_> = parent.children().unwrap().collect();
        assert_eq!(children.len(), 16);
        let id = ActorId::from_u64(0x3c70_0000_0000_0001);
        assert!(parent.contains(id));
        assert_eq!(children.iter().filter(|c| c.contains(id)).count(), 1);
        assert_eq!(ActorRange::of(id, 3), children[7]);
    }

    #[test]
    fn summaries_are_order_independent() {
        let mut a = Summaries::new();
        let mut b = Summaries::new();
        let ids = [1u64, 0xdead_beef, u64::MAX, 0x8000_0000_0000_0000];
        for (i, id) in ids.iter().enumerate() {
            a.update(ActorId::from_u64(*id), 0, i as u64 + 1);
        }
        for (i, id) in ids.iter().enumerate().rev() {
            b.update(ActorId::from_u64(*id), 0, 7);
            b.update(ActorId::from_u64(*id), 7, i as u64 + 1);
        }
        for level in 0..3u8 {
            for prefix in 0..16u64.pow(u32::from(level)) {
                let r = ActorRange::new(level, prefix).unwrap();
                assert_eq!(a.get(r), b.get(r));
            }
        }
        assert_eq!(a.get(ActorRange::ALL).unwrap().count, 4);
    }
}
