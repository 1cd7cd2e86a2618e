//! `/metrics`: the expected families are there, and every line is valid Prometheus
//! text exposition (0.0.4), checked line by line.

use std::collections::{HashMap, HashSet};

use serde_json::json;

use crate::support::{CONVERGE_TIMEOUT, Pki, cluster, eventually, get, http, post};

/// Checks the exposition and returns the samples, `name{labels}` → value.
fn parse_exposition(text: &str) -> Result<HashMap<String, f64>, String> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helped = HashSet::new();
    let mut samples = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let at = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest
                .split_once(' ')
                .ok_or_else(|| at("HELP without text"))?;
            check_name(name).map_err(|e| at(&e))?;
            if help.trim().is_empty() || !helped.insert(name.to_owned()) {
                return Err(at("empty or repeated HELP"));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without a type"))?;
            check_name(name).map_err(|e| at(&e))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(at("unknown type"));
            }
            if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                return Err(at("repeated TYPE"));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        // name{labels} value
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| at("sample without a value"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| at("value is not a number"))?,
        };
        let name = match series.split_once('{') {
            None => series,
            Some((name, labels)) => {
                let labels = labels
                    .strip_suffix('}')
                    .ok_or_else(|| at("unclosed labels"))?;
                check_labels(labels).map_err(|e| at(&e))?;
                name
            }
        };
        check_name(name).map_err(|e| at(&e))?;
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.get(*base).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        let kind = types
            .get(family)
            .ok_or_else(|| at("sample before its TYPE"))?;
        if kind == "counter" && !name.ends_with("_total") {
            return Err(at("counter without _total"));
        }
        if samples.insert(series.to_owned(), value).is_some() {
            return Err(at("repeated series"));
        }
    }
    Ok(samples)
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("bad metric name {name:?}"))
    }
}

/// `k="v",k2="v2"` with `\\`, `\"` and `\n` escapes.
fn check_labels(labels: &str) -> Result<(), String> {
    let mut rest = labels;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").ok_or("label without =\"")?;
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name {key:?}"));
        }
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\' | '"' | 'n')) => {}
                    _ => return Err("bad escape in label value".into()),
                },
                Some((i, '"')) => break i,
                Some((_, '\n')) => return Err("raw newline in label value".into()),
                Some(_) => {}
                None => return Err("unterminated label value".into()),
            }
        };
        rest = &after[end + 1..];
        if let Some(next) = rest.strip_prefix(',') {
            rest = next;
        } else if !rest.is_empty() {
            return Err("labels not separated by ','".into());
        }
    }
    Ok(())
}

#[test]
fn the_checker_rejects_bad_expositions() {
    assert!(parse_exposition("# TYPE a_total counter\na_total 1\n").is_ok());
    assert!(parse_exposition("a_total 1\n").is_err());
    assert!(parse_exposition("# TYPE a counter\na 1\n").is_err());
    assert!(parse_exposition("# TYPE a gauge\na{x=\"1} 1\n").is_err());
    assert!(parse_exposition("# TYPE a gauge\na{x=\"\\q\"} 1\n").is_err());
    assert!(parse_exposition("# TYPE a gauge\na one\n").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_the_expected_families_in_valid_text_format() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let agents = cluster(&pki, 2, &[])?;
    let base = &agents[0].url;
    for _ in 0..3 {
        post(&format!("{base}/v1/counters/m/add"), &json!({"delta": 2}))
            .await?
            .expect_ok();
    }
    post(
        &format!("{base}/v1/counters:batch"),
        &json!({"adds": [{"name": "m"}, {"name": "q\"uote"}]}),
    )
    .await?
    .expect_ok();
    get(&format!("{base}/v1/counters/m")).await?.expect_ok();
    get(&format!("{base}/v1/counters/missing")).await?;
    let peer = agents[1].quic.to_string();
    let url = format!("{}/v1/counters/m", agents[1].url);
    eventually("the peer has the adds", CONVERGE_TIMEOUT, || async {
        let read = get(&url).await?;
        Ok(if read.body["value"] == 7 {
            Ok(())
        } else {
            Err(read.body.to_string())
        })
    })
    .await?;

    // A peer's lag is known once that peer has sent this node a digest (its own
    // anti-entropy schedule, about one gossip interval), which can trail convergence.
    let lag_series = format!("countermesh_peer_lag_versions{{peer=\"{peer}\"}}");
    eventually("the peer's lag is reported", CONVERGE_TIMEOUT, || async {
        let text = http()
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        Ok(if text.contains(&lag_series) {
            Ok(())
        } else {
            Err("no lag series yet".to_owned())
        })
    })
    .await?;

    let response = http().get(format!("{base}/metrics")).send().await?;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str()?.to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await?;
    let samples = parse_exposition(&text).map_err(|e| anyhow::anyhow!("{e}\n{text}"))?;

    let value = |series: &str| {
        samples
            .get(series)
            .copied()
            .unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
    };
    assert_eq!(value("countermesh_adds_total"), 5.0);
    assert_eq!(value("countermesh_reads_total"), 2.0);
    assert_eq!(value("countermesh_members{state=\"alive\"}"), 2.0);
    assert_eq!(value("countermesh_counters"), 2.0);
    assert!(value("countermesh_gossip_sent_bytes_total{kind=\"delta\"}") > 0.0);
    assert!(value("countermesh_gossip_sent_bytes_total{kind=\"swim\"}") > 0.0);
    for series in [
        "countermesh_gossip_received_bytes_total{kind=\"sync\"}",
        "countermesh_gossip_messages_sent_total{kind=\"delta\"}",
        "countermesh_members{state=\"suspect\"}",
        "countermesh_members{state=\"down\"}",
        "countermesh_transport_dropped_total{reason=\"queue_full\"}",
        "countermesh_durable_version",
        "countermesh_strict_connected",
        "countermesh_http_requests_total{route=\"/v1/counters/{name}/add\",status=\"200\"}",
        "countermesh_http_requests_total{route=\"/v1/counters/{name}\",status=\"404\"}",
    ] {
        value(series);
    }
    assert!(
        samples.contains_key(&format!("countermesh_peer_lag_versions{{peer=\"{peer}\"}}")),
        "no lag for {peer}:\n{text}"
    );
    for family in [
        "countermesh_strict_op_duration_seconds",
        "countermesh_strict_ops_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing"
        );
    }
    Ok(())
}
