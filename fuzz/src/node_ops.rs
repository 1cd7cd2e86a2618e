//! The stateful target: an arbitrary sequence of operations on one `Node` (messages
//! from fake peers, honest and not, raw bytes, sinks, prune messages, time passing,
//! local adds, flushes and a committer's `take_changes`), with every invariant of
//! `check` and `honest` verified after each step.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use countermesh_core::{
    ActorId, ActorRange, Changes, Channel, Counter, Delta, Limits, Message, Node, Part, Restored,
    Run, Store, StoredEntry, SyncRequest,
};

use crate::check::{check_store, drain_checked, drain_events, drain_transmits};
use crate::honest::{HONEST_ACTORS, Honest};
use crate::protocol::{
    DeltaSpec, NAMES, NODE_ACTOR, PruneSpec, SINK_BIT, Setup, SinkSpec, SyncSpec, announce,
    auditor_addr, counter_name, encode_valid_delta, encode_valid_prune, encode_valid_sync,
    peer_actor, peer_addr,
};

/// Most operations one input runs (longer inputs are cut), which keeps every execution
/// short.
pub const MAX_OPS: usize = 48;

/// One step.
#[derive(Debug, Clone, Arbitrary)]
pub enum Op {
    /// Fake peer `peer` joins over SWIM, so it becomes a member the node gossips with.
    Join {
        /// Which peer.
        peer: u8,
    },
    /// A structurally valid delta with any content.
    Delta {
        /// Sender.
        peer: u8,
        /// The delta.
        delta: DeltaSpec,
    },
    /// A structurally valid sync request with any content.
    Sync {
        /// Sender.
        peer: u8,
        /// The request.
        sync: SyncSpec,
    },
    /// Raw bytes on a channel.
    Raw {
        /// Sender.
        peer: u8,
        /// The stream channel, else the datagram channel.
        stream: bool,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// An honest actor changes a counter (nothing is sent).
    Truth {
        /// Which honest actor.
        actor: u8,
        /// Which counter.
        name: u8,
        /// By how much.
        amount: i16,
    },
    /// A peer sends a slice of an honest actor's history, as a correct holder would.
    Honest {
        /// Sender.
        peer: u8,
        /// Which honest actor.
        actor: u8,
        /// Folded into the run's `after`.
        after: u16,
        /// Folded into the run's `upto`.
        cut: u16,
        /// Also send entries above `upto`.
        extra: bool,
    },
    /// A peer sends a sink (whole or cut short; correct or lying).
    Sink {
        /// Sender.
        peer: u8,
        /// The sink.
        sink: SinkSpec,
    },
    /// A peer sends a prune message.
    Prune {
        /// Sender.
        peer: u8,
        /// The message.
        prune: PruneSpec,
    },
    /// Time passes; everything due runs.
    Advance {
        /// Milliseconds.
        ms: u16,
    },
    /// A gossip round now.
    GossipNow,
    /// A local add through a counter handle.
    Add {
        /// Which counter.
        name: u8,
        /// By how much.
        amount: i64,
    },
    /// Fold local adds.
    Flush,
    /// The committer folds and takes a batch, as the runtime does, and writes it to the
    /// model disk.
    TakeChanges,
}

/// A whole input: the node's setup and the steps.
#[derive(Debug, Clone, Arbitrary)]
pub struct Scenario {
    /// How the node is configured.
    pub setup: Setup,
    /// What happens to it.
    pub ops: Vec<Op>,
}

/// What a committer has written: every batch `take_changes` returned, applied in order
/// as the runtime's data directory applies them.
#[derive(Debug, Default)]
struct Disk {
    entries: HashMap<(String, ActorId), (u64, u64, u64)>,
    watermarks: HashMap<ActorId, u64>,
    local_version: u64,
}

impl Disk {
    /// Writes one batch. Every stored quantity only grows, so a batch that would lower
    /// one is a bug of `take_changes`.
    fn write(&mut self, changes: Changes) {
        assert!(
            changes.local_version >= self.local_version,
            "a batch lowers the local version from {} to {}",
            self.local_version,
            changes.local_version
        );
        self.local_version = changes.local_version;
        for e in changes.entries {
            let key = (e.name.into_owned(), e.actor);
            let new = (e.version, e.p, e.n);
            if let Some(old) = self.entries.get(&key) {
                assert!(
                    new.0 >= old.0 && new.1 >= old.1 && new.2 >= old.2,
                    "a batch lowers {key:?} from {old:?} to {new:?}"
                );
            }
            self.entries.insert(key, new);
        }
        for (actor, watermark) in changes.watermarks {
            assert_ne!(actor, NODE_ACTOR, "a batch carries the own watermark");
            self.watermarks.insert(actor, watermark);
        }
        for key in changes.removed {
            self.entries.remove(&key);
        }
        for actor in changes.retired {
            self.watermarks.remove(&actor);
        }
    }

    /// Right after a batch was taken, the disk holds exactly what the store holds: every
    /// entry (counters and sink records) at its state, every peer watermark, the local
    /// version. This is what makes a restart exact (ARCHITECTURE.md, "Why a restart
    /// from disk is exact").
    fn check_matches(&self, store: &Store) {
        assert_eq!(self.local_version, store.local_version(), "local version");
        for ((name, actor), &(version, p, n)) in &self.entries {
            let held = store
                .contributions(name)
                .and_then(|c| c.into_iter().find(|c| c.actor == *actor));
            assert_eq!(
                held.map(|c| (c.version, c.p, c.n)),
                Some((version, p, n)),
                "the disk holds {name:?} of {actor} as {:?}, the store differently",
                (version, p, n)
            );
        }
        let mut names: Vec<String> = store.values().map(|(n, _)| n.to_string()).collect();
        names.push(crate::protocol::SINK_HEADER.to_owned());
        for name in names {
            for c in store.contributions(&name).unwrap_or_default() {
                assert!(
                    self.entries.contains_key(&(name.clone(), c.actor)),
                    "{name:?} of {} is held but was never written",
                    c.actor
                );
            }
        }
        for (actor, watermark) in store.actor_ids() {
            if actor == NODE_ACTOR {
                continue;
            }
            assert_eq!(
                self.watermarks.get(&actor).copied().unwrap_or(0),
                watermark,
                "the disk's watermark of {actor} differs from the store's"
            );
        }
        for (&actor, &watermark) in &self.watermarks {
            assert_eq!(
                store.watermark(actor),
                watermark,
                "the disk holds a watermark of {actor} the store does not"
            );
        }
    }

    /// A node restarted from this disk (under a fresh actor) holds every counter at the
    /// value the store has now, once its pending adds are folded.
    fn check_restore(&self, store: &Store) {
        let restored = Restored {
            actor: NODE_ACTOR,
            local_version: self.local_version,
            entries: self
                .entries
                .iter()
                .map(|((name, actor), &(version, p, n))| StoredEntry {
                    name: name.as_str().into(),
                    actor: *actor,
                    version,
                    p,
                    n,
                })
                .collect(),
            watermarks: self.watermarks.iter().map(|(&a, &w)| (a, w)).collect(),
        };
        // The restored store needs one actor more than the live one (its fresh actor),
        // so it gets the default limits rather than the fuzzed ones.
        let fresh = ActorId::from_u64(0x4e4f_4445_0000_0002);
        let back = Store::restore(&restored, fresh, 3, Limits::default())
            .unwrap_or_else(|e| panic!("the committed state does not restore: {e}"));
        // A counter created by a handle but never changed holds no entry, so nothing of
        // it is written: absent after a restore is the same as 0.
        for (name, value) in store.values() {
            assert_eq!(
                back.value(name).unwrap_or(0),
                value,
                "{name:?} restores at a different value"
            );
        }
        for (name, value) in back.values() {
            assert_eq!(
                store.value(name).unwrap_or(0),
                value,
                "{name:?} restores at a different value"
            );
        }
    }
}

/// The fuzzed node and what the harness knows about it.
struct World {
    node: Node,
    now: Instant,
    honest: Honest,
    /// Counter handles created by local adds, and the sum added through each.
    handles: HashMap<u8, (Counter, i128)>,
    /// What the committer wrote, when the setup tracks changes.
    disk: Option<Disk>,
    /// Whether a sink was refused as a double fold. Which of two conflicting sinks wins
    /// depends on the order they complete in, so a restore may choose differently and
    /// the restore check is off from then on.
    refused_sink: bool,
}

/// Runs a scenario; panics when an invariant breaks. Returns the node for tests.
pub fn run(scenario: &Scenario) -> Node {
    let now = Instant::now();
    let mut world = World {
        node: scenario.setup.node(now),
        now,
        honest: Honest::new(),
        handles: HashMap::new(),
        disk: scenario.setup.track_changes.then(Disk::default),
        refused_sink: false,
    };
    for op in scenario.ops.iter().take(MAX_OPS) {
        let before = (
            world.node.stats().prunes,
            world.node.stats().sinks_completed,
        );
        world.apply(op);
        let after = (
            world.node.stats().prunes,
            world.node.stats().sinks_completed,
        );
        world.check(before == after);
    }
    world.finish()
}

impl World {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Join { peer } => {
                let _ = self.node.handle_message(
                    peer_addr(*peer),
                    Channel::Datagram,
                    announce(*peer),
                    self.now,
                );
            }
            Op::Delta { peer, delta } => {
                let delta = delta.build();
                self.taint(&delta);
                let bytes = encode_valid_delta(&delta);
                self.deliver(*peer, Channel::Stream, &bytes);
            }
            Op::Sink { peer, sink } => {
                let delta = sink.build();
                let bytes = encode_valid_delta(&delta);
                self.deliver(*peer, Channel::Stream, &bytes);
            }
            Op::Sync { peer, sync } => {
                let bytes = encode_valid_sync(&sync.build(self.node.store()));
                self.deliver(*peer, Channel::Stream, &bytes);
            }
            Op::Prune { peer, prune } => {
                let bytes = encode_valid_prune(&prune.build());
                self.deliver(*peer, Channel::Stream, &bytes);
            }
            Op::Raw {
                peer,
                stream,
                bytes,
            } => {
                let channel = if *stream {
                    Channel::Stream
                } else {
                    Channel::Datagram
                };
                if let Ok(Message::Delta(delta)) = Message::decode(bytes, usize::MAX) {
                    self.taint(&delta);
                }
                self.deliver(*peer, channel, bytes);
            }
            Op::Truth {
                actor,
                name,
                amount,
            } => {
                let k = usize::from(actor % HONEST_ACTORS);
                self.honest.histories[k].add(*name, *amount);
            }
            Op::Honest {
                peer,
                actor,
                after,
                cut,
                extra,
            } => {
                let k = actor % HONEST_ACTORS;
                let run: Run<'static> =
                    self.honest.histories[usize::from(k)].run(peer_actor(k), *after, *cut, *extra);
                let bytes = encode_valid_delta(&Delta { runs: vec![run] });
                self.deliver(*peer, Channel::Stream, &bytes);
            }
            Op::Advance { ms } => {
                self.now += Duration::from_millis(u64::from(*ms));
                self.node.handle_timeout(self.now);
            }
            Op::GossipNow => self.node.gossip_now(self.now),
            Op::Add { name, amount } => {
                let name = name % NAMES;
                if !self.handles.contains_key(&name) {
                    // Refused at the counter limit: nothing to add to.
                    let Ok(counter) = self.node.store_mut().counter(counter_name(name)) else {
                        return;
                    };
                    self.handles.insert(name, (counter, 0));
                }
                let (counter, sum) = self.handles.get_mut(&name).expect("inserted above");
                counter.add(*amount);
                *sum += i128::from(*amount);
            }
            Op::Flush => {
                self.node.store_mut().flush();
            }
            Op::TakeChanges => {
                let store = self.node.store_mut();
                // The runtime's committer folds, then takes, in one step.
                let outcome = store.flush();
                let changes = store.take_changes();
                assert_eq!(
                    changes.local_version,
                    store.local_version(),
                    "a batch states another local version than the store's"
                );
                if let Some(disk) = self.disk.as_mut() {
                    disk.write(changes);
                    disk.check_matches(self.node.store());
                    if !self.refused_sink && outcome.saturated.is_empty() {
                        disk.check_restore(self.node.store());
                    }
                } else {
                    assert!(
                        changes.is_empty(),
                        "a store without change tracking returned changes"
                    );
                }
            }
        }
    }

    fn deliver(&mut self, peer: u8, channel: Channel, bytes: &[u8]) {
        // Refusals are expected (rate limits, bad bytes); only panics and broken
        // invariants are findings.
        let _ = self
            .node
            .handle_message(peer_addr(peer), channel, bytes, self.now);
    }

    fn taint(&mut self, delta: &Delta<'_>) {
        self.honest.taint(delta);
    }

    /// The local adds not yet folded into `name`'s own entry. The store never adopts
    /// its own actor's entries from a peer (such runs are refused), so the own entry
    /// holds exactly what was folded and `value = others + everything added locally`,
    /// whatever the inputs claimed about the node's actor.
    fn pending(&self, name: &str) -> Option<i128> {
        let store = self.node.store();
        let own = store
            .contributions(name)?
            .into_iter()
            .find(|c| c.actor == NODE_ACTOR)
            .map_or(0, |c| i128::from(c.p) - i128::from(c.n));
        let added = (0..NAMES)
            .find(|&i| counter_name(i) == name)
            .and_then(|i| self.handles.get(&i))
            .map_or(0, |(_, sum)| *sum);
        Some(added - own)
    }

    fn check(&mut self, exact: bool) {
        drain_checked(&mut self.node, exact);
        self.refused_sink |= drain_events(&mut self.node);
        check_store(self.node.store(), |name| self.pending(name));
        self.honest.check(self.node.store());
        for (name, (counter, _)) in &self.handles {
            let value = self.node.store().value(counter_name(*name));
            if let (Ok(handle), Some(store)) = (counter.value(), value) {
                assert_eq!(
                    i128::from(handle),
                    store,
                    "handle and store disagree on {:?}",
                    counter_name(*name)
                );
            }
        }
        let store = self.node.store();
        assert!(
            store
                .actor_ids()
                .all(|(a, _)| a.as_u64() & SINK_BIT == 0 || store.sinks().any(|(s, _)| s == a)),
            "a sink actor is held but not listed by Store::sinks"
        );
    }

    /// Final checks. After a flush nothing is pending, so every value must be the sum of
    /// its counted contributions (unless an own total saturated). Then, one gossip interval later (so no rate limit applies), a peer
    /// that holds nothing asks for everything: the answer must be valid, tell the truth,
    /// and carry every entry its runs claim, whatever state the operations left behind.
    fn finish(mut self) -> Node {
        let outcome = self.node.store_mut().flush();
        drain_transmits(&mut self.node);
        if outcome.saturated.is_empty() {
            check_store(self.node.store(), |_| Some(0));
        }
        self.now += self.node.config().gossip_interval;
        self.node.handle_timeout(self.now);
        drain_checked(&mut self.node, false);
        drain_events(&mut self.node);
        let everything = SyncRequest {
            budget: u32::try_from(self.node.config().max_message_bytes).expect("at most 1 MiB"),
            reply_bytes: u32::MAX,
            parts: vec![Part::Pairs {
                range: ActorRange::ALL,
                versions: Vec::new(),
            }],
        };
        let bytes = encode_valid_sync(&everything);
        let result = self
            .node
            .handle_message(auditor_addr(), Channel::Stream, &bytes, self.now);
        assert!(
            result.is_ok(),
            "the final sync request was refused: {result:?}"
        );
        let answer = drain_transmits(&mut self.node);
        drain_events(&mut self.node);
        self.audit(&answer);
        self.node
    }

    /// The final answer carries, for every actor the node holds with a watermark, runs
    /// that reach that watermark, unless the node's reply limit cut it short (then the
    /// rest is for later exchanges).
    fn audit(&self, answer: &[countermesh_core::Transmit]) {
        let config = self.node.config();
        let sent: usize = answer.iter().map(|t| t.payload.len()).sum();
        if sent + config.max_message_bytes > config.max_sync_reply_bytes {
            return;
        }
        let mut reached: HashMap<ActorId, u64> = HashMap::new();
        for t in answer {
            if let Ok(Message::Delta(delta)) = Message::decode(&t.payload, usize::MAX) {
                for run in &delta.runs {
                    let r = reached.entry(run.actor).or_insert(0);
                    *r = (*r).max(run.upto);
                }
            }
        }
        for (actor, watermark) in self.node.store().digest().iter() {
            assert_eq!(
                reached.get(&actor).copied().unwrap_or(0),
                watermark,
                "the answer to an empty pair list does not bring {actor} to its watermark"
            );
        }
    }
}
