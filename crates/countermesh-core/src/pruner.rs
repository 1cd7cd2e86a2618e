//! Pruning, the protocol's half: which actors have departed for good, who prunes them,
//! and the intent → acknowledgement → fold steps that keep two pruners from folding the
//! same actor (the store's half, sinks and tombstones, is in `prune.rs`; the safety
//! argument in ARCHITECTURE.md, "Pruning").
//!
//! Every start of a node is a new actor, so actors of processes that ended pile up. An
//! actor has *departed* when SWIM saw its member down for [`PruneConfig::after_down`], or
//! saw its address come back with another actor (a restart) [`PruneConfig::after_replaced`]
//! ago. The member with the lowest actor id among the live ones is the pruner. It sends
//! every member an *intent*: these actors, at these final versions. A member seals them
//! (it will refuse their entries above those versions) unless it holds more of them,
//! sealed them for another pruner, or sees them alive; it answers which. Once every
//! member that could still hold their entries (the live ones, and those down for less
//! than `after_down`) has sealed an actor, the pruner folds the sealed ones into a new
//! sink and tells everyone it is done. The sink reaches every node by anti-entropy.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::members::Members;
use crate::wire::MAX_INTENT_VICTIMS;
use crate::{ActorId, NodeId, PruneMessage, Store};

/// When departed actors are pruned. See ARCHITECTURE.md, "Pruning".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneConfig {
    /// How long a member must have been down before its actor may be pruned. A member
    /// that is only partitioned away and comes back later than this has the adds it made
    /// meanwhile refused by the nodes that pruned it (a loud, counted refusal), so this
    /// must exceed the longest partition to be survived without loss. Default 1 hour.
    pub after_down: Duration,
    /// How long after a member's address came back with a different actor (the node
    /// restarted) the old actor may be pruned. The old process is certainly gone; the
    /// delay lets its last gossip settle. Default 1 minute.
    pub after_replaced: Duration,
    /// How often the pruner looks for actors to prune. Default 5 seconds.
    pub interval: Duration,
    /// How long an intent waits for every member's answer before it is abandoned (its
    /// seals released) and retried later. Default 30 seconds.
    pub intent_timeout: Duration,
}

impl Default for PruneConfig {
    fn default() -> Self {
        Self {
            after_down: Duration::from_secs(3600),
            after_replaced: Duration::from_secs(60),
            interval: Duration::from_secs(5),
            intent_timeout: Duration::from_secs(30),
        }
    }
}

/// An actor whose node went down or was replaced, or that no live member carries.
#[derive(Debug, Clone)]
struct Departure {
    /// The member that carried it, if this node saw one.
    id: Option<NodeId>,
    since: Instant,
    replaced: bool,
}

/// The pruner's intent in flight.
#[derive(Debug)]
struct Intent {
    id: u64,
    victims: Vec<(ActorId, u64)>,
    /// Per member actor that answered, the victims it sealed.
    answers: HashMap<ActorId, HashSet<ActorId>>,
    started: Instant,
    last_sent: Option<Instant>,
}

/// What the pruner wants the node to do.
#[derive(Debug, Default)]
pub(crate) struct PruneOutput {
    pub(crate) send: Vec<(SocketAddr, PruneMessage)>,
    /// A fold this node performed: the sink and how many actors it covers.
    pub(crate) folded: Option<(ActorId, usize)>,
}

/// One node's part in pruning.
#[derive(Debug)]
pub(crate) struct Pruner {
    config: PruneConfig,
    departed: HashMap<ActorId, Departure>,
    intent: Option<Intent>,
    next_id: u64,
    next_check: Option<Instant>,
    /// Seals this node gave other pruners, by `(owner, intent)`, with when. A seal whose
    /// `Done` never arrives (lost, or the pruner died) expires after three intent
    /// timeouts, so a lost message cannot keep this node refusing an actor's entries.
    sealed: HashMap<(ActorId, u64), Instant>,
}

impl Pruner {
    pub(crate) fn new(config: PruneConfig) -> Self {
        Self {
            config,
            departed: HashMap::new(),
            intent: None,
            next_id: 1,
            next_check: None,
            sealed: HashMap::new(),
        }
    }

    /// SWIM declared `id` down.
    pub(crate) fn on_down(&mut self, id: &NodeId, now: Instant) {
        self.departed
            .entry(id.actor())
            .or_insert_with(|| Departure {
                id: Some(id.clone()),
                since: now,
                replaced: false,
            });
    }

    /// `old` was replaced by `new` at the same address.
    pub(crate) fn on_renamed(&mut self, old: &NodeId, new: &NodeId, now: Instant) {
        if old.actor() == new.actor() {
            self.departed.remove(&new.actor());
            return;
        }
        let departure = self
            .departed
            .entry(old.actor())
            .or_insert_with(|| Departure {
                id: Some(old.clone()),
                since: now,
                replaced: true,
            });
        departure.replaced = true;
        departure.id = Some(old.clone());
    }

    /// This process restored the data directory of `actor`, its own previous
    /// incarnation, which is therefore gone.
    pub(crate) fn on_replaced_here(&mut self, actor: ActorId, now: Instant) {
        self.departed.insert(
            actor,
            Departure {
                id: None,
                since: now,
                replaced: true,
            },
        );
    }

    /// `id` is up: whatever was thought of its actor, it is alive. And a departed member
    /// at the same address under another actor has been replaced: only one process can
    /// hold an address, so the old one is gone for good. SWIM reports that as a rename
    /// only while the old member is still listed alive; when the old process was
    /// declared down first (a slow restart), this is the only sign, and without it the
    /// old actor would wait `after_down` instead of `after_replaced`.
    pub(crate) fn on_up(&mut self, id: &NodeId) {
        self.departed.remove(&id.actor());
        for departure in self.departed.values_mut() {
            if departure
                .id
                .as_ref()
                .is_some_and(|old| old.addr() == id.addr() && old.actor() != id.actor())
            {
                departure.replaced = true;
            }
        }
    }

    /// Whether `actor` departed long enough ago to be pruned.
    fn is_dead(&self, actor: ActorId, now: Instant) -> bool {
        self.departed.get(&actor).is_some_and(|d| {
            let delay = if d.replaced {
                self.config.after_replaced
            } else {
                self.config.after_down
            };
            now.saturating_duration_since(d.since) >= delay
        })
    }

    /// The members whose seal an intent needs: the live ones and those down for less
    /// than `after_down` (they may be partitioned away, holding entries). A replaced
    /// member is never required: another process now runs at its address, so the old
    /// one is gone for good and can neither answer nor hold entries (an intent sent to
    /// its address reaches, and is answered by, its successor). Requiring it made every
    /// intent wait out `after_replaced` after each restart anywhere, so steady restart
    /// churn starved pruning.
    fn required(&self, members: &[NodeId], now: Instant) -> Vec<NodeId> {
        let mut required: Vec<NodeId> = members.to_vec();
        required.extend(
            self.departed
                .iter()
                .filter(|(actor, d)| !d.replaced && !self.is_dead(**actor, now))
                .filter_map(|(_, d)| d.id.clone()),
        );
        required
    }

    /// Runs the pruner's periodic work: release seals of dead pruners, advance or start
    /// an intent.
    pub(crate) fn tick(
        &mut self,
        now: Instant,
        me: &NodeId,
        members: &Members,
        store: &mut Store,
        rng: &mut impl Rng,
    ) -> PruneOutput {
        let mut out = PruneOutput::default();
        let expiry = self.config.intent_timeout * 3;
        self.sealed.retain(|&(owner, id), since| {
            let live = now.saturating_duration_since(*since) < expiry;
            if !live {
                store.unseal_intent(owner, id);
            }
            live
        });
        if self.intent.is_some() {
            self.advance(now, me, members.as_slice(), store, rng, &mut out);
            return out;
        }
        if self.next_check.is_some_and(|at| now < at) {
            return out;
        }
        self.next_check = Some(now + self.config.interval);
        // A pruner that departed for good will not finish its intents.
        let dead: Vec<ActorId> = self
            .departed
            .keys()
            .copied()
            .filter(|&a| self.is_dead(a, now))
            .collect();
        for owner in dead {
            store.unseal_owner(owner);
        }
        // Actors held that no live member carries: earlier incarnations, nodes that died
        // before this one joined. Their clock starts when this node first notices.
        for (actor, _) in store.actor_ids() {
            if actor != me.actor() && !actor.is_sink() && !members.carries(actor) {
                self.departed.entry(actor).or_insert(Departure {
                    id: None,
                    since: now,
                    replaced: false,
                });
            }
        }
        let lowest = members.lowest_actor().is_none_or(|low| me.actor() < low);
        if lowest {
            self.start(now, me, members, store);
        }
        out
    }

    fn start(&mut self, now: Instant, me: &NodeId, members: &Members, store: &mut Store) {
        let mut victims: Vec<(ActorId, u64)> = self
            .departed
            .keys()
            .copied()
            .filter(|&a| self.is_dead(a, now) && !members.carries(a))
            .filter_map(|a| store.prunable(a).map(|f| (a, f)))
            .collect();
        // Complete sinks fold into the new one, so their number stays small. Alone they
        // are worth an intent only if there are several.
        let sinks: Vec<(ActorId, u64)> = store
            .sinks()
            .filter(|&(_, complete)| complete)
            .filter_map(|(s, _)| store.prunable(s).map(|f| (s, f)))
            .collect();
        if victims.is_empty() && sinks.len() < 2 {
            return;
        }
        // Sinks first, so a full intent still compacts them.
        victims.sort_unstable();
        let mut chosen = sinks;
        chosen.extend(victims);
        chosen.truncate(MAX_INTENT_VICTIMS);
        chosen.sort_unstable();
        let mut victims = chosen;
        let id = self.next_id;
        self.next_id += 1;
        // This node is a member like any other: it seals first.
        victims.retain(|&(a, f)| store.seal(a, f, me.actor(), id).is_ok());
        if victims.is_empty() {
            return;
        }
        self.intent = Some(Intent {
            id,
            victims,
            answers: HashMap::new(),
            started: now,
            last_sent: None,
        });
    }

    fn advance(
        &mut self,
        now: Instant,
        me: &NodeId,
        members: &[NodeId],
        store: &mut Store,
        rng: &mut impl Rng,
        out: &mut PruneOutput,
    ) {
        let required = self.required(members, now);
        let Some(intent) = self.intent.as_mut() else {
            return;
        };
        let answered = |m: &NodeId| intent.answers.contains_key(&m.actor());
        let all_answered = required.iter().all(answered);
        let timed_out = now.saturating_duration_since(intent.started) >= self.config.intent_timeout;
        if !all_answered && !timed_out {
            // (Re)send to whoever has not answered, at most once a second.
            if intent
                .last_sent
                .is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1))
            {
                intent.last_sent = Some(now);
                let message = PruneMessage::Intent {
                    owner: me.actor(),
                    id: intent.id,
                    victims: intent.victims.clone(),
                };
                for member in required.iter().filter(|m| !answered(m)) {
                    out.send.push((member.addr(), message.clone()));
                }
            }
            return;
        }
        // Fold what every required member sealed (nothing if the intent timed out).
        let folded: Vec<ActorId> = if all_answered {
            intent
                .victims
                .iter()
                .map(|v| v.0)
                .filter(|v| {
                    required.iter().all(|m| {
                        intent
                            .answers
                            .get(&m.actor())
                            .is_some_and(|a| a.contains(v))
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        let id = intent.id;
        self.intent = None;
        let mut done = Vec::new();
        if !folded.is_empty() {
            let sink = ActorId::random_sink(rng);
            if let Ok(completed) = store.fold(sink, &folded) {
                out.folded = Some((sink, completed.covered));
                done = folded;
                for actor in &done {
                    self.departed.remove(actor);
                }
            }
        }
        store.unseal_intent_except(me.actor(), id, &done);
        let message = PruneMessage::Done {
            owner: me.actor(),
            id,
            folded: done,
        };
        for member in required {
            out.send.push((member.addr(), message.clone()));
        }
    }

    /// Handles a prune message from `from`.
    pub(crate) fn handle(
        &mut self,
        from: SocketAddr,
        message: PruneMessage,
        now: Instant,
        members: &Members,
        store: &mut Store,
    ) -> Option<(SocketAddr, PruneMessage)> {
        match message {
            PruneMessage::Intent { owner, id, victims } => {
                let mut accepted = Vec::new();
                let mut refused = Vec::new();
                self.sealed.entry((owner, id)).or_insert(now);
                for (victim, final_version) in victims {
                    let ok = !members.carries(victim)
                        && store.seal(victim, final_version, owner, id).is_ok();
                    if ok {
                        accepted.push(victim);
                    } else {
                        refused.push(victim);
                    }
                }
                Some((
                    from,
                    PruneMessage::Ack {
                        id,
                        accepted,
                        refused,
                    },
                ))
            }
            PruneMessage::Ack { id, accepted, .. } => {
                // A member that SWIM thinks down may still answer.
                let member = members
                    .at(from)
                    .or_else(|| {
                        self.departed
                            .values()
                            .filter_map(|d| d.id.as_ref())
                            .find(|m| m.addr() == from)
                    })?
                    .clone();
                let intent = self.intent.as_mut().filter(|i| i.id == id)?;
                intent
                    .answers
                    .insert(member.actor(), accepted.into_iter().collect());
                None
            }
            PruneMessage::Done { owner, id, folded } => {
                store.unseal_intent_except(owner, id, &folded);
                if folded.is_empty() {
                    self.sealed.remove(&(owner, id));
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(port: u16, actor: u64) -> NodeId {
        NodeId::new(
            SocketAddr::from(([127, 0, 0, 1], port)),
            ActorId::from_u64(actor),
            1,
        )
    }

    /// Regression (found by the simulator's `churn-prune-100`): a restarted member's old
    /// identity was required to answer intents until `after_replaced` passed, which it
    /// never can, so restart churn kept every intent from folding anything.
    #[test]
    fn a_replaced_member_is_not_required_to_answer() {
        let mut pruner = Pruner::new(PruneConfig::default());
        let now = Instant::now();
        let (old, new, down) = (id(1, 10), id(1, 11), id(2, 20));
        pruner.on_renamed(&old, &new, now);
        pruner.on_down(&down, now);
        let required = pruner.required(std::slice::from_ref(&new), now);
        assert!(required.contains(&new));
        assert!(!required.contains(&old), "{required:?}");
        // A member that is only down may be partitioned away holding entries: it stays
        // required until `after_down`.
        assert!(required.contains(&down), "{required:?}");
    }

    /// Regression (a flaky mesh test under load): a restarted node that SWIM declared
    /// down before its successor came up at the same address was never seen renamed, so
    /// its actor waited `after_down` (an hour by default) instead of `after_replaced`.
    #[test]
    fn a_down_member_whose_address_comes_back_under_another_actor_is_replaced() {
        let config = PruneConfig::default();
        let mut pruner = Pruner::new(config);
        let now = Instant::now();
        let (old, new, other) = (id(1, 10), id(1, 11), id(2, 20));
        pruner.on_down(&old, now);
        pruner.on_down(&other, now);
        pruner.on_up(&new);
        let later = now + config.after_replaced;
        assert!(
            pruner.is_dead(old.actor(), later),
            "replaced at its address"
        );
        assert!(
            !pruner.is_dead(other.actor(), later),
            "a member only down waits after_down"
        );
        assert!(
            !pruner
                .required(std::slice::from_ref(&new), later)
                .contains(&old)
        );
    }
}
