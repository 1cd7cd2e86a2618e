//! The ZooKeeper session behind a client: connecting, waiting out disconnections, and
//! replacing an expired session.
//!
//! zookeeper-client reconnects a live session by itself; this module adds what it leaves
//! to the caller: a deadline on every wait, and a brand-new session once the old one has
//! expired (the op-id receipts make retrying through a new session safe).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use zookeeper_client as zk;

use crate::error::StrictError;
use crate::options::StrictOptions;
use crate::security::Security;

/// Where counters live, relative to the client's root (its chroot).
pub(crate) const COUNTERS: &str = "/counters";
/// Where op-id receipts live, relative to the client's root.
pub(crate) const RECEIPTS: &str = "/receipts";

/// The longest pause between two connection attempts.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// A connected ZooKeeper client and the session generation it belongs to.
#[derive(Debug, Clone)]
pub(crate) struct Handle {
    pub(crate) generation: u64,
    pub(crate) client: zk::Client,
}

/// Why no connected client could be handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NoClient {
    /// The deadline passed first.
    Deadline,
    /// The session expired and reconnecting is turned off.
    Expired,
}

/// How a failed ZooKeeper request is treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The reply was lost: a write may or may not have been applied. Retry.
    Lost,
    /// The session is gone: a write may or may not have been applied. Open a new session
    /// and retry.
    Expired,
    /// The request was refused without effect (throttling, a moved session). Retry.
    Refused,
    /// An error no retry will fix.
    Fatal(StrictError),
}

/// Sorts a transport-level ZooKeeper error. Semantic errors (`NoNode`, `BadVersion`,
/// `NodeExists`, `NotEmpty`) are handled by the callers before they get here.
pub(crate) fn classify(err: zk::Error) -> Failure {
    match err {
        zk::Error::ConnectionLoss
        | zk::Error::Timeout
        // A reply that cannot be decoded says nothing about whether the write happened.
        | zk::Error::UnmarshalError { .. }
        | zk::Error::UnexpectedError(_)
        | zk::Error::Custom(_) => Failure::Lost,
        zk::Error::SessionExpired | zk::Error::ClientClosed => Failure::Expired,
        zk::Error::SessionMoved | zk::Error::Throttled | zk::Error::NotReadOnly | zk::Error::NoHosts => {
            Failure::Refused
        }
        other => Failure::Fatal(other.into()),
    }
}

/// The current session, replaced when it expires.
#[derive(Debug)]
pub(crate) struct Session {
    hosts: String,
    chroot: Option<String>,
    session_timeout: Duration,
    reconnect_on_expiry: bool,
    security: Security,
    current: Mutex<Current>,
    // Serializes reconnects so that many failing operations open one session, not many.
    reconnecting: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Current {
    generation: u64,
    client: Option<zk::Client>,
}

impl Session {
    /// Connects to `connect_string` (hosts, optionally followed by a chroot path) and
    /// creates the chroot and this crate's two directories if they are missing.
    pub(crate) async fn open(
        connect_string: &str,
        opts: &StrictOptions,
        security: Security,
    ) -> Result<Self, StrictError> {
        let (hosts, chroot) = split_chroot(connect_string)?;
        let session = Session {
            hosts: hosts.to_owned(),
            chroot: chroot.map(str::to_owned),
            session_timeout: opts.session_timeout,
            reconnect_on_expiry: opts.reconnect_on_expiry,
            security,
            current: Mutex::new(Current {
                generation: 0,
                client: None,
            }),
            reconnecting: tokio::sync::Mutex::new(()),
        };
        let deadline = Instant::now() + opts.op_timeout;
        let client = session.establish(deadline).await.map_err(|err| match err {
            StrictError::SessionExpired => StrictError::Unavailable {
                deadline: opts.op_timeout,
            },
            other => other,
        })?;
        let mut current = session.current.lock().unwrap_or_else(|e| e.into_inner());
        current.client = Some(client);
        drop(current);
        Ok(session)
    }

    /// Returns a connected client, waiting for a reconnection or opening a new session as
    /// needed, until `deadline`.
    pub(crate) async fn client(&self, deadline: Instant) -> Result<Handle, NoClient> {
        loop {
            let (generation, client) = {
                let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
                (current.generation, current.client.clone())
            };
            match client {
                Some(client) => {
                    let mut watcher = client.state_watcher();
                    match watcher.state() {
                        zk::SessionState::SyncConnected => {
                            return Ok(Handle { generation, client });
                        }
                        state if state.is_terminated() => self.invalidate(generation),
                        _ => {
                            // Disconnected: zookeeper-client is already reconnecting. Wait
                            // for a state change, re-checking now and then in case one was
                            // missed between reading the state and subscribing.
                            let now = Instant::now();
                            if now >= deadline {
                                return Err(NoClient::Deadline);
                            }
                            let wait = (deadline - now).min(Duration::from_millis(100));
                            let _ = tokio::time::timeout(wait, watcher.changed()).await;
                        }
                    }
                }
                None => {
                    if !self.reconnect_on_expiry {
                        return Err(NoClient::Expired);
                    }
                    self.replace(generation, deadline).await?;
                }
            }
        }
    }

    /// How many sessions replaced an expired one so far.
    pub(crate) fn renewals(&self) -> u64 {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .generation
    }

    /// Marks the session of `generation` as expired, so the next [`Session::client`] call
    /// opens a new one.
    pub(crate) fn invalidate(&self, generation: u64) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if current.generation == generation && current.client.is_some() {
            tracing::info!(
                generation,
                "ZooKeeper session expired; a new one will be opened"
            );
            current.client = None;
        }
    }

    /// Opens a new session to replace the expired one of `generation`, unless another
    /// task already did.
    async fn replace(&self, generation: u64, deadline: Instant) -> Result<(), NoClient> {
        let Ok(_guard) = tokio::time::timeout_at(deadline, self.reconnecting.lock()).await else {
            return Err(NoClient::Deadline);
        };
        {
            let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            if current.generation != generation || current.client.is_some() {
                return Ok(());
            }
        }
        let client = self
            .establish(deadline)
            .await
            .map_err(|_| NoClient::Deadline)?;
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current.generation += 1;
        current.client = Some(client);
        Ok(())
    }

    /// Connects a fresh session and prepares the tree, retrying until `deadline`.
    async fn establish(&self, deadline: Instant) -> Result<zk::Client, StrictError> {
        let mut pause = Duration::from_millis(20);
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(StrictError::SessionExpired);
            }
            match tokio::time::timeout_at(deadline, self.try_establish()).await {
                Ok(Ok(client)) => return Ok(client),
                Ok(Err(Failure::Fatal(err))) => return Err(err),
                Ok(Err(_)) | Err(_) => {}
            }
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(MAX_RECONNECT_PAUSE);
        }
    }

    async fn try_establish(&self) -> Result<zk::Client, Failure> {
        // Fail eagerly: one pass over the hosts, then back to our own loop, which knows
        // the operation's deadline.
        let connector = zk::Client::connector()
            .with_session_timeout(self.session_timeout)
            .with_fail_eagerly();
        let client = self
            .security
            .connect(connector, &self.hosts)
            .await
            .map_err(classify)?;
        let mode = self.security.create_mode();
        let client = match &self.chroot {
            Some(root) => {
                ensure_path(&client, root, &mode).await?;
                client.chroot(root.as_str()).map_err(|_| {
                    Failure::Fatal(StrictError::InvalidConfig("invalid chroot path"))
                })?
            }
            None => client,
        };
        ensure_path(&client, COUNTERS, &mode).await?;
        ensure_path(&client, RECEIPTS, &mode).await?;
        Ok(client)
    }
}

/// Creates the missing components of `path`, deepest last. Existing components are only
/// looked at (`exists` needs no permission), never written to: a root whose ancestors
/// this client may not write to, such as a chroot an administrator created under an
/// ACL-protected parent, works.
async fn ensure_path(
    client: &zk::Client,
    path: &str,
    mode: &zk::CreateOptions<'_>,
) -> Result<(), Failure> {
    let mut missing = Vec::new();
    let mut current = path;
    while current != "/" && !current.is_empty() {
        if client
            .check_stat(current)
            .await
            .map_err(mkdir_failure)?
            .is_some()
        {
            break;
        }
        missing.push(current);
        current = match current.rfind('/') {
            Some(0) => "/",
            Some(i) => &current[..i],
            None => "",
        };
    }
    for dir in missing.into_iter().rev() {
        match client.create(dir, &[], mode).await {
            Ok(_) | Err(zk::Error::NodeExists) => {}
            Err(err) => return Err(mkdir_failure(err)),
        }
    }
    Ok(())
}

fn mkdir_failure(err: zk::Error) -> Failure {
    match err {
        zk::Error::BadArguments(_) => {
            Failure::Fatal(StrictError::InvalidConfig("invalid chroot path"))
        }
        other => classify(other),
    }
}

/// Splits `host:port,host:port/chroot` into the host list and the chroot (`None` for
/// the ZooKeeper root).
pub(crate) fn split_chroot(connect_string: &str) -> Result<(&str, Option<&str>), StrictError> {
    let last = connect_string.rfind(',').map_or(0, |i| i + 1);
    let segment = &connect_string[last..];
    let host_start = last + segment.find("://").map_or(0, |i| i + 3);
    let (hosts, chroot) = match connect_string[host_start..].find('/') {
        Some(i) => connect_string.split_at(host_start + i),
        None => (connect_string, ""),
    };
    if hosts.is_empty() || hosts.split(',').any(str::is_empty) {
        return Err(StrictError::InvalidConfig(
            "connect string has an empty host",
        ));
    }
    match chroot {
        "" | "/" => Ok((hosts, None)),
        root if root.ends_with('/') || root.contains("//") => {
            Err(StrictError::InvalidConfig("invalid chroot path"))
        }
        root => Ok((hosts, Some(root))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_hosts_and_chroot() {
        assert_eq!(split_chroot("a:1,b:2/cm"), Ok(("a:1,b:2", Some("/cm"))));
        assert_eq!(split_chroot("a:1,b:2/cm/x"), Ok(("a:1,b:2", Some("/cm/x"))));
        assert_eq!(split_chroot("a:1"), Ok(("a:1", None)));
        assert_eq!(split_chroot("a:1/"), Ok(("a:1", None)));
        assert_eq!(split_chroot("tcp://a:1/cm"), Ok(("tcp://a:1", Some("/cm"))));
    }

    #[test]
    fn rejects_malformed_connect_strings() {
        for bad in ["", "a:1,", ",a:1", "a:1/cm/", "a:1//cm"] {
            assert!(split_chroot(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn lost_replies_are_ambiguous_and_refusals_are_not() {
        assert_eq!(classify(zk::Error::ConnectionLoss), Failure::Lost);
        assert_eq!(classify(zk::Error::SessionExpired), Failure::Expired);
        assert_eq!(classify(zk::Error::Throttled), Failure::Refused);
        assert!(matches!(classify(zk::Error::NoAuth), Failure::Fatal(_)));
    }
}
