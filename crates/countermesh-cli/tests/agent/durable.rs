//! Durable adds: `?durable=true` over HTTP, `--resp-durable` and `WAIT` over RESP answer
//! only after the flush, so what they acknowledged survives `kill -9`. The agents run
//! with a one-hour `--commit-interval`, so nothing but those flushes reaches the disk
//! before the kill: without them the adds would be lost, which is what makes the
//! restarted values meaningful.

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use crate::support::{Agent, command, get, http, post, post_keyed, run_to_exit, single};

/// Long enough that no periodic commit happens during a test.
const NO_PERIODIC_COMMIT: &str = "1h";

fn durable_agent(dir: &Path, name: &str, extra: &[&str]) -> anyhow::Result<Agent> {
    let data = dir.join("data").display().to_string();
    let mut args = vec![
        "--data-dir",
        data.as_str(),
        "--commit-interval",
        NO_PERIODIC_COMMIT,
    ];
    args.extend_from_slice(extra);
    single(dir, name, &args)
}

async fn value(url: &str, name: &str) -> anyhow::Result<Value> {
    Ok(get(&format!("{url}/v1/counters/{name}")).await?.expect_ok()["value"].clone())
}

async fn metrics(url: &str) -> anyhow::Result<String> {
    Ok(http()
        .get(format!("{url}/metrics"))
        .send()
        .await?
        .text()
        .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_http_adds_survive_kill_9() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut agent = durable_agent(dir.path(), "durable-http", &[])?;
    let url = agent.url.clone();

    let reply = post(
        &format!("{url}/v1/counters/orders/add?durable=true"),
        &json!({"delta": 7}),
    )
    .await?;
    assert_eq!(
        reply.expect_ok(),
        &json!({"name": "orders", "delta": 7, "consistency": "eventual", "durable": true})
    );
    let reply = post(
        &format!("{url}/v1/counters:batch?durable=true"),
        &json!({"adds": [{"name": "orders", "delta": 3}, {"name": "refunds", "delta": -2}]}),
    )
    .await?;
    assert_eq!(
        reply.expect_ok(),
        &json!({"applied": 2, "consistency": "eventual", "durable": true})
    );
    // A keyed add answered without waiting, then repeated with durable=true: the repeat
    // adds nothing but flushes before it says durable.
    let keyed = format!("{url}/v1/counters/keyed/add");
    post_keyed(&keyed, "k1", &json!({"delta": 4}))
        .await?
        .expect_ok();
    let reply = post_keyed(&format!("{keyed}?durable=true"), "k1", &json!({"delta": 4})).await?;
    assert_eq!(reply.expect_ok()["durable"], true);
    // durable=false is the default behaviour: no `durable` field, no wait promised.
    let reply = post(
        &format!("{url}/v1/counters/orders/add?durable=false"),
        &json!({"delta": 0}),
    )
    .await?;
    assert_eq!(reply.expect_ok().get("durable"), None);

    let text = metrics(&url).await?;
    assert!(
        text.contains("countermesh_durable_requests_total{via=\"http\",outcome=\"ok\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("countermesh_durable_flush_duration_seconds_count 3"),
        "{text}"
    );

    agent.kill()?;
    let restarted = durable_agent(dir.path(), "durable-http-restarted", &[])?;
    assert_eq!(value(&restarted.url, "orders").await?, 10);
    assert_eq!(value(&restarted.url, "refunds").await?, -2);
    assert_eq!(value(&restarted.url, "keyed").await?, 4);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_requests_are_refused_without_a_data_dir_or_with_a_bad_value() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let memory = single(dir.path(), "durable-memory", &[])?;
    let add = format!("{}/v1/counters/orders/add", memory.url);
    let batch = format!("{}/v1/counters:batch", memory.url);
    let body = json!({"delta": 1});
    let batch_body = json!({"adds": [{"name": "orders", "delta": 1}]});

    let message = post(&format!("{add}?durable=true"), &body)
        .await?
        .expect_error(400, "durable_requires_data_dir");
    assert!(message.contains("--data-dir"), "{message}");
    assert!(message.contains("nothing was added"), "{message}");
    post(&format!("{batch}?durable=true"), &batch_body)
        .await?
        .expect_error(400, "durable_requires_data_dir");
    for bad in ["yes", "1", "TRUE", ""] {
        let message = post(&format!("{add}?durable={bad}"), &body)
            .await?
            .expect_error(400, "invalid_value");
        assert!(message.contains("`durable`"), "{message}");
        post(&format!("{batch}?durable={bad}"), &batch_body)
            .await?
            .expect_error(400, "invalid_value");
    }
    // Nothing of the refused requests was applied: the counter was never created.
    let missing = get(&format!("{}/v1/counters/orders", memory.url)).await?;
    missing.expect_error(404, "not_found");
    Ok(())
}

/// One RESP exchange on an open connection: sends `request` (inline commands) and reads
/// until `lines` reply lines arrived.
fn exchange(stream: &mut TcpStream, request: &str, lines: usize) -> anyhow::Result<String> {
    use std::io::Read as _;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while answer.iter().filter(|&&b| b == b'\n').count() < lines {
        let n = stream.read(&mut chunk)?;
        anyhow::ensure!(n > 0, "the agent closed the connection; got {answer:?}");
        answer.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8(answer)?)
}

fn connect(agent: &Agent) -> anyhow::Result<TcpStream> {
    let addr: SocketAddr = agent.resp.context("no RESP address announced")?;
    Ok(TcpStream::connect(addr)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp_durable_and_wait_survive_kill_9() -> anyhow::Result<()> {
    // --resp-durable: every INCRBY answers after its flush.
    let dir = tempfile::tempdir()?;
    let mut agent = durable_agent(
        dir.path(),
        "resp-durable",
        &["--resp", "127.0.0.1:0", "--resp-durable"],
    )?;
    let mut stream = connect(&agent)?;
    assert_eq!(
        exchange(&mut stream, "INCRBY views 5\r\nDECR views\r\n", 2)?,
        ":5\r\n:4\r\n"
    );
    let text = metrics(&agent.url).await?;
    assert!(
        text.contains("countermesh_durable_requests_total{via=\"resp\",outcome=\"ok\"} 2"),
        "{text}"
    );
    agent.kill()?;
    let restarted = durable_agent(dir.path(), "resp-durable-restarted", &[])?;
    assert_eq!(value(&restarted.url, "views").await?, 4);
    drop(restarted);

    // WAIT without --resp-durable: the adds before it are durable once it answers 0.
    let dir = tempfile::tempdir()?;
    let mut agent = durable_agent(dir.path(), "resp-wait", &["--resp", "127.0.0.1:0"])?;
    let mut stream = connect(&agent)?;
    assert_eq!(
        exchange(
            &mut stream,
            "INCRBY clicks 3\r\nWAIT 0 0\r\nWAIT 0 5000\r\n",
            3
        )?,
        ":3\r\n:0\r\n:0\r\n"
    );
    assert!(exchange(&mut stream, "WAIT -1 0\r\n", 1)?.starts_with("-ERR numreplicas"));
    assert!(exchange(&mut stream, "WAIT 0\r\n", 1)?.starts_with("-ERR wrong number"));
    agent.kill()?;
    let restarted = durable_agent(dir.path(), "resp-wait-restarted", &[])?;
    assert_eq!(value(&restarted.url, "clicks").await?, 3);

    // Without a data directory WAIT says why it cannot answer, and --resp-durable is
    // refused at start.
    let memory = single(dir.path(), "resp-memory", &["--resp", "127.0.0.1:0"])?;
    let mut stream = connect(&memory)?;
    let answer = exchange(&mut stream, "WAIT 0 0\r\n", 1)?;
    assert!(
        answer.starts_with("-ERR WAIT cannot make adds durable: this agent has no data directory"),
        "{answer}"
    );
    let mut refused = command();
    refused.args([
        "agent",
        "--insecure-no-peer-verification",
        "--http",
        "127.0.0.1:0",
        "--bind",
        "127.0.0.1:0",
        "--resp",
        "127.0.0.1:0",
        "--resp-durable",
    ]);
    let (status, stderr) = run_to_exit(refused, Duration::from_secs(20))?;
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("--resp-durable needs --data-dir"),
        "{stderr}"
    );
    Ok(())
}
