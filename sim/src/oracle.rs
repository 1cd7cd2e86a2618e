//! [`Oracle`]: the simulator's own account of every add, kept apart from the nodes, and
//! the exact value every counter must converge to.
//!
//! Each process start gets a record. An add is recorded at the record of the process
//! that made it; a commit (with a data directory) marks everything made so far as
//! committed. What a record must contribute to the converged value depends on how its
//! process ended:
//!
//! | status | must contribute |
//! |---|---|
//! | running | every add it made |
//! | crashed, restarting with its data directory | its committed adds (later adds were never written: lost by design, counted) |
//! | retired (its data directory lives on under a newer actor) | its committed adds |
//! | gone (in-memory crash, wiped restart, leave) | what survived in its peers, which must not exceed what it made |
//!
//! Adds are positive, so a gone process's surviving contribution is bounded by what it
//! made; anything above is counted twice somewhere and fails the run.
//!
//! Pruned actors (a tombstone at the reference node) no longer have entries of their own:
//! their counts live in the reference's complete sinks, which hold per counter only the
//! sum over every actor they cover. The oracle therefore checks them together, per
//! counter: the complete sinks' total must not exceed what the pruned actors made (more
//! is a double count), nor fall short of what the pruned running or durable ones must
//! contribute exactly (less is a lost count). Every running node must then read the same
//! totals as the reference, so a sink that counts differently anywhere fails the run.

use countermesh_core::{ActorId, Store};

use crate::names::Names;

/// How a record's process ended, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The process runs.
    Running,
    /// Crashed; will restart with its data directory.
    DownDurable,
    /// Its committed state lives on in a restarted process under another actor.
    Retired,
    /// Its state survives only where it was gossiped.
    Gone,
}

/// One process start.
#[derive(Debug, Clone)]
struct Record {
    actor: ActorId,
    status: Status,
    /// `(counter, total added)`, one item per counter touched.
    made: Vec<(u32, i128)>,
    /// `(counter, total committed)`.
    committed: Vec<(u32, i128)>,
}

/// A contradiction between what was added and what the nodes hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OracleViolation {
    /// A departed actor's surviving contribution exceeds everything it added.
    #[error(
        "actor {actor} added {made} to {counter:?} but the mesh holds {held} for it: counted twice"
    )]
    Doubled {
        /// The actor.
        actor: ActorId,
        /// The counter.
        counter: String,
        /// What it added.
        made: i128,
        /// What a running node holds for it.
        held: i128,
    },
    /// The complete sinks at the reference node hold more for a counter than every
    /// actor they cover (the pruned ones) ever added.
    #[error(
        "the complete sinks hold {folded} for {counter:?} but the {actors} pruned actor(s) added {made}: counted twice"
    )]
    SinkDoubled {
        /// The counter.
        counter: String,
        /// Pruned actors (tombstones at the reference that match a process).
        actors: usize,
        /// What they added.
        made: i128,
        /// What the complete sinks hold.
        folded: i128,
    },
    /// The complete sinks hold less for a counter than the pruned actors whose counts
    /// must survive exactly (running, or committed to a data directory) contribute.
    #[error(
        "the complete sinks hold {folded} for {counter:?} but pruned actors whose counts must survive hold {owed}: counts lost"
    )]
    SinkShort {
        /// The counter.
        counter: String,
        /// What those actors must contribute.
        owed: i128,
        /// What the complete sinks hold.
        folded: i128,
    },
}

/// Every add, by process start.
#[derive(Debug, Default, Clone)]
pub struct Oracle {
    records: Vec<Record>,
    /// Adds lost because a process with a data directory crashed before committing them.
    lost_uncommitted: i128,
    adds: u64,
    added: i128,
}

fn bump(list: &mut Vec<(u32, i128)>, counter: u32, amount: i128) {
    match list.iter_mut().find(|(c, _)| *c == counter) {
        Some((_, total)) => *total += amount,
        None => list.push((counter, amount)),
    }
}

impl Oracle {
    /// Registers a started process; returns its record number.
    pub fn start(&mut self, actor: ActorId) -> usize {
        self.records.push(Record {
            actor,
            status: Status::Running,
            made: Vec::new(),
            committed: Vec::new(),
        });
        self.records.len() - 1
    }

    /// Records an add of `amount` to `counter` by process `record`.
    pub fn add(&mut self, record: usize, counter: u32, amount: i128) {
        bump(&mut self.records[record].made, counter, amount);
        self.adds += 1;
        self.added += amount;
    }

    /// Everything process `record` made so far is now durable.
    pub fn commit(&mut self, record: usize) {
        let r = &mut self.records[record];
        r.committed.clone_from(&r.made);
    }

    /// Process `record` crashed; `keeps_committed` if it restarts with its data.
    pub fn crash(&mut self, record: usize, keeps_committed: bool) {
        let r = &mut self.records[record];
        if keeps_committed {
            let made: i128 = r.made.iter().map(|(_, v)| v).sum();
            let committed: i128 = r.committed.iter().map(|(_, v)| v).sum();
            self.lost_uncommitted += made - committed;
            r.made.clone_from(&r.committed);
            r.status = Status::DownDurable;
        } else {
            r.status = Status::Gone;
        }
    }

    /// Process `record` left gracefully: its state survives where it was gossiped.
    pub fn leave(&mut self, record: usize) {
        self.records[record].status = Status::Gone;
    }

    /// A crashed process came back as `actor`. Returns the record now adding: the same
    /// one if the actor continues, a new one otherwise.
    pub fn restart(&mut self, record: usize, actor: ActorId) -> usize {
        let r = &mut self.records[record];
        match r.status {
            Status::DownDurable if r.actor == actor => {
                r.status = Status::Running;
                record
            }
            Status::DownDurable => {
                r.status = Status::Retired;
                self.start(actor)
            }
            _ => self.start(actor),
        }
    }

    /// Adds recorded, and their sum.
    pub fn totals(&self) -> (u64, i128) {
        (self.adds, self.added)
    }

    /// Distinct actors that ever added or ran (one per fresh start; a restart that keeps
    /// its actor does not count again).
    pub fn actors(&self) -> usize {
        let mut actors: Vec<ActorId> = self.records.iter().map(|r| r.actor).collect();
        actors.sort_unstable();
        actors.dedup();
        actors.len()
    }

    /// Units lost because a durable process crashed before committing them.
    pub fn lost_uncommitted(&self) -> i128 {
        self.lost_uncommitted
    }

    /// The value each counter must converge to, with departed actors' contributions read
    /// from `reference` (a running node). Also returns the units departed actors added
    /// that survive nowhere.
    pub fn expected(
        &self,
        names: &Names,
        reference: &Store,
    ) -> Result<(Vec<i128>, i128), OracleViolation> {
        let mut expected = vec![0i128; names.len()];
        // Per counter, for actors pruned at the reference: what they made (the most a
        // sink may hold for them) and what the non-gone ones owe exactly.
        let mut pruned_made = vec![0i128; names.len()];
        let mut pruned_owed = vec![0i128; names.len()];
        let mut pruned_actors = 0usize;
        let mut gone_counters: Vec<u32> = Vec::new();
        for r in &self.records {
            if reference.tombstone(r.actor).is_some() {
                pruned_actors += 1;
                let owed = match r.status {
                    Status::Running => Some(&r.made),
                    Status::DownDurable | Status::Retired => Some(&r.committed),
                    Status::Gone => None,
                };
                r.made
                    .iter()
                    .for_each(|&(c, v)| pruned_made[c as usize] += v);
                if let Some(owed) = owed {
                    owed.iter().for_each(|&(c, v)| pruned_owed[c as usize] += v);
                }
                continue;
            }
            match r.status {
                Status::Running => {
                    r.made.iter().for_each(|&(c, v)| expected[c as usize] += v);
                }
                Status::DownDurable | Status::Retired => {
                    r.committed
                        .iter()
                        .for_each(|&(c, v)| expected[c as usize] += v);
                }
                Status::Gone => gone_counters.extend(r.made.iter().map(|&(c, _)| c)),
            }
        }
        let mut vanished = 0i128;
        if pruned_actors > 0 {
            let counted: Vec<ActorId> = reference
                .sinks()
                .filter_map(|(sink, complete)| complete.then_some(sink))
                .collect();
            for counter in 0..names.len() as u32 {
                let c = counter as usize;
                let name = names.name(counter);
                // The names table also holds the sinks' reserved entries (the modelled
                // data directory interns every name it writes); they are not counters.
                if name.starts_with('\0') {
                    continue;
                }
                let folded: i128 = reference
                    .contributions(name)
                    .unwrap_or_default()
                    .iter()
                    .filter(|e| counted.contains(&e.actor))
                    .map(|e| i128::from(e.p) - i128::from(e.n))
                    .sum();
                if folded > pruned_made[c] {
                    return Err(OracleViolation::SinkDoubled {
                        counter: name.to_owned(),
                        actors: pruned_actors,
                        made: pruned_made[c],
                        folded,
                    });
                }
                if folded < pruned_owed[c] {
                    return Err(OracleViolation::SinkShort {
                        counter: name.to_owned(),
                        owed: pruned_owed[c],
                        folded,
                    });
                }
                vanished += pruned_made[c] - folded;
                expected[c] += folded;
            }
        }
        gone_counters.sort_unstable();
        gone_counters.dedup();
        for counter in gone_counters {
            let name = names.name(counter);
            let held = reference.contributions(name).unwrap_or_default();
            for r in self.records.iter().filter(|r| r.status == Status::Gone) {
                let Some(&(_, made)) = r.made.iter().find(|(c, _)| *c == counter) else {
                    continue;
                };
                if reference.tombstone(r.actor).is_some() {
                    continue;
                }
                let survived = held
                    .binary_search_by_key(&r.actor, |c| c.actor)
                    .map_or(0, |i| i128::from(held[i].p) - i128::from(held[i].n));
                if survived > made {
                    return Err(OracleViolation::Doubled {
                        actor: r.actor,
                        counter: name.to_owned(),
                        made,
                        held: survived,
                    });
                }
                vanished += made - survived.max(0);
                expected[counter as usize] += survived;
            }
        }
        Ok((expected, vanished))
    }
}
