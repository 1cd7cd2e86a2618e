//! Regression tests for issue 8 that need real nodes: a task that dies fails the mesh
//! loudly instead of leaving a zombie member, and incoming connections are capped per
//! peer.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use countermesh::{CLUSTER_SERVER_NAME, MemberState, MeshError};

use crate::support::{Cluster, PATIENCE, seed, tls_for};

/// Item 1: the timer task panics. The node must report the failure (health, metric,
/// errors from its API) and close its endpoint, so that its peers declare it down
/// instead of keeping a member that answers pings but never gossips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item1_a_task_that_dies_fails_the_mesh_loudly() -> Result<()> {
    let seed = seed("item1_a_task_that_dies_fails_the_mesh_loudly");
    let mut cluster = Cluster::start(3, false, seed).await?;
    cluster.wait_full_membership().await?;
    let victim = cluster.node(2).local_addr();
    cluster.node(2).inject_timer_panic();

    let started = Instant::now();
    while cluster.node(2).health().is_ok() {
        ensure!(
            started.elapsed() < PATIENCE,
            "the node never reported its failure"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let metrics = cluster.node(2).metrics();
    assert_eq!(metrics.refusals.task_failures, 1);
    let failure = metrics.failure.context("metrics name the failure")?;
    assert!(failure.contains("timer"), "{failure}");
    assert!(matches!(
        cluster.node(2).flush().await,
        Err(MeshError::Failed(_))
    ));
    assert!(matches!(
        cluster.node(2).counter("x"),
        Err(MeshError::Failed(_))
    ));

    // No zombie: both peers declare the failed node down.
    let started = Instant::now();
    loop {
        let down = (0..2).all(|i| {
            cluster
                .node(i)
                .members()
                .iter()
                .any(|m| m.addr == victim && matches!(m.state, MemberState::Down))
        });
        if down {
            break;
        }
        ensure!(
            started.elapsed() < PATIENCE,
            "peers still count the failed node as a member"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failed = cluster.slots[2].mesh.take().context("running")?;
    assert!(matches!(failed.shutdown().await, Err(MeshError::Failed(_))));
    cluster.shutdown().await
}

/// Item 6: one peer address may hold at most a few incoming connections; more are
/// refused and counted, and the node keeps serving the ones it accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item6_incoming_connections_are_capped_per_peer() -> Result<()> {
    let seed = seed("item6_incoming_connections_are_capped_per_peer");
    let cluster = Cluster::start(1, false, seed).await?;
    let target = cluster.node(0).local_addr();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    endpoint.set_default_client_config(tls_for(&cluster.ca)?.quinn_client_config()?);
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..8 {
        let connection = endpoint.connect(target, CLUSTER_SERVER_NAME)?.await;
        match connection {
            Ok(connection) => {
                // The server refuses after the handshake packet arrives; a refused
                // connection is closed by it right away.
                let closed =
                    tokio::time::timeout(Duration::from_millis(500), connection.closed()).await;
                if closed.is_ok() {
                    refused += 1;
                } else {
                    open.push(connection);
                }
            }
            Err(_) => refused += 1,
        }
    }
    assert_eq!(open.len(), 4, "four connections per peer are served");
    assert_eq!(refused, 4);
    assert!(cluster.node(0).metrics().transport.connections_refused >= 4);
    for connection in open {
        connection.close(0u32.into(), b"done");
    }
    endpoint.wait_idle().await;
    cluster.shutdown().await
}
