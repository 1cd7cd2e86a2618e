//! [`MeshError`]: everything that can go wrong starting, using or stopping a mesh.

use std::net::SocketAddr;

use countermesh_core::{ConfigError, CounterError, RestoreError};

use crate::{StorageError, TlsError};

/// Why a mesh operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeshError {
    /// The builder was not given a required setting.
    #[error("mesh configuration: {0}")]
    Missing(&'static str),
    /// The protocol configuration is invalid.
    #[error("mesh configuration: {0}")]
    Config(#[from] ConfigError),
    /// A builder setting is out of range.
    #[error("mesh configuration: {0}")]
    Invalid(String),
    /// The UDP socket could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// TLS material could not be loaded or used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The data directory could not be opened, read or written.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A `flush` could not make adds durable (the commit failed; it is retried with
    /// the next one).
    #[error("flush failed: {0}")]
    Flush(#[source] std::sync::Arc<StorageError>),
    /// The data directory holds state the store refused.
    #[error("data directory holds invalid state: {0}")]
    Restore(#[from] RestoreError),
    /// A counter could not be created (bad name, or too many counters).
    #[error(transparent)]
    Counter(#[from] CounterError),
    /// The mesh has been shut down (or was killed) and can no longer do this.
    #[error("the mesh has been shut down")]
    ShutDown,
    /// A task of the mesh died (a bug); the node has stopped gossiping and closed its
    /// endpoint. Restart it.
    #[error("the mesh failed: {0}")]
    Failed(String),
}
