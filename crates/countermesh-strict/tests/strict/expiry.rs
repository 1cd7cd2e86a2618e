//! The client declares its session expired before the server does, while a write of the
//! old session is still on its way; the write arrives after the retry through the new
//! session committed and its receipt was deleted. It must not apply a second time.
//!
//! Why it cannot: every write is conditioned on the counter's version, and the retry
//! moved the version on, so the late write fails with `BadVersion` as a whole (its
//! receipt create included). Receipts are not needed for this once the retry committed.

use std::time::Duration;

use countermesh_strict::StrictClient;

use crate::support::{eventually, options, proxy, raw, receipts, shared_standalone};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_session_write_that_arrives_late_does_not_apply_twice() -> anyhow::Result<()> {
    let zk = shared_standalone().await?;
    let proxy = proxy(&zk, 0)?;
    let opts = options()
        .with_session_timeout(Duration::from_secs(3))
        .with_op_timeout(Duration::from_secs(30))
        .with_receipt_max_age(Duration::from_secs(120));
    let client = StrictClient::connect(&format!("{}/late", proxy.addr()), opts).await?;
    let raw = raw(&format!("{}/late", zk.connect_string())).await?;
    let counter = client.counter("c").await?;
    assert_eq!(counter.get().await?, 0);
    eventually(Duration::from_secs(10), || async {
        Ok(receipts(&raw).await?.is_empty().then_some(()))
    })
    .await?;

    // The proxy holds the client's requests and keeps its session alive on the server
    // with its own pings, and refuses new connections.
    proxy.refuse_new(true);
    assert_eq!(proxy.freeze_open(), 1);
    let add = tokio::spawn({
        let counter = counter.clone();
        async move { counter.add(1).await }
    });
    eventually(Duration::from_secs(10), || async {
        Ok((proxy.held_requests() >= 1).then_some(()))
    })
    .await?;
    // The client drops the connection after 1.2 s and declares the session expired 4.2 s
    // (7/5 of the 3 s timeout) after it last heard from the server; then it asks for a
    // new session (session id 0), which the proxy sees.
    eventually(Duration::from_secs(20), || async {
        Ok(proxy.refused_session_ids().contains(&0).then_some(()))
    })
    .await?;
    proxy.refuse_new(false);
    assert_eq!(add.await??, 1, "the retry through a new session committed");
    assert!(client.stats().sessions_renewed >= 1, "{:?}", client.stats());
    eventually(Duration::from_secs(10), || async {
        Ok(receipts(&raw).await?.is_empty().then_some(()))
    })
    .await?;

    // Now the old session's write reaches the server, whose session is still alive.
    let replies = tokio::task::block_in_place(|| proxy.release_frozen(Duration::from_secs(10)));
    println!("the late write's replies: {replies:?}");
    assert_eq!(
        replies.len(),
        1,
        "the server must have processed the late write for this test to mean anything"
    );
    assert_eq!(counter.get().await?, 1, "applied once");
    assert!(
        replies[0].multi_failed(),
        "the late write was rejected as a whole"
    );
    assert_eq!(receipts(&raw).await?, Vec::<String>::new());
    Ok(())
}
