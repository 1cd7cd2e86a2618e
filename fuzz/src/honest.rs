//! Honest peers: the true history of a few remote actors, and the deltas a correct
//! holder of that history may send (any `(after, cut]` slice, with or without entries
//! above the cut). Against these the fuzzed node's watermarks can be checked exactly.

use std::borrow::Cow;
use std::collections::BTreeMap;

use countermesh_core::{ActorId, Delta, DeltaEntry, Run, Store};

use crate::protocol::{NAMES, counter_name, peer_actor};

/// How many actors have an honest history (the first ones of the fake peers').
pub const HONEST_ACTORS: u8 = 2;

/// One actor's state for one counter at one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    /// The version that produced it.
    pub version: u64,
    /// Total increments.
    pub p: u64,
    /// Total decrements.
    pub n: u64,
}

/// The true history of one actor.
#[derive(Debug, Default, Clone)]
pub struct History {
    /// The actor's latest version.
    pub latest: u64,
    /// Per counter name index, every state it went through, oldest first.
    pub counters: BTreeMap<u8, Vec<State>>,
}

impl History {
    /// The actor changes counter `name` by `amount` (0 changes nothing), stamping a new
    /// version, as a flush does.
    pub fn add(&mut self, name: u8, amount: i16) {
        if amount == 0 {
            return;
        }
        let name = name % NAMES;
        let states = self.counters.entry(name).or_default();
        let last = states.last().copied().unwrap_or(State {
            version: 0,
            p: 0,
            n: 0,
        });
        self.latest += 1;
        let magnitude = u64::from(amount.unsigned_abs());
        let (p, n) = if amount > 0 {
            (last.p + magnitude, last.n)
        } else {
            (last.p, last.n + magnitude)
        };
        states.push(State {
            version: self.latest,
            p,
            n,
        });
    }

    /// The latest state of every counter, by version.
    fn latest_states(&self) -> Vec<(u8, State)> {
        let mut all: Vec<(u8, State)> = self
            .counters
            .iter()
            .filter_map(|(&name, states)| states.last().map(|s| (name, *s)))
            .collect();
        all.sort_by_key(|(_, s)| s.version);
        all
    }

    /// A run a correct holder of the full history may send: every latest entry in
    /// `(after, cut]`, and with `extra` also those above `cut` (held out of order),
    /// claiming `upto = cut`. `after` and `cut` are folded into `0..=latest`.
    pub fn run(&self, actor: ActorId, after: u16, cut: u16, extra: bool) -> Run<'static> {
        let after = u64::from(after) % (self.latest + 1);
        let cut = after + u64::from(cut) % (self.latest - after + 1);
        let entries = self
            .latest_states()
            .into_iter()
            .filter(|(_, s)| s.version > after && (extra || s.version <= cut))
            .map(|(name, s)| DeltaEntry {
                name: Cow::Borrowed(counter_name(name)),
                version: s.version,
                p: s.p,
                n: s.n,
            })
            .collect();
        Run {
            actor,
            after,
            upto: cut,
            entries,
        }
    }
}

/// The honest actors' histories, and which of them a lying input has touched.
#[derive(Debug, Default)]
pub struct Honest {
    /// Per honest actor index, its history.
    pub histories: Vec<History>,
    /// Per honest actor index, whether arbitrary input named the actor (its checks are
    /// then off: a peer that lies about an actor can make any claim about it).
    pub tainted: Vec<bool>,
}

impl Honest {
    /// Histories for [`HONEST_ACTORS`] actors, all empty.
    pub fn new() -> Self {
        Self {
            histories: vec![History::default(); usize::from(HONEST_ACTORS)],
            tainted: vec![false; usize::from(HONEST_ACTORS)],
        }
    }

    /// Marks every honest actor that `delta` names as tainted.
    pub fn taint(&mut self, delta: &Delta<'_>) {
        for run in &delta.runs {
            for k in 0..HONEST_ACTORS {
                if run.actor == peer_actor(k) {
                    self.tainted[usize::from(k)] = true;
                }
            }
        }
    }

    /// The watermark rule: for every untainted, unpruned honest actor with watermark `w` in
    /// `store`, every counter whose latest true version is at most `w` is held exactly
    /// at that state (else the node would never ask for it again), and every entry held
    /// of the actor is a state the actor really went through.
    pub fn check(&self, store: &Store) {
        for k in 0..HONEST_ACTORS {
            let actor = peer_actor(k);
            // A pruned actor's entries are gone on purpose (a sink holds their counts),
            // and nothing of it is accepted again, so there is nothing left to check.
            if self.tainted[usize::from(k)] || store.tombstone(actor).is_some() {
                continue;
            }
            let history = &self.histories[usize::from(k)];
            let watermark = store.watermark(actor);
            assert!(
                watermark <= history.latest,
                "watermark {watermark} of honest {actor} above its latest version {}",
                history.latest
            );
            for name in 0..NAMES {
                let states = history.counters.get(&name).map_or(&[][..], Vec::as_slice);
                let held = store
                    .contributions(counter_name(name))
                    .and_then(|c| c.into_iter().find(|c| c.actor == actor))
                    .map(|c| State {
                        version: c.version,
                        p: c.p,
                        n: c.n,
                    });
                if let Some(held) = held {
                    assert!(
                        states.contains(&held),
                        "{actor} held for {:?} as {held:?}, a state it never had",
                        counter_name(name)
                    );
                }
                if let Some(latest) = states.last()
                    && latest.version <= watermark
                {
                    assert_eq!(
                        held,
                        Some(*latest),
                        "watermark {watermark} of {actor} claims {:?}@{}, which is not held",
                        counter_name(name),
                        latest.version
                    );
                }
            }
        }
    }
}
