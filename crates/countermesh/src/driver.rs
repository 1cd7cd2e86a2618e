//! [`Shared`]: the protocol node behind a mutex, and the task that runs its timers.
//!
//! The runtime makes no protocol decisions. Every input (a received message, a timer)
//! goes to the sans-io [`Node`] under a short-lived lock; every output it produces is
//! routed to the transport after the lock is released. The lock is a `std` mutex, never
//! held across an `.await`; `Counter::add` does not take it at all.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use countermesh_core::{Channel, Event, Node, Transmit};
use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

use crate::metrics::RuntimeCounters;
use crate::tasks::Tasks;
use crate::transport::Transport;

/// The node plus the deadline the timer task is currently sleeping towards.
#[derive(Debug)]
pub(crate) struct Locked {
    pub(crate) node: Node,
    /// `None` while the timer task is not sleeping (it is about to re-read the deadline).
    armed: Option<Instant>,
}

/// State shared by every task of one mesh.
#[derive(Debug)]
pub(crate) struct Shared {
    locked: Mutex<Locked>,
    pub(crate) transport: Transport,
    pub(crate) tasks: Tasks,
    /// Open incoming connections, for the per-peer and total caps.
    pub(crate) connections: Arc<crate::inbound::ConnectionCounts>,
    pub(crate) counters: Arc<RuntimeCounters>,
    /// Wakes the timer task when the node's next deadline moved earlier.
    wake: Notify,
    pub(crate) max_message_bytes: usize,
    /// Set by a graceful shutdown: SWIM then reports this node as defunct, which is
    /// expected rather than worth a warning.
    pub(crate) leaving: AtomicBool,
    /// Set by `stop`: tasks ending from now on are expected.
    pub(crate) stopping: AtomicBool,
    /// Why the mesh failed, once a task died (see `Shared::fail`).
    failure: OnceLock<String>,
    /// Makes the timer task panic at its next wake-up, so tests can check that a dead
    /// task fails the mesh loudly.
    #[cfg(feature = "fault-injection")]
    pub(crate) panic_timer: AtomicBool,
}

impl Shared {
    pub(crate) fn new(
        node: Node,
        transport: Transport,
        counters: Arc<RuntimeCounters>,
        max_message_bytes: usize,
    ) -> Self {
        Self {
            locked: Mutex::new(Locked { node, armed: None }),
            transport,
            tasks: Tasks::new(),
            connections: Arc::default(),
            counters,
            wake: Notify::new(),
            max_message_bytes,
            leaving: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            failure: OnceLock::new(),
            #[cfg(feature = "fault-injection")]
            panic_timer: AtomicBool::new(false),
        }
    }

    /// A task died: the node can no longer keep its promises (a dead timer task means no
    /// more gossip while other tasks still answer SWIM pings, a zombie member). So the
    /// mesh fails loudly: the error is logged and counted, the endpoint is closed so that
    /// peers declare this node down, and every later `Mesh` call reports the failure.
    pub(crate) fn fail(&self, task: &'static str, reason: String) {
        if self.stopping.load(Ordering::Relaxed) {
            return;
        }
        crate::metrics::bump(&self.counters.task_failures);
        let message = format!("{task} task {reason}");
        if self.failure.set(message.clone()).is_ok() {
            error!(
                failure = %message,
                "countermesh node failed: it stops gossiping and leaves the cluster;                  restart it (this is a bug, please report it)"
            );
            self.transport.endpoint().close(2u32.into(), b"node failed");
            self.tasks.abort_now();
        }
    }

    /// Wakes the timer task now.
    #[cfg(feature = "fault-injection")]
    pub(crate) fn wake_timer(&self) {
        self.wake.notify_one();
    }

    /// Why the mesh failed, if it did.
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    /// Locks the node. A panic inside the core would poison the lock; the state is still
    /// the best there is, so a poisoned lock is used rather than propagated.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Locked> {
        self.locked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the node, then routes whatever it wants sent and reports its events.
    pub(crate) fn with_node<R>(&self, f: impl FnOnce(&mut Node, Instant) -> R) -> R {
        let mut transmits: Vec<Transmit> = Vec::new();
        let mut events: Vec<Event> = Vec::new();
        let (result, wake) = {
            let mut locked = self.lock();
            let result = f(&mut locked.node, Instant::now());
            while let Some(transmit) = locked.node.poll_transmit() {
                transmits.push(transmit);
            }
            while let Some(event) = locked.node.poll_event() {
                events.push(event);
            }
            let next = locked.node.poll_timeout();
            let wake = match (locked.armed, next) {
                (Some(armed), Some(next)) => next < armed,
                _ => false,
            };
            (result, wake)
        };
        if wake {
            self.wake.notify_one();
        }
        for transmit in transmits {
            self.transport.send(transmit, &self.tasks);
        }
        for event in events {
            self.on_event(event);
        }
        result
    }

    /// Feeds one received message to the node; a message the node refuses is logged
    /// with its typed error and dropped.
    pub(crate) fn handle_message(&self, from: SocketAddr, channel: Channel, bytes: &[u8]) {
        let result = self.with_node(|node, now| node.handle_message(from, channel, bytes, now));
        if let Err(error) = result {
            info!(peer = %from, ?channel, len = bytes.len(), %error, "dropped message");
        }
    }

    fn on_event(&self, event: Event) {
        match event {
            Event::MemberUp(id) => {
                info!(member = %id, "member up");
                // A member at an address we may hold a connection to from an earlier
                // life of that peer: dial afresh.
                self.transport.reset(id.addr());
            }
            Event::MemberDown(id) => {
                info!(member = %id, "member down");
                self.transport.reset(id.addr());
            }
            Event::MemberRenamed { old, new } => {
                info!(%old, %new, "member restarted");
                self.transport.reset(new.addr());
            }
            Event::Joined => info!("joined the cluster"),
            Event::Isolated => warn!("no live members; counting locally and re-announcing"),
            Event::Rejoined(id) => warn!(identity = %id, "declared down by the cluster; rejoined"),
            Event::Defunct if self.leaving.load(Ordering::Relaxed) => {
                debug!("left the cluster");
            }
            Event::Defunct => warn!("declared down by the cluster and cannot renew identity"),
            Event::Saturated(name) => {
                warn!(counter = %name, "own total reached u64::MAX; excess stays local");
            }
            Event::LimitReached {
                kind,
                limit,
                refused,
            } => {
                let setting = match kind {
                    countermesh_core::LimitKind::Counters => "max_counters",
                    countermesh_core::LimitKind::Actors => "max_actors",
                    countermesh_core::LimitKind::Entries => "max_entries",
                    _ => "limits",
                };
                error!(
                    limit = kind.as_str(),
                    configured = limit,
                    refused,
                    "store limit reached: totals here lack what was refused until \
                     {setting} is raised (MeshBuilder::limits)"
                );
            }
            Event::Refused {
                from,
                conflicting,
                own_refused,
            } => {
                error!(
                    peer = %from,
                    conflicting,
                    own_refused,
                    "refused corrupt or forged counter data from a peer"
                );
            }
            Event::Pruned {
                sink,
                covered,
                dropped,
            } => {
                info!(%sink, covered, dropped, "pruned departed actors into a sink");
            }
            Event::SinkRefused(sink) => {
                error!(
                    %sink,
                    "refused a sink that covers an actor another sink already covers (two \
                     pruners folded it: a partition outlasted PruneConfig::after_down) or this \
                     node's own actor; it never counts here"
                );
            }
            Event::InternalError(what) => {
                error!(error = %what, "internal error (a bug): a message was dropped");
            }
            other => debug!(event = ?other, "node event"),
        }
    }

    /// Runs the node's timers (SWIM probes, gossip rounds) until the task is aborted.
    pub(crate) async fn run_timers(self: Arc<Self>) {
        loop {
            #[cfg(feature = "fault-injection")]
            if self.panic_timer.load(Ordering::Relaxed) {
                panic!("injected panic in the timer task");
            }
            let deadline = {
                let mut locked = self.lock();
                let deadline = locked.node.poll_timeout();
                locked.armed = deadline;
                deadline
            };
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = sleep => {
                    self.lock().armed = None;
                    self.with_node(|node, now| node.handle_timeout(now));
                }
                () = self.wake.notified() => {
                    debug!("timer woken early");
                }
            }
        }
    }
}
