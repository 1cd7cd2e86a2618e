//! Many clients (separate sessions, so separate combiners) contending on one counter.

use std::sync::Arc;

use countermesh_strict::{Outcome, StrictClient};
use tokio::sync::Barrier;

use crate::support::{options, shared_standalone};

const CLIENTS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_clients_times_a_thousand_adds_give_the_exact_total() -> anyhow::Result<()> {
    const ADDS: usize = 1000;
    let zk = shared_standalone().await?;
    let mut tasks = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let client =
            StrictClient::connect(&format!("{}/concurrency", zk.connect_string()), options())
                .await?;
        let counter = client.counter("total").await?;
        clients.push(client);
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::with_capacity(ADDS);
            for _ in 0..ADDS {
                seen.push(counter.add(1).await?);
            }
            anyhow::Ok(seen)
        }));
    }
    let mut post_values = Vec::new();
    for task in tasks {
        post_values.extend(task.await??);
    }
    post_values.sort_unstable();
    let expected: Vec<i64> = (1..=(CLIENTS * ADDS) as i64).collect();
    assert!(
        post_values == expected,
        "post-values are not exactly 1..=8000: an add was lost or applied twice"
    );
    let total = clients[0].counter("total").await?.get().await?;
    assert_eq!(total, (CLIENTS * ADDS) as i64);
    let conflicts: u64 = clients.iter().map(|c| c.stats().conflicts).sum();
    println!("8 x 1000 adds: total {total}, {conflicts} version conflicts retried");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_set_races_have_exactly_one_winner() -> anyhow::Result<()> {
    const ROUNDS: i64 = 40;
    let zk = shared_standalone().await?;
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let client =
            StrictClient::connect(&format!("{}/cas", zk.connect_string()), options()).await?;
        let counter = client.counter("race").await?;
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for round in 0..ROUNDS {
                barrier.wait().await;
                outcomes.push(counter.compare_and_set(round, round + 1).await?);
                barrier.wait().await;
            }
            anyhow::Ok((client, outcomes))
        }));
    }
    let mut per_client = Vec::new();
    for task in tasks {
        per_client.push(task.await??);
    }
    for round in 0..ROUNDS as usize {
        let outcomes: Vec<Outcome> = per_client.iter().map(|(_, o)| o[round]).collect();
        let winners = outcomes.iter().filter(|o| **o == Outcome::Swapped).count();
        assert_eq!(winners, 1, "round {round}: {outcomes:?}");
        for outcome in outcomes {
            if let Outcome::Mismatch { actual } = outcome {
                assert_eq!(
                    actual,
                    round as i64 + 1,
                    "a loser must see the winner's value"
                );
            }
        }
    }
    let value = per_client[0].0.counter("race").await?.get().await?;
    assert_eq!(value, ROUNDS);
    Ok(())
}
