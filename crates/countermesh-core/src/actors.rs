//! The actor table: interns [`ActorId`]s to dense indices, tracks per-actor watermarks,
//! and keeps the digest summaries (see `summary.rs`) in step with them.

use std::collections::{BTreeMap, HashMap};

use foldhash::fast::FixedState;

use crate::ActorId;
use crate::summary::{ActorRange, RangeSummary, Summaries};

/// Dense index of an actor inside one store. Index 0 is always the store's own actor.
pub(crate) type ActorIdx = u32;

/// The store's own actor.
pub(crate) const ME: ActorIdx = 0;

/// Out-of-order runs remembered per actor.
const MAX_PENDING_RUNS: usize = 8;

/// Interned actors and, for each, the contiguous watermark: every change the actor made
/// up to this version is reflected in the store (see ARCHITECTURE.md, "watermarks").
/// For [`ME`] the watermark is the store's local version.
#[derive(Debug)]
pub(crate) struct Actors {
    ids: Vec<ActorId>,
    watermarks: Vec<u64>,
    /// Per actor, complete runs `(after, upto]` that arrived before the watermark
    /// reached their `after`. They are absorbed as soon as it does, so a split delta
    /// delivered out of order still advances the watermark all the way. Sparse: few
    /// actors ever have one.
    pending: HashMap<ActorIdx, Vec<(u64, u64)>, FixedState>,
    /// Sorted by id, so a range of ids is one ordered scan.
    by_id: BTreeMap<ActorId, ActorIdx>,
    summaries: Summaries,
    /// Per actor, whether its entries count in totals: all do except a sink's before it
    /// is complete (see `prune.rs`).
    counted: Vec<bool>,
    /// Indices of retired (pruned) actors, reused by the next actors interned.
    free: Vec<ActorIdx>,
}

impl Actors {
    pub(crate) fn new(me: ActorId, seed: u64) -> Self {
        let mut by_id = BTreeMap::new();
        by_id.insert(me, ME);
        Self {
            ids: vec![me],
            watermarks: vec![0],
            pending: HashMap::with_hasher(FixedState::with_seed(seed)),
            by_id,
            summaries: Summaries::new(),
            counted: vec![true],
            free: Vec::new(),
        }
    }

    /// Actors held (retired ones excluded).
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// One more than the largest index in use: the size of arrays indexed by actor.
    pub(crate) fn capacity(&self) -> usize {
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
        if self.by_id.len() >= limit {
            return None;
        }
        let idx = match self.free.pop() {
            Some(idx) => {
                self.ids[idx as usize] = id;
                self.watermarks[idx as usize] = 0;
                self.counted[idx as usize] = !id.is_sink();
                idx
            }
            None => {
                let idx = ActorIdx::try_from(self.ids.len()).ok()?;
                self.ids.push(id);
                self.watermarks.push(0);
                // A sink counts only once complete.
                self.counted.push(!id.is_sink());
                idx
            }
        };
        self.by_id.insert(id, idx);
        Some(idx)
    }

    /// Forgets a pruned actor: its watermark leaves the summaries and its index is
    /// reused. The caller has dropped its entries.
    pub(crate) fn retire(&mut self, idx: ActorIdx) {
        if idx == ME {
            return;
        }
        let id = self.ids[idx as usize];
        if self.by_id.remove(&id).is_none() {
            return;
        }
        let old = self.watermarks[idx as usize];
        self.summaries.update(id, old, 0);
        self.watermarks[idx as usize] = 0;
        self.pending.remove(&idx);
        self.counted[idx as usize] = false;
        self.free.push(idx);
    }

    /// Whether the actor's entries count in totals.
    pub(crate) fn counted(&self, idx: ActorIdx) -> bool {
        self.counted[idx as usize]
    }

    pub(crate) fn set_counted(&mut self, idx: ActorIdx, counted: bool) {
        self.counted[idx as usize] = counted;
    }

    /// The contiguous watermark.
    pub(crate) fn watermark(&self, idx: ActorIdx) -> u64 {
        self.watermarks[idx as usize]
    }

    /// Sets a watermark, keeping the summaries in step. Watermarks only grow.
    pub(crate) fn set_watermark(&mut self, idx: ActorIdx, watermark: u64) {
        let old = self.watermarks[idx as usize];
        if watermark > old {
            self.watermarks[idx as usize] = watermark;
            self.summaries
                .update(self.ids[idx as usize], old, watermark);
        }
    }

    /// Records that all of the actor's entries in `(after, upto]` are held, given that
    /// the entries of the run that said so have been merged. Returns whether the
    /// watermark moved.
    pub(crate) fn record_run(&mut self, idx: ActorIdx, after: u64, upto: u64) -> bool {
        let start = self.watermarks[idx as usize];
        if upto <= start {
            return false;
        }
        if after > start {
            let pending = self.pending.entry(idx).or_default();
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
        if let Some(mut pending) = self.pending.remove(&idx) {
            pending.sort_unstable();
            pending.retain(|&(a, u)| {
                if a <= watermark {
                    watermark = watermark.max(u);
                    false
                } else {
                    true
                }
            });
            if !pending.is_empty() {
                self.pending.insert(idx, pending);
            }
        }
        self.set_watermark(idx, watermark);
        true
    }

    /// Raises the watermark to `version` (a full-state merge proved it).
    pub(crate) fn raise_watermark(&mut self, idx: ActorIdx, version: u64) -> bool {
        let current = self.watermarks[idx as usize];
        current < version && self.record_run(idx, current, version)
    }

    /// Every held actor, in ascending id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (ActorIdx, ActorId)> + '_ {
        self.by_id.iter().map(|(&id, &idx)| (idx, id))
    }

    /// The actors in `range` with their watermarks (0 included), in ascending id order.
    pub(crate) fn in_range(
        &self,
        range: ActorRange,
    ) -> impl Iterator<Item = (ActorIdx, ActorId, u64)> + '_ {
        let (first, last) = range.bounds();
        self.by_id
            .range(first..=last)
            .map(|(&id, &idx)| (idx, id, self.watermarks[idx as usize]))
    }

    /// The count and hash of the non-zero watermarks in `range`.
    pub(crate) fn summary(&self, range: ActorRange) -> RangeSummary {
        if let Some(kept) = self.summaries.get(range) {
            return kept;
        }
        let mut summary = RangeSummary::default();
        for (_, id, watermark) in self.in_range(range) {
            if watermark > 0 {
                summary.add(id, watermark);
            }
        }
        summary
    }
}
