//! Writes whose replies are lost are never reported as "no effect": creating and
//! deleting a counter, and a write whose commit is proven but whose receipt cannot be
//! read back. A [`FaultProxy`] drops the replies while the requests still reach the
//! server, so every write here really commits.

use std::time::Duration;

use anyhow::bail;
use countermesh_strict::{StrictClient, StrictError};

use crate::support::{eventually, options, proxy, raw, receipts, shared_standalone};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_or_delete_whose_reply_is_lost_is_ambiguous_not_unavailable() -> anyhow::Result<()>
{
    let zk = shared_standalone().await?;
    let proxy = proxy(&zk, 0)?;
    let opts = options()
        .with_op_timeout(Duration::from_secs(2))
        .with_receipt_max_age(Duration::from_secs(60));
    let client = StrictClient::connect(&format!("{}/lost", proxy.addr()), opts).await?;
    let raw = raw(&format!("{}/lost", zk.connect_string())).await?;
    client.counter("doomed").await?;

    // The delete reaches ZooKeeper and commits; no reply, and no new connection gets an
    // answer before the deadline.
    proxy.mute_all();
    let deleted = client.delete("doomed").await;
    proxy.heal();
    let Err(StrictError::Ambiguous { op_id, .. }) = deleted else {
        bail!("a delete whose reply was lost must be Ambiguous, got {deleted:?}");
    };
    assert!(raw.check_stat("/counters/doomed").await?.is_none());
    assert!(
        raw.check_stat(&format!("/receipts/{op_id}"))
            .await?
            .is_some(),
        "the receipt of the ambiguous delete tells that it committed"
    );

    // The same for the create behind `counter`, once the client is connected again.
    client.counter("doomed").await?;
    proxy.mute_all();
    let created = client.counter("born").await;
    proxy.heal();
    let op_id = match created {
        Err(StrictError::Ambiguous { op_id, .. }) => op_id,
        other => bail!("a create whose reply was lost must be Ambiguous, got {other:?}"),
    };
    assert!(raw.check_stat("/counters/born").await?.is_some());
    assert!(
        raw.check_stat(&format!("/receipts/{op_id}"))
            .await?
            .is_some()
    );
    // Once ZooKeeper answers again, both work and agree with what happened.
    assert_eq!(client.counter("born").await?.get().await?, 0);
    client.delete("doomed").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proven_commit_whose_receipt_cannot_be_read_is_ambiguous() -> anyhow::Result<()> {
    let zk = shared_standalone().await?;
    let proxy = proxy(&zk, 0)?;
    let client = StrictClient::connect(&format!("{}/proven", proxy.addr()), options()).await?;
    let raw = raw(&format!("{}/proven", zk.connect_string())).await?;
    let counter = client.counter("c").await?;
    assert_eq!(counter.add(1).await?, 1);
    eventually(Duration::from_secs(10), || async {
        Ok(receipts(&raw).await?.is_empty().then_some(()))
    })
    .await?;

    // The add commits, its reply is lost; while the client cannot hear back, its receipt
    // is overwritten with bytes that are no receipt.
    proxy.mute_all();
    let add = tokio::spawn({
        let counter = counter.clone();
        async move { counter.add(1).await }
    });
    let receipt = eventually(Duration::from_secs(10), || async {
        Ok(receipts(&raw).await?.into_iter().next())
    })
    .await?;
    raw.set_data(&format!("/receipts/{receipt}"), b"xyz", None)
        .await?;
    proxy.heal();

    // The retry proves the commit (NodeExists on the receipt) but cannot compute the
    // result: that is not "no effect".
    let result = add.await?;
    assert_eq!(
        result,
        Err(StrictError::Ambiguous {
            op_id: receipt,
            deadline: options().op_timeout
        })
    );
    assert_eq!(counter.get().await?, 2, "the add committed exactly once");
    Ok(())
}
