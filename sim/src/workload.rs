//! The add workload and probe adds: every add goes through a real `Counter` handle of
//! the node and is recorded in the oracle at the same instant.
//!
//! A node is a *writer* if it is among the first `writers` fraction of slots, spread
//! evenly (slot `i` writes if `floor((i + 1) · w) > floor(i · w)`), so nodes that join
//! later write in the same proportion. Each tick issues `running × rate × tick` adds
//! (fractions carry over) at uniformly chosen running nodes; picks that land on a
//! non-writer are skipped, which gives writers the configured rate.

use rand::RngExt;

use crate::engine::World;
use crate::lifecycle::Control;

/// Whether slot `i` writes when a fraction `w` of nodes do.
pub(crate) fn is_writer(i: usize, w: f64) -> bool {
    ((i + 1) as f64 * w).floor() > (i as f64 * w).floor()
}

impl World {
    /// One tick of workload adds; schedules the next until adds stop.
    pub(crate) fn workload_tick(&mut self) {
        let w = self.scenario.file.workload.clone();
        let tick = crate::lifecycle::secs(w.tick_ms / 1000.0);
        let wanted = self.live.len() as f64 * w.adds_per_writer_per_s * (w.tick_ms / 1000.0)
            + self.watch.add_carry;
        let count = wanted.floor() as usize;
        self.watch.add_carry = wanted - count as f64;
        for _ in 0..count {
            if self.live.is_empty() {
                break;
            }
            let node = self.live.nth(self.rng.random_range(0..self.live.len()));
            let counter = self.rng.random_range(0..w.counters);
            let amount = self.rng.random_range(1..=w.amount_max);
            if is_writer(node, w.writers) {
                self.add(node, counter, i64::from(amount));
            }
        }
        if self.now + tick < self.scenario.adds_stop {
            self.schedule(self.now + tick, Control::Workload);
        }
    }

    /// Adds `amount` to workload counter `counter` at `node` and records it.
    fn add(&mut self, node: usize, counter: usize, amount: i64) {
        let name = format!("c{counter}");
        let index = self.names.intern(&name);
        let host = &mut self.hosts[node];
        let Some(n) = host.node.as_mut() else {
            return;
        };
        if host.handles.len() <= counter {
            host.handles.resize(counter + 1, None);
        }
        let handle = match &host.handles[counter] {
            Some(handle) => handle,
            None => {
                let handle = n
                    .store_mut()
                    .counter(&name)
                    .expect("workload counter names are valid");
                host.handles[counter].insert(handle)
            }
        };
        handle.add(amount);
        self.oracle.add(host.record, index, i128::from(amount));
    }

    /// Probe `k`: adds 1 to its own counter at a random running node.
    pub(crate) fn probe(&mut self, k: u32) {
        let p = self.scenario.file.probes.clone();
        let stop = p
            .stop_s
            .map_or(self.scenario.adds_stop, crate::lifecycle::secs);
        if self.now >= stop {
            return;
        }
        if !self.live.is_empty() {
            let origin = self.live.nth(self.rng.random_range(0..self.live.len()));
            let name = format!("probe{k}");
            let index = self.names.intern(&name);
            let host = &mut self.hosts[origin];
            if let Some(node) = host.node.as_mut() {
                node.store_mut()
                    .counter(&name)
                    .expect("probe names are valid")
                    .add(1);
                self.oracle.add(host.record, index, 1);
                let targets: Vec<usize> = (0..self.live.len()).map(|j| self.live.nth(j)).collect();
                self.probes
                    .start(k, name, origin, self.now, targets.into_iter());
            }
        }
        let next = self.now + crate::lifecycle::secs(p.every_s);
        if next < stop {
            self.schedule(next, Control::Probe(k + 1));
        }
    }

    /// Sabotage: an add at `node` that the oracle never hears of.
    pub(crate) fn unrecorded_add(&mut self, node: usize) {
        if let Some(n) = self.hosts[node].node.as_mut() {
            n.store_mut().counter("c0").expect("valid name").add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_writer;

    #[test]
    fn writers_are_spread_evenly() {
        assert!((0..100).all(|i| is_writer(i, 1.0)));
        assert!((0..100).all(|i| !is_writer(i, 0.0)));
        assert_eq!((0..1000).filter(|&i| is_writer(i, 0.1)).count(), 100);
        assert_eq!((0..10).filter(|&i| is_writer(i, 0.25)).count(), 2);
    }
}
