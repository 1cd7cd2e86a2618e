//! [`Node`]: the protocol state machine that drives a [`Store`] and SWIM membership.
//!
//! The shape follows `quinn-proto`: feed it input with `handle_*` (each taking `now`),
//! then drain output with `poll_transmit`, `poll_event` and `poll_timeout`, and call
//! [`Node::handle_timeout`] when the deadline from `poll_timeout` passes. The node never
//! reads a clock or touches a socket; its randomness comes from the seed it was built
//! with, so a run is reproducible from that seed.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use foca::{AccumulatingRuntime, Foca, NoCustomBroadcast, OwnedNotification, Timer};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::actors::ME;
use crate::config::{ConfigError, MessageBudget};
use crate::digest::Part;
use crate::members::{MemberIndex, Members};
use crate::pruner::Pruner;
use crate::summary::ActorRange;
use crate::swim_codec::SwimCodec;
use crate::{
    Config, DecodeError, Delta, Event, ExchangeLimits, LimitKind, Message, NodeId, PruneMessage,
    Store, SyncRequest,
};

/// How often a recurring problem (a limit hit, refused data) is reported as an
/// [`Event`]; counts accumulate in [`Stats`] in between.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// Which transport path a message needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// An unreliable datagram of at most [`Config::max_datagram_bytes`] (SWIM).
    Datagram,
    /// A message of at most [`Config::max_message_bytes`] over a stream (counter sync).
    /// Loss is tolerated but should be rare.
    Stream,
}

/// What a message carries, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// SWIM membership.
    Swim,
    /// A digest part (sync request).
    Sync,
    /// Counter entries.
    Delta,
    /// The pruning protocol.
    Prune,
}

impl MessageKind {
    /// All kinds, for iterating over metrics.
    pub const ALL: [MessageKind; 4] = [
        MessageKind::Swim,
        MessageKind::Sync,
        MessageKind::Delta,
        MessageKind::Prune,
    ];

    /// Lower-case name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Swim => "swim",
            MessageKind::Sync => "sync",
            MessageKind::Delta => "delta",
            MessageKind::Prune => "prune",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// An encoded message the runtime must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// Which path it needs; its payload fits that path's budget.
    pub channel: Channel,
    /// What it carries.
    pub kind: MessageKind,
    /// The encoded message, envelope included.
    pub payload: Vec<u8>,
}

/// Why an incoming message was dropped. The node's state is unchanged by a dropped
/// message, except that SWIM may have processed part of a packet before an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandleError {
    /// The bytes are not a valid message.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A message that must travel as a datagram arrived on a stream, or the reverse.
    #[error("{kind:?} message arrived on the {channel:?} channel")]
    WrongChannel {
        /// What the message was.
        kind: MessageKind,
        /// Where it arrived.
        channel: Channel,
    },
    /// foca refused the SWIM packet (for example, one addressed to an older identity).
    #[error("SWIM: {0}")]
    Swim(foca::Error),
    /// The sender already had [`MAX_SYNC_PER_INTERVAL`] sync messages answered, or
    /// [`Config::max_delta_bytes_per_peer`] delta bytes merged, in this gossip interval.
    #[error("message from {0} refused: over its allowance for this gossip interval")]
    RateLimited(SocketAddr),
}

/// How many sync messages the node answers per sender per gossip interval. An exchange
/// takes at most 17 steps, about half of them answered by each side, and a peer starts
/// one exchange per round and takes part in about one other.
pub const MAX_SYNC_PER_INTERVAL: u32 = 48;

/// A member range holding at most this many members is sent as a list, not a summary.
const MEMBER_LIST_MAX: u32 = 4;

/// Most members one answer hands over (and one message may make SWIM apply): a node
/// that knows few members catches up over several exchanges, while SWIM's own gossip
/// spreads them too.
const MEMBER_NEWS_MAX: usize = 64;

/// Traffic counters, per message kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Messages sent, by [`MessageKind`] index.
    pub messages_sent: [u64; 4],
    /// Bytes sent (envelope included), by [`MessageKind`] index.
    pub bytes_sent: [u64; 4],
    /// Messages received and decoded, by [`MessageKind`] index.
    pub messages_received: [u64; 4],
    /// Bytes received in decoded messages, by [`MessageKind`] index.
    pub bytes_received: [u64; 4],
    /// Messages dropped because they did not decode or were refused.
    pub messages_dropped: u64,
    /// Entries refused because a store limit was reached.
    pub entries_rejected: u64,
    /// Refusals per [`LimitKind`] (index `LimitKind::ALL`).
    pub limit_refusals: [u64; 3],
    /// Entries refused because another counter already held their actor's version.
    pub entries_conflicting: u64,
    /// Runs refused for claiming versions of this node's own actor it never issued.
    pub own_runs_refused: u64,
    /// Messages this node built but could not encode (bugs; see
    /// [`Event::InternalError`]).
    pub internal_errors: u64,
    /// Entries refused because their actor was pruned (or sealed below them).
    pub entries_pruned_refused: u64,
    /// Sinks this node made (prunes it performed).
    pub prunes: u64,
    /// Sinks completed here (made here or received), and the actors they covered.
    pub sinks_completed: u64,
    /// Actors pruned here (covered by a completed sink).
    pub actors_pruned: u64,
    /// Entries merged that changed the store.
    pub entries_merged: u64,
    /// Gossip rounds run.
    pub rounds: u64,
}

impl Stats {
    /// Messages sent of one kind.
    pub fn sent(&self, kind: MessageKind) -> (u64, u64) {
        (
            self.messages_sent[kind.index()],
            self.bytes_sent[kind.index()],
        )
    }

    /// Messages received of one kind.
    pub fn received(&self, kind: MessageKind) -> (u64, u64) {
        (
            self.messages_received[kind.index()],
            self.bytes_received[kind.index()],
        )
    }
}

/// A SWIM timer with its deadline; ordered by deadline, then by scheduling order.
#[derive(Debug)]
struct Scheduled {
    at: Instant,
    seq: u64,
    timer: Timer<NodeId>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

type Swim = Foca<NodeId, SwimCodec, SmallRng, NoCustomBroadcast>;

/// One countermesh peer as a sans-io state machine.
///
/// Each gossip round (every [`Config::gossip_interval`]) the node flushes its store,
/// pushes its own fresh entries to [`Config::fanout`] random members, and sends its
/// digest to one random member, which answers with what the node lacks and asks back for
/// what it lacks itself. SWIM (foca) decides who the members are; it never deletes
/// counter state.
pub struct Node {
    config: Config,
    budget: MessageBudget,
    id: NodeId,
    store: Store,
    swim: Swim,
    swim_runtime: AccumulatingRuntime<NodeId>,
    rng: SmallRng,
    members: Members,
    /// Addresses given to [`Node::join`], re-announced to while the node is alone.
    seeds: Vec<SocketAddr>,
    /// When the node may next re-announce itself to its seeds.
    next_rejoin: Instant,
    timers: BinaryHeap<Reverse<Scheduled>>,
    timer_seq: u64,
    next_round: Instant,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// Own entries up to this version have been pushed eagerly.
    pushed_version: u64,
    /// Per peer address, the highest version of this node's actor the peer reported
    /// holding in a digest: how far behind that peer is on this node's counts.
    acknowledged: HashMap<SocketAddr, u64>,
    /// Per member, what it was allowed this gossip interval; all non-members share the
    /// `None` entry, so the map is as small as the membership.
    allowances: HashMap<Option<SocketAddr>, Allowance>,
    /// Per member, the message budget it announced in its sync requests.
    peer_budgets: HashMap<SocketAddr, MessageBudget>,
    /// When each recurring problem was last reported, and what accumulated since.
    limit_reported: [Option<Instant>; 3],
    limit_pending: [u64; 3],
    refusal_reported: Option<Instant>,
    refusal_pending: (u64, u64),
    /// Pruning of departed actors, if enabled.
    pruner: Option<Pruner>,
    /// The active members and this node, summarised for membership anti-entropy.
    member_index: MemberIndex,
    /// The `now` of the latest input, for notifications that carry no time.
    last_now: Instant,
    stats: Stats,
}

/// What one peer may still send in the current gossip interval.
#[derive(Debug, Clone, Copy)]
struct Allowance {
    window: Instant,
    syncs: u32,
    delta_bytes: usize,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("members", &self.members.len())
            .field("counters", &self.store.len())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Creates a node for `id` that gossips `store`, with randomness from `seed`.
    ///
    /// The first gossip round is due one interval after `now`. The node is alone until
    /// [`Node::join`] reaches a peer (or a peer reaches it).
    pub fn new(
        config: Config,
        id: NodeId,
        store: Store,
        seed: u64,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        let validated = config.validate()?;
        if id.actor().is_sink() {
            return Err(ConfigError::SinkActor(id.actor()));
        }
        if id.actor() != store.actor_id() {
            return Err(ConfigError::ActorMismatch {
                identity: id.actor(),
                store: store.actor_id(),
            });
        }
        let mut rng = SmallRng::seed_from_u64(seed);
        let swim_rng = SmallRng::seed_from_u64(rng.next_u64());
        let swim = Foca::new(id.clone(), validated.swim, swim_rng, SwimCodec);
        let mut pruner = config.prune.map(Pruner::new);
        // This process replaced the incarnation whose data directory it restored: that
        // actor is certainly gone, and no member may ever carry it again, so it is
        // prunable after `after_replaced` like any restarted member's old actor. Without
        // this, a restarted node that happens to draw the lowest actor id (and so becomes
        // the pruner) would wait `after_down` for its own previous incarnation, since it
        // never sees that incarnation's member replaced.
        if let (Some(pruner), Some(previous)) = (pruner.as_mut(), store.previous_incarnation) {
            pruner.on_replaced_here(previous, now);
        }
        let mut member_index = MemberIndex::new();
        member_index.insert(&id);
        Ok(Self {
            next_round: now + config.gossip_interval,
            config,
            budget: validated.budget,
            id,
            store,
            swim,
            swim_runtime: AccumulatingRuntime::new(),
            rng,
            members: Members::default(),
            seeds: Vec::new(),
            next_rejoin: now,
            timers: BinaryHeap::new(),
            timer_seq: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            pushed_version: 0,
            acknowledged: HashMap::new(),
            allowances: HashMap::new(),
            peer_budgets: HashMap::new(),
            limit_reported: [None; 3],
            limit_pending: [0; 3],
            refusal_reported: None,
            refusal_pending: (0, 0),
            pruner,
            member_index,
            last_now: now,
            stats: Stats::default(),
        })
    }

    /// This node's current identity (it changes if SWIM renews it).
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// The counter store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The counter store, mutably (to create counters, flush, or mark state durable).
    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Peers SWIM currently considers active (alive or suspect).
    pub fn members(&self) -> &[NodeId] {
        self.members.as_slice()
    }

    /// Every member SWIM knows, with its state (alive, suspect or down).
    pub fn membership(&self) -> impl Iterator<Item = (&NodeId, foca::State)> + '_ {
        self.swim
            .iter_membership_state()
            .map(|m| (m.id(), m.state()))
    }

    /// Per peer address, the highest version of this node's own actor that the peer
    /// showed holding in anti-entropy exchanges. Compare with [`Store::local_version`]
    /// to see how far behind each peer is on this node's counts (replication lag).
    /// Exchanges run on their own schedule, so the figure can be a few rounds old; it
    /// only ever overstates the lag.
    pub fn acknowledged_versions(&self) -> impl Iterator<Item = (SocketAddr, u64)> + '_ {
        self.acknowledged.iter().map(|(&addr, &v)| (addr, v))
    }

    /// Traffic counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Asks the node at `seed` to let this node join its cluster.
    ///
    /// The seed is remembered: whenever this node has no live member (the announce was
    /// lost, the seed was down, or a partition isolated the node), it announces itself
    /// to its seeds again every [`Config::rejoin_interval`].
    pub fn join(&mut self, seed: SocketAddr, now: Instant) {
        if seed == self.id.addr() {
            return;
        }
        if !self.seeds.contains(&seed) {
            self.seeds.push(seed);
        }
        self.announce(seed, now);
        self.next_rejoin = now + self.config.rejoin_interval;
    }

    fn announce(&mut self, seed: SocketAddr, now: Instant) {
        let result = self
            .swim
            .announce(NodeId::seed(seed), &mut self.swim_runtime);
        // Announcing only encodes and queues a packet; it cannot fail for a valid config.
        debug_assert!(result.is_ok(), "announce failed: {result:?}");
        self.drain_swim(now);
    }

    /// Tells the cluster this node is leaving. Flush and gossip first if the node's own
    /// recent adds must not wait for the next anti-entropy exchange of its peers.
    pub fn leave(&mut self, now: Instant) {
        let result = self.swim.leave_cluster(&mut self.swim_runtime);
        debug_assert!(result.is_ok(), "leave failed: {result:?}");
        self.drain_swim(now);
    }

    /// Runs a gossip round now instead of waiting for the timer: flush, push fresh
    /// entries, start an anti-entropy exchange. The next timed round is rescheduled.
    pub fn gossip_now(&mut self, now: Instant) {
        self.round(now);
        self.next_round = now + self.config.gossip_interval;
    }

    /// Processes one message that arrived from `from` on `channel`.
    ///
    /// Errors mean the message was dropped; the runtime should log them and carry on.
    pub fn handle_message(
        &mut self,
        from: SocketAddr,
        channel: Channel,
        bytes: &[u8],
        now: Instant,
    ) -> Result<(), HandleError> {
        let max = match channel {
            Channel::Datagram => self.config.max_datagram_bytes,
            Channel::Stream => self.config.max_message_bytes,
        };
        let message = match Message::decode(bytes, max) {
            Ok(message) => message,
            Err(error) => {
                self.stats.messages_dropped += 1;
                return Err(error.into());
            }
        };
        let kind = match &message {
            Message::Swim(_) => MessageKind::Swim,
            Message::Sync(_) => MessageKind::Sync,
            Message::Delta(_) => MessageKind::Delta,
            Message::Prune(_) => MessageKind::Prune,
        };
        let expected = match kind {
            MessageKind::Swim => Channel::Datagram,
            MessageKind::Sync | MessageKind::Delta | MessageKind::Prune => Channel::Stream,
        };
        if channel != expected {
            self.stats.messages_dropped += 1;
            return Err(HandleError::WrongChannel { kind, channel });
        }
        self.stats.messages_received[kind.index()] += 1;
        self.stats.bytes_received[kind.index()] += bytes.len() as u64;
        match message {
            Message::Swim(payload) => {
                let result = self.swim.handle_data(&payload, &mut self.swim_runtime);
                self.drain_swim(now);
                if let Err(error) = result {
                    self.stats.messages_dropped += 1;
                    return Err(HandleError::Swim(error));
                }
            }
            Message::Sync(request) => self.on_sync(from, &request, now)?,
            Message::Delta(delta) => self.on_delta(from, &delta, bytes.len(), now)?,
            Message::Prune(prune) => self.on_prune(from, prune, now)?,
        }
        Ok(())
    }

    /// One step of the pruning protocol (bounded like sync messages).
    fn on_prune(
        &mut self,
        from: SocketAddr,
        message: PruneMessage,
        now: Instant,
    ) -> Result<(), HandleError> {
        let allowance = self.allowance(from, now);
        if allowance.syncs >= MAX_SYNC_PER_INTERVAL {
            self.stats.messages_dropped += 1;
            return Err(HandleError::RateLimited(from));
        }
        allowance.syncs += 1;
        let Some(pruner) = self.pruner.as_mut() else {
            // Pruning is off here: refuse every seal, so no intent can complete.
            if let PruneMessage::Intent { id, victims, .. } = message {
                let refused = victims.into_iter().map(|v| v.0).collect();
                self.send_prune(
                    from,
                    PruneMessage::Ack {
                        id,
                        accepted: Vec::new(),
                        refused,
                    },
                );
            }
            return Ok(());
        };
        if let Some((to, reply)) = pruner.handle(from, message, now, &self.members, &mut self.store)
        {
            self.send_prune(to, reply);
        }
        Ok(())
    }

    fn send_prune(&mut self, to: SocketAddr, message: PruneMessage) {
        match crate::wire::encode_prune(&message) {
            Ok(payload) => self.send(to, Channel::Stream, MessageKind::Prune, payload),
            Err(error) => self.internal_error(error.to_string()),
        }
    }

    /// The pruner's periodic work, and events for sinks completed here.
    fn prune_round(&mut self, now: Instant) {
        if let Some(pruner) = self.pruner.as_mut() {
            let out = pruner.tick(now, &self.id, &self.members, &mut self.store, &mut self.rng);
            if out.folded.is_some() {
                self.stats.prunes += 1;
            }
            for (to, message) in out.send {
                self.send_prune(to, message);
            }
        }
        self.report_pruning();
    }

    /// Turns sinks completed (or refused) in the store into events and stats.
    fn report_pruning(&mut self) {
        for completed in self.store.take_completed() {
            self.stats.sinks_completed += 1;
            self.stats.actors_pruned += completed.dropped as u64;
            self.events.push_back(Event::Pruned {
                sink: completed.sink,
                covered: completed.covered,
                dropped: completed.dropped,
            });
        }
        for sink in self.store.take_refused_sinks() {
            self.events.push_back(Event::SinkRefused(sink));
        }
    }

    /// The allowance of `from` for the current gossip interval.
    fn allowance(&mut self, from: SocketAddr, now: Instant) -> &mut Allowance {
        // Only members are tracked one by one, so the map stays as small as the
        // membership.
        let is_member = self.members.contains_addr(from);
        let interval = self.config.gossip_interval;
        let allowance = self
            .allowances
            .entry(is_member.then_some(from))
            .or_insert(Allowance {
                window: now,
                syncs: 0,
                delta_bytes: 0,
            });
        if now.saturating_duration_since(allowance.window) >= interval {
            *allowance = Allowance {
                window: now,
                syncs: 0,
                delta_bytes: 0,
            };
        }
        allowance
    }

    /// Answers one step of an anti-entropy exchange.
    fn on_sync(
        &mut self,
        from: SocketAddr,
        request: &SyncRequest,
        now: Instant,
    ) -> Result<(), HandleError> {
        let allowance = self.allowance(from, now);
        if allowance.syncs >= MAX_SYNC_PER_INTERVAL {
            self.stats.messages_dropped += 1;
            return Err(HandleError::RateLimited(from));
        }
        allowance.syncs += 1;
        let is_member = self.members.contains_addr(from);
        if is_member {
            self.peer_budgets
                .insert(from, MessageBudget::from_wire(request.budget));
        }
        let member_replies = self.answer_members(request, now);
        let answer = self.store.answer_sync(request, self.exchange_limits());
        if let (true, Some(held)) = (is_member, answer.acknowledged) {
            let acked = self.acknowledged.entry(from).or_insert(0);
            *acked = (*acked).max(held);
        }
        let mut out = Vec::with_capacity(answer.deltas.len() + answer.replies.len());
        let mut failures = Vec::new();
        for delta in &answer.deltas {
            match crate::wire::encode_delta(delta) {
                Ok(payload) => out.push((MessageKind::Delta, payload)),
                Err(error) => failures.push(error.to_string()),
            }
        }
        for reply in answer.replies.iter().chain(&member_replies) {
            match crate::wire::encode_sync(reply) {
                Ok(payload) => out.push((MessageKind::Sync, payload)),
                Err(error) => failures.push(error.to_string()),
            }
        }
        for failure in failures {
            self.internal_error(failure);
        }
        for (kind, payload) in out {
            self.send(from, Channel::Stream, kind, payload);
        }
        Ok(())
    }

    /// The membership half of an exchange: compares the requester's member summaries and
    /// lists with this node's, hands SWIM the members it lacks, and answers with the
    /// next step or the members the requester lacks.
    fn answer_members(&mut self, request: &SyncRequest, now: Instant) -> Vec<SyncRequest> {
        let mut parts = Vec::new();
        let mut learned: Vec<NodeId> = Vec::new();
        for part in &request.parts {
            match part {
                Part::MemberSummary { range, count, hash } => {
                    let mine = self.member_index.summary(*range);
                    if mine.count == *count && mine.hash == *hash {
                        continue;
                    }
                    match range.children() {
                        Some(children) if mine.count > MEMBER_LIST_MAX => {
                            for child in children {
                                parts.push(self.member_part(child));
                            }
                        }
                        _ => parts.push(self.member_list(*range)),
                    }
                }
                Part::MemberList { range, ids } => {
                    let theirs: std::collections::HashSet<&NodeId> = ids.iter().collect();
                    let news: Vec<NodeId> = self
                        .member_index
                        .in_range(*range)
                        .filter(|id| !theirs.contains(id))
                        .take(MEMBER_NEWS_MAX)
                        .cloned()
                        .collect();
                    if !news.is_empty() {
                        parts.push(Part::MemberNews { ids: news });
                    }
                    learned.extend(ids.iter().cloned());
                }
                Part::MemberNews { ids } => {
                    learned.extend(ids.iter().take(MEMBER_NEWS_MAX).cloned());
                }
                _ => {}
            }
        }
        self.learn_members(learned, now);
        if parts.is_empty() {
            return Vec::new();
        }
        let budget = MessageBudget::from_wire(request.budget).min(self.budget);
        crate::digest::pack(parts, budget, self.exchange_limits())
    }

    fn member_part(&self, range: ActorRange) -> Part {
        let summary = self.member_index.summary(range);
        if summary.count <= MEMBER_LIST_MAX {
            self.member_list(range)
        } else {
            Part::MemberSummary {
                range,
                count: summary.count,
                hash: summary.hash,
            }
        }
    }

    fn member_list(&self, range: ActorRange) -> Part {
        Part::MemberList {
            range,
            ids: self.member_index.in_range(range).cloned().collect(),
        }
    }

    /// Hands SWIM the members another node knows and this one may not: foca ignores
    /// what it knows better (a member it holds down, a newer incarnation).
    fn learn_members(&mut self, ids: Vec<NodeId>, now: Instant) {
        let me = self.id.clone();
        let unknown: Vec<foca::Member<NodeId>> = ids
            .into_iter()
            .filter(|id| *id != me && !self.members.at(id.addr()).is_some_and(|m| m == id))
            .map(foca::Member::alive)
            .collect();
        if unknown.is_empty() {
            return;
        }
        // Not re-broadcast: the exchanges spread membership already, and every broadcast
        // costs foca a pass over its backlog. Errors are foca refusing updates about
        // identities it knows to be stale.
        let _ = self
            .swim
            .apply_many(unknown.into_iter(), false, &mut self.swim_runtime);
        self.drain_swim(now);
    }

    /// Merges counter entries, within the sender's allowance.
    fn on_delta(
        &mut self,
        from: SocketAddr,
        delta: &Delta<'_>,
        len: usize,
        now: Instant,
    ) -> Result<(), HandleError> {
        let limit = self.config.max_delta_bytes_per_peer;
        let allowance = self.allowance(from, now);
        if allowance.delta_bytes.saturating_add(len) > limit {
            self.stats.messages_dropped += 1;
            return Err(HandleError::RateLimited(from));
        }
        allowance.delta_bytes += len;
        // Decoding validated the delta, so applying it cannot fail; a failure would
        // still only drop this message.
        if let Ok(outcome) = self.store.apply_delta(delta) {
            self.stats.entries_pruned_refused += outcome.pruned_refused as u64;
            self.stats.entries_merged += outcome.changed as u64;
            self.stats.entries_rejected += outcome.rejected as u64;
            self.stats.entries_conflicting += outcome.conflicting as u64;
            self.stats.own_runs_refused += outcome.own_refused as u64;
            if outcome.conflicting > 0 || outcome.own_refused > 0 {
                self.refusal_pending.0 += outcome.conflicting as u64;
                self.refusal_pending.1 += outcome.own_refused as u64;
                self.report_refusal(from, now);
            }
        }
        self.report_limits(now);
        self.report_pruning();
        Ok(())
    }

    /// Turns refusals by limit into (rate-limited) events.
    fn report_limits(&mut self, now: Instant) {
        let hits = self.store.take_limit_hits();
        let limits = self.store.limits();
        for kind in LimitKind::ALL {
            let i = kind.index();
            self.stats.limit_refusals[i] += hits[i];
            self.limit_pending[i] += hits[i];
            let due = self.limit_reported[i]
                .is_none_or(|at| now.saturating_duration_since(at) >= REPORT_EVERY);
            if self.limit_pending[i] > 0 && due {
                let limit = match kind {
                    LimitKind::Counters => limits.max_counters,
                    LimitKind::Actors => limits.max_actors,
                    LimitKind::Entries => limits.max_entries,
                };
                self.events.push_back(Event::LimitReached {
                    kind,
                    limit,
                    refused: std::mem::take(&mut self.limit_pending[i]),
                });
                self.limit_reported[i] = Some(now);
            }
        }
    }

    fn report_refusal(&mut self, from: SocketAddr, now: Instant) {
        let due = self
            .refusal_reported
            .is_none_or(|at| now.saturating_duration_since(at) >= REPORT_EVERY);
        if due {
            let (conflicting, own_refused) = std::mem::take(&mut self.refusal_pending);
            self.events.push_back(Event::Refused {
                from,
                conflicting,
                own_refused,
            });
            self.refusal_reported = Some(now);
        }
    }

    fn internal_error(&mut self, what: String) {
        self.stats.internal_errors += 1;
        self.events.push_back(Event::InternalError(what));
    }

    /// Runs everything that is due at `now`: SWIM timers and the gossip round.
    pub fn handle_timeout(&mut self, now: Instant) {
        while self.timers.peek().is_some_and(|Reverse(s)| s.at <= now) {
            let Some(Reverse(scheduled)) = self.timers.pop() else {
                break;
            };
            // Errors here are foca declining stale timers; nothing to do about them.
            let _ = self
                .swim
                .handle_timer(scheduled.timer, &mut self.swim_runtime);
            self.drain_swim(now);
        }
        if self.next_round <= now {
            self.round(now);
            self.next_round = now + self.config.gossip_interval;
        }
    }

    /// When [`Node::handle_timeout`] should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let swim = self.timers.peek().map(|Reverse(s)| s.at);
        Some(swim.map_or(self.next_round, |at| at.min(self.next_round)))
    }

    /// The next message to send, if any.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn round(&mut self, now: Instant) {
        self.stats.rounds += 1;
        let outcome = self.store.flush();
        self.events
            .extend(outcome.saturated.into_iter().map(Event::Saturated));
        self.report_limits(now);
        self.push_fresh();
        self.anti_entropy();
        self.prune_round(now);
        if self.members.is_empty() && !self.seeds.is_empty() && now >= self.next_rejoin {
            for seed in self.seeds.clone() {
                self.announce(seed, now);
            }
            self.next_rejoin = now + self.config.rejoin_interval;
        }
        // Datagram-only SWIM gossip also carries membership news on foca's own timer;
        // nothing to drain here, but keep the queue empty in case flush produced output.
        self.drain_swim(now);
    }

    /// Sends this node's own entries changed since the last push to `fanout` peers.
    fn push_fresh(&mut self) {
        let local = self.store.local_version();
        if local <= self.pushed_version {
            return;
        }
        let after = self.pushed_version;
        self.pushed_version = local;
        if self.members.is_empty() {
            return;
        }
        let targets = self.choose_members(self.config.fanout);
        // One encoding for every target, within the smallest of their budgets. A member
        // that has not yet announced its budget in a sync request gets the smallest one
        // any node may have, so the push is never refused as oversized.
        let budget = targets.iter().fold(self.budget, |b, t| {
            b.min(
                self.peer_budgets
                    .get(t)
                    .copied()
                    .unwrap_or(MessageBudget::MIN),
            )
        });
        let mut payloads = Vec::new();
        let mut failures = Vec::new();
        for delta in self
            .store
            .deltas_for_wants(&[(ME, after)], budget, usize::MAX)
        {
            match crate::wire::encode_delta(&delta) {
                Ok(payload) => payloads.push(payload),
                Err(error) => failures.push(error.to_string()),
            }
        }
        for failure in failures {
            self.internal_error(failure);
        }
        for target in targets {
            for payload in &payloads {
                self.send(target, Channel::Stream, MessageKind::Delta, payload.clone());
            }
        }
    }

    /// What this node asks of the answers to its sync requests.
    fn exchange_limits(&self) -> ExchangeLimits {
        ExchangeLimits {
            budget: self.budget,
            reply_bytes: u32::try_from(self.config.max_sync_reply_bytes).unwrap_or(u32::MAX),
        }
    }

    /// Starts an anti-entropy exchange with one random member.
    fn anti_entropy(&mut self) {
        let Some(target) = self.choose_members(1).pop() else {
            return;
        };
        let mut request = self.store.sync_start(self.exchange_limits());
        let members = self.member_index.summary(ActorRange::ALL);
        request.parts.push(Part::MemberSummary {
            range: ActorRange::ALL,
            count: members.count,
            hash: members.hash,
        });
        match crate::wire::encode_sync(&request) {
            Ok(payload) => self.send(target, Channel::Stream, MessageKind::Sync, payload),
            Err(error) => self.internal_error(error.to_string()),
        }
    }

    /// Up to `count` distinct random members' addresses.
    fn choose_members(&mut self, count: usize) -> Vec<SocketAddr> {
        self.members.choose(count, &mut self.rng)
    }

    fn send(
        &mut self,
        destination: SocketAddr,
        channel: Channel,
        kind: MessageKind,
        payload: Vec<u8>,
    ) {
        self.stats.messages_sent[kind.index()] += 1;
        self.stats.bytes_sent[kind.index()] += payload.len() as u64;
        self.transmits.push_back(Transmit {
            destination,
            channel,
            kind,
            payload,
        });
    }

    /// Moves foca's queued output into the node's queues.
    fn drain_swim(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        while let Some((to, data)) = self.swim_runtime.to_send() {
            let payload = crate::wire::encode_swim(&data);
            self.send(to.addr(), Channel::Datagram, MessageKind::Swim, payload);
        }
        while let Some((after, timer)) = self.swim_runtime.to_schedule() {
            self.timer_seq += 1;
            self.timers.push(Reverse(Scheduled {
                at: now + after,
                seq: self.timer_seq,
                timer,
            }));
        }
        while let Some(notification) = self.swim_runtime.to_notify() {
            self.notify(notification);
        }
    }

    fn notify(&mut self, notification: OwnedNotification<NodeId>) {
        match notification {
            OwnedNotification::MemberUp(id) => {
                if let Some(pruner) = self.pruner.as_mut() {
                    pruner.on_up(&id);
                }
                self.member_index.insert(&id);
                self.members.insert(id.clone());
                self.events.push_back(Event::MemberUp(id));
            }
            OwnedNotification::MemberDown(id) => {
                if let Some(pruner) = self.pruner.as_mut() {
                    pruner.on_down(&id, self.last_now);
                }
                self.member_index.remove(&id);
                self.members.remove(&id);
                self.acknowledged.remove(&id.addr());
                self.allowances.remove(&Some(id.addr()));
                self.peer_budgets.remove(&id.addr());
                self.events.push_back(Event::MemberDown(id));
            }
            OwnedNotification::Rename(old, new) => {
                if let Some(pruner) = self.pruner.as_mut() {
                    pruner.on_renamed(&old, &new, self.last_now);
                }
                // A renamed member may have restarted with other state; forget what it
                // acknowledged so lag is not understated.
                self.acknowledged.remove(&old.addr());
                if self.members.at(old.addr()).is_some_and(|m| *m == old) {
                    self.members.rename(&old, new.clone());
                }
                self.member_index.remove(&old);
                self.member_index.insert(&new);
                self.events.push_back(Event::MemberRenamed { old, new });
            }
            OwnedNotification::Active => self.events.push_back(Event::Joined),
            OwnedNotification::Idle => self.events.push_back(Event::Isolated),
            OwnedNotification::Defunct => self.events.push_back(Event::Defunct),
            OwnedNotification::Rejoin(id) => {
                self.member_index.remove(&self.id);
                self.member_index.insert(&id);
                self.id = id.clone();
                self.events.push_back(Event::Rejoined(id));
            }
        }
    }
}
