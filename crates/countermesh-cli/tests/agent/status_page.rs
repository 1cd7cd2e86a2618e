//! The status page renders in headless Chromium: the script fills the members table
//! from `/v1/status`, and a screenshot comes out non-empty.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::support::{Pki, cluster, post, wait_alive_members, wait_with_deadline};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs Chromium headless with `extra` and returns its stdout, killing it if it
/// overruns. (Headless Chromium reaps its own helper processes when it exits. Signalling
/// its process group with `kill -KILL -PGID` is avoided on purpose: with procps-ng 4.0.2's
/// `kill` that took down every process on the machine here.)
fn chromium(profile: &Path, extra: &[String], url: &str) -> anyhow::Result<String> {
    let out_path = profile.join("stdout");
    let child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--window-size=1200,900",
            "--virtual-time-budget=3000",
        ])
        .arg(format!(
            "--user-data-dir={}",
            profile.join("profile").display()
        ))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(&out_path)?))
        .stderr(Stdio::null())
        .spawn()?;
    let status = wait_with_deadline(child, Duration::from_secs(60), "chromium")?;
    anyhow::ensure!(status.success(), "chromium exited with {status}");
    Ok(std::fs::read_to_string(out_path)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_renders_members_in_headless_chromium() -> anyhow::Result<()> {
    if !Path::new(CHROMIUM).exists() {
        println!(
            "SKIPPED the_status_page_renders_members_in_headless_chromium: {CHROMIUM} is not \
             installed (apt-get install -y chromium, or run scripts/screenshot-status)"
        );
        return Ok(());
    }
    let pki = Pki::new()?;
    let agents = cluster(&pki, 3, &[])?;
    let base = agents[0].url.clone();
    post(
        &format!("{base}/v1/counters/<em>escaped&amp/add"),
        &json!({"delta": 3}),
    )
    .await?
    .expect_ok();
    post(
        &format!("{base}/v1/counters/requests/add"),
        &json!({"delta": 42}),
    )
    .await?
    .expect_ok();
    wait_alive_members(&base, 2).await?;

    let work = tempfile::tempdir()?;
    let url = format!("{base}/");
    let dom_profile = work.path().join("dom");
    std::fs::create_dir_all(&dom_profile)?;
    let dom = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            chromium(&dom_profile, &["--dump-dom".to_owned()], &url)
        })
        .await??
    };
    assert!(
        dom.contains("id=\"members\""),
        "no members table in:\n{dom}"
    );
    // The script replaced the server-rendered rows with live ones.
    assert!(
        dom.contains("data-source=\"live\""),
        "the script did not refresh the page:\n{dom}"
    );
    for agent in &agents {
        assert!(
            dom.contains(&agent.quic.to_string()),
            "{} missing from:\n{dom}",
            agent.quic
        );
    }
    assert!(
        dom.contains("&lt;em&gt;escaped&amp;amp"),
        "counter name not escaped:\n{dom}"
    );
    assert!(!dom.contains("<em>escaped"));

    let shot_profile = work.path().join("shot");
    std::fs::create_dir_all(&shot_profile)?;
    let png = work.path().join("status.png");
    let arg = format!("--screenshot={}", png.display());
    tokio::task::spawn_blocking(move || chromium(&shot_profile, &[arg], &url)).await??;
    let bytes = std::fs::read(&png)?;
    assert!(
        bytes.len() > 1000,
        "screenshot is only {} bytes",
        bytes.len()
    );
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    Ok(())
}
