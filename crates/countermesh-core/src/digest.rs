//! Digests: what a node holds, as `{actor -> contiguous watermark}`, and sync requests.

use crate::actors::ActorIdx;
use crate::delta::{BudgetTooSmall, MIN_MESSAGE_BUDGET};
use crate::wire::{HEADER_LEN, varint_len};
use crate::{ActorId, Delta, Store};

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

/// Which actors a [`SyncRequest`] speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Scope {
    /// Every actor id in `first..=last`: an actor in the range that the request does not
    /// list is one the sender has nothing of (version 0).
    Range {
        /// First actor id covered.
        first: ActorId,
        /// Last actor id covered.
        last: ActorId,
    },
    /// Only the listed actors.
    Listed,
}

/// A part of a digest sent to ask a peer for what this node lacks.
///
/// A full digest may not fit one message, so it is split by actor-id range; each part
/// is answered on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    /// Which actors this part speaks for.
    pub scope: Scope,
    /// `(actor, version held)`, strictly ascending by actor, all inside the scope.
    pub versions: Vec<(ActorId, u64)>,
    /// Whether the receiver should send back a request of its own for actors where the
    /// sender is ahead (push-pull). Replies set it to false, so exchanges end.
    pub pull_back: bool,
}

/// Why a [`SyncRequest`] is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncRequestError {
    /// Actors are not strictly ascending.
    #[error("sync request actors are not strictly ascending")]
    Unsorted,
    /// A range scope has `first > last`.
    #[error("sync request range is inverted")]
    InvertedRange,
    /// A listed actor lies outside the range scope.
    #[error("sync request lists actor {0} outside its range")]
    OutOfRange(ActorId),
}

impl SyncRequest {
    /// Checks the structural rules; the decoder calls this on every request.
    pub fn validate(&self) -> Result<(), SyncRequestError> {
        if self.versions.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(SyncRequestError::Unsorted);
        }
        if let Scope::Range { first, last } = self.scope {
            if first > last {
                return Err(SyncRequestError::InvertedRange);
            }
            if let Some((actor, _)) = self.versions.iter().find(|(a, _)| *a < first || *a > last) {
                return Err(SyncRequestError::OutOfRange(*actor));
            }
        }
        Ok(())
    }

    fn get(&self, actor: ActorId) -> Option<u64> {
        self.versions
            .binary_search_by_key(&actor, |(a, _)| *a)
            .ok()
            .map(|i| self.versions[i].1)
    }

    /// Exact size of this request as an encoded message, envelope included.
    pub fn encoded_len(&self) -> usize {
        let scope = match self.scope {
            Scope::Range { .. } => 1 + 16,
            Scope::Listed => 1,
        };
        HEADER_LEN
            + scope
            + varint_len(self.versions.len() as u64)
            + self
                .versions
                .iter()
                .map(|(_, v)| 8 + varint_len(*v))
                .sum::<usize>()
            + 1
    }
}

/// A store's answer to a [`SyncRequest`].
#[derive(Debug)]
pub struct SyncAnswer<'a> {
    /// Entries the requester lacks.
    pub deltas: Vec<Delta<'a>>,
    /// Requests back for actors where the requester is ahead (only if it asked for
    /// them), each within the message budget.
    pub pull: Vec<SyncRequest>,
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

    /// Splits this store's digest into sync requests of at most `budget` bytes whose
    /// ranges together cover every possible actor id.
    pub fn sync_requests(&self, budget: usize) -> Result<Vec<SyncRequest>, BudgetTooSmall> {
        if budget < MIN_MESSAGE_BUDGET {
            return Err(BudgetTooSmall {
                budget,
                min: MIN_MESSAGE_BUDGET,
            });
        }
        let digest = self.digest();
        let mut requests = Vec::new();
        let mut first = ActorId::from_u64(0);
        let mut versions: Vec<(ActorId, u64)> = Vec::new();
        // Envelope, range scope, worst-case count prefix and the pull-back flag.
        let fixed = HEADER_LEN + 17 + varint_len(budget as u64) + 1;
        let mut len = fixed;
        for (actor, version) in digest.iter() {
            let item = 8 + varint_len(version);
            if len + item > budget {
                let last = ActorId::from_u64(actor.as_u64() - 1);
                requests.push(SyncRequest {
                    scope: Scope::Range { first, last },
                    versions: std::mem::take(&mut versions),
                    pull_back: true,
                });
                first = actor;
                len = fixed;
            }
            versions.push((actor, version));
            len += item;
        }
        requests.push(SyncRequest {
            scope: Scope::Range {
                first,
                last: ActorId::from_u64(u64::MAX),
            },
            versions,
            pull_back: true,
        });
        Ok(requests)
    }

    /// Answers a sync request: the deltas the requester lacks (at most `max_total` bytes
    /// in messages of at most `budget` bytes) and, if it asked, a request for what it
    /// has that this store lacks.
    pub fn answer_sync(
        &self,
        request: &SyncRequest,
        budget: usize,
        max_total: usize,
    ) -> Result<SyncAnswer<'_>, BudgetTooSmall> {
        let in_scope = |id: ActorId| match request.scope {
            Scope::Range { first, last } => id >= first && id <= last,
            Scope::Listed => request.get(id).is_some(),
        };
        let wants: Vec<Option<u64>> = (0..self.actors.len() as ActorIdx)
            .map(|idx| {
                let id = self.actors.id(idx);
                if !in_scope(id) {
                    return None;
                }
                let theirs = request.get(id).unwrap_or(0);
                (self.watermark_of(idx) > theirs).then_some(theirs)
            })
            .collect();
        let deltas = self.deltas_for_wants(&wants, budget, max_total)?;

        let mut pull = Vec::new();
        if request.pull_back {
            let behind = request.versions.iter().filter_map(|&(id, theirs)| {
                let mine = self
                    .actors
                    .lookup(id)
                    .map_or(0, |idx| self.watermark_of(idx));
                (theirs > mine).then_some((id, mine))
            });
            let fixed = HEADER_LEN + 1 + varint_len(budget as u64) + 1;
            let mut len = fixed;
            let mut versions = Vec::new();
            for (id, mine) in behind {
                let item = 8 + varint_len(mine);
                if len + item > budget {
                    pull.push(SyncRequest {
                        scope: Scope::Listed,
                        versions: std::mem::take(&mut versions),
                        pull_back: false,
                    });
                    len = fixed;
                }
                versions.push((id, mine));
                len += item;
            }
            if !versions.is_empty() {
                pull.push(SyncRequest {
                    scope: Scope::Listed,
                    versions,
                    pull_back: false,
                });
            }
        }
        Ok(SyncAnswer { deltas, pull })
    }
}
