//! [`Tasks`]: every background task a mesh spawns, so shutdown can stop them all and
//! wait for them, leaving nothing running behind a dropped or shut-down mesh; and the
//! supervision that turns a task that dies into a loud failure of the whole mesh.
//!
//! A panic in any task is a bug (the core refuses bad input with typed errors). Letting
//! the task vanish quietly is the worst outcome: a node whose timer task died keeps
//! answering SWIM pings from other tasks, so peers keep it as a member while it never
//! gossips again. So every task runs under [`CatchUnwind`], and a panic, or a critical
//! task that ends on its own, reports to the mesh's failure hook, which logs it, counts
//! it and stops the node (see `Shared::fail`).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::task::JoinSet;
use tracing::Instrument;

/// What a supervised task reports when it ends abnormally.
pub(crate) type FailureHook = Arc<dyn Fn(&'static str, String) + Send + Sync>;

/// A set of tasks that can be closed: once closed, new spawns are refused and every
/// running task can be aborted and awaited.
#[derive(Default)]
pub(crate) struct Tasks {
    set: Mutex<Option<JoinSet<()>>>,
    on_failure: Mutex<Option<FailureHook>>,
}

impl std::fmt::Debug for Tasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasks").finish_non_exhaustive()
    }
}

impl Tasks {
    pub(crate) fn new() -> Self {
        Self {
            set: Mutex::new(Some(JoinSet::new())),
            on_failure: Mutex::new(None),
        }
    }

    /// Sets what a task that panics (or a critical task that ends) reports to.
    pub(crate) fn set_failure_hook(&self, hook: FailureHook) {
        *self
            .on_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(hook);
    }

    pub(crate) fn hook(&self) -> Option<FailureHook> {
        self.on_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Spawns `task` on the current runtime, unless the set is closed. A panic inside it
    /// is reported to the failure hook.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.spawn_supervised("task", false, task);
    }

    /// Spawns a task the mesh cannot live without (the timer, the accept loop, the
    /// committer): besides panicking, ending while the set is open is a failure too.
    pub(crate) fn spawn_critical(
        &self,
        name: &'static str,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        self.spawn_supervised(name, true, task);
    }

    fn spawn_supervised(
        &self,
        name: &'static str,
        critical: bool,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let supervised = supervise(name, critical, self.hook(), task);
        let mut guard = self.set.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(set) = guard.as_mut() {
            // Reap finished tasks so short-lived ones (one per stream) do not pile up.
            while set.try_join_next().is_some() {}
            // Tasks inherit the spawner's span, so their logs name the node.
            set.spawn(supervised.in_current_span());
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

/// Runs `task`, reporting to `hook` if it panics or, when `critical`, if it ends.
pub(crate) async fn supervise(
    name: &'static str,
    critical: bool,
    hook: Option<FailureHook>,
    task: impl Future<Output = ()> + Send + 'static,
) {
    let ended = CatchUnwind(Box::pin(task)).await;
    let failure = match ended {
        Err(panic) => Some(format!("panicked: {}", panic_message(panic.as_ref()))),
        Ok(()) if critical => Some("ended unexpectedly".to_owned()),
        Ok(()) => None,
    };
    if let (Some(failure), Some(hook)) = (failure, hook) {
        hook(name, failure);
    }
}

/// Polls a future, turning a panic into an `Err` with the panic's payload.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn std::any::Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}
