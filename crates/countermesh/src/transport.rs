//! [`Transport`]: one quinn endpoint per node. SWIM packets travel as QUIC datagrams,
//! deltas and digests on unidirectional streams (one message per stream).
//!
//! Outgoing traffic goes through one bounded queue and one task per peer, which owns a
//! cached connection to that peer and re-dials it when it fails. A full queue drops the
//! message and counts it: gossip is periodic and anti-entropy resends whatever a drop
//! loses, so shedding load is safe where blocking the protocol would not be. Incoming
//! connections are read in `inbound.rs`.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use countermesh_core::{Channel, Transmit};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::debug;

use crate::metrics::{RuntimeCounters, bump};
use crate::tasks::Tasks;
use crate::tls::server_name;

/// Messages a peer's queue holds before new ones are dropped.
pub(crate) const PEER_QUEUE_CAPACITY: usize = 1024;
/// How long a dial may take before the peer counts as unreachable.
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long writing one stream may take.
const STREAM_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// A peer task with nothing to send for this long ends (and closes its connection).
const PEER_IDLE: Duration = Duration::from_secs(30);
/// How long a replaced connection stays open to deliver what was already written.
const RETIRE_GRACE: Duration = Duration::from_secs(2);
/// First and longest wait before re-dialling a peer that could not be reached.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Streams a peer task remembers until they are acknowledged, so a graceful shutdown
/// can wait for its last messages to arrive.
const MAX_UNACKED: usize = 64;
/// How long a graceful shutdown waits for the peers to acknowledge its last messages.
const DRAIN_ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// What a peer task is asked to do.
#[derive(Debug)]
enum Outbound {
    Send(Transmit),
    /// Drop the cached connection (the peer restarted, or left) so the next send dials.
    Reset,
    /// Answer once everything queued before this was sent and acknowledged (bounded).
    Drain(oneshot::Sender<()>),
}

/// A peer's queue, tagged so that its task removes exactly its own map entry.
#[derive(Debug, Clone)]
struct PeerQueue {
    sender: mpsc::Sender<Outbound>,
    id: u64,
}

type PeerMap = Arc<Mutex<HashMap<SocketAddr, PeerQueue>>>;

/// Removes `peer`'s queue from the map if it is still the one tagged `id`.
fn forget(peers: &PeerMap, peer: SocketAddr, id: u64) {
    let mut peers = peers.lock().unwrap_or_else(PoisonError::into_inner);
    if peers.get(&peer).is_some_and(|q| q.id == id) {
        peers.remove(&peer);
    }
}

/// The node's endpoint and its per-peer queues.
#[derive(Debug)]
pub(crate) struct Transport {
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    peers: PeerMap,
    next_id: AtomicU64,
    counters: Arc<RuntimeCounters>,
}

impl Transport {
    pub(crate) fn new(
        endpoint: quinn::Endpoint,
        client_config: quinn::ClientConfig,
        counters: Arc<RuntimeCounters>,
    ) -> Self {
        Self {
            endpoint,
            client_config,
            peers: Arc::new(Mutex::new(HashMap::new())),
            next_id: AtomicU64::new(0),
            counters,
        }
    }

    pub(crate) fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }

    /// Queues `transmit` for its destination without waiting; drops it (and counts the
    /// drop) if that peer's queue is full.
    pub(crate) fn send(&self, transmit: Transmit, tasks: &Tasks) {
        let destination = transmit.destination;
        let mut item = Outbound::Send(transmit);
        // Two attempts: the peer's task may have just ended after going idle.
        for _ in 0..2 {
            let queue = self.queue(destination, tasks);
            // Counted before sending, so the peer task's decrement never comes first.
            self.counters.queued.fetch_add(1, Ordering::Relaxed);
            match queue.sender.try_send(item) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                    bump(&self.counters.queue_full_drops);
                    debug!(peer = %destination, "send queue full; message dropped");
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(returned)) => {
                    self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                    item = returned;
                    forget(&self.peers, destination, queue.id);
                }
            }
        }
        bump(&self.counters.send_failures);
    }

    /// Drops the cached connection to `peer`, if any.
    pub(crate) fn reset(&self, peer: SocketAddr) {
        let peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(queue) = peers.get(&peer) {
            // A full queue already holds work that will notice a dead connection.
            let _ = queue.sender.try_send(Outbound::Reset);
        }
    }

    /// Waits (bounded) until every peer task has sent what it had queued and its peer
    /// acknowledged the streams. A graceful shutdown calls this before closing.
    pub(crate) async fn drain(&self) {
        let queues: Vec<PeerQueue> = self
            .peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let all = async {
            let mut answers = Vec::new();
            for queue in queues {
                let (done, answer) = oneshot::channel();
                // Waits for room: the drain must queue behind everything already queued.
                if queue.sender.send(Outbound::Drain(done)).await.is_ok() {
                    answers.push(answer);
                }
            }
            for answer in answers {
                let _ = answer.await;
            }
        };
        let _ = tokio::time::timeout(DRAIN_ACK_TIMEOUT + DIAL_TIMEOUT, all).await;
    }

    fn queue(&self, peer: SocketAddr, tasks: &Tasks) -> PeerQueue {
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(queue) = peers.get(&peer).filter(|q| !q.sender.is_closed()) {
            return queue.clone();
        }
        let (sender, receiver) = mpsc::channel(PEER_QUEUE_CAPACITY);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let queue = PeerQueue { sender, id };
        peers.insert(peer, queue.clone());
        let task = PeerTask {
            peer,
            id,
            peers: self.peers.clone(),
            endpoint: self.endpoint.clone(),
            client_config: self.client_config.clone(),
            counters: self.counters.clone(),
            connection: None,
            retired: Vec::new(),
            unacked: VecDeque::new(),
            backoff: MIN_BACKOFF,
            retry_at: None,
        };
        tasks.spawn(task.run(receiver));
        queue
    }

    /// Drops every peer queue (their tasks end once their queues drain).
    pub(crate) fn forget_all(&self) {
        self.peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// One peer's outgoing side: a queue consumer with a cached connection.
struct PeerTask {
    peer: SocketAddr,
    /// This task's tag in the peer map.
    id: u64,
    peers: PeerMap,
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    counters: Arc<RuntimeCounters>,
    connection: Option<quinn::Connection>,
    /// Replaced connections, kept open briefly so messages already written to them are
    /// delivered (dropping the last handle would close one and abandon them).
    retired: Vec<(quinn::Connection, Instant)>,
    /// Recently written streams, newest last, kept so a drain can await their
    /// acknowledgement. Dropping one does not abandon it.
    unacked: VecDeque<quinn::SendStream>,
    backoff: Duration,
    /// While set and in the future, the peer is considered unreachable.
    retry_at: Option<Instant>,
}

impl PeerTask {
    async fn run(mut self, mut queue: mpsc::Receiver<Outbound>) {
        loop {
            let item = match tokio::time::timeout(PEER_IDLE, queue.recv()).await {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(_) => {
                    // Idle: refuse new work, then finish whatever raced in.
                    queue.close();
                    continue;
                }
            };
            let now = Instant::now();
            self.retired.retain(|(_, until)| now < *until);
            match item {
                Outbound::Reset => {
                    if let Some(connection) = self.connection.take() {
                        self.retired.push((connection, now + RETIRE_GRACE));
                    }
                    self.retry_at = None;
                    self.backoff = MIN_BACKOFF;
                }
                Outbound::Send(transmit) => {
                    self.deliver(transmit).await;
                    // Counted as queued until handed to QUIC, so a drain waits for it.
                    self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                }
                Outbound::Drain(done) => {
                    let unacked = std::mem::take(&mut self.unacked);
                    let acknowledged = async {
                        for stream in unacked {
                            let _ = stream.stopped().await;
                        }
                    };
                    let _ = tokio::time::timeout(DRAIN_ACK_TIMEOUT, acknowledged).await;
                    let _ = done.send(());
                }
            }
        }
        forget(&self.peers, self.peer, self.id);
        // Idle for `PEER_IDLE`: everything written has long been delivered.
        if let Some(connection) = self.connection.take() {
            connection.close(0u32.into(), b"idle");
        }
    }

    async fn deliver(&mut self, transmit: Transmit) {
        let Some(connection) = self.connection().await else {
            bump(&self.counters.send_failures);
            return;
        };
        let result = match transmit.channel {
            Channel::Datagram => connection
                .send_datagram(Bytes::from(transmit.payload))
                .map_err(|e| e.to_string()),
            Channel::Stream => {
                match tokio::time::timeout(
                    STREAM_WRITE_TIMEOUT,
                    write_stream(&connection, &transmit.payload),
                )
                .await
                {
                    Ok(Ok(stream)) => {
                        if self.unacked.len() == MAX_UNACKED {
                            self.unacked.pop_front();
                        }
                        self.unacked.push_back(stream);
                        Ok(())
                    }
                    Ok(Err(error)) => Err(error),
                    Err(_) => Err("stream write timed out".to_owned()),
                }
            }
        };
        if let Err(error) = result {
            bump(&self.counters.send_failures);
            debug!(peer = %self.peer, kind = transmit.kind.as_str(), %error, "send failed");
            if connection.close_reason().is_some() {
                self.connection = None;
            }
        }
    }

    /// The cached connection, dialling if there is none (or it died).
    async fn connection(&mut self) -> Option<quinn::Connection> {
        if let Some(connection) = &self.connection {
            if connection.close_reason().is_none() {
                return Some(connection.clone());
            }
            debug!(peer = %self.peer, "connection lost; will re-dial");
            self.connection = None;
        }
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return None;
        }
        match self.dial().await {
            Ok(connection) => {
                bump(&self.counters.connections_dialed);
                self.retry_at = None;
                self.backoff = MIN_BACKOFF;
                self.connection = Some(connection.clone());
                Some(connection)
            }
            Err(error) => {
                bump(&self.counters.dial_failures);
                debug!(peer = %self.peer, %error, "dial failed");
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                None
            }
        }
    }

    async fn dial(&self) -> Result<quinn::Connection, String> {
        let connecting = self
            .endpoint
            .connect_with(self.client_config.clone(), self.peer, server_name())
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(DIAL_TIMEOUT, connecting).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err("handshake timed out".to_owned()),
        }
    }
}

async fn write_stream(
    connection: &quinn::Connection,
    payload: &[u8],
) -> Result<quinn::SendStream, String> {
    let mut stream = connection.open_uni().await.map_err(|e| e.to_string())?;
    stream.write_all(payload).await.map_err(|e| e.to_string())?;
    // A finished stream is delivered even if its handle is dropped, as long as the
    // connection lives; the handle is returned only so a drain can await the ack.
    stream.finish().map_err(|e| e.to_string())?;
    Ok(stream)
}
