//! Helpers: a cluster of real [`Mesh`] nodes with generated certificates, temporary data
//! directories and one fault controller per node.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use countermesh::{
    CertificateAuthority, FaultController, MemberState, Mesh, MeshError, PruneConfig, TlsConfig,
};
use tempfile::TempDir;

/// Gossip interval used by these tests: short, so the suite stays quick.
pub(crate) const GOSSIP: Duration = Duration::from_millis(50);

/// Generous bound for anything that should take a handful of gossip rounds; the tests
/// never assert on timing, they only give up eventually instead of hanging.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// Logs to the test output when `RUST_LOG` is set.
pub(crate) fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
    });
}

/// The seed for a randomized test (the workspace's one helper, printed for replay).
pub(crate) fn seed(test: &str) -> u64 {
    countermesh_core::testkit::test_seed(test)
}

/// Mutual-TLS settings for a new node of the cluster `ca`.
pub(crate) fn tls_for(ca: &CertificateAuthority) -> Result<TlsConfig> {
    let cert = ca.issue("node")?;
    Ok(TlsConfig::from_node_certificate(&ca.cert_pem, &cert)?)
}

/// One slot of a test cluster: a node (when running), its data directory and faults.
pub(crate) struct Slot {
    pub(crate) mesh: Option<Mesh>,
    pub(crate) dir: TempDir,
    pub(crate) faults: FaultController,
    pub(crate) addr: Option<SocketAddr>,
}

/// Several real nodes on 127.0.0.1.
pub(crate) struct Cluster {
    pub(crate) ca: CertificateAuthority,
    pub(crate) slots: Vec<Slot>,
    pub(crate) durable: bool,
    /// Pruning settings for nodes started from now on (`None`: the library default).
    pub(crate) prune: Option<PruneConfig>,
}

impl Cluster {
    /// Starts `n` nodes; every node after the first uses the first as its seed.
    pub(crate) async fn start(n: usize, durable: bool, seed: u64) -> Result<Self> {
        init_tracing();
        let mut cluster = Self {
            ca: CertificateAuthority::generate("countermesh test CA")?,
            slots: Vec::new(),
            durable,
            prune: None,
        };
        for i in 0..n {
            cluster.add_slot(seed.wrapping_add(i as u64))?;
            cluster.start_node(i).await?;
        }
        Ok(cluster)
    }

    /// Adds an empty slot (not started).
    pub(crate) fn add_slot(&mut self, seed: u64) -> Result<usize> {
        self.slots.push(Slot {
            mesh: None,
            dir: tempfile::tempdir()?,
            faults: FaultController::new(seed),
            addr: None,
        });
        Ok(self.slots.len() - 1)
    }

    /// Addresses of running nodes other than `except`.
    fn seeds(&self, except: usize) -> Vec<SocketAddr> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(i, s)| *i != except && s.mesh.is_some())
            .filter_map(|(_, s)| s.addr)
            .collect()
    }

    /// Starts (or restarts) the node in slot `i`, at its previous address if it had one,
    /// from its data directory when the cluster is durable.
    pub(crate) async fn start_node(&mut self, i: usize) -> Result<()> {
        let seeds = self.seeds(i);
        let bind = self.slots[i]
            .addr
            .unwrap_or_else(|| "127.0.0.1:0".parse().expect("valid address"));
        let tls = tls_for(&self.ca)?;
        let started = Instant::now();
        let mesh = loop {
            let mut builder = Mesh::builder()
                .bind(bind)
                .seeds(seeds.clone())
                .tls(tls.clone())
                .gossip_interval(GOSSIP)
                .fault_injection(self.slots[i].faults.clone());
            if self.durable {
                builder = builder.data_dir(self.slots[i].dir.path());
            }
            if let Some(prune) = self.prune {
                builder = builder.prune(Some(prune));
            }
            match builder.start().await {
                Ok(mesh) => break mesh,
                // The previous incarnation's socket may take a moment to be released.
                Err(MeshError::Bind { source, .. })
                    if source.kind() == std::io::ErrorKind::AddrInUse
                        && started.elapsed() < Duration::from_secs(5) =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e).context("starting a node"),
            }
        };
        self.slots[i].addr = Some(mesh.local_addr());
        self.slots[i].mesh = Some(mesh);
        Ok(())
    }

    /// The running node in slot `i`.
    pub(crate) fn node(&self, i: usize) -> &Mesh {
        self.slots[i].mesh.as_ref().expect("node is running")
    }

    /// Running nodes.
    pub(crate) fn running(&self) -> impl Iterator<Item = &Mesh> + '_ {
        self.slots.iter().filter_map(|s| s.mesh.as_ref())
    }

    /// Kills the node in slot `i` (no leave, no final commit).
    pub(crate) async fn kill(&mut self, i: usize) {
        if let Some(mesh) = self.slots[i].mesh.take() {
            mesh.kill().await;
        }
    }

    /// Waits until every running node sees every other running node alive.
    pub(crate) async fn wait_full_membership(&self) -> Result<Duration> {
        let started = Instant::now();
        let want: Vec<SocketAddr> = self.running().map(|m| m.local_addr()).collect();
        loop {
            let complete = self.running().all(|mesh| {
                want.iter()
                    .filter(|a| **a != mesh.local_addr())
                    .all(|addr| {
                        mesh.members()
                            .iter()
                            .any(|m| m.addr == *addr && m.state == MemberState::Alive)
                    })
            });
            if complete {
                return Ok(started.elapsed());
            }
            if started.elapsed() > PATIENCE {
                bail!("membership did not complete within {PATIENCE:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until every running node reads exactly `expected` for every counter in it.
    pub(crate) async fn wait_converged(
        &self,
        expected: &BTreeMap<String, i128>,
    ) -> Result<Duration> {
        let started = Instant::now();
        loop {
            let mismatch = self.running().find_map(|mesh| {
                expected.iter().find_map(|(name, want)| {
                    let got = mesh.value(name).map_or(0, |v| v.value);
                    (got != *want).then(|| (mesh.local_addr(), name.clone(), got, *want))
                })
            });
            match mismatch {
                None => return Ok(started.elapsed()),
                Some((addr, name, got, want)) if started.elapsed() > PATIENCE => {
                    bail!("{addr} reads {name} = {got}, expected {want}, after {PATIENCE:?}")
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    /// Shuts every running node down gracefully.
    pub(crate) async fn shutdown(mut self) -> Result<()> {
        for slot in &mut self.slots {
            if let Some(mesh) = slot.mesh.take() {
                mesh.shutdown().await?;
            }
        }
        Ok(())
    }
}
