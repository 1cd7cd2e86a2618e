//! Pruning, the store's half: sinks, tombstones and seals (the protocol that decides
//! when to prune is in `pruner.rs`; the safety argument is in ARCHITECTURE.md).
//!
//! A *sink* is an actor (top bit set in its id) that a pruner creates to hold the folded
//! counts of actors that departed for good. Its entries are, in version order: a header
//! (`"\0sink"`, `p` = the sink's final version, `n` = how many actors it covers), one
//! record per covered actor (`"\0v/<id>"`, `p` = that actor's final version), then one
//! entry per counter with the sum of the covered actors' totals. A sink never changes
//! after it is made, so it travels by anti-entropy like any actor, and its records are
//! its tombstones: every node that holds it knows what it covers.
//!
//! The rule that keeps every count exactly once: a sink's counter entries count in
//! totals only once the sink is *complete* at this node (its watermark reached its
//! final version). At that moment, and not before, the node drops every actor the sink
//! covers and remembers a tombstone for each, so later copies of their entries (a delayed
//! message, a peer that has not completed the sink yet, an old data directory) are
//! refused. Until then the covered actors count through their own entries.

use std::collections::HashMap;

use crate::actors::{ActorIdx, ME};
use crate::name::{self, SINK_HEADER};
use crate::store::Merge;
use crate::wire::MAX_VERSION;
use crate::{ActorId, Store};

/// What a tombstone remembers of a pruned actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tombstone {
    /// The actor's final version, folded into the sink.
    pub final_version: u64,
    /// The sink that holds its counts.
    pub sink: ActorId,
}

/// A promise given to a pruner: this node refuses entries of the actor above
/// `final_version` until the pruner completes or abandons its fold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seal {
    pub(crate) final_version: u64,
    pub(crate) owner: ActorId,
    pub(crate) intent: u64,
}

/// Why this store refused to seal an actor for a pruner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealRefusal {
    /// This store holds versions of the actor above the proposed final version.
    HoldsMore,
    /// Another pruner holds a seal on the actor.
    SealedElsewhere,
    /// The actor is already pruned here.
    AlreadyPruned,
    /// The actor is this store's own.
    Own,
}

/// Why [`Store::fold`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FoldError {
    /// A victim is not held completely up to its final version (or is an incomplete
    /// sink, or this store's own actor).
    #[error("actor {0} is not held completely and cannot be folded")]
    NotPrunable(ActorId),
    /// A folded total would not fit in 64 bits.
    #[error("folding would overflow a 64-bit total")]
    Overflow,
    /// The sink id is not a sink's, or is already in use.
    #[error("{0} cannot be a new sink")]
    BadSink(ActorId),
    /// A store limit refused the sink's entries.
    #[error("a store limit refused the sink")]
    Limit,
}

/// What completing a sink did, for events and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completed {
    /// The sink.
    pub sink: ActorId,
    /// Actors it covers.
    pub covered: usize,
    /// Of those, actors whose entries this store held and dropped.
    pub dropped: usize,
}

/// The store's pruning state.
#[derive(Debug, Default)]
pub(crate) struct Pruning {
    pub(crate) tombstones: HashMap<ActorId, Tombstone>,
    pub(crate) seals: HashMap<ActorId, Seal>,
    /// Sinks completed since the last `take_completed`.
    pub(crate) completed: Vec<Completed>,
    /// Sinks refused because one of their actors is covered by another complete sink
    /// (a double fold; see ARCHITECTURE.md): they stay held but never count.
    pub(crate) refused_sinks: Vec<ActorId>,
}

impl Store {
    /// The tombstone of `actor`, if it was pruned here.
    pub fn tombstone(&self, actor: ActorId) -> Option<Tombstone> {
        self.pruning.tombstones.get(&actor).copied()
    }

    /// Number of tombstones held.
    pub fn tombstone_count(&self) -> usize {
        self.pruning.tombstones.len()
    }

    pub(crate) fn tombstones_hold(&self, actor: ActorId) -> bool {
        self.pruning.tombstones.contains_key(&actor)
    }

    /// Every actor held, with its watermark.
    pub fn actor_ids(&self) -> impl Iterator<Item = (ActorId, u64)> + '_ {
        self.actors
            .iter()
            .map(|(idx, id)| (id, self.watermark_of(idx)))
    }

    /// Sinks held, with whether each is complete (counts in totals).
    pub fn sinks(&self) -> impl Iterator<Item = (ActorId, bool)> + '_ {
        self.actors
            .iter()
            .filter(|(_, id)| id.is_sink())
            .map(|(idx, id)| (id, self.actors.counted(idx)))
    }

    /// Sinks completed since the last call.
    pub fn take_completed(&mut self) -> Vec<Completed> {
        std::mem::take(&mut self.pruning.completed)
    }

    /// Sinks refused as double folds since the last call.
    pub fn take_refused_sinks(&mut self) -> Vec<ActorId> {
        std::mem::take(&mut self.pruning.refused_sinks)
    }

    /// The final version at which `actor` could be folded here: its watermark, if this
    /// store holds no entry of it above the watermark, the actor is not this store's own
    /// and, for a sink, the sink is complete.
    pub fn prunable(&self, actor: ActorId) -> Option<u64> {
        let idx = self.actors.lookup(actor)?;
        let watermark = self.watermark_of(idx);
        let ready = idx != ME
            && watermark > 0
            && (!actor.is_sink() || self.actors.counted(idx))
            && self.versions.above(idx, watermark).next().is_none();
        ready.then_some(watermark)
    }

    /// Promises `owner` not to accept entries of `victim` above `final_version` (phase
    /// one of a prune), unless this store already holds more of it, it is sealed for
    /// another pruner, or it is pruned already.
    pub fn seal(
        &mut self,
        victim: ActorId,
        final_version: u64,
        owner: ActorId,
        intent: u64,
    ) -> Result<(), SealRefusal> {
        if victim == self.me {
            return Err(SealRefusal::Own);
        }
        if self.pruning.tombstones.contains_key(&victim) {
            return Err(SealRefusal::AlreadyPruned);
        }
        if let Some(seal) = self.pruning.seals.get(&victim)
            && seal.owner != owner
        {
            return Err(SealRefusal::SealedElsewhere);
        }
        if let Some(idx) = self.actors.lookup(victim)
            && (self.watermark_of(idx) > final_version
                || self.versions.above(idx, final_version).next().is_some())
        {
            return Err(SealRefusal::HoldsMore);
        }
        self.pruning.seals.insert(
            victim,
            Seal {
                final_version,
                owner,
                intent,
            },
        );
        Ok(())
    }

    /// Releases the seals of one intent (the pruner abandoned it).
    pub fn unseal_intent(&mut self, owner: ActorId, intent: u64) {
        self.pruning
            .seals
            .retain(|_, s| !(s.owner == owner && s.intent == intent));
    }

    /// Releases the seals of one intent except those of `kept` (the pruner folded them;
    /// their seals end when the sink completes here).
    pub fn unseal_intent_except(&mut self, owner: ActorId, intent: u64, kept: &[ActorId]) {
        self.pruning
            .seals
            .retain(|victim, s| !(s.owner == owner && s.intent == intent) || kept.contains(victim));
    }

    /// Releases every seal held for `owner` (it departed for good).
    pub fn unseal_owner(&mut self, owner: ActorId) {
        self.pruning.seals.retain(|_, s| s.owner != owner);
    }

    /// The final version `actor` is sealed at, if any.
    pub(crate) fn seal_of(&self, actor: ActorId) -> Option<u64> {
        self.pruning.seals.get(&actor).map(|s| s.final_version)
    }

    /// Folds `victims` (each held completely, see [`Store::prunable`]) into the new sink
    /// `sink` and completes it here: the victims' entries are dropped and the sink's
    /// counter entries hold their sums. Victims that are sinks bring the actors they
    /// cover along into the new sink's records, so one sink can replace many.
    pub fn fold(&mut self, sink: ActorId, victims: &[ActorId]) -> Result<Completed, FoldError> {
        if !sink.is_sink() || self.actors.lookup(sink).is_some() || self.tombstones_hold(sink) {
            return Err(FoldError::BadSink(sink));
        }
        // Records: the direct victims and, for sinks among them, what they cover.
        let mut records: Vec<(ActorId, u64)> = Vec::new();
        let mut direct: Vec<ActorIdx> = Vec::new();
        for &victim in victims {
            let final_version = self
                .prunable(victim)
                .ok_or(FoldError::NotPrunable(victim))?;
            records.push((victim, final_version));
            direct.push(
                self.actors
                    .lookup(victim)
                    .ok_or(FoldError::NotPrunable(victim))?,
            );
            if victim.is_sink() {
                records.extend(
                    self.pruning
                        .tombstones
                        .iter()
                        .filter(|(_, t)| t.sink == victim)
                        .map(|(&a, t)| (a, t.final_version)),
                );
            }
        }
        records.sort_unstable();
        records.dedup_by_key(|r| r.0);
        // The sums, per counter, of the direct victims' entries.
        let mut sums: std::collections::BTreeMap<u32, (u64, u64)> = Default::default();
        for &idx in &direct {
            for (_, slot) in self.versions.above(idx, 0) {
                let s = &self.slots[slot as usize];
                if s.name.is_reserved() {
                    continue;
                }
                let Ok(i) = s.entries.binary_search_by_key(&idx, |e| e.actor) else {
                    continue;
                };
                let e = s.entries[i];
                let sum = sums.entry(slot).or_insert((0, 0));
                sum.0 = sum.0.checked_add(e.p).ok_or(FoldError::Overflow)?;
                sum.1 = sum.1.checked_add(e.n).ok_or(FoldError::Overflow)?;
            }
        }
        let final_version = 1 + records.len() as u64 + sums.len() as u64;
        if final_version > MAX_VERSION {
            return Err(FoldError::Overflow);
        }
        let idx = self
            .actors
            .intern(sink, self.limits.max_actors)
            .ok_or(FoldError::Limit)?;
        let mut version = 1;
        let mut put = |store: &mut Store, slot: u32, p: u64, n: u64| {
            let merged = store.merge_entry(slot, idx, version, p, n);
            version += 1;
            matches!(merged, Merge::Changed | Merge::Unchanged)
        };
        let header = self.find_or_insert(SINK_HEADER).ok_or(FoldError::Limit)?;
        let mut ok = put(self, header, final_version, records.len() as u64);
        for &(victim, victim_final) in &records {
            let record = self
                .find_or_insert(&name::victim_name(victim))
                .ok_or(FoldError::Limit)?;
            ok &= put(self, record, victim_final, 0);
        }
        for (&slot, &(p, n)) in &sums {
            ok &= put(self, slot, p, n);
        }
        if !ok {
            self.drop_actor(idx);
            return Err(FoldError::Limit);
        }
        self.actors.record_run(idx, 0, final_version);
        self.try_complete(idx);
        self.pruning
            .completed
            .last()
            .copied()
            .filter(|c| c.sink == sink)
            .ok_or(FoldError::BadSink(sink))
    }

    /// The final version of sink `idx`, from its header, if the header is held.
    pub(crate) fn sink_final(&self, idx: ActorIdx) -> Option<u64> {
        let header = self.find(SINK_HEADER)?;
        let slot = &self.slots[header as usize];
        let i = slot.entries.binary_search_by_key(&idx, |e| e.actor).ok()?;
        Some(slot.entries[i].p)
    }

    /// Completes the sink `idx` if its watermark has reached its final version: its
    /// counter entries start counting, every actor it covers is dropped and tombstoned.
    pub(crate) fn try_complete(&mut self, idx: ActorIdx) {
        let sink = self.actors.id(idx);
        if !sink.is_sink() || self.actors.counted(idx) {
            return;
        }
        let Some(header) = self.find(SINK_HEADER) else {
            return;
        };
        let slot = &self.slots[header as usize];
        let Ok(i) = slot.entries.binary_search_by_key(&idx, |e| e.actor) else {
            return;
        };
        let final_version = slot.entries[i].p;
        if self.watermark_of(idx) < final_version {
            return;
        }
        // A sink holding entries above its own final version (they arrived in the run
        // that brought its header) is not what any pruner made: it never counts.
        if self.versions.above(idx, final_version).next().is_some() {
            return;
        }
        // Its records: the actors it covers, with their final versions.
        let mut covered: Vec<(ActorId, u64)> = Vec::new();
        let mut counters: Vec<u32> = Vec::new();
        for (_, slot) in self.versions.above(idx, 0) {
            let s = &self.slots[slot as usize];
            if let Some(victim) = name::victim_of(&s.name) {
                if let Ok(i) = s.entries.binary_search_by_key(&idx, |e| e.actor) {
                    covered.push((victim, s.entries[i].p));
                }
            } else if !s.name.is_reserved() {
                counters.push(slot);
            }
        }
        // A covered actor already folded into another sink that this one does not
        // replace means two pruners folded it: counting this sink would count it twice.
        let replaced: Vec<ActorId> = covered.iter().map(|c| c.0).collect();
        // Nor may a sink cover this node's own, living actor (it was pruned while only
        // partitioned away): dropping its entries would lose its counts here.
        let double = covered.iter().any(|(victim, _)| {
            *victim == self.me
                || self
                    .pruning
                    .tombstones
                    .get(victim)
                    .is_some_and(|t| t.sink != sink && !replaced.contains(&t.sink))
        });
        if double {
            self.pruning.refused_sinks.push(sink);
            return;
        }
        self.actors.set_counted(idx, true);
        for slot in counters {
            let s = &mut self.slots[slot as usize];
            if let Ok(i) = s.entries.binary_search_by_key(&idx, |e| e.actor) {
                let e = s.entries[i];
                s.total += i128::from(e.p) - i128::from(e.n);
                s.publish();
            }
        }
        let mut dropped = 0;
        for &(victim, victim_final) in &covered {
            if let Some(v) = self.actors.lookup(victim) {
                self.drop_actor(v);
                dropped += 1;
            }
            self.pruning.seals.remove(&victim);
            self.pruning.tombstones.insert(
                victim,
                Tombstone {
                    final_version: victim_final,
                    sink,
                },
            );
        }
        self.pruning.completed.push(Completed {
            sink,
            covered: covered.len(),
            dropped,
        });
    }

    /// Completes every sink that can be (after a restore or a merge).
    pub(crate) fn complete_sinks(&mut self) {
        let sinks: Vec<ActorIdx> = self
            .actors
            .iter()
            .filter(|(idx, id)| id.is_sink() && !self.actors.counted(*idx))
            .map(|(idx, _)| idx)
            .collect();
        for idx in sinks {
            self.try_complete(idx);
        }
    }

    /// Removes every entry of actor `idx` and forgets the actor.
    pub(crate) fn drop_actor(&mut self, idx: ActorIdx) {
        if idx == ME {
            return;
        }
        let id = self.actors.id(idx);
        let counted = self.actors.counted(idx);
        let slots: Vec<u32> = self.versions.above(idx, 0).map(|(_, s)| s).collect();
        for slot in slots {
            let s = &mut self.slots[slot as usize];
            let Ok(i) = s.entries.binary_search_by_key(&idx, |e| e.actor) else {
                continue;
            };
            let e = s.entries.remove(i);
            if counted && !s.name.is_reserved() {
                s.total -= i128::from(e.p) - i128::from(e.n);
                s.publish();
            }
            self.entry_count -= 1;
            if self.track_changes {
                self.removed.push((s.name.as_str().to_owned(), id));
            }
        }
        self.versions.clear(idx);
        self.actors.retire(idx);
        if let Some(taken) = self.taken_watermarks.get_mut(idx as usize) {
            *taken = 0;
        }
        if self.track_changes {
            self.retired.push(id);
        }
    }
}
