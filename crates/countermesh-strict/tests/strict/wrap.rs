//! ZooKeeper's data version is an `int`: after 2^31 − 1 changes it wraps to negative, and
//! `-1` means "any version". Counters near and past the limit, on a real server that
//! starts from a crafted transaction log (the harness's seed: its `setData` records set
//! the versions; everything after start-up is ZooKeeper's own arithmetic).

use countermesh_strict::harness::{ClusterConfig, SeedZnode};
use countermesh_strict::{Counter, StrictClient};

use crate::support::{options, raw, start};

/// What `countermesh_strict::ROLL_VERSION` is documented to be.
const ROLL_VERSION: i32 = i32::MAX - (1 << 20);

fn seeded(name: &str, value: i64, version: i32) -> SeedZnode {
    SeedZnode {
        path: format!("/wrap/counters/{name}"),
        data: value.to_be_bytes().to_vec(),
        version,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_never_wrap_and_a_wrapped_counter_is_never_trusted() -> anyhow::Result<()> {
    assert_eq!(ROLL_VERSION, countermesh_strict::ROLL_VERSION);
    let seed = vec![
        seeded("past", 100, i32::MAX - 2),
        seeded("near", 0, ROLL_VERSION - 3),
        seeded("wrapped", 0, -3),
        seeded("wild", 0, -1),
    ];
    let zk = start(ClusterConfig::standalone().with_seed(seed)).await?;
    let connect = format!("{}/wrap", zk.connect_string());
    let (a, b) = (
        StrictClient::connect(&connect, options()).await?,
        StrictClient::connect(&connect, options()).await?,
    );
    let raw = raw(&connect).await?;
    let (_, seeded_stat) = raw.get_data("/counters/past").await?;
    assert_eq!(
        seeded_stat.version,
        i32::MAX - 2,
        "the seed set the version"
    );

    // Three versions before the wrap: the writes roll the counter to a fresh znode
    // instead of letting the version go negative.
    let past = a.counter("past").await?;
    for i in 1..=5 {
        assert_eq!(past.add(1).await?, 100 + i);
    }
    let (_, stat) = raw.get_data("/counters/past").await?;
    assert!(
        (0..10).contains(&stat.version),
        "version {} after 5 writes from {}",
        stat.version,
        i32::MAX - 2
    );
    assert_ne!(stat.czxid, seeded_stat.czxid, "a fresh znode generation");

    // A counter some other writer already wrapped to -3: two writes would bring it to
    // the wildcard -1, where a cached version guards nothing.
    let (mine, theirs) = (a.counter("wrapped").await?, b.counter("wrapped").await?);
    assert_eq!(mine.add(1).await?, 1);
    assert_eq!(mine.add(1).await?, 2);
    assert_eq!(theirs.add(10).await?, 12);
    assert_eq!(
        mine.get().await?,
        12,
        "a linearizable get must see the other client's add"
    );
    assert_eq!(mine.add(1).await?, 13, "no lost update");
    let (_, stat) = raw.get_data("/counters/wrapped").await?;
    assert!(stat.version >= 0, "version {}", stat.version);

    // At the wildcard itself, two clients race to roll: the fence lets one through.
    let (x, y) = (a.counter("wild").await?, b.counter("wild").await?);
    let (rx, ry) = tokio::join!(x.add(1), y.add(1));
    let mut seen = [rx?, ry?];
    seen.sort_unstable();
    assert_eq!(seen, [1, 2]);
    assert_eq!(x.get().await?, 2);

    // Concurrent callers in two clients carry a counter across the roll point: every
    // post-value exactly once, the version back near zero.
    let near = [a.counter("near").await?, b.counter("near").await?];
    let post_values = hammer(&near, 8, 10).await?;
    assert_eq!(post_values, (1..=160).collect::<Vec<i64>>());
    let (_, stat) = raw.get_data("/counters/near").await?;
    assert!(
        (0..=160).contains(&stat.version),
        "version {}",
        stat.version
    );
    Ok(())
}

/// `callers` tasks per handle, each adding 1 `adds` times; returns the sorted post-values.
async fn hammer(handles: &[Counter], callers: usize, adds: usize) -> anyhow::Result<Vec<i64>> {
    let mut tasks = Vec::new();
    for handle in handles {
        for _ in 0..callers {
            let handle = handle.clone();
            tasks.push(tokio::spawn(async move {
                let mut seen = Vec::with_capacity(adds);
                for _ in 0..adds {
                    seen.push(handle.add(1).await?);
                }
                anyhow::Ok(seen)
            }));
        }
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    all.sort_unstable();
    Ok(all)
}
