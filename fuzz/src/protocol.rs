//! Every protocol input the fuzz targets build: addresses, actors, counter names, node
//! configurations, structured deltas and sync requests (`arbitrary` specs turned into
//! core types and encoded with the public encoders), honest peers, and SWIM packets
//! captured from real nodes.
//!
//! This is the one module to adapt when the wire format or the core's public API
//! changes; the targets and the invariant checks only go through it.

use std::borrow::Cow;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use countermesh_core::{
    ActorId, Channel, Config, Delta, DeltaEntry, Limits, Message, Node, NodeId, Persistence, Run,
    Scope, Store, SyncRequest, encode_delta, encode_swim, encode_sync,
};

/// How many fake peers (addresses, and an actor each) a target talks to.
pub const PEERS: usize = 4;

/// The fuzzed node's actor.
pub const NODE_ACTOR: ActorId = ActorId::from_u64(0x4e4f_4445_0000_0001);

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
/// makes range-scoped sync requests cover it or not.
pub fn peer_actor(i: u8) -> ActorId {
    ActorId::from_u64(0x4e4f_4445_0000_0000 + 0x100 * u64::from(i % PEERS as u8))
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

/// The budget a channel allows under `config`.
pub fn budget(config: &Config, channel: Channel) -> usize {
    match channel {
        Channel::Datagram => config.max_datagram_bytes,
        Channel::Stream => config.max_message_bytes,
    }
}

/// Node settings chosen by the fuzzer.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct Setup {
    /// Gossip own versions only after `mark_durable` (as a runtime with a data
    /// directory does).
    pub durable: bool,
    /// The smallest stream budget (512 bytes) instead of the default 64 KiB, so answers
    /// are split across messages.
    pub small_messages: bool,
    /// The smallest datagram budget (256 bytes) instead of 1150.
    pub small_datagrams: bool,
    /// Tiny store limits (3 actors, 4 counters), so refusals happen.
    pub tight_limits: bool,
    /// Reply budget: as small as allowed (one message) instead of 4 MiB.
    pub small_replies: bool,
}

impl Setup {
    /// The configuration this setup describes.
    pub fn config(&self) -> Config {
        let mut config = Config::default();
        if self.small_messages {
            config.max_message_bytes = countermesh_core::MIN_MESSAGE_BUDGET;
        }
        if self.small_datagrams {
            config.max_datagram_bytes = countermesh_core::MIN_DATAGRAM_BYTES;
        }
        if self.small_replies {
            config.max_sync_reply_bytes = config.max_message_bytes;
        }
        config
    }

    /// A fresh node for this setup, created at `now`.
    pub fn node(&self, now: Instant) -> Node {
        let mut store = Store::new(NODE_ACTOR, 7);
        if self.durable {
            store = store.with_persistence(Persistence::Required);
        }
        if self.tight_limits {
            store = store.with_limits(Limits {
                max_counters: 4,
                max_actors: 3,
            });
        }
        let id = NodeId::new(node_addr(), NODE_ACTOR, 1);
        Node::new(self.config(), id, store, 11, now).expect("the fuzz configurations are valid")
    }
}

/// A version as the fuzzer picks it: mostly small, so runs of different messages meet,
/// sometimes anywhere (near `u64::MAX` included).
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum VersionSpec {
    /// `0..=255`.
    Small(u8),
    /// `u64::MAX - n`.
    NearMax(u8),
    /// Any value.
    Any(u64),
}

impl VersionSpec {
    /// The version.
    pub fn get(self) -> u64 {
        match self {
            VersionSpec::Small(v) => u64::from(v),
            VersionSpec::NearMax(n) => u64::MAX - u64::from(n),
            VersionSpec::Any(v) => v,
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

/// Whose entries a run carries.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum ActorSpec {
    /// One of the fake peers' actors.
    Peer(u8),
    /// The fuzzed node's own actor (a peer echoing, or inventing, its state).
    Node,
    /// Any actor id.
    Any(u64),
}

impl ActorSpec {
    /// The actor.
    pub fn get(self) -> ActorId {
        match self {
            ActorSpec::Peer(i) => peer_actor(i),
            ActorSpec::Node => NODE_ACTOR,
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
    /// ...up to `after + span` (saturating).
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
            let upto = after.saturating_add(spec.span.get());
            let mut version = after;
            let mut entries = Vec::new();
            for entry in &spec.entries {
                let Some(next) = version.checked_add(entry.gap.get().max(1)) else {
                    break;
                };
                version = next;
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

/// Which actors a sync request speaks for.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum ScopeSpec {
    /// Every actor id (what a node's first digest part says).
    Everything,
    /// The listed actors' span widened by the given ids.
    Range(ActorSpec, ActorSpec),
    /// Only the listed actors.
    Listed,
}

/// A structurally valid sync request, any content.
#[derive(Debug, Clone, Arbitrary)]
pub struct SyncSpec {
    /// Its scope.
    pub scope: ScopeSpec,
    /// `(actor, version held)` pairs (sorted and deduplicated when built).
    pub versions: Vec<(ActorSpec, VersionSpec)>,
    /// Whether the receiver should ask back.
    pub pull_back: bool,
}

impl SyncSpec {
    /// The request: every rule of `SyncRequest::validate` holds by construction.
    pub fn build(&self) -> SyncRequest {
        let mut versions: Vec<(ActorId, u64)> = self
            .versions
            .iter()
            .map(|(a, v)| (a.get(), v.get()))
            .collect();
        versions.sort_by_key(|(a, _)| *a);
        versions.dedup_by_key(|(a, _)| *a);
        let scope = match self.scope {
            ScopeSpec::Everything => Scope::Range {
                first: ActorId::from_u64(0),
                last: ActorId::from_u64(u64::MAX),
            },
            ScopeSpec::Range(a, b) => {
                let (a, b) = (a.get(), b.get());
                let mut first = a.min(b);
                let mut last = a.max(b);
                if let (Some(lo), Some(hi)) = (versions.first(), versions.last()) {
                    first = first.min(lo.0);
                    last = last.max(hi.0);
                }
                Scope::Range { first, last }
            }
            ScopeSpec::Listed => Scope::Listed,
        };
        SyncRequest {
            scope,
            versions,
            pull_back: self.pull_back,
        }
    }
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
    let mut nodes = vec![
        Setup {
            durable: false,
            small_messages: true,
            small_datagrams: false,
            tight_limits: false,
            small_replies: false,
        }
        .node(start),
    ];
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
