//! Persistence hooks: [`Store::take_changes`] hands a runtime what changed since its last
//! commit, and [`Store::restore`] rebuilds a store from what a runtime committed.
//!
//! The core never touches a file. A runtime that keeps a data directory calls
//! `take_changes` on its own schedule (group commit), writes the [`Changes`] in one
//! atomic transaction, and then calls [`Store::mark_durable`] with
//! [`Changes::local_version`]. Because a batch carries the entries and the watermarks of
//! one instant, a committed watermark is always backed by committed entries: after a
//! restart the store never claims to hold a version it has lost.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::actors::ME;
use crate::store::{Persistence, Store};
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
    /// This node's own version when the changes were taken. Once the batch is durable,
    /// pass it to [`Store::mark_durable`].
    pub local_version: u64,
}

impl Changes {
    /// Whether there is nothing to write besides, possibly, the local version.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.watermarks.is_empty()
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
    /// The node's actor id, created when the directory was initialised.
    pub actor: ActorId,
    /// The highest own version committed.
    pub local_version: u64,
    /// Every entry committed.
    pub entries: Vec<StoredEntry<'a>>,
    /// Every peer watermark committed.
    pub watermarks: Vec<(ActorId, u64)>,
}

/// Why [`Store::restore`] refused the state it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
}

impl Store {
    /// Takes every entry and watermark that changed since the previous call.
    ///
    /// Only tracked under [`Persistence::Required`]; otherwise the batch holds no entries
    /// or watermarks.
    pub fn take_changes(&mut self) -> Changes {
        let mut changes = Changes {
            local_version: self.local_version,
            ..Changes::default()
        };
        if !self.track_changes {
            return changes;
        }
        for slot_idx in std::mem::take(&mut self.dirty_slots) {
            let slot = &mut self.slots[slot_idx as usize];
            slot.dirty = false;
            for entry in slot.entries.iter_mut().filter(|e| e.dirty) {
                entry.dirty = false;
                changes.entries.push(StoredEntry {
                    name: Cow::Owned(slot.name.as_str().to_owned()),
                    actor: self.actors.id(entry.actor),
                    version: entry.version,
                    p: entry.p,
                    n: entry.n,
                });
            }
        }
        self.taken_watermarks.resize(self.actors.len(), 0);
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

    /// Rebuilds a store from durable state, for actor `restored.actor`.
    ///
    /// Own entries come back with their versions and the local version is restored, so
    /// the next flush continues the actor's version sequence instead of reusing numbers
    /// peers have already seen. Everything restored counts as durable and gossipable.
    pub fn restore(
        restored: &Restored<'_>,
        hash_seed: u64,
        persistence: Persistence,
        limits: crate::Limits,
    ) -> Result<Store, RestoreError> {
        let mut store = Store::new(restored.actor, hash_seed).with_limits(limits);
        // Restored entries are already on disk; do not hand them out as changes again.
        store.track_changes = false;
        for entry in &restored.entries {
            crate::name::validate_name(&entry.name)?;
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
            store.merge_entry(slot, actor, entry.version, entry.p, entry.n);
        }
        for &(id, watermark) in &restored.watermarks {
            let actor = store
                .actors
                .intern(id, store.limits.max_actors)
                .ok_or(RestoreError::LimitExceeded)?;
            if actor != ME {
                store.actors.raise_watermark(actor, watermark);
            }
        }
        store.local_version = store.local_version.max(restored.local_version);
        store.stable_version = store.local_version;
        store.taken_watermarks = (0..store.actors.len())
            .map(|idx| store.actors.watermark(idx as u32))
            .collect();
        Ok(store.with_persistence(persistence))
    }
}
