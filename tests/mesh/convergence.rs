//! Five real nodes, adds from many tasks at every node: every node reads the exact sum.

use std::collections::BTreeMap;

use anyhow::Result;
use countermesh::MemberState;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::support::{Cluster, seed};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_nodes_many_tasks_converge_to_the_exact_sum() -> Result<()> {
    let seed = seed("five_nodes_many_tasks_converge_to_the_exact_sum");
    let cluster = Cluster::start(5, false, seed).await?;
    let joined = cluster.wait_full_membership().await?;
    println!("5 nodes: full membership after {joined:?}");

    let names: Vec<String> = (0..8).map(|i| format!("events.{i}")).collect();
    let mut tasks = Vec::new();
    for node in 0..5 {
        for task in 0..4 {
            let handles: Vec<_> = names
                .iter()
                .map(|n| cluster.node(node).counter(n))
                .collect::<Result<_, _>>()?;
            let mut rng = SmallRng::seed_from_u64(seed ^ (node * 16 + task) as u64);
            tasks.push(tokio::spawn(async move {
                let mut sums = vec![0i128; handles.len()];
                for i in 0..2_000 {
                    let which = rng.random_range(0..handles.len());
                    let delta: i64 = rng.random_range(-50..=100);
                    handles[which].add(delta);
                    sums[which] += i128::from(delta);
                    if i % 100 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                sums
            }));
        }
    }
    let mut expected: BTreeMap<String, i128> = names.iter().map(|n| (n.clone(), 0)).collect();
    for task in tasks {
        for (name, sum) in names.iter().zip(task.await?) {
            *expected.get_mut(name).expect("known name") += sum;
        }
    }
    let took = cluster.wait_converged(&expected).await?;
    println!("5 nodes, 20 tasks x 2000 adds: every node exact {took:?} after the last add");

    for mesh in cluster.running() {
        let metrics = mesh.metrics();
        assert_eq!(metrics.counters, names.len());
        assert!(metrics.rounds > 0);
        let value = mesh.value("events.0").expect("counter exists");
        assert_eq!(value.contributors, 5, "all five nodes contributed");
    }
    cluster.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_leaves_is_seen_down_and_its_counts_stay() -> Result<()> {
    let seed = seed("a_node_that_leaves_is_seen_down_and_its_counts_stay");
    let mut cluster = Cluster::start(3, false, seed).await?;
    cluster.wait_full_membership().await?;
    cluster.node(2).counter("visits")?.add(42);
    cluster.node(0).counter("visits")?.add(1);
    let expected = BTreeMap::from([("visits".to_owned(), 43)]);
    cluster.wait_converged(&expected).await?;

    let leaver = cluster.slots[2].mesh.take().expect("running");
    let leaver_addr = leaver.local_addr();
    // Adds made right before a graceful shutdown still reach the cluster: shutdown
    // pushes them and waits for the peers to acknowledge.
    leaver.counter("visits")?.add(8);
    leaver.shutdown().await?;
    let expected = BTreeMap::from([("visits".to_owned(), 51)]);

    let started = std::time::Instant::now();
    loop {
        let seen_down = cluster.running().all(|mesh| {
            !mesh
                .members()
                .iter()
                .any(|m| m.addr == leaver_addr && m.state != MemberState::Down)
        });
        if seen_down {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < crate::support::PATIENCE,
            "the leaver was never seen down"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Membership never deletes counter state.
    cluster.wait_converged(&expected).await?;
    cluster.shutdown().await
}
