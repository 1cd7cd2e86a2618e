//! `GET /metrics`: the agent's and the mesh's figures in the Prometheus text
//! exposition format 0.0.4, written by hand (a few dozen lines beat a dependency).
//!
//! Names follow Prometheus conventions: a `countermesh_` prefix, base units (seconds,
//! bytes) in the name, `_total` for counters, one HELP and one TYPE line per family.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use countermesh::MemberState;

use crate::agent_state::{AgentState, LATENCY_BUCKETS};

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(crate) async fn metrics(State(state): State<Arc<AgentState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&state))
}

/// One metric family being written: HELP and TYPE first, then samples.
struct Family<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &'static str, kind: &str, help: &str) -> Self {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Self { out, name }
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.sample_named("", labels, value);
    }

    /// A sample whose name extends the family's (`_bucket`, `_sum`, `_count`).
    fn sample_named(
        &mut self,
        suffix: &str,
        labels: &[(&str, &str)],
        value: impl std::fmt::Display,
    ) {
        let _ = write!(self.out, "{}{suffix}", self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape_label(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Label values escape backslash, double quote and newline; nothing else.
fn escape_label(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

fn counter(out: &mut String, name: &'static str, help: &str, value: u64) {
    Family::new(out, name, "counter", help).sample(&[], value);
}

fn gauge(out: &mut String, name: &'static str, help: &str, value: impl std::fmt::Display) {
    Family::new(out, name, "gauge", help).sample(&[], value);
}

/// The whole exposition.
pub(crate) fn render(state: &AgentState) -> String {
    let mesh = state.mesh.metrics();
    let stats = &state.stats;
    let mut out = String::with_capacity(8 * 1024);

    let mut info = Family::new(
        &mut out,
        "countermesh_build_info",
        "gauge",
        "Always 1; labelled with the agent's version.",
    );
    info.sample(&[("version", env!("CARGO_PKG_VERSION"))], 1);
    gauge(
        &mut out,
        "countermesh_uptime_seconds",
        "Seconds since the agent started.",
        state.started.elapsed().as_secs_f64(),
    );

    counter(
        &mut out,
        "countermesh_adds_total",
        "Eventual add operations accepted over HTTP (one per batch entry).",
        stats.adds.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "countermesh_reads_total",
        "Eventual read requests served over HTTP (single counters and listings).",
        stats.reads.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "countermesh_batches_total",
        "Batch add requests applied.",
        stats.batches.load(Ordering::Relaxed),
    );

    gauge(
        &mut out,
        "countermesh_counters",
        "Distinct counters this node knows.",
        mesh.counters,
    );
    gauge(
        &mut out,
        "countermesh_actors",
        "Distinct actors (nodes, past and present) that contributed to any counter.",
        mesh.actors,
    );

    let mut members = Family::new(
        &mut out,
        "countermesh_members",
        "gauge",
        "Mesh members by SWIM state as this node sees them, itself included (alive).",
    );
    for member_state in [MemberState::Alive, MemberState::Suspect, MemberState::Down] {
        let peers = mesh
            .members
            .iter()
            .filter(|m| m.state == member_state)
            .count();
        let total = peers + usize::from(member_state == MemberState::Alive);
        members.sample(&[("state", member_state.as_str())], total);
    }

    counter(
        &mut out,
        "countermesh_gossip_rounds_total",
        "Gossip rounds run.",
        mesh.rounds,
    );
    let gossip: [(&'static str, &str, bool, bool); 4] = [
        (
            "countermesh_gossip_messages_sent_total",
            "Gossip messages sent, by kind.",
            true,
            false,
        ),
        (
            "countermesh_gossip_sent_bytes_total",
            "Gossip bytes sent, by kind.",
            true,
            true,
        ),
        (
            "countermesh_gossip_messages_received_total",
            "Gossip messages received, by kind.",
            false,
            false,
        ),
        (
            "countermesh_gossip_received_bytes_total",
            "Gossip bytes received, by kind.",
            false,
            true,
        ),
    ];
    for (name, help, sent, bytes) in gossip {
        let mut family = Family::new(&mut out, name, "counter", help);
        let rows = if sent { &mesh.sent } else { &mesh.received };
        for (kind, messages, byte_count) in rows {
            family.sample(
                &[("kind", kind.as_str())],
                if bytes { *byte_count } else { *messages },
            );
        }
    }
    counter(
        &mut out,
        "countermesh_gossip_messages_dropped_total",
        "Received gossip messages dropped because they did not decode or were not acceptable.",
        mesh.messages_dropped,
    );
    counter(
        &mut out,
        "countermesh_gossip_entries_merged_total",
        "Remote counter entries merged into this node's state.",
        mesh.entries_merged,
    );

    let mut lag = Family::new(
        &mut out,
        "countermesh_peer_lag_versions",
        "gauge",
        "This node's own versions each peer has not acknowledged yet (0 = caught up).",
    );
    for peer in &mesh.peer_lag {
        lag.sample(&[("peer", &peer.addr.to_string())], peer.versions_behind);
    }

    let t = mesh.transport;
    let mut dropped = Family::new(
        &mut out,
        "countermesh_transport_dropped_total",
        "counter",
        "Outbound messages dropped, by reason (anti-entropy resends what matters).",
    );
    dropped.sample(&[("reason", "queue_full")], t.queue_full_drops);
    dropped.sample(&[("reason", "send_failure")], t.send_failures);
    let mut connections = Family::new(
        &mut out,
        "countermesh_transport_connections_total",
        "counter",
        "QUIC connections established, by direction.",
    );
    connections.sample(&[("direction", "outgoing")], t.connections_dialed);
    connections.sample(&[("direction", "incoming")], t.connections_accepted);
    counter(
        &mut out,
        "countermesh_transport_dial_failures_total",
        "Outgoing connection attempts that failed (certificate rejections included).",
        t.dial_failures,
    );
    counter(
        &mut out,
        "countermesh_transport_handshakes_rejected_total",
        "Incoming connections refused during the mutual-TLS handshake.",
        t.handshakes_rejected,
    );
    counter(
        &mut out,
        "countermesh_transport_streams_rejected_total",
        "Incoming streams dropped for exceeding the size limit or timing out.",
        t.streams_rejected,
    );
    gauge(
        &mut out,
        "countermesh_transport_queued_messages",
        "Messages queued for sending right now, over all peers.",
        t.queued,
    );

    let d = mesh.durability;
    gauge(
        &mut out,
        "countermesh_local_version",
        "This node's own version (one per changed counter per flush).",
        d.local_version,
    );
    gauge(
        &mut out,
        "countermesh_durable_version",
        "Highest own version in the data directory (0 without one).",
        d.durable_version,
    );
    counter(
        &mut out,
        "countermesh_commits_total",
        "Group commits written to the data directory.",
        d.commits,
    );
    counter(
        &mut out,
        "countermesh_commit_failures_total",
        "Group commits that failed (retried with the next one).",
        d.commit_failures,
    );
    counter(
        &mut out,
        "countermesh_commit_entries_total",
        "Entries written over all group commits.",
        d.entries_written,
    );
    gauge(
        &mut out,
        "countermesh_last_commit_duration_seconds",
        "Duration of the last group commit.",
        // Precision loss is irrelevant for a microsecond count shown in seconds.
        d.last_commit_micros as f64 / 1e6,
    );

    gauge(
        &mut out,
        "countermesh_strict_configured",
        "1 if a ZooKeeper connect string is configured.",
        u8::from(state.strict.configured()),
    );
    gauge(
        &mut out,
        "countermesh_strict_connected",
        "1 once the agent holds a ZooKeeper session.",
        u8::from(state.strict.connected()),
    );
    let strict = stats.strict();
    let mut ops = Family::new(
        &mut out,
        "countermesh_strict_ops_total",
        "counter",
        "Strict operations by op and outcome (ok, mismatch, unavailable, ambiguous, ...).",
    );
    for ((op, outcome), n) in &strict.outcomes {
        ops.sample(&[("op", op), ("outcome", outcome)], n);
    }
    let mut latency = Family::new(
        &mut out,
        "countermesh_strict_op_duration_seconds",
        "histogram",
        "Latency of strict operations, ZooKeeper round trips and retries included.",
    );
    for (op, histogram) in &strict.latency {
        let mut cumulative = 0;
        for (bound, n) in LATENCY_BUCKETS.iter().zip(histogram.buckets) {
            cumulative += n;
            latency.sample_named(
                "_bucket",
                &[("op", op), ("le", &bound.to_string())],
                cumulative,
            );
        }
        latency.sample_named("_bucket", &[("op", op), ("le", "+Inf")], histogram.count);
        latency.sample_named("_sum", &[("op", op)], histogram.sum_seconds);
        latency.sample_named("_count", &[("op", op)], histogram.count);
    }

    let mut http = Family::new(
        &mut out,
        "countermesh_http_requests_total",
        "counter",
        "HTTP responses by route template and status code.",
    );
    for ((route, status), n) in stats.http() {
        http.sample(&[("route", &route), ("status", &status.to_string())], n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape_label;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
