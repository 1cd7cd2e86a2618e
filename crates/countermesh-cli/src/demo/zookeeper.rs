//! A throwaway standalone ZooKeeper for the demo's strict side, started from Debian's
//! `zookeeper` package in a temporary directory and killed when dropped.
//!
//! This is deliberately not the strict crate's test harness (ensembles, pauses,
//! restarts): the production binary carries only what the demo needs, one server on a
//! free loopback port.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Where Debian's `zookeeper` package puts the server jar.
pub(crate) const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";
/// A logging backend for the server's slf4j calls (Debian's `libslf4j-java`), used when
/// present so the server does not complain about a missing binding.
const SLF4J_JAR: &str = "/usr/share/java/slf4j-simple.jar";
/// How long the server may take to serve its first request.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One running standalone server.
#[derive(Debug)]
pub(crate) struct LocalZooKeeper {
    child: Child,
    addr: SocketAddr,
    /// Holds the configuration, data and log; removed on drop.
    dir: tempfile::TempDir,
}

impl LocalZooKeeper {
    /// Whether the server jar is installed.
    pub(crate) fn installed() -> bool {
        Path::new(ZOOKEEPER_JAR).exists()
    }

    /// Starts a server on a free loopback port and waits until it serves requests.
    pub(crate) fn start() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("countermesh-demo-zk-")
            .tempdir()
            .context("creating a directory for ZooKeeper")?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let config = dir.path().join("zoo.cfg");
        std::fs::write(
            &config,
            format!(
                "tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={port}\n\
                 clientPortAddress=127.0.0.1\nadmin.enableServer=false\n\
                 4lw.commands.whitelist=srvr\n",
                data.display()
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("server.log"))?;
        let mut classpath = ZOOKEEPER_JAR.to_owned();
        if Path::new(SLF4J_JAR).exists() {
            classpath.push(':');
            classpath.push_str(SLF4J_JAR);
        }
        let child = Command::new("java")
            .args(["-Xmx256m", "-XX:+UseSerialGC"])
            .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
            .arg("-cp")
            .arg(classpath)
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting java (is a JRE installed?)")?;
        let mut server = Self {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            dir,
        };
        server.wait_until_serving()?;
        Ok(server)
    }

    /// `127.0.0.1:PORT`.
    pub(crate) fn connect_string(&self) -> String {
        self.addr.to_string()
    }

    fn wait_until_serving(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "ZooKeeper exited with {status}; log:\n{}",
                    std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
                );
            }
            if serving(self.addr) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("ZooKeeper did not serve within {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Whether the server answers `srvr` with a mode (it serves requests).
fn serving(addr: SocketAddr) -> bool {
    let ask = || -> std::io::Result<String> {
        let timeout = Duration::from_secs(2);
        let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.write_all(b"srvr")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    };
    ask().is_ok_and(|answer| answer.contains("Mode: standalone"))
}

impl Drop for LocalZooKeeper {
    fn drop(&mut self) {
        // Only this child, by its own handle; the temporary directory goes with `dir`.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
