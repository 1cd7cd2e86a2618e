//! Node numbering: simulated addresses, node ranges in scenarios, and a compact bit set.
//!
//! Node `i` listens at `198.18.x.y:7946`, the `i + 1`-th address of 198.18.0.0/15
//! (RFC 2544 reserves it for benchmarking; nothing is ever sent to it, the simulator
//! never opens a socket). The mapping is arithmetic in both directions, so routing a
//! message costs no lookup table.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

const BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);
const PORT: u16 = 7946;

/// The address of node `index`.
pub fn address(index: usize) -> SocketAddr {
    let ip = Ipv4Addr::from(BASE + 1 + index as u32);
    SocketAddr::new(IpAddr::V4(ip), PORT)
}

/// The node index behind a simulated address, if it is one.
pub fn index_of(addr: SocketAddr) -> Option<usize> {
    match addr {
        SocketAddr::V4(v4) if v4.port() == PORT => {
            let raw = u32::from(*v4.ip()).checked_sub(BASE + 1)?;
            (raw < 1 << 17).then_some(raw as usize)
        }
        _ => None,
    }
}

/// Why a node range did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeRangeError {
    /// Not of the form `a..b` or `a%..b%`.
    #[error("{0:?} is not a node range like \"0..10\" or \"0%..50%\"")]
    Syntax(String),
    /// The range is empty, inverted or beyond the scenario's nodes.
    #[error("{text:?} is not a non-empty range within the {nodes} initial nodes")]
    Bounds {
        /// The range as written.
        text: String,
        /// How many initial nodes the scenario has.
        nodes: usize,
    },
}

/// A half-open range of node indices, `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeRange {
    /// First node.
    pub start: usize,
    /// One past the last node.
    pub end: usize,
}

impl NodeRange {
    /// Parses `"a..b"` (indices) or `"a%..b%"` (percentages of `nodes`, rounded down)
    /// against `nodes` initial nodes.
    pub fn parse(text: &str, nodes: usize) -> Result<Self, NodeRangeError> {
        let syntax = || NodeRangeError::Syntax(text.to_owned());
        let (a, b) = text.trim().split_once("..").ok_or_else(syntax)?;
        let bound = |s: &str| -> Result<usize, NodeRangeError> {
            let s = s.trim();
            match s.strip_suffix('%') {
                Some(pct) => {
                    let pct: f64 = pct.trim().parse().map_err(|_| syntax())?;
                    if !(0.0..=100.0).contains(&pct) {
                        return Err(syntax());
                    }
                    Ok((pct / 100.0 * nodes as f64).floor() as usize)
                }
                None => s.parse().map_err(|_| syntax()),
            }
        };
        let (start, end) = (bound(a)?, bound(b)?);
        if start >= end || end > nodes {
            return Err(NodeRangeError::Bounds {
                text: text.to_owned(),
                nodes,
            });
        }
        Ok(Self { start, end })
    }

    /// Number of nodes in the range.
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the range holds no node (never true for a parsed range).
    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }

    /// Whether node `i` is in the range.
    pub fn contains(&self, i: usize) -> bool {
        (self.start..self.end).contains(&i)
    }
}

/// A fixed-size set of node indices, one bit each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    /// An empty set with room for `len` nodes.
    pub fn new(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(64)],
        }
    }

    /// Whether `i` is in the set (false beyond the set's size).
    pub fn contains(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Adds `i`, growing the set if needed. Returns whether it was absent.
    pub fn insert(&mut self, i: usize) -> bool {
        if i / 64 >= self.words.len() {
            self.words.resize(i / 64 + 1, 0);
        }
        let word = &mut self.words[i / 64];
        let absent = *word & (1 << (i % 64)) == 0;
        *word |= 1 << (i % 64);
        absent
    }

    /// Removes `i`. Returns whether it was present.
    pub fn remove(&mut self, i: usize) -> bool {
        match self.words.get_mut(i / 64) {
            Some(word) => {
                let present = *word & (1 << (i % 64)) != 0;
                *word &= !(1 << (i % 64));
                present
            }
            None => false,
        }
    }
}

/// The running nodes, with O(1) insert, remove and uniform random choice.
#[derive(Debug, Clone, Default)]
pub struct LiveSet {
    members: Vec<u32>,
    /// Position of each node in `members`, or `u32::MAX`.
    position: Vec<u32>,
}

impl LiveSet {
    /// Number of running nodes.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether no node runs.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Whether node `i` runs.
    pub fn contains(&self, i: usize) -> bool {
        self.position.get(i).is_some_and(|&p| p != u32::MAX)
    }

    /// Marks node `i` as running.
    pub fn insert(&mut self, i: usize) {
        if i >= self.position.len() {
            self.position.resize(i + 1, u32::MAX);
        }
        if self.position[i] == u32::MAX {
            self.position[i] = self.members.len() as u32;
            self.members.push(i as u32);
        }
    }

    /// Marks node `i` as stopped.
    pub fn remove(&mut self, i: usize) {
        let Some(&pos) = self.position.get(i) else {
            return;
        };
        if pos == u32::MAX {
            return;
        }
        self.members.swap_remove(pos as usize);
        if let Some(&moved) = self.members.get(pos as usize) {
            self.position[moved as usize] = pos;
        }
        self.position[i] = u32::MAX;
    }

    /// The running node at position `k` (`k < len`), for uniform random choice.
    pub fn nth(&self, k: usize) -> usize {
        self.members[k] as usize
    }

    /// Running nodes in ascending index order (allocates; not for per-event use).
    pub fn sorted(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.members.iter().map(|&i| i as usize).collect();
        v.sort_unstable();
        v
    }

    /// The lowest-numbered running node. O(number of stopped low nodes) at worst; used
    /// only by checks, not per event.
    pub fn first(&self) -> Option<usize> {
        self.position.iter().position(|&p| p != u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        for i in [0, 1, 255, 256, 9_999, 130_999] {
            assert_eq!(index_of(address(i)), Some(i));
        }
        assert_eq!(index_of("127.0.0.1:7946".parse().unwrap()), None);
    }

    #[test]
    fn ranges_parse_and_refuse() {
        assert_eq!(
            NodeRange::parse("0..10", 100),
            Ok(NodeRange { start: 0, end: 10 })
        );
        assert_eq!(
            NodeRange::parse("50%..100%", 1000),
            Ok(NodeRange {
                start: 500,
                end: 1000
            })
        );
        assert!(matches!(
            NodeRange::parse("5..5", 10),
            Err(NodeRangeError::Bounds { .. })
        ));
        assert!(matches!(
            NodeRange::parse("0..11", 10),
            Err(NodeRangeError::Bounds { .. })
        ));
        assert!(matches!(
            NodeRange::parse("a..b", 10),
            Err(NodeRangeError::Syntax(_))
        ));
        assert!(matches!(
            NodeRange::parse("0%..200%", 10),
            Err(NodeRangeError::Syntax(_))
        ));
    }

    #[test]
    fn live_set_keeps_positions() {
        let mut live = LiveSet::default();
        for i in 0..10 {
            live.insert(i);
        }
        live.remove(3);
        live.remove(0);
        live.remove(0);
        assert_eq!(live.len(), 8);
        assert!(!live.contains(3));
        assert_eq!(live.first(), Some(1));
        let mut seen: Vec<usize> = (0..live.len()).map(|k| live.nth(k)).collect();
        seen.sort_unstable();
        assert_eq!(seen, vec![1, 2, 4, 5, 6, 7, 8, 9]);
    }
}
