//! Spawning, faulting and tearing down ZooKeeper server processes.

use std::fs;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::four_letter::{Mode, mode};
use super::pki::TestPki;
use super::seed::{SeedZnode, write_txn_log};

/// Where Debian's `zookeeper` package puts the server jar.
const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";
/// A logging backend for the server's slf4j calls, from Debian's `libslf4j-java`.
const SLF4J_JAR: &str = "/usr/share/java/slf4j-simple.jar";
/// Netty jars the TLS server needs besides those the ZooKeeper jar's manifest names
/// (Debian's manifest leaves out the codec, which has the TLS handler's base class).
const NETTY_TLS_JARS: [&str; 2] = [
    "/usr/share/java/netty-codec.jar",
    "/usr/share/java/netty-resolver.jar",
];
/// How long a fresh server or ensemble may take to serve requests.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How many times a start is tried with fresh ports before giving up.
const START_ATTEMPTS: usize = 3;

/// How to run the servers.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// Number of servers: 1 is a standalone server, 3 or more an ensemble.
    pub servers: usize,
    /// ZooKeeper's `tickTime` in milliseconds. Session timeouts are clamped to 2 to 20
    /// ticks, and a follower notices a silent leader after `syncLimit` (5) ticks.
    pub tick_time_ms: u32,
    /// The JVM heap limit per server, in MiB.
    pub heap_mb: u32,
    /// Whether the servers also listen on a TLS port (`secureClientPort`, Netty): the
    /// harness generates a CA, a server certificate and a client certificate
    /// ([`ZkCluster::pki`]). Clients must present a certificate the CA signed, and its
    /// subject becomes an `x509` identity usable in ACLs.
    pub tls: bool,
    /// Users the servers accept for SASL DIGEST-MD5 (`SASLAuthenticationProvider` with a
    /// JAAS `Server` section), as `(user, password)`.
    pub sasl_users: Vec<(String, String)>,
    /// Znodes the servers start with, replayed from a crafted transaction log (see
    /// [`SeedZnode`]).
    pub seed: Vec<SeedZnode>,
}

impl ClusterConfig {
    /// One standalone server with a 500 ms tick (session timeouts 1 s to 10 s).
    pub fn standalone() -> Self {
        Self {
            servers: 1,
            tick_time_ms: 500,
            heap_mb: 256,
            tls: false,
            sasl_users: Vec::new(),
            seed: Vec::new(),
        }
    }

    /// A three-server ensemble with a 500 ms tick.
    pub fn ensemble() -> Self {
        Self {
            servers: 3,
            ..Self::standalone()
        }
    }

    /// Adds a TLS port to every server (see [`ClusterConfig::tls`]).
    #[must_use]
    pub fn with_tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Accepts `user` with `password` for SASL DIGEST-MD5.
    #[must_use]
    pub fn with_sasl_user(mut self, user: &str, password: &str) -> Self {
        self.sasl_users.push((user.to_owned(), password.to_owned()));
        self
    }

    /// Starts the servers with `nodes` already in their tree.
    #[must_use]
    pub fn with_seed(mut self, nodes: Vec<SeedZnode>) -> Self {
        self.seed = nodes;
        self
    }
}

/// Running ZooKeeper servers; dropping this kills them and removes their directories.
#[derive(Debug)]
pub struct ZkCluster {
    root: PathBuf,
    config: ClusterConfig,
    pki: Option<TestPki>,
    servers: Vec<Server>,
}

#[derive(Debug)]
struct Server {
    dir: PathBuf,
    client_port: u16,
    secure_port: u16,
    child: Option<Child>,
    paused: bool,
}

impl ZkCluster {
    /// Starts one standalone server.
    pub fn standalone() -> io::Result<Self> {
        Self::start(ClusterConfig::standalone())
    }

    /// Starts a three-server ensemble and waits until it has a leader.
    pub fn ensemble() -> io::Result<Self> {
        Self::start(ClusterConfig::ensemble())
    }

    /// Starts the servers `config` describes on free loopback ports and waits until every
    /// one of them serves requests. A start that fails (a port taken between picking
    /// and binding it, say) is retried with fresh ports.
    pub fn start(config: ClusterConfig) -> io::Result<Self> {
        for jar in [ZOOKEEPER_JAR, SLF4J_JAR] {
            if !Path::new(jar).exists() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "{jar} is missing: run scripts/ensure-zookeeper (installs Debian's zookeeper package)"
                    ),
                ));
            }
        }
        if config.servers == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a cluster needs at least one server",
            ));
        }
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            let mut cluster = Self::create(config.clone())?;
            match cluster.launch() {
                Ok(()) => return Ok(cluster),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("ZooKeeper did not start")))
    }

    /// Lays out directories and configuration files on fresh ports.
    fn create(config: ClusterConfig) -> io::Result<Self> {
        let root = unique_temp_dir()?;
        let ports = free_ports(config.servers * 4)?;
        let mut quorum = String::new();
        if config.servers > 1 {
            for i in 0..config.servers {
                let (peer, election) = (ports[4 * i + 1], ports[4 * i + 2]);
                quorum.push_str(&format!("server.{}=127.0.0.1:{peer}:{election}\n", i + 1));
            }
        }
        let pki = config.tls.then(TestPki::generate).transpose()?;
        let shared = shared_settings(&root, &config, pki.as_ref())?;
        let mut servers = Vec::with_capacity(config.servers);
        for i in 0..config.servers {
            let dir = root.join(format!("server{}", i + 1));
            let data = dir.join("data");
            fs::create_dir_all(&data)?;
            fs::write(data.join("myid"), format!("{}\n", i + 1))?;
            if !config.seed.is_empty() {
                write_txn_log(&data, &config.seed)?;
            }
            let (client_port, secure_port) = (ports[4 * i], ports[4 * i + 3]);
            let secure = if pki.is_some() {
                format!("secureClientPort={secure_port}\nsecureClientPortAddress=127.0.0.1\n")
            } else {
                String::new()
            };
            let cfg = format!(
                "tickTime={tick}\ninitLimit=10\nsyncLimit=5\ndataDir={data}\nclientPort={client_port}\n\
                 clientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=*\n\
                 maxClientCnxns=0\n{secure}{shared}{quorum}",
                tick = config.tick_time_ms,
                data = data.display(),
            );
            fs::write(dir.join("zoo.cfg"), cfg)?;
            servers.push(Server {
                dir,
                client_port,
                secure_port,
                child: None,
                paused: false,
            });
        }
        Ok(Self {
            root,
            config,
            pki,
            servers,
        })
    }

    /// Spawns every server and waits until all of them serve.
    fn launch(&mut self) -> io::Result<()> {
        for i in 0..self.servers.len() {
            self.spawn(i)?;
        }
        self.wait_until_serving(START_TIMEOUT)
    }

    fn spawn(&mut self, index: usize) -> io::Result<()> {
        let heap = self.config.heap_mb;
        let mut classpath = vec![ZOOKEEPER_JAR, SLF4J_JAR];
        if self.config.tls {
            classpath.extend(NETTY_TLS_JARS);
        }
        let mut command = Command::new("java");
        command
            .arg(format!("-Xmx{heap}m"))
            // Fewer GC threads: this machine has two cores shared by several servers.
            .arg("-XX:+UseSerialGC")
            .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn");
        if !self.config.sasl_users.is_empty() {
            let jaas = self.root.join("jaas.conf");
            command.arg(format!(
                "-Djava.security.auth.login.config={}",
                jaas.display()
            ));
        }
        if !self.config.seed.is_empty() {
            // The seed is a transaction log without a snapshot, which the server only
            // replays when told to trust an empty snapshot.
            command.arg("-Dzookeeper.snapshot.trust.empty=true");
        }
        let server = &mut self.servers[index];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(server.dir.join("server.log"))?;
        let child = command
            .arg("-cp")
            .arg(classpath.join(":"))
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(server.dir.join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        server.child = Some(child);
        server.paused = false;
        Ok(())
    }

    /// How many servers the cluster has (running or not).
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Whether the cluster has no servers (never true for a started cluster).
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// The client address of server `index`.
    pub fn client_addr(&self, index: usize) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.servers[index].client_port))
    }

    /// The connect string naming every server, e.g. `127.0.0.1:1,127.0.0.1:2`.
    pub fn connect_string(&self) -> String {
        (0..self.len())
            .map(|i| self.client_addr(i).to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The connect string naming only server `index`.
    pub fn server_connect_string(&self, index: usize) -> String {
        self.client_addr(index).to_string()
    }

    /// The TLS address of server `index` (meaningful with [`ClusterConfig::tls`]).
    pub fn secure_addr(&self, index: usize) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.servers[index].secure_port))
    }

    /// The connect string naming every server's TLS port, `None` without TLS.
    pub fn secure_connect_string(&self) -> Option<String> {
        self.pki.as_ref()?;
        Some(
            (0..self.len())
                .map(|i| self.secure_addr(i).to_string())
                .collect::<Vec<_>>()
                .join(","),
        )
    }

    /// The certificates of a cluster started with [`ClusterConfig::tls`].
    pub fn pki(&self) -> Option<&TestPki> {
        self.pki.as_ref()
    }

    /// The operating-system process id of server `index`, if it runs.
    pub fn pid(&self, index: usize) -> Option<u32> {
        self.servers[index].child.as_ref().map(Child::id)
    }

    /// The role server `index` reports now; `None` if it is down, paused or not serving.
    pub fn mode(&self, index: usize) -> Option<Mode> {
        let server = &self.servers[index];
        if server.child.is_none() || server.paused {
            return None;
        }
        mode(self.client_addr(index)).ok().flatten()
    }

    /// Waits (up to 30 s) until some server reports itself leader (or standalone) and
    /// returns its index.
    pub fn leader(&self) -> io::Result<usize> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for i in 0..self.len() {
                if matches!(self.mode(i), Some(Mode::Leader | Mode::Standalone)) {
                    return Ok(i);
                }
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no ZooKeeper leader within 30 s",
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills server `index` with SIGKILL (no shutdown hooks, no flush) and waits for
    /// the process to be gone.
    pub fn kill(&mut self, index: usize) -> io::Result<()> {
        if let Some(mut child) = self.servers[index].child.take() {
            child.kill()?;
            child.wait()?;
        }
        self.servers[index].paused = false;
        Ok(())
    }

    /// Starts server `index` again with its old configuration and data, and waits until
    /// it serves. If the port is not free yet, it is retried.
    pub fn restart(&mut self, index: usize) -> io::Result<()> {
        self.kill(index)?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            self.spawn(index)?;
            match self.wait_for(index, START_TIMEOUT) {
                Ok(()) => return Ok(()),
                Err(err) => {
                    last_error = Some(err);
                    self.kill(index)?;
                    thread::sleep(Duration::from_millis(500));
                }
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("restart failed")))
    }

    /// Freezes server `index` with SIGSTOP: its sockets stay open but nothing answers,
    /// as with a long GC pause or a hung machine.
    pub fn pause(&mut self, index: usize) -> io::Result<()> {
        self.signal(index, "-STOP")?;
        self.servers[index].paused = true;
        Ok(())
    }

    /// Resumes server `index` after [`ZkCluster::pause`] (SIGCONT).
    pub fn resume(&mut self, index: usize) -> io::Result<()> {
        self.signal(index, "-CONT")?;
        self.servers[index].paused = false;
        Ok(())
    }

    fn signal(&self, index: usize, signal: &str) -> io::Result<()> {
        let pid = self
            .pid(index)
            .ok_or_else(|| io::Error::other(format!("server {index} is not running")))?;
        let status = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "kill {signal} {pid} failed: {status}"
            )))
        }
    }

    /// Waits until every running, unpaused server serves requests.
    pub fn wait_until_serving(&mut self, timeout: Duration) -> io::Result<()> {
        for i in 0..self.len() {
            if self.servers[i].child.is_some() && !self.servers[i].paused {
                self.wait_for(i, timeout)?;
            }
        }
        Ok(())
    }

    fn wait_for(&mut self, index: usize, timeout: Duration) -> io::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.servers[index].child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.servers[index].child = None;
                return Err(io::Error::other(format!(
                    "ZooKeeper server {index} exited with {status}; log tail:\n{}",
                    self.log_tail(index)
                )));
            }
            if self.mode(index).is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "ZooKeeper server {index} not serving after {timeout:?}; log tail:\n{}",
                        self.log_tail(index)
                    ),
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of server `index`'s log, for error messages.
    pub fn log_tail(&self, index: usize) -> String {
        let log =
            fs::read_to_string(self.servers[index].dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for ZkCluster {
    fn drop(&mut self) {
        for i in 0..self.servers.len() {
            // SIGKILL also ends a stopped process, so paused servers need no SIGCONT.
            if let Err(err) = self.kill(i) {
                let _ = writeln!(
                    io::stderr(),
                    "harness: could not kill ZooKeeper server {i}: {err}"
                );
            }
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Writes the files every server shares (certificates, JAAS) into `root` and returns the
/// configuration lines that use them.
fn shared_settings(
    root: &Path,
    config: &ClusterConfig,
    pki: Option<&TestPki>,
) -> io::Result<String> {
    let mut settings = String::new();
    if let Some(pki) = pki {
        let keystore = root.join("server-keystore.pem");
        let truststore = root.join("ca.pem");
        fs::write(
            &keystore,
            format!("{}{}", pki.server_key_pem, pki.server_cert_pem),
        )?;
        fs::write(&truststore, &pki.ca_pem)?;
        settings.push_str(&format!(
            "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n\
             ssl.keyStore.location={}\nssl.keyStore.type=PEM\n\
             ssl.trustStore.location={}\nssl.trustStore.type=PEM\n\
             ssl.clientAuth=need\n\
             authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider\n",
            keystore.display(),
            truststore.display(),
        ));
    }
    if !config.sasl_users.is_empty() {
        let users: String = config
            .sasl_users
            .iter()
            .map(|(user, password)| format!("\n  user_{user}=\"{password}\""))
            .collect();
        fs::write(
            root.join("jaas.conf"),
            format!(
                "Server {{\n  org.apache.zookeeper.server.auth.DigestLoginModule required{users};\n}};\n"
            ),
        )?;
        settings.push_str(
            "authProvider.sasl=org.apache.zookeeper.server.auth.SASLAuthenticationProvider\n",
        );
    }
    Ok(settings)
}

/// Binds `n` listeners on loopback port 0 at once (so the ports differ), then frees them.
fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

fn unique_temp_dir() -> io::Result<PathBuf> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "countermesh-zk-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir)?;
    Ok(dir)
}
