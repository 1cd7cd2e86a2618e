//! Caller-chosen op-ids (what an HTTP `Idempotency-Key` maps to): a retry, from this
//! client or another, returns the original result and applies nothing; and opening a
//! counter without creating it.

use std::time::Duration;

use anyhow::bail;
use countermesh_strict::{OpId, Outcome, StrictClient, StrictError};

use crate::support::{options, proxy, raw, shared_standalone};

fn op_id(id: &str) -> anyhow::Result<OpId> {
    Ok(OpId::new(id)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_op_id_returns_the_original_result_and_applies_once() -> anyhow::Result<()> {
    let zk = shared_standalone().await?;
    let connect = format!("{}/op-ids", zk.connect_string());
    // Two clients: two sessions, as two agents behind a load balancer would have.
    let (a, b) = (
        StrictClient::connect(&connect, options()).await?,
        StrictClient::connect(&connect, options()).await?,
    );
    let (ca, cb) = (a.counter("c").await?, b.counter("c").await?);

    let key = op_id("3f1c2a9e-7b4d-4c1a-9f0e-2d5b8c7a6e10")?;
    assert_eq!(ca.add_with_op_id(5, &key).await?, 5);
    assert_eq!(ca.add(1).await?, 6);
    assert_eq!(
        ca.add_with_op_id(5, &key).await?,
        5,
        "the original post-value"
    );
    assert_eq!(
        cb.add_with_op_id(5, &key).await?,
        5,
        "also from another client"
    );
    assert_eq!(ca.get().await?, 6, "nothing added twice");
    for reused in [
        cb.add_with_op_id(6, &key).await.map(|_| ()),
        cb.set_with_op_id(0, &key).await,
    ] {
        assert_eq!(
            reused,
            Err(StrictError::OpIdReused {
                op_id: key.to_string()
            })
        );
    }
    assert_eq!(ca.get().await?, 6, "a refused reuse has no effect");

    // Op-ids are per counter.
    let other = a.counter("other").await?;
    assert_eq!(other.add_with_op_id(7, &key).await?, 7);

    // The same op-id many times at once: in one batch or several, it runs once.
    let dup = op_id("dup")?;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (ca, dup) = (ca.clone(), dup.clone());
        tasks.push(tokio::spawn(
            async move { ca.add_with_op_id(1, &dup).await },
        ));
    }
    for task in tasks {
        assert_eq!(task.await??, 7);
    }
    assert_eq!(cb.get().await?, 7);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_compare_and_set_and_set_keep_their_original_meaning() -> anyhow::Result<()> {
    let zk = shared_standalone().await?;
    let connect = format!("{}/op-ids-cas", zk.connect_string());
    let (a, b) = (
        StrictClient::connect(&connect, options()).await?,
        StrictClient::connect(&connect, options()).await?,
    );
    let (ca, cb) = (a.counter("c").await?, b.counter("c").await?);
    ca.set(6).await?;

    // Compare-and-set: the original outcome, even where a fresh one would now differ.
    let swap = op_id("cas-1")?;
    let swapped = Outcome::Swapped;
    assert_eq!(ca.compare_and_set_with_op_id(6, 10, &swap).await?, swapped);
    assert_eq!(ca.add(1).await?, 11);
    assert_eq!(cb.compare_and_set_with_op_id(6, 10, &swap).await?, swapped);
    let miss = op_id("cas-2")?;
    let mismatch = Outcome::Mismatch { actual: 11 };
    assert_eq!(cb.compare_and_set_with_op_id(0, 1, &miss).await?, mismatch);
    ca.set(0).await?;
    assert_eq!(cb.compare_and_set_with_op_id(0, 1, &miss).await?, mismatch);
    assert_eq!(ca.get().await?, 0);

    // A retried set never overwrites a later write.
    let set = op_id("set-1")?;
    ca.set_with_op_id(100, &set).await?;
    assert_eq!(cb.add(1).await?, 101);
    cb.set_with_op_id(100, &set).await?;
    assert_eq!(ca.get().await?, 101);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_op_id_retried_after_a_lost_reply_applies_once() -> anyhow::Result<()> {
    let zk = shared_standalone().await?;
    let proxy = proxy(&zk, 0)?;
    let opts = options().with_op_timeout(Duration::from_secs(2));
    let a = StrictClient::connect(&format!("{}/lost-key", proxy.addr()), opts.clone()).await?;
    let b = StrictClient::connect(&format!("{}/lost-key", zk.connect_string()), opts).await?;
    let (ca, cb) = (a.counter("c").await?, b.counter("c").await?);
    let key = op_id("lost-reply-1")?;
    // A first operation, so that the add below is one round trip: the write itself.
    assert_eq!(ca.get().await?, 0);

    // The add commits; its reply never comes back, and the client cannot reconnect
    // before its deadline.
    proxy.mute_all();
    let first = ca.add_with_op_id(7, &key).await;
    if !matches!(first, Err(StrictError::Ambiguous { .. })) {
        bail!("expected Ambiguous, got {first:?}");
    }
    // The caller retries elsewhere: the original result, applied once.
    assert_eq!(cb.add_with_op_id(7, &key).await?, 7);
    proxy.heal();
    assert_eq!(ca.add_with_op_id(7, &key).await?, 7);
    assert_eq!(cb.get().await?, 7);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_op_id_is_remembered_for_the_receipt_max_age_then_forgotten() -> anyhow::Result<()> {
    let zk = shared_standalone().await?;
    let opts = options()
        .with_op_timeout(Duration::from_secs(1))
        .with_receipt_max_age(Duration::from_millis(2500))
        .with_sweep_interval(None);
    let client = StrictClient::connect(&format!("{}/key-life", zk.connect_string()), opts).await?;
    let counter = client.counter("c").await?;
    let key = op_id("short-lived")?;
    assert_eq!(counter.add_with_op_id(1, &key).await?, 1);
    // The background flush deletes batch receipts, never op-id receipts; a sweep within
    // the lifetime leaves them too.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(client.sweep_receipts().await?.deleted, 0);
    assert_eq!(counter.add_with_op_id(1, &key).await?, 1);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(client.sweep_receipts().await?.deleted >= 1);
    assert_eq!(
        counter.add_with_op_id(1, &key).await?,
        2,
        "past its lifetime the op-id is forgotten and the add runs anew"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_counter_is_opened_and_a_missing_one_is_not_created() -> anyhow::Result<()> {
    let zk = shared_standalone().await?;
    let connect = format!("{}/lookup", zk.connect_string());
    let client = StrictClient::connect(&connect, options()).await?;
    let raw = raw(&connect).await?;
    assert!(client.existing_counter("ghost").await?.is_none());
    assert!(
        raw.check_stat("/counters/ghost").await?.is_none(),
        "not created"
    );
    assert!(matches!(
        client.existing_counter("a/b").await,
        Err(StrictError::InvalidName { .. })
    ));
    client.counter("ghost").await?.add(3).await?;
    let Some(found) = client.existing_counter("ghost").await? else {
        bail!("the counter exists");
    };
    assert_eq!(found.get().await?, 3);
    client.delete("ghost").await?;
    assert!(client.existing_counter("ghost").await?.is_none());
    Ok(())
}
