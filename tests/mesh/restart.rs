//! Crashes and restarts: from the data directory (a new actor that restores the old
//! one's counts; nothing lost or doubled after `flush`), and with a wiped directory
//! (a new actor, totals still exact).

use std::collections::BTreeMap;

use anyhow::Result;

use crate::support::{Cluster, seed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_restarts_from_its_data_dir_without_loss_or_double_count() -> Result<()> {
    let seed = seed("killed_node_restarts_from_its_data_dir");
    let mut cluster = Cluster::start(3, true, seed).await?;
    cluster.wait_full_membership().await?;

    let mut expected = BTreeMap::new();
    for (i, amount) in [(0usize, 10i64), (1, 20), (2, 30)] {
        let counter = cluster.node(i).counter("orders")?;
        for _ in 0..amount {
            counter.add(1);
        }
        counter.add(-5);
        *expected.entry("orders".to_owned()).or_insert(0i128) += i128::from(amount - 5);
    }
    // Node 2 also has a counter only it touched.
    cluster.node(2).counter("only.two")?.add(7);
    expected.insert("only.two".to_owned(), 7);
    for mesh in cluster.running() {
        mesh.flush().await?;
    }
    let actor_before = cluster.node(2).actor_id();

    cluster.kill(2).await;
    // The survivors hold everything, whether or not node 2 had gossiped it yet: a
    // flushed add is durable, and the restarted node gossips it again.
    cluster.node(0).counter("orders")?.add(100);
    *expected.get_mut("orders").expect("present") += 100;

    cluster.start_node(2).await?;
    assert_ne!(
        cluster.node(2).actor_id(),
        actor_before,
        "every start counts under a fresh actor, so no version is ever issued twice"
    );
    // Immediately after restart, before any gossip, node 2 reads its own flushed adds.
    let own = cluster.node(2).value("only.two").map(|v| v.value);
    assert_eq!(own, Some(7), "node 2 restored its own counts from disk");

    // More adds at the restarted node count under its new actor.
    cluster.node(2).counter("orders")?.add(3);
    *expected.get_mut("orders").expect("present") += 3;
    let took = cluster.wait_converged(&expected).await?;
    let contributors = cluster.node(0).value("orders").map(|v| v.contributors);
    assert_eq!(
        contributors,
        Some(4),
        "nodes 0 and 1, node 2's first and second incarnation"
    );
    println!("after a restart from the data dir: exact everywhere in {took:?}");
    cluster.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unflushed_adds_are_lost_or_kept_whole_never_half() -> Result<()> {
    let seed = seed("unflushed_adds_are_lost_or_kept_whole_never_half");
    let mut cluster = Cluster::start(2, true, seed).await?;
    cluster.wait_full_membership().await?;
    let counter = cluster.node(1).counter("clicks")?;
    counter.add(10);
    cluster.node(1).flush().await?;
    // Not flushed: may or may not reach a group commit before the crash.
    counter.add(5);
    cluster.kill(1).await;
    cluster.start_node(1).await?;

    // Wait until both nodes agree, then check the total is one of the two honest
    // outcomes: the unflushed add lost (10) or kept (15); never anything else.
    let started = std::time::Instant::now();
    loop {
        let a = cluster.node(0).value("clicks").map(|v| v.value);
        let b = cluster.node(1).value("clicks").map(|v| v.value);
        if a.is_some() && a == b {
            let total = a.unwrap_or_default();
            assert!(
                total == 10 || total == 15,
                "total {total} is neither 10 nor 15"
            );
            println!("unflushed add at crash: total after restart {total}");
            break;
        }
        anyhow::ensure!(
            started.elapsed() < crate::support::PATIENCE,
            "nodes never agreed: {a:?} vs {b:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    cluster.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_data_dir_gets_a_new_actor_and_totals_stay_exact() -> Result<()> {
    let seed = seed("wiped_data_dir_gets_a_new_actor");
    let mut cluster = Cluster::start(3, true, seed).await?;
    cluster.wait_full_membership().await?;
    cluster.node(2).counter("signups")?.add(11);
    cluster.node(0).counter("signups")?.add(4);
    let mut expected = BTreeMap::from([("signups".to_owned(), 15i128)]);
    // Make sure the survivors hold node 2's adds before its disk is wiped.
    cluster.wait_converged(&expected).await?;
    let old_actor = cluster.node(2).actor_id();

    cluster.kill(2).await;
    let dir = cluster.slots[2].dir.path().to_owned();
    std::fs::remove_dir_all(&dir)?;
    std::fs::create_dir_all(&dir)?;
    cluster.start_node(2).await?;
    let new_actor = cluster.node(2).actor_id();
    assert_ne!(
        new_actor, old_actor,
        "a wiped node must never reuse its actor id"
    );

    cluster.node(2).counter("signups")?.add(1);
    *expected.get_mut("signups").expect("present") += 1;
    cluster.wait_converged(&expected).await?;
    let contributors = cluster.node(0).value("signups").map(|v| v.contributors);
    assert_eq!(contributors, Some(3), "old actor, new actor and node 0");
    cluster.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_in_use_is_refused() -> Result<()> {
    let seed = seed("a_data_dir_in_use_is_refused");
    let cluster = Cluster::start(1, true, seed).await?;
    let dir = cluster.slots[0].dir.path().to_owned();
    let second = countermesh::Mesh::builder()
        .bind("127.0.0.1:0".parse()?)
        .tls(crate::support::tls_for(&cluster.ca)?)
        .data_dir(&dir)
        .start()
        .await;
    match second {
        Err(countermesh::MeshError::Storage(countermesh::StorageError::InUse(path))) => {
            assert_eq!(path, dir);
        }
        other => anyhow::bail!("expected InUse, got {other:?}"),
    }
    cluster.shutdown().await
}
