//! Persistence hooks: [`Store::take_changes`] hands a runtime what changed since its last
//! commit, and [`Store::restore`] rebuilds a store from what a runtime committed.
//!
//! The core never touches a file. A runtime that keeps a data directory calls
//! `take_changes` on its own schedule (group commit) and writes the [`Changes`] in one
//! atomic transaction. Because a batch carries the entries and the watermarks of one
//! instant, a committed watermark is always backed by committed entries: after a
//! restart the store never claims to hold a version it has lost.
//!
//! A restarted node does not continue its old actor. It restores the old actor's
//! entries as a peer's, with the committed local version as their watermark (every own
//! version up to it was committed), and counts from then on under a fresh actor. Its
//! disk may be older than what peers hold of the old actor (adds gossiped after the last
//! commit, a data directory restored from a backup, a cloned machine): those entries
//! simply arrive by anti-entropy, because no actor ever issues a version twice.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::actors::ME;
use crate::store::{Merge, Store};
use crate::{ActorId, CounterName, NameError};

/// One (counter, actor) entry as a runtime stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry<'a> {
    /// The counter.
    pub name: Cow<'a, str>,
    /// The actor whose contribution this is.
    pub actor: ActorId,
    /// The actor's version at which it last changed this entry.
    pub version: u64,
    /// The actor's total increments.
    pub p: u64,
    /// The actor's total decrements.
    pub n: u64,
}

/// Everything that changed since the previous [`Store::take_changes`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Entries that changed, own and learned, at their current state.
    pub entries: Vec<StoredEntry<'static>>,
    /// Peers' watermarks that moved, at their current value.
    pub watermarks: Vec<(ActorId, u64)>,
    /// This node's own version when the changes were taken: once the batch is
    /// written, every own version up to it is on disk.
    pub local_version: u64,
    /// Entries dropped because their actor was pruned: `(counter, actor)`. Written
    /// after `entries`, so a removal wins.
    pub removed: Vec<(String, ActorId)>,
    /// Actors pruned: their watermarks are deleted.
    pub retired: Vec<ActorId>,
}

impl Changes {
    /// Whether there is nothing to write besides, possibly, the local version.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
            && self.watermarks.is_empty()
            && self.removed.is_empty()
            && self.retired.is_empty()
    }

    /// Appends a later batch to this one (for a runtime whose previous commit failed and
    /// that retries it together with the next one). Later values win, which is correct
    /// because every stored quantity only grows.
    ///
    /// The result holds one item per (counter, actor) and per actor, so a batch retried
    /// many times over (a full disk) stays as large as the set of changed entries.
    pub fn absorb(&mut self, later: Changes) {
        let mut entries: HashMap<(String, ActorId), StoredEntry<'static>> =
            HashMap::with_capacity(self.entries.len() + later.entries.len());
        let removed: std::collections::HashSet<(String, ActorId)> =
            later.removed.iter().cloned().collect();
        let retired: std::collections::HashSet<ActorId> = later.retired.iter().copied().collect();
        // A later removal wins over an earlier write of the same entry or actor.
        self.entries.retain(|e| {
            !retired.contains(&e.actor) && !removed.contains(&(e.name.to_string(), e.actor))
        });
        self.watermarks.retain(|(a, _)| !retired.contains(a));
        self.removed.extend(later.removed);
        self.retired.extend(later.retired);
        for entry in self.entries.drain(..).chain(later.entries) {
            let key = (entry.name.to_string(), entry.actor);
            match entries.get_mut(&key) {
                // Every field only grows, so the later item is the larger one; taking the
                // maximum keeps this correct whatever the order.
                Some(held) => {
                    held.version = held.version.max(entry.version);
                    held.p = held.p.max(entry.p);
                    held.n = held.n.max(entry.n);
                }
                None => {
                    entries.insert(key, entry);
                }
            }
        }
        self.entries = entries.into_values().collect();
        let mut watermarks: HashMap<ActorId, u64> = HashMap::new();
        for (actor, version) in self.watermarks.drain(..).chain(later.watermarks) {
            let held = watermarks.entry(actor).or_insert(0);
            *held = (*held).max(version);
        }
        self.watermarks = watermarks.into_iter().collect();
        self.local_version = self.local_version.max(later.local_version);
    }
}

/// A store's durable state, as loaded from a data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored<'a> {
    /// The actor of the node incarnation that wrote the state.
    pub actor: ActorId,
    /// The highest version of that actor committed: every entry it issued up to this
    /// version is among `entries`.
    pub local_version: u64,
    /// Every entry committed.
    pub entries: Vec<StoredEntry<'a>>,
    /// Every peer watermark committed.
    pub watermarks: Vec<(ActorId, u64)>,
}

/// Why [`Store::restore`] refused the state it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// A stored counter name is not valid.
    #[error("stored counter name is invalid: {0}")]
    InvalidName(#[from] NameError),
    /// An own entry claims a version above the stored local version, which a correct
    /// runtime never writes.
    #[error("own entry for {name:?} has version {version} above the local version {local}")]
    VersionAhead {
        /// The counter.
        name: CounterName,
        /// The entry's version.
        version: u64,
        /// The stored local version.
        local: u64,
    },
    /// The state holds more counters or actors than the store's limits allow.
    #[error("the stored state exceeds the store's limits")]
    LimitExceeded,
    /// Two stored entries of one actor carry the same version.
    #[error("stored entries of actor {actor} share version {version}")]
    Conflict {
        /// The actor.
        actor: ActorId,
        /// The shared version.
        version: u64,
    },
    /// The new actor already appears in the stored state: a restored store must count
    /// under a fresh actor.
    #[error("actor {0} already appears in the stored state; restore needs a fresh actor")]
    ActorReused(ActorId),
}

impl Store {
    /// Takes every entry and watermark that changed since the previous call.
    ///
    /// Only tracked after [`Store::with_change_tracking`]; otherwise the batch holds no entries
    /// or watermarks.
    pub fn take_changes(&mut self) -> Changes {
        let mut changes = Changes {
            local_version: self.local_version,
            ..Changes::default()
        };
        if !self.track_changes {
            return changes;
        }
        changes.removed = std::mem::take(&mut self.removed);
        changes.retired = std::mem::take(&mut self.retired);
        for slot_idx in std::mem::take(&mut self.dirty_slots) {
            let slot = &mut self.slots[slot_idx as usize];
            slot.dirty = false;
            for entry in slot.entries.iter_mut().filter(|e| e.dirty()) {
                entry.set_dirty(false);
                changes.entries.push(StoredEntry {
                    name: Cow::Owned(slot.name.as_str().to_owned()),
                    actor: self.actors.id(entry.actor),
                    version: self.versions.version(entry.actor, entry.pos()),
                    p: entry.p,
                    n: entry.n,
                });
            }
        }
        self.taken_watermarks.resize(self.actors.capacity(), 0);
        for (idx, id) in self.actors.iter() {
            if idx == ME {
                continue;
            }
            let watermark = self.actors.watermark(idx);
            if watermark != self.taken_watermarks[idx as usize] {
                self.taken_watermarks[idx as usize] = watermark;
                changes.watermarks.push((id, watermark));
            }
        }
        changes
    }

    /// Rebuilds a store from durable state, counting from now on as the fresh actor
    /// `me`.
    ///
    /// Every stored entry comes back as a peer actor's, the writing incarnation's own
    /// included, with the committed watermarks (the writer's at its committed local
    /// version). `me` must not appear in the state. The store does not track changes;
    /// call [`Store::with_change_tracking`] to resume committing.
    pub fn restore(
        restored: &Restored<'_>,
        me: ActorId,
        hash_seed: u64,
        limits: crate::Limits,
    ) -> Result<Store, RestoreError> {
        if me == restored.actor
            || restored.entries.iter().any(|e| e.actor == me)
            || restored.watermarks.iter().any(|&(a, _)| a == me)
        {
            return Err(RestoreError::ActorReused(me));
        }
        let mut store = Store::new(me, hash_seed).with_limits(limits);
        for entry in &restored.entries {
            crate::name::validate_entry_name(entry.actor, &entry.name)?;
            if entry.actor == restored.actor && entry.version > restored.local_version {
                return Err(RestoreError::VersionAhead {
                    name: CounterName::new(&entry.name)?,
                    version: entry.version,
                    local: restored.local_version,
                });
            }
            let slot = store
                .find_or_insert(&entry.name)
                .ok_or(RestoreError::LimitExceeded)?;
            let actor = store
                .actors
                .intern(entry.actor, store.limits.max_actors)
                .ok_or(RestoreError::LimitExceeded)?;
            match store.merge_entry(slot, actor, entry.version, entry.p, entry.n) {
                Merge::Changed | Merge::Unchanged => {}
                Merge::Conflict => {
                    return Err(RestoreError::Conflict {
                        actor: entry.actor,
                        version: entry.version,
                    });
                }
                Merge::Full => return Err(RestoreError::LimitExceeded),
            }
        }
        let writer = (restored.actor, restored.local_version);
        for &(id, watermark) in restored.watermarks.iter().chain(std::iter::once(&writer)) {
            if watermark == 0 {
                continue;
            }
            let actor = store
                .actors
                .intern(id, store.limits.max_actors)
                .ok_or(RestoreError::LimitExceeded)?;
            store.actors.raise_watermark(actor, watermark);
        }
        store.complete_sinks();
        store.previous_incarnation = Some(restored.actor);
        store.removed.clear();
        store.retired.clear();
        store.taken_watermarks = (0..store.actors.capacity())
            .map(|idx| store.actors.watermark(idx as u32))
            .collect();
        Ok(store)
    }
}
