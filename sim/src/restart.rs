//! How a node process starts, commits, crashes and restarts: the simulator's model of
//! the runtime's data directory and of which actor a (re)started process uses.
//!
//! Everything that depends on the restart model lives in this module, so that a change
//! of that model (for example a fresh `ActorId` per process start, with the data
//! directory keeping earlier incarnations' entries) is a change here only. The rest of
//! the simulator learns the outcome from [`Started::actor`]: the oracle treats a
//! restart that keeps the actor as that actor continuing, and one that changes it as a
//! retired actor (its committed adds must survive) plus a new one.
//!
//! The model, as `crates/countermesh` implements it:
//! * Every start of a process uses a fresh random actor.
//! * In-memory nodes ([`Persistence::None`]) start with an empty store; a crash loses
//!   everything not yet gossiped.
//! * Nodes with a data directory ([`Persistence::Required`]) commit on a timer: fold
//!   pending adds (`Store::flush`), take what changed (`Store::take_changes`) and write
//!   it; gossip does not wait for the commit. A restart with the directory rebuilds the
//!   store with `Store::restore` under a new actor: the old actor's committed entries
//!   come back as a peer's, with its committed local version as their watermark; adds
//!   made after the last commit survive only if a peer received them. A restart with a
//!   wiped directory is a fresh start with an empty store.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use countermesh_core::{
    ActorId, Changes, Config, Limits, Node, NodeId, Restored, Store, StoredEntry,
};

/// Whether a node keeps a data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// No data directory: state lives in memory.
    None,
    /// A data directory written by a group committer.
    Required,
}
use rand::Rng;
use rand::rngs::SmallRng;

use crate::names::Names;

/// A modelled data directory: the state of the last commit.
#[derive(Debug)]
pub struct Disk {
    actor: ActorId,
    local_version: u64,
    /// `(counter, actor) -> (version, p, n)`; every field only grows.
    entries: HashMap<(u32, ActorId), (u64, u64, u64)>,
    watermarks: HashMap<ActorId, u64>,
}

impl Disk {
    fn new(actor: ActorId) -> Self {
        Self {
            actor,
            local_version: 0,
            entries: HashMap::new(),
            watermarks: HashMap::new(),
        }
    }

    /// A new process takes over the directory: the previous incarnation's committed
    /// local version becomes its watermark, as the runtime's storage does at start.
    fn begin(&mut self, actor: ActorId) {
        let previous = std::mem::replace(&mut self.actor, actor);
        if self.local_version > 0 {
            let held = self.watermarks.entry(previous).or_insert(0);
            *held = (*held).max(self.local_version);
        }
        self.local_version = 0;
    }

    /// Writes one commit batch, as the runtime's single redb transaction does.
    fn write(&mut self, changes: &Changes, names: &mut Names) {
        for entry in &changes.entries {
            let key = (names.intern(&entry.name), entry.actor);
            let held = self.entries.entry(key).or_insert((0, 0, 0));
            *held = (
                held.0.max(entry.version),
                held.1.max(entry.p),
                held.2.max(entry.n),
            );
        }
        for &(actor, watermark) in &changes.watermarks {
            let held = self.watermarks.entry(actor).or_insert(0);
            *held = (*held).max(watermark);
        }
        // Pruned actors' entries and watermarks are deleted after the writes.
        for (name, actor) in &changes.removed {
            let key = (names.intern(name), *actor);
            self.entries.remove(&key);
        }
        for actor in &changes.retired {
            self.watermarks.remove(actor);
        }
        self.local_version = self.local_version.max(changes.local_version);
    }

    /// What the runtime would load from this directory, in a deterministic order.
    fn restored<'a>(&self, names: &'a Names) -> Restored<'a> {
        let mut entries: Vec<_> = self.entries.iter().collect();
        entries.sort_unstable_by_key(|&(&key, _)| key);
        let mut watermarks: Vec<(ActorId, u64)> =
            self.watermarks.iter().map(|(&a, &w)| (a, w)).collect();
        watermarks.sort_unstable();
        Restored {
            actor: self.actor,
            local_version: self.local_version,
            entries: entries
                .into_iter()
                .map(|(&(name, actor), &(version, p, n))| StoredEntry {
                    name: names.name(name).into(),
                    actor,
                    version,
                    p,
                    n,
                })
                .collect(),
            watermarks,
        }
    }

    /// Number of (counter, actor) entries on disk.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was ever committed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What every start of a process needs.
#[derive(Debug, Clone, Copy)]
pub struct BootParams<'a> {
    /// Protocol settings.
    pub config: &'a Config,
    /// Whether the node keeps a data directory.
    pub persistence: Persistence,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The incarnation of the previous process at this address (0 if none).
    pub previous_incarnation: u64,
    /// Virtual time in ns (incarnations follow it, as the runtime's follow the clock).
    pub now_ns: u64,
    /// The node's clock.
    pub now: Instant,
}

/// How a stopped process comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartKind {
    /// With its data directory.
    Durable,
    /// With an empty (or no) data directory.
    Wiped,
    /// Deliberately wrong, for the checks' own tests: an empty store that reuses the
    /// old actor id, which hides the new adds behind what peers already hold.
    WipedReusingActor,
}

/// A started process.
#[derive(Debug)]
pub struct Started {
    /// The protocol node.
    pub node: Node,
    /// The actor it adds as.
    pub actor: ActorId,
    /// Its data directory, if it keeps one.
    pub disk: Option<Disk>,
}

/// The incarnation for a new process at an address: above the previous one, and
/// following virtual milliseconds like the runtime's wall-clock milliseconds.
fn incarnation(params: &BootParams<'_>) -> u64 {
    (params.previous_incarnation + 1).max(params.now_ns / 1_000_000 + 1)
}

/// Builds the node for `store`; the config was validated with the scenario.
fn node(params: &BootParams<'_>, store: Store, rng: &mut SmallRng) -> Node {
    let id = NodeId::new(params.addr, store.actor_id(), incarnation(params));
    Node::new(params.config.clone(), id, store, rng.next_u64(), params.now)
        .expect("the scenario's protocol config was validated when it was loaded")
}

/// A first start: a fresh actor, an empty store and, with persistence, an empty data
/// directory.
pub fn boot(params: &BootParams<'_>, rng: &mut SmallRng) -> Started {
    let actor = ActorId::random(rng);
    let durable = params.persistence == Persistence::Required;
    let store = Store::new(actor, rng.next_u64()).with_change_tracking(durable);
    let disk = durable.then(|| Disk::new(actor));
    Started {
        node: node(params, store, rng),
        actor,
        disk,
    }
}

/// A restart of a crashed process.
pub fn restart(
    params: &BootParams<'_>,
    kind: RestartKind,
    old_actor: ActorId,
    disk: Option<Disk>,
    names: &Names,
    rng: &mut SmallRng,
) -> Started {
    match (kind, disk) {
        (RestartKind::Durable, Some(mut disk)) => {
            let actor = ActorId::random(rng);
            let restored = disk.restored(names);
            let store = Store::restore(&restored, actor, rng.next_u64(), Limits::default())
                .expect("a disk written from take_changes always restores")
                .with_change_tracking(true);
            disk.begin(actor);
            Started {
                node: node(params, store, rng),
                actor,
                disk: Some(disk),
            }
        }
        (RestartKind::WipedReusingActor, _) => {
            let durable = params.persistence == Persistence::Required;
            let store = Store::new(old_actor, rng.next_u64()).with_change_tracking(durable);
            let disk = (params.persistence == Persistence::Required).then(|| Disk::new(old_actor));
            Started {
                node: node(params, store, rng),
                actor: old_actor,
                disk,
            }
        }
        // A durable restart without a directory cannot happen (validation ties durable
        // restarts to persistence); it is a fresh start like a wiped one.
        (RestartKind::Durable | RestartKind::Wiped, _) => boot(params, rng),
    }
}

/// What the runtime's group committer does: fold, take the changes and write them in
/// one transaction (gossip never waits for it).
pub fn commit(node: &mut Node, disk: &mut Disk, names: &mut Names) {
    let store = node.store_mut();
    // Saturation (2^64 units from one node) cannot happen with the simulator's amounts.
    store.flush();
    let changes = store.take_changes();
    disk.write(&changes, names);
}

/// Whether a crash followed by a restart of `kind` keeps the committed adds of the
/// crashed process (they must then survive exactly).
pub fn keeps_committed(kind: RestartKind) -> bool {
    kind == RestartKind::Durable
}
