//! The inbound half of the transport: accepting connections (within per-peer and total
//! caps), reading SWIM datagrams and one message per unidirectional stream, and feeding
//! them to the protocol node.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use countermesh_core::Channel;
use tracing::{debug, info, warn};

use crate::driver::Shared;
use crate::metrics::bump;

/// How long a peer may take to deliver one incoming stream completely.
const STREAM_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an incoming handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Incoming connections one peer address may hold open at once. A healthy peer holds
/// one (two briefly, while it replaces a connection); the cap keeps a faulty or
/// malicious member from exhausting this node with handshakes and connection state.
pub(crate) const MAX_CONNECTIONS_PER_PEER: usize = 4;
/// Incoming connections in all: enough for a mesh of thousands, bounded all the same.
pub(crate) const MAX_CONNECTIONS: usize = 8192;

/// Open incoming connections by peer address.
#[derive(Debug, Default)]
pub(crate) struct ConnectionCounts {
    by_peer: Mutex<HashMap<SocketAddr, usize>>,
}

impl ConnectionCounts {
    /// Takes a place for one more connection from `peer`, if the caps allow.
    fn admit(self: &Arc<Self>, peer: SocketAddr) -> Option<ConnectionSlot> {
        let mut by_peer = self.by_peer.lock().unwrap_or_else(PoisonError::into_inner);
        let total: usize = by_peer.values().sum();
        let held = by_peer.get(&peer).copied().unwrap_or(0);
        if held >= MAX_CONNECTIONS_PER_PEER || total >= MAX_CONNECTIONS {
            return None;
        }
        by_peer.insert(peer, held + 1);
        Some(ConnectionSlot {
            counts: self.clone(),
            peer,
        })
    }
}

/// A connection's place in the counts, given back when it is dropped.
#[derive(Debug)]
struct ConnectionSlot {
    counts: Arc<ConnectionCounts>,
    peer: SocketAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut by_peer = self
            .counts
            .by_peer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = by_peer.get_mut(&self.peer) {
            *held -= 1;
            if *held == 0 {
                by_peer.remove(&self.peer);
            }
        }
    }
}

/// Accepts incoming connections until the endpoint closes.
pub(crate) async fn accept_loop(shared: Arc<Shared>) {
    while let Some(incoming) = shared.transport.endpoint().accept().await {
        let remote = incoming.remote_address();
        let Some(slot) = shared.connections.admit(remote) else {
            bump(&shared.counters.connections_refused);
            warn!(
                peer = %remote,
                per_peer = MAX_CONNECTIONS_PER_PEER,
                total = MAX_CONNECTIONS,
                "refused incoming connection: too many open"
            );
            incoming.refuse();
            continue;
        };
        let shared2 = shared.clone();
        shared.tasks.spawn(async move {
            serve_connection(shared2, incoming).await;
            drop(slot);
        });
    }
}

async fn serve_connection(shared: Arc<Shared>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let connection = match tokio::time::timeout(HANDSHAKE_TIMEOUT, incoming).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => {
            bump(&shared.counters.handshakes_rejected);
            warn!(peer = %remote, %error, "refused incoming connection");
            return;
        }
        Err(_) => {
            bump(&shared.counters.handshakes_rejected);
            warn!(peer = %remote, "incoming handshake timed out");
            return;
        }
    };
    bump(&shared.counters.connections_accepted);
    debug!(peer = %remote, "accepted connection");
    loop {
        tokio::select! {
            datagram = connection.read_datagram() => match datagram {
                Ok(bytes) => shared.handle_message(remote, Channel::Datagram, &bytes),
                Err(error) => {
                    debug!(peer = %remote, %error, "connection closed");
                    break;
                }
            },
            stream = connection.accept_uni() => match stream {
                Ok(stream) => {
                    let shared2 = shared.clone();
                    shared.tasks.spawn(read_stream(shared2, remote, stream));
                }
                Err(error) => {
                    debug!(peer = %remote, %error, "connection closed");
                    break;
                }
            },
        }
    }
}

/// Reads one message (at most the message budget, within a deadline) and hands it on.
async fn read_stream(shared: Arc<Shared>, remote: SocketAddr, mut stream: quinn::RecvStream) {
    let read = tokio::time::timeout(
        STREAM_READ_TIMEOUT,
        stream.read_to_end(shared.max_message_bytes),
    )
    .await;
    match read {
        Ok(Ok(bytes)) => shared.handle_message(remote, Channel::Stream, &bytes),
        Ok(Err(error)) => {
            bump(&shared.counters.streams_rejected);
            info!(peer = %remote, %error, "dropped incoming stream");
            let _ = stream.stop(1u32.into());
        }
        Err(_) => {
            bump(&shared.counters.streams_rejected);
            info!(peer = %remote, "incoming stream timed out");
            let _ = stream.stop(1u32.into());
        }
    }
}
