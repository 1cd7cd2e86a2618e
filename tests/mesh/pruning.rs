//! Pruning over real nodes: a restarted node's earlier actor is folded into a sink and
//! dropped everywhere, totals stay exact, and the data directories forget the pruned
//! entries (a restart does not bring them back).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use countermesh::PruneConfig;

use crate::support::{Cluster, PATIENCE, seed};

/// Pruning settings that act within a test's patience: an actor replaced at its
/// address is prunable after one second.
fn quick_prune() -> PruneConfig {
    PruneConfig {
        after_down: Duration::from_secs(60),
        after_replaced: Duration::from_secs(1),
        interval: Duration::from_millis(200),
        intent_timeout: Duration::from_secs(5),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_nodes_old_actor_is_pruned_everywhere_and_stays_pruned_on_disk() -> Result<()> {
    let seed = seed("a_restarted_nodes_old_actor_is_pruned_everywhere");
    let mut cluster = Cluster::start(0, true, seed).await?;
    cluster.prune = Some(quick_prune());
    for i in 0..3 {
        cluster.add_slot(seed.wrapping_add(i))?;
        cluster.start_node(usize::try_from(i)?).await?;
    }
    cluster.wait_full_membership().await?;

    let mut expected = BTreeMap::new();
    for (i, amount) in [(0usize, 10i64), (1, 20), (2, 30)] {
        cluster.node(i).counter("orders")?.add(amount);
        *expected.entry("orders".to_owned()).or_insert(0i128) += i128::from(amount);
    }
    cluster.node(2).counter("only.two")?.add(7);
    expected.insert("only.two".to_owned(), 7);
    cluster.wait_converged(&expected).await?;
    for mesh in cluster.running() {
        mesh.flush().await?;
    }
    let old_actor = cluster.node(2).actor_id();

    // Node 2 restarts from its data directory under a new actor; the old one is
    // replaced at its address and becomes prunable after a second.
    cluster.kill(2).await;
    cluster.start_node(2).await?;
    cluster.node(2).counter("orders")?.add(3);
    *expected.get_mut("orders").expect("present") += 3;

    let started = Instant::now();
    loop {
        let pruned_everywhere = cluster.running().all(|mesh| {
            let metrics = mesh.metrics();
            metrics.pruning.tombstones >= 1 && metrics.pruning.sinks_completed >= 1
        });
        if pruned_everywhere {
            break;
        }
        ensure!(
            started.elapsed() < PATIENCE,
            "the old actor {old_actor} was not pruned at every node within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.wait_converged(&expected).await?;
    for mesh in cluster.running() {
        // Nodes 0 and 1, node 2's new actor, and the sink holding the old one's counts.
        let contributors = mesh.value("orders").map(|v| v.contributors);
        assert_eq!(contributors, Some(4), "at {}", mesh.local_addr());
        assert_eq!(mesh.metrics().actors, 4, "at {}", mesh.local_addr());
        mesh.flush().await?;
    }

    // Restart node 2 again: its data directory holds the sink, so right after the start
    // (before any gossip could repair anything) it knows the tombstone and reads exact
    // totals for what it held. (That the pruned entries are deleted from the directory,
    // rather than dropped again at every restore, is checked by the storage unit tests.)
    cluster.kill(2).await;
    cluster.start_node(2).await?;
    let restored = cluster.node(2).metrics();
    assert!(
        restored.pruning.tombstones >= 1,
        "the tombstone comes back from the data directory"
    );
    assert_eq!(cluster.node(2).value("only.two").map(|v| v.value), Some(7));
    // Nodes 0 and 1, the second incarnation, the sink and this new incarnation: the
    // pruned first incarnation is not among them, and counts nowhere but in the sink.
    assert_eq!(restored.actors, 5, "the pruned actor came back from disk");
    let orders = cluster.node(2).value("orders").map(|v| v.contributors);
    assert_eq!(orders, Some(4), "0, 1, the second incarnation and the sink");
    cluster.wait_converged(&expected).await?;
    cluster.shutdown().await
}
