//! [`Store`]: every named PN-Counter a node knows, with per-actor versions.
//!
//! Layout. Counters live in a slab (`Vec<Slot>`) addressed by a `u32`; a `HashTable` maps
//! names to slab indices without storing the name twice. Each slot keeps its per-actor
//! entries in a `Vec` sorted by dense actor index, so an entry is 32 bytes and a counter
//! with ten actors is one 320-byte allocation. `crdts::PNCounter` would cost two
//! `BTreeMap`s per counter and exposes no per-actor read, which a delta needs; its merge
//! rule (per-actor maximum of P and N) is what this store implements, and the property
//! tests check the two agree.

use std::hash::BuildHasher;
use std::sync::Arc;

use foldhash::quality::FixedState;
use hashbrown::HashTable;

use crate::actors::{ActorIdx, Actors, ME};
use crate::cell::Cell;
use crate::index::{Moved, VersionIndex};
use crate::{ActorId, Counter, CounterName, NameError, name};

/// Default bound on distinct counters in one store; see [`Limits`].
pub const DEFAULT_MAX_COUNTERS: usize = 1_000_000;
/// Default bound on distinct actors in one store; see [`Limits`].
pub const DEFAULT_MAX_ACTORS: usize = 65_536;
/// Default bound on (counter, actor) entries in one store; see [`Limits`]. At about
/// 70 bytes per entry (the entry, its version-index slot and its share of the counter)
/// this caps a store near 560 MB.
pub const DEFAULT_MAX_ENTRIES: usize = 8_000_000;

/// Bounds that keep a misbehaving peer from growing a store without limit.
///
/// When a delta would exceed a bound, the entries that do not fit are rejected and the
/// watermark of their actor is *not* advanced, so nothing is silently claimed as seen:
/// the entries are offered again by the next anti-entropy round, after an operator has
/// raised the limit. Every refusal is counted and reported as
/// [`Event::LimitReached`](crate::Event::LimitReached). This node's own entries are
/// never refused by `max_entries` (they are bounded by the counters it creates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum number of distinct counters.
    pub max_counters: usize,
    /// Maximum number of distinct actors, this node included.
    pub max_actors: usize,
    /// Maximum number of (counter, actor) entries.
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_counters: DEFAULT_MAX_COUNTERS,
            max_actors: DEFAULT_MAX_ACTORS,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// Which [`Limits`] bound refused something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitKind {
    /// [`Limits::max_counters`].
    Counters,
    /// [`Limits::max_actors`].
    Actors,
    /// [`Limits::max_entries`].
    Entries,
}

impl LimitKind {
    /// All kinds.
    pub const ALL: [LimitKind; 3] = [LimitKind::Counters, LimitKind::Actors, LimitKind::Entries];

    /// Lower-case name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Counters => "counters",
            LimitKind::Actors => "actors",
            LimitKind::Entries => "entries",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Why [`Store::counter`] could not hand out a counter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CounterError {
    /// The name is not a valid counter name.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// The store already holds [`Limits::max_counters`] counters.
    #[error("the store already holds its limit of {limit} counters")]
    TooManyCounters {
        /// The configured limit.
        limit: usize,
    },
}

/// What a [`Store::flush`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushOutcome {
    /// Counters whose own entry changed and received a new version.
    pub changed: usize,
    /// Counters whose own P or N total would pass `u64::MAX`. Their excess stays
    /// pending (it still counts in local reads) and cannot be gossiped: this only
    /// happens after 2^64 units were added by one node to one counter.
    pub saturated: Vec<CounterName>,
}

/// One actor's contribution to a counter, as reported by [`Store::contributions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Contribution {
    /// The actor.
    pub actor: ActorId,
    /// The actor's version at which it last changed this counter.
    pub version: u64,
    /// The actor's total increments.
    pub p: u64,
    /// The actor's total decrements.
    pub n: u64,
}

/// One actor's contribution to one counter: 24 bytes. Its version lives in the
/// [`VersionIndex`] (see `index.rs`), which the entry points into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) actor: ActorIdx,
    /// The position of this entry's item in its actor's index; the top bit marks the
    /// entry as changed since the last [`Store::take_changes`].
    tag: u32,
    /// Total of the actor's increments (grow-only).
    pub(crate) p: u64,
    /// Total of the actor's decrements (grow-only).
    pub(crate) n: u64,
}

impl Entry {
    const DIRTY: u32 = 1 << 31;

    fn new(actor: ActorIdx, pos: u32, p: u64, n: u64) -> Self {
        Self {
            actor,
            tag: pos & !Self::DIRTY,
            p,
            n,
        }
    }

    /// Where this entry's version is in the index.
    pub(crate) fn pos(&self) -> u32 {
        self.tag & !Self::DIRTY
    }

    fn set_pos(&mut self, pos: u32) {
        self.tag = (self.tag & Self::DIRTY) | (pos & !Self::DIRTY);
    }

    pub(crate) fn dirty(&self) -> bool {
        self.tag & Self::DIRTY != 0
    }

    pub(crate) fn set_dirty(&mut self, dirty: bool) {
        if dirty {
            self.tag |= Self::DIRTY;
        } else {
            self.tag &= !Self::DIRTY;
        }
    }
}

/// What merging one remote entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Merge {
    /// The entry changed the store.
    Changed,
    /// The store already held it (or something newer).
    Unchanged,
    /// Another counter already holds this actor's version: refused.
    Conflict,
    /// [`Limits::max_entries`] refused a new entry.
    Full,
}

/// This node's hot-path state for a counter that has a handle.
#[derive(Debug)]
pub(crate) struct Local {
    pub(crate) cell: Arc<Cell>,
    /// How much of `cell.local_sum()` has been folded into the own entry.
    pub(crate) folded: i128,
}

#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) name: CounterName,
    /// Sorted by `actor`; the own entry, if any, is first.
    pub(crate) entries: Vec<Entry>,
    /// Sum of `p - n` over `entries`, kept exact.
    pub(crate) total: i128,
    pub(crate) local: Option<Box<Local>>,
    /// Listed in `Store::dirty_slots`.
    pub(crate) dirty: bool,
}

impl Slot {
    /// Re-publishes the value handles see (everything except unfolded local adds).
    pub(crate) fn publish(&self) {
        if let Some(local) = &self.local {
            local.cell.publish(self.total - local.folded);
        }
    }
}

/// Every named PN-Counter a node knows, and the versions needed to gossip only changes.
///
/// The store is sans-io: it never reads a clock, touches a socket or a file, or spawns a
/// thread. [`Counter`] handles add to it lock-free; [`Store::flush`] folds those adds
/// into this node's CRDT entries, each changed entry receiving a new version of this
/// node's actor; [`Store::delta_for`], [`Store::answer_sync`] and [`Store::apply_delta`]
/// exchange exactly the entries a peer lacks.
///
/// A store's actor lives exactly as long as the store: a node that restarts, even from
/// its data directory, gets a new actor and keeps the old one's entries as a peer's
/// (see [`Store::restore`]). So no actor ever issues a version twice, whatever happens
/// to disks, backups or cloned machines.
///
/// ```
/// use countermesh_core::{ActorId, MessageBudget, Store};
///
/// let mut a = Store::new(ActorId::from_u64(1), 1);
/// let mut b = Store::new(ActorId::from_u64(2), 2);
/// a.counter("hits")?.add(5);
/// b.counter("hits")?.add(-2);
/// a.flush();
/// b.flush();
///
/// // Each side sends what the other's digest lacks.
/// let budget = MessageBudget::new(1200).unwrap();
/// for delta in a.delta_for(&b.digest(), budget) {
///     b.apply_delta(&delta).unwrap();
/// }
/// for delta in b.delta_for(&a.digest(), budget) {
///     a.apply_delta(&delta).unwrap();
/// }
/// assert_eq!(a.value("hits"), Some(3));
/// assert_eq!(b.value("hits"), Some(3));
/// # Ok::<(), countermesh_core::CounterError>(())
/// ```
#[derive(Debug)]
pub struct Store {
    pub(crate) me: ActorId,
    pub(crate) limits: Limits,
    pub(crate) actors: Actors,
    pub(crate) slots: Vec<Slot>,
    index: HashTable<u32>,
    hasher: FixedState,
    /// Which slot holds each `(actor, version)`.
    pub(crate) versions: VersionIndex,
    /// Entries across all slots.
    pub(crate) entry_count: usize,
    /// Slots that have a [`Local`] (a handle was created), in creation order.
    local_slots: Vec<u32>,
    /// Highest version assigned to an own entry; also this actor's watermark, since the
    /// store holds every version it issued.
    pub(crate) local_version: u64,
    /// Whether changed entries are remembered for [`Store::take_changes`].
    pub(crate) track_changes: bool,
    /// Slots holding at least one dirty entry.
    pub(crate) dirty_slots: Vec<u32>,
    /// Per actor index, the watermark last handed out by [`Store::take_changes`].
    pub(crate) taken_watermarks: Vec<u64>,
    /// Refusals by limit since the last [`Store::take_limit_hits`], by [`LimitKind`].
    limit_hits: [u64; 3],
    /// Sinks, tombstones and seals (see `prune.rs`).
    pub(crate) pruning: crate::prune::Pruning,
    /// Entries dropped since the last [`Store::take_changes`] (pruned actors), for the
    /// committer to delete.
    pub(crate) removed: Vec<(String, ActorId)>,
    /// Actors retired since the last [`Store::take_changes`].
    pub(crate) retired: Vec<ActorId>,
    /// Slots holding a sink's reserved records rather than a counter.
    hidden_slots: usize,
    /// The actor of the incarnation whose data directory this store was restored from:
    /// certainly gone, since this process replaced it (see `Node::new`).
    pub(crate) previous_incarnation: Option<ActorId>,
}

impl Store {
    /// Creates an empty store for actor `me`.
    ///
    /// `hash_seed` seeds the name hash table; pass a random value in production (it keeps
    /// a peer from crafting colliding names) and a fixed one in deterministic tests.
    pub fn new(me: ActorId, hash_seed: u64) -> Self {
        Self {
            me,
            limits: Limits::default(),
            actors: Actors::new(me, hash_seed),
            slots: Vec::new(),
            index: HashTable::new(),
            hasher: FixedState::with_seed(hash_seed),
            versions: VersionIndex::default(),
            entry_count: 0,
            local_slots: Vec::new(),
            local_version: 0,
            track_changes: false,
            dirty_slots: Vec::new(),
            taken_watermarks: Vec::new(),
            limit_hits: [0; 3],
            pruning: crate::prune::Pruning::default(),
            removed: Vec::new(),
            retired: Vec::new(),
            hidden_slots: 0,
            previous_incarnation: None,
        }
    }

    /// Remembers changed entries and watermarks for [`Store::take_changes`], which a
    /// runtime with a data directory calls to commit them. Off by default.
    pub fn with_change_tracking(mut self, on: bool) -> Self {
        self.track_changes = on;
        self
    }

    /// Sets the bounds on counters, actors and entries. See [`Limits`].
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// This store's own actor.
    pub fn actor_id(&self) -> ActorId {
        self.me
    }

    /// The bounds in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Number of distinct counters known.
    pub fn len(&self) -> usize {
        self.slots.len() - self.hidden_slots
    }

    /// Whether no counter is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of distinct actors known, this node included.
    pub fn actor_count(&self) -> usize {
        self.actors.len()
    }

    /// Number of (counter, actor) entries held.
    pub fn entry_count(&self) -> usize {
        self.entry_count
    }

    /// Highest version this node has assigned to one of its own entries. Every own
    /// version up to it may be gossiped.
    pub fn local_version(&self) -> u64 {
        self.local_version
    }

    /// How many entries, actors or counters each limit refused since the last call, by
    /// [`LimitKind::ALL`] order; resets the tally.
    pub fn take_limit_hits(&mut self) -> [u64; 3] {
        std::mem::take(&mut self.limit_hits)
    }

    pub(crate) fn hit_limit(&mut self, kind: LimitKind, count: usize) {
        self.limit_hits[kind.index()] += count as u64;
    }

    /// A handle to the counter `name`, creating the counter (at value 0) if needed.
    ///
    /// Call this once per counter and keep the handle: the handle's `add` is the hot
    /// path, this lookup is not.
    pub fn counter(&mut self, name: &str) -> Result<Counter, CounterError> {
        name::validate_name(name)?;
        let idx = match self.find(name) {
            Some(idx) => idx,
            None => match self.insert_slot(name) {
                Some(idx) => idx,
                None => {
                    self.hit_limit(LimitKind::Counters, 1);
                    return Err(CounterError::TooManyCounters {
                        limit: self.limits.max_counters,
                    });
                }
            },
        };
        let slot = &mut self.slots[idx as usize];
        let local = slot.local.get_or_insert_with(|| {
            self.local_slots.push(idx);
            Box::new(Local {
                cell: Arc::new(Cell::new(slot.name.clone(), slot.total)),
                folded: 0,
            })
        });
        Ok(Counter::new(Arc::clone(&local.cell)))
    }

    /// The merged value of `name`, or `None` if this store has never heard of it.
    ///
    /// Includes this node's adds that have not been flushed yet.
    pub fn value(&self, name: &str) -> Option<i128> {
        let slot = &self.slots[self.find(name)? as usize];
        (!slot.name.is_reserved()).then(|| slot_value(slot))
    }

    /// Every counter with its merged value, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = (&CounterName, i128)> + '_ {
        self.slots
            .iter()
            .filter(|slot| !slot.name.is_reserved())
            .map(|slot| (&slot.name, slot_value(slot)))
    }

    /// Number of distinct actors that contributed to `name` (this node counts only once
    /// its adds have been flushed; a sink counts as one).
    pub fn contributors(&self, name: &str) -> Option<usize> {
        let slot = &self.slots[self.find(name)? as usize];
        Some(
            slot.entries
                .iter()
                .filter(|e| self.actors.counted(e.actor))
                .count(),
        )
    }

    /// Every actor's entry for `name`, in ascending actor order.
    pub fn contributions(&self, name: &str) -> Option<Vec<Contribution>> {
        let slot = &self.slots[self.find(name)? as usize];
        let mut out: Vec<Contribution> = slot
            .entries
            .iter()
            .map(|e| Contribution {
                actor: self.actors.id(e.actor),
                version: self.version_of(e),
                p: e.p,
                n: e.n,
            })
            .collect();
        out.sort_by_key(|c| c.actor);
        Some(out)
    }

    /// Folds every handle's pending adds into this node's CRDT entries.
    ///
    /// Each counter whose local sum changed gets its own entry updated and stamped with
    /// the next version of this node's actor. A million adds between two flushes produce
    /// one changed entry, which is why gossip bytes follow changed counters, not adds.
    pub fn flush(&mut self) -> FlushOutcome {
        let mut outcome = FlushOutcome::default();
        for i in 0..self.local_slots.len() {
            let slot_idx = self.local_slots[i];
            let Some(local) = self.slots[slot_idx as usize].local.as_ref() else {
                continue;
            };
            let delta = local.cell.local_sum() - local.folded;
            if delta == 0 {
                continue;
            }
            // Versions are checked, not wrapped: 2^62 of them take centuries to issue,
            // and past the limit adds stay pending rather than reuse a version.
            let Some(version) = self
                .local_version
                .checked_add(1)
                .filter(|&v| v <= crate::wire::MAX_VERSION)
            else {
                outcome
                    .saturated
                    .push(self.slots[slot_idx as usize].name.clone());
                continue;
            };
            let applied = self.fold_own(slot_idx, delta, version);
            if applied != delta {
                outcome
                    .saturated
                    .push(self.slots[slot_idx as usize].name.clone());
            }
            if applied == 0 {
                continue;
            }
            self.local_version = version;
            outcome.changed += 1;
        }
        self.actors.set_watermark(ME, self.local_version);
        outcome
    }

    /// Adds as much of `delta` to this node's entry of `slot_idx` as P and N can hold,
    /// stamping it with `version`. Returns the amount applied.
    fn fold_own(&mut self, slot_idx: u32, delta: i128, version: u64) -> i128 {
        let slot = &self.slots[slot_idx as usize];
        let own = slot.entries.first().filter(|e| e.actor == ME).copied();
        let (p, n) = own.map_or((0, 0), |e| (e.p, e.n));
        // Net folding: P and N stay grow-only, and P - N equals the local sum.
        let (new_p, new_n, applied) = if delta > 0 {
            let step = u64::try_from(delta).unwrap_or(u64::MAX).min(u64::MAX - p);
            (p + step, n, i128::from(step))
        } else {
            let step = u64::try_from(-delta).unwrap_or(u64::MAX).min(u64::MAX - n);
            (p, n + step, -i128::from(step))
        };
        if applied == 0 {
            return 0;
        }
        // Move the entry to its new version in the index (own versions only grow, so
        // the new item is appended).
        let vacated = own.map_or(Moved::Nothing, |e| self.versions.vacate(ME, e.pos()));
        let (pos, inserted) = self.versions.insert(ME, version, slot_idx);
        let track = self.track_changes;
        let slot = &mut self.slots[slot_idx as usize];
        if own.is_none() {
            grow_for_one(&mut slot.entries);
            slot.entries.insert(0, Entry::new(ME, pos, 0, 0));
            self.entry_count += 1;
        }
        let entry = &mut slot.entries[0];
        entry.p = new_p;
        entry.n = new_n;
        entry.set_pos(pos);
        if let Some(local) = slot.local.as_mut() {
            local.folded += applied;
        }
        slot.total += applied;
        // The published value is `total - folded`, which folding leaves unchanged, so
        // readers never see a flush as a jump.
        if track {
            entry.set_dirty(true);
            if !slot.dirty {
                slot.dirty = true;
                self.dirty_slots.push(slot_idx);
            }
        }
        self.fix_positions(ME, vacated);
        self.fix_positions(ME, inserted);
        applied
    }

    /// The version an entry carries.
    pub(crate) fn version_of(&self, entry: &Entry) -> u64 {
        self.versions.version(entry.actor, entry.pos())
    }

    /// Updates the entries whose index items moved.
    fn fix_positions(&mut self, actor: ActorIdx, moved: Moved) {
        let moved: Vec<(u32, u32)> = match moved {
            Moved::Nothing => return,
            Moved::ShiftedUp(range) => self
                .versions
                .positions(actor)
                .filter(|(pos, _)| range.contains(pos))
                .collect(),
            Moved::Compacted => self.versions.positions(actor).collect(),
        };
        for (pos, slot) in moved {
            let entries = &mut self.slots[slot as usize].entries;
            if let Ok(i) = entries.binary_search_by_key(&actor, |e| e.actor) {
                entries[i].set_pos(pos);
            }
        }
    }

    /// The contiguous watermark this store holds for `actor` (0 if unknown).
    pub fn watermark(&self, actor: ActorId) -> u64 {
        self.actors
            .lookup(actor)
            .map_or(0, |idx| self.watermark_of(idx))
    }

    pub(crate) fn watermark_of(&self, idx: ActorIdx) -> u64 {
        self.actors.watermark(idx)
    }

    pub(crate) fn find(&self, name: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(name);
        self.index
            .find(hash, |&idx| self.slots[idx as usize].name.as_str() == name)
            .copied()
    }

    /// Finds or creates the slot for an already-validated name.
    pub(crate) fn find_or_insert(&mut self, name: &str) -> Option<u32> {
        match self.find(name) {
            Some(idx) => Some(idx),
            None => self.insert_slot(name),
        }
    }

    fn insert_slot(&mut self, name: &str) -> Option<u32> {
        if self.slots.len() >= self.limits.max_counters {
            return None;
        }
        let idx = u32::try_from(self.slots.len()).ok()?;
        let name = if name::is_reserved(name) {
            self.hidden_slots += 1;
            CounterName::reserved(name)
        } else {
            CounterName::new(name).ok()?
        };
        let hash = self.hasher.hash_one(name.as_str());
        self.slots.push(Slot {
            name,
            entries: Vec::new(),
            total: 0,
            local: None,
            dirty: false,
        });
        let Self {
            index,
            slots,
            hasher,
            ..
        } = self;
        index.insert_unique(hash, idx, |&i| {
            hasher.hash_one(slots[i as usize].name.as_str())
        });
        Some(idx)
    }

    /// Merges one remote entry of a peer actor (per-actor maximum).
    ///
    /// Refuses an entry whose `(actor, version)` another counter already holds: an actor
    /// issues each version for exactly one change of one counter, so a second counter
    /// claiming it is corrupt or forged, and storing both would break every run built
    /// from them.
    pub(crate) fn merge_entry(
        &mut self,
        slot_idx: u32,
        actor: ActorIdx,
        version: u64,
        p: u64,
        n: u64,
    ) -> Merge {
        debug_assert_ne!(actor, ME, "own entries are never merged");
        if self
            .versions
            .get(actor, version)
            .is_some_and(|holder| holder != slot_idx)
        {
            return Merge::Conflict;
        }
        let track = self.track_changes;
        let existing = self.slots[slot_idx as usize]
            .entries
            .binary_search_by_key(&actor, |e| e.actor);
        let (changed, diff) = match existing {
            Ok(i) => {
                let held = self.slots[slot_idx as usize].entries[i];
                let held_version = self.version_of(&held);
                let (new_p, new_n) = (held.p.max(p), held.n.max(n));
                let diff = i128::from(new_p - held.p) - i128::from(new_n - held.n);
                let newer = version > held_version;
                let changed = new_p != held.p || new_n != held.n || newer;
                let mut pos = held.pos();
                let mut moves = (Moved::Nothing, Moved::Nothing);
                if newer {
                    moves.0 = self.versions.vacate(actor, held.pos());
                    let (new_pos, inserted) = self.versions.insert(actor, version, slot_idx);
                    pos = new_pos;
                    moves.1 = inserted;
                }
                let entry = &mut self.slots[slot_idx as usize].entries[i];
                entry.p = new_p;
                entry.n = new_n;
                entry.set_pos(pos);
                if changed && track {
                    entry.set_dirty(true);
                }
                self.fix_positions(actor, moves.0);
                self.fix_positions(actor, moves.1);
                (changed, diff)
            }
            Err(i) => {
                if self.entry_count >= self.limits.max_entries {
                    return Merge::Full;
                }
                let (pos, inserted) = self.versions.insert(actor, version, slot_idx);
                let entries = &mut self.slots[slot_idx as usize].entries;
                grow_for_one(entries);
                let mut entry = Entry::new(actor, pos, p, n);
                entry.set_dirty(track);
                entries.insert(i, entry);
                self.entry_count += 1;
                self.fix_positions(actor, inserted);
                (true, i128::from(p) - i128::from(n))
            }
        };
        let counted = self.actors.counted(actor);
        let slot = &mut self.slots[slot_idx as usize];
        if changed && track && !slot.dirty {
            slot.dirty = true;
            self.dirty_slots.push(slot_idx);
        }
        // An incomplete sink's entries wait to count (see `prune.rs`); records never do.
        if diff != 0 && counted && !slot.name.is_reserved() {
            slot.total += diff;
            slot.publish();
        }
        if changed {
            Merge::Changed
        } else {
            Merge::Unchanged
        }
    }

    /// Exports counter `name` as a `crdts::PNCounter` keyed by [`ActorId`], the reference
    /// implementation of the merge semantics this store follows. Pending (unflushed)
    /// local adds are not included.
    pub fn to_crdts(&self, name: &str) -> Option<crdts::PNCounter<ActorId>> {
        use crdts::CmRDT;
        use crdts::pncounter::{Dir, Op};

        let slot = &self.slots[self.find(name)? as usize];
        let mut counter = crdts::PNCounter::new();
        for entry in &slot.entries {
            let actor = self.actors.id(entry.actor);
            if entry.p > 0 {
                counter.apply(Op {
                    dot: crdts::Dot::new(actor, entry.p),
                    dir: Dir::Pos,
                });
            }
            if entry.n > 0 {
                counter.apply(Op {
                    dot: crdts::Dot::new(actor, entry.n),
                    dir: Dir::Neg,
                });
            }
        }
        Some(counter)
    }

    /// Merges another store's full state into this one (a state-based CRDT merge).
    ///
    /// Entries merge by per-actor maximum; watermarks move to the other store's where it
    /// is ahead, because after this merge everything the other store held is held here.
    /// Entries of this store's own actor are skipped (this store holds its own newest).
    pub fn merge(&mut self, other: &Store) -> crate::ApplyOutcome {
        let mut outcome = crate::ApplyOutcome::default();
        let mut complete = vec![true; other.actors.capacity()];
        let mut mapped: Vec<Option<ActorIdx>> = vec![None; other.actors.capacity()];
        for (theirs, id) in other.actors.iter() {
            if self.tombstones_hold(id) {
                continue;
            }
            let idx = self.actors.intern(id, self.limits.max_actors);
            if idx.is_none() {
                self.hit_limit(LimitKind::Actors, 1);
            }
            mapped[theirs as usize] = idx;
        }
        for slot in &other.slots {
            let Some(slot_idx) = self.find_or_insert(&slot.name) else {
                for entry in &slot.entries {
                    complete[entry.actor as usize] = false;
                    outcome.rejected += 1;
                }
                self.hit_limit(LimitKind::Counters, 1);
                continue;
            };
            for entry in &slot.entries {
                let Some(actor) = mapped[entry.actor as usize] else {
                    complete[entry.actor as usize] = false;
                    outcome.rejected += 1;
                    continue;
                };
                if actor == ME {
                    continue;
                }
                let version = other.version_of(entry);
                match self.merge_entry(slot_idx, actor, version, entry.p, entry.n) {
                    Merge::Changed => outcome.changed += 1,
                    Merge::Unchanged => {}
                    Merge::Conflict => {
                        complete[entry.actor as usize] = false;
                        outcome.conflicting += 1;
                    }
                    Merge::Full => {
                        complete[entry.actor as usize] = false;
                        outcome.rejected += 1;
                        self.hit_limit(LimitKind::Entries, 1);
                    }
                }
            }
        }
        for (idx, _) in other.actors.iter() {
            let (Some(mine), true) = (mapped[idx as usize], complete[idx as usize]) else {
                continue;
            };
            let theirs = other.watermark_of(idx);
            if mine != ME && self.actors.raise_watermark(mine, theirs) {
                outcome.watermarks_advanced += 1;
            }
        }
        self.complete_sinks();
        outcome
    }

    /// Checks the store's internal invariants, for tests and fuzzers: every entry's
    /// version is indexed at its slot and nowhere else, actors' versions are unique,
    /// totals equal the sum of entries, own entries are at or below the local version.
    /// Returns a description of the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut indexed = 0usize;
        let mut entries = 0usize;
        for (slot_idx, slot) in self.slots.iter().enumerate() {
            let mut total = 0i128;
            for pair in slot.entries.windows(2) {
                if pair[0].actor >= pair[1].actor {
                    return Err(format!("{}: entries not sorted by actor", slot.name));
                }
            }
            for e in &slot.entries {
                entries += 1;
                if self.actors.counted(e.actor) && !slot.name.is_reserved() {
                    total += i128::from(e.p) - i128::from(e.n);
                }
                let version = self.version_of(e);
                if e.actor == ME && version > self.local_version {
                    return Err(format!("{}: own entry above the local version", slot.name));
                }
                indexed += 1;
                if version == 0 || self.versions.get(e.actor, version) != Some(slot_idx as u32) {
                    return Err(format!(
                        "{}: version {} of actor {} is not indexed at its slot",
                        slot.name,
                        version,
                        self.actors.id(e.actor)
                    ));
                }
            }
            if !slot.name.is_reserved() && total != slot.total {
                return Err(format!("{}: total out of step", slot.name));
            }
        }
        if indexed != self.versions.len() {
            return Err("version index holds stale versions".into());
        }
        if entries != self.entry_count {
            return Err("entry count out of step".into());
        }
        if self.watermark_of(ME) != self.local_version {
            return Err("own watermark differs from the local version".into());
        }
        Ok(())
    }
}

fn slot_value(slot: &Slot) -> i128 {
    match &slot.local {
        Some(local) => slot.total + (local.cell.local_sum() - local.folded),
        None => slot.total,
    }
}

/// Grows small entry vectors one element at a time so a counter with ten actors holds
/// exactly ten entries, not sixteen; larger ones grow geometrically as usual.
fn grow_for_one(entries: &mut Vec<Entry>) {
    if entries.len() == entries.capacity() && entries.len() < 32 {
        entries.reserve_exact(1);
    }
}
