//! Deltas: the entries a peer lacks, split into messages under a byte budget.
//!
//! A delta is a list of *runs*, one per actor. A run says: "here are all of actor A's
//! entries whose version lies in `(after, upto]`, as I hold them" and may carry entries
//! with versions above `upto` too (held out of order; merging them is always safe). A
//! receiver whose watermark for A is at least `after` can raise it to `upto`; otherwise
//! it merges the entries and leaves the watermark alone, and anti-entropy fills the gap
//! later. ARCHITECTURE.md gives the argument for why this never loses an entry.

use std::borrow::Cow;

use crate::actors::ActorIdx;
use crate::config::MessageBudget;
use crate::store::{LimitKind, Merge};
use crate::wire::{MAX_VERSION, delta_frame_len, entry_len, run_header_len};
use crate::{ActorId, Digest, NameError, Store, name};

/// A batch of counter entries, small enough to be one message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delta<'a> {
    /// One run per actor (an actor may appear in several messages, never twice in one).
    pub runs: Vec<Run<'a>>,
}

/// One actor's entries inside a [`Delta`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run<'a> {
    /// The actor whose entries these are.
    pub actor: ActorId,
    /// The run covers versions above this one...
    pub after: u64,
    /// ...up to and including this one: the sender holds no other entry of this actor
    /// with a version in `(after, upto]`.
    pub upto: u64,
    /// The entries, in strictly ascending version order, all with versions above `after`.
    pub entries: Vec<DeltaEntry<'a>>,
}

/// One actor's totals for one counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaEntry<'a> {
    /// Counter name.
    pub name: Cow<'a, str>,
    /// The actor's version at which these totals were reached.
    pub version: u64,
    /// The actor's total increments for this counter.
    pub p: u64,
    /// The actor's total decrements for this counter.
    pub n: u64,
}

/// What applying a delta or merging a store changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Entries that changed this store (new, or a larger P/N/version).
    pub changed: usize,
    /// Actors whose contiguous watermark moved forward.
    pub watermarks_advanced: usize,
    /// Entries dropped because a [`Limits`](crate::Limits) bound was reached; their
    /// actor's watermark was left alone so they will be offered again.
    pub rejected: usize,
    /// Entries refused because another counter already holds their actor's version
    /// (corrupt or forged data); their actor's watermark was left alone.
    pub conflicting: usize,
    /// Runs of this store's own actor that claimed versions it never issued, refused.
    pub own_refused: usize,
    /// Entries refused because their actor was pruned here (or is sealed below them).
    pub pruned_refused: usize,
}

/// Why a [`Delta`] was refused. A refused delta changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeltaError {
    /// An entry has an invalid counter name.
    #[error("invalid counter name in delta: {0}")]
    InvalidName(#[from] NameError),
    /// A run has `after > upto`.
    #[error("run for actor {actor} has after {after} > upto {upto}")]
    InvertedRange {
        /// The run's actor.
        actor: ActorId,
        /// The run's `after`.
        after: u64,
        /// The run's `upto`.
        upto: u64,
    },
    /// A run's versions are not strictly ascending, or one is not above `after`.
    #[error("run for actor {actor} has versions out of order")]
    VersionsOutOfOrder {
        /// The run's actor.
        actor: ActorId,
    },
    /// A version is above [`MAX_VERSION`](crate::MAX_VERSION).
    #[error("run for actor {actor} carries version {version}, above the maximum")]
    VersionTooLarge {
        /// The run's actor.
        actor: ActorId,
        /// The offending version.
        version: u64,
    },
    /// The same actor appears in two runs of one delta.
    #[error("actor {actor} appears in more than one run")]
    DuplicateActor {
        /// The repeated actor.
        actor: ActorId,
    },
}

impl Delta<'_> {
    /// Number of entries across all runs.
    pub fn entry_count(&self) -> usize {
        self.runs.iter().map(|r| r.entries.len()).sum()
    }

    /// Exact size of this delta as an encoded message, envelope included.
    pub fn encoded_len(&self) -> usize {
        crate::wire::delta_len(self)
    }

    /// Copies borrowed names so the delta can outlive the store it came from.
    pub fn into_owned(self) -> Delta<'static> {
        Delta {
            runs: self
                .runs
                .into_iter()
                .map(|run| Run {
                    actor: run.actor,
                    after: run.after,
                    upto: run.upto,
                    entries: run
                        .entries
                        .into_iter()
                        .map(|e| DeltaEntry {
                            name: Cow::Owned(e.name.into_owned()),
                            version: e.version,
                            p: e.p,
                            n: e.n,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// Checks the structural rules every delta must follow; the decoder calls this on
    /// every delta that arrives from the network.
    pub fn validate(&self) -> Result<(), DeltaError> {
        let mut actors: Vec<ActorId> = self.runs.iter().map(|r| r.actor).collect();
        actors.sort_unstable();
        if let Some(w) = actors.windows(2).find(|w| w[0] == w[1]) {
            return Err(DeltaError::DuplicateActor { actor: w[0] });
        }
        for run in &self.runs {
            if run.after > run.upto {
                return Err(DeltaError::InvertedRange {
                    actor: run.actor,
                    after: run.after,
                    upto: run.upto,
                });
            }
            if run.upto > MAX_VERSION {
                return Err(DeltaError::VersionTooLarge {
                    actor: run.actor,
                    version: run.upto,
                });
            }
            let mut previous = run.after;
            for entry in &run.entries {
                if entry.version <= previous {
                    return Err(DeltaError::VersionsOutOfOrder { actor: run.actor });
                }
                if entry.version > MAX_VERSION {
                    return Err(DeltaError::VersionTooLarge {
                        actor: run.actor,
                        version: entry.version,
                    });
                }
                previous = entry.version;
                name::validate_entry_name(run.actor, &entry.name)?;
            }
        }
        Ok(())
    }
}

impl Store {
    /// Exactly the entries that a peer with `digest` lacks, split into messages whose
    /// encoded size is at most `budget` bytes each.
    ///
    /// For every actor whose watermark here is above the digest's, the answer holds all
    /// of that actor's entries with a higher version than the digest's. Its size depends
    /// on how many entries changed, never on how many adds made them change.
    pub fn delta_for(&self, digest: &Digest, budget: MessageBudget) -> Vec<Delta<'_>> {
        let wants: Vec<(ActorIdx, u64)> = self
            .actors
            .iter()
            .filter_map(|(idx, id)| {
                let theirs = digest.get(id);
                (self.watermark_of(idx) > theirs).then_some((idx, theirs))
            })
            .collect();
        self.deltas_for_wants(&wants, budget, usize::MAX)
    }

    /// Builds deltas for `wants = [(actor, after)]` (ascending by actor), stopping once
    /// `max_total` bytes have been produced (the last run of a truncated actor claims
    /// only what it holds). Costs O(log n) per entry sent: entries are found through the
    /// version index, never by scanning the store.
    pub(crate) fn deltas_for_wants(
        &self,
        wants: &[(ActorIdx, u64)],
        budget: MessageBudget,
        max_total: usize,
    ) -> Vec<Delta<'_>> {
        let mut builder = Builder::new(budget.get(), max_total);
        for &(actor, after) in wants {
            let watermark = self.watermark_of(actor);
            if watermark <= after {
                continue;
            }
            let entries = self
                .versions
                .above(actor, after)
                .filter_map(|(version, slot)| {
                    let slot_ref = &self.slots[slot as usize];
                    let pos = slot_ref
                        .entries
                        .binary_search_by_key(&actor, |e| e.actor)
                        .ok()?;
                    let e = &slot_ref.entries[pos];
                    Some(Candidate {
                        version,
                        name: slot_ref.name.as_str(),
                        p: e.p,
                        n: e.n,
                    })
                });
            if !builder.add_actor(self.actors.id(actor), after, watermark, entries) {
                break;
            }
        }
        builder.finish()
    }

    /// Merges a delta. Entries merge by per-actor maximum, so applying the same delta
    /// twice, or deltas in any order, gives the same state as applying each once.
    ///
    /// A delta that breaks a structural rule (see [`Delta::validate`]) is refused whole.
    /// Within a valid delta, entries that conflict with held versions or exceed a limit
    /// are refused one by one (counted in the outcome), and their run does not advance
    /// the watermark. A run of this store's own actor carries nothing it does not hold
    /// already; one that claims a version above [`Store::local_version`] is refused.
    pub fn apply_delta(&mut self, delta: &Delta<'_>) -> Result<ApplyOutcome, DeltaError> {
        delta.validate()?;
        let mut outcome = ApplyOutcome::default();
        for run in &delta.runs {
            if run.actor == self.me {
                let claimed = run
                    .entries
                    .last()
                    .map_or(run.upto, |e| e.version.max(run.upto));
                if claimed > self.local_version {
                    outcome.own_refused += 1;
                }
                continue;
            }
            if self.tombstones_hold(run.actor) {
                outcome.pruned_refused += run.entries.len();
                continue;
            }
            let Some(actor) = self.actors.intern(run.actor, self.limits.max_actors) else {
                outcome.rejected += run.entries.len();
                self.hit_limit(LimitKind::Actors, 1);
                continue;
            };
            let sealed = self.seal_of(run.actor);
            let mut complete = true;
            for entry in &run.entries {
                if sealed.is_some_and(|at| entry.version > at) {
                    complete = false;
                    outcome.pruned_refused += 1;
                    continue;
                }
                // A sink never changes after it is made: once its header is held, an
                // entry above its final version, or a header that says otherwise, is
                // forged or corrupt. Taking it would change what a complete sink counts
                // (or un-complete it after a restart).
                if run.actor.is_sink()
                    && let Some(last) = self.sink_final(actor)
                    && (entry.version > last
                        || (entry.name == name::SINK_HEADER && entry.p != last))
                {
                    complete = false;
                    outcome.conflicting += 1;
                    continue;
                }
                let Some(slot) = self.find_or_insert(&entry.name) else {
                    complete = false;
                    outcome.rejected += 1;
                    self.hit_limit(LimitKind::Counters, 1);
                    continue;
                };
                match self.merge_entry(slot, actor, entry.version, entry.p, entry.n) {
                    Merge::Changed => outcome.changed += 1,
                    Merge::Unchanged => {}
                    Merge::Conflict => {
                        complete = false;
                        outcome.conflicting += 1;
                    }
                    Merge::Full => {
                        complete = false;
                        outcome.rejected += 1;
                        self.hit_limit(LimitKind::Entries, 1);
                    }
                }
            }
            if complete && self.actors.record_run(actor, run.after, run.upto) {
                outcome.watermarks_advanced += 1;
            }
            if run.actor.is_sink() {
                self.try_complete(actor);
            }
        }
        Ok(outcome)
    }
}

/// One entry selected for sending.
#[derive(Debug, Clone, Copy)]
struct Candidate<'a> {
    version: u64,
    name: &'a str,
    p: u64,
    n: u64,
}

/// Packs runs into messages under a budget.
struct Builder<'a> {
    budget: usize,
    max_total: usize,
    produced: usize,
    done: Vec<Delta<'a>>,
    current: Delta<'a>,
    /// Bytes `current` will take, counting the run being built with a worst-case header.
    current_len: usize,
}

impl<'a> Builder<'a> {
    fn new(budget: usize, max_total: usize) -> Self {
        Self {
            budget,
            max_total,
            produced: 0,
            done: Vec::new(),
            current: Delta::default(),
            current_len: Self::empty_len(budget),
        }
    }

    /// Envelope plus a run count of the largest size this budget could need.
    fn empty_len(budget: usize) -> usize {
        delta_frame_len(budget)
    }

    /// Worst-case run header: `upto` is not known until the run closes, and the entry
    /// count can be at most the budget.
    fn run_reserve(&self, after: u64) -> usize {
        run_header_len(after, u64::MAX, self.budget)
    }

    /// Adds all of one actor's candidates (ascending by version). Returns false once the
    /// total cap is hit.
    fn add_actor(
        &mut self,
        id: ActorId,
        after: u64,
        watermark: u64,
        candidates: impl Iterator<Item = Candidate<'a>>,
    ) -> bool {
        let mut run = Run {
            actor: id,
            after,
            upto: after,
            entries: Vec::new(),
        };
        if self.current_len + self.run_reserve(after) > self.budget {
            self.close_message();
        }
        self.current_len += self.run_reserve(after);
        let mut previous = after;
        for candidate in candidates {
            let mut len = entry_len(
                candidate.name.len(),
                candidate.version.saturating_sub(previous),
                candidate.p,
                candidate.n,
            );
            if self.current_len + len > self.budget {
                // Close this run at the last version it holds (never past the watermark:
                // above it this node may be missing some of the actor's entries).
                run.upto = previous.min(watermark).max(run.after);
                let next_after = run.upto;
                if !run.entries.is_empty() || run.upto > run.after {
                    self.current.runs.push(run);
                }
                self.close_message();
                if self.produced >= self.max_total {
                    return false;
                }
                run = Run {
                    actor: id,
                    after: next_after,
                    upto: next_after,
                    entries: Vec::new(),
                };
                previous = next_after;
                self.current_len += self.run_reserve(next_after);
                len = entry_len(
                    candidate.name.len(),
                    candidate.version.saturating_sub(previous),
                    candidate.p,
                    candidate.n,
                );
            }
            self.current_len += len;
            run.entries.push(DeltaEntry {
                name: Cow::Borrowed(candidate.name),
                version: candidate.version,
                p: candidate.p,
                n: candidate.n,
            });
            previous = candidate.version;
        }
        // All of this actor's entries above `run.after` are in this run or earlier ones,
        // so the last run may claim everything up to the watermark.
        run.upto = watermark.max(run.after);
        self.current.runs.push(run);
        self.produced + self.current_len < self.max_total
    }

    fn close_message(&mut self) {
        if !self.current.runs.is_empty() {
            let delta = std::mem::take(&mut self.current);
            debug_assert!(delta.encoded_len() <= self.budget);
            self.produced += delta.encoded_len();
            self.done.push(delta);
        }
        self.current_len = Self::empty_len(self.budget);
    }

    fn finish(mut self) -> Vec<Delta<'a>> {
        self.close_message();
        self.done
    }
}
