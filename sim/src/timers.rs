//! [`TimerHeap`]: each node's next deadline in an indexed binary min-heap.
//!
//! A node has at most one entry (its `poll_timeout`), so the heap never holds more than
//! the number of running nodes, and rescheduling a node is a sift in place: O(log N),
//! with no stale entries to skip. Ties order by node index, which keeps runs
//! deterministic.

/// Marks a node without an entry.
const ABSENT: u32 = u32::MAX;

/// Next deadline per node, earliest first.
#[derive(Debug, Default, Clone)]
pub struct TimerHeap {
    /// `(deadline, node)` in heap order.
    heap: Vec<(u64, u32)>,
    /// Each node's position in `heap`, or [`ABSENT`].
    position: Vec<u32>,
}

impl TimerHeap {
    /// Number of nodes with a deadline.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no node has a deadline.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The earliest `(deadline, node)`.
    pub fn peek(&self) -> Option<(u64, usize)> {
        self.heap.first().map(|&(at, node)| (at, node as usize))
    }

    /// Sets (or moves) node `node`'s deadline, or removes it with `None`.
    pub fn set(&mut self, node: usize, deadline: Option<u64>) {
        if node >= self.position.len() {
            self.position.resize(node + 1, ABSENT);
        }
        let pos = self.position[node];
        match (deadline, pos == ABSENT) {
            (None, true) => {}
            (None, false) => self.remove_at(pos as usize),
            (Some(at), true) => {
                self.heap.push((at, node as u32));
                let last = self.heap.len() - 1;
                self.position[node] = last as u32;
                self.sift_up(last);
            }
            (Some(at), false) => {
                let pos = pos as usize;
                let old = self.heap[pos].0;
                self.heap[pos].0 = at;
                if at < old {
                    self.sift_up(pos);
                } else {
                    self.sift_down(pos);
                }
            }
        }
    }

    fn remove_at(&mut self, pos: usize) {
        let node = self.heap[pos].1 as usize;
        let last = self.heap.len() - 1;
        self.swap(pos, last);
        self.heap.pop();
        self.position[node] = ABSENT;
        if pos < self.heap.len() {
            self.sift_down(pos);
            self.sift_up(pos);
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.position[self.heap[a].1 as usize] = a as u32;
        self.position[self.heap[b].1 as usize] = b as u32;
    }

    fn sift_up(&mut self, mut pos: usize) {
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.heap[pos] < self.heap[parent] {
                self.swap(pos, parent);
                pos = parent;
            } else {
                break;
            }
        }
    }

    fn sift_down(&mut self, mut pos: usize) {
        loop {
            let (left, right) = (2 * pos + 1, 2 * pos + 2);
            let mut smallest = pos;
            if left < self.heap.len() && self.heap[left] < self.heap[smallest] {
                smallest = left;
            }
            if right < self.heap.len() && self.heap[right] < self.heap[smallest] {
                smallest = right;
            }
            if smallest == pos {
                break;
            }
            self.swap(pos, smallest);
            pos = smallest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};

    /// The heap agrees with a brute-force minimum under random sets and removals.
    #[test]
    fn matches_a_linear_scan() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut heap = TimerHeap::default();
        let mut model: Vec<Option<u64>> = vec![None; 50];
        for _ in 0..20_000 {
            let node = rng.random_range(0..50);
            let deadline = rng.random_bool(0.8).then(|| rng.random_range(0..1_000));
            heap.set(node, deadline);
            model[node] = deadline;
            let expected = model
                .iter()
                .enumerate()
                .filter_map(|(i, d)| d.map(|d| (d, i)))
                .min();
            assert_eq!(heap.peek(), expected);
            assert_eq!(heap.len(), model.iter().flatten().count());
        }
    }
}
