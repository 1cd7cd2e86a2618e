//! Pauses between retries: exponential for an unreachable ZooKeeper, short and jittered
//! for version conflicts (so that contending writers stop colliding in lockstep).

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use tokio::time::Instant;

/// The first pause after a transport failure.
const FIRST: Duration = Duration::from_millis(10);
/// The longest pause after transport failures.
const LONGEST: Duration = Duration::from_millis(250);
/// The longest pause after a version conflict.
const LONGEST_CONFLICT_MS: u64 = 8;

/// Retry pacing for one operation.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    rng: SmallRng,
}

impl Backoff {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            next: FIRST,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// Sleeps before retrying after a lost connection or a refusal, never past `deadline`.
    pub(crate) async fn after_failure(&mut self, deadline: Instant) {
        let pause = self
            .next
            .min(deadline.saturating_duration_since(Instant::now()));
        self.next = (self.next * 2).min(LONGEST);
        tokio::time::sleep(pause).await;
    }

    /// Sleeps a random moment after the `conflicts`-th version conflict. The first
    /// conflict retries at once: usually it only means the cached version was stale.
    pub(crate) async fn after_conflict(&mut self, conflicts: u32, deadline: Instant) {
        if conflicts <= 1 {
            return;
        }
        let cap_ms = (1u64 << conflicts.min(6)).min(LONGEST_CONFLICT_MS);
        let pause = Duration::from_micros(self.rng.random_range(0..=cap_ms * 1000));
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
    }
}
