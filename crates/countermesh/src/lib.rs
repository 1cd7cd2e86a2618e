//! countermesh: eventually consistent counters for edge services, gossiped over QUIC
//! with mutual TLS, with an optional durable data directory.
//!
//! Every node keeps PN-Counters for many named counters. [`Counter::add`] is a local
//! atomic add that never blocks and never waits for the network; nodes find each other
//! with SWIM membership and exchange only the counter entries that changed, so every
//! node converges to the exact sum of every add, across restarts and partitions.
//! **Values read here are eventually consistent**: a read shows this node's adds plus
//! whatever it has merged from peers so far. For linearizable counters (tickets, stock)
//! use the separate `countermesh-strict` crate.
//!
//! This crate is the runtime only: tokio tasks, one quinn endpoint, TLS, the data
//! directory. Every protocol decision (what to send, to whom, when) lives in the sans-io
//! [`countermesh_core`] crate, which this crate drives.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use countermesh::{Mesh, TlsConfig};
//!
//! let mesh = Mesh::builder()
//!     .bind("0.0.0.0:7946".parse()?)
//!     .seeds(["10.0.0.2:7946".parse()?])
//!     .tls(TlsConfig::from_pem_files("ca.pem", "node.pem", "node.key")?)
//!     .data_dir("/var/lib/countermesh")
//!     .gossip_interval(Duration::from_millis(100))
//!     .start()
//!     .await?;
//! let views = mesh.counter("page_views")?; // cheap handle: Clone + Send + Sync
//! views.add(1); // local atomic add: never blocks, never awaits
//! let total = views.value()?; // eventually consistent merged view
//! mesh.flush().await?; // every add made so far is durable
//! for member in mesh.members() {
//!     println!("{} {:?}", member.addr, member.state);
//! }
//! mesh.shutdown().await?; // graceful leave
//! # let _ = total;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod certs;
mod driver;
mod durability;
mod error;
#[cfg(feature = "fault-injection")]
mod fault;
mod inbound;
mod member;
mod mesh;
mod metrics;
mod storage;
mod tasks;
mod tls;
mod transport;

pub use crate::builder::{DEFAULT_COMMIT_INTERVAL, MeshBuilder};
pub use crate::certs::{
    CLUSTER_SAN_SUFFIX, CLUSTER_SERVER_NAME, CertificateAuthority, DEFAULT_CA_VALIDITY,
    DEFAULT_CLUSTER, DEFAULT_NODE_VALIDITY, NodeCertificate, certificate_serial, check_key_file,
    cluster_san, write_new_file,
};
pub use crate::error::MeshError;
#[cfg(feature = "fault-injection")]
pub use crate::fault::{FaultController, FaultRules, FaultStats};
pub use crate::member::{Member, MemberState};
pub use crate::mesh::{CounterValue, Mesh};
pub use crate::metrics::{
    DurabilityMetrics, MeshMetrics, PeerLag, PruningMetrics, RefusalMetrics, TransportMetrics,
};
pub use crate::storage::StorageError;
pub use crate::tls::{TlsConfig, TlsError};

/// The counter handle: eventually consistent, `Clone + Send + Sync`, `add` is a local
/// atomic add. See [`Mesh::counter`].
pub use countermesh_core::Counter;
pub use countermesh_core::{
    ActorId, Config as ProtocolConfig, CounterError, LimitKind, Limits, MessageKind, NodeId,
    PruneConfig, ValueOverflow,
};
