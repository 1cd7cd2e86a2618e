//! Every error the API promises, provoked for real.

use std::time::Duration;

use countermesh_strict::harness::ClusterConfig;
use countermesh_strict::{StrictClient, StrictError, StrictOptions};
use zookeeper_client as zk;

use crate::support::{blocking, options, raw, shared_standalone, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_are_rejected_before_zookeeper_is_asked() -> anyhow::Result<()> {
    let zk = shared_standalone().await?;
    let connect = format!("{}/names", zk.connect_string());
    let client = StrictClient::connect(&connect, options()).await?;
    for name in [
        "",
        ".",
        "..",
        "a/b",
        "has space",
        "ünïcode",
        &"x".repeat(129),
    ] {
        assert!(
            matches!(
                client.counter(name).await,
                Err(StrictError::InvalidName { .. })
            ),
            "{name:?}"
        );
        assert!(
            matches!(
                client.delete(name).await,
                Err(StrictError::InvalidName { .. })
            ),
            "{name:?}"
        );
    }
    let raw = raw(&connect).await?;
    assert_eq!(raw.list_children("/counters").await?, Vec::<String>::new());
    for bad in ["", "127.0.0.1:1,", "127.0.0.1:1/cm/", "127.0.0.1:1//x"] {
        assert!(
            matches!(
                StrictClient::connect(bad, options()).await,
                Err(StrictError::InvalidConfig(_))
            ),
            "{bad:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_is_an_error_and_changes_nothing() -> anyhow::Result<()> {
    let zk = shared_standalone().await?;
    let client =
        StrictClient::connect(&format!("{}/overflow", zk.connect_string()), options()).await?;
    let c = client.counter("edge").await?;
    c.set(i64::MAX - 1).await?;
    assert_eq!(c.add(1).await?, i64::MAX);
    assert_eq!(
        c.add(1).await,
        Err(StrictError::Overflow {
            current: i64::MAX,
            delta: 1
        })
    );
    assert_eq!(c.get().await?, i64::MAX);
    c.set(i64::MIN).await?;
    assert_eq!(
        c.add(-1).await,
        Err(StrictError::Overflow {
            current: i64::MIN,
            delta: -1
        })
    );
    assert_eq!(c.add(i64::MAX).await?, -1);

    // In one combined batch only the adds that would overflow fail.
    c.set(i64::MAX - 3).await?;
    let adds: Vec<_> = (0..6).map(|_| c.add(1)).collect();
    let mut results = Vec::new();
    for add in adds {
        results.push(add.await);
    }
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let overflow = results
        .iter()
        .filter(|r| matches!(r, Err(StrictError::Overflow { .. })))
        .count();
    assert_eq!((ok, overflow), (3, 3), "{results:?}");
    assert_eq!(c.get().await?, i64::MAX);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_znode_data_is_reported_as_corrupt() -> anyhow::Result<()> {
    let zk = shared_standalone().await?;
    let client = StrictClient::connect(&format!("{}/cm", zk.connect_string()), options()).await?;
    let raw = raw(&zk.connect_string()).await?;
    let mode = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    raw.create("/cm/counters/text", b"42", &mode).await?;
    assert_eq!(
        client.counter("text").await.err(),
        Some(StrictError::Corrupt {
            path: "/counters/text".into(),
            len: 2
        })
    );

    // A counter corrupted after it was opened: every operation reports it.
    let c = client.counter("later").await?;
    assert_eq!(c.add(5).await?, 5);
    raw.set_data("/cm/counters/later", b"not a number", None)
        .await?;
    for result in [c.add(1).await, c.get().await, c.get_sequential().await] {
        assert!(
            matches!(result, Err(StrictError::Corrupt { len: 12, .. })),
            "{result:?}"
        );
    }
    assert!(matches!(
        c.compare_and_set(5, 6).await,
        Err(StrictError::Corrupt { .. })
    ));
    let (data, _) = raw.get_data("/cm/counters/later").await?;
    assert_eq!(data, b"not a number", "a corrupt znode is left untouched");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_zookeeper_gives_unavailable_within_the_deadline() -> anyhow::Result<()> {
    let mut zk = start(ClusterConfig::standalone()).await?;
    let connect = zk.connect_string();
    let opts = options()
        .with_op_timeout(Duration::from_secs(2))
        .with_receipt_max_age(Duration::from_secs(60));
    let client = StrictClient::connect(&connect, opts.clone()).await?;
    let c = client.counter("gone").await?;
    assert_eq!(c.add(1).await?, 1);
    zk = blocking(move || zk.kill(0).map(|()| zk)).await??;
    // The guard only catches a hang; the client's own deadline is 2 s.
    let hang_guard = Duration::from_secs(60);
    // A read first: an add issued before the client noticed the dead connection would be
    // written to it, and its outcome would honestly be Ambiguous (see the next test).
    let seq = tokio::time::timeout(hang_guard, c.get_sequential()).await?;
    assert!(
        matches!(seq, Err(StrictError::Unavailable { .. })),
        "{seq:?}"
    );
    let add = tokio::time::timeout(hang_guard, c.add(1)).await?;
    assert!(
        matches!(add, Err(StrictError::Unavailable { .. })),
        "{add:?}"
    );
    let get = tokio::time::timeout(hang_guard, c.get()).await?;
    assert!(
        matches!(get, Err(StrictError::Unavailable { .. })),
        "{get:?}"
    );
    let connect_again =
        tokio::time::timeout(hang_guard, StrictClient::connect(&connect, opts)).await?;
    assert!(
        matches!(connect_again, Err(StrictError::Unavailable { .. })),
        "{:?}",
        connect_again.err()
    );

    // Once ZooKeeper is back, the same handle works again and nothing was applied twice.
    let _zk = blocking(move || zk.restart(0).map(|()| zk)).await??;
    // A freshly started JVM on a busy machine may need more than one 2 s deadline to
    // take a new session; Unavailable promises no effect, so retrying it is safe.
    let mut after = c.add(1).await;
    for _ in 0..10 {
        if !matches!(after, Err(StrictError::Unavailable { .. })) {
            break;
        }
        after = c.add(1).await;
    }
    assert_eq!(
        after?, 2,
        "the adds that failed as Unavailable had no effect"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_replaced_or_reported() -> anyhow::Result<()> {
    let mut zk = start(ClusterConfig::standalone()).await?;
    let connect = zk.connect_string();
    // The server's minimum session timeout is two 500 ms ticks.
    let short = options().with_session_timeout(Duration::from_secs(1));
    let renewing = StrictClient::connect(&connect, short.clone()).await?;
    let strict = StrictClient::connect(&connect, short.with_reconnect_on_expiry(false)).await?;
    let a = renewing.counter("expiry").await?;
    let b = strict.counter("expiry").await?;
    assert_eq!(a.add(1).await?, 1);
    assert_eq!(b.add(1).await?, 2);
    // Frozen for well past the session timeout: the clients give their sessions up.
    zk = blocking(move || zk.pause(0).map(|()| zk)).await??;
    tokio::time::sleep(Duration::from_secs(4)).await;
    zk = blocking(move || zk.resume(0).map(|()| zk)).await??;
    assert_eq!(a.add(1).await?, 3, "a new session carries on");
    assert!(renewing.stats().sessions_renewed >= 1);
    assert_eq!(b.add(1).await, Err(StrictError::SessionExpired));
    assert_eq!(a.get().await?, 3, "the refused add had no effect");
    drop(zk);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_are_deleted_and_orphans_swept() -> anyhow::Result<()> {
    let zk = shared_standalone().await?;
    let opts = StrictOptions::default()
        .with_op_timeout(Duration::from_secs(1))
        .with_receipt_max_age(Duration::from_millis(2500))
        .with_sweep_interval(None);
    let raw = raw(&format!("{}/r", zk.connect_string())).await?;

    // By default the background task deletes finished receipts in batches: after two
    // flush intervals none is left.
    let background =
        StrictClient::connect(&format!("{}/r", zk.connect_string()), opts.clone()).await?;
    let b = background.counter("b").await?;
    for _ in 0..200 {
        b.add(1).await?;
    }
    tokio::time::sleep(opts.receipt_flush_interval * 3).await;
    let lingering = raw.list_children("/receipts").await?.len();
    assert_eq!(
        lingering, 0,
        "{lingering} receipts linger after the background flush"
    );
    drop(b);
    drop(background);

    // With piggybacking, each write deletes earlier receipts on the side, so they never
    // pile up even between flushes.
    let client = StrictClient::connect(
        &format!("{}/r", zk.connect_string()),
        opts.with_piggyback_deletes(16),
    )
    .await?;
    let c = client.counter("c").await?;
    for _ in 0..200 {
        c.add(1).await?;
    }
    let lingering = raw.list_children("/receipts").await?.len();
    assert!(
        lingering <= 20,
        "{lingering} receipts linger after 200 sequential adds"
    );
    assert_eq!(client.flush_receipts().await?, 0);
    assert_eq!(raw.list_children("/receipts").await?, Vec::<String>::new());

    // Orphans: receipts of operations whose process died before cleaning up.
    let mode = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    for i in 0..5 {
        raw.create(&format!("/receipts/orphan-{i}"), &[0; 8], &mode)
            .await?;
    }
    tokio::time::sleep(Duration::from_millis(3000)).await;
    raw.create("/receipts/young", &[0; 8], &mode).await?;
    let report = client.sweep_receipts().await?;
    assert_eq!((report.scanned, report.deleted), (6, 5));
    assert_eq!(
        raw.list_children("/receipts").await?,
        vec!["young".to_owned()]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_write_is_ambiguous_and_its_receipt_tells_the_truth() -> anyhow::Result<()> {
    let mut zk = start(ClusterConfig::standalone()).await?;
    let connect = format!("{}/amb", zk.connect_string());
    let opts = options()
        .with_op_timeout(Duration::from_secs(2))
        .with_receipt_max_age(Duration::from_secs(60));
    let client = StrictClient::connect(&connect, opts).await?;
    let c = client.counter("amb").await?;
    assert_eq!(c.add(1).await?, 1);
    // A frozen server keeps its socket open: the write goes out and no reply comes back.
    zk = blocking(move || zk.pause(0).map(|()| zk)).await??;
    let add = c.add(1).await;
    let Err(StrictError::Ambiguous { op_id, .. }) = add else {
        anyhow::bail!("expected Ambiguous from a frozen server, got {add:?}");
    };
    let zk = blocking(move || zk.resume(0).map(|()| zk)).await??;
    // The receipt exists exactly if the write committed, whichever way it went.
    let mut value = c.get().await;
    for _ in 0..10 {
        if !matches!(value, Err(StrictError::Unavailable { .. })) {
            break;
        }
        value = c.get().await;
    }
    let value = value?;
    let raw = raw(&connect).await?;
    let committed = raw
        .check_stat(&format!("/receipts/{op_id}"))
        .await?
        .is_some();
    println!("ambiguous add: committed = {committed}, value = {value}");
    assert_eq!(value, 1 + i64::from(committed));
    drop(zk);
    Ok(())
}
