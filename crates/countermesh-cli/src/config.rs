//! Agent configuration: TOML file, `COUNTERMESH_*` environment, flags (flags win).
//!
//! Every option is read as text from all three sources and parsed in one place
//! ([`AgentArgs::resolve`]), so a bad value gets the same message naming the option
//! whichever source it came from. Defaults live here too, not in clap, so that a value
//! from the file is not shadowed by a clap default.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::zookeeper_security::ZookeeperSecurity;

const DEFAULT_BIND: &str = "0.0.0.0:7946";
const DEFAULT_HTTP: &str = "127.0.0.1:8080";
const DEFAULT_GOSSIP_INTERVAL: &str = "100ms";
const DEFAULT_COMMIT_INTERVAL: &str = "50ms";
const DEFAULT_STRICT_TIMEOUT: &str = "5s";
const DEFAULT_HEADER_TIMEOUT: &str = "10s";
const DEFAULT_REQUEST_TIMEOUT: &str = "30s";
const DEFAULT_MAX_CONNECTIONS: &str = "1024";
/// A tenth of the store's limit: see `--max-counters`.
const DEFAULT_MAX_COUNTERS: &str = "100000";
/// As long as strict mode remembers its keys (the strict client's receipt lifetime), so
/// a client sees one key lifetime for both kinds of counter.
const DEFAULT_IDEMPOTENCY_WINDOW: &str = "10m";
/// About 17 MB of UUID keys at most.
const DEFAULT_IDEMPOTENCY_MAX_KEYS: &str = "100000";
/// The most keys `--idempotency-max-keys` may ask for (~1.7 GB of UUID keys).
const MAX_IDEMPOTENCY_KEYS: usize = 10_000_000;
const DEFAULT_LOG: &str = "info";
/// Redis's default is 10,000 clients; an agent serving counters needs far fewer, and
/// each connection holds up to one command's worth of buffer (about 2 MiB at most).
const DEFAULT_RESP_MAX_CONNECTIONS: &str = "1024";
/// Redis never closes idle clients by default; the agent does, so forgotten
/// connections do not hold a slot of --resp-max-connections forever.
const DEFAULT_RESP_IDLE_TIMEOUT: &str = "5m";

/// Options of `countermesh agent`.
///
/// Each option can also be set with its `COUNTERMESH_*` environment variable or, in the
/// file given with `--config`, with its long name in snake case (`gossip_interval =
/// "200ms"`). Flags win over the environment, which wins over the file.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Precedence: flags, then COUNTERMESH_* environment variables, then the \
                  --config TOML file (keys are the long option names with underscores, \
                  e.g. `http = \"127.0.0.1:8080\"`, `seeds = [\"10.0.0.2:7946\"]`; unknown \
                  keys are an error), then the defaults shown.\n\nWith `--http \
                  127.0.0.1:0` the agent picks a free port; it prints `http listening on \
                  http://ADDR` and `quic listening on ADDR` on stdout once it serves."
)]
pub(crate) struct AgentArgs {
    /// A TOML file with any of the options below.
    #[arg(long, env = "COUNTERMESH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// The UDP address the mesh listens on (QUIC). [default: 0.0.0.0:7946]
    #[arg(long, env = "COUNTERMESH_BIND", value_name = "IP:PORT")]
    bind: Option<String>,

    /// The address peers use to reach this node. [default: the bind address, or for
    /// 0.0.0.0 the local address that routes to the first seed]
    #[arg(long, env = "COUNTERMESH_ADVERTISE", value_name = "HOST:PORT")]
    advertise: Option<String>,

    /// Peers to join through, comma-separated or repeated. [default: none; the node
    /// waits to be joined]
    #[arg(
        long,
        env = "COUNTERMESH_SEEDS",
        value_name = "HOST:PORT",
        value_delimiter = ','
    )]
    seeds: Vec<String>,

    /// The address of the HTTP API, metrics and status page. Port 0 picks a free port.
    /// [default: 127.0.0.1:8080]
    #[arg(long, env = "COUNTERMESH_HTTP", value_name = "IP:PORT")]
    http: Option<String>,

    /// Also serve the Redis protocol (RESP2, RESP3 after HELLO 3) on this address:
    /// INCR, INCRBY, DECR, DECRBY, GET, MGET and connection commands. Keys starting with
    /// `strict:` are strict counters; all others eventual. Port 0 picks a free port.
    /// [default: none: no RESP listener]
    #[arg(long, env = "COUNTERMESH_RESP", value_name = "IP:PORT")]
    resp: Option<String>,

    /// RESP connections served at once; further clients wait to be accepted.
    /// [default: 1024]
    #[arg(long, env = "COUNTERMESH_RESP_MAX_CONNECTIONS", value_name = "N")]
    resp_max_connections: Option<String>,

    /// How long a RESP connection may stay silent before the agent closes it.
    /// [default: 5m]
    #[arg(long, env = "COUNTERMESH_RESP_IDLE_TIMEOUT", value_name = "DURATION")]
    resp_idle_timeout: Option<String>,

    /// Make every RESP INCR, INCRBY, DECR and DECRBY of an eventual counter answer only
    /// after the flush that puts it in the data directory (as HTTP's `?durable=true`),
    /// so an answered add survives a crash of this node. Needs --resp and --data-dir.
    /// Without it, `WAIT 0 0` makes every earlier add durable on demand.
    /// [default: false]
    #[arg(long, env = "COUNTERMESH_RESP_DURABLE")]
    resp_durable: bool,

    /// A directory for durable state (actor id, own adds, learned counts). [default:
    /// none: state is in memory and a restart starts a new actor]
    #[arg(long, env = "COUNTERMESH_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// The cluster CA certificate (PEM). Required with --tls-cert and --tls-key unless
    /// --insecure-no-peer-verification.
    #[arg(long, env = "COUNTERMESH_TLS_CA", value_name = "FILE")]
    tls_ca: Option<PathBuf>,

    /// This node's certificate, signed by the cluster CA (PEM).
    #[arg(long, env = "COUNTERMESH_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,

    /// This node's private key (PEM), accessible by its owner only (chmod 600).
    #[arg(long, env = "COUNTERMESH_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,

    /// A certificate revocation list (PEM, from `countermesh certs revoke`): peers whose
    /// certificates it lists are refused, whether they connect or are connected to.
    /// [default: none]
    #[arg(long, env = "COUNTERMESH_TLS_CRL", value_name = "FILE")]
    tls_crl: Option<PathBuf>,

    /// Run without TLS peer verification: any host that can reach the mesh port can
    /// join, read and write. For experiments only. [default: false]
    #[arg(long, env = "COUNTERMESH_INSECURE_NO_PEER_VERIFICATION")]
    insecure_no_peer_verification: bool,

    /// How often a gossip round runs. [default: 100ms]
    #[arg(long, env = "COUNTERMESH_GOSSIP_INTERVAL", value_name = "DURATION")]
    gossip_interval: Option<String>,

    /// How often own adds are committed to the data directory. [default: 50ms]
    #[arg(long, env = "COUNTERMESH_COMMIT_INTERVAL", value_name = "DURATION")]
    commit_interval: Option<String>,

    /// ZooKeeper connect string for strict counters, `host:port[,host:port...][/chroot]`.
    /// The agent starts without it reachable and connects in the background; strict
    /// routes answer 503 until then. [default: none: strict routes answer 503]
    #[arg(long, env = "COUNTERMESH_ZOOKEEPER", value_name = "CONNECT")]
    zookeeper: Option<String>,

    /// How long one strict operation may wait for ZooKeeper before it answers 503.
    /// [default: 5s]
    #[arg(long, env = "COUNTERMESH_STRICT_TIMEOUT", value_name = "DURATION")]
    strict_timeout: Option<String>,

    /// A file holding the credentials strict mode authenticates to ZooKeeper with, one
    /// line `scheme:credentials`: `digest:USER:PASSWORD` (ZooKeeper's digest scheme) or
    /// `sasl:USER:PASSWORD` (SASL DIGEST-MD5, needs the `zookeeper-sasl` build feature).
    /// With credentials every znode the agent creates is creator-only, so other clients
    /// can neither read, change nor forge counters and receipts. The file must be
    /// accessible by its owner only (chmod 600); others are refused. Needs --zookeeper.
    /// [default: none: anonymous, znodes open to anyone]
    #[arg(long, env = "COUNTERMESH_ZOOKEEPER_AUTH_FILE", value_name = "FILE")]
    zookeeper_auth_file: Option<PathBuf>,

    /// The CA certificate (PEM) that signed the ZooKeeper servers' certificates: strict
    /// mode then talks TLS, so --zookeeper must name the servers' secureClientPort, by
    /// a name or address their certificates carry. Give all three --zookeeper-tls-*
    /// options or none. [default: none: plain TCP]
    #[arg(long, env = "COUNTERMESH_ZOOKEEPER_TLS_CA", value_name = "FILE")]
    zookeeper_tls_ca: Option<PathBuf>,

    /// The agent's client certificate (PEM) for mutual TLS to ZooKeeper; with the
    /// server's X509AuthenticationProvider its subject is the agent's identity in ACLs.
    #[arg(long, env = "COUNTERMESH_ZOOKEEPER_TLS_CERT", value_name = "FILE")]
    zookeeper_tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --zookeeper-tls-cert, accessible by its owner only
    /// (chmod 600).
    #[arg(long, env = "COUNTERMESH_ZOOKEEPER_TLS_KEY", value_name = "FILE")]
    zookeeper_tls_key: Option<PathBuf>,

    /// Require `Authorization: Bearer TOKEN` on every route except /healthz (the status
    /// page also accepts `/?token=TOKEN`). [default: none: no authentication]
    #[arg(
        long,
        env = "COUNTERMESH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,

    /// Read the token from this file (trailing whitespace ignored) instead of --token,
    /// which keeps it out of the process list and the environment. The file must be
    /// accessible by its owner only (chmod 600).
    #[arg(long, env = "COUNTERMESH_TOKEN_FILE", value_name = "FILE")]
    token_file: Option<PathBuf>,

    /// Serve an --http address that is not loopback without a token. Without this flag
    /// such a configuration is refused: anyone who can reach the address could read and
    /// change every counter. [default: false]
    #[arg(long, env = "COUNTERMESH_ALLOW_UNAUTHENTICATED")]
    allow_unauthenticated: bool,

    /// Another name (or IP address) clients reach the HTTP API by, comma-separated or
    /// repeated. Requests whose `Host` is not a loopback name or address, the --http
    /// address (any IP address when it is unspecified, 0.0.0.0 or ::) or one of these
    /// are refused with 403, which stops web pages that rebind their DNS name to the
    /// agent. [default: none]
    #[arg(
        long,
        env = "COUNTERMESH_ALLOWED_HOST",
        value_name = "NAME",
        value_delimiter = ','
    )]
    allowed_host: Vec<String>,

    /// How long a client may take to send a request's headers; slower connections (and
    /// keep-alive connections idle this long) are closed. [default: 10s]
    #[arg(long, env = "COUNTERMESH_HEADER_TIMEOUT", value_name = "DURATION")]
    header_timeout: Option<String>,

    /// How long one request may take from its headers to its answer (body upload
    /// included); slower ones get 408. Must exceed --strict-timeout. [default: 30s]
    #[arg(long, env = "COUNTERMESH_REQUEST_TIMEOUT", value_name = "DURATION")]
    request_timeout: Option<String>,

    /// HTTP connections served at once; further clients wait to be accepted.
    /// [default: 1024]
    #[arg(long, env = "COUNTERMESH_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<String>,

    /// The most counters the node may know before this agent refuses to create another
    /// (403 counter_limit; adds to known counters still work). Counters learned from
    /// peers count too, so whatever a client sends here, no peer's store grows past this
    /// through this agent. A tenth of the store's hard limit (1,000,000), which leaves
    /// every peer room for the rest of the cluster. [default: 100000]
    #[arg(long, env = "COUNTERMESH_MAX_COUNTERS", value_name = "N")]
    max_counters: Option<String>,

    /// How long the agent remembers the `Idempotency-Key` of an eventual add or batch: a
    /// retry with the same key within this window is answered without adding again.
    /// Keys are kept in memory only, so a restarted agent has forgotten them all (strict
    /// keys live in ZooKeeper instead). [default: 10m]
    #[arg(long, env = "COUNTERMESH_IDEMPOTENCY_WINDOW", value_name = "DURATION")]
    idempotency_window: Option<String>,

    /// The most eventual idempotency keys remembered at once; beyond it the oldest is
    /// forgotten early (counted in /metrics as an eviction). About 170 bytes per UUID
    /// key. [default: 100000]
    #[arg(long, env = "COUNTERMESH_IDEMPOTENCY_MAX_KEYS", value_name = "N")]
    idempotency_max_keys: Option<String>,

    /// Log filter (tracing-subscriber syntax, e.g. `info,countermesh=debug`). Logs go to
    /// stderr. [default: info]
    #[arg(long, env = "COUNTERMESH_LOG", value_name = "FILTER")]
    log: Option<String>,
}

/// The `--config` file: the same options, keyed by their long names in snake case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    bind: Option<String>,
    advertise: Option<String>,
    seeds: Option<Vec<String>>,
    http: Option<String>,
    resp: Option<String>,
    #[serde(default, deserialize_with = "number_as_text")]
    resp_max_connections: Option<String>,
    resp_idle_timeout: Option<String>,
    resp_durable: Option<bool>,
    data_dir: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_crl: Option<PathBuf>,
    insecure_no_peer_verification: Option<bool>,
    gossip_interval: Option<String>,
    commit_interval: Option<String>,
    zookeeper: Option<String>,
    strict_timeout: Option<String>,
    zookeeper_auth_file: Option<PathBuf>,
    zookeeper_tls_ca: Option<PathBuf>,
    zookeeper_tls_cert: Option<PathBuf>,
    zookeeper_tls_key: Option<PathBuf>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    allow_unauthenticated: Option<bool>,
    allowed_host: Option<Vec<String>>,
    header_timeout: Option<String>,
    request_timeout: Option<String>,
    #[serde(default, deserialize_with = "number_as_text")]
    max_connections: Option<String>,
    #[serde(default, deserialize_with = "number_as_text")]
    max_counters: Option<String>,
    idempotency_window: Option<String>,
    #[serde(default, deserialize_with = "number_as_text")]
    idempotency_max_keys: Option<String>,
    log: Option<String>,
}

/// Reads a TOML integer (or a string) as text, so numbers are parsed and checked with
/// the same message whichever source they came from.
fn number_as_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Number(i64),
        Text(String),
    }
    Ok(
        Option::<Text>::deserialize(deserializer)?.map(|value| match value {
            Text::Number(n) => n.to_string(),
            Text::Text(text) => text,
        }),
    )
}

/// How the mesh proves itself to peers.
#[derive(Debug, Clone)]
pub(crate) enum TlsSource {
    /// Mutual TLS against the cluster CA.
    Files {
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
        crl: Option<PathBuf>,
    },
    /// No peer verification (experiments only).
    Insecure,
}

/// The validated agent configuration.
#[derive(Clone)]
pub(crate) struct AgentConfig {
    pub(crate) bind: SocketAddr,
    pub(crate) advertise: Option<SocketAddr>,
    pub(crate) seeds: Vec<SocketAddr>,
    pub(crate) http: SocketAddr,
    /// The RESP listener's address, if any, and its bounds.
    pub(crate) resp: Option<SocketAddr>,
    pub(crate) resp_limits: crate::resp::RespLimits,
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) tls: TlsSource,
    pub(crate) timing: Timing,
    pub(crate) zookeeper: Option<String>,
    /// Credentials and TLS for ZooKeeper (empty without `--zookeeper-auth-file` and
    /// `--zookeeper-tls-*`).
    pub(crate) zookeeper_security: ZookeeperSecurity,
    pub(crate) token: Option<String>,
    /// Whether a non-loopback --http without a token was allowed explicitly.
    pub(crate) allow_unauthenticated: bool,
    pub(crate) allowed_hosts: Vec<String>,
    pub(crate) limits: HttpLimits,
    /// Counters the node may know before this agent creates no more.
    pub(crate) max_counters: usize,
    pub(crate) idempotency: IdempotencyLimits,
    pub(crate) log: String,
}

/// How long and how many eventual idempotency keys are remembered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdempotencyLimits {
    pub(crate) window: Duration,
    pub(crate) max_keys: usize,
}

impl fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a secret: only whether one is set may show in logs.
        f.debug_struct("AgentConfig")
            .field("bind", &self.bind)
            .field("advertise", &self.advertise)
            .field("seeds", &self.seeds)
            .field("http", &self.http)
            .field("resp", &self.resp)
            .field("resp_limits", &self.resp_limits)
            .field("data_dir", &self.data_dir)
            .field("tls", &self.tls)
            .field("timing", &self.timing)
            .field("zookeeper", &self.zookeeper)
            .field("zookeeper_security", &self.zookeeper_security)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("allow_unauthenticated", &self.allow_unauthenticated)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("limits", &self.limits)
            .field("max_counters", &self.max_counters)
            .field("idempotency", &self.idempotency)
            .field("log", &self.log)
            .finish()
    }
}

impl AgentArgs {
    /// Merges flags and environment (already in `self`) over the config file and the
    /// defaults, and validates everything.
    pub(crate) fn resolve(self) -> anyhow::Result<AgentConfig> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        self.over(file).validate()
    }

    /// The flags' (and environment's) values where given, else the file's.
    fn over(self, file: FileConfig) -> FileConfig {
        FileConfig {
            bind: self.bind.or(file.bind),
            advertise: self.advertise.or(file.advertise),
            seeds: Some(list(self.seeds, file.seeds)),
            http: self.http.or(file.http),
            resp: self.resp.or(file.resp),
            resp_max_connections: self.resp_max_connections.or(file.resp_max_connections),
            resp_idle_timeout: self.resp_idle_timeout.or(file.resp_idle_timeout),
            resp_durable: Some(self.resp_durable || file.resp_durable == Some(true)),
            data_dir: self.data_dir.or(file.data_dir),
            tls_ca: self.tls_ca.or(file.tls_ca),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            tls_crl: self.tls_crl.or(file.tls_crl),
            insecure_no_peer_verification: Some(
                self.insecure_no_peer_verification
                    || file.insecure_no_peer_verification == Some(true),
            ),
            gossip_interval: self.gossip_interval.or(file.gossip_interval),
            commit_interval: self.commit_interval.or(file.commit_interval),
            zookeeper: self.zookeeper.or(file.zookeeper),
            strict_timeout: self.strict_timeout.or(file.strict_timeout),
            zookeeper_auth_file: self.zookeeper_auth_file.or(file.zookeeper_auth_file),
            zookeeper_tls_ca: self.zookeeper_tls_ca.or(file.zookeeper_tls_ca),
            zookeeper_tls_cert: self.zookeeper_tls_cert.or(file.zookeeper_tls_cert),
            zookeeper_tls_key: self.zookeeper_tls_key.or(file.zookeeper_tls_key),
            token: self.token.or(file.token),
            token_file: self.token_file.or(file.token_file),
            allow_unauthenticated: Some(
                self.allow_unauthenticated || file.allow_unauthenticated == Some(true),
            ),
            allowed_host: Some(list(self.allowed_host, file.allowed_host)),
            header_timeout: self.header_timeout.or(file.header_timeout),
            request_timeout: self.request_timeout.or(file.request_timeout),
            max_connections: self.max_connections.or(file.max_connections),
            max_counters: self.max_counters.or(file.max_counters),
            idempotency_window: self.idempotency_window.or(file.idempotency_window),
            idempotency_max_keys: self.idempotency_max_keys.or(file.idempotency_max_keys),
            log: self.log.or(file.log),
        }
    }
}

impl FileConfig {
    /// Parses and checks the merged options.
    fn validate(self) -> anyhow::Result<AgentConfig> {
        let tls = tls_source(
            self.insecure_no_peer_verification == Some(true),
            [self.tls_ca, self.tls_cert, self.tls_key],
            self.tls_crl,
        )?;
        let timing = Timing::parse(
            self.gossip_interval,
            self.commit_interval,
            self.strict_timeout,
        )?;
        let limits = HttpLimits::parse(
            self.header_timeout,
            self.request_timeout,
            self.max_connections,
            timing.strict_timeout,
        )?;
        let zookeeper = self
            .zookeeper
            .map(|connect| check_zookeeper(&connect).map(|()| connect))
            .transpose()?;
        let zookeeper_security = ZookeeperSecurity::load(
            zookeeper.is_some(),
            self.zookeeper_auth_file.as_deref(),
            [
                self.zookeeper_tls_ca,
                self.zookeeper_tls_cert,
                self.zookeeper_tls_key,
            ],
        )?;
        let token = read_token(self.token, self.token_file.as_deref())?;
        let http = parse_bind("http", self.http.as_deref().unwrap_or(DEFAULT_HTTP))?;
        let allow_unauthenticated = self.allow_unauthenticated == Some(true);
        if token.is_none() && !http.ip().is_loopback() && !allow_unauthenticated {
            bail!(
                "--http {http} is reachable from other hosts, and without a token anyone who \
                 can reach it can read and change every counter: set --token or \
                 --token-file, or pass --allow-unauthenticated if the network is trusted"
            );
        }
        let resp = self
            .resp
            .as_deref()
            .map(|addr| parse_bind("resp", addr))
            .transpose()?;
        if let Some(resp) = resp
            && token.is_none()
            && !resp.ip().is_loopback()
            && !allow_unauthenticated
        {
            bail!(
                "--resp {resp} is reachable from other hosts, and without a token anyone who \
                 can reach it can read and change every counter: set --token or \
                 --token-file (clients then AUTH with it), or pass --allow-unauthenticated if \
                 the network is trusted"
            );
        }
        let resp_limits = crate::resp::RespLimits {
            max_connections: parse_count(
                "resp-max-connections",
                self.resp_max_connections
                    .as_deref()
                    .unwrap_or(DEFAULT_RESP_MAX_CONNECTIONS),
                1_000_000,
            )?,
            idle_timeout: parse_duration(
                "resp-idle-timeout",
                self.resp_idle_timeout
                    .as_deref()
                    .unwrap_or(DEFAULT_RESP_IDLE_TIMEOUT),
            )?,
            durable: self.resp_durable == Some(true),
        };
        // Refused rather than ignored: an operator who asked for durable answers must
        // not get answers that only look durable.
        if resp_limits.durable && resp.is_none() {
            bail!("--resp-durable needs --resp: there is no RESP listener to make durable");
        }
        if resp_limits.durable && self.data_dir.is_none() {
            bail!(
                "--resp-durable needs --data-dir: without a data directory no add is ever \
                 durable, so the agent could not keep that promise"
            );
        }
        let max_counters = parse_count(
            "max-counters",
            self.max_counters.as_deref().unwrap_or(DEFAULT_MAX_COUNTERS),
            countermesh_core::DEFAULT_MAX_COUNTERS,
        )?;
        let idempotency = IdempotencyLimits {
            window: parse_duration(
                "idempotency-window",
                self.idempotency_window
                    .as_deref()
                    .unwrap_or(DEFAULT_IDEMPOTENCY_WINDOW),
            )?,
            max_keys: parse_count(
                "idempotency-max-keys",
                self.idempotency_max_keys
                    .as_deref()
                    .unwrap_or(DEFAULT_IDEMPOTENCY_MAX_KEYS),
                MAX_IDEMPOTENCY_KEYS,
            )?,
        };
        let allowed_hosts = self.allowed_host.unwrap_or_default();
        for host in &allowed_hosts {
            crate::api::guard::validate_allowed_host(host)
                .map_err(|why| anyhow::anyhow!("--allowed-host: {why}"))?;
        }
        let log = self.log.unwrap_or_else(|| DEFAULT_LOG.to_owned());
        tracing_subscriber::EnvFilter::try_new(&log)
            .with_context(|| format!("--log: invalid filter {log:?}"))?;
        if let Some(dir) = &self.data_dir
            && dir.exists()
            && !dir.is_dir()
        {
            bail!(
                "--data-dir: {} exists and is not a directory",
                dir.display()
            );
        }
        Ok(AgentConfig {
            bind: parse_bind("bind", self.bind.as_deref().unwrap_or(DEFAULT_BIND))?,
            advertise: self
                .advertise
                .map(|addr| resolve_addr("advertise", &addr))
                .transpose()?,
            seeds: self
                .seeds
                .unwrap_or_default()
                .iter()
                .map(|seed| resolve_addr("seeds", seed))
                .collect::<anyhow::Result<Vec<_>>>()?,
            http,
            resp,
            resp_limits,
            data_dir: self.data_dir,
            tls,
            timing,
            zookeeper,
            zookeeper_security,
            token,
            allow_unauthenticated,
            allowed_hosts,
            limits,
            max_counters,
            idempotency,
            log,
        })
    }
}

/// The protocol's and strict mode's intervals and timeouts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) gossip_interval: Duration,
    pub(crate) commit_interval: Duration,
    pub(crate) strict_timeout: Duration,
}

impl Timing {
    fn parse(
        gossip: Option<String>,
        commit: Option<String>,
        strict: Option<String>,
    ) -> anyhow::Result<Self> {
        let strict_timeout = parse_duration(
            "strict-timeout",
            strict.as_deref().unwrap_or(DEFAULT_STRICT_TIMEOUT),
        )?;
        // The strict client keeps exactly-once receipts for ten minutes, which must
        // outlast twice the longest operation.
        if strict_timeout > Duration::from_secs(300) {
            bail!("--strict-timeout: at most 5m, got {strict_timeout:?}");
        }
        Ok(Self {
            gossip_interval: parse_duration(
                "gossip-interval",
                gossip.as_deref().unwrap_or(DEFAULT_GOSSIP_INTERVAL),
            )?,
            commit_interval: parse_duration(
                "commit-interval",
                commit.as_deref().unwrap_or(DEFAULT_COMMIT_INTERVAL),
            )?,
            strict_timeout,
        })
    }
}

/// Bounds on what HTTP clients can hold: time to send headers, time for a whole
/// request, connections at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpLimits {
    pub(crate) header_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_connections: usize,
}

impl HttpLimits {
    fn parse(
        header: Option<String>,
        request: Option<String>,
        connections: Option<String>,
        strict_timeout: Duration,
    ) -> anyhow::Result<Self> {
        let request_timeout = parse_duration(
            "request-timeout",
            request.as_deref().unwrap_or(DEFAULT_REQUEST_TIMEOUT),
        )?;
        if request_timeout <= strict_timeout {
            bail!(
                "--request-timeout ({request_timeout:?}) must be longer than --strict-timeout \
                 ({strict_timeout:?}), or strict operations would be cut off with their \
                 outcome unknown"
            );
        }
        let max_connections = parse_count(
            "max-connections",
            connections.as_deref().unwrap_or(DEFAULT_MAX_CONNECTIONS),
            1_000_000,
        )?;
        Ok(Self {
            header_timeout: parse_duration(
                "header-timeout",
                header.as_deref().unwrap_or(DEFAULT_HEADER_TIMEOUT),
            )?,
            request_timeout,
            max_connections,
        })
    }
}

/// The bearer token from `--token` or `--token-file` (one of them), trimmed: clients'
/// tokens are compared after trimming, so the configured one is too.
fn read_token(token: Option<String>, file: Option<&Path>) -> anyhow::Result<Option<String>> {
    let token = match (token, file) {
        (Some(_), Some(_)) => bail!("--token and --token-file: give one or the other"),
        (Some(token), None) => token,
        (None, Some(path)) => {
            check_private_file(path).map_err(|why| anyhow::anyhow!("--token-file: {why}"))?;
            std::fs::read_to_string(path)
                .with_context(|| format!("--token-file: cannot read {}", path.display()))?
        }
        (None, None) => return Ok(None),
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        bail!("--token/--token-file: the token is empty; leave the option out to run without one");
    }
    Ok(Some(token))
}

/// Refuses a secret file that its group or other users can access.
pub(crate) fn check_private_file(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "{} is accessible by its group or other users (mode {:04o}); it holds a \
                 secret, so make it private: chmod 600 {}",
                path.display(),
                mode & 0o7777,
                path.display()
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// A list option: the flags' (or environment's) entries if any, else the file's; blank
/// entries dropped.
fn list(flags: Vec<String>, file: Option<Vec<String>>) -> Vec<String> {
    let entries = if flags.is_empty() {
        file.unwrap_or_default()
    } else {
        flags
    };
    entries
        .into_iter()
        .map(|entry| entry.trim().to_owned())
        .filter(|entry| !entry.is_empty())
        .collect()
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--config: cannot read {}", path.display()))?;
    // toml's message names the offending key and its line (e.g. "unknown field `htp`,
    // expected one of ...").
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("--config {}: {e}", path.display()))
}

/// A local address to listen on: an IP and a port, no host names.
fn parse_bind(option: &str, value: &str) -> anyhow::Result<SocketAddr> {
    value.trim().parse().map_err(|_| {
        anyhow::anyhow!(
            "--{option}: invalid address {value:?}: expected IP:PORT, such as 127.0.0.1:8080 \
             or [::1]:8080"
        )
    })
}

/// A peer address: `IP:PORT`, or `HOST:PORT` resolved once at start.
fn resolve_addr(option: &str, value: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = value.parse() {
        return Ok(addr);
    }
    value
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--{option}: invalid address {value:?}: expected HOST:PORT or IP:PORT that \
                 resolves, such as 10.0.0.2:7946"
            )
        })
}

/// A count from 1 to `max`.
fn parse_count(option: &str, value: &str, max: usize) -> anyhow::Result<usize> {
    value
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            anyhow::anyhow!("--{option}: expected a number from 1 to {max}, got {value:?}")
        })
}

fn parse_duration(option: &str, value: &str) -> anyhow::Result<Duration> {
    let duration = humantime::parse_duration(value.trim()).map_err(|e| {
        anyhow::anyhow!("--{option}: invalid duration {value:?} ({e}); use e.g. 100ms, 2s, 1m")
    })?;
    if duration.is_zero() {
        bail!("--{option}: must be greater than zero");
    }
    Ok(duration)
}

fn tls_source(
    insecure: bool,
    [ca, cert, key]: [Option<PathBuf>; 3],
    crl: Option<PathBuf>,
) -> anyhow::Result<TlsSource> {
    if insecure {
        if ca.is_some() || cert.is_some() || key.is_some() || crl.is_some() {
            bail!(
                "--insecure-no-peer-verification cannot be combined with --tls-ca, --tls-cert, \
                 --tls-key or --tls-crl: choose mutual TLS or no verification"
            );
        }
        return Ok(TlsSource::Insecure);
    }
    let missing: Vec<&str> = [
        ("--tls-ca", &ca),
        ("--tls-cert", &cert),
        ("--tls-key", &key),
    ]
    .into_iter()
    .filter(|(_, path)| path.is_none())
    .map(|(flag, _)| flag)
    .collect();
    match (ca, cert, key) {
        (Some(ca), Some(cert), Some(key)) => {
            for (flag, path) in [
                ("--tls-ca", Some(&ca)),
                ("--tls-cert", Some(&cert)),
                ("--tls-key", Some(&key)),
                ("--tls-crl", crl.as_ref()),
            ] {
                if let Some(path) = path
                    && !path.is_file()
                {
                    bail!("{flag}: {} does not exist or is not a file", path.display());
                }
            }
            Ok(TlsSource::Files { ca, cert, key, crl })
        }
        _ => bail!(
            "mutual TLS needs --tls-ca, --tls-cert and --tls-key (missing: {}); create them \
             with `countermesh certs init` and `countermesh certs issue`, or pass \
             --insecure-no-peer-verification for experiments",
            missing.join(", ")
        ),
    }
}

/// Catches typos in the connect string at start; the strict client checks the rest.
fn check_zookeeper(connect: &str) -> anyhow::Result<()> {
    let hosts = connect.split('/').next().unwrap_or_default();
    let chroot = &connect[hosts.len()..];
    let bad = |why: &str| {
        anyhow::anyhow!(
            "--zookeeper: invalid connect string {connect:?}: {why}; expected \
             host:port[,host:port...][/chroot]"
        )
    };
    if hosts.is_empty() {
        return Err(bad("no hosts"));
    }
    for host in hosts.split(',') {
        let Some((name, port)) = host.rsplit_once(':') else {
            return Err(bad(&format!("{host:?} has no port")));
        };
        if name.is_empty() || port.parse::<u16>().is_err() {
            return Err(bad(&format!("{host:?} is not host:port")));
        }
    }
    if chroot == "/" || chroot.ends_with('/') {
        return Err(bad("the chroot must not end with '/'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_file_keys_are_named() {
        let err = toml::from_str::<FileConfig>("htp = \"x\"").unwrap_err();
        assert!(err.to_string().contains("htp"), "{err}");
    }

    #[test]
    fn zookeeper_connect_strings() {
        assert!(check_zookeeper("127.0.0.1:2181").is_ok());
        assert!(check_zookeeper("a:1,b:2/countermesh").is_ok());
        assert!(check_zookeeper("a").is_err());
        assert!(check_zookeeper("a:x").is_err());
        assert!(check_zookeeper("/x").is_err());
        assert!(check_zookeeper("a:1/").is_err());
    }

    #[test]
    fn missing_tls_files_are_named() {
        let err = tls_source(false, [Some("ca.pem".into()), None, None], None).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("--tls-cert, --tls-key"), "{text}");
    }
}
