//! Eventual counters across three agents with mutual TLS: add through one, read the
//! exact total through the others; batches, listings, members, graceful shutdown.

use serde_json::json;

use crate::support::{CONVERGE_TIMEOUT, Pki, cluster, eventually, get, post, wait_alive_members};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adds_through_one_agent_converge_at_every_agent() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let agents = cluster(&pki, 3, &[])?;

    // Every agent sees the other two as alive members.
    for agent in &agents {
        wait_alive_members(&agent.url, 2).await?;
    }

    // Single adds at the first agent, with and without a delta, negative ones too.
    let first = &agents[0].url;
    let mut expected = 0i64;
    for delta in [5, 7, -3, 100] {
        let added = post(
            &format!("{first}/v1/counters/page.views/add"),
            &json!({ "delta": delta }),
        )
        .await?;
        assert_eq!(
            added.expect_ok(),
            &json!({"name": "page.views", "delta": delta, "consistency": "eventual"})
        );
        expected += delta;
    }
    let added = post(&format!("{first}/v1/counters/page.views/add"), &json!({})).await?;
    assert_eq!(added.expect_ok()["delta"], 1);
    expected += 1;

    // Adds at the other agents to the same counter: every node contributes.
    for agent in &agents[1..] {
        post(
            &format!("{}/v1/counters/page.views/add", agent.url),
            &json!({ "delta": 10 }),
        )
        .await?
        .expect_ok();
        expected += 10;
    }

    // A batch at the second agent.
    let adds: Vec<_> = (0..1000)
        .map(|i| json!({"name": format!("batch.{}", i % 10), "delta": 2}))
        .collect();
    let batch = post(
        &format!("{}/v1/counters:batch", agents[1].url),
        &json!({ "adds": adds }),
    )
    .await?;
    assert_eq!(
        batch.expect_ok(),
        &json!({"applied": 1000, "consistency": "eventual"})
    );

    for agent in &agents {
        let url = format!("{}/v1/counters/page.views", agent.url);
        eventually("exact total at every agent", CONVERGE_TIMEOUT, || async {
            let read = get(&url).await?;
            let body = &read.body;
            Ok(
                if read.status == 200 && body["value"] == expected && body["contributors"] == 3 {
                    Ok(())
                } else {
                    Err(body.to_string())
                },
            )
        })
        .await?;
        let read = get(&url).await?;
        assert_eq!(read.body["consistency"], "eventual");
        assert_eq!(read.body["members"], 3, "{}", read.body);

        let url = format!("{}/v1/counters?prefix=batch.", agent.url);
        eventually("batch totals at every agent", CONVERGE_TIMEOUT, || async {
            let list = get(&url).await?;
            let counters = list.body["counters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let names: Vec<_> = counters
                .iter()
                .map(|c| c["name"].as_str().unwrap_or(""))
                .collect();
            let all_200 = counters.iter().all(|c| c["value"] == 200);
            let sorted = (0..10).map(|i| format!("batch.{i}")).collect::<Vec<_>>();
            Ok(if names == sorted && all_200 {
                Ok(())
            } else {
                Err(list.body.to_string())
            })
        })
        .await?;
    }

    // `limit` cuts the sorted listing and says so.
    let limited = get(&format!(
        "{}/v1/counters?prefix=batch.&limit=3",
        agents[2].url
    ))
    .await?;
    let body = limited.expect_ok();
    assert_eq!(body["counters"].as_array().map(Vec::len), Some(3));
    assert_eq!(body["counters"][0]["name"], "batch.0");
    assert_eq!(body["truncated"], true);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_and_the_peer_sees_the_leave() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let mut agents = cluster(&pki, 2, &[])?;
    // Wait for the mesh to form, so there is a peer to notice the leave.
    for agent in &agents {
        let url = format!("{}/v1/members", agent.url);
        eventually("both members alive", CONVERGE_TIMEOUT, || async {
            let members = get(&url).await?;
            let alive = members.body["members"]
                .as_array()
                .is_some_and(|m| m.len() == 1 && m[0]["state"] == "alive");
            Ok(if alive {
                Ok(())
            } else {
                Err(members.body.to_string())
            })
        })
        .await?;
    }
    post(
        &format!("{}/v1/counters/leaving/add", agents[1].url),
        &serde_json::json!({"delta": 9}),
    )
    .await?
    .expect_ok();
    // The adds reach the survivor by ordinary gossip first. (Handing over adds made in
    // the last instant before SIGTERM is the mesh's `shutdown` promise; without a data
    // directory it is best effort, so this test does not time it.)
    let url = format!("{}/v1/counters/leaving", agents[0].url);
    eventually(
        "the leaving node's adds arrive",
        CONVERGE_TIMEOUT,
        || async {
            let read = get(&url).await?;
            Ok(if read.body["value"] == 9 {
                Ok(())
            } else {
                Err(read.body.to_string())
            })
        },
    )
    .await?;
    let status = agents[1].terminate(std::time::Duration::from_secs(15))?;
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        agents[1].log_tail()
    );
    // The survivor hears the leave announcement.
    let members_url = format!("{}/v1/members", agents[0].url);
    eventually("the leaving node is down", CONVERGE_TIMEOUT, || async {
        let members = get(&members_url).await?;
        let down = members.body["members"]
            .as_array()
            .is_some_and(|m| m.iter().all(|m| m["state"] == "down") && !m.is_empty());
        Ok(if down {
            Ok(())
        } else {
            Err(members.body.to_string())
        })
    })
    .await?;
    Ok(())
}
