//! The actor table: interns [`ActorId`]s to dense indices and tracks per-actor watermarks.

use std::collections::HashMap;

use foldhash::fast::FixedState;

use crate::ActorId;

/// Dense index of an actor inside one store. Index 0 is always the store's own actor.
pub(crate) type ActorIdx = u32;

/// The store's own actor.
pub(crate) const ME: ActorIdx = 0;

/// Interned actors and, for each, the contiguous watermark: every change the actor made
/// up to this version is reflected in the store (see ARCHITECTURE.md, "watermarks").
#[derive(Debug)]
pub(crate) struct Actors {
    ids: Vec<ActorId>,
    watermarks: Vec<u64>,
    by_id: HashMap<ActorId, ActorIdx, FixedState>,
}

impl Actors {
    pub(crate) fn new(me: ActorId, seed: u64) -> Self {
        let mut by_id = HashMap::with_hasher(FixedState::with_seed(seed));
        by_id.insert(me, ME);
        Self {
            ids: vec![me],
            watermarks: vec![0],
            by_id,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    pub(crate) fn id(&self, idx: ActorIdx) -> ActorId {
        self.ids[idx as usize]
    }

    pub(crate) fn lookup(&self, id: ActorId) -> Option<ActorIdx> {
        self.by_id.get(&id).copied()
    }

    /// Interns `id`, unless that would exceed `limit` actors.
    pub(crate) fn intern(&mut self, id: ActorId, limit: usize) -> Option<ActorIdx> {
        if let Some(idx) = self.lookup(id) {
            return Some(idx);
        }
        if self.ids.len() >= limit {
            return None;
        }
        let idx = ActorIdx::try_from(self.ids.len()).ok()?;
        self.ids.push(id);
        self.watermarks.push(0);
        self.by_id.insert(id, idx);
        Some(idx)
    }

    /// The stored watermark. For [`ME`] the store overrides this with its stable version.
    pub(crate) fn watermark(&self, idx: ActorIdx) -> u64 {
        self.watermarks[idx as usize]
    }

    pub(crate) fn set_watermark(&mut self, idx: ActorIdx, version: u64) {
        self.watermarks[idx as usize] = version;
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (ActorIdx, ActorId)> + '_ {
        self.ids
            .iter()
            .enumerate()
            .map(|(i, id)| (i as ActorIdx, *id))
    }
}
