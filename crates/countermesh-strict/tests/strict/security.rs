//! ZooKeeper security: an ACL-protected root, digest credentials with creator-only ACLs,
//! mutual TLS with the certificate as identity, and SASL.

use countermesh_strict::{Credentials, OpId, StrictClient, StrictError, ZooKeeperErrorKind};
use zookeeper_client as zk;

use crate::support::{options, raw, shared_standalone};

/// Whether `result` is ZooKeeper's "not authorized" refusal.
fn is_no_auth<T>(result: &Result<T, StrictError>) -> bool {
    matches!(result, Err(StrictError::ZooKeeper(err)) if err.kind() == ZooKeeperErrorKind::NoAuth)
}

/// Whether every ACL entry of `path` belongs to `scheme` with an id starting `id_prefix`.
/// (Reading an ACL needs READ or ADMIN permission, so `raw` must be the owner.)
async fn owned_by(
    raw: &zk::Client,
    path: &str,
    scheme: &str,
    id_prefix: &str,
) -> anyhow::Result<bool> {
    let (acl, _) = raw.get_acl(path).await?;
    println!("ACL of {path}: {acl:?}");
    Ok(!acl.is_empty()
        && acl
            .iter()
            .all(|entry| entry.scheme() == scheme && entry.id().starts_with(id_prefix)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_protected_root_works() -> anyhow::Result<()> {
    let zk = shared_standalone().await?;
    let raw = raw(&zk.connect_string()).await?;
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    raw.create("/guarded", &[], &open).await?;
    raw.create("/guarded/cm", &[], &open).await?;
    // An administrator prepared the root; nobody may create anything next to it.
    let read_only = [zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone())];
    raw.set_acl("/guarded", &read_only, None).await?;
    let client =
        StrictClient::connect(&format!("{}/guarded/cm", zk.connect_string()), options()).await?;
    let counter = client.counter("c").await?;
    assert_eq!(counter.add(1).await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_credentials_make_counters_and_receipts_creator_only() -> anyhow::Result<()> {
    let zk = shared_standalone().await?;
    let connect = format!("{}/digest", zk.connect_string());
    let bob = options().with_credentials(Credentials::digest("bob", "bob-secret"));
    let client = StrictClient::connect(&connect, bob.clone()).await?;
    let counter = client.counter("tickets").await?;
    let key = OpId::new("k1")?;
    assert_eq!(counter.add_with_op_id(1, &key).await?, 1);

    // Every znode the client made belongs to bob alone.
    let owner = zk::Client::connector()
        .with_auth("digest", b"bob:bob-secret")
        .connect(&connect)
        .await?;
    for path in [
        "/counters",
        "/receipts",
        "/counters/tickets",
        "/receipts/k:tickets:k1",
    ] {
        assert!(owned_by(&owner, path, "digest", "bob:").await?, "{path}");
    }
    let anonymous = raw(&connect).await?;
    // An unauthenticated client can neither change nor forge nor remove anything.
    let mode = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let refusals = [
        anonymous
            .set_data("/counters/tickets", &0i64.to_be_bytes(), None)
            .await
            .map(|_| ()),
        anonymous.delete("/receipts/k:tickets:k1", None).await,
        anonymous
            .create("/receipts/forged", &[], &mode)
            .await
            .map(|_| ()),
        anonymous
            .create("/counters/forged", &[], &mode)
            .await
            .map(|_| ()),
        anonymous.get_data("/counters/tickets").await.map(|_| ()),
    ];
    for refusal in refusals {
        assert_eq!(refusal, Err(zk::Error::NoAuth));
    }
    // A strict client without those credentials gets a typed refusal.
    for other in [
        options(),
        options().with_credentials(Credentials::digest("mallory", "guess")),
    ] {
        let intruder = StrictClient::connect(&connect, other).await?;
        assert!(is_no_auth(&intruder.counter("tickets").await), "creating");
        assert!(
            is_no_auth(&intruder.existing_counter("tickets").await),
            "reading"
        );
    }
    // The same credentials elsewhere are the same identity.
    let again = StrictClient::connect(&connect, bob).await?;
    let theirs = again.counter("tickets").await?;
    assert_eq!(theirs.add(1).await?, 2);
    assert_eq!(
        theirs.add_with_op_id(1, &key).await?,
        1,
        "the op-id is shared"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_security_settings_are_refused_before_connecting() -> anyhow::Result<()> {
    let creator_only = options().with_acl(countermesh_strict::AclPolicy::CreatorOnly);
    let bad_pem = options().with_tls(countermesh_strict::TlsConfig::new("not a certificate"));
    for (opts, what) in [
        (creator_only, "creator-only ACLs without an identity"),
        (bad_pem, "a CA that is not PEM"),
        (
            options().with_credentials(Credentials::digest("a:b", "pw")),
            "a user name with ':'",
        ),
    ] {
        let result = StrictClient::connect("127.0.0.1:1", opts).await;
        assert!(
            matches!(result, Err(StrictError::InvalidConfig(_))),
            "{what}: {:?}",
            result.err()
        );
    }
    Ok(())
}

#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_the_certificate_as_identity() -> anyhow::Result<()> {
    use std::time::Duration;

    use anyhow::bail;
    use countermesh_strict::harness::{ClusterConfig, TestPki};
    use countermesh_strict::{AclPolicy, TlsConfig};

    use crate::support::start;

    let zk = start(ClusterConfig::standalone().with_tls()).await?;
    let Some((pki, secure)) = zk.pki().zip(zk.secure_connect_string()) else {
        bail!("the cluster has TLS");
    };
    let connect = format!("{secure}/tls");
    let tls = TlsConfig::new(&pki.ca_pem).with_identity(&pki.client_cert_pem, &pki.client_key_pem);
    let opts = options();
    let client = StrictClient::connect(
        &connect,
        opts.clone().with_tls(tls).with_acl(AclPolicy::CreatorOnly),
    )
    .await;
    let client = match client {
        Ok(client) => client,
        Err(err) => bail!("{err}; server log:\n{}", zk.log_tail(0)),
    };
    let counter = client.counter("secure").await?;
    assert_eq!(counter.add(2).await?, 2);
    assert_eq!(counter.get().await?, 2);

    let owner = zk::Client::connector()
        .with_tls(
            zk::TlsOptions::new()
                .with_pem_ca(&pki.ca_pem)?
                .with_pem_identity(&pki.client_cert_pem, &pki.client_key_pem)?,
        )
        .secure_connect(&connect)
        .await?;
    assert!(
        owned_by(
            &owner,
            "/counters/secure",
            "x509",
            "CN=countermesh-test-client"
        )
        .await?
    );
    let anonymous = raw(&format!("{}/tls", zk.connect_string())).await?;
    assert_eq!(
        anonymous
            .set_data("/counters/secure", &0i64.to_be_bytes(), None)
            .await
            .map(|_| ()),
        Err(zk::Error::NoAuth)
    );
    // Another certificate from the same CA is another identity.
    let (cert, key) = pki.issue_client("someone-else")?;
    let other = TlsConfig::new(&pki.ca_pem).with_identity(cert, key);
    let intruder = StrictClient::connect(&connect, opts.clone().with_tls(other)).await?;
    assert!(is_no_auth(&intruder.counter("secure").await));

    // The server wants a client certificate; and the client only trusts its own CA.
    let stranger = TestPki::generate()?;
    for (tls, what) in [
        (TlsConfig::new(&pki.ca_pem), "no client certificate"),
        (
            TlsConfig::new(&stranger.ca_pem)
                .with_identity(&pki.client_cert_pem, &pki.client_key_pem),
            "a server certificate from an unknown CA",
        ),
    ] {
        let quick = opts
            .clone()
            .with_op_timeout(Duration::from_secs(3))
            .with_receipt_max_age(Duration::from_secs(60));
        let refused = StrictClient::connect(&connect, quick.with_tls(tls)).await;
        assert!(
            matches!(refused, Err(StrictError::Unavailable { .. })),
            "{what}: {:?}",
            refused.err()
        );
    }
    Ok(())
}

#[cfg(feature = "sasl")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_credentials_make_znodes_creator_only() -> anyhow::Result<()> {
    use std::time::Duration;

    use countermesh_strict::StrictOptions;
    use countermesh_strict::harness::ClusterConfig;

    use crate::support::start;

    let zk = start(ClusterConfig::standalone().with_sasl_user("alice", "alice-secret")).await?;
    let connect = format!("{}/sasl", zk.connect_string());
    let alice = options().with_credentials(Credentials::sasl_digest_md5("alice", "alice-secret"));
    let client = StrictClient::connect(&connect, alice).await?;
    let counter = client.counter("c").await?;
    assert_eq!(counter.add(1).await?, 1);
    let owner = zk::Client::connector()
        .with_sasl(zk::SaslOptions::digest_md5("alice", "alice-secret"))
        .connect(&connect)
        .await?;
    assert!(owned_by(&owner, "/counters/c", "sasl", "alice").await?);
    let anonymous = raw(&connect).await?;
    assert_eq!(
        anonymous.get_data("/counters/c").await.map(|_| ()),
        Err(zk::Error::NoAuth)
    );
    let wrong = StrictOptions::default()
        .with_op_timeout(Duration::from_secs(3))
        .with_credentials(Credentials::sasl_digest_md5("alice", "wrong"));
    let refused = StrictClient::connect(&connect, wrong).await;
    assert!(
        matches!(
            &refused,
            Err(StrictError::ZooKeeper(err)) if err.kind() == ZooKeeperErrorKind::AuthFailed
        ),
        "{:?}",
        refused.err()
    );
    Ok(())
}
