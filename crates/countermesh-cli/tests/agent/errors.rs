//! Every error code of the eventual API and of authentication, each asserted with a
//! real request against a real agent.

use serde_json::json;

use crate::support::{Agent, get, http, post, post_raw, single};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eventual_routes_answer_json_errors_with_the_right_status() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = single(dir.path(), "errors", &[])?;
    let base = &agent.url;

    // 400 invalid_body: not JSON, not an object, missing fields.
    post_raw(&format!("{base}/v1/counters/a/add"), "{\"delta\": ")
        .await?
        .expect_error(400, "invalid_body");
    post_raw(&format!("{base}/v1/counters/a/add"), "[1]")
        .await?
        .expect_error(400, "invalid_body");
    post_raw(&format!("{base}/v1/counters:batch"), "{}")
        .await?
        .expect_error(400, "invalid_body");
    post_raw(&format!("{base}/v1/counters:batch"), "")
        .await?
        .expect_error(400, "invalid_body");

    // 415: a POST that does not declare JSON (what a cross-site form or `fetch` with
    // `mode: "no-cors"` would send) changes nothing, with or without a body.
    for (content_type, body) in [
        (None, ""),
        (Some("text/plain"), "{\"delta\": 5}"),
        (Some("application/x-www-form-urlencoded"), "delta=5"),
    ] {
        let mut request = http().post(format!("{base}/v1/counters/csrf/add"));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.body(body).send().await?;
        assert_eq!(response.status().as_u16(), 415, "{content_type:?}");
    }
    get(&format!("{base}/v1/counters/csrf"))
        .await?
        .expect_error(404, "not_found");

    // 413 on a single-operation route well below the batch limit.
    let padded = format!("{{\"delta\": 1, \"pad\": \"{}\"}}", "x".repeat(100 * 1024));
    post_raw(&format!("{base}/v1/counters/a/add"), padded)
        .await?
        .expect_error(413, "payload_too_large");

    // 400 invalid_value: a delta that is not an i64.
    for delta in [
        json!(1.5),
        json!("3"),
        json!(9_223_372_036_854_775_808u64),
        json!(true),
    ] {
        post(
            &format!("{base}/v1/counters/a/add"),
            &json!({ "delta": delta }),
        )
        .await?
        .expect_error(400, "invalid_value");
    }
    get(&format!("{base}/v1/counters?limit=lots"))
        .await?
        .expect_error(400, "invalid_value");

    // 400 invalid_name: a control character, an over-long name.
    post(&format!("{base}/v1/counters/a%0Ab/add"), &json!({}))
        .await?
        .expect_error(400, "invalid_name");
    let long = "x".repeat(257);
    get(&format!("{base}/v1/counters/{long}"))
        .await?
        .expect_error(400, "invalid_name");

    // A batch with a bad entry applies nothing and names the entry.
    let message = post(
        &format!("{base}/v1/counters:batch"),
        &json!({"adds": [{"name": "ok.1", "delta": 1}, {"name": "ok.2"}, {"name": "bad\u{7}", "delta": 1}]}),
    )
    .await?
    .expect_error(400, "invalid_name");
    assert!(message.contains("adds[2]"), "{message}");
    let message = post(
        &format!("{base}/v1/counters:batch"),
        &json!({"adds": [{"name": "ok.1", "delta": 1}, {"name": "ok.3", "delta": 0.5}]}),
    )
    .await?
    .expect_error(400, "invalid_value");
    assert!(message.contains("adds[1]"), "{message}");
    get(&format!("{base}/v1/counters/ok.1"))
        .await?
        .expect_error(404, "not_found");

    // 404 not_found: an unknown counter, an unknown route.
    get(&format!("{base}/v1/counters/never.heard.of"))
        .await?
        .expect_error(404, "not_found");
    get(&format!("{base}/v2/whatever"))
        .await?
        .expect_error(404, "not_found");

    // 413 payload_too_large: a body over 8 MiB, a batch over 100,000 entries.
    let huge = format!(
        "{{\"adds\": [], \"pad\": \"{}\"}}",
        "x".repeat(9 * 1024 * 1024)
    );
    post_raw(&format!("{base}/v1/counters:batch"), huge)
        .await?
        .expect_error(413, "payload_too_large");
    let many: Vec<_> = (0..100_001).map(|_| json!({"name": "n"})).collect();
    post(
        &format!("{base}/v1/counters:batch"),
        &json!({ "adds": many }),
    )
    .await?
    .expect_error(413, "payload_too_large");
    get(&format!("{base}/v1/counters/n"))
        .await?
        .expect_error(404, "not_found");

    // 503 unavailable: strict routes without ZooKeeper configured.
    let message = post(
        &format!("{base}/v1/strict/tickets/add"),
        &json!({"delta": 1}),
    )
    .await?
    .expect_error(503, "unavailable");
    assert!(message.contains("--zookeeper"), "{message}");
    get(&format!("{base}/v1/strict/tickets"))
        .await?
        .expect_error(503, "unavailable");

    // The happy path still works after all that, and a read of it is exact.
    post(&format!("{base}/v1/counters/a/add"), &json!({"delta": 2}))
        .await?
        .expect_ok();
    assert_eq!(
        get(&format!("{base}/v1/counters/a")).await?.expect_ok()["value"],
        2
    );
    assert_eq!(
        http()
            .get(format!("{base}/healthz"))
            .send()
            .await?
            .text()
            .await?,
        "ok"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_every_route_but_healthz() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // The token comes from the environment here, which also checks COUNTERMESH_TOKEN.
    let agent = Agent::start(
        dir.path(),
        "token",
        &["--insecure-no-peer-verification".to_owned()],
        &[("COUNTERMESH_TOKEN", "s3cret-token")],
    )?;
    let base = &agent.url;
    let client = http();

    let health = client.get(format!("{base}/healthz")).send().await?;
    assert_eq!(health.status(), 200);
    for path in [
        "/v1/members",
        "/metrics",
        "/",
        "/v1/status",
        "/v1/counters/x",
    ] {
        let response = client.get(format!("{base}{path}")).send().await?;
        assert_eq!(response.status(), 401, "{path}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let body: serde_json::Value = response.json().await?;
        assert_eq!(body["error"]["code"], "unauthorized", "{path}");
    }
    for wrong in [
        "Bearer s3cret-toke",
        "Bearer s3cret-token2",
        "Basic s3cret-token",
        "s3cret-token",
    ] {
        let response = client
            .post(format!("{base}/v1/counters/x/add"))
            .header("authorization", wrong)
            .send()
            .await?;
        assert_eq!(response.status(), 401, "{wrong}");
    }
    let added = client
        .post(format!("{base}/v1/counters/x/add"))
        .bearer_auth("s3cret-token")
        .json(&json!({"delta": 4}))
        .send()
        .await?;
    assert_eq!(added.status(), 200);
    let page = client
        .get(format!("{base}/?token=s3cret-token"))
        .send()
        .await?;
    assert_eq!(page.status(), 200);
    // The query-string token is for the page only.
    let status = client
        .get(format!("{base}/v1/status?token=s3cret-token"))
        .send()
        .await?;
    assert_eq!(status.status(), 401);
    // The token never shows up in the logs.
    assert!(
        !agent.log_tail().contains("s3cret-token"),
        "token leaked into the log"
    );
    Ok(())
}
