//! Configuration: validation errors at start name the offending option; flags win over
//! the environment, which wins over the TOML file.

use std::time::Duration;

use crate::support::{Agent, command, get, run_to_exit};

const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

fn agent_error(args: &[&str]) -> anyhow::Result<String> {
    let mut command = command();
    command.arg("agent").args(args);
    let (status, stderr) = run_to_exit(command, EXIT_TIMEOUT)?;
    assert!(
        !status.success(),
        "expected a failure for {args:?}; stderr: {stderr}"
    );
    Ok(stderr)
}

#[test]
fn invalid_configuration_is_refused_with_a_clear_message() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not really a certificate")?;

    let err = agent_error(&["--http", "127.0.0.1:0", "--bind", "127.0.0.1:0"])?;
    assert!(err.contains("--tls-ca, --tls-cert, --tls-key"), "{err}");
    let err = agent_error(&["--tls-ca", &ca.display().to_string()])?;
    assert!(err.contains("missing: --tls-cert, --tls-key"), "{err}");
    let err = agent_error(&["--insecure-no-peer-verification", "--http", "localhost"])?;
    assert!(err.contains("--http") && err.contains("localhost"), "{err}");
    let err = agent_error(&[
        "--insecure-no-peer-verification",
        "--gossip-interval",
        "soon",
    ])?;
    assert!(err.contains("--gossip-interval"), "{err}");
    let err = agent_error(&["--insecure-no-peer-verification", "--zookeeper", "zk1"])?;
    assert!(err.contains("--zookeeper"), "{err}");
    let missing = dir.path().join("nope.pem").display().to_string();
    let err = agent_error(&[
        "--tls-ca",
        &missing,
        "--tls-cert",
        &missing,
        "--tls-key",
        &missing,
    ])?;
    assert!(
        err.contains("--tls-ca") && err.contains("nope.pem"),
        "{err}"
    );

    let file = dir.path().join("agent.toml");
    std::fs::write(&file, "http = \"127.0.0.1:0\"\nhttp_port = 8080\n")?;
    let err = agent_error(&["--config", &file.display().to_string()])?;
    assert!(err.contains("http_port"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_beat_environment_beats_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("agent.toml");
    // Every value the flag or the environment overrides is invalid in the file, so the
    // agent only starts if the precedence is right.
    std::fs::write(
        &file,
        "insecure_no_peer_verification = true\n\
         http = \"not an address\"\n\
         bind = \"127.0.0.1:0\"\n\
         gossip_interval = \"whenever\"\n\
         token = \"from-file\"\n",
    )?;
    let agent = Agent::start(
        dir.path(),
        "precedence",
        &[
            "--config".to_owned(),
            file.display().to_string(),
            "--http".to_owned(),
            "127.0.0.1:0".to_owned(),
        ],
        &[
            ("COUNTERMESH_GOSSIP_INTERVAL", "20ms"),
            ("COUNTERMESH_TOKEN", "from-env"),
        ],
    )?;
    // The token from the environment is the one required.
    let client = crate::support::http();
    let with = |token: &'static str| {
        client
            .get(format!("{}/v1/members", agent.url))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(with("from-env").await?.status(), 200);
    assert_eq!(with("from-file").await?.status(), 401);
    assert_eq!(get(&format!("{}/healthz", agent.url)).await?.status, 200);
    Ok(())
}

#[test]
fn help_documents_every_option_and_its_default() -> anyhow::Result<()> {
    let output = command().args(["agent", "--help"]).output()?;
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout)?;
    for option in [
        "--config",
        "--bind",
        "--advertise",
        "--seeds",
        "--http",
        "--data-dir",
        "--tls-ca",
        "--tls-cert",
        "--tls-key",
        "--insecure-no-peer-verification",
        "--gossip-interval",
        "--commit-interval",
        "--zookeeper",
        "--strict-timeout",
        "--zookeeper-auth-file",
        "--zookeeper-tls-ca",
        "--zookeeper-tls-cert",
        "--zookeeper-tls-key",
        "--token",
        "--token-file",
        "--allow-unauthenticated",
        "--allowed-host",
        "--tls-crl",
        "--header-timeout",
        "--request-timeout",
        "--max-connections",
        "--max-counters",
        "--idempotency-window",
        "--idempotency-max-keys",
        "--log",
    ] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
    for default in [
        "0.0.0.0:7946",
        "127.0.0.1:8080",
        "100ms",
        "50ms",
        "[default: info]",
        "[default: 10s]",
        "[default: 30s]",
        "[default: 1024]",
        "[default: 100000]",
        "[default: 10m]",
    ] {
        assert!(help.contains(default), "{default} missing from:\n{help}");
    }
    Ok(())
}
