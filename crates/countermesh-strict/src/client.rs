//! [`StrictClient`]: one ZooKeeper session, the counters opened through it, and the
//! background task that cleans up receipts.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::mpsc;
use tokio::time::Instant;
use zookeeper_client as zk;

use crate::backoff::Backoff;
use crate::combiner::Combiner;
use crate::counter::{Counter, CounterShared};
use crate::encoding::decode;
use crate::error::StrictError;
use crate::name::validate_name;
use crate::op_id::OpIds;
use crate::options::StrictOptions;
use crate::receipts::{PendingDeletes, SweepReport, delete_all, sweep};
use crate::security::Security;
use crate::session::{COUNTERS, Failure, NoClient, Session, classify};
use crate::single::{Single, SingleOutcome};
use crate::stats::{Stats, StrictStats};

/// A client for strict-mode counters: one ZooKeeper session (replaced if it expires)
/// under one root path.
///
/// Cloning is cheap and shares the session and the per-counter combiners. Dropping the
/// last clone and the last [`Counter`] closes the session.
///
/// Every method must be called within a tokio runtime with the time driver enabled.
#[derive(Debug, Clone)]
pub struct StrictClient {
    shared: Arc<ClientShared>,
}

/// What the client, its counters and its background task share.
#[derive(Debug)]
pub(crate) struct ClientShared {
    pub(crate) session: Session,
    pub(crate) opts: StrictOptions,
    pub(crate) op_ids: OpIds,
    pub(crate) pending: PendingDeletes,
    pub(crate) stats: Stats,
    /// How every znode this client creates is created (its ACL).
    pub(crate) create_mode: zk::CreateOptions<'static>,
    counters: Mutex<HashMap<String, Weak<CounterShared>>>,
}

impl StrictClient {
    /// Connects to ZooKeeper.
    ///
    /// `connect_string` is the usual ZooKeeper form, `host:port[,host:port…][/root]`. The
    /// root path (a chroot) and the `counters` and `receipts` directories below it are
    /// created if missing; existing ones are not written to, so a root prepared by an
    /// administrator under a parent this client may not write to works. Fails with
    /// [`StrictError::Unavailable`] if no session can be established within
    /// [`StrictOptions::op_timeout`], and with [`StrictError::ZooKeeper`] if the server
    /// refuses the credentials or the root's ACL refuses this client.
    pub async fn connect(connect_string: &str, opts: StrictOptions) -> Result<Self, StrictError> {
        opts.validate()?;
        let security = Security::new(opts.credentials.clone(), opts.tls.clone(), opts.acl)?;
        let create_mode = security.create_mode();
        let session = Session::open(connect_string, &opts, security).await?;
        let shared = Arc::new(ClientShared {
            session,
            opts,
            op_ids: OpIds::new(),
            pending: PendingDeletes::default(),
            stats: Stats::default(),
            create_mode,
            counters: Mutex::new(HashMap::new()),
        });
        tokio::spawn(maintain(Arc::downgrade(&shared)));
        Ok(Self { shared })
    }

    /// Opens the counter `name`, creating it with the value 0 if it does not exist.
    ///
    /// Every handle to the same name from this client shares one combiner, so their
    /// concurrent operations are batched together. The create carries a receipt like
    /// every write: if its reply is lost and ZooKeeper stays unreachable, this fails with
    /// [`StrictError::Ambiguous`] (the counter may or may not have been created), never
    /// with a "no effect" error.
    pub async fn counter(&self, name: &str) -> Result<Counter, StrictError> {
        validate_name(name)?;
        let path = format!("{COUNTERS}/{name}");
        let deadline = self.shared.deadline();
        self.shared
            .write_once(Single::Create { path: &path }, deadline)
            .await?;
        // Refuse a znode that is not ours before any operation builds on it.
        self.shared.read(deadline, name, &path).await?;
        Ok(self.shared.handle(name, path))
    }

    /// Opens the counter `name` only if it exists: `Ok(None)` if it does not. Nothing is
    /// written (one read), so this is the way to look a counter up without creating it.
    ///
    /// The answer is ZooKeeper's ordinary read: a counter another client created a moment
    /// ago may not be visible yet through a server that lags behind.
    pub async fn existing_counter(&self, name: &str) -> Result<Option<Counter>, StrictError> {
        validate_name(name)?;
        let path = format!("{COUNTERS}/{name}");
        match self.shared.read(self.shared.deadline(), name, &path).await {
            Ok(_) => Ok(Some(self.shared.handle(name, path))),
            Err(StrictError::NotFound { .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Deletes the counter `name`. Succeeds if the counter does not exist afterwards,
    /// including when it never existed. Like every write it carries a receipt: a lost
    /// reply that cannot be settled before the deadline is [`StrictError::Ambiguous`].
    ///
    /// Deleting a counter that other clients still use is not supported: another process
    /// whose cached version happens to match the version the counter reaches after being
    /// created again could apply one write to the old value. Handles from this client
    /// stop trusting their cache.
    pub async fn delete(&self, name: &str) -> Result<(), StrictError> {
        validate_name(name)?;
        let path = format!("{COUNTERS}/{name}");
        let deleted = self
            .shared
            .write_once(Single::Delete { path: &path }, self.shared.deadline())
            .await;
        if let Some(counter) = self.shared.registry().get(name).and_then(Weak::upgrade) {
            counter.epoch.fetch_add(1, Ordering::AcqRel);
        }
        match deleted? {
            SingleOutcome::Applied | SingleOutcome::AlreadyThere => Ok(()),
        }
    }

    /// Deletes, now instead of at the periodic sweep, receipts older than both
    /// [`StrictOptions::receipt_max_age`] and the hold their writer recorded in them.
    /// They belong to operations that gave up (or to processes that died) long ago, or to
    /// caller op-ids past their lifetime, so no retry can still need them. Sweeping only
    /// deletes such receipts, so an error (even `Unavailable`) may follow a partial sweep.
    pub async fn sweep_receipts(&self) -> Result<SweepReport, StrictError> {
        let max_age = self.shared.opts.receipt_max_age;
        let report = self
            .shared
            .idempotent(self.shared.deadline(), move |client| async move {
                sweep(&client, max_age).await
            })
            .await?;
        report.map_err(StrictError::from)
    }

    /// What this client has done so far: operations, batches, conflicts, lost replies
    /// and how they were resolved.
    pub fn stats(&self) -> StrictStats {
        self.shared.stats.snapshot(self.shared.session.renewals())
    }

    /// Deletes, now, every receipt whose operation's result is known. Receipts are
    /// otherwise deleted by the background flush (or on the side of later writes, with
    /// `piggyback_deletes`); this is
    /// for a clean shutdown. Returns how many remain queued (those ZooKeeper refused).
    pub async fn flush_receipts(&self) -> Result<usize, StrictError> {
        let handle = self
            .shared
            .session
            .client(self.shared.deadline())
            .await
            .map_err(|err| match err {
                NoClient::Deadline => StrictError::Unavailable {
                    deadline: self.shared.opts.op_timeout,
                },
                NoClient::Expired => StrictError::SessionExpired,
            })?;
        let ids = self.shared.pending.take(usize::MAX);
        let failed = delete_all(&handle.client, ids).await;
        let left = failed.len();
        self.shared.pending.give_back(failed);
        Ok(left)
    }
}

impl ClientShared {
    /// The deadline of an operation starting now.
    pub(crate) fn deadline(&self) -> Instant {
        Instant::now() + self.opts.op_timeout
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<CounterShared>>> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns the live handle for `name`, or starts a combiner and registers a new one.
    fn handle(self: &Arc<Self>, name: &str, path: String) -> Counter {
        let mut registry = self.registry();
        if let Some(shared) = registry.get(name).and_then(Weak::upgrade) {
            return Counter::from_shared(shared);
        }
        registry.retain(|_, counter| counter.strong_count() > 0);
        let (queue, requests) = mpsc::unbounded_channel();
        let epoch = Arc::new(AtomicU64::new(0));
        let combiner = Combiner::new(
            Arc::clone(self),
            name.to_owned(),
            path.clone(),
            Arc::clone(&epoch),
        );
        tokio::spawn(combiner.run(requests));
        let shared = Arc::new(CounterShared {
            name: name.to_owned(),
            path,
            queue,
            epoch,
            client: Arc::clone(self),
        });
        registry.insert(name.to_owned(), Arc::downgrade(&shared));
        Counter::from_shared(shared)
    }

    /// Reads a counter with ZooKeeper's ordinary (sequentially consistent) guarantee.
    pub(crate) async fn read(
        &self,
        deadline: Instant,
        name: &str,
        path: &str,
    ) -> Result<i64, StrictError> {
        let read_path = path.to_owned();
        let read = self
            .idempotent(deadline, move |client| {
                let path = read_path.clone();
                async move { client.get_data(&path).await }
            })
            .await?;
        match read {
            Ok((data, _)) => decode(path, &data),
            Err(zk::Error::NoNode) => Err(StrictError::NotFound {
                name: name.to_owned(),
            }),
            Err(err) => Err(err.into()),
        }
    }

    /// Runs a request that is safe to repeat until it gets an answer or `deadline`
    /// passes. Semantic answers (`NoNode`, `NodeExists`, `BadVersion`, `NotEmpty`) come
    /// back in the inner result for the caller to interpret.
    pub(crate) async fn idempotent<T, F, Fut>(
        &self,
        deadline: Instant,
        mut request: F,
    ) -> Result<Result<T, zk::Error>, StrictError>
    where
        F: FnMut(zk::Client) -> Fut,
        Fut: Future<Output = Result<T, zk::Error>>,
    {
        let mut backoff = Backoff::new(0);
        loop {
            let handle = self
                .session
                .client(deadline)
                .await
                .map_err(|err| match err {
                    NoClient::Deadline => StrictError::Unavailable {
                        deadline: self.opts.op_timeout,
                    },
                    NoClient::Expired => StrictError::SessionExpired,
                })?;
            let failure =
                match tokio::time::timeout_at(deadline, request(handle.client.clone())).await {
                    Err(_elapsed) => {
                        return Err(StrictError::Unavailable {
                            deadline: self.opts.op_timeout,
                        });
                    }
                    Ok(Ok(value)) => return Ok(Ok(value)),
                    Ok(Err(
                        err @ (zk::Error::NoNode
                        | zk::Error::NodeExists
                        | zk::Error::BadVersion
                        | zk::Error::NotEmpty),
                    )) => return Ok(Err(err)),
                    Ok(Err(err)) => classify(err),
                };
            match failure {
                Failure::Fatal(err) => return Err(err),
                Failure::Expired => self.session.invalidate(handle.generation),
                Failure::Lost | Failure::Refused => backoff.after_failure(deadline).await,
            }
        }
    }
}

/// The background task: deletes finished receipts that no write carried away, and
/// sweeps orphaned ones. Ends when the client and all its counters are gone.
async fn maintain(shared: Weak<ClientShared>) {
    let (flush_every, sweep_every) = match shared.upgrade() {
        Some(shared) => (
            shared.opts.receipt_flush_interval,
            shared.opts.sweep_interval,
        ),
        None => return,
    };
    let mut next_sweep = sweep_every.map(|every| Instant::now() + every);
    let mut ticker = tokio::time::interval(flush_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        // Receipts that waited a whole interval were not picked up by any write.
        let stale = shared.pending.take_older(Instant::now() - flush_every);
        if !stale.is_empty() {
            match shared.session.client(shared.deadline()).await {
                Ok(handle) => {
                    let failed = delete_all(&handle.client, stale).await;
                    shared.pending.give_back(failed);
                }
                Err(_) => shared.pending.give_back(stale),
            }
        }
        if let (Some(at), Some(every)) = (next_sweep, sweep_every)
            && Instant::now() >= at
        {
            next_sweep = Some(Instant::now() + every);
            if let Ok(handle) = shared.session.client(shared.deadline()).await {
                match sweep(&handle.client, shared.opts.receipt_max_age).await {
                    Ok(report) => {
                        Stats::bump(&shared.stats.sweeps, 1);
                        Stats::bump(&shared.stats.receipts_swept, report.deleted as u64);
                    }
                    Err(err) => {
                        tracing::debug!(%err, "receipt sweep failed; the next one will retry");
                    }
                }
            }
        }
    }
}
