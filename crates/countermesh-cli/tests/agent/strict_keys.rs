//! Strict writes with idempotency keys and the agent's ZooKeeper security options,
//! against real ZooKeeper servers (the strict crate's harness): a request whose
//! connection dies before its reply is read and is then retried, a key reused for
//! another operation, an ACL-protected root with and without `--zookeeper-auth-file`,
//! and mutual TLS with `--zookeeper-tls-*`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use countermesh_strict::harness::{ClusterConfig, ZkCluster};
use countermesh_strict::{Credentials, StrictClient, StrictOptions};
use serde_json::{Value, json};

use crate::support::{
    Agent, CONVERGE_TIMEOUT, Reply, command, eventually, get, http, post, post_keyed, run_to_exit,
    single,
};

async fn start_zookeeper(config: ClusterConfig) -> anyhow::Result<ZkCluster> {
    tokio::task::spawn_blocking(move || ZkCluster::start(config))
        .await?
        .context("starting ZooKeeper (scripts/ensure-zookeeper installs it)")
}

/// Waits until the agent's strict client has a session: the first answer to a read that
/// is not 503 `unavailable`. Returns that answer.
async fn wait_strict(s: &str, name: &str) -> anyhow::Result<Reply> {
    eventually("strict mode connected", CONVERGE_TIMEOUT, || async {
        let read = get(&format!("{s}/{name}")).await?;
        Ok(if read.status == 503 && read.code() == "unavailable" {
            Err(read.body.to_string())
        } else {
            Ok(read)
        })
    })
    .await
}

async fn value(s: &str, name: &str) -> anyhow::Result<i64> {
    get(&format!("{s}/{name}")).await?.expect_ok()["value"]
        .as_i64()
        .context("value")
}

/// Sends a keyed strict add over a raw TCP connection and returns the connection
/// without reading anything from it: the caller closes it, so the reply is never read.
fn send_raw_add(
    agent: &Agent,
    name: &str,
    key: &str,
    delta: i64,
) -> anyhow::Result<std::net::TcpStream> {
    let addr = agent
        .url
        .strip_prefix("http://")
        .context("agent url")?
        .to_owned();
    let body = json!({ "delta": delta }).to_string();
    let request = format!(
        "POST /v1/strict/{name}/add HTTP/1.1\r\nHost: {addr}\r\nContent-Type: \
         application/json\r\nIdempotency-Key: {key}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // A blocking socket is fine here: one small write to a local listener.
    let mut stream = std::net::TcpStream::connect(&addr)?;
    std::io::Write::write_all(&mut stream, request.as_bytes())?;
    Ok(stream)
}

/// Writes `text` to `dir/name` readable by its owner only.
fn private_file(dir: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    countermesh::write_new_file(&path, text, true)?;
    Ok(path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_a_lost_reply_applies_once_and_gets_the_original_result() -> anyhow::Result<()>
{
    let zk = start_zookeeper(ClusterConfig::standalone()).await?;
    let dir = tempfile::tempdir()?;
    let connect = format!("{}/countermesh-keys", zk.connect_string());
    let agent = single(dir.path(), "keys", &["--zookeeper", &connect])?;
    let s = format!("{}/v1/strict", agent.url);
    wait_strict(&s, "orders").await?;
    post(&format!("{s}/orders/set"), &json!({"value": 0}))
        .await?
        .expect_ok();

    // The connection is closed right after the request is written: the agent may or
    // may not have applied it. Either way the retry with the same key leaves the
    // counter added to exactly once and answers the value right after that one add.
    let stream = send_raw_add(&agent, "orders", "kill-1", 5)?;
    drop(stream);
    let retried = post_keyed(&format!("{s}/orders/add"), "kill-1", &json!({"delta": 5})).await?;
    assert_eq!(retried.expect_ok()["value"], 5, "{}", retried.body);
    assert_eq!(value(&s, "orders").await?, 5);

    // This time the add certainly commits (the counter shows it) while its reply is
    // never read; another client adds after it. The retry gets the original post-value
    // (12), not a new one, and changes nothing.
    let stream = send_raw_add(&agent, "orders", "lost-1", 7)?;
    eventually("the first attempt committed", CONVERGE_TIMEOUT, || async {
        let now = value(&s, "orders").await?;
        Ok(if now == 12 {
            Ok(())
        } else {
            Err(now.to_string())
        })
    })
    .await?;
    drop(stream);
    post(&format!("{s}/orders/add"), &json!({"delta": 100}))
        .await?
        .expect_ok();
    for _ in 0..2 {
        let retried =
            post_keyed(&format!("{s}/orders/add"), "lost-1", &json!({"delta": 7})).await?;
        assert_eq!(retried.expect_ok()["value"], 12, "{}", retried.body);
    }
    assert_eq!(value(&s, "orders").await?, 112);

    // The CLI passes --op-id as the header: running the same command twice adds once.
    for _ in 0..2 {
        let mut cli = command();
        cli.args([
            "strict", "add", "orders", "3", "--op-id", "cli-1", "--json", "--agent",
        ])
        .arg(&agent.url);
        let output = cli.output()?;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let answer: Value = serde_json::from_slice(&output.stdout)?;
        assert_eq!(answer["value"], 115, "{answer}");
    }
    assert_eq!(value(&s, "orders").await?, 115);
    // A key the agent would refuse is a usage error before anything is sent.
    let mut cli = command();
    cli.args(["strict", "add", "orders", "--op-id", "not ok", "--agent"])
        .arg(&agent.url);
    assert_eq!(cli.output()?.status.code(), Some(2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_reused_for_another_operation_is_refused() -> anyhow::Result<()> {
    let zk = start_zookeeper(ClusterConfig::standalone()).await?;
    let dir = tempfile::tempdir()?;
    let connect = format!("{}/countermesh-reuse", zk.connect_string());
    let agent = single(dir.path(), "reuse", &["--zookeeper", &connect])?;
    let s = format!("{}/v1/strict", agent.url);
    wait_strict(&s, "stock").await?;
    let add = format!("{s}/stock/add");

    assert_eq!(
        post_keyed(&add, "k-1", &json!({"delta": 1}))
            .await?
            .expect_ok()["value"],
        1
    );
    // Same key, other delta: 422, nothing applied, and the message says what to do.
    let message = post_keyed(&add, "k-1", &json!({"delta": 2}))
        .await?
        .expect_error(422, "idempotency_key_reused");
    assert!(
        message.contains("k-1") && message.contains("no effect"),
        "{message}"
    );
    // Same key, other kind of operation on the same counter.
    post_keyed(
        &format!("{s}/stock/cas"),
        "k-1",
        &json!({"expected": 1, "new": 5}),
    )
    .await?
    .expect_error(422, "idempotency_key_reused");
    assert_eq!(value(&s, "stock").await?, 1);
    // The body's `op_id` is the same key as the header.
    let body_keyed = post(&add, &json!({"delta": 1, "op_id": "k-1"})).await?;
    assert_eq!(body_keyed.expect_ok()["value"], 1, "{}", body_keyed.body);
    // Header and body disagreeing, and malformed keys, are refused before ZooKeeper.
    let message = post_keyed(&add, "k-1", &json!({"delta": 1, "op_id": "k-2"}))
        .await?
        .expect_error(400, "invalid_idempotency_key");
    assert!(message.contains("differ"), "{message}");
    for bad in ["has space", "a:b", &"x".repeat(129)] {
        post_keyed(&add, bad, &json!({"delta": 1}))
            .await?
            .expect_error(400, "invalid_idempotency_key");
    }
    assert_eq!(value(&s, "stock").await?, 1);

    // A retried compare-and-set gets its original outcome, a mismatch included.
    let cas = format!("{s}/stock/cas");
    let first = post_keyed(&cas, "cas-1", &json!({"expected": 9, "new": 10})).await?;
    first.expect_error(409, "cas_mismatch");
    assert_eq!(first.body["error"]["actual"], 1);
    post(&format!("{s}/stock/set"), &json!({"value": 9}))
        .await?
        .expect_ok();
    let again = post_keyed(&cas, "cas-1", &json!({"expected": 9, "new": 10})).await?;
    again.expect_error(409, "cas_mismatch");
    assert_eq!(again.body["error"]["actual"], 1, "the original outcome");
    assert_eq!(value(&s, "stock").await?, 9);
    // A retried set never overwrites a later write.
    let set = format!("{s}/stock/set");
    post_keyed(&set, "set-1", &json!({"value": 50}))
        .await?
        .expect_ok();
    post(&add, &json!({"delta": 1})).await?.expect_ok();
    post_keyed(&set, "set-1", &json!({"value": 50}))
        .await?
        .expect_ok();
    assert_eq!(value(&s, "stock").await?, 51);

    let metrics = http()
        .get(format!("{}/metrics", agent.url))
        .send()
        .await?
        .text()
        .await?;
    let line = "countermesh_strict_ops_total{op=\"add\",outcome=\"op_id_reused\"} 1";
    assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_protected_root_needs_the_auth_file() -> anyhow::Result<()> {
    let zk = start_zookeeper(ClusterConfig::standalone()).await?;
    let dir = tempfile::tempdir()?;
    let connect = format!("{}/guarded", zk.connect_string());
    // The operator's own tooling creates the root: with credentials, every znode it
    // creates (root included) is creator-only.
    let owner = StrictClient::connect(
        &connect,
        StrictOptions::default().with_credentials(Credentials::digest("agent", "agent-pw")),
    )
    .await?;
    owner.counter("seats").await?.add(1).await?;

    let auth = private_file(dir.path(), "zk-auth", "digest:agent:agent-pw\n")?;
    let auth = auth.display().to_string();
    // Through the config file, to cover its keys too.
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!("zookeeper = {connect:?}\nzookeeper_auth_file = {auth:?}\n"),
    )?;
    let with = single(
        dir.path(),
        "with-auth",
        &["--config", &config.display().to_string()],
    )?;
    let s = format!("{}/v1/strict", with.url);
    assert_eq!(wait_strict(&s, "seats").await?.expect_ok()["value"], 1);
    assert_eq!(
        post(&format!("{s}/seats/add"), &json!({"delta": 2}))
            .await?
            .expect_ok()["value"],
        3
    );
    assert_eq!(
        post(&format!("{s}/fresh/add"), &json!({}))
            .await?
            .expect_ok()["value"],
        1
    );

    // Without credentials the session opens (the root exists) but ZooKeeper refuses
    // every read and write, and the agent says which option is missing.
    let without = single(dir.path(), "without-auth", &["--zookeeper", &connect])?;
    let s = format!("{}/v1/strict", without.url);
    let refused = wait_strict(&s, "seats").await?;
    let message = refused.expect_error(503, "zookeeper_not_authorized");
    assert!(message.contains("--zookeeper-auth-file"), "{message}");
    post(&format!("{s}/seats/add"), &json!({}))
        .await?
        .expect_error(503, "zookeeper_not_authorized");
    assert_eq!(owner.counter("seats").await?.get().await?, 3);

    // An auth file other users can read is refused at start, as ssh refuses keys.
    let loose = dir.path().join("loose-auth");
    std::fs::write(&loose, "digest:agent:agent-pw\n")?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644))?;
        let err = start_error(&[
            "--zookeeper",
            &connect,
            "--zookeeper-auth-file",
            &loose.display().to_string(),
        ])?;
        assert!(
            err.contains("--zookeeper-auth-file") && err.contains("chmod 600"),
            "{err}"
        );
    }
    let err = start_error(&["--zookeeper-auth-file", &auth])?;
    assert!(err.contains("needs --zookeeper"), "{err}");
    let bad = private_file(dir.path(), "bad-auth", "agent:agent-pw\n")?;
    let err = start_error(&[
        "--zookeeper",
        &connect,
        "--zookeeper-auth-file",
        &bad.display().to_string(),
    ])?;
    assert!(
        err.contains("digest:USER:PASSWORD") && !err.contains("agent-pw"),
        "{err}"
    );
    Ok(())
}

/// Runs an agent that must refuse to start, and returns its stderr.
fn start_error(args: &[&str]) -> anyhow::Result<String> {
    let mut agent = command();
    agent.args([
        "agent",
        "--insecure-no-peer-verification",
        "--http",
        "127.0.0.1:0",
        "--bind",
        "127.0.0.1:0",
    ]);
    agent.args(args);
    let (status, stderr) = run_to_exit(agent, Duration::from_secs(20))?;
    assert!(!status.success(), "{args:?} started; stderr: {stderr}");
    Ok(stderr)
}

#[cfg(feature = "zookeeper-tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_to_zookeeper() -> anyhow::Result<()> {
    let zk = start_zookeeper(ClusterConfig::standalone().with_tls()).await?;
    let (pki, secure) = zk
        .pki()
        .zip(zk.secure_connect_string())
        .context("a TLS cluster")?;
    let dir = tempfile::tempdir()?;
    let ca = private_file(dir.path(), "zk-ca.pem", &pki.ca_pem)?;
    let cert = private_file(dir.path(), "agent.pem", &pki.client_cert_pem)?;
    let key = private_file(dir.path(), "agent.key", &pki.client_key_pem)?;
    let [ca, cert, key] = [ca, cert, key].map(|p| p.display().to_string());
    let connect = format!("{secure}/countermesh-tls");
    let agent = single(
        dir.path(),
        "tls",
        &[
            "--zookeeper",
            &connect,
            "--zookeeper-tls-ca",
            &ca,
            "--zookeeper-tls-cert",
            &cert,
            "--zookeeper-tls-key",
            &key,
        ],
    )?;
    let s = format!("{}/v1/strict", agent.url);
    wait_strict(&s, "secure")
        .await?
        .expect_error(404, "not_found");
    assert_eq!(
        post_keyed(&format!("{s}/secure/add"), "tls-1", &json!({"delta": 2}))
            .await?
            .expect_ok()["value"],
        2
    );
    assert_eq!(value(&s, "secure").await?, 2);

    // All three files or none; a file that is not PEM stops the agent at start.
    let err = start_error(&["--zookeeper", &connect, "--zookeeper-tls-ca", &ca])?;
    assert!(
        err.contains("missing: --zookeeper-tls-cert, --zookeeper-tls-key"),
        "{err}"
    );
    let junk = private_file(dir.path(), "junk.pem", "not a certificate")?
        .display()
        .to_string();
    let err = start_error(&[
        "--zookeeper",
        &connect,
        "--zookeeper-tls-ca",
        &junk,
        "--zookeeper-tls-cert",
        &cert,
        "--zookeeper-tls-key",
        &key,
    ])?;
    assert!(err.contains("--zookeeper-tls"), "{err}");
    Ok(())
}
