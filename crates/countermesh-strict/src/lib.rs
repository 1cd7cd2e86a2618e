//! Strict mode of countermesh: linearizable, exactly-once counters stored in Apache
//! ZooKeeper.
//!
//! Eventual mode (the `countermesh` crate) counts locally and converges; strict mode is
//! for the counters where that is not enough (a ticket number, a hard limit). Every
//! operation is a ZooKeeper quorum transaction, so it costs a network round trip, and
//! the API makes the choice visible at the call site.
//!
//! * [`StrictClient::connect`] opens a session under a root path;
//!   [`StrictClient::counter`] opens (creating if absent, at 0) a [`Counter`].
//! * [`Counter::add`], [`Counter::compare_and_set`] and [`Counter::set`] take effect
//!   exactly once: each write carries an op-id receipt created in the same `multi`, so a
//!   retry after a lost reply finds the receipt instead of applying twice.
//! * [`Counter::get`] is linearizable (the value read is confirmed by a quorum
//!   transaction); [`Counter::get_sequential`] is ZooKeeper's cheaper ordinary read.
//! * Concurrent operations on one counter in one process are combined into one
//!   transaction, and each caller still gets its own result.
//! * Every failure is a [`StrictError`] that says whether the operation took effect.
//!
//! The value is an `i64` stored as 8 bytes, big-endian two's complement; overflow is an
//! error, never a wrap.
//!
//! ```no_run
//! use countermesh_strict::{Outcome, StrictClient, StrictOptions};
//!
//! # async fn demo() -> Result<(), countermesh_strict::StrictError> {
//! let zk = StrictClient::connect("127.0.0.1:2181/countermesh", StrictOptions::default()).await?;
//! let tickets = zk.counter("tickets").await?;
//! let mine = tickets.add(1).await?; // the value right after this add
//! assert!(tickets.get().await? >= mine);
//! if tickets.compare_and_set(mine, 100).await? == Outcome::Swapped {
//!     tickets.set(0).await?;
//! }
//! zk.delete("tickets").await?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod backoff;
mod client;
mod combiner;
mod counter;
mod encoding;
mod error;
#[cfg(feature = "harness")]
pub mod harness;
mod name;
mod op;
mod op_id;
mod options;
mod plan;
mod receipts;
mod security;
mod session;
mod single;
mod stats;

pub use client::StrictClient;
pub use counter::Counter;
pub use error::{Result, StrictError, ZooKeeperError, ZooKeeperErrorKind};
pub use name::{MAX_NAME_LEN, validate_name};
pub use op::Outcome;
pub use op_id::OpId;
pub use options::StrictOptions;
pub use plan::ROLL_VERSION;
pub use receipts::SweepReport;
pub use security::{AclPolicy, Credentials, TlsConfig};
pub use stats::StrictStats;
