//! Faults on a real three-server ensemble while clients work: kill -9 of the leader and
//! its restart, pauses (SIGSTOP) below and past the session timeout, and, through a
//! [`FaultProxy`] in front of every server, replies lost for less and for more than the
//! operation deadline.
//!
//! Every client runs several callers on each counter, so operations are combined into
//! batches, and those batches recover from lost replies through the receipt
//! (`NodeExists`) or end `Ambiguous`. The deadline is short (2 s) so that `Ambiguous`
//! really happens. Every client sweeps receipts every second throughout, and so does a
//! sweeper client whose own settings call a receipt an orphan after 1.1 s: it deletes
//! planted orphans, and must never delete a receipt the workers' 60 s hold protects.
//!
//! Checked: on the `total` counter, every add that returned a post-value got a distinct
//! one, and the values nobody was told about are exactly the ambiguous adds that
//! committed (their receipts, probed with a quorum transaction once every attempt is
//! settled); on the `lin` counter, the whole mixed history, with a final linearizable
//! read after the faults healed, is linearizable (WGL), ambiguous operations counting as
//! possibly committed.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use countermesh_strict::harness::{ClusterConfig, FaultProxy, ZkCluster};
use countermesh_strict::{Counter, StrictClient, StrictError, StrictOptions};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use zookeeper_client as zk;

use crate::checker::{self, Call, Ret, Verdict};
use crate::support::{History, blocking, cas_ret, proxy, seeded_rng, start};

const CLIENTS: usize = 4;
/// Callers per client on each counter.
const CALLERS: usize = 3;
const ROOT: &str = "/faults";

/// What one adder on the `total` counter saw.
#[derive(Debug, Default)]
struct AddTally {
    post_values: Vec<i64>,
    ambiguous_op_ids: Vec<String>,
    no_effect: u64,
}

/// The workers' options: a short deadline, receipts held longer than the whole test.
fn fault_options() -> StrictOptions {
    StrictOptions::default()
        .with_session_timeout(Duration::from_secs(3))
        .with_op_timeout(Duration::from_secs(2))
        .with_receipt_max_age(Duration::from_secs(60))
        .with_sweep_interval(Some(Duration::from_secs(1)))
}

/// The sweeper's options: on its own terms a receipt is an orphan after 1.1 s.
fn sweeper_options() -> StrictOptions {
    StrictOptions::default()
        .with_session_timeout(Duration::from_secs(3))
        .with_op_timeout(Duration::from_millis(500))
        .with_receipt_max_age(Duration::from_millis(1100))
        .with_sweep_interval(Some(Duration::from_secs(1)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensemble_faults_keep_adds_exactly_once_and_history_linearizable() -> anyhow::Result<()> {
    let mut rng = seeded_rng("ensemble_faults");
    let zk = start(ClusterConfig::ensemble()).await?;
    let leader = zk.leader()?;
    let follower = (0..zk.len()).find(|&i| i != leader).unwrap_or(0);
    let proxies: Vec<FaultProxy> = (0..zk.len())
        .map(|i| proxy(&zk, i))
        .collect::<anyhow::Result<_>>()?;

    let clients = connect_clients(&proxies, follower).await?;
    let sweeper =
        StrictClient::connect(&format!("{}{ROOT}", zk.connect_string()), sweeper_options()).await?;
    let raw = zk::Client::connect(&format!("{}{ROOT}", zk.connect_string())).await?;
    // Orphans in the format of earlier versions (no recorded hold): the sweeper may and
    // should delete them.
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    for i in 0..5 {
        raw.create(&format!("/receipts/orphan-{i}"), &[0; 8], &open)
            .await?;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(History::new());
    let mut adders = Vec::new();
    let mut mixers = Vec::new();
    for client in &clients {
        let (total, lin) = (client.counter("total").await?, client.counter("lin").await?);
        for _ in 0..CALLERS {
            adders.push(tokio::spawn(add_loop(total.clone(), Arc::clone(&stop))));
            let (stop, history) = (Arc::clone(&stop), Arc::clone(&history));
            let rng = SmallRng::seed_from_u64(rng.random());
            mixers.push(tokio::spawn(mix_loop(lin.clone(), stop, history, rng)));
        }
    }

    let (zk, proxies) = run_fault_schedule(zk, proxies, leader, follower).await?;
    stop.store(true, Ordering::Relaxed);
    let mut tallies = Vec::new();
    for adder in adders {
        tallies.push(adder.await?);
    }
    for mixer in mixers {
        mixer.await?;
    }
    check_totals(&clients[0], &raw, &tallies).await?;
    report_stats(&clients, &sweeper);

    // A final linearizable read, after the faults healed, belongs to the history.
    let call = history.now();
    let last = clients[0].counter("lin").await?.get().await;
    history.record(call, Call::Get, &last, |v| Ret::Value(*v));
    last?;
    let ops = history.ops();
    let failed = history.failed.load(Ordering::Relaxed);
    let unknown = ops.iter().filter(|op| op.output == Ret::Unknown).count();
    println!(
        "linearizability: checking {} operations ({unknown} ambiguous, {failed} failed without effect)",
        ops.len()
    );
    assert!(
        ops.len() >= 100,
        "the workload made too little progress to be a meaningful check"
    );
    assert_eq!(checker::check(0, &ops, 50_000_000), Verdict::Linearizable);
    drop((zk, proxies));
    Ok(())
}

/// Connects the workers through the proxies. Two know every server and fail over; two
/// only know `follower`, so pausing it past the session timeout really expires their
/// sessions.
async fn connect_clients(
    proxies: &[FaultProxy],
    follower: usize,
) -> anyhow::Result<Vec<StrictClient>> {
    let everyone = proxies
        .iter()
        .map(|p| p.addr().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let hosts = if i < 2 {
            everyone.clone()
        } else {
            proxies[follower].addr().to_string()
        };
        clients.push(StrictClient::connect(&format!("{hosts}{ROOT}"), fault_options()).await?);
    }
    Ok(clients)
}

/// Adds 1 until stopped.
async fn add_loop(total: Counter, stop: Arc<AtomicBool>) -> AddTally {
    let mut tally = AddTally::default();
    while !stop.load(Ordering::Relaxed) {
        match total.add(1).await {
            Ok(post) => tally.post_values.push(post),
            Err(StrictError::Ambiguous { op_id, .. }) => tally.ambiguous_op_ids.push(op_id),
            Err(_) => tally.no_effect += 1,
        }
    }
    tally
}

/// Runs a random mix of add, get, compare-and-set and set until stopped, recording it.
async fn mix_loop(lin: Counter, stop: Arc<AtomicBool>, history: Arc<History>, mut rng: SmallRng) {
    while !stop.load(Ordering::Relaxed) {
        let call = history.now();
        match rng.random_range(0..10) {
            0..=3 => {
                let delta = rng.random_range(1..=5);
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
                let new = expected + rng.random_range(1..=3);
                let result = lin.compare_and_set(expected, new).await;
                history.record(call, Call::Cas { expected, new }, &result, cas_ret);
            }
            _ => {
                let value = rng.random_range(0..1000);
                let result = lin.set(value).await;
                history.record(call, Call::Set(value), &result, |()| Ret::Done);
            }
        }
    }
}

/// How many of `op_ids` have a receipt, asked with quorum transactions (a `multi` holding
/// one unconditional check) so that a lagging server cannot answer. Called once the
/// workload stopped on a healthy ensemble, so every attempt of those operations has
/// either committed or can no longer commit.
async fn committed(raw: &zk::Client, op_ids: &[&String]) -> anyhow::Result<u64> {
    let mut committed = 0;
    for op_id in op_ids {
        let mut probe = raw.new_multi_writer();
        probe.add_check_version(&format!("/receipts/{op_id}"), -1)?;
        match probe.commit().await {
            Ok(_) => committed += 1,
            Err(zk::MultiWriteError::OperationFailed {
                source: zk::Error::NoNode,
                ..
            }) => {}
            Err(err) => anyhow::bail!("probing receipt {op_id}: {err}"),
        }
    }
    Ok(committed)
}

/// Exactly once, per operation: distinct post-values, and the values nobody was told
/// about are exactly the ambiguous adds that committed.
async fn check_totals(
    client: &StrictClient,
    raw: &zk::Client,
    tallies: &[AddTally],
) -> anyhow::Result<()> {
    let total = client.counter("total").await?.get().await?;
    let told: Vec<i64> = tallies
        .iter()
        .flat_map(|t| t.post_values.iter().copied())
        .collect();
    let distinct: BTreeSet<i64> = told.iter().copied().collect();
    let ambiguous_op_ids: Vec<&String> = tallies.iter().flat_map(|t| &t.ambiguous_op_ids).collect();
    let ambiguous = ambiguous_op_ids.len();
    let ambiguous_committed = committed(raw, &ambiguous_op_ids).await?;
    let no_effect: u64 = tallies.iter().map(|t| t.no_effect).sum();
    println!(
        "ensemble faults: {} adds ok, {ambiguous} ambiguous ({ambiguous_committed} of them committed), \
         {no_effect} failed without effect; total {total}",
        told.len()
    );
    assert_eq!(
        distinct.len(),
        told.len(),
        "two adds were told the same post-value"
    );
    assert!(
        distinct.iter().all(|v| (1..=total).contains(v)),
        "a post-value outside 1..={total}"
    );
    let untold = total - told.len() as i64;
    assert_eq!(
        untold, ambiguous_committed as i64,
        "values nobody was told about must be the ambiguous adds that committed"
    );
    assert!(
        ambiguous >= 1,
        "the 3 s reply loss must leave some add ambiguous under a 2 s deadline"
    );
    Ok(())
}

fn report_stats(clients: &[StrictClient], sweeper: &StrictClient) {
    let stats: Vec<_> = clients.iter().map(StrictClient::stats).collect();
    let sum = |f: fn(&countermesh_strict::StrictStats) -> u64| stats.iter().map(f).sum::<u64>();
    let lost = sum(|s| s.lost_replies);
    let committed = sum(|s| s.lost_replies_committed);
    let multi_op = sum(|s| s.ops) - sum(|s| s.batches);
    println!(
        "ensemble faults: {lost} write batches lost their reply; the receipt showed {committed} of them \
         had committed; {} sessions renewed; {} version conflicts; {} sweeps deleted {} receipts; \
         {multi_op} operations rode in a batch with others",
        sum(|s| s.sessions_renewed),
        sum(|s| s.conflicts),
        sum(|s| s.sweeps),
        sum(|s| s.receipts_swept),
    );
    assert!(
        committed >= 1,
        "the short reply loss must make some batch recover through its receipt"
    );
    assert!(sum(|s| s.sweeps) >= 10, "every client sweeps every second");
    let sweeper = sweeper.stats();
    println!(
        "sweeper (1.1 s max age): {} sweeps deleted {} receipts",
        sweeper.sweeps, sweeper.receipts_swept
    );
    assert!(
        sweeper.receipts_swept >= 5,
        "the planted orphans were swept"
    );
}

/// Kills the leader and restarts it; loses replies for less than the deadline (batches
/// recover through their receipts) and for more (they end `Ambiguous`); pauses the
/// leader below the session timeout and a follower past it.
async fn run_fault_schedule(
    mut zk: ZkCluster,
    proxies: Vec<FaultProxy>,
    leader: usize,
    follower: usize,
) -> anyhow::Result<(ZkCluster, Vec<FaultProxy>)> {
    let pause = |ms: u64| tokio::time::sleep(Duration::from_millis(ms));
    pause(1500).await;
    println!("fault: kill -9 leader (server {leader})");
    zk = blocking(move || zk.kill(leader).map(|()| zk)).await??;
    pause(1500).await;
    println!("fault: restart server {leader}");
    zk = blocking(move || zk.restart(leader).map(|()| zk)).await??;
    pause(1000).await;
    println!("fault: replies lost for 0.8 s (below the 2 s deadline)");
    proxies.iter().for_each(FaultProxy::mute_open);
    pause(800).await;
    proxies.iter().for_each(FaultProxy::heal);
    pause(1000).await;
    let (now_leader, mut zk) = blocking(move || zk.leader().map(|l| (l, zk))).await??;
    println!("fault: pause leader (server {now_leader}) for 1.5 s, below the session timeout");
    zk = blocking(move || zk.pause(now_leader).map(|()| zk)).await??;
    pause(1500).await;
    zk = blocking(move || zk.resume(now_leader).map(|()| zk)).await??;
    pause(1000).await;
    println!("fault: replies lost for 3 s (past the 2 s deadline)");
    proxies.iter().for_each(FaultProxy::mute_all);
    pause(3000).await;
    proxies.iter().for_each(FaultProxy::heal);
    pause(1000).await;
    let role = zk.mode(follower);
    println!("fault: pause server {follower} ({role:?}) for 6 s, past the session timeout");
    zk = blocking(move || zk.pause(follower).map(|()| zk)).await??;
    pause(6000).await;
    zk = blocking(move || zk.resume(follower).map(|()| zk)).await??;
    zk = blocking(move || zk.wait_until_serving(Duration::from_secs(60)).map(|()| zk)).await??;
    // Let the workload run on a healthy ensemble for a moment before stopping it.
    pause(1500).await;
    Ok((zk, proxies))
}
