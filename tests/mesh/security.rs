//! Mutual TLS: a node whose certificate does not come from the cluster CA cannot join,
//! and nothing it sends changes the cluster's state; a node with a valid certificate can.
//! Assertions are on the servers' state, since in TLS 1.3 a rejected client may still
//! believe its handshake succeeded.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use countermesh::{CertificateAuthority, Mesh, NodeCertificate, TlsConfig};

use crate::support::{Cluster, GOSSIP, seed, tls_for};

async fn rogue_cannot_join(rogue_tls: TlsConfig, label: &str) -> Result<()> {
    let seed = seed(label);
    let cluster = Cluster::start(2, false, seed).await?;
    cluster.wait_full_membership().await?;
    cluster.node(0).counter("balance")?.add(5);
    let expected = BTreeMap::from([("balance".to_owned(), 5i128)]);
    cluster.wait_converged(&expected).await?;

    let seeds: Vec<_> = cluster.running().map(|m| m.local_addr()).collect();
    let rogue = Mesh::builder()
        .bind("127.0.0.1:0".parse()?)
        .seeds(seeds)
        .tls(rogue_tls)
        .gossip_interval(GOSSIP)
        .start()
        .await?;
    rogue.counter("balance")?.add(1_000_000);
    rogue.counter("rogue.only")?.add(1);
    // Give the rogue many gossip rounds and rejoin attempts.
    tokio::time::sleep(GOSSIP * 40).await;

    let rogue_addr = rogue.local_addr();
    for mesh in cluster.running() {
        assert!(
            !mesh.members().iter().any(|m| m.addr == rogue_addr),
            "{label}: the rogue became a member of {}",
            mesh.local_addr()
        );
        assert_eq!(
            mesh.value("rogue.only"),
            None,
            "{label}: rogue state merged"
        );
        assert_eq!(mesh.value("balance").map(|v| v.value), Some(5));
    }
    let rejected: u64 = cluster
        .running()
        .map(|m| m.metrics().transport.handshakes_rejected)
        .sum();
    assert!(rejected > 0, "{label}: no handshake was rejected");
    assert!(
        rogue
            .members()
            .iter()
            .all(|m| m.state != countermesh::MemberState::Alive)
    );
    println!("{label}: {rejected} handshakes rejected, no state merged");
    rogue.shutdown().await?;
    cluster.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_node_cannot_join_or_change_state() -> Result<()> {
    let own = NodeCertificate::self_signed("rogue")?;
    // The rogue trusts itself, so its own side of the handshake would be satisfied.
    let tls = TlsConfig::from_pem(&own.cert_pem, &own.cert_pem, &own.key_pem)?;
    rogue_cannot_join(tls, "self-signed rogue").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_from_another_clusters_ca_cannot_join() -> Result<()> {
    let other = CertificateAuthority::generate("another cluster")?;
    rogue_cannot_join(tls_for(&other)?, "other-CA rogue").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_valid_certificate_joins() -> Result<()> {
    let seed = seed("a_node_with_a_valid_certificate_joins");
    let mut cluster = Cluster::start(2, false, seed).await?;
    cluster.wait_full_membership().await?;
    cluster.node(0).counter("balance")?.add(5);
    let slot = cluster.add_slot(seed ^ 1)?;
    cluster.start_node(slot).await?;
    cluster.wait_full_membership().await?;
    cluster.node(slot).counter("balance")?.add(2);
    cluster
        .wait_converged(&BTreeMap::from([("balance".to_owned(), 7i128)]))
        .await?;
    tokio::time::sleep(Duration::from_millis(1)).await;
    cluster.shutdown().await
}
