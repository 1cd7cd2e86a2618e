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
use crate::{ActorId, Counter, CounterName, NameError, name};

/// Default bound on distinct counters in one store; see [`Limits`].
pub const DEFAULT_MAX_COUNTERS: usize = 1_000_000;
/// Default bound on distinct actors in one store; see [`Limits`].
pub const DEFAULT_MAX_ACTORS: usize = 65_536;

/// Bounds that keep a misbehaving peer from growing a store without limit.
///
/// When a delta would exceed a bound, the entries that do not fit are rejected and the
/// watermark of their actor is *not* advanced, so nothing is silently claimed as seen:
/// the entries are offered again by the next anti-entropy round, after an operator has
/// raised the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum number of distinct counters.
    pub max_counters: usize,
    /// Maximum number of distinct actors, this node included.
    pub max_actors: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_counters: DEFAULT_MAX_COUNTERS,
            max_actors: DEFAULT_MAX_ACTORS,
        }
    }
}

/// When this node's own folded changes may be gossiped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Persistence {
    /// Own changes are gossiped as soon as they are flushed. For nodes without durable
    /// storage: if the process dies, its un-gossiped adds die with it, and a restarted
    /// node must use a fresh [`ActorId`].
    #[default]
    None,
    /// Own changes are gossiped only after the runtime reports them durable with
    /// [`Store::mark_durable`]. This is what makes a restart from the data directory
    /// safe: no peer can hold a version of this actor that the disk does not, so a
    /// restarted node never reuses a version number for different contents.
    Required,
}

/// Why [`Store::counter`] could not hand out a counter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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

/// One actor's contribution to one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) actor: ActorIdx,
    /// Changed since the last [`Store::take_changes`]. Lives in what would otherwise be
    /// padding after `actor`, so it costs no memory.
    pub(crate) dirty: bool,
    /// The actor's version at which it last changed this entry.
    pub(crate) version: u64,
    /// Total of the actor's increments (grow-only).
    pub(crate) p: u64,
    /// Total of the actor's decrements (grow-only).
    pub(crate) n: u64,
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
    fn publish(&self) {
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
/// node's actor; [`Store::digest`], [`Store::delta_for`] and [`Store::apply_delta`]
/// exchange exactly the entries a peer lacks.
///
/// ```
/// use countermesh_core::{ActorId, Store};
///
/// let mut a = Store::new(ActorId::from_u64(1), 1);
/// let mut b = Store::new(ActorId::from_u64(2), 2);
/// a.counter("hits")?.add(5);
/// b.counter("hits")?.add(-2);
/// a.flush();
/// b.flush();
///
/// // Each side sends what the other's digest lacks.
/// for delta in a.delta_for(&b.digest(), 1200).unwrap() {
///     b.apply_delta(&delta).unwrap();
/// }
/// for delta in b.delta_for(&a.digest(), 1200).unwrap() {
///     a.apply_delta(&delta).unwrap();
/// }
/// assert_eq!(a.value("hits"), Some(3));
/// assert_eq!(b.value("hits"), Some(3));
/// # Ok::<(), countermesh_core::CounterError>(())
/// ```
#[derive(Debug)]
pub struct Store {
    pub(crate) me: ActorId,
    pub(crate) persistence: Persistence,
    pub(crate) limits: Limits,
    pub(crate) actors: Actors,
    pub(crate) slots: Vec<Slot>,
    index: HashTable<u32>,
    hasher: FixedState,
    /// Slots that have a [`Local`] (a handle was created), in creation order.
    local_slots: Vec<u32>,
    /// Highest version assigned to an own entry.
    pub(crate) local_version: u64,
    /// Highest own version that may be gossiped (see [`Persistence`]).
    pub(crate) stable_version: u64,
    /// Whether changed entries are remembered for [`Store::take_changes`]; on under
    /// [`Persistence::Required`].
    pub(crate) track_changes: bool,
    /// Slots holding at least one dirty entry.
    pub(crate) dirty_slots: Vec<u32>,
    /// Per actor index, the watermark last handed out by [`Store::take_changes`].
    pub(crate) taken_watermarks: Vec<u64>,
}

impl Store {
    /// Creates an empty store for actor `me`.
    ///
    /// `hash_seed` seeds the name hash table; pass a random value in production (it keeps
    /// a peer from crafting colliding names) and a fixed one in deterministic tests.
    pub fn new(me: ActorId, hash_seed: u64) -> Self {
        Self {
            me,
            persistence: Persistence::None,
            limits: Limits::default(),
            actors: Actors::new(me, hash_seed),
            slots: Vec::new(),
            index: HashTable::new(),
            hasher: FixedState::with_seed(hash_seed),
            local_slots: Vec::new(),
            local_version: 0,
            stable_version: 0,
            track_changes: false,
            dirty_slots: Vec::new(),
            taken_watermarks: Vec::new(),
        }
    }

    /// Sets when own changes may be gossiped. See [`Persistence`].
    pub fn with_persistence(mut self, persistence: Persistence) -> Self {
        self.persistence = persistence;
        self.track_changes = persistence == Persistence::Required;
        self
    }

    /// Sets the bounds on counters and actors. See [`Limits`].
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// This store's own actor.
    pub fn actor_id(&self) -> ActorId {
        self.me
    }

    /// Number of distinct counters known.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no counter is known.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Number of distinct actors known, this node included.
    pub fn actor_count(&self) -> usize {
        self.actors.len()
    }

    /// Highest version this node has assigned to one of its own entries.
    pub fn local_version(&self) -> u64 {
        self.local_version
    }

    /// Highest own version that peers may be sent. Equal to [`Store::local_version`]
    /// under [`Persistence::None`]; under [`Persistence::Required`] it trails it until
    /// [`Store::mark_durable`] is called.
    pub fn stable_version(&self) -> u64 {
        self.stable_version
    }

    /// The persistence mode. See [`Persistence`].
    pub fn persistence(&self) -> Persistence {
        self.persistence
    }

    /// Whether this node's own entries may be sent right now.
    ///
    /// Under [`Persistence::Required`], a flush re-stamps an own entry with a version
    /// above the durable one, and the entry's previous (durable) state is gone from
    /// memory. Until the runtime marks the new versions durable, a run of this actor
    /// claiming `upto = stable_version` would leave that entry out, and a peer would raise
    /// its watermark without holding the entry's durable state; if this node then
    /// crashed, the peer would never ask for it again. So own entries are served only
    /// while every own version is durable.
    pub fn own_entries_servable(&self) -> bool {
        self.local_version == self.stable_version
    }

    /// Reports that all own entries up to `version` are durable, which allows them to
    /// be gossiped. Versions above [`Store::local_version`] are clamped.
    pub fn mark_durable(&mut self, version: u64) {
        let version = version.min(self.local_version);
        self.stable_version = self.stable_version.max(version);
    }

    /// A handle to the counter `name`, creating the counter (at value 0) if needed.
    ///
    /// Call this once per counter and keep the handle: the handle's `add` is the hot
    /// path, this lookup is not.
    pub fn counter(&mut self, name: &str) -> Result<Counter, CounterError> {
        name::validate_name(name)?;
        let idx = match self.find(name) {
            Some(idx) => idx,
            None => self
                .insert_slot(name)
                .ok_or(CounterError::TooManyCounters {
                    limit: self.limits.max_counters,
                })?,
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
        Some(slot_value(slot))
    }

    /// Every counter with its merged value, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = (&CounterName, i128)> + '_ {
        self.slots.iter().map(|slot| (&slot.name, slot_value(slot)))
    }

    /// Number of distinct actors that contributed to `name` (this node counts only once
    /// its adds have been flushed).
    pub fn contributors(&self, name: &str) -> Option<usize> {
        Some(self.slots[self.find(name)? as usize].entries.len())
    }

    /// Every actor's entry for `name`, in ascending actor order.
    pub fn contributions(&self, name: &str) -> Option<Vec<Contribution>> {
        let slot = &self.slots[self.find(name)? as usize];
        let mut out: Vec<Contribution> = slot
            .entries
            .iter()
            .map(|e| Contribution {
                actor: self.actors.id(e.actor),
                version: e.version,
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
            let slot_idx = self.local_slots[i] as usize;
            let slot = &mut self.slots[slot_idx];
            let Some(local) = slot.local.as_mut() else {
                continue;
            };
            let delta = local.cell.local_sum() - local.folded;
            if delta == 0 {
                continue;
            }
            let pos = own_entry_position(&mut slot.entries);
            let entry = &mut slot.entries[pos];
            // Net folding: P and N stay grow-only, and P - N equals the local sum.
            let applied = if delta > 0 {
                let room = u64::MAX - entry.p;
                let step = u64::try_from(delta).unwrap_or(u64::MAX).min(room);
                entry.p += step;
                i128::from(step)
            } else {
                let room = u64::MAX - entry.n;
                let step = u64::try_from(-delta).unwrap_or(u64::MAX).min(room);
                entry.n += step;
                -i128::from(step)
            };
            if applied != delta {
                outcome.saturated.push(slot.name.clone());
            }
            if applied == 0 {
                continue;
            }
            local.folded += applied;
            slot.total += applied;
            // The published value is `total - folded`, which folding leaves unchanged, so
            // readers never see a flush as a jump.
            self.local_version += 1;
            entry.version = self.local_version;
            outcome.changed += 1;
            if self.track_changes {
                entry.dirty = true;
                if !slot.dirty {
                    slot.dirty = true;
                    self.dirty_slots.push(slot_idx as u32);
                }
            }
        }
        if self.persistence == Persistence::None {
            self.stable_version = self.local_version;
        }
        outcome
    }

    /// The contiguous watermark this store holds for `actor` (0 if unknown).
    pub fn watermark(&self, actor: ActorId) -> u64 {
        self.actors
            .lookup(actor)
            .map_or(0, |idx| self.watermark_of(idx))
    }

    pub(crate) fn watermark_of(&self, idx: ActorIdx) -> u64 {
        if idx == ME {
            self.stable_version
        } else {
            self.actors.watermark(idx)
        }
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
        let name = CounterName::new(name).ok()?;
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

    /// Merges one remote entry (per-actor maximum). Returns whether anything changed.
    pub(crate) fn merge_entry(
        &mut self,
        slot_idx: u32,
        actor: ActorIdx,
        version: u64,
        p: u64,
        n: u64,
    ) -> bool {
        let track = self.track_changes;
        let slot = &mut self.slots[slot_idx as usize];
        let (changed, diff) = match slot.entries.binary_search_by_key(&actor, |e| e.actor) {
            Ok(pos) => {
                let entry = &mut slot.entries[pos];
                let (new_p, new_n) = (entry.p.max(p), entry.n.max(n));
                let diff = i128::from(new_p - entry.p) - i128::from(new_n - entry.n);
                let changed = new_p != entry.p || new_n != entry.n || version > entry.version;
                entry.p = new_p;
                entry.n = new_n;
                entry.version = entry.version.max(version);
                entry.dirty |= changed && track;
                (changed, diff)
            }
            Err(pos) => {
                grow_for_one(&mut slot.entries);
                slot.entries.insert(
                    pos,
                    Entry {
                        actor,
                        dirty: track,
                        version,
                        p,
                        n,
                    },
                );
                (true, i128::from(p) - i128::from(n))
            }
        };
        if changed && track && !slot.dirty {
            slot.dirty = true;
            self.dirty_slots.push(slot_idx);
        }
        if diff != 0 {
            slot.total += diff;
            slot.publish();
        }
        if actor == ME && version > self.local_version {
            // A peer holds a newer version of our own state than we do: our state was
            // lost or restored from an older copy. Adopting it (done above, by maximum)
            // recovers the lost counts; moving our version past it keeps the next flush
            // from reusing a version number that peers already associate with other
            // contents.
            self.local_version = version;
            if self.persistence == Persistence::None {
                self.stable_version = version;
            }
        }
        changed
    }

    /// Iterates over `(slot index, entry)` for every entry of every counter.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u32, &Entry)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .flat_map(|(i, slot)| slot.entries.iter().map(move |e| (i as u32, e)))
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
    pub fn merge(&mut self, other: &Store) -> crate::ApplyOutcome {
        let mut outcome = crate::ApplyOutcome::default();
        let mut complete = vec![true; other.actors.len()];
        let mut mapped: Vec<Option<ActorIdx>> = Vec::with_capacity(other.actors.len());
        for (_, id) in other.actors.iter() {
            mapped.push(self.actors.intern(id, self.limits.max_actors));
        }
        for slot in &other.slots {
            let Some(slot_idx) = self.find_or_insert(&slot.name) else {
                for entry in &slot.entries {
                    complete[entry.actor as usize] = false;
                    outcome.rejected += 1;
                }
                continue;
            };
            for entry in &slot.entries {
                // The other store's own entries above its stable version are not
                // public yet; skip them exactly as its deltas would.
                if entry.actor == ME && entry.version > other.stable_version {
                    complete[ME as usize] = false;
                    continue;
                }
                match mapped[entry.actor as usize] {
                    Some(actor) => {
                        if self.merge_entry(slot_idx, actor, entry.version, entry.p, entry.n) {
                            outcome.changed += 1;
                        }
                    }
                    None => {
                        complete[entry.actor as usize] = false;
                        outcome.rejected += 1;
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
        outcome
    }
}

fn slot_value(slot: &Slot) -> i128 {
    match &slot.local {
        Some(local) => slot.total + (local.cell.local_sum() - local.folded),
        None => slot.total,
    }
}

/// Position of the own entry (actor 0 sorts first), inserting an empty one if missing.
fn own_entry_position(entries: &mut Vec<Entry>) -> usize {
    if entries.first().is_none_or(|e| e.actor != ME) {
        grow_for_one(entries);
        entries.insert(
            0,
            Entry {
                actor: ME,
                dirty: false,
                version: 0,
                p: 0,
                n: 0,
            },
        );
    }
    0
}

/// Grows small entry vectors one element at a time so a counter with ten actors holds
/// exactly ten entries, not sixteen; larger ones grow geometrically as usual.
fn grow_for_one(entries: &mut Vec<Entry>) {
    if entries.len() == entries.capacity() && entries.len() < 32 {
        entries.reserve_exact(1);
    }
}
