//! Shared helpers: agents as child processes (killed on drop, panics included), a
//! cluster CA with node certificates on disk, HTTP helpers and polling.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use countermesh::CertificateAuthority;
use serde_json::Value;

/// How long an agent may take to print its listening lines.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Generous bound for anything that converges (gossip, ZooKeeper failure detection).
pub(crate) const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

/// The agent binary under test.
pub(crate) fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_countermesh")
}

/// A command for the binary with no `COUNTERMESH_*` variables inherited from the
/// environment running the tests (a stray `COUNTERMESH_TOKEN` would break every test).
pub(crate) fn command() -> Command {
    let mut command = Command::new(binary());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("COUNTERMESH_") {
            command.env_remove(key);
        }
    }
    command
}

/// One running `countermesh agent` process. Dropping it kills the process and waits.
#[derive(Debug)]
pub(crate) struct Agent {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`
    pub(crate) url: String,
    /// The QUIC address (for seeds).
    pub(crate) quic: SocketAddr,
    /// The RESP address, when started with `--resp`.
    pub(crate) resp: Option<SocketAddr>,
    log: PathBuf,
}

impl Agent {
    /// Starts `countermesh agent` with `args` (plus `--http 127.0.0.1:0` and
    /// `--bind 127.0.0.1:0` unless given) and waits until it announces its addresses.
    pub(crate) fn start(
        dir: &Path,
        name: &str,
        args: &[String],
        envs: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log)?;
        let mut command = command();
        command.arg("agent");
        if !args.iter().any(|a| a == "--http") {
            command.args(["--http", "127.0.0.1:0"]);
        }
        if !args.iter().any(|a| a == "--bind") {
            command.args(["--bind", "127.0.0.1:0"]);
        }
        command
            .args(args)
            .args(["--log", "info,countermesh=debug"])
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        let mut child = command.spawn().context("spawning the agent")?;
        let stdout = child.stdout.take().context("agent stdout")?;
        let mut agent = Self {
            child: Some(child),
            url: String::new(),
            quic: SocketAddr::from(([0, 0, 0, 0], 0)),
            resp: None,
            log,
        };
        // A thread keeps draining stdout so the agent never blocks on a full pipe.
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    // The test stopped listening; keep draining anyway.
                    continue;
                }
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        while agent.url.is_empty() || agent.quic.port() == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match received.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("http listening on ") {
                        agent.url = url.trim().to_owned();
                    } else if let Some(addr) = line.strip_prefix("resp listening on ") {
                        agent.resp = Some(addr.trim().parse()?);
                    } else if let Some(addr) = line.strip_prefix("quic listening on ") {
                        agent.quic = addr.trim().parse()?;
                    }
                }
                Err(_) => bail!(
                    "agent {name} did not announce its addresses; log:\n{}",
                    agent.log_tail()
                ),
            }
        }
        Ok(agent)
    }

    /// The last lines of the agent's stderr, for failure messages.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kills the process with SIGKILL, as a crash would (no flush, no leave), and reaps
    /// it: what a durable answer promised must survive this.
    pub(crate) fn kill(&mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("already stopped")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub(crate) fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let child = self.child.as_mut().context("already stopped")?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("the agent did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A cluster CA and per-node certificates written to a temporary directory.
#[derive(Debug)]
pub(crate) struct Pki {
    pub(crate) dir: tempfile::TempDir,
    ca: CertificateAuthority,
}

impl Pki {
    pub(crate) fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let ca = CertificateAuthority::generate("countermesh test CA")?;
        std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem)?;
        Ok(Self { dir, ca })
    }

    /// TLS flags for node `name` (its certificate is issued on first use).
    pub(crate) fn tls_args(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let cert = self.dir.path().join(format!("{name}.pem"));
        let key = self.dir.path().join(format!("{name}.key"));
        if !cert.exists() {
            let issued = self.ca.issue(name)?;
            std::fs::write(&cert, &issued.cert_pem)?;
            // Private, as the agent requires of key files.
            countermesh::write_new_file(&key, &issued.key_pem, true)?;
        }
        Ok(vec![
            "--tls-ca".into(),
            self.dir.path().join("ca.pem").display().to_string(),
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            key.display().to_string(),
        ])
    }
}

/// `n` agents with mutual TLS on loopback, the later ones seeded with the first.
pub(crate) fn cluster(pki: &Pki, n: usize, extra: &[String]) -> anyhow::Result<Vec<Agent>> {
    let mut agents: Vec<Agent> = Vec::new();
    for i in 0..n {
        let name = format!("node{i}");
        let mut args = pki.tls_args(&name)?;
        args.extend(["--gossip-interval".to_owned(), "50ms".to_owned()]);
        if let Some(first) = agents.first() {
            args.extend(["--seeds".to_owned(), first.quic.to_string()]);
        }
        args.extend(extra.iter().cloned());
        agents.push(Agent::start(pki.dir.path(), &name, &args, &[])?);
    }
    Ok(agents)
}

/// One agent without TLS peer verification, for tests that do not need a mesh.
pub(crate) fn single(dir: &Path, name: &str, extra: &[&str]) -> anyhow::Result<Agent> {
    let mut args = vec!["--insecure-no-peer-verification".to_owned()];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Agent::start(dir, name, &args, &[])
}

/// A JSON answer: status code and body (`Null` when the body is not JSON).
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Value,
}

impl Reply {
    /// The `error.code` of an error body.
    pub(crate) fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("<none>")
    }

    /// Asserts an error answer with `status` and `code`, and returns its message.
    #[track_caller]
    pub(crate) fn expect_error(&self, status: u16, code: &str) -> String {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "unexpected answer: {}",
            self.body
        );
        let message = self.body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            !message.is_empty(),
            "error without a message: {}",
            self.body
        );
        message.to_owned()
    }

    #[track_caller]
    pub(crate) fn expect_ok(&self) -> &Value {
        assert_eq!(self.status, 200, "unexpected answer: {}", self.body);
        &self.body
    }
}

pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

async fn reply(response: reqwest::Response) -> anyhow::Result<Reply> {
    let status = response.status().as_u16();
    let bytes = response.bytes().await?;
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok(Reply { status, body })
}

pub(crate) async fn get(url: &str) -> anyhow::Result<Reply> {
    reply(http().get(url).send().await?).await
}

/// POSTs `body` verbatim (it need not be valid JSON).
pub(crate) async fn post_raw(url: &str, body: impl Into<reqwest::Body>) -> anyhow::Result<Reply> {
    reply(
        http()
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?,
    )
    .await
}

/// POSTs `body` as JSON with `Idempotency-Key: key`.
pub(crate) async fn post_keyed(url: &str, key: &str, body: &Value) -> anyhow::Result<Reply> {
    reply(
        http()
            .post(url)
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(body.to_string())
            .send()
            .await?,
    )
    .await
}

pub(crate) async fn post(url: &str, body: &Value) -> anyhow::Result<Reply> {
    post_raw(url, body.to_string()).await
}

pub(crate) async fn delete(url: &str) -> anyhow::Result<Reply> {
    reply(http().delete(url).send().await?).await
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after `timeout` with
/// `what` and the last observation.
pub(crate) async fn eventually<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Result<T, String>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(observed)) => observed,
            Err(error) => format!("error: {error:#}"),
        };
        if Instant::now() > deadline {
            bail!("{what}: not reached within {timeout:?}; last observed: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the binary to completion (for configuration errors) with a bound.
pub(crate) fn run_to_exit(
    mut command: Command,
    timeout: Duration,
) -> anyhow::Result<(ExitStatus, String)> {
    let dir = tempfile::tempdir()?;
    let err_path = dir.path().join("stderr");
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&err_path)?));
    let child = command.spawn()?;
    let status = wait_with_deadline(child, timeout, "the process")?;
    Ok((status, std::fs::read_to_string(err_path)?))
}

/// Waits for `child` to exit, killing (and reaping) it if it takes longer than
/// `timeout`.
pub(crate) fn wait_with_deadline(
    mut child: Child,
    timeout: Duration,
    what: &str,
) -> anyhow::Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the agent at `url` sees `peers` other members alive.
pub(crate) async fn wait_alive_members(url: &str, peers: usize) -> anyhow::Result<()> {
    eventually("members alive", CONVERGE_TIMEOUT, || async {
        let members = get(&format!("{url}/v1/members")).await?;
        let alive = members.body["members"]
            .as_array()
            .map_or(0, |m| m.iter().filter(|m| m["state"] == "alive").count());
        Ok(if alive == peers {
            Ok(())
        } else {
            Err(members.body.to_string())
        })
    })
    .await
}
