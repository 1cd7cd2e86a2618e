//! Durable adds: HTTP's `?durable=true`, RESP's `--resp-durable` and `WAIT` answer only
//! after [`Mesh::flush`](countermesh::Mesh::flush), so a client gets the promise the
//! library gives: every add made before the answer is in the data directory and
//! survives a crash of this node.
//!
//! The add itself stays a local atomic add; only the answer waits. The mesh's committer
//! serves concurrent flushes with its group commits, so many durable requests at once
//! cost about one commit, not one each.

use std::time::Instant;

use countermesh::MeshError;

use crate::agent::state::AgentState;

/// Why a durable request could not be answered as durable.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DurableError {
    /// The agent has no data directory, so nothing it holds is durable. Checked before
    /// anything is added, so the request had no effect.
    #[error(
        "this agent has no data directory, so no add can be made durable; nothing was \
         added. Start the agent with --data-dir DIR, or send the add without durable=true"
    )]
    NoDataDir,
    /// The flush failed (a disk error, or the mesh is stopping): the adds were applied in
    /// memory and gossip still spreads them, but this node has not made them durable.
    #[error(
        "the add was applied in memory but is not durable: flushing the data directory \
         failed ({0}); it will reach peers by gossip and later commits retry, but a crash \
         of this node before then may lose it"
    )]
    Flush(String),
}

/// Where a durable request came from, for the metrics' `via` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    Http,
    Resp,
}

impl Via {
    pub(crate) const ALL: [Via; 2] = [Via::Http, Via::Resp];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Via::Http => "http",
            Via::Resp => "resp",
        }
    }
}

impl AgentState {
    /// Refuses a durable request before it adds anything when there is nothing to
    /// make it durable in.
    pub(crate) fn check_durable(&self) -> Result<(), DurableError> {
        if self.mesh.data_dir().is_some() {
            Ok(())
        } else {
            Err(DurableError::NoDataDir)
        }
    }

    /// Waits until every add made so far is in the data directory, counting the
    /// request and the flush's latency.
    pub(crate) async fn make_durable(&self, via: Via) -> Result<(), DurableError> {
        self.check_durable()?;
        let started = Instant::now();
        let result = self.mesh.flush().await;
        self.stats
            .record_durable(via, result.is_ok(), started.elapsed());
        result.map_err(|error| match error {
            MeshError::Flush(source) => DurableError::Flush(source.to_string()),
            other => DurableError::Flush(other.to_string()),
        })
    }
}
