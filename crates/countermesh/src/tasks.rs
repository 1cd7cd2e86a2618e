//! [`Tasks`]: every background task a mesh spawns, so shutdown can stop them all and
//! wait for them, leaving nothing running behind a dropped or shut-down mesh.

use std::future::Future;
use std::sync::{Mutex, PoisonError};

use tokio::task::JoinSet;
use tracing::Instrument;

/// A set of tasks that can be closed: once closed, new spawns are refused and every
/// running task can be aborted and awaited.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    set: Mutex<Option<JoinSet<()>>>,
}

impl Tasks {
    pub(crate) fn new() -> Self {
        Self {
            set: Mutex::new(Some(JoinSet::new())),
        }
    }

    /// Spawns `task` on the current runtime, unless the set is closed.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut guard = self.set.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(set) = guard.as_mut() {
            // Reap finished tasks so short-lived ones (one per stream) do not pile up.
            while set.try_join_next().is_some() {}
            // Tasks inherit the spawner's span, so their logs name the node.
            set.spawn(task.in_current_span());
        }
    }

    /// Closes the set and aborts every task without waiting (for `Drop`).
    pub(crate) fn abort_now(&self) {
        // Dropping a JoinSet aborts its tasks.
        drop(
            self.set
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }

    /// Closes the set, aborts every task and waits until all have ended.
    pub(crate) async fn shutdown(&self) {
        let set = self
            .set
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(mut set) = set {
            set.abort_all();
            while set.join_next().await.is_some() {}
        }
    }
}
