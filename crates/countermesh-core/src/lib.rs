//! The sans-io core of countermesh: eventually consistent counters that converge by
//! exchanging only what changed.
//!
//! This crate holds every protocol decision and no I/O: it never reads a clock, opens a
//! socket or file, or spawns a thread. Time and randomness come in as arguments, bytes
//! come in through `handle_*` methods and go out through `poll_*` methods, in the style
//! of `quinn-proto` and `foca`. The runtime crate (`countermesh`), the tests and the
//! simulator all drive the very same code.
//!
//! * [`Store`] holds many named PN-Counters. [`Counter::add`] is a lock-free atomic add;
//!   [`Store::flush`] folds pending adds into this node's CRDT entries and versions them.
//! * [`Store::sync_start`], [`Store::answer_sync`] and [`Store::apply_delta`] implement
//!   scuttlebutt anti-entropy with summarised digests: two nodes find the actors they
//!   differ on by comparing hashes of actor ranges, then a peer is sent exactly the
//!   entries newer than its watermarks.
//! * [`Message`] is the versioned wire envelope (bincode 2 with bounded decoding).
//! * [`Node`] drives a store and a foca SWIM instance: who is alive, who to gossip with,
//!   when to push and when to run anti-entropy.
//!
//! ```
//! use countermesh_core::{ActorId, Store};
//!
//! let mut store = Store::new(ActorId::from_u64(7), 0);
//! let hits = store.counter("hits")?;
//! for _ in 0..1_000 {
//!     hits.add(1);
//! }
//! assert_eq!(hits.value(), Ok(1_000));
//! let outcome = store.flush();
//! assert_eq!(outcome.changed, 1); // a thousand adds, one changed entry
//! # Ok::<(), countermesh_core::CounterError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod actor;
mod actors;
mod cell;
mod changes;
mod config;
mod counter;
mod delta;
mod digest;
mod event;
mod identity;
mod index;
mod members;
mod name;
mod node;
mod prune;
mod pruner;
mod store;
mod summary;
mod swim_codec;
mod wire;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use crate::actor::ActorId;
pub use crate::changes::{Changes, RestoreError, Restored, StoredEntry};
pub use crate::config::{
    Config, ConfigError, InvalidBudget, MIN_DATAGRAM_BYTES, MIN_MESSAGE_BUDGET, MessageBudget,
};
pub use crate::counter::{Counter, ValueOverflow};
pub use crate::delta::{ApplyOutcome, Delta, DeltaEntry, DeltaError, Run};
pub use crate::digest::{Digest, ExchangeLimits, Part, SyncAnswer, SyncRequest, SyncRequestError};
pub use crate::event::Event;
pub use crate::identity::NodeId;
pub use crate::name::{CounterName, MAX_NAME_LEN, NameError, validate_name};
pub use crate::node::{
    Channel, HandleError, MAX_SYNC_PER_INTERVAL, MessageKind, Node, Stats, Transmit,
};
pub use crate::prune::{Completed, FoldError, SealRefusal, Tombstone};
pub use crate::pruner::PruneConfig;
pub use crate::store::{
    Contribution, CounterError, DEFAULT_MAX_ACTORS, DEFAULT_MAX_COUNTERS, DEFAULT_MAX_ENTRIES,
    FlushOutcome, LimitKind, Limits, Store,
};
pub use crate::summary::{ActorRange, InvalidRange, MAX_LEVEL, RangeSummary, pair_hash};
pub use crate::swim_codec::SwimCodecError;
pub use crate::wire::{
    DecodeError, EncodeError, HEADER_LEN, MAGIC, MAX_INTENT_VICTIMS, MAX_MESSAGE_BYTES,
    MAX_VERSION, Message, PROTOCOL_VERSION, PruneMessage, PruneMessageError, encode_delta,
    encode_prune, encode_swim, encode_sync,
};

/// foca, re-exported so runtimes name the same SWIM types this crate uses.
pub use foca;
