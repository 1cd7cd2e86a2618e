//! Garbage from a TLS-authenticated peer: malformed datagrams, malformed and oversized
//! streams. Each is dropped with a typed, logged error, and the node keeps working.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use countermesh::CLUSTER_SERVER_NAME;
use rand::rngs::SmallRng;
use rand::{Rng, RngExt, SeedableRng};

use crate::support::{Cluster, seed, tls_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_an_authenticated_peer_is_dropped_and_the_node_keeps_working() -> Result<()> {
    let seed = seed("garbage_from_an_authenticated_peer");
    let cluster = Cluster::start(2, false, seed).await?;
    cluster.wait_full_membership().await?;
    let target = cluster.node(0).local_addr();
    let dropped_before = cluster.node(0).metrics().messages_dropped;

    // A peer with a perfectly valid certificate that speaks nonsense.
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    endpoint.set_default_client_config(tls_for(&cluster.ca)?.quinn_client_config()?);
    let connection = endpoint
        .connect(target, CLUSTER_SERVER_NAME)?
        .await
        .context("an authenticated peer connects")?;

    let mut rng = SmallRng::seed_from_u64(seed);
    let mut garbage: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"CM".to_vec(),                                       // truncated header
        vec![b'C', b'M', 99, 1, 0, 0],                        // wrong protocol version
        vec![b'X', b'Y', 1, 1, 0, 0],                         // wrong magic
        vec![b'C', b'M', 1, 2, 0xff, 0xff, 0xff],             // sync kind on a datagram, truncated
        vec![b'C', b'M', 1, 3, 0xfc, 0xff, 0xff, 0xff, 0xff], // huge length prefix
    ];
    for _ in 0..20 {
        let len = rng.random_range(1..1000);
        let mut bytes = vec![0u8; len];
        rng.fill_bytes(&mut bytes);
        garbage.push(bytes);
    }
    let mut sent = 0u64;
    for bytes in &garbage {
        if !bytes.is_empty() {
            connection.send_datagram(Bytes::from(bytes.clone()))?;
            sent += 1;
        }
        let mut stream = connection.open_uni().await?;
        stream.write_all(bytes).await?;
        stream.finish()?;
        sent += 1;
    }
    // One stream far beyond the message size limit.
    let mut stream = connection.open_uni().await?;
    let big = vec![0u8; 256 * 1024];
    // The node stops reading once the limit is passed; a write error is expected then.
    let _ = stream.write_all(&big).await;
    let _ = stream.finish();

    // The node counts every message it refused (datagrams may be lost on loopback only
    // under memory pressure, so allow a few to be missing) and the oversized stream.
    let started = std::time::Instant::now();
    loop {
        let metrics = cluster.node(0).metrics();
        let dropped = metrics.messages_dropped - dropped_before;
        if dropped >= sent - 2 && metrics.transport.streams_rejected >= 1 {
            println!(
                "{dropped} of {sent} garbage messages dropped with typed errors, {} streams rejected",
                metrics.transport.streams_rejected
            );
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(10),
            "node 0 counted only {dropped} of {sent} dropped messages and {} rejected streams",
            metrics.transport.streams_rejected
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // And it keeps working.
    cluster.node(0).counter("after.garbage")?.add(3);
    cluster.node(1).counter("after.garbage")?.add(4);
    cluster
        .wait_converged(&BTreeMap::from([("after.garbage".to_owned(), 7i128)]))
        .await?;
    connection.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    cluster.shutdown().await
}
