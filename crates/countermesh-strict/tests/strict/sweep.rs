//! The receipt sweep is safe whatever the sweeping client's own settings: a client with
//! a short timeout never deletes the receipt that a client with a long one still needs.

use std::time::Duration;

use countermesh_strict::StrictClient;

use crate::support::{eventually, options, proxy, raw, receipts, shared_standalone};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_timeout_client_never_sweeps_a_receipt_a_long_timeout_client_still_needs()
-> anyhow::Result<()> {
    let zk = shared_standalone().await?;
    let proxy = proxy(&zk, 0)?;
    // The long client retries for up to 30 s and keeps its receipts a minute; it talks
    // to ZooKeeper through the proxy.
    let long = StrictClient::connect(
        &format!("{}/sweep", proxy.addr()),
        options()
            .with_session_timeout(Duration::from_secs(6))
            .with_op_timeout(Duration::from_secs(30))
            .with_receipt_max_age(Duration::from_secs(61))
            .with_sweep_interval(None),
    )
    .await?;
    // The short client's own settings would call a receipt an orphan after 2.5 s.
    let short = StrictClient::connect(
        &format!("{}/sweep", zk.connect_string()),
        options()
            .with_op_timeout(Duration::from_secs(1))
            .with_receipt_max_age(Duration::from_millis(2500))
            .with_sweep_interval(None),
    )
    .await?;
    let raw = raw(&format!("{}/sweep", zk.connect_string())).await?;
    let counter = long.counter("c").await?;
    assert_eq!(counter.add(1).await?, 1);
    eventually(Duration::from_secs(10), || async {
        Ok(receipts(&raw).await?.is_empty().then_some(()))
    })
    .await?;

    // The long client's add commits and its reply is lost.
    proxy.mute_all();
    let add = tokio::spawn({
        let counter = counter.clone();
        async move { counter.add(1).await }
    });
    let receipt = eventually(Duration::from_secs(10), || async {
        Ok(receipts(&raw).await?.into_iter().next())
    })
    .await?;
    // Past the short client's maximum age, it sweeps. Receipt age is judged by
    // ZooKeeper's clock (the receipt's ctime), so real time must pass: this wait sets up
    // the precondition and asserts nothing about timing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = short.sweep_receipts().await?;
    println!("sweep by the short client: {report:?}");
    assert_eq!(
        report.deleted, 0,
        "the sweep deleted {receipt}, which a retry still needs"
    );
    // Now the long client hears back and retries with the same op-id.
    proxy.heal();
    assert_eq!(add.await??, 2, "the retry found its receipt: applied once");
    assert_eq!(counter.get().await?, 2);
    Ok(())
}
