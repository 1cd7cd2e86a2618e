//! `countermesh agent`: one mesh node plus the HTTP API.
//!
//! Start-up order: validate the configuration (nothing is bound before it is known to
//! be good), bind HTTP and RESP (so a port conflict fails before the node joins
//! anyone), start the mesh, then announce the addresses. Strict mode connects in the
//! background. SIGINT or SIGTERM stops HTTP and RESP gracefully (in-flight requests get
//! [`HTTP_DRAIN_TIMEOUT`], RESP connections finish the batch they are answering), then
//! shuts the mesh down (flush, leave, close) and exits 0.

pub(crate) mod durable;
pub(crate) mod idempotency;
mod server;
pub(crate) mod state;
pub(crate) mod stats;
pub(crate) mod strict;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use countermesh::{Mesh, TlsConfig};
use tracing::{info, warn};

use self::state::{AgentState, HttpPolicy};
use self::strict::StrictState;
use crate::api::guard::AllowedHosts;
use crate::config::{AgentArgs, AgentConfig, TlsSource};

/// How long in-flight HTTP requests may take to finish after a stop signal.
const HTTP_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    init_logging(&config.log);
    info!(?config, "starting the agent");
    if config.token.is_none() && !config.http.ip().is_loopback() {
        warn!(
            http = %config.http,
            "the HTTP API is served without authentication (--allow-unauthenticated): \
             anyone who can reach it can read and change every counter"
        );
    }

    let tls = load_tls(&config.tls)?;
    let listener = tokio::net::TcpListener::bind(config.http)
        .await
        .with_context(|| format!("--http: cannot listen on {}", config.http))?;
    let http = listener
        .local_addr()
        .context("reading the HTTP listener's address")?;
    let resp_listener = match config.resp {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--resp: cannot listen on {addr}"))?,
        ),
        None => None,
    };
    let resp = resp_listener
        .as_ref()
        .map(tokio::net::TcpListener::local_addr)
        .transpose()
        .context("reading the RESP listener's address")?;
    let mesh = start_mesh(&config, tls).await?;
    let quic = mesh.local_addr();

    let strict = StrictState::new(config.zookeeper.clone(), config.zookeeper_security.clone());
    let connector = strict.connect_in_background(config.timing.strict_timeout);
    let policy = HttpPolicy {
        token: config.token.clone(),
        allowed_hosts: AllowedHosts::new(http, &config.allowed_hosts),
        request_timeout: config.limits.request_timeout,
        max_counters: config.max_counters,
        idempotency: config.idempotency,
    };
    let state = Arc::new(AgentState::new(mesh, strict, policy));
    let sampler = tokio::spawn(sample_rate(Arc::clone(&state)));
    // Both listeners stop on the same signal; the RESP one watches this flag.
    let (stop_resp, resp_stopped) = tokio::sync::watch::channel(false);
    let resp_server = resp_listener.map(|listener| {
        tokio::spawn(crate::resp::serve(
            listener,
            Arc::clone(&state),
            config.resp_limits,
            resp_stopped,
        ))
    });

    announce(http, resp, quic);
    info!(
        http = %format_args!("http://{http}"),
        %quic,
        advertise = %state.mesh.id().addr(),
        actor = %state.mesh.actor_id(),
        resp = ?resp,
        auth = config.token.is_some(),
        strict = state.strict.configured(),
        strict_auth = config.zookeeper_security.has_credentials(),
        strict_tls = config.zookeeper_security.has_tls(),
        "agent ready"
    );

    serve_until_signal(listener, &state, config.limits, &stop_resp).await;
    if let Some(mut server) = resp_server {
        // The signal already told it to stop; connections finish their current batch.
        if tokio::time::timeout(crate::resp::DRAIN_TIMEOUT, &mut server)
            .await
            .is_err()
        {
            warn!(
                "RESP connections still busy after {:?}; closing them",
                crate::resp::DRAIN_TIMEOUT
            );
            server.abort();
            let _ = server.await;
        }
    }
    info!("HTTP and RESP stopped; shutting the mesh down");
    sampler.abort();
    if let Some(connector) = connector {
        connector.abort();
    }
    let _ = sampler.await;
    shut_down(state).await?;
    info!("agent stopped");
    Ok(())
}

/// Serves HTTP until SIGINT or SIGTERM, then tells the RESP listener to stop (through
/// `stop_resp`), drains in-flight requests for at most [`HTTP_DRAIN_TIMEOUT`] and closes
/// whatever is left.
async fn serve_until_signal(
    listener: tokio::net::TcpListener,
    state: &Arc<AgentState>,
    limits: crate::config::HttpLimits,
    stop_resp: &tokio::sync::watch::Sender<bool>,
) {
    let app = crate::api::router(Arc::clone(state));
    let signalled = Arc::new(tokio::sync::Notify::new());
    let stop = {
        let signalled = Arc::clone(&signalled);
        async move { signalled.notified().await }
    };
    let mut server = std::pin::pin!(server::serve(listener, app, limits, stop));
    tokio::select! {
        () = &mut server => {}
        () = shutdown_signal() => {
            signalled.notify_one();
            stop_resp.send_replace(true);
            if tokio::time::timeout(HTTP_DRAIN_TIMEOUT, &mut server).await.is_err() {
                // Dropping the server future aborts every connection task.
                warn!("HTTP requests still running after {HTTP_DRAIN_TIMEOUT:?}; closing them");
            }
        }
    }
}

/// Leaves the mesh gracefully once every HTTP handler has let go of the state.
async fn shut_down(state: Arc<AgentState>) -> anyhow::Result<()> {
    // Aborted connection tasks release their handle on the state just after.
    for _ in 0..100 {
        if Arc::strong_count(&state) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match Arc::try_unwrap(state) {
        Ok(state) => state
            .mesh
            .shutdown()
            .await
            .context("shutting the mesh down"),
        Err(state) => {
            // Something still holds the state (it should not once HTTP has stopped):
            // make the adds durable at least; dropping the mesh closes it.
            warn!("the mesh is still in use; flushing without a graceful leave");
            state.mesh.flush().await.context("flushing the mesh")
        }
    }
}

fn load_tls(source: &TlsSource) -> anyhow::Result<TlsConfig> {
    match source {
        TlsSource::Files { ca, cert, key, crl } => {
            let tls = TlsConfig::from_pem_files(ca, cert, key)
                .context("loading the TLS certificates (--tls-ca, --tls-cert, --tls-key)")?;
            info!(
                cluster = tls.cluster_san().unwrap_or_default(),
                "mutual TLS"
            );
            match crl {
                Some(crl) => tls
                    .with_crl_file(crl)
                    .with_context(|| format!("--tls-crl: loading {}", crl.display())),
                None => Ok(tls),
            }
        }
        TlsSource::Insecure => Ok(TlsConfig::dangerously_insecure_no_peer_verification()),
    }
}

fn init_logging(filter: &str) {
    // The filter was validated with the configuration; a second subscriber (tests that
    // run the agent in-process) is not an error.
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

async fn start_mesh(config: &AgentConfig, tls: TlsConfig) -> anyhow::Result<Mesh> {
    let mut builder = Mesh::builder()
        .bind(config.bind)
        .seeds(config.seeds.iter().copied())
        .tls(tls)
        .gossip_interval(config.timing.gossip_interval)
        .commit_interval(config.timing.commit_interval);
    if let Some(addr) = config.advertise {
        builder = builder.advertise(addr);
    }
    if let Some(dir) = &config.data_dir {
        // Private to this user: it holds every count the node knows.
        let mut create = std::fs::DirBuilder::new();
        create.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut create, 0o700);
        create
            .create(dir)
            .with_context(|| format!("--data-dir: cannot create {}", dir.display()))?;
        builder = builder.data_dir(dir);
    }
    builder.start().await.context("starting the mesh")
}

/// The machine-readable start-up lines on stdout: scripts and tests that start the agent
/// with port 0 read the bound addresses from them.
#[allow(clippy::print_stdout)]
fn announce(
    http: std::net::SocketAddr,
    resp: Option<std::net::SocketAddr>,
    quic: std::net::SocketAddr,
) {
    use std::io::Write as _;
    println!("http listening on http://{http}");
    // Before the QUIC line, which readers take as the last one.
    if let Some(resp) = resp {
        println!("resp listening on {resp}");
    }
    println!("quic listening on {quic}");
    let _ = std::io::stdout().flush();
}

/// Samples the add counter once a second for the status page's rate chart.
async fn sample_rate(state: Arc<AgentState>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        state.stats.sample_rate();
    }
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => info!("SIGINT received; stopping"),
        () = terminate => info!("SIGTERM received; stopping"),
    }
}
