//! Strict routes against a real ZooKeeper (the strict crate's harness): every
//! operation, the strict error codes, and 503 once ZooKeeper is gone.

use std::time::Duration;

use anyhow::Context;
use countermesh_strict::harness::ZkCluster;
use serde_json::json;

use crate::support::{CONVERGE_TIMEOUT, delete, eventually, get, post, single};

async fn start_zookeeper() -> anyhow::Result<ZkCluster> {
    tokio::task::spawn_blocking(ZkCluster::standalone)
        .await?
        .context("starting ZooKeeper (scripts/ensure-zookeeper installs it)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_routes_work_against_zookeeper_and_answer_503_when_it_is_down() -> anyhow::Result<()>
{
    let mut zk = start_zookeeper().await?;
    let dir = tempfile::tempdir()?;
    let connect = format!("{}/countermesh-agent-test", zk.connect_string());
    let agent = single(
        dir.path(),
        "strict",
        &["--zookeeper", &connect, "--strict-timeout", "2s"],
    )?;
    let s = format!("{}/v1/strict", agent.url);

    // The session opens in the background; the first answer other than 503 shows it
    // is up (404: reading a counter that does not exist creates nothing).
    eventually("strict mode connected", CONVERGE_TIMEOUT, || async {
        let read = get(&format!("{s}/tickets")).await?;
        Ok(if read.status == 404 {
            Ok(())
        } else {
            Err(read.body.to_string())
        })
    })
    .await?;

    // The first write creates the counter at 0; adds return the value right after them.
    assert_eq!(
        post(&format!("{s}/tickets/set"), &json!({"value": 0}))
            .await?
            .expect_ok(),
        &json!({"name": "tickets", "value": 0})
    );
    assert_eq!(
        get(&format!("{s}/tickets")).await?.expect_ok(),
        &json!({"name": "tickets", "value": 0, "consistency": "strict"})
    );
    let added = post(&format!("{s}/tickets/add"), &json!({"delta": 5})).await?;
    assert_eq!(
        added.expect_ok(),
        &json!({"name": "tickets", "value": 5, "consistency": "strict"})
    );
    assert_eq!(
        post(&format!("{s}/tickets/add"), &json!({}))
            .await?
            .expect_ok()["value"],
        6
    );
    assert_eq!(
        post(&format!("{s}/tickets/add"), &json!({"delta": -2}))
            .await?
            .expect_ok()["value"],
        4
    );
    assert_eq!(get(&format!("{s}/tickets")).await?.expect_ok()["value"], 4);
    assert_eq!(
        get(&format!("{s}/tickets?sequential=true"))
            .await?
            .expect_ok()["value"],
        4
    );

    // Compare-and-set: a swap, then a mismatch (409 with the actual value).
    let swapped = post(
        &format!("{s}/tickets/cas"),
        &json!({"expected": 4, "new": 10}),
    )
    .await?;
    assert_eq!(
        swapped.expect_ok(),
        &json!({"name": "tickets", "swapped": true, "value": 10})
    );
    let mismatch = post(
        &format!("{s}/tickets/cas"),
        &json!({"expected": 4, "new": 11}),
    )
    .await?;
    mismatch.expect_error(409, "cas_mismatch");
    assert_eq!(mismatch.body["error"]["actual"], 10, "{}", mismatch.body);
    assert_eq!(get(&format!("{s}/tickets")).await?.expect_ok()["value"], 10);

    // Set, then an add that would overflow: 400 invalid_value, counter unchanged.
    let set = post(&format!("{s}/tickets/set"), &json!({"value": i64::MAX})).await?;
    assert_eq!(
        set.expect_ok(),
        &json!({"name": "tickets", "value": i64::MAX})
    );
    post(&format!("{s}/tickets/add"), &json!({"delta": 1}))
        .await?
        .expect_error(400, "invalid_value");
    assert_eq!(
        get(&format!("{s}/tickets")).await?.expect_ok()["value"],
        i64::MAX
    );

    // Bad input is refused before ZooKeeper is asked.
    post(&format!("{s}/no%20spaces/add"), &json!({}))
        .await?
        .expect_error(400, "invalid_name");
    post(&format!("{s}/tickets/cas"), &json!({"expected": 1}))
        .await?
        .expect_error(400, "invalid_body");
    post(&format!("{s}/tickets/set"), &json!({"value": "7"}))
        .await?
        .expect_error(400, "invalid_value");
    get(&format!("{s}/tickets?sequential=maybe"))
        .await?
        .expect_error(400, "invalid_value");

    // Delete; the next write creates the counter again at 0, a read does not.
    let deleted = delete(&format!("{s}/tickets")).await?;
    assert_eq!(
        deleted.expect_ok(),
        &json!({"name": "tickets", "deleted": true})
    );
    assert_eq!(
        post(&format!("{s}/tickets/add"), &json!({"delta": 3}))
            .await?
            .expect_ok()["value"],
        3
    );
    delete(&format!("{s}/tickets")).await?.expect_ok();
    get(&format!("{s}/tickets"))
        .await?
        .expect_error(404, "not_found");

    // The metrics saw the operations, the mismatch and the overflow.
    let metrics = crate::support::http()
        .get(format!("{}/metrics", agent.url))
        .send()
        .await?
        .text()
        .await?;
    for line in [
        "countermesh_strict_connected 1",
        "countermesh_strict_ops_total{op=\"cas\",outcome=\"mismatch\"} 1",
        "countermesh_strict_ops_total{op=\"add\",outcome=\"overflow\"} 1",
        "countermesh_strict_op_duration_seconds_bucket{op=\"add\",le=\"+Inf\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }

    // ZooKeeper goes away: strict routes answer 503 within a bounded time (the
    // configured 2 s operation timeout plus slack), eventual routes keep working.
    tokio::task::spawn_blocking(move || {
        zk.kill(0)?;
        drop(zk);
        anyhow::Ok(())
    })
    .await??;
    let started = std::time::Instant::now();
    let message = eventually("503 once ZooKeeper is down", CONVERGE_TIMEOUT, || async {
        let read = post(&format!("{s}/tickets/add"), &json!({"delta": 1})).await?;
        Ok(if read.status == 503 {
            Ok(read.expect_error(503, "unavailable"))
        } else {
            Err(read.body.to_string())
        })
    })
    .await?;
    assert!(message.contains("ZooKeeper"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(25));
    post(
        &format!("{}/v1/counters/still.eventual/add", agent.url),
        &json!({}),
    )
    .await?
    .expect_ok();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_zookeeper_does_not_stop_the_agent() -> anyhow::Result<()> {
    // A port nobody listens on: bind one, note it, free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = tempfile::tempdir()?;
    let connect = format!("127.0.0.1:{port}");
    let agent = single(
        dir.path(),
        "nozk",
        &["--zookeeper", &connect, "--strict-timeout", "1s"],
    )?;
    let message = post(&format!("{}/v1/strict/t/add", agent.url), &json!({}))
        .await?
        .expect_error(503, "unavailable");
    assert!(message.contains(&connect), "{message}");
    post(&format!("{}/v1/counters/t/add", agent.url), &json!({}))
        .await?
        .expect_ok();
    let status = get(&format!("{}/v1/status", agent.url)).await?;
    assert_eq!(status.expect_ok()["strict"]["configured"], true);
    assert_eq!(status.body["strict"]["connected"], false);
    Ok(())
}

/// Issue 8 item 8: a `GET` of a strict counter that does not exist answers 404 and
/// creates nothing in ZooKeeper (before, any web page could create unbounded znodes
/// with `<img src=".../v1/strict/N">`); only POSTs create.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_a_missing_strict_counter_is_404_and_creates_no_znode() -> anyhow::Result<()> {
    let zk = start_zookeeper().await?;
    let dir = tempfile::tempdir()?;
    let chroot = "/countermesh-agent-get";
    let connect = format!("{}{chroot}", zk.connect_string());
    let agent = single(dir.path(), "strict-get", &["--zookeeper", &connect])?;
    let s = format!("{}/v1/strict", agent.url);
    eventually("strict mode connected", CONVERGE_TIMEOUT, || async {
        let read = get(&format!("{s}/ghost")).await?;
        Ok(if read.status == 503 {
            Err(read.body.to_string())
        } else {
            Ok(())
        })
    })
    .await?;

    for url in [
        format!("{s}/ghost"),
        format!("{s}/ghost?sequential=true"),
        format!("{s}/ghost"),
    ] {
        let message = get(&url).await?.expect_error(404, "not_found");
        assert!(message.contains("ghost"), "{message}");
    }
    let zookeeper = zookeeper_client::Client::connect(&zk.connect_string()).await?;
    let znode = format!("{chroot}/counters/ghost");
    assert!(
        zookeeper.check_stat(&znode).await?.is_none(),
        "a GET created {znode}"
    );
    // Deleting a missing counter succeeds and creates nothing either.
    delete(&format!("{s}/ghost")).await?.expect_ok();
    assert!(zookeeper.check_stat(&znode).await?.is_none());

    // A POST creates it; then reads work, and after a delete they are 404 again.
    assert_eq!(
        post(&format!("{s}/ghost/add"), &json!({"delta": 2}))
            .await?
            .expect_ok()["value"],
        2
    );
    assert!(zookeeper.check_stat(&znode).await?.is_some());
    assert_eq!(get(&format!("{s}/ghost")).await?.expect_ok()["value"], 2);
    delete(&format!("{s}/ghost")).await?.expect_ok();
    get(&format!("{s}/ghost"))
        .await?
        .expect_error(404, "not_found");
    assert!(zookeeper.check_stat(&znode).await?.is_none());
    Ok(())
}
