//! [`StrictState`]: the agent's optional ZooKeeper client, connected in the background
//! so the agent starts (and serves eventual counters) while ZooKeeper is down.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use countermesh_strict::{Counter, StrictClient, StrictError, StrictOptions, ZooKeeperErrorKind};
use tracing::{info, warn};

use crate::agent::stats::AgentStats;
use crate::zookeeper_security::ZookeeperSecurity;

/// Handles kept open at most; past this the cache starts over (each open handle holds a
/// small combiner task, so the bound keeps a scan over many names from piling them up).
const MAX_CACHED_COUNTERS: usize = 10_000;

/// Why a strict operation did not run or failed.
#[derive(Debug)]
pub(crate) enum StrictFailure {
    /// The agent was started without `--zookeeper`.
    NotConfigured,
    /// No session has been opened yet; `why` is the last attempt's error.
    NotConnected { connect: String, why: String },
    /// The operation ran and failed.
    Op(StrictError),
}

/// Whether an operation may create the counter it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Open {
    /// Writes: a missing counter is created at 0 first.
    OrCreate,
    /// Reads: a missing counter is `NotFound` and nothing is created, so a `GET` (which
    /// any web page can trigger with an `<img>`) never adds a znode.
    Existing,
}

/// Strict mode as the agent sees it.
#[derive(Debug)]
pub(crate) struct StrictState {
    /// The connect string, or `None` when strict mode is not configured.
    connect: Option<String>,
    /// Credentials and TLS settings for the session.
    security: ZookeeperSecurity,
    inner: Arc<Connection>,
}

#[derive(Debug, Default)]
struct Connection {
    client: OnceLock<StrictClient>,
    /// Why the last connection attempt failed, for 503 messages and the status page.
    last_error: Mutex<Option<String>>,
    counters: Mutex<HashMap<String, Counter>>,
}

impl StrictState {
    /// Strict mode for `connect` (or off) with `security` (credentials, TLS). The
    /// connection is opened by [`StrictState::connect_in_background`].
    pub(crate) fn new(connect: Option<String>, security: ZookeeperSecurity) -> Self {
        Self {
            connect,
            security,
            inner: Arc::default(),
        }
    }

    pub(crate) fn configured(&self) -> bool {
        self.connect.is_some()
    }

    pub(crate) fn connected(&self) -> bool {
        self.inner.client.get().is_some()
    }

    /// A one-line state for the status page.
    pub(crate) fn describe(&self) -> String {
        match (&self.connect, self.inner.client.get()) {
            (None, _) => "not configured".to_owned(),
            (Some(connect), Some(_)) => format!("connected to {connect}"),
            (Some(connect), None) => match &*lock(&self.inner.last_error) {
                Some(error) => format!("connecting to {connect} (last attempt: {error})"),
                None => format!("connecting to {connect}"),
            },
        }
    }

    /// Keeps trying to open a session until one succeeds. After that the client itself
    /// reconnects (and renews expired sessions), so this task ends.
    pub(crate) fn connect_in_background(
        &self,
        timeout: Duration,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let connect = self.connect.clone()?;
        let inner = Arc::clone(&self.inner);
        let options = self.security.apply(
            StrictOptions::default()
                .with_op_timeout(timeout)
                .with_session_timeout(Duration::from_secs(6)),
        );
        Some(tokio::spawn(async move {
            let mut pause = Duration::from_millis(500);
            loop {
                match StrictClient::connect(&connect, options.clone()).await {
                    Ok(client) => {
                        info!(zookeeper = %connect, "strict mode connected to ZooKeeper");
                        let _ = inner.client.set(client);
                        *lock(&inner.last_error) = None;
                        return;
                    }
                    Err(StrictError::InvalidConfig(why)) => {
                        // Retrying cannot fix a bad connect string.
                        warn!(zookeeper = %connect, "strict mode disabled: {why}");
                        *lock(&inner.last_error) = Some(format!("invalid configuration: {why}"));
                        return;
                    }
                    Err(error) => {
                        warn!(zookeeper = %connect, %error, "cannot reach ZooKeeper yet; retrying");
                        *lock(&inner.last_error) = Some(error.to_string());
                    }
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }))
    }

    fn client(&self) -> Result<&StrictClient, StrictFailure> {
        let Some(connect) = &self.connect else {
            return Err(StrictFailure::NotConfigured);
        };
        self.inner.client.get().ok_or_else(|| {
            let why = lock(&self.inner.last_error)
                .clone()
                .unwrap_or_else(|| "still connecting".to_owned());
            StrictFailure::NotConnected {
                connect: connect.clone(),
                why,
            }
        })
    }

    /// Opens the counter `name` (creating it at 0 if absent and `mode` allows), from the
    /// cache if possible.
    async fn open(
        &self,
        client: &StrictClient,
        name: &str,
        mode: Open,
    ) -> Result<Counter, StrictError> {
        if let Some(counter) = lock(&self.inner.counters).get(name) {
            return Ok(counter.clone());
        }
        let counter = match mode {
            Open::OrCreate => client.counter(name).await?,
            Open::Existing => {
                client
                    .existing_counter(name)
                    .await?
                    .ok_or_else(|| StrictError::NotFound {
                        name: name.to_owned(),
                    })?
            }
        };
        let mut counters = lock(&self.inner.counters);
        if counters.len() >= MAX_CACHED_COUNTERS {
            counters.clear();
        }
        counters.insert(name.to_owned(), counter.clone());
        Ok(counter)
    }

    fn forget(&self, name: &str) {
        lock(&self.inner.counters).remove(name);
    }

    /// Runs `op` on the counter `name` (validated), recording its latency and outcome
    /// (`label` names the outcome of a success, e.g. `mismatch` for a failed CAS).
    ///
    /// With [`Open::OrCreate`] a missing counter is created at 0 first. A cached handle
    /// to a counter deleted since answers `NotFound` (which had no effect), so the
    /// counter is opened again (re-created only with `OrCreate`) and the operation runs
    /// once more.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        stats: &AgentStats,
        (op, mode): (&'static str, Open),
        name: &str,
        label: fn(&T) -> &'static str,
        f: F,
    ) -> Result<T, StrictFailure>
    where
        F: Fn(Counter) -> Fut,
        Fut: Future<Output = Result<T, StrictError>>,
    {
        let client = self.client()?;
        let started = Instant::now();
        let result = async {
            let counter = self.open(client, name, mode).await?;
            match f(counter).await {
                Err(StrictError::NotFound { .. }) => {
                    self.forget(name);
                    let counter = self.open(client, name, mode).await?;
                    f(counter).await
                }
                other => other,
            }
        }
        .await;
        let outcome = match &result {
            Ok(value) => label(value),
            Err(error) => outcome_label(error),
        };
        stats.record_strict(op, outcome, started.elapsed());
        result.map_err(StrictFailure::Op)
    }

    /// Deletes the counter `name` (validated); succeeds if it did not exist.
    pub(crate) async fn delete(&self, stats: &AgentStats, name: &str) -> Result<(), StrictFailure> {
        let client = self.client()?;
        let started = Instant::now();
        self.forget(name);
        let result = client.delete(name).await;
        let outcome = match &result {
            Ok(()) => "ok",
            Err(error) => outcome_label(error),
        };
        stats.record_strict("delete", outcome, started.elapsed());
        result.map_err(StrictFailure::Op)
    }
}

/// The `outcome` label of a failed strict operation.
fn outcome_label(error: &StrictError) -> &'static str {
    match error {
        StrictError::InvalidName { .. } => "invalid_name",
        StrictError::NotFound { .. } => "not_found",
        StrictError::Overflow { .. } => "overflow",
        StrictError::Conflict { .. } => "conflict",
        StrictError::Unavailable { .. } | StrictError::SessionExpired => "unavailable",
        StrictError::Ambiguous { .. } => "ambiguous",
        StrictError::OpIdReused { .. } => "op_id_reused",
        StrictError::ZooKeeper(zk)
            if matches!(
                zk.kind(),
                ZooKeeperErrorKind::NoAuth
                    | ZooKeeperErrorKind::AuthFailed
                    | ZooKeeperErrorKind::InvalidAcl
            ) =>
        {
            "not_authorized"
        }
        _ => "error",
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
