//! Digests and anti-entropy exchanges: finding out which entries two nodes lack with
//! messages whose size follows the differences, not the number of actors.
//!
//! A node's *digest* is `{actor -> contiguous watermark}`. Sending it whole every round
//! costs ~17 bytes per actor ever seen, which at 10,000 actors is 170 KB per round even
//! when nothing changed. Instead an exchange starts with the summary (count and hash,
//! see `summary.rs`) of the whole actor-id range. A peer whose summary is equal answers
//! nothing. Otherwise it answers with the summaries of the 16 sub-ranges (or, for a
//! sub-range holding few actors, the exact pairs), the other side does the same for the
//! sub-ranges that still differ, and so on. Where one side has sent its exact pairs for
//! a range, the other sends the deltas the first lacks and a *want* list for what it
//! lacks itself, which is answered with deltas. Every step goes one level deeper, so an
//! exchange ends after at most 17 steps; in an idle cluster it is one message of about
//! 25 bytes.

use std::collections::BTreeMap;

use crate::actors::{ActorIdx, ME};
use crate::config::MessageBudget;
use crate::summary::{ActorRange, InvalidRange, RangeSummary};
use crate::wire::{MAX_VERSION, part_len, sync_frame_len};
use crate::{ActorId, Delta, Store};

/// A sub-range holding at most this many actors is answered with its exact pairs rather
/// than its summary: the pairs cost about as much as a summary and save a round trip.
const PAIRS_MAX: u32 = 4;

/// `{actor -> highest version up to which this node holds all of the actor's changes}`.
///
/// Actors that are absent count as version 0.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Digest {
    /// Sorted by actor, each actor once.
    versions: Vec<(ActorId, u64)>,
}

impl Digest {
    /// Builds a digest from `(actor, version)` pairs. Later duplicates win.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (ActorId, u64)>) -> Self {
        let mut versions: Vec<(ActorId, u64)> = pairs.into_iter().collect();
        versions.reverse();
        versions.sort_by_key(|(actor, _)| *actor);
        versions.dedup_by_key(|(actor, _)| *actor);
        Self { versions }
    }

    /// The version held for `actor` (0 if absent).
    pub fn get(&self, actor: ActorId) -> u64 {
        self.versions
            .binary_search_by_key(&actor, |(a, _)| *a)
            .map_or(0, |i| self.versions[i].1)
    }

    /// The `(actor, version)` pairs in ascending actor order.
    pub fn iter(&self) -> impl Iterator<Item = (ActorId, u64)> + '_ {
        self.versions.iter().copied()
    }

    /// Number of actors listed.
    pub fn len(&self) -> usize {
        self.versions.len()
    }

    /// Whether no actor is listed.
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }
}

/// One step of an anti-entropy exchange about one range of actor ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// "My watermarks in `range` number `count` and hash to `hash`." An equal summary
    /// ends the exchange for the range; a different one is answered one level deeper.
    Summary {
        /// The range described.
        range: ActorRange,
        /// Actors in the range with a watermark above 0.
        count: u32,
        /// Wrapping sum of [`pair_hash`](crate::pair_hash) over them.
        hash: u64,
    },
    /// "These are all my watermarks in `range`" (an actor in the range that is not
    /// listed is one the sender has nothing of). Answered with the deltas the sender
    /// lacks and a [`Part::Want`] for what the receiver lacks.
    Pairs {
        /// The range described.
        range: ActorRange,
        /// `(actor, watermark)`, strictly ascending by actor, all inside the range.
        versions: Vec<(ActorId, u64)>,
    },
    /// "Send me these actors' entries above these versions." Answered with deltas only,
    /// so an exchange always ends.
    Want {
        /// `(actor, version held)`, strictly ascending by actor.
        versions: Vec<(ActorId, u64)>,
    },
    /// Membership, like [`Part::Summary`]: "the active members I know whose key (see
    /// `members.rs`) lies in `range` number `count` and hash to `hash`".
    MemberSummary {
        /// The range of member keys described.
        range: ActorRange,
        /// Members in it.
        count: u32,
        /// Wrapping sum of their keys' hashes.
        hash: u64,
    },
    /// "These are all the active members I know in `range`", ascending by key. Answered
    /// with [`Part::MemberNews`] for the members the receiver knows and the list lacks.
    MemberList {
        /// The range of member keys described.
        range: ActorRange,
        /// The members, ascending by key, all in the range.
        ids: Vec<crate::NodeId>,
    },
    /// "Members you did not list": handed to SWIM as alive, never answered.
    MemberNews {
        /// The members.
        ids: Vec<crate::NodeId>,
    },
}

/// One message of an anti-entropy exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    /// The sender's message budget: every message sent in answer must fit it, so nodes
    /// configured with different budgets can talk.
    pub budget: u32,
    /// The most delta bytes the sender wants in answer to this message (its
    /// [`Config::max_sync_reply_bytes`](crate::Config::max_sync_reply_bytes)).
    pub reply_bytes: u32,
    /// What the message says, range by range.
    pub parts: Vec<Part>,
}

/// What a node asks of the answers to its sync requests, and grants in its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeLimits {
    /// Largest message.
    pub budget: MessageBudget,
    /// Most delta bytes in answer to one message.
    pub reply_bytes: u32,
}

impl ExchangeLimits {
    /// The limits an answer to `request` must respect: the smaller of each.
    fn meet(self, request: &SyncRequest) -> Self {
        Self {
            budget: self.budget.min(MessageBudget::from_wire(request.budget)),
            reply_bytes: self.reply_bytes.min(request.reply_bytes),
        }
    }
}

/// Why a [`SyncRequest`] is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncRequestError {
    /// Actors in a list are not strictly ascending.
    #[error("sync request actors are not strictly ascending")]
    Unsorted,
    /// A range is out of bounds.
    #[error("sync request: {0}")]
    Range(#[from] InvalidRange),
    /// A listed actor lies outside the part's range.
    #[error("sync request lists actor {0} outside its range")]
    OutOfRange(ActorId),
    /// A listed member's key lies outside the part's range.
    #[error("sync request lists a member outside its range")]
    MemberOutOfRange,
    /// A version is above [`MAX_VERSION`].
    #[error("sync request carries version {0}, above the maximum")]
    VersionTooLarge(u64),
    /// The sender's budget is below the smallest message budget.
    #[error("sync request budget {0} is below the minimum message budget")]
    BudgetTooSmall(u32),
}

impl SyncRequest {
    /// Checks the structural rules; the decoder calls this on every request.
    pub fn validate(&self) -> Result<(), SyncRequestError> {
        if MessageBudget::new(self.budget as usize).is_err() {
            return Err(SyncRequestError::BudgetTooSmall(self.budget));
        }
        for part in &self.parts {
            let (range, versions) = match part {
                Part::Summary { range, .. } | Part::MemberSummary { range, .. } => {
                    range.check()?;
                    continue;
                }
                Part::MemberList { range, ids } => {
                    range.check()?;
                    let keys: Vec<u64> = ids.iter().map(crate::members::member_key).collect();
                    if keys.windows(2).any(|w| w[0] >= w[1]) {
                        return Err(SyncRequestError::Unsorted);
                    }
                    if keys.iter().any(|&k| !range.contains(ActorId::from_u64(k))) {
                        return Err(SyncRequestError::MemberOutOfRange);
                    }
                    continue;
                }
                Part::MemberNews { .. } => continue,
                Part::Pairs { range, versions } => {
                    range.check()?;
                    (Some(range), versions)
                }
                Part::Want { versions } => (None, versions),
            };
            if versions.windows(2).any(|w| w[0].0 >= w[1].0) {
                return Err(SyncRequestError::Unsorted);
            }
            for &(actor, version) in versions {
                if version > MAX_VERSION {
                    return Err(SyncRequestError::VersionTooLarge(version));
                }
                if range.is_some_and(|r| !r.contains(actor)) {
                    return Err(SyncRequestError::OutOfRange(actor));
                }
            }
        }
        Ok(())
    }

    /// Exact size of this request as an encoded message, envelope included.
    pub fn encoded_len(&self) -> usize {
        crate::wire::sync_len(self)
    }
}

/// A store's answer to a [`SyncRequest`].
#[derive(Debug)]
pub struct SyncAnswer<'a> {
    /// Entries the requester lacks, each message within the answer's budget.
    pub deltas: Vec<Delta<'a>>,
    /// The next step of the exchange, each message within the answer's budget.
    pub replies: Vec<SyncRequest>,
    /// If the request showed which version of this store's own actor the requester
    /// holds, that version (for replication-lag metrics).
    pub acknowledged: Option<u64>,
}

impl Store {
    /// This store's digest: its contiguous watermark for every actor it knows.
    pub fn digest(&self) -> Digest {
        Digest::from_pairs(
            self.actors
                .iter()
                .map(|(idx, id)| (id, self.watermark_of(idx)))
                .filter(|(_, v)| *v > 0),
        )
    }

    /// The summary of this store's watermarks in `range`.
    pub fn range_summary(&self, range: ActorRange) -> RangeSummary {
        self.actors.summary(range)
    }

    /// The first message of an anti-entropy exchange: the summary of every watermark.
    /// A store that holds nothing sends an empty pair list instead, which asks for
    /// everything.
    pub fn sync_start(&self, limits: ExchangeLimits) -> SyncRequest {
        let summary = self.actors.summary(ActorRange::ALL);
        let part = if summary.count == 0 {
            Part::Pairs {
                range: ActorRange::ALL,
                versions: Vec::new(),
            }
        } else {
            Part::Summary {
                range: ActorRange::ALL,
                count: summary.count,
                hash: summary.hash,
            }
        };
        SyncRequest {
            budget: limits.budget.wire(),
            reply_bytes: limits.reply_bytes,
            parts: vec![part],
        }
    }

    /// Answers one message of an exchange: the deltas the requester lacks and the next
    /// step, within the smaller of this node's `own` limits and the requester's. The
    /// replies announce `own`.
    pub fn answer_sync(&self, request: &SyncRequest, own: ExchangeLimits) -> SyncAnswer<'_> {
        let limits = own.meet(request);
        let mut step = Step::default();
        for part in &request.parts {
            match part {
                Part::Summary { range, count, hash } => {
                    self.on_summary(*range, *count, *hash, &mut step);
                }
                Part::Pairs { range, versions } => self.on_pairs(*range, versions, &mut step),
                Part::Want { versions } => {
                    for &(id, theirs) in versions {
                        if let Some(idx) = self.actors.lookup(id) {
                            step.want(idx, self.watermark_of(idx), theirs);
                        }
                        if id == self.me {
                            step.acknowledged = Some(theirs);
                        }
                    }
                }
                // Membership parts are the node's business (see `members.rs`).
                Part::MemberSummary { .. } | Part::MemberList { .. } | Part::MemberNews { .. } => {}
            }
        }
        if !step.want_back.is_empty() {
            // Each part's actors are ascending, but several parts may list one actor or
            // ranges in any order, and a want list must be strictly ascending to encode.
            // Duplicates carry the same version (this store's watermark, or 0).
            let mut versions = std::mem::take(&mut step.want_back);
            versions.sort_unstable_by_key(|&(actor, _)| actor);
            versions.dedup_by_key(|&mut (actor, _)| actor);
            step.parts.push(Part::Want { versions });
        }
        let wants: Vec<(ActorIdx, u64)> = step.wants.into_iter().collect();
        SyncAnswer {
            deltas: self.deltas_for_wants(&wants, limits.budget, limits.reply_bytes as usize),
            replies: pack(step.parts, limits.budget, own),
            acknowledged: step.acknowledged,
        }
    }

    fn on_summary(&self, range: ActorRange, count: u32, hash: u64, step: &mut Step) {
        let mine = self.actors.summary(range);
        if mine == (RangeSummary { count, hash }) {
            if range.contains(self.me) {
                step.acknowledged = Some(self.local_version);
            }
            return;
        }
        if count == 0 {
            // The requester holds nothing here: everything in the range is news to it.
            for (idx, _, _) in self.actors.in_range(range) {
                step.want(idx, self.watermark_of(idx), 0);
            }
            return;
        }
        let children = match range.children() {
            Some(children) if mine.count > 0 => children,
            _ => {
                step.parts.push(self.pairs(range));
                return;
            }
        };
        for child in children {
            let summary = self.actors.summary(child);
            step.parts.push(if summary.count <= PAIRS_MAX {
                self.pairs(child)
            } else {
                Part::Summary {
                    range: child,
                    count: summary.count,
                    hash: summary.hash,
                }
            });
        }
    }

    fn on_pairs(&self, range: ActorRange, theirs: &[(ActorId, u64)], step: &mut Step) {
        let mut theirs = theirs.iter().copied().peekable();
        for (idx, id, _) in self.actors.in_range(range) {
            // Their actors below this one that this store has never heard of.
            while let Some(&(other, version)) = theirs.peek() {
                if other >= id {
                    break;
                }
                step.want_back.push((other, 0));
                let _ = version;
                theirs.next();
            }
            let held = match theirs.peek() {
                Some(&(other, version)) if other == id => {
                    theirs.next();
                    version
                }
                _ => 0,
            };
            let mine = self.watermark_of(idx);
            if idx == ME {
                step.acknowledged = Some(held);
            }
            if held > mine {
                step.want_back.push((id, mine));
            } else {
                step.want(idx, mine, held);
            }
        }
        for (other, _) in theirs {
            step.want_back.push((other, 0));
        }
    }

    /// This store's exact pairs in `range`.
    fn pairs(&self, range: ActorRange) -> Part {
        Part::Pairs {
            range,
            versions: self
                .actors
                .in_range(range)
                .map(|(idx, id, _)| (id, self.watermark_of(idx)))
                .filter(|&(_, v)| v > 0)
                .collect(),
        }
    }
}

/// What one answer accumulates.
#[derive(Debug, Default)]
struct Step {
    /// Actors to send deltas for, with the version the requester holds.
    wants: BTreeMap<ActorIdx, u64>,
    /// The reply's parts.
    parts: Vec<Part>,
    /// Actors the requester is ahead on, with what this store holds.
    want_back: Vec<(ActorId, u64)>,
    acknowledged: Option<u64>,
}

impl Step {
    fn want(&mut self, idx: ActorIdx, mine: u64, theirs: u64) {
        if mine > theirs {
            let after = self.wants.entry(idx).or_insert(theirs);
            *after = (*after).min(theirs);
        }
    }
}

fn part_len_of_want(versions: &[(ActorId, u64)]) -> usize {
    1 + crate::wire::varint_len(versions.len() as u64)
        + versions
            .iter()
            .map(|&(_, v)| crate::wire::pair_len(v))
            .sum::<usize>()
}

/// Packs parts into messages of at most `budget` bytes, splitting long want lists. Every
/// message announces `own` so the peer answers within it.
pub(crate) fn pack(
    parts: Vec<Part>,
    budget: MessageBudget,
    own: ExchangeLimits,
) -> Vec<SyncRequest> {
    let limit = budget.get();
    // Room for the envelope, the limits and a part count of the largest possible size.
    let frame = sync_frame_len(own.budget.wire(), own.reply_bytes, limit);
    let mut messages = Vec::new();
    let mut current: Vec<Part> = Vec::new();
    let mut len = frame;
    let mut push = |part: Part, current: &mut Vec<Part>, len: &mut usize| {
        let size = part_len(&part);
        if *len + size > limit && !current.is_empty() {
            messages.push(SyncRequest {
                budget: own.budget.wire(),
                reply_bytes: own.reply_bytes,
                parts: std::mem::take(current),
            });
            *len = frame;
        }
        *len += size;
        current.push(part);
    };
    for part in parts {
        match part {
            Part::MemberNews { ids }
                if frame + part_len(&Part::MemberNews { ids: ids.clone() }) > limit =>
            {
                // At most 37 bytes a member; the part adds a tag and a count.
                let per = ((limit - frame - 1 - 9) / 37).max(1);
                for chunk in ids.chunks(per) {
                    push(
                        Part::MemberNews {
                            ids: chunk.to_vec(),
                        },
                        &mut current,
                        &mut len,
                    );
                }
            }
            Part::Want { versions } if frame + part_len_of_want(&versions) > limit => {
                // Each chunk holds as many pairs as surely fit an otherwise empty message
                // (a pair is at most 17 bytes; the part adds a tag and a count).
                let per = ((limit - frame - 1 - 9) / 17).max(1);
                for chunk in versions.chunks(per) {
                    push(
                        Part::Want {
                            versions: chunk.to_vec(),
                        },
                        &mut current,
                        &mut len,
                    );
                }
            }
            other => push(other, &mut current, &mut len),
        }
    }
    if !current.is_empty() {
        messages.push(SyncRequest {
            budget: own.budget.wire(),
            reply_bytes: own.reply_bytes,
            parts: current,
        });
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `node_ops` fuzzer: two `Pairs` parts that both list an actor this
    /// store has never heard of (or list actors in descending order across parts) made
    /// the reply's want list unsorted, so the node could not encode its own reply and
    /// reported an internal error instead of answering.
    #[test]
    fn want_lists_are_sorted_across_parts() {
        let store = Store::new(ActorId::from_u64(1), 0);
        let high = ActorId::from_u64(0x9000_0000_0000_0000);
        let low = ActorId::from_u64(0x1000_0000_0000_0000);
        let request = SyncRequest {
            budget: MessageBudget::MIN.wire(),
            reply_bytes: u32::MAX,
            parts: vec![
                Part::Pairs {
                    range: ActorRange::ALL,
                    versions: vec![(high, 3)],
                },
                Part::Pairs {
                    range: ActorRange::ALL,
                    versions: vec![(low, 2), (high, 3)],
                },
            ],
        };
        request.validate().unwrap();
        let limits = ExchangeLimits {
            budget: MessageBudget::MIN,
            reply_bytes: u32::MAX,
        };
        let answer = store.answer_sync(&request, limits);
        for reply in &answer.replies {
            reply.validate().unwrap();
        }
        let wants: Vec<(ActorId, u64)> = answer
            .replies
            .iter()
            .flat_map(|r| &r.parts)
            .filter_map(|p| match p {
                Part::Want { versions } => Some(versions.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(wants, vec![(low, 0), (high, 0)]);
    }
}
