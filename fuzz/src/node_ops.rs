//! The stateful target: an arbitrary sequence of operations on one `Node` (messages
//! from fake peers, honest and not, raw bytes, time passing, local adds, flushes and a
//! committer's `take_changes`/`mark_durable`), with every invariant of `check` and
//! `honest` verified after each step.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use countermesh_core::{
    ActorId, Changes, Channel, Counter, Delta, Message, Node, Run, Scope, SyncRequest,
};

use crate::check::{check_store, drain_transmits};
use crate::honest::{HONEST_ACTORS, Honest};
use crate::protocol::{
    DeltaSpec, NAMES, Setup, SyncSpec, announce, auditor_addr, counter_name, encode_valid_delta,
    encode_valid_sync, peer_actor, peer_addr,
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
    /// The committer takes a batch (and, under persistence, folds first as the runtime
    /// does).
    TakeChanges,
    /// The committer reports the oldest taken batch durable.
    CommitDone,
    /// A runtime reports an arbitrary version durable (it must be clamped).
    MarkDurable {
        /// The version.
        version: u64,
    },
}

/// A whole input: the node's setup and the steps.
#[derive(Debug, Clone, Arbitrary)]
pub struct Scenario {
    /// How the node is configured.
    pub setup: Setup,
    /// What happens to it.
    pub ops: Vec<Op>,
}

/// The fuzzed node and what the harness knows about it.
struct World {
    node: Node,
    now: Instant,
    honest: Honest,
    /// Counter handles created by local adds, and the sum added through each.
    handles: HashMap<u8, (Counter, i128)>,
    /// Whether an input named the node's own actor, so its own entries are no longer
    /// only what local adds made.
    own_tainted: bool,
    /// Batches taken and not yet reported durable.
    committing: Vec<Changes>,
}

/// Runs a scenario; panics when an invariant breaks. Returns the node for tests.
pub fn run(scenario: &Scenario) -> Node {
    let now = Instant::now();
    let mut world = World {
        node: scenario.setup.node(now),
        now,
        honest: Honest::new(),
        handles: HashMap::new(),
        own_tainted: false,
        committing: Vec::new(),
    };
    for op in scenario.ops.iter().take(MAX_OPS) {
        world.apply(op);
        world.check();
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
            Op::Sync { peer, sync } => {
                let bytes = encode_valid_sync(&sync.build());
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
                store.flush();
                let changes = store.take_changes();
                self.committing.push(changes);
            }
            Op::CommitDone => {
                if !self.committing.is_empty() {
                    let changes = self.committing.remove(0);
                    self.node.store_mut().mark_durable(changes.local_version);
                }
            }
            Op::MarkDurable { version } => self.node.store_mut().mark_durable(*version),
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
        if delta
            .runs
            .iter()
            .any(|r| r.actor == self.node.store().actor_id())
        {
            self.own_tainted = true;
        }
    }

    /// The local adds not yet folded into `name`'s own entry, when the harness can tell:
    /// with an untainted own actor the own entry holds exactly what was folded, so
    /// `value = others + everything added locally`.
    fn pending(&self, name: &str) -> Option<i128> {
        if self.own_tainted {
            return None;
        }
        let store = self.node.store();
        let own = store
            .contributions(name)?
            .into_iter()
            .find(|c| c.actor == store.actor_id())
            .map_or(0, |c| i128::from(c.p) - i128::from(c.n));
        let added = (0..NAMES)
            .find(|&i| counter_name(i) == name)
            .and_then(|i| self.handles.get(&i))
            .map_or(0, |(_, sum)| *sum);
        Some(added - own)
    }

    fn check(&mut self) {
        drain_transmits(&mut self.node);
        while self.node.poll_event().is_some() {}
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
    }

    /// Final checks. After a flush nothing is pending, so even with a tainted own actor
    /// every value must be the sum of its contributions (unless an own total
    /// saturated). Then, one gossip interval later (so no rate limit applies), a peer
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
        drain_transmits(&mut self.node);
        let everything = SyncRequest {
            scope: Scope::Range {
                first: ActorId::from_u64(0),
                last: ActorId::from_u64(u64::MAX),
            },
            versions: Vec::new(),
            pull_back: true,
        };
        let bytes = encode_valid_sync(&everything);
        let result = self
            .node
            .handle_message(auditor_addr(), Channel::Stream, &bytes, self.now);
        assert!(
            result.is_ok(),
            "the final sync request was refused: {result:?}"
        );
        drain_transmits(&mut self.node);
        self.node
    }
}
