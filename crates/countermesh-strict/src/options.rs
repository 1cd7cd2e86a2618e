//! Tunables of a [`crate::StrictClient`], with defaults that suit a LAN ensemble.

use std::time::Duration;

use crate::error::StrictError;
use crate::security::{AclPolicy, Credentials, TlsConfig};

/// Options for [`crate::StrictClient::connect`].
///
/// Build one with [`StrictOptions::default`] and the `with_*` methods.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StrictOptions {
    /// The ZooKeeper session timeout asked for (the server clamps it to its own
    /// `minSessionTimeout..=maxSessionTimeout`). Default 6 s.
    pub session_timeout: Duration,
    /// How long one batch may take in total, retries and reconnects included, before
    /// its operations fail with [`StrictError::Unavailable`] (or, if a write of it is
    /// unresolved, [`StrictError::Ambiguous`]). An operation may first wait for the batch
    /// ahead of it, so it completes within about twice this. Also bounds
    /// [`crate::StrictClient::connect`] and each non-combined request. Default 15 s.
    pub op_timeout: Duration,
    /// How many version conflicts (another writer got there first) one operation
    /// retries before it fails with [`StrictError::Conflict`]. Default 1000.
    pub max_conflict_retries: u32,
    /// Whether an expired session is replaced by a new one. Every write carries an op-id
    /// receipt, so retrying through a new session is safe; turning this off makes the
    /// client report [`StrictError::SessionExpired`] instead. Default on.
    pub reconnect_on_expiry: bool,
    /// The most operations one combined write carries. Default 1024.
    pub max_batch: usize,
    /// How long the combiner waits for more operations after the first one of a batch
    /// arrives. Zero (the default) never waits: a batch is whatever queued up while the
    /// previous write was in flight, so an idle counter adds no latency.
    pub batch_window: Duration,
    /// How many finished receipts one write deletes on the side. Default 0: finished
    /// receipts are deleted by the background task every `receipt_flush_interval`, up to
    /// 256 in one `multi`. Carrying deletes inside each write makes every write a bigger
    /// transaction on the caller's critical path (see BENCHMARKS.md, strict section).
    pub piggyback_deletes: usize,
    /// How often the background task deletes finished receipts that no write carried
    /// away. Default 500 ms.
    pub receipt_flush_interval: Duration,
    /// How long every receipt this client writes is kept, by ZooKeeper's clock: it is
    /// recorded in the receipt, and no client's sweep deletes it earlier, whatever that
    /// client's own settings. It is also the lifetime of a caller-chosen
    /// [`crate::OpId`]: within it a retry returns the original result. This client's sweep
    /// deletes receipts older than both this and their recorded hold. Must exceed twice
    /// `op_timeout`. Default 10 minutes.
    pub receipt_max_age: Duration,
    /// How often the background task sweeps orphaned receipts; `None` turns the periodic
    /// sweep off ([`crate::StrictClient::sweep_receipts`] still works). Default 5 minutes.
    pub sweep_interval: Option<Duration>,
    /// Credentials to authenticate with (digest, or SASL with the `sasl` feature).
    /// Default none.
    pub credentials: Option<Credentials>,
    /// TLS to ZooKeeper's secure client port (needs the `tls` feature). Default none
    /// (plain TCP).
    pub tls: Option<TlsConfig>,
    /// The ACL of every znode this client creates. Default [`AclPolicy::Auto`]:
    /// creator-only when `credentials` are set, else open to anyone.
    pub acl: AclPolicy,
}

impl Default for StrictOptions {
    fn default() -> Self {
        Self {
            session_timeout: Duration::from_secs(6),
            op_timeout: Duration::from_secs(15),
            max_conflict_retries: 1000,
            reconnect_on_expiry: true,
            max_batch: 1024,
            batch_window: Duration::ZERO,
            piggyback_deletes: 0,
            receipt_flush_interval: Duration::from_millis(500),
            receipt_max_age: Duration::from_secs(600),
            sweep_interval: Some(Duration::from_secs(300)),
            credentials: None,
            tls: None,
            acl: AclPolicy::Auto,
        }
    }
}

impl StrictOptions {
    /// Sets [`StrictOptions::session_timeout`].
    #[must_use]
    pub fn with_session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// Sets [`StrictOptions::op_timeout`].
    #[must_use]
    pub fn with_op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// Sets [`StrictOptions::max_conflict_retries`].
    #[must_use]
    pub fn with_max_conflict_retries(mut self, retries: u32) -> Self {
        self.max_conflict_retries = retries;
        self
    }

    /// Sets [`StrictOptions::reconnect_on_expiry`].
    #[must_use]
    pub fn with_reconnect_on_expiry(mut self, reconnect: bool) -> Self {
        self.reconnect_on_expiry = reconnect;
        self
    }

    /// Sets [`StrictOptions::max_batch`].
    #[must_use]
    pub fn with_max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }

    /// Sets [`StrictOptions::batch_window`].
    #[must_use]
    pub fn with_batch_window(mut self, window: Duration) -> Self {
        self.batch_window = window;
        self
    }

    /// Sets [`StrictOptions::receipt_max_age`].
    #[must_use]
    pub fn with_receipt_max_age(mut self, age: Duration) -> Self {
        self.receipt_max_age = age;
        self
    }

    /// Sets [`StrictOptions::piggyback_deletes`].
    #[must_use]
    pub fn with_piggyback_deletes(mut self, deletes: usize) -> Self {
        self.piggyback_deletes = deletes;
        self
    }

    /// Sets [`StrictOptions::sweep_interval`].
    #[must_use]
    pub fn with_sweep_interval(mut self, interval: Option<Duration>) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// Sets [`StrictOptions::receipt_flush_interval`].
    #[must_use]
    pub fn with_receipt_flush_interval(mut self, interval: Duration) -> Self {
        self.receipt_flush_interval = interval;
        self
    }

    /// Sets [`StrictOptions::credentials`].
    #[must_use]
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Sets [`StrictOptions::tls`].
    #[must_use]
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets [`StrictOptions::acl`].
    #[must_use]
    pub fn with_acl(mut self, acl: AclPolicy) -> Self {
        self.acl = acl;
        self
    }

    /// Checks these options as [`crate::StrictClient::connect`] does, without
    /// connecting: the timing rules, the credentials, and the TLS settings (the PEM is
    /// parsed). A program that connects in the background can call this at start so a
    /// bad setting fails at once. Errors are [`StrictError::InvalidConfig`].
    pub fn check(&self) -> Result<(), StrictError> {
        self.validate()?;
        crate::security::Security::new(self.credentials.clone(), self.tls.clone(), self.acl)
            .map(|_| ())
    }

    /// Rejects combinations that would break a guarantee.
    pub(crate) fn validate(&self) -> Result<(), StrictError> {
        if self.op_timeout.is_zero() {
            return Err(StrictError::InvalidConfig("op_timeout must be positive"));
        }
        if self.session_timeout.is_zero() {
            return Err(StrictError::InvalidConfig(
                "session_timeout must be positive",
            ));
        }
        if self.max_batch == 0 {
            return Err(StrictError::InvalidConfig("max_batch must be at least 1"));
        }
        // A receipt swept while its operation may still retry would let that retry apply
        // a second time, so the sweep age must clear the longest retry with room to spare.
        if self.receipt_max_age <= self.op_timeout.saturating_mul(2) {
            return Err(StrictError::InvalidConfig(
                "receipt_max_age must exceed twice op_timeout",
            ));
        }
        if self.sweep_interval.is_some_and(|i| i.is_zero()) {
            return Err(StrictError::InvalidConfig(
                "sweep_interval must be positive",
            ));
        }
        if self.receipt_flush_interval.is_zero() {
            return Err(StrictError::InvalidConfig(
                "receipt_flush_interval must be positive",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(StrictOptions::default().validate(), Ok(()));
    }

    #[test]
    fn sweep_age_must_clear_the_retry_window() {
        let opts = StrictOptions::default()
            .with_op_timeout(Duration::from_secs(10))
            .with_receipt_max_age(Duration::from_secs(20));
        assert!(matches!(
            opts.validate(),
            Err(StrictError::InvalidConfig(_))
        ));
    }

    #[test]
    fn zero_batch_is_rejected() {
        let opts = StrictOptions::default().with_max_batch(0);
        assert!(matches!(
            opts.validate(),
            Err(StrictError::InvalidConfig(_))
        ));
    }
}
