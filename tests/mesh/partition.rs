//! Partitions and packet loss injected by the fault socket (real QUIC underneath), and
//! a late joiner catching up with thousands of counters.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::support::{Cluster, GOSSIP, seed};

/// Blackholes traffic between slots in `left` and slots in `right`, both ways.
fn partition(cluster: &Cluster, left: &[usize], right: &[usize]) {
    let addrs = |side: &[usize]| -> Vec<SocketAddr> {
        side.iter().filter_map(|&i| cluster.slots[i].addr).collect()
    };
    for &i in left {
        cluster.slots[i].faults.blackhole(addrs(right));
    }
    for &i in right {
        cluster.slots[i].faults.blackhole(addrs(left));
    }
}

fn heal(cluster: &Cluster) {
    for slot in &cluster.slots {
        slot.faults.clear_blackholes();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_with_adds_on_both_sides_heals_to_the_exact_sum() -> Result<()> {
    let seed = seed("partition_with_adds_on_both_sides_heals");
    let cluster = Cluster::start(4, false, seed).await?;
    cluster.wait_full_membership().await?;
    let (left, right) = ([0usize, 1], [2usize, 3]);
    partition(&cluster, &left, &right);

    let mut rng = SmallRng::seed_from_u64(seed);
    let mut expected: BTreeMap<String, i128> = BTreeMap::new();
    // Several gossip rounds of adds on both sides while they cannot talk.
    for _round in 0..10 {
        for node in 0..4 {
            for name in ["shared", if node < 2 { "left" } else { "right" }] {
                let delta: i64 = rng.random_range(-20..=50);
                cluster.node(node).counter(name)?.add(delta);
                *expected.entry(name.to_owned()).or_default() += i128::from(delta);
            }
        }
        tokio::time::sleep(GOSSIP).await;
    }
    // The partition is real: the left side has never heard of the right side's counter.
    for &i in &left {
        assert_eq!(
            cluster.node(i).value("right"),
            None,
            "node {i} saw across the partition"
        );
    }
    let blackholed: u64 = cluster
        .slots
        .iter()
        .map(|s| s.faults.stats().blackholed)
        .sum();
    assert!(blackholed > 0, "no packet was blackholed");

    heal(&cluster);
    let took = cluster.wait_converged(&expected).await?;
    println!("partition healed: exact everywhere {took:?} after healing");
    cluster.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_percent_loss_still_converges_exactly() -> Result<()> {
    let seed = seed("five_percent_loss_still_converges_exactly");
    let cluster = Cluster::start(4, false, seed).await?;
    cluster.wait_full_membership().await?;
    for slot in &cluster.slots {
        slot.faults.set_loss(0.05);
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut expected: BTreeMap<String, i128> = BTreeMap::new();
    for _round in 0..10 {
        for node in 0..4 {
            for c in 0..5 {
                let name = format!("lossy.{c}");
                let delta: i64 = rng.random_range(-10..=30);
                cluster.node(node).counter(&name)?.add(delta);
                *expected.entry(name).or_default() += i128::from(delta);
            }
        }
        tokio::time::sleep(GOSSIP).await;
    }
    let took = cluster.wait_converged(&expected).await?;
    let lost: u64 = cluster.slots.iter().map(|s| s.faults.stats().lost).sum();
    println!("5% loss ({lost} packets dropped): exact everywhere {took:?} after the last add");
    assert!(lost > 0, "the fault socket dropped nothing");
    cluster.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_catches_up_with_thousands_of_counters() -> Result<()> {
    let seed = seed("late_joiner_catches_up_with_thousands_of_counters");
    let mut cluster = Cluster::start(3, false, seed).await?;
    cluster.wait_full_membership().await?;
    let mut expected: BTreeMap<String, i128> = BTreeMap::new();
    for i in 0..5_000u32 {
        let name = format!("tenant-{i:05}.requests");
        let node = (i % 3) as usize;
        let amount = i64::from(i % 97) + 1;
        cluster.node(node).counter(&name)?.add(amount);
        expected.insert(name, i128::from(amount));
    }
    cluster.wait_converged(&expected).await?;

    let slot = cluster.add_slot(seed ^ 0xfeed)?;
    cluster.start_node(slot).await?;
    let took = cluster.wait_converged(&expected).await?;
    println!("late joiner: 5000 counters caught up in {took:?}");
    assert_eq!(cluster.node(slot).counters("").len(), 5_000);
    // A page copies only what it returns, sorted by name, and says whether more matched.
    let (page, truncated) = cluster.node(slot).counters_page("tenant-0000", 4);
    let names: Vec<&str> = page.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "tenant-00000.requests",
            "tenant-00001.requests",
            "tenant-00002.requests",
            "tenant-00003.requests"
        ]
    );
    assert!(truncated, "10 names match the prefix");
    assert_eq!(page[3].value, 4);
    let (all, truncated) = cluster.node(slot).counters_page("tenant-0000", 10);
    assert_eq!((all.len(), truncated), (10, false));
    let received: u64 = cluster
        .node(slot)
        .metrics()
        .received
        .iter()
        .map(|r| r.2)
        .sum();
    println!("late joiner received {received} bytes");
    tokio::time::sleep(Duration::from_millis(1)).await;
    cluster.shutdown().await
}
