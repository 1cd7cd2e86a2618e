//! [`AgentStats`]: what the agent itself counts (the mesh counts gossip): adds, reads,
//! HTTP responses, RESP connections and commands, strict-operation latencies and
//! outcomes, and the add-rate history the status page draws.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How many one-second add-rate samples the status page gets.
pub(crate) const RATE_SAMPLES: usize = 60;

/// What the agent itself counts (the mesh counts gossip).
#[derive(Debug, Default)]
pub(crate) struct AgentStats {
    /// Add operations accepted (one per single add, one per batch entry).
    pub(crate) adds: AtomicU64,
    /// Eventual reads served (single gets and listed counters' requests).
    pub(crate) reads: AtomicU64,
    /// Batch requests applied.
    pub(crate) batches: AtomicU64,
    /// Batch requests waiting for a parse slot right now (their bodies not read yet).
    pub(crate) batches_waiting: AtomicU64,
    /// HTTP responses by (route, status).
    http: Mutex<BTreeMap<(String, u16), u64>>,
    /// Strict operations: latency histograms by op, counts by (op, outcome).
    strict: Mutex<StrictMetrics>,
    /// Adds per second over the last [`RATE_SAMPLES`] seconds, oldest first.
    rate: Mutex<RateHistory>,
    /// The RESP listener's connections and commands.
    pub(crate) resp: RespStats,
    /// Durable requests and their flushes.
    durable: Mutex<DurableMetrics>,
}

/// Durable requests (HTTP `?durable=true`, RESP `--resp-durable` adds and `WAIT`) by
/// where they came from, and the latency of the flushes they waited for.
#[derive(Debug, Default, Clone)]
pub(crate) struct DurableMetrics {
    /// Requests by (via, outcome), outcome `ok` or `failed`.
    pub(crate) requests: BTreeMap<(&'static str, &'static str), u64>,
    /// How long the flushes took, over both protocols.
    pub(crate) flush: Histogram,
}

/// What the RESP listener counts. Commands are counted by their slot in
/// [`COMMANDS`](crate::resp::commands::COMMANDS) (plus one slot for unknown names), so
/// clients cannot create label values.
#[derive(Debug)]
pub(crate) struct RespStats {
    /// Connections accepted so far (also the source of connection ids).
    pub(crate) connections_total: AtomicU64,
    /// Connections open right now.
    pub(crate) connections_open: AtomicU64,
    /// Streams closed for not being valid RESP.
    pub(crate) protocol_errors: AtomicU64,
    /// Commands run, by slot.
    pub(crate) commands: Vec<AtomicU64>,
    /// Commands answered with an error, by slot.
    pub(crate) errors: Vec<AtomicU64>,
}

impl Default for RespStats {
    fn default() -> Self {
        let slots = || {
            (0..=crate::resp::commands::COMMANDS.len())
                .map(|_| AtomicU64::new(0))
                .collect()
        };
        Self {
            connections_total: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            commands: slots(),
            errors: slots(),
        }
    }
}

impl RespStats {
    /// Counts one command in `slot`, and its error reply if it got one.
    pub(crate) fn count_command(&self, slot: usize, error: bool) {
        if let Some(n) = self.commands.get(slot) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        if error && let Some(n) = self.errors.get(slot) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The command name of a slot: its [`COMMANDS`](crate::resp::commands::COMMANDS)
    /// name, or `unknown`.
    pub(crate) fn slot_name(slot: usize) -> &'static str {
        crate::resp::commands::COMMANDS
            .get(slot)
            .map_or("unknown", |spec| spec.name)
    }
}

#[derive(Debug, Default)]
struct RateHistory {
    samples: VecDeque<u64>,
    last_total: u64,
}

/// Upper bounds (seconds) of the latency histogram buckets (strict operations and
/// durable flushes): a ZooKeeper quorum write on a LAN or an fsync takes around a
/// millisecond; timeouts and slow disks take seconds.
pub(crate) const LATENCY_BUCKETS: [f64; 14] = [
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A cumulative latency histogram in Prometheus' shape.
#[derive(Debug, Default, Clone)]
pub(crate) struct Histogram {
    /// Observations at or below each bound of [`LATENCY_BUCKETS`] (non-cumulative here;
    /// the exporter accumulates).
    pub(crate) buckets: [u64; LATENCY_BUCKETS.len()],
    pub(crate) count: u64,
    pub(crate) sum_seconds: f64,
}

impl Histogram {
    fn observe(&mut self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|&bound| seconds <= bound) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum_seconds += seconds;
    }
}

#[derive(Debug, Default, Clone)]
pub(crate) struct StrictMetrics {
    pub(crate) latency: BTreeMap<&'static str, Histogram>,
    pub(crate) outcomes: BTreeMap<(&'static str, &'static str), u64>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain numbers behind: still usable.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts one batch as waiting for a slot while it lives.
#[derive(Debug)]
pub(crate) struct Waiting<'a>(&'a AtomicU64);

impl<'a> Waiting<'a> {
    pub(crate) fn new(gauge: &'a AtomicU64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl AgentStats {
    pub(crate) fn count_adds(&self, n: u64) {
        self.adds.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn count_read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_http(&self, route: &str, status: u16) {
        let mut http = lock(&self.http);
        if let Some(n) = http.get_mut(&(route.to_owned(), status)) {
            *n += 1;
        } else {
            http.insert((route.to_owned(), status), 1);
        }
    }

    pub(crate) fn http(&self) -> BTreeMap<(String, u16), u64> {
        lock(&self.http).clone()
    }

    pub(crate) fn record_strict(&self, op: &'static str, outcome: &'static str, took: Duration) {
        let mut strict = lock(&self.strict);
        strict.latency.entry(op).or_default().observe(took);
        *strict.outcomes.entry((op, outcome)).or_default() += 1;
    }

    pub(crate) fn strict(&self) -> StrictMetrics {
        lock(&self.strict).clone()
    }

    /// Counts one durable request and the flush it waited for.
    pub(crate) fn record_durable(&self, via: crate::agent::durable::Via, ok: bool, took: Duration) {
        let mut durable = lock(&self.durable);
        durable.flush.observe(took);
        let outcome = if ok { "ok" } else { "failed" };
        *durable.requests.entry((via.as_str(), outcome)).or_default() += 1;
    }

    pub(crate) fn durable(&self) -> DurableMetrics {
        lock(&self.durable).clone()
    }

    /// Records one second's worth of adds; called once a second by the sampler.
    pub(crate) fn sample_rate(&self) {
        let total = self.adds.load(Ordering::Relaxed);
        let mut rate = lock(&self.rate);
        let delta = total.saturating_sub(rate.last_total);
        rate.last_total = total;
        if rate.samples.len() == RATE_SAMPLES {
            rate.samples.pop_front();
        }
        rate.samples.push_back(delta);
    }

    pub(crate) fn rate_history(&self) -> Vec<u64> {
        lock(&self.rate).samples.iter().copied().collect()
    }
}
