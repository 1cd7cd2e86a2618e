//! Certificates (issue 8, item 11): what `countermesh certs` writes, the cluster SAN that
//! keeps a shared CA's other certificates out, revocation honoured on both sides of a
//! connection, private key files and a private data directory.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::support::{Agent, CONVERGE_TIMEOUT, command, eventually, get, http, run_to_exit};

fn certs(args: &[&str]) -> anyhow::Result<(bool, String)> {
    let mut cmd = command();
    cmd.arg("certs").args(args);
    let output = cmd.output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), text))
}

fn mode(path: &Path) -> anyhow::Result<u32> {
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o777)
}

/// Days from now until the certificate in `path` expires.
fn days_left(path: &Path) -> anyhow::Result<f64> {
    let pem = std::fs::read(path)?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem)?;
    let cert = pem.parse_x509()?;
    let not_after = cert.validity().not_after.timestamp();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    Ok((not_after - now) as f64 / 86_400.0)
}

/// `certs init` and `certs issue` write a CA valid 10 years, node certificates valid 1
/// year (or `--days`), and each node's files to a directory of its own that holds a copy
/// of `ca.pem` but never `ca.key`.
#[test]
fn certs_commands_write_a_shippable_node_directory() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("ca");
    let ca_dir = ca.display().to_string();
    let (ok, text) = certs(&["init", "--dir", &ca_dir, "--cluster", "prod"])?;
    assert!(ok, "{text}");
    assert_eq!(mode(&ca.join("ca.key"))?, 0o600);
    let ca_days = days_left(&ca.join("ca.pem"))?;
    assert!(
        (3649.0..=3650.1).contains(&ca_days),
        "CA valid {ca_days} days"
    );

    let (ok, text) = certs(&["issue", "--dir", &ca_dir, "--name", "node-a"])?;
    assert!(ok, "{text}");
    let node = dir.path().join("node-a");
    let mut files: Vec<String> = std::fs::read_dir(&node)?
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect::<anyhow::Result<_>>()?;
    files.sort();
    assert_eq!(files, ["ca.pem", "node-a.key", "node-a.pem"]);
    assert_eq!(mode(&node.join("node-a.key"))?, 0o600);
    assert_eq!(
        std::fs::read_to_string(node.join("ca.pem"))?,
        std::fs::read_to_string(ca.join("ca.pem"))?
    );
    let node_days = days_left(&node.join("node-a.pem"))?;
    assert!(
        (364.0..=365.1).contains(&node_days),
        "node valid {node_days} days"
    );

    let short = dir.path().join("short");
    let (ok, text) = certs(&[
        "issue",
        "--dir",
        &ca_dir,
        "--name",
        "node-b",
        "--out",
        &short.display().to_string(),
        "--days",
        "30",
    ])?;
    assert!(ok, "{text}");
    let short_days = days_left(&short.join("node-b.pem"))?;
    assert!((29.0..=30.1).contains(&short_days), "{short_days} days");

    // Never next to the CA's key.
    let (ok, text) = certs(&["issue", "--dir", &ca_dir, "--name", "x", "--out", &ca_dir])?;
    assert!(!ok && text.contains("ca.key"), "{text}");
    // A CA key others can read is refused.
    std::fs::set_permissions(ca.join("ca.key"), std::fs::Permissions::from_mode(0o644))?;
    let (ok, text) = certs(&["issue", "--dir", &ca_dir, "--name", "node-c"])?;
    assert!(!ok && text.contains("chmod 600"), "{text}");
    Ok(())
}

/// Writes a node's files for a certificate with exactly `sans`, signed by `ca`, the way
/// an organisation's own tooling might; returns the agent's TLS flags.
fn org_node(
    dir: &Path,
    ca: &(rcgen::Issuer<'static, rcgen::KeyPair>, String),
    name: &str,
    sans: &[&str],
) -> anyhow::Result<Vec<String>> {
    let mut params =
        rcgen::CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())?;
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = rcgen::KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca.0)?;
    let (ca_path, cert_path, key_path) = (
        dir.join("org-ca.pem"),
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&ca_path, &ca.1)?;
    std::fs::write(&cert_path, cert.pem())?;
    countermesh::write_new_file(&key_path, &key.serialize_pem(), true)?;
    Ok([
        "--tls-ca",
        &ca_path.display().to_string(),
        "--tls-cert",
        &cert_path.display().to_string(),
        "--tls-key",
        &key_path.display().to_string(),
        "--gossip-interval",
        "50ms",
    ]
    .map(str::to_owned)
    .to_vec())
}

/// The peers `url` sees alive, by QUIC address.
async fn alive(url: &str) -> anyhow::Result<Vec<String>> {
    let members = get(&format!("{url}/v1/members")).await?;
    Ok(members.body["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["state"] == "alive")
        .filter_map(|m| m["addr"].as_str().map(str::to_owned))
        .collect())
}

/// A metric's value at `url` (0 when absent).
async fn metric(url: &str, series: &str) -> anyhow::Result<f64> {
    let text = http()
        .get(format!("{url}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0))
}

/// An organisation's CA, as its own tooling would make it: no cluster recorded.
fn org_ca() -> anyhow::Result<(rcgen::Issuer<'static, rcgen::KeyPair>, String)> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Example Corp CA");
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((rcgen::Issuer::new(params, key), cert.pem()))
}

/// A CA that also signs other services' certificates (an organisation's CA) admits only
/// certificates carrying this cluster's SAN: a node of another cluster under the same
/// CA is refused by both sides, and a certificate without any cluster SAN cannot even
/// start a node. (Before, any certificate from the CA was a member.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_ca_admits_only_certificates_with_this_clusters_san() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = org_ca()?;
    // Every certificate also carries the name nodes dial, as older versions required.
    let first = org_node(
        dir.path(),
        &ca,
        "prod-a",
        &["prod.countermesh", "countermesh.cluster"],
    )?;
    let a = Agent::start(dir.path(), "prod-a", &first, &[])?;
    let seed = ["--seeds".to_owned(), a.quic.to_string()];
    let mut second = org_node(
        dir.path(),
        &ca,
        "prod-b",
        &["prod.countermesh", "countermesh.cluster"],
    )?;
    second.extend(seed.clone());
    let b = Agent::start(dir.path(), "prod-b", &second, &[])?;
    let mut third = org_node(
        dir.path(),
        &ca,
        "other-c",
        &["other.countermesh", "countermesh.cluster"],
    )?;
    third.extend(seed.clone());
    let c = Agent::start(dir.path(), "other-c", &third, &[])?;

    // The two prod nodes find each other.
    for (url, peer) in [(&a.url, b.quic), (&b.url, a.quic)] {
        eventually("prod nodes see each other", CONVERGE_TIMEOUT, || async {
            let seen = alive(url).await?;
            Ok(if seen.contains(&peer.to_string()) {
                Ok(())
            } else {
                Err(format!("{seen:?}"))
            })
        })
        .await?;
    }
    // The other cluster's node keeps trying (it rejoins its seed) and is refused.
    eventually("the foreign node is refused", CONVERGE_TIMEOUT, || async {
        let rejected = metric(&a.url, "countermesh_transport_handshakes_rejected_total").await?;
        Ok(if rejected >= 1.0 {
            Ok(())
        } else {
            Err(format!("{rejected} rejected"))
        })
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for url in [&a.url, &b.url] {
        let seen = alive(url).await?;
        assert!(
            !seen.contains(&c.quic.to_string()),
            "{url} admitted the other cluster: {seen:?}"
        );
    }
    assert!(
        alive(&c.url).await?.is_empty(),
        "the other cluster's node joined"
    );

    // A certificate of another service, from the same CA, without a cluster SAN.
    let mut web = org_node(
        dir.path(),
        &ca,
        "web",
        &["www.corp.example", "countermesh.cluster"],
    )?;
    web.extend([
        "--http".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--bind".to_owned(),
        "127.0.0.1:0".to_owned(),
    ]);
    web.extend(seed);
    let mut agent = command();
    agent.arg("agent").args(&web);
    let (status, stderr) = run_to_exit(agent, Duration::from_secs(20))?;
    assert!(
        !status.success(),
        "a certificate without a cluster SAN started a node"
    );
    assert!(stderr.contains("cluster SAN"), "{stderr}");
    Ok(())
}

/// The agent flags for node `name` as `certs issue` laid it out under `dir`.
fn node_flags(dir: &Path, name: &str, crl: Option<&str>, seeds: &[String]) -> Vec<String> {
    let node = dir.join(name);
    let mut args: Vec<String> = [
        "--tls-ca",
        &node.join("ca.pem").display().to_string(),
        "--tls-cert",
        &node.join(format!("{name}.pem")).display().to_string(),
        "--tls-key",
        &node.join(format!("{name}.key")).display().to_string(),
        "--gossip-interval",
        "50ms",
    ]
    .map(str::to_owned)
    .to_vec();
    if let Some(crl) = crl {
        args.extend(["--tls-crl".to_owned(), crl.to_owned()]);
    }
    if !seeds.is_empty() {
        args.extend(["--seeds".to_owned(), seeds.join(",")]);
    }
    args
}

/// `certs revoke` writes a list that `--tls-crl` makes both sides honour: a node with a
/// revoked certificate can neither connect to a node that has the list nor be connected
/// to by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_certificate_is_refused_by_both_sides() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("ca");
    let ca_dir = ca.display().to_string();
    assert!(certs(&["init", "--dir", &ca_dir])?.0);
    for name in ["a", "b", "revoked"] {
        let (ok, text) = certs(&["issue", "--dir", &ca_dir, "--name", name])?;
        assert!(ok, "{text}");
    }
    let revoked_cert = dir.path().join("revoked/revoked.pem").display().to_string();
    let (ok, text) = certs(&["revoke", "--dir", &ca_dir, "--cert", &revoked_cert])?;
    assert!(ok, "{text}");
    let crl = ca.join("crl.pem").display().to_string();
    // The revoked node runs first; `a` (with the list) is told to join through it, so
    // `a` dials it: the client side's check. Then a second revoked process dials `a`:
    // the server side's check. `b` joins through `a` normally.
    let flags =
        |name: &str, crl: Option<&str>, seeds: &[String]| node_flags(dir.path(), name, crl, seeds);
    let outcast = Agent::start(dir.path(), "outcast", &flags("revoked", None, &[]), &[])?;
    let a = Agent::start(
        dir.path(),
        "a",
        &flags("a", Some(&crl), &[outcast.quic.to_string()]),
        &[],
    )?;
    let intruder = Agent::start(
        dir.path(),
        "intruder",
        &flags("revoked", None, &[a.quic.to_string()]),
        &[],
    )?;
    let b = Agent::start(
        dir.path(),
        "b",
        &flags("b", Some(&crl), &[a.quic.to_string()]),
        &[],
    )?;

    eventually("a and b see each other", CONVERGE_TIMEOUT, || async {
        let seen = alive(&a.url).await?;
        Ok(if seen.contains(&b.quic.to_string()) {
            Ok(())
        } else {
            Err(format!("{seen:?}"))
        })
    })
    .await?;
    eventually(
        "both checks refused the revoked certificate",
        CONVERGE_TIMEOUT,
        || async {
            let rejected =
                metric(&a.url, "countermesh_transport_handshakes_rejected_total").await?;
            let failed = metric(&a.url, "countermesh_transport_dial_failures_total").await?;
            Ok(if rejected >= 1.0 && failed >= 1.0 {
                Ok(())
            } else {
                Err(format!(
                    "{rejected} handshakes rejected, {failed} dials failed"
                ))
            })
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for url in [&a.url, &b.url] {
        let seen = alive(url).await?;
        for revoked in [&outcast, &intruder] {
            assert!(
                !seen.contains(&revoked.quic.to_string()),
                "{url} admitted a revoked node: {seen:?}"
            );
        }
    }
    assert!(alive(&intruder.url).await?.is_empty());
    assert!(alive(&outcast.url).await?.is_empty());
    Ok(())
}

/// Key files others can read are refused with the fix in the message, and the data
/// directory is created private.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_files_and_the_data_directory_are_private() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = crate::support::Pki::new()?;
    let tls = pki.tls_args("private")?;
    let key = pki.dir.path().join("private.key");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644))?;
    let mut agent = command();
    agent
        .args(["agent", "--http", "127.0.0.1:0", "--bind", "127.0.0.1:0"])
        .args(&tls);
    let (status, stderr) = run_to_exit(agent, Duration::from_secs(20))?;
    assert!(!status.success(), "a world-readable key was accepted");
    assert!(
        stderr.contains("chmod 600") && stderr.contains("private.key"),
        "{stderr}"
    );

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    let data = dir.path().join("state/node");
    let mut args = tls;
    args.extend(["--data-dir".to_owned(), data.display().to_string()]);
    let agent = Agent::start(dir.path(), "private", &args, &[])?;
    get(&format!("{}/v1/members", agent.url)).await?.expect_ok();
    assert_eq!(mode(&data)?, 0o700, "data directory mode");
    Ok(())
}
