//! The API's semantics on a standalone server: values, CAS outcomes, set, delete,
//! combining, receipt cleanup.

use countermesh_strict::{Outcome, StrictClient};

use crate::support::{options, shared_standalone};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_have_their_documented_results() -> anyhow::Result<()> {
    let zk = shared_standalone().await?;
    let client =
        StrictClient::connect(&format!("{}/countermesh", zk.connect_string()), options()).await?;
    let tickets = client.counter("tickets").await?;
    assert_eq!(tickets.get().await?, 0, "a new counter starts at 0");
    assert_eq!(tickets.add(1).await?, 1);
    assert_eq!(tickets.add(41).await?, 42);
    assert_eq!(tickets.add(-2).await?, 40);
    assert_eq!(tickets.get().await?, 40);
    assert_eq!(tickets.get_sequential().await?, 40);
    assert_eq!(tickets.compare_and_set(40, 7).await?, Outcome::Swapped);
    assert_eq!(
        tickets.compare_and_set(40, 8).await?,
        Outcome::Mismatch { actual: 7 }
    );
    tickets.set(-5).await?;
    assert_eq!(tickets.get().await?, -5);

    // A second handle and a second client see the same counter.
    let again = client.counter("tickets").await?;
    assert_eq!(again.add(5).await?, 0);
    let other =
        StrictClient::connect(&format!("{}/countermesh", zk.connect_string()), options()).await?;
    let theirs = other.counter("tickets").await?;
    assert_eq!(theirs.add(1).await?, 1);
    assert_eq!(
        tickets.get().await?,
        1,
        "a linearizable get sees the other client's add"
    );

    client.delete("tickets").await?;
    client.delete("tickets").await?; // deleting a missing counter is fine
    assert!(matches!(
        tickets.add(1).await,
        Err(countermesh_strict::StrictError::NotFound { .. })
    ));
    let fresh = client.counter("tickets").await?;
    assert_eq!(fresh.get().await?, 0);
    assert_eq!(
        tickets.add(3).await?,
        3,
        "an old handle works again once the counter is recreated"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_are_combined_and_each_gets_its_own_value() -> anyhow::Result<()> {
    let zk = shared_standalone().await?;
    let client =
        StrictClient::connect(&format!("{}/combining", zk.connect_string()), options()).await?;
    let hits = client.counter("hits").await?;
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let hits = hits.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..20 {
                seen.push(hits.add(1).await?);
            }
            anyhow::Ok(seen)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    all.sort_unstable();
    let expected: Vec<i64> = (1..=64 * 20).collect();
    assert_eq!(
        all, expected,
        "every caller got a distinct post-value and none was lost"
    );
    assert_eq!(hits.get().await?, 64 * 20);
    Ok(())
}
