//! Every protocol input the fuzz targets build: addresses, actors, counter names, node
//! configurations, structured deltas, sinks, sync requests and prune messages
//! (`arbitrary` specs turned into core types and encoded with the public encoders),
//! honest peers, and SWIM packets captured from real nodes.
//!
//! This is the one module to adapt when the wire format or the core's public API
//! changes; the targets and the invariant checks only go through it.

use std::borrow::Cow;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use countermesh_core::{
    ActorId, ActorRange, Channel, Config, Delta, DeltaEntry, Limits, MAX_LEVEL, MAX_MESSAGE_BYTES,
    MAX_VERSION, MIN_MESSAGE_BUDGET, Message, Node, NodeId, Part, PruneConfig, PruneMessage, Run,
    Store, SyncRequest, encode_delta, encode_prune, encode_swim, encode_sync, pair_hash,
};

/// How many fake peers (addresses, and an actor each) a target talks to.
pub const PEERS: usize = 4;

/// The fuzzed node's actor.
pub const NODE_ACTOR: ActorId = ActorId::from_u64(0x4e4f_4445_0000_0001);

/// The top bit of an actor id, which marks a pruning sink.
pub const SINK_BIT: u64 = 1 << 63;

/// The fuzzed node's address.
pub fn node_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), 7000))
}

/// Fake peer `i`'s address (any `u8` is folded into `0..PEERS`).
pub fn peer_addr(i: u8) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(10, 0, 0, 2 + i % PEERS as u8), 7000))
}

/// The address of the harness's final audit (never one of the fake peers).
pub fn auditor_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(10, 0, 0, 99), 7000))
}

/// Fake peer `i`'s actor. Chosen so the fuzzed node's actor sorts between them, which
/// decides whether the node is the lowest live actor (the pruner) and puts them all in
/// one actor range down to level 12.
pub fn peer_actor(i: u8) -> ActorId {
    ActorId::from_u64(0x4e4f_4445_0000_0000 + 0x100 * u64::from(i % PEERS as u8))
}

/// Sink `i` of the four a fake peer may claim to have made.
pub fn sink_actor(i: u8) -> ActorId {
    ActorId::from_u64(SINK_BIT | 0x5349_4e4b_0000_0000 | u64::from(i % 4))
}

/// Counter names the structured inputs use: short ones (so budgets split runs of many
/// entries) and one of the maximum length (256 bytes).
pub fn counter_name(i: u8) -> &'static str {
    const SHORT: [&str; 7] = ["a", "b", "c", "hits", "errors", "q/len", "ünï"];
    static LONG: OnceLock<String> = OnceLock::new();
    match usize::from(i) % (SHORT.len() + 1) {
        i if i < SHORT.len() => SHORT[i],
        _ => LONG.get_or_init(|| "x".repeat(256)),
    }
}

/// Number of distinct names [`counter_name`] returns.
pub const NAMES: u8 = 8;

/// The name of a sink's header entry (reserved: not a valid counter name).
pub const SINK_HEADER: &str = "\0sink";

/// The name of a sink's record of `victim` (reserved, like the header).
pub fn victim_record(victim: ActorId) -> String {
    format!("\0v/{:016x}", victim.as_u64())
}

/// The budget a channel allows under `config`.
pub fn budget(config: &Config, channel: Channel) -> usize {
    match channel {
        Channel::Datagram => config.max_datagram_bytes,
        Channel::Stream => config.max_message_bytes,
    }
}

/// The key a member list is sorted by. The core keeps this function private, and sync
/// requests with member lists in any other order are refused, so the harness has to
/// compute the same key to build lists a node accepts (a wrong mirror only makes the
/// harness drop its own member lists, never hides a finding).
pub fn member_key(id: &NodeId) -> u64 {
    let (ip, port) = match id.addr() {
        SocketAddr::V4(a) => (u128::from(a.ip().to_bits()), a.port()),
        SocketAddr::V6(a) => (a.ip().to_bits(), a.port()),
    };
    let addr = (ip as u64) ^ ((ip >> 64) as u64).rotate_left(17) ^ (u64::from(port) << 48);
    pair_hash(
        ActorId::from_u64(id.actor().as_u64() ^ addr.rotate_left(29)),
        id.incarnation(),
    )
}

/// Whether and how fast the node prunes departed actors.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum PruningSpec {
    /// Pruning off: the node refuses every intent.
    Off,
    /// The default delays (an hour down, a minute replaced): the node seals for other
    /// pruners but rarely prunes itself within one input.
    Default,
    /// Delays of a few seconds, so within one input the node prunes the actors no
    /// member carries, folds them into sinks and sends intents and dones.
    Fast,
}

/// Node settings chosen by the fuzzer.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct Setup {
    /// Track changes for a committer (as a runtime with a data directory does), so
    /// `take_changes` returns real batches that the harness writes to a model disk.
    pub track_changes: bool,
    /// The smallest stream budget (512 bytes) instead of the default 64 KiB, so answers
    /// are split across messages.
    pub small_messages: bool,
    /// The smallest datagram budget (256 bytes) instead of 1150.
    pub small_datagrams: bool,
    /// Tiny store limits (3 actors, 5 counters, 8 entries), so refusals happen.
    pub tight_limits: bool,
    /// Reply budget: as small as allowed (one message) instead of 4 MiB.
    pub small_replies: bool,
    /// Pruning.
    pub pruning: PruningSpec,
}

impl Setup {
    /// A setup with everything at its default, except the smallest stream budget.
    pub fn plain() -> Self {
        Self {
            track_changes: false,
            small_messages: true,
            small_datagrams: false,
            tight_limits: false,
            small_replies: false,
            pruning: PruningSpec::Default,
        }
    }

    /// The configuration this setup describes.
    pub fn config(&self) -> Config {
        let mut config = Config::default();
        if self.small_messages {
            config.max_message_bytes = MIN_MESSAGE_BUDGET;
        }
        if self.small_datagrams {
            config.max_datagram_bytes = countermesh_core::MIN_DATAGRAM_BYTES;
        }
        if self.small_replies {
            config.max_sync_reply_bytes = config.max_message_bytes;
        }
        config.prune = match self.pruning {
            PruningSpec::Off => None,
            PruningSpec::Default => Some(PruneConfig::default()),
            PruningSpec::Fast => Some(PruneConfig {
                after_down: Duration::from_secs(3),
                after_replaced: Duration::from_secs(1),
                interval: Duration::from_millis(200),
                intent_timeout: Duration::from_secs(2),
            }),
        };
        config
    }

    /// The store limits this setup describes.
    pub fn limits(&self) -> Limits {
        if self.tight_limits {
            Limits {
                max_counters: 5,
                max_actors: 3,
                max_entries: 8,
            }
        } else {
            Limits::default()
        }
    }

    /// A fresh node for this setup, created at `now`.
    pub fn node(&self, now: Instant) -> Node {
        let store = Store::new(NODE_ACTOR, 7)
            .with_change_tracking(self.track_changes)
            .with_limits(self.limits());
        let id = NodeId::new(node_addr(), NODE_ACTOR, 1);
        Node::new(self.config(), id, store, 11, now).expect("the fuzz configurations are valid")
    }
}

/// A version as the fuzzer picks it: mostly small, so runs of different messages meet,
/// sometimes anywhere up to [`MAX_VERSION`] (the largest a message may carry).
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum VersionSpec {
    /// `0..=255`.
    Small(u8),
    /// `MAX_VERSION - n`.
    NearMax(u8),
    /// Any value up to `MAX_VERSION`.
    Any(u64),
}

impl VersionSpec {
    /// The version.
    pub fn get(self) -> u64 {
        match self {
            VersionSpec::Small(v) => u64::from(v),
            VersionSpec::NearMax(n) => MAX_VERSION - u64::from(n),
            VersionSpec::Any(v) => v % (MAX_VERSION + 1),
        }
    }
}

/// An amount (`p` or `n` of an entry).
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum AmountSpec {
    /// `0..=255`.
    Small(u8),
    /// `u64::MAX - n`.
    NearMax(u8),
    /// Any value.
    Any(u64),
}

impl AmountSpec {
    /// The amount.
    pub fn get(self) -> u64 {
        match self {
            AmountSpec::Small(v) => u64::from(v),
            AmountSpec::NearMax(n) => u64::MAX - u64::from(n),
            AmountSpec::Any(v) => v,
        }
    }
}

/// Whose entries a run carries (or which actor a message names).
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum ActorSpec {
    /// One of the fake peers' actors.
    Peer(u8),
    /// The fuzzed node's own actor (a peer echoing, or inventing, its state).
    Node,
    /// One of the sinks fake peers may claim.
    Sink(u8),
    /// Any actor id.
    Any(u64),
}

impl ActorSpec {
    /// The actor.
    pub fn get(self) -> ActorId {
        match self {
            ActorSpec::Peer(i) => peer_actor(i),
            ActorSpec::Node => NODE_ACTOR,
            ActorSpec::Sink(i) => sink_actor(i),
            ActorSpec::Any(raw) => ActorId::from_u64(raw),
        }
    }
}

/// One entry of a run: its counter, the distance of its version from the previous one
/// (at least 1), and its totals.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct EntrySpec {
    /// Index into [`counter_name`].
    pub name: u8,
    /// `version - previous` (0 is read as 1).
    pub gap: VersionSpec,
    /// Total increments.
    pub p: AmountSpec,
    /// Total decrements.
    pub n: AmountSpec,
}

/// One run of a delta.
#[derive(Debug, Clone, Arbitrary)]
pub struct RunSpec {
    /// Whose entries.
    pub actor: ActorSpec,
    /// The run covers versions above this...
    pub after: VersionSpec,
    /// ...up to `after + span` (at most `MAX_VERSION`).
    pub span: VersionSpec,
    /// The entries, versions ascending from `after`.
    pub entries: Vec<EntrySpec>,
}

/// A structurally valid delta, any content: what a confused or lying peer can send.
#[derive(Debug, Clone, Arbitrary)]
pub struct DeltaSpec {
    /// The runs (a repeated actor is dropped, so the delta stays valid).
    pub runs: Vec<RunSpec>,
}

impl DeltaSpec {
    /// The delta: every rule of `Delta::validate` holds by construction.
    pub fn build(&self) -> Delta<'static> {
        let mut runs: Vec<Run<'static>> = Vec::new();
        for spec in &self.runs {
            let actor = spec.actor.get();
            if runs.iter().any(|r| r.actor == actor) {
                continue;
            }
            let after = spec.after.get();
            let upto = after.saturating_add(spec.span.get()).min(MAX_VERSION);
            let mut version = after;
            let mut entries = Vec::new();
            for entry in &spec.entries {
                match version.checked_add(entry.gap.get().max(1)) {
                    Some(next) if next <= MAX_VERSION => version = next,
                    _ => break,
                }
                entries.push(DeltaEntry {
                    name: Cow::Borrowed(counter_name(entry.name)),
                    version,
                    p: entry.p.get(),
                    n: entry.n.get(),
                });
            }
            runs.push(Run {
                actor,
                after,
                upto,
                entries,
            });
        }
        Delta { runs }
    }
}

/// A sink as a pruner makes it (header, one record per covered actor, one entry per
/// counter, versions 1, 2, 3, ...), possibly cut short, from a fake peer: a correct
/// prune elsewhere, or a lying one (covering honest actors, the node's own actor, or
/// actors another sink covers).
#[derive(Debug, Clone, Arbitrary)]
pub struct SinkSpec {
    /// Which sink.
    pub sink: u8,
    /// The covered actors with their final versions (sorted and deduplicated).
    pub victims: Vec<(ActorSpec, VersionSpec)>,
    /// Counter index and folded totals (one per counter, first wins).
    pub counters: Vec<(u8, AmountSpec, AmountSpec)>,
    /// Send only the entries up to this version (`None`: all of them), so the sink
    /// stays incomplete until another message brings the rest.
    pub cut: Option<u8>,
    /// The run starts above this version instead of 0 (the rest of a cut sink).
    pub after: u8,
}

impl SinkSpec {
    /// The delta carrying the sink (one run).
    pub fn build(&self) -> Delta<'static> {
        let mut victims: Vec<(ActorId, u64)> = self
            .victims
            .iter()
            .map(|(a, v)| (a.get(), v.get().max(1)))
            .collect();
        victims.sort_by_key(|v| v.0);
        victims.dedup_by_key(|v| v.0);
        let mut counters: Vec<(u8, u64, u64)> = Vec::new();
        for &(name, p, n) in &self.counters {
            let name = name % NAMES;
            if !counters.iter().any(|c| c.0 == name) {
                counters.push((name, p.get(), n.get()));
            }
        }
        let final_version = 1 + victims.len() as u64 + counters.len() as u64;
        let mut entries = vec![DeltaEntry {
            name: Cow::Borrowed(SINK_HEADER),
            version: 1,
            p: final_version,
            n: victims.len() as u64,
        }];
        for (i, &(victim, final_of_victim)) in victims.iter().enumerate() {
            entries.push(DeltaEntry {
                name: Cow::Owned(victim_record(victim)),
                version: 2 + i as u64,
                p: final_of_victim,
                n: 0,
            });
        }
        for (i, &(name, p, n)) in counters.iter().enumerate() {
            entries.push(DeltaEntry {
                name: Cow::Borrowed(counter_name(name)),
                version: 2 + (victims.len() + i) as u64,
                p,
                n,
            });
        }
        let upto = self
            .cut
            .map_or(final_version, |c| u64::from(c).min(final_version));
        let after = u64::from(self.after).min(upto);
        entries.retain(|e| e.version > after && e.version <= upto);
        Delta {
            runs: vec![Run {
                actor: sink_actor(self.sink),
                after,
                upto,
                entries,
            }],
        }
    }

    /// The actors this sink covers.
    pub fn victims(&self) -> Vec<ActorId> {
        self.victims.iter().map(|(a, _)| a.get()).collect()
    }
}

/// A range of actor ids (or member keys).
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum RangeSpec {
    /// Every id.
    All,
    /// The range at `level` (folded into `0..=16`) that contains the actor.
    Of(ActorSpec, u8),
}

impl RangeSpec {
    /// The range.
    pub fn get(self) -> ActorRange {
        match self {
            RangeSpec::All => ActorRange::ALL,
            RangeSpec::Of(actor, level) => range_of(actor.get().as_u64(), level % (MAX_LEVEL + 1)),
        }
    }
}

/// The range at `level` that contains `id`.
pub fn range_of(id: u64, level: u8) -> ActorRange {
    let prefix = match level {
        0 => 0,
        l if l >= MAX_LEVEL => id,
        l => id >> (64 - 4 * u32::from(l)),
    };
    ActorRange::new(level.min(MAX_LEVEL), prefix).expect("a prefix of the id is in bounds")
}

/// A node identity in a member part.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum NodeSpec {
    /// Fake peer `i` at some incarnation.
    Peer(u8, u8),
    /// The fuzzed node's address and actor at some incarnation (itself, or an older or
    /// newer self).
    Node(u8),
    /// A stranger: an address no fake peer has, any actor and incarnation.
    Stranger(u8, u64, u64),
}

impl NodeSpec {
    /// The identity.
    pub fn get(self) -> NodeId {
        match self {
            NodeSpec::Peer(i, inc) => NodeId::new(peer_addr(i), peer_actor(i), u64::from(inc)),
            NodeSpec::Node(inc) => NodeId::new(node_addr(), NODE_ACTOR, u64::from(inc)),
            NodeSpec::Stranger(i, actor, inc) => NodeId::new(
                SocketAddr::from((Ipv4Addr::new(10, 0, 1, i), 7000)),
                ActorId::from_u64(actor),
                inc,
            ),
        }
    }
}

/// One part of a sync request.
#[derive(Debug, Clone, Arbitrary)]
pub enum PartSpec {
    /// A summary with any count and hash.
    Summary(RangeSpec, u32, u64),
    /// The node's own summary of the range (the "nothing differs" path).
    EchoSummary(RangeSpec),
    /// Pairs (those outside the range are dropped).
    Pairs(RangeSpec, Vec<(ActorSpec, VersionSpec)>),
    /// The node's own pairs of the range.
    EchoPairs(RangeSpec),
    /// A want list.
    Want(Vec<(ActorSpec, VersionSpec)>),
    /// A member summary with any count and hash.
    MemberSummary(RangeSpec, u32, u64),
    /// A member list (sorted by key, those outside the range dropped).
    MemberList(RangeSpec, Vec<NodeSpec>),
    /// Member news.
    MemberNews(Vec<NodeSpec>),
}

/// The budget a sync request announces.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum BudgetSpec {
    /// The smallest allowed.
    Min,
    /// The default 64 KiB.
    Default,
    /// The hard maximum.
    Max,
    /// Anything, clamped into the allowed range.
    Any(u32),
}

/// A structurally valid sync request, any content.
#[derive(Debug, Clone, Arbitrary)]
pub struct SyncSpec {
    /// The requester's message budget.
    pub budget: BudgetSpec,
    /// Most delta bytes the requester wants per answer.
    pub reply_bytes: u32,
    /// The parts.
    pub parts: Vec<PartSpec>,
}

fn pairs(list: &[(ActorSpec, VersionSpec)], range: ActorRange) -> Vec<(ActorId, u64)> {
    let mut versions: Vec<(ActorId, u64)> = list
        .iter()
        .map(|(a, v)| (a.get(), v.get()))
        .filter(|(a, _)| range.contains(*a))
        .collect();
    versions.sort_by_key(|(a, _)| *a);
    versions.dedup_by_key(|(a, _)| *a);
    versions
}

fn members(list: &[NodeSpec], range: ActorRange) -> Vec<NodeId> {
    let mut ids: Vec<NodeId> = list
        .iter()
        .map(|n| n.get())
        .filter(|id| range.contains(ActorId::from_u64(member_key(id))))
        .collect();
    ids.sort_by_key(member_key);
    ids.dedup_by_key(|id| member_key(id));
    ids
}

impl SyncSpec {
    /// The request: every rule of `SyncRequest::validate` holds by construction. `store`
    /// is the receiving node's, for the parts that echo its own summaries and pairs.
    pub fn build(&self, store: &Store) -> SyncRequest {
        let budget = match self.budget {
            BudgetSpec::Min => MIN_MESSAGE_BUDGET,
            BudgetSpec::Default => 64 * 1024,
            BudgetSpec::Max => MAX_MESSAGE_BYTES,
            BudgetSpec::Any(b) => (b as usize).clamp(MIN_MESSAGE_BUDGET, MAX_MESSAGE_BYTES),
        };
        let parts = self
            .parts
            .iter()
            .map(|part| match part {
                PartSpec::Summary(range, count, hash) => Part::Summary {
                    range: range.get(),
                    count: *count,
                    hash: *hash,
                },
                PartSpec::EchoSummary(range) => {
                    let summary = store.range_summary(range.get());
                    Part::Summary {
                        range: range.get(),
                        count: summary.count,
                        hash: summary.hash,
                    }
                }
                PartSpec::Pairs(range, list) => Part::Pairs {
                    range: range.get(),
                    versions: pairs(list, range.get()),
                },
                PartSpec::EchoPairs(range) => Part::Pairs {
                    range: range.get(),
                    versions: store
                        .digest()
                        .iter()
                        .filter(|(a, _)| range.get().contains(*a))
                        .collect(),
                },
                PartSpec::Want(list) => Part::Want {
                    versions: pairs(list, ActorRange::ALL),
                },
                PartSpec::MemberSummary(range, count, hash) => Part::MemberSummary {
                    range: range.get(),
                    count: *count,
                    hash: *hash,
                },
                PartSpec::MemberList(range, list) => Part::MemberList {
                    range: range.get(),
                    ids: members(list, range.get()),
                },
                PartSpec::MemberNews(list) => Part::MemberNews {
                    ids: list.iter().map(|n| n.get()).collect(),
                },
            })
            .collect();
        SyncRequest {
            budget: u32::try_from(budget).expect("at most 1 MiB"),
            reply_bytes: self.reply_bytes,
            parts,
        }
    }
}

/// A structurally valid prune message, any content.
#[derive(Debug, Clone, Arbitrary)]
pub enum PruneSpec {
    /// An intent (victims sorted and deduplicated, final versions at least 1).
    Intent {
        /// The pruner.
        owner: ActorSpec,
        /// The intent's id.
        id: u8,
        /// Victims and final versions.
        victims: Vec<(ActorSpec, VersionSpec)>,
    },
    /// An answer to an intent (of the node's, if it has one with this id).
    Ack {
        /// The intent's id.
        id: u8,
        /// Sealed.
        accepted: Vec<ActorSpec>,
        /// Refused.
        refused: Vec<ActorSpec>,
    },
    /// A pruner is done with an intent.
    Done {
        /// The pruner.
        owner: ActorSpec,
        /// The intent's id.
        id: u8,
        /// The actors it folded.
        folded: Vec<ActorSpec>,
    },
}

impl PruneSpec {
    /// The message: `PruneMessage::validate` holds by construction.
    pub fn build(&self) -> PruneMessage {
        let actors = |list: &[ActorSpec]| list.iter().map(|a| a.get()).collect::<Vec<_>>();
        match self {
            PruneSpec::Intent { owner, id, victims } => {
                let mut victims: Vec<(ActorId, u64)> = victims
                    .iter()
                    .map(|(a, v)| (a.get(), v.get().max(1)))
                    .collect();
                victims.sort_by_key(|v| v.0);
                victims.dedup_by_key(|v| v.0);
                PruneMessage::Intent {
                    owner: owner.get(),
                    id: u64::from(*id),
                    victims,
                }
            }
            PruneSpec::Ack {
                id,
                accepted,
                refused,
            } => PruneMessage::Ack {
                id: u64::from(*id),
                accepted: actors(accepted),
                refused: actors(refused),
            },
            PruneSpec::Done { owner, id, folded } => PruneMessage::Done {
                owner: owner.get(),
                id: u64::from(*id),
                folded: actors(folded),
            },
        }
    }
}

/// Encodes a prune message with the public encoder and checks that it decodes back
/// unchanged. The message must be valid.
pub fn encode_valid_prune(message: &PruneMessage) -> Vec<u8> {
    let bytes = encode_prune(message).expect("a prune message built to be valid encodes");
    match Message::decode(&bytes, usize::MAX) {
        Ok(Message::Prune(back)) => assert_eq!(&back, message, "prune round trip"),
        other => panic!("an encoded prune message decodes as {other:?}"),
    }
    bytes
}

/// Encodes a delta with the public encoder and checks that it decodes back unchanged
/// and that its announced size is exact. The delta must be valid.
pub fn encode_valid_delta(delta: &Delta<'_>) -> Vec<u8> {
    let bytes = encode_delta(delta).expect("a delta built to be valid encodes");
    assert_eq!(
        bytes.len(),
        delta.encoded_len(),
        "Delta::encoded_len is exact"
    );
    match Message::decode(&bytes, usize::MAX) {
        Ok(Message::Delta(back)) => assert_eq!(&back, delta, "delta round trip"),
        other => panic!("an encoded delta decodes as {other:?}"),
    }
    bytes
}

/// Encodes a sync request with the public encoder and checks the round trip and size.
pub fn encode_valid_sync(request: &SyncRequest) -> Vec<u8> {
    let bytes = encode_sync(request).expect("a request built to be valid encodes");
    assert_eq!(
        bytes.len(),
        request.encoded_len(),
        "SyncRequest::encoded_len is exact"
    );
    match Message::decode(&bytes, usize::MAX) {
        Ok(Message::Sync(back)) => assert_eq!(&back, request, "sync round trip"),
        other => panic!("an encoded sync request decodes as {other:?}"),
    }
    bytes
}

/// Wraps a SWIM payload in the envelope.
pub fn swim_datagram(payload: &[u8]) -> Vec<u8> {
    encode_swim(payload)
}

/// The datagram each fake peer sends to join the fuzzed node (captured once from a
/// real node, so it follows the current SWIM codec).
pub fn announce(peer: u8) -> &'static [u8] {
    static PACKETS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let packets = PACKETS.get_or_init(|| {
        (0..PEERS as u8)
            .map(|i| {
                let now = Instant::now();
                let mut peer = peer_node(i, now);
                peer.join(node_addr(), now);
                let transmit = peer
                    .poll_transmit()
                    .expect("joining sends an announce datagram");
                assert_eq!(transmit.channel, Channel::Datagram);
                transmit.payload
            })
            .collect()
    });
    &packets[usize::from(peer) % PEERS]
}

/// A real node standing in for fake peer `i`.
pub fn peer_node(i: u8, now: Instant) -> Node {
    let actor = peer_actor(i);
    let id = NodeId::new(peer_addr(i), actor, 1);
    Node::new(
        Config::default(),
        id,
        Store::new(actor, u64::from(i)),
        u64::from(i),
        now,
    )
    .expect("the default configuration is valid")
}

/// What real nodes send each other: the fuzzed node's address plus the fake peers run
/// for `duration` of virtual time with counters changing, every message delivered at
/// once. Returns `(from, to, channel, bytes, elapsed)` per message, in send order.
pub fn recorded_exchange(
    duration: Duration,
) -> Vec<(SocketAddr, SocketAddr, Channel, Vec<u8>, Duration)> {
    let start = Instant::now();
    let mut nodes = vec![Setup::plain().node(start)];
    nodes.extend((0..PEERS as u8 - 1).map(|i| peer_node(i, start)));
    for node in &mut nodes[1..] {
        node.join(node_addr(), start);
    }
    let mut log = Vec::new();
    let step = Duration::from_millis(25);
    let mut elapsed = Duration::ZERO;
    let mut round = 0u64;
    while elapsed < duration {
        elapsed += step;
        round += 1;
        let now = start + elapsed;
        for (i, node) in nodes.iter_mut().enumerate() {
            let name = counter_name((round as usize + i) as u8 % NAMES);
            let counter = node.store_mut().counter(name).expect("valid name");
            counter.add(i64::try_from(round % 7).unwrap_or(0) - 2);
            node.handle_timeout(now);
        }
        // Deliver until quiet.
        loop {
            let mut queue = Vec::new();
            for node in &mut nodes {
                let from = node.id().addr();
                while let Some(t) = node.poll_transmit() {
                    queue.push((from, t));
                }
            }
            if queue.is_empty() {
                break;
            }
            for (from, t) in queue {
                log.push((from, t.destination, t.channel, t.payload.clone(), elapsed));
                if let Some(node) = nodes.iter_mut().find(|n| n.id().addr() == t.destination) {
                    let _ = node.handle_message(from, t.channel, &t.payload, now);
                }
            }
        }
    }
    log
}
