//! The agent's defences against web pages and local clients (issue 8, items 7 to 12),
//! each asserted over real HTTP against a real agent process.

use serde_json::{Value, json};

use crate::support::{Agent, Reply, get, http, single};

/// Sends `method path` with an explicit `Host` header (and a JSON body for POSTs).
async fn with_host(base: &str, method: &str, path: &str, host: &str) -> anyhow::Result<Reply> {
    let url = format!("{base}{path}");
    let request = match method {
        "POST" => http()
            .post(url)
            .header("content-type", "application/json")
            .body(json!({"delta": 1}).to_string()),
        _ => http().get(url),
    };
    let response = request.header("host", host).send().await?;
    let status = response.status().as_u16();
    let body = serde_json::from_slice(&response.bytes().await?).unwrap_or(Value::Null);
    Ok(Reply { status, body })
}

/// Issue 8 item 7: a page served from a rebound DNS name reaches the agent with its own
/// name in `Host`; the agent answers only loopback names, its bind address and the
/// names it was told about, so such a page can neither write nor read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_rebinding_hosts_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = single(
        dir.path(),
        "hosts",
        &["--allowed-host", "Counters.Internal"],
    )?;
    let base = &agent.url;
    let port = base.rsplit(':').next().unwrap_or_default();

    for host in [
        "evil.example".to_owned(),
        format!("evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
        "10.1.2.3".to_owned(),
    ] {
        let posted = with_host(base, "POST", "/v1/counters/rebound/add", &host).await?;
        let message = posted.expect_error(403, "host_not_allowed");
        assert!(message.contains("--allowed-host"), "{message}");
        with_host(base, "GET", "/v1/counters", &host)
            .await?
            .expect_error(403, "host_not_allowed");
        with_host(base, "GET", "/", &host)
            .await?
            .expect_error(403, "host_not_allowed");
    }
    get(&format!("{base}/v1/counters/rebound"))
        .await?
        .expect_error(404, "not_found");

    for host in [
        format!("localhost:{port}"),
        "LOCALHOST".to_owned(),
        format!("127.0.0.1:{port}"),
        format!("127.0.0.2:{port}"),
        format!("[::1]:{port}"),
        format!("counters.internal:{port}"),
        "counters.internal.".to_owned(),
    ] {
        with_host(base, "POST", "/v1/counters/allowed/add", &host)
            .await?
            .expect_ok();
    }
    assert_eq!(
        get(&format!("{base}/v1/counters/allowed"))
            .await?
            .expect_ok()["value"],
        7
    );
    // Health checks carry no data and are answered whatever the name.
    assert_eq!(
        with_host(base, "GET", "/healthz", "evil.example")
            .await?
            .status,
        200
    );
    Ok(())
}

/// Allowed hosts also come from the environment (comma-separated) and the config file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_hosts_come_from_every_source() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let env_agent = Agent::start(
        dir.path(),
        "hosts-env",
        &["--insecure-no-peer-verification".to_owned()],
        &[("COUNTERMESH_ALLOWED_HOST", "a.internal,b.internal")],
    )?;
    for host in ["a.internal", "b.internal"] {
        with_host(&env_agent.url, "GET", "/v1/members", host)
            .await?
            .expect_ok();
    }
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, "allowed_host = [\"c.internal\"]\n")?;
    let file_agent = Agent::start(
        dir.path(),
        "hosts-file",
        &[
            "--insecure-no-peer-verification".to_owned(),
            "--config".to_owned(),
            file.display().to_string(),
        ],
        &[],
    )?;
    with_host(&file_agent.url, "GET", "/v1/members", "c.internal")
        .await?
        .expect_ok();
    with_host(&file_agent.url, "GET", "/v1/members", "a.internal")
        .await?
        .expect_error(403, "host_not_allowed");
    Ok(())
}
