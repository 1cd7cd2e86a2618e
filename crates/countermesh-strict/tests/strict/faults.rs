//! Faults on a real three-server ensemble while eight clients work: kill -9 of the
//! leader and its restart, pauses (SIGSTOP) below and past the session timeout. Checks
//! exactly-once counting and linearizability of the whole history.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use countermesh_strict::harness::{ClusterConfig, ZkCluster};
use countermesh_strict::{StrictClient, StrictError};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use zookeeper_client as zk;

use crate::checker::{self, Call, Ret, Verdict};
use crate::support::{History, blocking, cas_ret, options, seeded_rng, start};

const CLIENTS: usize = 8;
/// Adders per client on the exact-count counter (they combine inside each client).
const ADDERS: usize = 4;

/// What one client's adders saw.
#[derive(Debug, Default)]
struct AddTally {
    ok: u64,
    ambiguous_op_ids: Vec<String>,
    no_effect: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensemble_faults_keep_adds_exactly_once_and_history_linearizable() -> anyhow::Result<()> {
    let mut rng = seeded_rng("ensemble_faults");
    let zk = start(ClusterConfig::ensemble()).await?;
    let leader = zk.leader()?;
    let follower = (0..zk.len()).find(|&i| i != leader).unwrap_or(0);
    let root = "/faults";

    // Six clients know every server and fail over; two only know `follower`, so pausing
    // it past the session timeout really expires their sessions.
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let hosts = if i < 6 {
            zk.connect_string()
        } else {
            zk.server_connect_string(follower)
        };
        clients.push(StrictClient::connect(&format!("{hosts}{root}"), options()).await?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(History::new());
    let mut adders = Vec::new();
    let mut mixers = Vec::new();
    for client in &clients {
        let total = client.counter("total").await?;
        for _ in 0..ADDERS {
            let (total, stop) = (total.clone(), Arc::clone(&stop));
            adders.push(tokio::spawn(async move {
                let mut tally = AddTally::default();
                while !stop.load(Ordering::Relaxed) {
                    match total.add(1).await {
                        Ok(_) => tally.ok += 1,
                        Err(StrictError::Ambiguous { op_id, .. }) => {
                            tally.ambiguous_op_ids.push(op_id);
                        }
                        Err(_) => tally.no_effect += 1,
                    }
                }
                tally
            }));
        }
        let lin = client.counter("lin").await?;
        let (stop, history) = (Arc::clone(&stop), Arc::clone(&history));
        let mut task_rng = SmallRng::seed_from_u64(rng.random());
        mixers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let call = history.now();
                match task_rng.random_range(0..10) {
                    0..=3 => {
                        let delta = task_rng.random_range(1..=5);
                        let result = lin.add(delta).await;
                        history.record(call, Call::Add(delta), &result, |v| Ret::Value(*v));
                    }
                    4..=6 => {
                        let result = lin.get().await;
                        history.record(call, Call::Get, &result, |v| Ret::Value(*v));
                    }
                    7..=8 => {
                        // Guess near the current value so that some swaps succeed.
                        let expected = lin.get_sequential().await.unwrap_or(0);
                        let call = history.now();
                        let new = expected + task_rng.random_range(1..=3);
                        let result = lin.compare_and_set(expected, new).await;
                        history.record(call, Call::Cas { expected, new }, &result, cas_ret);
                    }
                    _ => {
                        let value = task_rng.random_range(0..1000);
                        let result = lin.set(value).await;
                        history.record(call, Call::Set(value), &result, |()| Ret::Done);
                    }
                }
            }
        }));
    }

    let zk = run_fault_schedule(zk, leader, follower).await?;
    stop.store(true, Ordering::Relaxed);
    let mut tallies = Vec::new();
    for adder in adders {
        tallies.push(adder.await?);
    }
    for mixer in mixers {
        mixer.await?;
    }

    // Exactly once: the total is the number of adds that returned Ok, plus those that
    // returned Ambiguous and whose receipt exists (it exists exactly if they committed).
    let ok: u64 = tallies.iter().map(|t| t.ok).sum();
    let no_effect: u64 = tallies.iter().map(|t| t.no_effect).sum();
    let ambiguous: Vec<&String> = tallies.iter().flat_map(|t| &t.ambiguous_op_ids).collect();
    let raw = zk::Client::connect(&format!("{}{root}", zk.connect_string())).await?;
    let mut ambiguous_committed = 0;
    for op_id in &ambiguous {
        if raw
            .check_stat(&format!("/receipts/{op_id}"))
            .await?
            .is_some()
        {
            ambiguous_committed += 1;
        }
    }
    let total = clients[0].counter("total").await?.get().await?;
    let stats: Vec<_> = clients.iter().map(StrictClient::stats).collect();
    let lost: u64 = stats.iter().map(|s| s.lost_replies).sum();
    let lost_committed: u64 = stats.iter().map(|s| s.lost_replies_committed).sum();
    let renewed: u64 = stats.iter().map(|s| s.sessions_renewed).sum();
    let conflicts: u64 = stats.iter().map(|s| s.conflicts).sum();
    println!(
        "ensemble faults: {ok} adds ok, {} ambiguous ({ambiguous_committed} of them committed), {no_effect} failed \
         without effect; total {total}",
        ambiguous.len()
    );
    println!(
        "ensemble faults: {lost} write batches lost their reply; the receipt showed {lost_committed} of them had \
         committed (a plain CAS retry would have applied those twice); {renewed} sessions renewed; {conflicts} \
         version conflicts"
    );
    assert_eq!(
        total,
        (ok + ambiguous_committed) as i64,
        "an add was lost or applied twice"
    );

    let ops = history.ops();
    let failed = history.failed.load(Ordering::Relaxed);
    println!(
        "linearizability: checking {} operations ({failed} failed without effect)",
        ops.len()
    );
    assert!(
        ops.len() >= 100,
        "the workload made too little progress to be a meaningful check"
    );
    let verdict = checker::check(0, &ops, 50_000_000);
    assert_eq!(verdict, Verdict::Linearizable);
    drop(zk);
    Ok(())
}

/// Kills the leader and restarts it, then pauses a follower and the leader below the
/// session timeout (3 s), then pauses the follower past it.
async fn run_fault_schedule(
    mut zk: ZkCluster,
    leader: usize,
    follower: usize,
) -> anyhow::Result<ZkCluster> {
    let pause = |d: u64| tokio::time::sleep(Duration::from_millis(d));
    pause(1500).await;
    println!("fault: kill -9 leader (server {leader})");
    zk = blocking(move || zk.kill(leader).map(|()| zk)).await??;
    pause(2000).await;
    println!("fault: restart server {leader}");
    zk = blocking(move || zk.restart(leader).map(|()| zk)).await??;
    pause(1000).await;
    println!("fault: pause follower (server {follower}) for 1 s, below the session timeout");
    zk = blocking(move || zk.pause(follower).map(|()| zk)).await??;
    pause(1000).await;
    zk = blocking(move || zk.resume(follower).map(|()| zk)).await??;
    pause(1000).await;
    let current_leader = blocking(move || zk.leader().map(|l| (l, zk))).await??;
    let (now_leader, mut zk) = current_leader;
    println!("fault: pause leader (server {now_leader}) for 1.5 s, below the session timeout");
    zk = blocking(move || zk.pause(now_leader).map(|()| zk)).await??;
    pause(1500).await;
    zk = blocking(move || zk.resume(now_leader).map(|()| zk)).await??;
    pause(1000).await;
    let role = zk.mode(follower);
    println!("fault: pause server {follower} ({role:?}) for 6 s, past the session timeout");
    zk = blocking(move || zk.pause(follower).map(|()| zk)).await??;
    pause(6000).await;
    zk = blocking(move || zk.resume(follower).map(|()| zk)).await??;
    // Let the workload run on a healthy ensemble for a moment before stopping it.
    zk = blocking(move || zk.wait_until_serving(Duration::from_secs(60)).map(|()| zk)).await??;
    pause(1500).await;
    Ok(zk)
}
