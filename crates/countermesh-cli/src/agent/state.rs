//! [`AgentState`]: what every HTTP handler shares: the mesh, cached counter handles,
//! strict mode, and the agent's own statistics.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use countermesh::{Counter, CounterError, Mesh, MeshError};

use crate::agent::idempotency::KeyStore;
use crate::agent::stats::AgentStats;
use crate::agent::strict::StrictState;
use crate::api::guard::AllowedHosts;

/// Batches whose bodies are read and parsed at the same time; parsing holds memory
/// proportional to the body, so the rest wait their turn.
pub(crate) const MAX_CONCURRENT_BATCHES: usize = 2;

/// Shared by all handlers (behind an `Arc`).
#[derive(Debug)]
pub(crate) struct AgentState {
    pub(crate) mesh: Mesh,
    /// Counter handles by name, so an add is a map lookup plus an atomic add instead of
    /// a trip through the mesh's store lock.
    counters: RwLock<HashMap<String, Counter>>,
    pub(crate) strict: StrictState,
    pub(crate) stats: AgentStats,
    pub(crate) token: Option<String>,
    /// The `Host` values HTTP requests may carry.
    pub(crate) allowed_hosts: AllowedHosts,
    /// How long one request may take, body included (408 after).
    pub(crate) request_timeout: Duration,
    /// Counters the node may know before this agent creates no more.
    max_counters: usize,
    pub(crate) started: Instant,
    /// Bounds how many batch bodies are parsed at once (see `api::eventual::batch`).
    pub(crate) batch_slots: tokio::sync::Semaphore,
    /// Idempotency keys of eventual writes, remembered for a bounded window.
    pub(crate) keys: KeyStore,
}

/// Why a counter handle could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    /// The name is not a valid counter name.
    #[error("{0}")]
    InvalidName(String),
    /// The node knows `--max-counters` counters; this agent creates no more.
    #[error(
        "cannot create counter {name:?}: this node already knows {known} counters and the \
         agent creates none beyond {max} (--max-counters); add to existing counters, or \
         raise the limit"
    )]
    Limit {
        name: String,
        known: usize,
        max: usize,
    },
    /// The node's store holds as many counters as it may.
    #[error("cannot create counter {name:?}: {reason}")]
    StoreFull { name: String, reason: String },
    /// Anything else the mesh reported (it is shutting down, say).
    #[error("{0}")]
    Mesh(String),
}

/// The HTTP policy the configuration decided.
#[derive(Debug)]
pub(crate) struct HttpPolicy {
    pub(crate) token: Option<String>,
    pub(crate) allowed_hosts: AllowedHosts,
    pub(crate) request_timeout: Duration,
    pub(crate) max_counters: usize,
    pub(crate) idempotency: crate::config::IdempotencyLimits,
}

impl AgentState {
    pub(crate) fn new(mesh: Mesh, strict: StrictState, policy: HttpPolicy) -> Self {
        Self {
            mesh,
            counters: RwLock::new(HashMap::new()),
            strict,
            stats: AgentStats::default(),
            token: policy.token,
            allowed_hosts: policy.allowed_hosts,
            request_timeout: policy.request_timeout,
            max_counters: policy.max_counters,
            started: Instant::now(),
            batch_slots: tokio::sync::Semaphore::new(MAX_CONCURRENT_BATCHES),
            keys: KeyStore::new(policy.idempotency.window, policy.idempotency.max_keys),
        }
    }

    /// The handle for `name` (already validated), created on first use. A counter the
    /// node does not know yet is created only while it knows fewer than
    /// `--max-counters`.
    pub(crate) fn counter(&self, name: &str) -> Result<Counter, OpenError> {
        if let Some(counter) = self
            .counters
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return Ok(counter.clone());
        }
        // Creations through this agent are serialised by the cache's write lock, so two
        // requests cannot both take the last place under the limit.
        let mut counters = self.counters.write().unwrap_or_else(|e| e.into_inner());
        if let Some(counter) = counters.get(name) {
            return Ok(counter.clone());
        }
        let known = self.mesh.counter_count();
        if known >= self.max_counters && self.mesh.value(name).is_none() {
            return Err(OpenError::Limit {
                name: name.to_owned(),
                known,
                max: self.max_counters,
            });
        }
        let counter = self.mesh.counter(name).map_err(|error| match error {
            MeshError::Counter(CounterError::InvalidName(e)) => {
                OpenError::InvalidName(e.to_string())
            }
            // The store's counter limit protects the node's memory; the client can do
            // nothing about it but wait for an operator.
            MeshError::Counter(e @ CounterError::TooManyCounters { .. }) => OpenError::StoreFull {
                name: name.to_owned(),
                reason: e.to_string(),
            },
            other => OpenError::Mesh(other.to_string()),
        })?;
        counters.insert(name.to_owned(), counter.clone());
        Ok(counter)
    }
}
