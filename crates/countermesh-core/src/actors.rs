//! The actor table: interns [`ActorId`]s to dense indices and tracks per-actor watermarks.

use std::collections::HashMap;

use foldhash::fast::FixedState;

use crate::ActorId;

/// Dense index of an actor inside one store. Index 0 is always the store's own actor.
pub(crate) type ActorIdx = u32;

/// The store's own actor.
pub(crate) const ME: ActorIdx = 0;

/// Out-of-order runs remembered per actor.
const MAX_PENDING_RUNS: usize = 8;

/// Interned actors and, for each, the contiguous watermark: every change the actor made
/// up to this version is reflected in the store (see ARCHITECTURE.md, "watermarks").
#[derive(Debug)]
pub(crate) struct Actors {
    ids: Vec<ActorId>,
    watermarks: Vec<u64>,
    /// Per actor, complete runs `(after, upto]` that arrived before the watermark
    /// reached their `after`. They are absorbed as soon as it does, so a split delta
    /// delivered out of order still advances the watermark all the way.
    pending: Vec<Vec<(u64, u64)>>,
    by_id: HashMap<ActorId, ActorIdx, FixedState>,
}

impl Actors {
    pub(crate) fn new(me: ActorId, seed: u64) -> Self {
        let mut by_id = HashMap::with_hasher(FixedState::with_seed(seed));
        by_id.insert(me, ME);
        Self {
            ids: vec![me],
            watermarks: vec![0],
            pending: vec![Vec::new()],
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
        self.pending.push(Vec::new());
        self.by_id.insert(id, idx);
        Some(idx)
    }

    /// The stored watermark. For [`ME`] the store overrides this with its stable version.
    pub(crate) fn watermark(&self, idx: ActorIdx) -> u64 {
        self.watermarks[idx as usize]
    }

    /// Records that all of the actor's entries in `(after, upto]` are held, given that
    /// the entries of the run that said so have been merged. Returns whether the
    /// watermark moved.
    pub(crate) fn record_run(&mut self, idx: ActorIdx, after: u64, upto: u64) -> bool {
        let i = idx as usize;
        let start = self.watermarks[i];
        if upto <= start {
            return false;
        }
        if after > start {
            let pending = &mut self.pending[i];
            pending.push((after, upto));
            pending.sort_unstable();
            // Coalesce overlapping or touching runs.
            let mut merged: Vec<(u64, u64)> = Vec::with_capacity(pending.len());
            for &(a, u) in pending.iter() {
                match merged.last_mut() {
                    Some(last) if a <= last.1 => last.1 = last.1.max(u),
                    _ => merged.push((a, u)),
                }
            }
            // Keep the runs closest to the watermark; the rest will be offered again.
            merged.truncate(MAX_PENDING_RUNS);
            *pending = merged;
            return false;
        }
        let mut watermark = upto;
        let pending = &mut self.pending[i];
        pending.sort_unstable();
        let mut keep = 0;
        for k in 0..pending.len() {
            let (a, u) = pending[k];
            if a <= watermark {
                watermark = watermark.max(u);
            } else {
                pending[keep] = (a, u);
                keep += 1;
            }
        }
        pending.truncate(keep);
        if pending.is_empty() {
            pending.shrink_to_fit();
        }
        self.watermarks[i] = watermark;
        true
    }

    /// Raises the watermark to `version` (a full-state merge proved it).
    pub(crate) fn raise_watermark(&mut self, idx: ActorIdx, version: u64) -> bool {
        let current = self.watermarks[idx as usize];
        current < version && self.record_run(idx, current, version)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (ActorIdx, ActorId)> + '_ {
        self.ids
            .iter()
            .enumerate()
            .map(|(i, id)| (i as ActorIdx, *id))
    }
}
