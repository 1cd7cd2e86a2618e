//! The SWIM target: foca packets (decoded by the node's bincode codec) delivered to a
//! real `Node` from several fake peers, with time passing between them.
//!
//! The codec is crate-private, so it is reached the way a peer reaches it: as datagrams
//! through `Node::handle_message`. The input is a plain framing rather than an
//! `arbitrary` structure, so the seeds are real packets captured from real nodes and
//! libFuzzer mutates packet bytes directly:
//!
//! ```text
//! repeated { control: u8, len: u16 (little-endian), payload: [u8; len] }
//! control bits 0-1: sender (fake peer); bits 2-7: 50 ms steps of time to pass first
//! ```

use std::time::{Duration, Instant};

use countermesh_core::Channel;

use crate::check::{check_store, drain_events, drain_transmits};
use crate::protocol::{Setup, node_addr, peer_addr, swim_datagram};

/// Most packets one input delivers.
pub const MAX_PACKETS: usize = 64;

/// One framed packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Fake peer index.
    pub peer: u8,
    /// Time to pass before delivery.
    pub wait: Duration,
    /// The SWIM payload (without the countermesh envelope).
    pub payload: &'a [u8],
}

/// Splits an input into packets (a truncated last frame delivers what is there).
pub fn parse(mut data: &[u8]) -> Vec<Packet<'_>> {
    let mut packets = Vec::new();
    while let [control, rest @ ..] = data {
        let (len, rest) = match rest {
            [lo, hi, rest @ ..] => (usize::from(u16::from_le_bytes([*lo, *hi])), rest),
            _ => (rest.len(), &[][..]),
        };
        let (payload, rest) = rest.split_at(len.min(rest.len()));
        packets.push(Packet {
            peer: control & 0b11,
            wait: Duration::from_millis(50 * u64::from(control >> 2)),
            payload,
        });
        data = rest;
    }
    packets
}

/// Frames packets the way [`parse`] reads them.
pub fn frame(packets: &[Packet<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in packets {
        let steps = u8::try_from(p.wait.as_millis() / 50).unwrap_or(63).min(63);
        out.push((steps << 2) | (p.peer & 0b11));
        let len = u16::try_from(p.payload.len()).expect("SWIM packets are small");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(p.payload);
    }
    out
}

/// Runs the target: the node joins fake peer 0, then every packet is delivered (after
/// its wait, with timers run), and after each one the node's output is checked.
pub fn run(data: &[u8]) {
    let setup = Setup {
        small_messages: false,
        ..Setup::plain()
    };
    let mut now = Instant::now();
    let mut node = setup.node(now);
    node.join(peer_addr(0), now);
    drain_transmits(&mut node);
    for packet in parse(data).into_iter().take(MAX_PACKETS) {
        if !packet.wait.is_zero() {
            now += packet.wait;
            node.handle_timeout(now);
        }
        let bytes = swim_datagram(packet.payload);
        let _ = node.handle_message(peer_addr(packet.peer), Channel::Datagram, &bytes, now);
        drain_transmits(&mut node);
        drain_events(&mut node);
        let members = node.members();
        assert!(
            members.iter().all(|m| m.addr() != node_addr()),
            "the node lists itself as a member: {members:?}"
        );
        for (i, m) in members.iter().enumerate() {
            assert!(
                !members[..i].iter().any(|o| o.addr() == m.addr()),
                "two members share the address {}: {members:?}",
                m.addr()
            );
        }
    }
    // Two seconds later every timer the packets started has run: probes, suspicion,
    // the next gossip round.
    now += Duration::from_secs(2);
    node.handle_timeout(now);
    drain_transmits(&mut node);
    check_store(node.store(), |_| Some(0));
}
