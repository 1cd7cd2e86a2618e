//! [`Members`]: the peers SWIM considers active, with O(1) lookup by address and O(k)
//! random choice, so no per-message or per-round work grows with the size of the mesh;
//! and [`MemberIndex`], the same set summarised by key range so that two nodes can find
//! the members one of them lacks the way they find actors (see `digest.rs`).
//!
//! Why the second: SWIM spreads a join by piggybacking it a bounded number of times, so
//! after a thousand nodes join at once a few of them miss a few members, and foca's only
//! repair is an announce every 30 s answered with a random sample of members. The
//! membership summary rides along every anti-entropy exchange (13 bytes when nothing
//! differs) and feeds what one side lacks to foca with `apply_many`, as foca's
//! documentation suggests for periodic syncs.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use rand::{Rng, RngExt};

use crate::summary::{ActorRange, RangeSummary, Summaries};
use crate::{ActorId, NodeId};

/// A member's key: a hash of its address, actor and incarnation, the same on every node.
pub(crate) fn member_key(id: &NodeId) -> u64 {
    let (ip, port) = match id.addr() {
        SocketAddr::V4(a) => (u128::from(a.ip().to_bits()), a.port()),
        SocketAddr::V6(a) => (a.ip().to_bits(), a.port()),
    };
    let addr = (ip as u64) ^ ((ip >> 64) as u64).rotate_left(17) ^ u64::from(port) << 48;
    crate::summary::pair_hash(
        ActorId::from_u64(id.actor().as_u64() ^ addr.rotate_left(29)),
        id.incarnation(),
    )
}

/// The active members and this node, by key, with summaries kept up to date.
#[derive(Debug)]
pub(crate) struct MemberIndex {
    by_key: BTreeMap<u64, NodeId>,
    summaries: Summaries,
}

impl MemberIndex {
    pub(crate) fn new() -> Self {
        Self {
            by_key: BTreeMap::new(),
            summaries: Summaries::new(),
        }
    }

    pub(crate) fn insert(&mut self, id: &NodeId) {
        let key = member_key(id);
        if self.by_key.insert(key, id.clone()).is_none() {
            self.summaries.update(ActorId::from_u64(key), 0, 1);
        }
    }

    pub(crate) fn remove(&mut self, id: &NodeId) {
        let key = member_key(id);
        if self.by_key.remove(&key).is_some() {
            self.summaries.update(ActorId::from_u64(key), 1, 0);
        }
    }

    /// The members whose key lies in `range`, ascending by key.
    pub(crate) fn in_range(&self, range: ActorRange) -> impl Iterator<Item = &NodeId> + '_ {
        let (first, last) = range.bounds();
        self.by_key
            .range(first.as_u64()..=last.as_u64())
            .map(|(_, id)| id)
    }

    pub(crate) fn summary(&self, range: ActorRange) -> RangeSummary {
        if let Some(kept) = self.summaries.get(range) {
            return kept;
        }
        let mut summary = RangeSummary::default();
        for id in self.in_range(range) {
            summary.add(ActorId::from_u64(member_key(id)), 1);
        }
        summary
    }
}

/// Active members, at most one per address.
#[derive(Debug, Default)]
pub(crate) struct Members {
    list: Vec<NodeId>,
    by_addr: HashMap<SocketAddr, usize>,
    /// How many active members carry each actor (one, unless an identity is renewed).
    actors: HashMap<ActorId, u32>,
}

impl Members {
    pub(crate) fn as_slice(&self) -> &[NodeId] {
        &self.list
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The member at `addr`, if any.
    pub(crate) fn at(&self, addr: SocketAddr) -> Option<&NodeId> {
        self.by_addr.get(&addr).map(|&i| &self.list[i])
    }

    pub(crate) fn contains_addr(&self, addr: SocketAddr) -> bool {
        self.by_addr.contains_key(&addr)
    }

    /// Whether an active member carries `actor`.
    pub(crate) fn carries(&self, actor: ActorId) -> bool {
        self.actors.contains_key(&actor)
    }

    /// The lowest actor id among the members.
    pub(crate) fn lowest_actor(&self) -> Option<ActorId> {
        self.actors.keys().min().copied()
    }

    fn count_actor(&mut self, actor: ActorId, up: bool) {
        if up {
            *self.actors.entry(actor).or_insert(0) += 1;
        } else if let Some(n) = self.actors.get_mut(&actor) {
            *n -= 1;
            if *n == 0 {
                self.actors.remove(&actor);
            }
        }
    }

    /// Adds `id`, replacing whatever identity its address had.
    pub(crate) fn insert(&mut self, id: NodeId) {
        self.count_actor(id.actor(), true);
        match self.by_addr.get(&id.addr()) {
            Some(&i) => {
                let old = std::mem::replace(&mut self.list[i], id);
                self.count_actor(old.actor(), false);
            }
            None => {
                self.by_addr.insert(id.addr(), self.list.len());
                self.list.push(id);
            }
        }
    }

    /// Removes `id` if it is the identity held for its address.
    pub(crate) fn remove(&mut self, id: &NodeId) {
        let Some(&i) = self.by_addr.get(&id.addr()) else {
            return;
        };
        if self.list[i] != *id {
            return;
        }
        self.by_addr.remove(&id.addr());
        self.count_actor(id.actor(), false);
        self.list.swap_remove(i);
        if let Some(moved) = self.list.get(i) {
            self.by_addr.insert(moved.addr(), i);
        }
    }

    /// Replaces `old` with `new` (a renamed member).
    pub(crate) fn rename(&mut self, old: &NodeId, new: NodeId) {
        if self.at(old.addr()).is_some_and(|held| held == old) {
            self.remove(old);
        }
        self.insert(new);
    }

    /// Up to `count` distinct random members' addresses, uniformly, in O(count) time
    /// (rejection sampling when few are wanted, a partial shuffle otherwise).
    pub(crate) fn choose(&self, count: usize, rng: &mut impl Rng) -> Vec<SocketAddr> {
        let n = self.list.len();
        let count = count.min(n);
        if count * 4 <= n {
            let mut picked: Vec<usize> = Vec::with_capacity(count);
            while picked.len() < count {
                let i = rng.random_range(0..n);
                if !picked.contains(&i) {
                    picked.push(i);
                }
            }
            return picked.into_iter().map(|i| self.list[i].addr()).collect();
        }
        let mut indices: Vec<usize> = (0..n).collect();
        for i in 0..count {
            let j = rng.random_range(i..n);
            indices.swap(i, j);
        }
        indices[..count]
            .iter()
            .map(|&i| self.list[i].addr())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ActorId;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn id(port: u16, actor: u64) -> NodeId {
        NodeId::new(
            SocketAddr::from(([127, 0, 0, 1], port)),
            ActorId::from_u64(actor),
            1,
        )
    }

    #[test]
    fn insert_remove_rename_keep_the_index() {
        let mut m = Members::default();
        for p in 1..=5 {
            m.insert(id(p, u64::from(p)));
        }
        m.remove(&id(2, 2));
        assert_eq!(m.len(), 4);
        assert!(!m.contains_addr(id(2, 2).addr()));
        for member in m.as_slice() {
            assert_eq!(m.at(member.addr()), Some(member));
        }
        // A stale identity does not remove the current one.
        m.insert(id(3, 33));
        m.remove(&id(3, 3));
        assert_eq!(
            m.at(id(3, 0).addr()).map(NodeId::actor),
            Some(ActorId::from_u64(33))
        );
        m.rename(&id(4, 4), id(4, 44));
        assert_eq!(m.len(), 4);
        let mut rng = SmallRng::seed_from_u64(1);
        for count in 0..6 {
            let mut chosen = m.choose(count, &mut rng);
            chosen.sort();
            chosen.dedup();
            assert_eq!(chosen.len(), count.min(4));
        }
    }
}
