//! [`InFlight`] messages, ordered by delivery time in one binary heap.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use countermesh_core::{Channel, MessageKind};

/// A message on the simulated wire. Besides the payload the node produced, it costs
/// 40 bytes.
#[derive(Debug)]
pub struct InFlight {
    /// Delivery time (ns of virtual time).
    pub at: u64,
    /// Send order; breaks ties so delivery order is deterministic.
    pub seq: u64,
    /// Sender.
    pub from: u32,
    /// Receiver.
    pub to: u32,
    /// The receiver's epoch when the message was sent: a message addressed to a process
    /// that has since crashed or restarted is not delivered to its successor.
    pub to_epoch: u32,
    /// The sender's epoch: a crash discards what the crashed process sent that was not
    /// yet delivered.
    pub from_epoch: u32,
    /// Which transport path.
    pub channel: Channel,
    /// What it carries.
    pub kind: MessageKind,
    /// The encoded message, exactly as the node produced it.
    pub payload: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for InFlight {}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: `BinaryHeap` is a max-heap and the earliest message must come first.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Every message in flight, earliest first.
#[derive(Debug, Default)]
pub struct Wire {
    heap: BinaryHeap<InFlight>,
    next_seq: u64,
    bytes: u64,
}

impl Wire {
    /// Puts a message on the wire; `seq` is assigned here.
    pub fn push(&mut self, mut message: InFlight) {
        message.seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += message.payload.len() as u64;
        self.heap.push(message);
    }

    /// Delivery time of the earliest message.
    pub fn peek_time(&self) -> Option<u64> {
        self.heap.peek().map(|m| m.at)
    }

    /// Takes the earliest message.
    pub fn pop(&mut self) -> Option<InFlight> {
        let message = self.heap.pop()?;
        self.bytes -= message.payload.len() as u64;
        Some(message)
    }

    /// Messages in flight.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Payload bytes in flight.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}
