//! The wire format: a 4-byte envelope followed by a bincode 2 body, and the exact size
//! of every encoded message (the budget checks elsewhere use these functions, so the
//! sizes live next to the encoders they mirror).
//!
//! ```text
//! +------+------+---------+------+-----------------------------+
//! | 'C'  | 'M'  | version | kind | body (bincode 2, standard)  |
//! +------+------+---------+------+-----------------------------+
//! ```
//!
//! `kind` 1 is a SWIM packet (foca's own encoding, see `swim_codec`), 2 a
//! [`SyncRequest`], 3 a [`Delta`]. Integers in bodies are bincode's little-endian
//! varints; actor ids and summary hashes are 8 fixed bytes; a delta's entry versions
//! travel as gaps from the previous version, so a run of consecutive versions costs one
//! byte each.
//!
//! Protocol version 2 (this one) replaced version 1's full digests with summaries of
//! actor ranges and added the requester's message budget to sync requests. Nodes of
//! different versions refuse each other's messages with
//! [`DecodeError::UnsupportedVersion`]; SWIM packets carry the envelope too, so mixed
//! versions do not even see each other as members.
//!
//! Decoding never trusts a length prefix: inputs longer than the caller's maximum are
//! refused before parsing, strings are bounded by bincode's byte limit, and sequences
//! are grown element by element as bytes actually arrive (see `bounded_vec`), so a
//! message can never make the decoder allocate much more than its own size.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::delta::{DeltaEntry, DeltaError, Run};
use crate::digest::{Part, SyncRequestError};
use crate::summary::ActorRange;
use crate::{ActorId, Delta, NodeId, SyncRequest};

/// The two magic bytes every message starts with.
pub const MAGIC: [u8; 2] = *b"CM";
/// The protocol version this code speaks.
pub const PROTOCOL_VERSION: u8 = 2;
/// Size of the envelope in bytes.
pub const HEADER_LEN: usize = 4;
/// Largest message any node will decode, whatever its configuration says.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Largest version number any message may carry (2^62). A node issuing a billion
/// versions per second would need 146 years to reach it; refusing anything above keeps
/// a peer's bogus `u64::MAX` from wrapping arithmetic or pinning a watermark at the top
/// of the range.
pub const MAX_VERSION: u64 = 1 << 62;

const KIND_SWIM: u8 = 1;
const KIND_SYNC: u8 = 2;
const KIND_DELTA: u8 = 3;
const KIND_PRUNE: u8 = 4;

/// Upper bound on the memory bincode may claim for strings while decoding one body.
const DECODE_LIMIT: usize = MAX_MESSAGE_BYTES;

type WireConfig = Configuration<LittleEndian, Varint, Limit<DECODE_LIMIT>>;

fn config() -> WireConfig {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// One protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// A SWIM membership packet, opaque at this layer.
    Swim(Cow<'a, [u8]>),
    /// Digest summaries, pairs or wants: one step of an anti-entropy exchange.
    Sync(SyncRequest),
    /// Counter entries.
    Delta(Delta<'a>),
    /// One step of the pruning protocol.
    Prune(PruneMessage),
}

/// The pruning protocol's messages (see `pruner.rs` and ARCHITECTURE.md, "Pruning").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PruneMessage {
    /// A pruner asks every member to seal these actors at these final versions.
    Intent {
        /// The pruner's actor.
        owner: ActorId,
        /// Names this intent among the pruner's.
        id: u64,
        /// `(actor, final version)`, strictly ascending by actor.
        #[serde(deserialize_with = "bounded_vec")]
        victims: Vec<(ActorId, u64)>,
    },
    /// A member's answer: which actors it sealed, and which it could not.
    Ack {
        /// The intent answered.
        id: u64,
        /// Sealed.
        #[serde(deserialize_with = "bounded_vec")]
        accepted: Vec<ActorId>,
        /// Refused (this member holds more of them, sealed them for another pruner, or
        /// sees them alive).
        #[serde(deserialize_with = "bounded_vec")]
        refused: Vec<ActorId>,
    },
    /// The pruner is done with an intent: it folded `folded`; every other seal of the
    /// intent is released.
    Done {
        /// The pruner's actor.
        owner: ActorId,
        /// The intent.
        id: u64,
        /// The actors it folded.
        #[serde(deserialize_with = "bounded_vec")]
        folded: Vec<ActorId>,
    },
}

/// Why a [`PruneMessage`] is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PruneMessageError {
    /// Victims are not strictly ascending.
    #[error("prune intent victims are not strictly ascending")]
    Unsorted,
    /// A final version is zero or above [`MAX_VERSION`].
    #[error("prune intent carries final version {0}")]
    BadVersion(u64),
}

impl PruneMessage {
    /// Checks the structural rules; the decoder calls this on every message.
    pub fn validate(&self) -> Result<(), PruneMessageError> {
        if let PruneMessage::Intent { victims, .. } = self {
            if victims.windows(2).any(|w| w[0].0 >= w[1].0) {
                return Err(PruneMessageError::Unsorted);
            }
            if let Some(&(_, v)) = victims.iter().find(|(_, v)| *v == 0 || *v > MAX_VERSION) {
                return Err(PruneMessageError::BadVersion(v));
            }
        }
        Ok(())
    }
}

/// Why bytes could not be decoded into a [`Message`]. Decoding has no side effects, so
/// every variant leaves the node exactly as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is longer than the maximum for its channel.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    Oversized {
        /// Input length.
        len: usize,
        /// The limit that applied.
        max: usize,
    },
    /// The input ends before the message does.
    #[error("message truncated: {len} bytes are not enough")]
    Truncated {
        /// Input length.
        len: usize,
    },
    /// The input does not start with [`MAGIC`].
    #[error("bad magic bytes {found:02x?}")]
    BadMagic {
        /// The first two bytes.
        found: [u8; 2],
    },
    /// The envelope names a protocol version this node does not speak.
    #[error("unsupported protocol version {found} (this node speaks {supported})")]
    UnsupportedVersion {
        /// The version in the envelope.
        found: u8,
        /// [`PROTOCOL_VERSION`].
        supported: u8,
    },
    /// The envelope names an unknown message kind.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// The body is not a valid encoding of its kind (for example a string that is not
    /// UTF-8, or an enum tag out of range).
    #[error("malformed message body: {reason}")]
    Malformed {
        /// What bincode reported.
        reason: String,
    },
    /// The body decoded but bytes were left over.
    #[error("{extra} unexpected bytes after the message body")]
    TrailingBytes {
        /// How many bytes were left.
        extra: usize,
    },
    /// A delta decoded but breaks a structural rule.
    #[error("invalid delta: {0}")]
    InvalidDelta(#[from] DeltaError),
    /// A sync request decoded but breaks a structural rule.
    #[error("invalid sync request: {0}")]
    InvalidSync(#[from] SyncRequestError),
    /// A prune message decoded but breaks a structural rule.
    #[error("invalid prune message: {0}")]
    InvalidPrune(#[from] PruneMessageError),
}

/// Why a [`Message`] could not be encoded (only possible for hand-built messages that
/// break a structural rule).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The delta breaks a structural rule.
    #[error("invalid delta: {0}")]
    InvalidDelta(#[from] DeltaError),
    /// The sync request breaks a structural rule.
    #[error("invalid sync request: {0}")]
    InvalidSync(#[from] SyncRequestError),
    /// bincode refused the value.
    #[error("encoding failed: {0}")]
    Bincode(String),
}

impl<'a> Message<'a> {
    /// Encodes the message, envelope included.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        match self {
            Message::Swim(payload) => Ok(encode_swim(payload)),
            Message::Sync(request) => encode_sync(request),
            Message::Delta(delta) => encode_delta(delta),
            Message::Prune(prune) => encode_prune(prune),
        }
    }

    /// Decodes a message of at most `max_len` bytes. Borrows names and SWIM payloads
    /// from `bytes` instead of copying them.
    pub fn decode(bytes: &'a [u8], max_len: usize) -> Result<Self, DecodeError> {
        let max = max_len.min(MAX_MESSAGE_BYTES);
        if bytes.len() > max {
            return Err(DecodeError::Oversized {
                len: bytes.len(),
                max,
            });
        }
        let Some((header, body)) = bytes.split_first_chunk::<HEADER_LEN>() else {
            return Err(DecodeError::Truncated { len: bytes.len() });
        };
        let [m0, m1, version, kind] = *header;
        if [m0, m1] != MAGIC {
            return Err(DecodeError::BadMagic { found: [m0, m1] });
        }
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                found: version,
                supported: PROTOCOL_VERSION,
            });
        }
        match kind {
            KIND_SWIM => Ok(Message::Swim(Cow::Borrowed(body))),
            KIND_SYNC => {
                let wire: WireSync = decode_body(bytes.len(), body)?;
                let request = wire.into_request()?;
                request.validate()?;
                Ok(Message::Sync(request))
            }
            KIND_DELTA => {
                let wire: WireDelta<'a> = decode_body(bytes.len(), body)?;
                let delta = wire.into_delta()?;
                delta.validate()?;
                Ok(Message::Delta(delta))
            }
            KIND_PRUNE => {
                let prune: PruneMessage = decode_body(bytes.len(), body)?;
                prune.validate()?;
                Ok(Message::Prune(prune))
            }
            other => Err(DecodeError::UnknownKind(other)),
        }
    }
}

fn envelope(kind: u8, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + capacity);
    out.extend_from_slice(&MAGIC);
    out.push(PROTOCOL_VERSION);
    out.push(kind);
    out
}

/// Encodes a SWIM packet (as [`Message::Swim`] would) without copying it first.
pub fn encode_swim(payload: &[u8]) -> Vec<u8> {
    let mut out = envelope(KIND_SWIM, payload.len());
    out.extend_from_slice(payload);
    out
}

/// Encodes a sync request (as [`Message::Sync`] would) without cloning it first.
pub fn encode_sync(request: &SyncRequest) -> Result<Vec<u8>, EncodeError> {
    request.validate()?;
    let mut out = envelope(KIND_SYNC, sync_len(request));
    encode_body(&WireSync::from_request(request), &mut out)?;
    Ok(out)
}

/// Encodes a delta (as [`Message::Delta`] would) without cloning it first.
pub fn encode_delta(delta: &Delta<'_>) -> Result<Vec<u8>, EncodeError> {
    delta.validate()?;
    let mut out = envelope(KIND_DELTA, delta_len(delta));
    encode_body(&WireDelta::from_delta(delta), &mut out)?;
    Ok(out)
}

/// Encodes a prune message.
pub fn encode_prune(prune: &PruneMessage) -> Result<Vec<u8>, EncodeError> {
    prune
        .validate()
        .map_err(|e| EncodeError::Bincode(e.to_string()))?;
    let mut out = envelope(KIND_PRUNE, 64);
    encode_body(prune, &mut out)?;
    Ok(out)
}

/// Most victims one intent names: its encoding (at most 17 bytes per victim) fits the
/// smallest message budget any node may have.
pub const MAX_INTENT_VICTIMS: usize = 24;

fn encode_body<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    bincode::serde::encode_into_std_write(value, out, config())
        .map_err(|e| EncodeError::Bincode(e.to_string()))?;
    Ok(())
}

fn decode_body<'a, T: Deserialize<'a>>(total: usize, body: &'a [u8]) -> Result<T, DecodeError> {
    use bincode::error::DecodeError as B;
    let (value, used) =
        bincode::serde::borrow_decode_from_slice::<T, _>(body, config()).map_err(|e| match e {
            B::UnexpectedEnd { .. } => DecodeError::Truncated { len: total },
            B::LimitExceeded => DecodeError::Oversized {
                len: total,
                max: DECODE_LIMIT,
            },
            other => DecodeError::Malformed {
                reason: other.to_string(),
            },
        })?;
    if used != body.len() {
        return Err(DecodeError::TrailingBytes {
            extra: body.len() - used,
        });
    }
    Ok(value)
}

// ---------------------------------------------------------------------------------
// Encoded sizes. Each mirrors the serde layout below; `tests::sizes_match_encoding`
// and the property tests in tests/it/decode.rs check them against real encodings.

/// Size of `value` as a bincode standard varint.
pub(crate) const fn varint_len(value: u64) -> usize {
    if value < 251 {
        1
    } else if value <= u16::MAX as u64 {
        3
    } else if value <= u32::MAX as u64 {
        5
    } else {
        9
    }
}

/// Encoded size of a delta, envelope included.
pub(crate) fn delta_len(delta: &Delta<'_>) -> usize {
    delta_frame_len(delta.runs.len()) + delta.runs.iter().map(run_len).sum::<usize>()
}

/// Envelope plus the run count.
pub(crate) fn delta_frame_len(runs: usize) -> usize {
    HEADER_LEN + varint_len(runs as u64)
}

fn run_len(run: &Run<'_>) -> usize {
    let mut previous = run.after;
    let entries: usize = run
        .entries
        .iter()
        .map(|e| {
            let gap = e.version.saturating_sub(previous);
            previous = e.version;
            entry_len(e.name.len(), gap, e.p, e.n)
        })
        .sum();
    run_header_len(run.after, run.upto, run.entries.len()) + entries
}

/// Encoded size of a run header: actor (8 fixed bytes), after, upto, entry count.
pub(crate) fn run_header_len(after: u64, upto: u64, entries: usize) -> usize {
    8 + varint_len(after) + varint_len(upto) + varint_len(entries as u64)
}

/// Encoded size of one entry (versions travel as gaps from the previous one).
pub(crate) fn entry_len(name_len: usize, gap: u64, p: u64, n: u64) -> usize {
    varint_len(name_len as u64) + name_len + varint_len(gap) + varint_len(p) + varint_len(n)
}

/// Encoded size of a sync request, envelope included.
pub(crate) fn sync_len(request: &SyncRequest) -> usize {
    sync_frame_len(request.budget, request.reply_bytes, request.parts.len())
        + request.parts.iter().map(part_len).sum::<usize>()
}

/// Envelope, budget, reply limit and part count.
pub(crate) fn sync_frame_len(budget: u32, reply_bytes: u32, parts: usize) -> usize {
    HEADER_LEN
        + varint_len(u64::from(budget))
        + varint_len(u64::from(reply_bytes))
        + varint_len(parts as u64)
}

/// Encoded size of one part of a sync request.
pub(crate) fn part_len(part: &Part) -> usize {
    match part {
        Part::Summary { range, count, .. } => {
            1 + range_len(range) + varint_len(u64::from(*count)) + 8
        }
        Part::Pairs { range, versions } => 1 + range_len(range) + pairs_len(versions),
        Part::Want { versions } => 1 + pairs_len(versions),
        Part::MemberSummary { range, count, .. } => {
            1 + range_len(range) + varint_len(u64::from(*count)) + 8
        }
        Part::MemberList { range, ids } => 1 + range_len(range) + node_ids_len(ids),
        Part::MemberNews { ids } => 1 + node_ids_len(ids),
    }
}

fn node_ids_len(ids: &[NodeId]) -> usize {
    varint_len(ids.len() as u64) + ids.iter().map(node_id_len).sum::<usize>()
}

/// Encoded size of a [`NodeId`]: the socket address (variant tag, address bytes, port),
/// the actor (8 fixed bytes) and the incarnation.
pub(crate) fn node_id_len(id: &NodeId) -> usize {
    let addr = match id.addr() {
        std::net::SocketAddr::V4(_) => 1 + 4,
        std::net::SocketAddr::V6(_) => 1 + 16,
    };
    addr + varint_len(u64::from(id.addr().port())) + 8 + varint_len(id.incarnation())
}

fn range_len(range: &ActorRange) -> usize {
    1 + varint_len(range.prefix())
}

fn pairs_len(versions: &[(ActorId, u64)]) -> usize {
    varint_len(versions.len() as u64) + versions.iter().map(|(_, v)| pair_len(*v)).sum::<usize>()
}

/// Encoded size of one `(actor, version)` pair.
pub(crate) const fn pair_len(version: u64) -> usize {
    8 + varint_len(version)
}

// ---------------------------------------------------------------------------------
// Serde layouts.

#[derive(Serialize, Deserialize)]
struct WireSync {
    budget: u32,
    reply_bytes: u32,
    #[serde(deserialize_with = "bounded_vec")]
    parts: Vec<WirePart>,
}

#[derive(Serialize, Deserialize)]
enum WirePart {
    Summary {
        range: ActorRange,
        count: u32,
        hash: [u8; 8],
    },
    Pairs {
        range: ActorRange,
        #[serde(deserialize_with = "bounded_vec")]
        versions: Vec<(ActorId, u64)>,
    },
    Want {
        #[serde(deserialize_with = "bounded_vec")]
        versions: Vec<(ActorId, u64)>,
    },
    MemberSummary {
        range: ActorRange,
        count: u32,
        hash: [u8; 8],
    },
    MemberList {
        range: ActorRange,
        #[serde(deserialize_with = "bounded_vec")]
        ids: Vec<NodeId>,
    },
    MemberNews {
        #[serde(deserialize_with = "bounded_vec")]
        ids: Vec<NodeId>,
    },
}

impl WireSync {
    fn from_request(request: &SyncRequest) -> Self {
        let parts = request
            .parts
            .iter()
            .map(|part| match part {
                Part::Summary { range, count, hash } => WirePart::Summary {
                    range: *range,
                    count: *count,
                    hash: hash.to_le_bytes(),
                },
                Part::Pairs { range, versions } => WirePart::Pairs {
                    range: *range,
                    versions: versions.clone(),
                },
                Part::Want { versions } => WirePart::Want {
                    versions: versions.clone(),
                },
                Part::MemberSummary { range, count, hash } => WirePart::MemberSummary {
                    range: *range,
                    count: *count,
                    hash: hash.to_le_bytes(),
                },
                Part::MemberList { range, ids } => WirePart::MemberList {
                    range: *range,
                    ids: ids.clone(),
                },
                Part::MemberNews { ids } => WirePart::MemberNews { ids: ids.clone() },
            })
            .collect();
        Self {
            budget: request.budget,
            reply_bytes: request.reply_bytes,
            parts,
        }
    }

    fn into_request(self) -> Result<SyncRequest, SyncRequestError> {
        let parts = self
            .parts
            .into_iter()
            .map(|part| match part {
                WirePart::Summary { range, count, hash } => Part::Summary {
                    range,
                    count,
                    hash: u64::from_le_bytes(hash),
                },
                WirePart::Pairs { range, versions } => Part::Pairs { range, versions },
                WirePart::Want { versions } => Part::Want { versions },
                WirePart::MemberSummary { range, count, hash } => Part::MemberSummary {
                    range,
                    count,
                    hash: u64::from_le_bytes(hash),
                },
                WirePart::MemberList { range, ids } => Part::MemberList { range, ids },
                WirePart::MemberNews { ids } => Part::MemberNews { ids },
            })
            .collect();
        Ok(SyncRequest {
            budget: self.budget,
            reply_bytes: self.reply_bytes,
            parts,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct WireDelta<'a> {
    #[serde(borrow, deserialize_with = "bounded_vec")]
    runs: Vec<WireRun<'a>>,
}

#[derive(Serialize, Deserialize)]
struct WireRun<'a> {
    actor: ActorId,
    after: u64,
    upto: u64,
    #[serde(borrow, deserialize_with = "bounded_vec")]
    entries: Vec<WireEntry<'a>>,
}

#[derive(Serialize, Deserialize)]
struct WireEntry<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    /// `version - previous version` (the first entry's previous is the run's `after`).
    gap: u64,
    p: u64,
    n: u64,
}

impl<'a> WireDelta<'a> {
    fn from_delta(delta: &'a Delta<'_>) -> Self {
        let runs = delta
            .runs
            .iter()
            .map(|run| {
                let mut previous = run.after;
                let entries = run
                    .entries
                    .iter()
                    .map(|e| {
                        // Validated ascending above `after`, so the gap is positive.
                        let gap = e.version.saturating_sub(previous);
                        previous = e.version;
                        WireEntry {
                            name: Cow::Borrowed(&e.name),
                            gap,
                            p: e.p,
                            n: e.n,
                        }
                    })
                    .collect();
                WireRun {
                    actor: run.actor,
                    after: run.after,
                    upto: run.upto,
                    entries,
                }
            })
            .collect();
        Self { runs }
    }

    fn into_delta(self) -> Result<Delta<'a>, DeltaError> {
        let runs = self
            .runs
            .into_iter()
            .map(|run| {
                let mut version = run.after;
                let entries = run
                    .entries
                    .into_iter()
                    .map(|e| {
                        version = version
                            .checked_add(e.gap)
                            .filter(|_| e.gap > 0)
                            .ok_or(DeltaError::VersionsOutOfOrder { actor: run.actor })?;
                        Ok(DeltaEntry {
                            name: e.name,
                            version,
                            p: e.p,
                            n: e.n,
                        })
                    })
                    .collect::<Result<Vec<_>, DeltaError>>()?;
                Ok(Run {
                    actor: run.actor,
                    after: run.after,
                    upto: run.upto,
                    entries,
                })
            })
            .collect::<Result<Vec<_>, DeltaError>>()?;
        Ok(Delta { runs })
    }
}

/// How many elements a sequence may preallocate before its bytes have been seen.
const PREALLOCATE_AT_MOST: usize = 64;

/// Deserializes a `Vec` without trusting its length prefix: at most
/// [`PREALLOCATE_AT_MOST`] elements are reserved up front and the rest grow as elements
/// actually decode, each of which consumes input bytes.
fn bounded_vec<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct BoundedVisitor<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for BoundedVisitor<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a sequence")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let hint = seq.size_hint().unwrap_or(0).min(PREALLOCATE_AT_MOST);
            let mut out = Vec::with_capacity(hint);
            while let Some(item) = seq.next_element()? {
                out.push(item);
            }
            Ok(out)
        }
    }

    deserializer.deserialize_seq(BoundedVisitor(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_len_matches_bincode() {
        for v in [
            0u64,
            1,
            250,
            251,
            65_535,
            65_536,
            u64::from(u32::MAX),
            u64::from(u32::MAX) + 1,
            u64::MAX,
        ] {
            let encoded = bincode::serde::encode_to_vec(v, config()).unwrap();
            assert_eq!(encoded.len(), varint_len(v), "value {v}");
        }
    }

    #[test]
    fn actor_ids_are_eight_fixed_bytes() {
        let encoded = bincode::serde::encode_to_vec(ActorId::from_u64(1), config()).unwrap();
        assert_eq!(encoded, [0, 0, 0, 0, 0, 0, 0, 1]);
    }
}
