//! Fault injection: a UDP socket wrapper that drops, delays, duplicates or blackholes
//! outgoing packets by rule, so tests run real QUIC with synthetic loss and partitions
//! (this machine's kernel has no netem).
//!
//! Rules apply on the sending side. A partition between two groups of nodes is built by
//! blackholing, on every node of each group, the addresses of the other group; loss on
//! every node's egress is loss on every path.

use std::collections::HashSet;
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// The rules a [`FaultController`] applies to packets its node sends.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultRules {
    /// Probability that a packet is silently dropped.
    pub loss: f64,
    /// Probability that a packet is sent twice.
    pub duplicate: f64,
    /// Extra delay before each packet leaves (0 for none).
    pub delay: Duration,
    /// Destinations whose packets are all dropped.
    pub blackholed: HashSet<SocketAddr>,
}

/// Packet counts seen by a faulty socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Packets handed to the socket.
    pub packets: u64,
    /// Packets dropped by the loss rule.
    pub lost: u64,
    /// Packets dropped because their destination is blackholed.
    pub blackholed: u64,
    /// Extra copies sent.
    pub duplicated: u64,
}

struct State {
    rules: FaultRules,
    rng: SmallRng,
    stats: FaultStats,
}

/// A handle that changes a node's fault rules while it runs.
#[derive(Clone)]
pub struct FaultController {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for FaultController {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultController")
            .field("rules", &self.rules())
            .finish()
    }
}

impl FaultController {
    /// A controller with no faults, whose random choices derive from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                rules: FaultRules::default(),
                rng: SmallRng::seed_from_u64(seed),
                stats: FaultStats::default(),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The rules in force.
    pub fn rules(&self) -> FaultRules {
        self.lock().rules.clone()
    }

    /// Replaces the rules.
    pub fn set_rules(&self, rules: FaultRules) {
        self.lock().rules = rules;
    }

    /// Sets the loss probability, keeping the other rules.
    pub fn set_loss(&self, loss: f64) {
        self.lock().rules.loss = loss.clamp(0.0, 1.0);
    }

    /// Drops every packet to `addrs` from now on.
    pub fn blackhole(&self, addrs: impl IntoIterator<Item = SocketAddr>) {
        self.lock().rules.blackholed.extend(addrs);
    }

    /// Stops dropping packets by destination.
    pub fn clear_blackholes(&self) {
        self.lock().rules.blackholed.clear();
    }

    /// Packet counts so far.
    pub fn stats(&self) -> FaultStats {
        self.lock().stats
    }

    /// Decides the fate of one packet: how many copies to send, and after what delay.
    fn decide(&self, destination: SocketAddr) -> (u32, Duration) {
        let mut state = self.lock();
        let State { rules, rng, stats } = &mut *state;
        stats.packets += 1;
        if rules.blackholed.contains(&destination) {
            stats.blackholed += 1;
            return (0, Duration::ZERO);
        }
        if rules.loss > 0.0 && rng.random_bool(rules.loss.clamp(0.0, 1.0)) {
            stats.lost += 1;
            return (0, Duration::ZERO);
        }
        if rules.duplicate > 0.0 && rng.random_bool(rules.duplicate.clamp(0.0, 1.0)) {
            stats.duplicated += 1;
            return (2, rules.delay);
        }
        (1, rules.delay)
    }
}

/// Wraps a real socket and applies a [`FaultController`]'s rules to what it sends.
pub(crate) struct FaultySocket {
    inner: Arc<dyn AsyncUdpSocket>,
    faults: FaultController,
}

impl fmt::Debug for FaultySocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultySocket").finish_non_exhaustive()
    }
}

impl FaultySocket {
    pub(crate) fn new(inner: Arc<dyn AsyncUdpSocket>, faults: FaultController) -> Self {
        Self { inner, faults }
    }
}

impl AsyncUdpSocket for FaultySocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        let (copies, delay) = self.faults.decide(transmit.destination);
        if copies == 0 {
            // Dropped on the floor: report success, as a lossy network would.
            return Ok(());
        }
        if delay.is_zero() {
            for _ in 0..copies {
                self.inner.try_send(transmit)?;
            }
            return Ok(());
        }
        let inner = self.inner.clone();
        let destination = transmit.destination;
        let contents = transmit.contents.to_vec();
        let ecn = transmit.ecn;
        let src_ip = transmit.src_ip;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let transmit = Transmit {
                destination,
                ecn,
                contents: &contents,
                segment_size: None,
                src_ip,
            };
            for _ in 0..copies {
                // A delayed packet that meets a full socket buffer is lost, as it would be.
                let _ = inner.try_send(&transmit);
            }
        });
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        self.inner.poll_recv(cx, bufs, meta)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// One datagram per transmit, so that every rule applies packet by packet.
    fn max_transmit_segments(&self) -> usize {
        1
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}
