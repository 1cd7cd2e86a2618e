//! [`MeshBuilder`]: every setting of a mesh node, with documented defaults.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use countermesh_core::{ActorId, Config, Limits, Node, NodeId, Store};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{Instrument, Span, info, info_span};

use crate::driver::Shared;
use crate::durability::{Committer, Request};
use crate::inbound::accept_loop;
use crate::mesh::{Inner, Mesh};
use crate::metrics::RuntimeCounters;
use crate::storage::Storage;
use crate::tasks::supervise;
use crate::transport::Transport;
use crate::{MeshError, TlsConfig};

/// How often own adds are committed to the data directory unless `flush` asks sooner.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(50);

/// Configures and starts a [`Mesh`]. Created by [`Mesh::builder`].
///
/// Required: [`MeshBuilder::tls`]. Everything else has a default:
///
/// | setting | default |
/// |---|---|
/// | `bind` | `0.0.0.0:7946` |
/// | `advertise` | the bind address; for an unspecified bind IP, the local IP that routes to the first seed |
/// | `seeds` | none (the node waits to be joined) |
/// | `data_dir` | none: state lives in memory and a restart starts empty |
/// | `gossip_interval` | 100 ms |
/// | `commit_interval` | 50 ms ([`DEFAULT_COMMIT_INTERVAL`]) |
/// | `protocol` | [`countermesh_core::Config::default`] (fanout 3, 1150-byte datagrams, 64 KiB messages) |
/// | `limits` | 1,000,000 counters, 65,536 actors, 8,000,000 entries |
#[derive(Debug, Clone)]
pub struct MeshBuilder {
    bind: SocketAddr,
    advertise: Option<SocketAddr>,
    seeds: Vec<SocketAddr>,
    tls: Option<TlsConfig>,
    data_dir: Option<PathBuf>,
    protocol: Config,
    commit_interval: Duration,
    limits: Limits,
    #[cfg(feature = "fault-injection")]
    faults: Option<crate::FaultController>,
}

impl Default for MeshBuilder {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([0, 0, 0, 0], 7946)),
            advertise: None,
            seeds: Vec::new(),
            tls: None,
            data_dir: None,
            protocol: Config::default(),
            commit_interval: DEFAULT_COMMIT_INTERVAL,
            limits: Limits::default(),
            #[cfg(feature = "fault-injection")]
            faults: None,
        }
    }
}

impl MeshBuilder {
    /// The UDP address to listen on (QUIC). Port 0 picks a free port.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// The address peers should use to reach this node, if it differs from the bind
    /// address (for example behind NAT, or when binding `0.0.0.0`).
    pub fn advertise(mut self, addr: SocketAddr) -> Self {
        self.advertise = Some(addr);
        self
    }

    /// Peers to join through. The node keeps re-announcing itself to them while it has
    /// no live member, so seeds may start in any order.
    pub fn seeds(mut self, seeds: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.seeds = seeds.into_iter().collect();
        self
    }

    /// How this node proves itself and checks its peers (mutual TLS against the cluster
    /// CA). Required.
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// A directory for durable state: this node's own adds (group committed every
    /// [`MeshBuilder::commit_interval`]) and what it learned from peers. A node restarted
    /// from it reads its earlier adds at once and re-offers any that no peer received
    /// before the restart. Without one, a restarted node starts empty and catches up from
    /// its peers; adds it made that no peer received yet are lost. Either way every start
    /// counts under a fresh actor (see ARCHITECTURE.md, "one actor per process").
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// How often a gossip round runs (flush, push fresh changes, one digest exchange).
    pub fn gossip_interval(mut self, interval: Duration) -> Self {
        self.protocol.gossip_interval = interval;
        self
    }

    /// How often own adds are committed to the data directory. Shorter means less to
    /// lose in a crash, at one fsync per interval. Gossip does not wait for commits.
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = interval;
        self
    }

    /// Every protocol setting at once (fanout, message budgets, SWIM timing). The gossip
    /// interval set here replaces one set with [`MeshBuilder::gossip_interval`].
    pub fn protocol(mut self, config: Config) -> Self {
        self.protocol = config;
        self
    }

    /// When departed actors are pruned (folded into a sink and removed everywhere), or
    /// `None` to turn pruning off (this node then refuses every pruner's intent, so no
    /// actor is pruned anywhere in the cluster). See [`PruneConfig`] for the defaults and
    /// ARCHITECTURE.md, "Pruning", for the trade-off `after_down` sets. Replaces the
    /// pruning settings of [`MeshBuilder::protocol`] if called after it.
    ///
    /// [`PruneConfig`]: countermesh_core::PruneConfig
    pub fn prune(mut self, prune: Option<countermesh_core::PruneConfig>) -> Self {
        self.protocol.prune = prune;
        self
    }

    /// Bounds on counters and actors this node accepts.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Routes every outgoing packet through `faults` (drop, delay, duplicate, blackhole).
    /// For tests that need real QUIC over a bad network.
    #[cfg(feature = "fault-injection")]
    pub fn fault_injection(mut self, faults: crate::FaultController) -> Self {
        self.faults = Some(faults);
        self
    }

    /// Opens the data directory, binds the socket, joins the seeds and starts gossiping.
    /// Must be called inside a tokio runtime.
    pub async fn start(self) -> Result<Mesh, MeshError> {
        let tls = self.tls.clone().ok_or(MeshError::Missing(
            "tls: pass TlsConfig::from_pem_files(..) (or, for experiments only, \
             TlsConfig::dangerously_insecure_no_peer_verification())",
        ))?;
        if self.commit_interval.is_zero() {
            return Err(MeshError::Invalid(
                "commit_interval must be greater than zero".into(),
            ));
        }
        let mut os_rng = SmallRng::try_from_rng(&mut rand::rngs::SysRng)
            .map_err(|e| MeshError::Invalid(format!("no OS randomness: {e}")))?;
        let (storage, store) = self.open_store(&mut os_rng).await?;
        let (endpoint, client_config, local_addr) = self.bind_endpoint(&tls)?;
        let advertise = self.advertise_addr(local_addr)?;
        let incarnation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let id = NodeId::new(advertise, store.actor_id(), incarnation);
        let node = Node::new(
            self.protocol.clone(),
            id.clone(),
            store,
            os_rng.next_u64(),
            std::time::Instant::now(),
        )?;
        let counters = Arc::new(RuntimeCounters::default());
        let transport = Transport::new(endpoint, client_config, counters.clone());
        let shared = Arc::new(Shared::new(
            node,
            transport,
            counters,
            self.protocol.max_message_bytes,
        ));
        let span = info_span!("countermesh", addr = %advertise, actor = %id.actor());
        let committer = self.spawn_tasks(&shared, storage.as_ref(), &span);
        shared.with_node(|node, now| {
            for seed in &self.seeds {
                node.join(*seed, now);
            }
        });
        span.in_scope(|| {
            if tls.is_insecure() {
                tracing::warn!(
                    "TLS peer verification is OFF (dangerously_insecure_no_peer_verification): \
                     any host that can reach this port can join, read and write"
                );
            }
            info!(
                %local_addr,
                seeds = self.seeds.len(),
                durable = storage.is_some(),
                insecure = tls.is_insecure(),
                "mesh started"
            );
        });
        Ok(Mesh::from_inner(Inner {
            shared,
            committer,
            storage,
            id,
            local_addr,
            data_dir: self.data_dir,
        }))
    }

    /// Opens the data directory, if there is one, and builds the store: restored from
    /// the directory (earlier incarnations' entries and watermarks) or empty, counting
    /// under a fresh actor either way.
    async fn open_store(
        &self,
        rng: &mut SmallRng,
    ) -> Result<(Option<Arc<Storage>>, Store), MeshError> {
        let actor = new_actor(rng);
        let Some(dir) = self.data_dir.clone() else {
            let store = Store::new(actor, rng.next_u64()).with_limits(self.limits);
            return Ok((None, store));
        };
        let (storage, restored) = tokio::task::spawn_blocking(move || Storage::open(&dir))
            .await
            .map_err(|e| MeshError::Invalid(format!("storage task failed: {e}")))??;
        let store = match &restored {
            Some(restored) => {
                info!(
                    previous_actor = %restored.actor,
                    %actor,
                    entries = restored.entries.len(),
                    version = restored.local_version,
                    "restored state from the data directory; counting as a new actor"
                );
                Store::restore(restored, actor, rng.next_u64(), self.limits)?
            }
            None => {
                info!(%actor, "initialised a new data directory");
                Store::new(actor, rng.next_u64()).with_limits(self.limits)
            }
        };
        storage.begin_incarnation(actor, restored.as_ref().map(|r| (r.actor, r.local_version)))?;
        Ok((Some(Arc::new(storage)), store.with_change_tracking(true)))
    }

    /// Binds the UDP socket (behind the fault injector, if any) and wraps it in a quinn
    /// endpoint with this node's TLS configuration.
    fn bind_endpoint(
        &self,
        tls: &TlsConfig,
    ) -> Result<(quinn::Endpoint, quinn::ClientConfig, SocketAddr), MeshError> {
        let bind_error = |source| MeshError::Bind {
            addr: self.bind,
            source,
        };
        let transport_config = Arc::new(transport_config());
        let (server_config, client_config) = tls.quinn_configs(transport_config)?;
        let socket = UdpSocket::bind(self.bind).map_err(bind_error)?;
        let local_addr = socket.local_addr().map_err(bind_error)?;
        let runtime: Arc<dyn quinn::Runtime> = Arc::new(quinn::TokioRuntime);
        let socket = runtime.wrap_udp_socket(socket).map_err(bind_error)?;
        #[cfg(feature = "fault-injection")]
        let socket: Arc<dyn quinn::AsyncUdpSocket> = match &self.faults {
            Some(faults) => Arc::new(crate::fault::FaultySocket::new(socket, faults.clone())),
            None => socket,
        };
        let endpoint = quinn::Endpoint::new_with_abstract_socket(
            quinn::EndpointConfig::default(),
            Some(server_config),
            socket,
            runtime,
        )
        .map_err(bind_error)?;
        Ok((endpoint, client_config, local_addr))
    }

    /// Starts the accept loop, the timer task and (with a data directory) the group
    /// committer, all supervised: if one dies, the mesh fails loudly.
    fn spawn_tasks(
        &self,
        shared: &Arc<Shared>,
        storage: Option<&Arc<Storage>>,
        span: &Span,
    ) -> Option<(mpsc::Sender<Request>, JoinHandle<()>)> {
        let weak = Arc::downgrade(shared);
        shared.tasks.set_failure_hook(Arc::new(move |task, reason| {
            if let Some(shared) = weak.upgrade() {
                shared.fail(task, reason);
            }
        }));
        shared.tasks.spawn_critical(
            "accept",
            accept_loop(shared.clone()).instrument(span.clone()),
        );
        shared.tasks.spawn_critical(
            "timer",
            shared.clone().run_timers().instrument(span.clone()),
        );
        storage.map(|storage| {
            let (sender, receiver) = mpsc::channel(1024);
            let committer = Committer {
                shared: shared.clone(),
                storage: storage.clone(),
                interval: self.commit_interval,
                carry: None,
            };
            // Not in `Tasks`: a graceful stop lets it finish its last commit.
            let handle = tokio::spawn(
                supervise(
                    "committer",
                    false,
                    shared.tasks.hook(),
                    committer.run(receiver),
                )
                .instrument(span.clone()),
            );
            (sender, handle)
        })
    }

    fn advertise_addr(&self, local: SocketAddr) -> Result<SocketAddr, MeshError> {
        if let Some(addr) = self.advertise {
            return Ok(addr);
        }
        if !local.ip().is_unspecified() {
            return Ok(local);
        }
        // Ask the kernel which local address routes to the first seed: connecting a UDP
        // socket sends nothing but picks the source address.
        let routed = self.seeds.first().and_then(|seed| {
            let probe = UdpSocket::bind(SocketAddr::new(unspecified_like(seed.ip()), 0)).ok()?;
            probe.connect(seed).ok()?;
            probe.local_addr().ok().map(|a| a.ip())
        });
        match routed {
            Some(ip) if !ip.is_unspecified() => Ok(SocketAddr::new(ip, local.port())),
            _ => Err(MeshError::Missing(
                "advertise: the bind address is unspecified (0.0.0.0) and no seed routes \
                 to a local address; set MeshBuilder::advertise",
            )),
        }
    }
}

fn unspecified_like(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::from([0, 0, 0, 0]),
        IpAddr::V6(_) => IpAddr::from([0u16; 8]),
    }
}

/// A fresh node actor id: 63 random bits (the top bit marks sinks, see
/// `ActorId::is_sink`), never zero.
fn new_actor(rng: &mut impl Rng) -> ActorId {
    ActorId::random(rng)
}

/// QUIC settings shared by both directions of every connection.
fn transport_config() -> quinn::TransportConfig {
    let mut config = quinn::TransportConfig::default();
    // Short enough that a connection to a crashed peer is noticed within seconds;
    // keep-alives hold live connections open between gossip rounds.
    config.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
        5_000, // milliseconds
    ))));
    config.keep_alive_interval(Some(Duration::from_secs(1)));
    // One message per unidirectional stream; bidirectional streams are never used.
    config.max_concurrent_uni_streams(quinn::VarInt::from_u32(64));
    config.max_concurrent_bidi_streams(quinn::VarInt::from_u32(0));
    config
}
