//! Idempotency keys on eventual writes: a repeated add or batch is answered without
//! adding again, a key reused for another write is 422, the store is bounded by
//! `--idempotency-max-keys` (oldest evicted, counted), and /metrics shows it all.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{command, get, http, post_keyed, run_to_exit, single};

async fn value(url: &str, name: &str) -> anyhow::Result<Value> {
    Ok(get(&format!("{url}/v1/counters/{name}")).await?.expect_ok()["value"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_eventual_writes_apply_once_within_a_bounded_store() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let agent = single(dir.path(), "keys", &["--idempotency-max-keys", "2"])?;
    let add = format!("{}/v1/counters/views/add", agent.url);
    let batch = format!("{}/v1/counters:batch", agent.url);

    // The same add twice: added once, answered the same both times.
    for _ in 0..2 {
        let reply = post_keyed(&add, "a", &json!({"delta": 5})).await?;
        assert_eq!(
            reply.expect_ok(),
            &json!({"name": "views", "delta": 5, "consistency": "eventual"})
        );
    }
    assert_eq!(value(&agent.url, "views").await?, 5);
    // The key with another delta, or on the batch route: refused, nothing added.
    let message = post_keyed(&add, "a", &json!({"delta": 6}))
        .await?
        .expect_error(422, "idempotency_key_reused");
    assert!(message.contains("no effect"), "{message}");
    post_keyed(
        &batch,
        "a",
        &json!({"adds": [{"name": "views", "delta": 5}]}),
    )
    .await?
    .expect_error(422, "idempotency_key_reused");
    assert_eq!(value(&agent.url, "views").await?, 5);

    // A batch twice (the second time with the key in the body): applied once.
    let adds = json!([{"name": "x", "delta": 1}, {"name": "y", "delta": 2}]);
    let first = post_keyed(&batch, "b", &json!({ "adds": adds })).await?;
    assert_eq!(first.expect_ok()["applied"], 2);
    let again = crate::support::post(&batch, &json!({ "adds": adds, "op_id": "b" })).await?;
    assert_eq!(again.expect_ok()["applied"], 2);
    assert_eq!(
        (value(&agent.url, "x").await?, value(&agent.url, "y").await?),
        (json!(1), json!(2))
    );

    // A third key exceeds --idempotency-max-keys 2: the oldest ("a") is forgotten early,
    // so repeating it adds again. That is the documented cost of the bound.
    post_keyed(&add, "c", &json!({"delta": 1}))
        .await?
        .expect_ok();
    assert_eq!(value(&agent.url, "views").await?, 6);
    let metrics = http()
        .get(format!("{}/metrics", agent.url))
        .send()
        .await?
        .text()
        .await?;
    for line in [
        "countermesh_idempotency_keys 2",
        "countermesh_idempotency_hits_total 2",
        "countermesh_idempotency_conflicts_total 2",
        "countermesh_idempotency_evictions_total 1",
        "countermesh_adds_total 4",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    post_keyed(&add, "a", &json!({"delta": 5}))
        .await?
        .expect_ok();
    assert_eq!(value(&agent.url, "views").await?, 11);
    // Malformed keys are refused before anything is added.
    post_keyed(&add, "not ok", &json!({"delta": 1}))
        .await?
        .expect_error(400, "invalid_idempotency_key");
    assert_eq!(value(&agent.url, "views").await?, 11);
    Ok(())
}

#[test]
fn idempotency_settings_are_validated() -> anyhow::Result<()> {
    for (args, option) in [
        (["--idempotency-max-keys", "0"], "--idempotency-max-keys"),
        (["--idempotency-window", "soon"], "--idempotency-window"),
    ] {
        let mut agent = command();
        agent
            .args(["agent", "--insecure-no-peer-verification"])
            .args(["--http", "127.0.0.1:0", "--bind", "127.0.0.1:0"])
            .args(args);
        let (status, stderr) = run_to_exit(agent, Duration::from_secs(20))?;
        assert!(!status.success() && stderr.contains(option), "{stderr}");
    }
    Ok(())
}
