//! `GET /metrics`: the agent's and the mesh's figures in the Prometheus text
//! exposition format 0.0.4, written by hand (a few dozen lines beat a dependency).
//!
//! Names follow Prometheus conventions: a `countermesh_` prefix, base units (seconds,
//! bytes) in the name, `_total` for counters, one HELP and one TYPE line per family.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use countermesh::{MemberState, MeshMetrics, MessageKind};

use crate::agent::durable::Via;
use crate::agent::state::AgentState;
use crate::agent::stats::{DurableMetrics, Histogram, LATENCY_BUCKETS, StrictMetrics};

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(crate) async fn metrics(State(state): State<Arc<AgentState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&state))
}

/// Everything one exposition reads, gathered once so that every family describes the
/// same instant and each lock is taken once.
struct Snapshot<'a> {
    state: &'a AgentState,
    mesh: MeshMetrics,
    strict: StrictMetrics,
    durable: DurableMetrics,
    http: BTreeMap<(String, u16), u64>,
}

/// One metric family: its name, type, help text, and how to read its samples.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: fn(&Snapshot<'_>, &mut Samples<'_>),
}

/// Writes the samples of one family (after its HELP and TYPE lines).
struct Samples<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Samples<'_> {
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
        // Writing to a String cannot fail.
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

const COUNTER: &str = "counter";
const GAUGE: &str = "gauge";
const HISTOGRAM: &str = "histogram";

/// Every family, in exposition order.
const FAMILIES: &[Family] = &[
    Family {
        name: "countermesh_build_info",
        kind: GAUGE,
        help: "Always 1; labelled with the agent's version.",
        samples: |_, w| w.sample(&[("version", env!("CARGO_PKG_VERSION"))], 1),
    },
    Family {
        name: "countermesh_uptime_seconds",
        kind: GAUGE,
        help: "Seconds since the agent started.",
        samples: |s, w| w.sample(&[], s.state.started.elapsed().as_secs_f64()),
    },
    Family {
        name: "countermesh_adds_total",
        kind: COUNTER,
        help: "Eventual add operations accepted over HTTP (one per batch entry) and RESP (INCR, INCRBY, DECR, DECRBY).",
        samples: |s, w| w.sample(&[], s.state.stats.adds.load(Ordering::Relaxed)),
    },
    Family {
        name: "countermesh_reads_total",
        kind: COUNTER,
        help: "Eventual read requests served over HTTP (single counters and listings) and RESP (one per GET or MGET key).",
        samples: |s, w| w.sample(&[], s.state.stats.reads.load(Ordering::Relaxed)),
    },
    Family {
        name: "countermesh_batches_total",
        kind: COUNTER,
        help: "Batch add requests applied.",
        samples: |s, w| w.sample(&[], s.state.stats.batches.load(Ordering::Relaxed)),
    },
    Family {
        name: "countermesh_idempotency_keys",
        kind: GAUGE,
        help: "Idempotency keys of eventual writes remembered now (at most --idempotency-max-keys).",
        samples: |s, w| w.sample(&[], s.state.keys.len()),
    },
    Family {
        name: "countermesh_idempotency_hits_total",
        kind: COUNTER,
        help: "Eventual writes repeated with a remembered key: answered without adding again.",
        samples: |s, w| w.sample(&[], s.state.keys.hits()),
    },
    Family {
        name: "countermesh_idempotency_conflicts_total",
        kind: COUNTER,
        help: "Eventual writes refused because their key was used for a different request (422).",
        samples: |s, w| w.sample(&[], s.state.keys.conflicts()),
    },
    Family {
        name: "countermesh_idempotency_evictions_total",
        kind: COUNTER,
        help: "Idempotency keys forgotten before --idempotency-window ended because --idempotency-max-keys were remembered.",
        samples: |s, w| w.sample(&[], s.state.keys.evictions()),
    },
    Family {
        name: "countermesh_durable_requests_total",
        kind: COUNTER,
        help: "Durable requests (HTTP ?durable=true, RESP adds under --resp-durable and WAIT) by protocol and outcome (ok, or failed: applied in memory, not durable).",
        samples: |s, w| {
            for via in Via::ALL {
                for outcome in ["ok", "failed"] {
                    let n = s
                        .durable
                        .requests
                        .get(&(via.as_str(), outcome))
                        .copied()
                        .unwrap_or(0);
                    w.sample(&[("via", via.as_str()), ("outcome", outcome)], n);
                }
            }
        },
    },
    Family {
        name: "countermesh_durable_flush_duration_seconds",
        kind: HISTOGRAM,
        help: "How long durable requests waited for the data directory's flush.",
        samples: |s, w| histogram(w, &[], &s.durable.flush),
    },
    Family {
        name: "countermesh_http_batches_waiting",
        kind: GAUGE,
        help: "Batch requests waiting for a parse slot (their bodies not read yet).",
        samples: |s, w| w.sample(&[], s.state.stats.batches_waiting.load(Ordering::Relaxed)),
    },
    Family {
        name: "countermesh_counters",
        kind: GAUGE,
        help: "Distinct counters this node knows.",
        samples: |s, w| w.sample(&[], s.mesh.counters),
    },
    Family {
        name: "countermesh_actors",
        kind: GAUGE,
        help: "Distinct actors (nodes, past and present) that contributed to any counter.",
        samples: |s, w| w.sample(&[], s.mesh.actors),
    },
    Family {
        name: "countermesh_members",
        kind: GAUGE,
        help: "Mesh members by SWIM state as this node sees them, itself included (alive).",
        samples: members,
    },
    Family {
        name: "countermesh_gossip_rounds_total",
        kind: COUNTER,
        help: "Gossip rounds run.",
        samples: |s, w| w.sample(&[], s.mesh.rounds),
    },
    Family {
        name: "countermesh_gossip_messages_sent_total",
        kind: COUNTER,
        help: "Gossip messages sent, by kind.",
        samples: |s, w| gossip(&s.mesh.sent, w, |(_, messages, _)| *messages),
    },
    Family {
        name: "countermesh_gossip_sent_bytes_total",
        kind: COUNTER,
        help: "Gossip bytes sent, by kind.",
        samples: |s, w| gossip(&s.mesh.sent, w, |(_, _, bytes)| *bytes),
    },
    Family {
        name: "countermesh_gossip_messages_received_total",
        kind: COUNTER,
        help: "Gossip messages received, by kind.",
        samples: |s, w| gossip(&s.mesh.received, w, |(_, messages, _)| *messages),
    },
    Family {
        name: "countermesh_gossip_received_bytes_total",
        kind: COUNTER,
        help: "Gossip bytes received, by kind.",
        samples: |s, w| gossip(&s.mesh.received, w, |(_, _, bytes)| *bytes),
    },
    Family {
        name: "countermesh_gossip_messages_dropped_total",
        kind: COUNTER,
        help: "Received gossip messages dropped because they did not decode or were not acceptable.",
        samples: |s, w| w.sample(&[], s.mesh.messages_dropped),
    },
    Family {
        name: "countermesh_gossip_entries_merged_total",
        kind: COUNTER,
        help: "Remote counter entries merged into this node's state.",
        samples: |s, w| w.sample(&[], s.mesh.entries_merged),
    },
    Family {
        name: "countermesh_peer_lag_versions",
        kind: GAUGE,
        help: "This node's own versions each peer has not acknowledged yet (0 = caught up).",
        samples: |s, w| {
            for peer in &s.mesh.peer_lag {
                w.sample(&[("peer", &peer.addr.to_string())], peer.versions_behind);
            }
        },
    },
    Family {
        name: "countermesh_transport_dropped_total",
        kind: COUNTER,
        help: "Outbound messages dropped, by reason (anti-entropy resends what matters).",
        samples: |s, w| {
            w.sample(
                &[("reason", "queue_full")],
                s.mesh.transport.queue_full_drops,
            );
            w.sample(
                &[("reason", "send_failure")],
                s.mesh.transport.send_failures,
            );
        },
    },
    Family {
        name: "countermesh_transport_connections_total",
        kind: COUNTER,
        help: "QUIC connections established, by direction.",
        samples: |s, w| {
            let t = &s.mesh.transport;
            w.sample(&[("direction", "outgoing")], t.connections_dialed);
            w.sample(&[("direction", "incoming")], t.connections_accepted);
        },
    },
    Family {
        name: "countermesh_transport_dial_failures_total",
        kind: COUNTER,
        help: "Outgoing connection attempts that failed (certificate rejections included).",
        samples: |s, w| w.sample(&[], s.mesh.transport.dial_failures),
    },
    Family {
        name: "countermesh_transport_handshakes_rejected_total",
        kind: COUNTER,
        help: "Incoming connections refused during the mutual-TLS handshake.",
        samples: |s, w| w.sample(&[], s.mesh.transport.handshakes_rejected),
    },
    Family {
        name: "countermesh_transport_streams_rejected_total",
        kind: COUNTER,
        help: "Incoming streams dropped for exceeding the size limit or timing out.",
        samples: |s, w| w.sample(&[], s.mesh.transport.streams_rejected),
    },
    Family {
        name: "countermesh_transport_queued_messages",
        kind: GAUGE,
        help: "Messages queued for sending right now, over all peers.",
        samples: |s, w| w.sample(&[], s.mesh.transport.queued),
    },
    Family {
        name: "countermesh_local_version",
        kind: GAUGE,
        help: "This node's own version (one per changed counter per flush).",
        samples: |s, w| w.sample(&[], s.mesh.durability.local_version),
    },
    Family {
        name: "countermesh_durable_version",
        kind: GAUGE,
        help: "Highest own version in the data directory (0 without one).",
        samples: |s, w| w.sample(&[], s.mesh.durability.durable_version),
    },
    Family {
        name: "countermesh_commits_total",
        kind: COUNTER,
        help: "Group commits written to the data directory.",
        samples: |s, w| w.sample(&[], s.mesh.durability.commits),
    },
    Family {
        name: "countermesh_commit_failures_total",
        kind: COUNTER,
        help: "Group commits that failed (retried with the next one).",
        samples: |s, w| w.sample(&[], s.mesh.durability.commit_failures),
    },
    Family {
        name: "countermesh_commit_entries_total",
        kind: COUNTER,
        help: "Entries written over all group commits.",
        samples: |s, w| w.sample(&[], s.mesh.durability.entries_written),
    },
    Family {
        name: "countermesh_last_commit_duration_seconds",
        kind: GAUGE,
        help: "Duration of the last group commit.",
        // Precision loss is irrelevant for a microsecond count shown in seconds.
        samples: |s, w| w.sample(&[], s.mesh.durability.last_commit_micros as f64 / 1e6),
    },
    Family {
        name: "countermesh_limit_refusals_total",
        kind: COUNTER,
        help: "Counters, actors or entries refused by a store limit (raise --max-counters or the library's Limits).",
        samples: |s, w| {
            for (kind, n) in countermesh::LimitKind::ALL
                .iter()
                .zip(s.mesh.refusals.limit_refusals)
            {
                w.sample(&[("limit", kind.as_str())], n);
            }
        },
    },
    Family {
        name: "countermesh_entries_conflicting_total",
        kind: COUNTER,
        help: "Remote entries refused because another counter held their actor's version.",
        samples: |s, w| w.sample(&[], s.mesh.refusals.entries_conflicting),
    },
    Family {
        name: "countermesh_own_runs_refused_total",
        kind: COUNTER,
        help: "Runs refused for claiming versions of this node's own actor it never issued.",
        samples: |s, w| w.sample(&[], s.mesh.refusals.own_runs_refused),
    },
    Family {
        name: "countermesh_internal_errors_total",
        kind: COUNTER,
        help: "Messages the node built but could not encode (bugs).",
        samples: |s, w| w.sample(&[], s.mesh.refusals.internal_errors),
    },
    Family {
        name: "countermesh_task_failures_total",
        kind: COUNTER,
        help: "Runtime tasks that died (the mesh fails at the first).",
        samples: |s, w| w.sample(&[], s.mesh.refusals.task_failures),
    },
    Family {
        name: "countermesh_prunes_total",
        kind: COUNTER,
        help: "Sinks this node made as the pruner of departed actors.",
        samples: |s, w| w.sample(&[], s.mesh.pruning.prunes),
    },
    Family {
        name: "countermesh_sinks_completed_total",
        kind: COUNTER,
        help: "Sinks completed here (departed actors folded), made here or received.",
        samples: |s, w| w.sample(&[], s.mesh.pruning.sinks_completed),
    },
    Family {
        name: "countermesh_actors_pruned_total",
        kind: COUNTER,
        help: "Departed actors whose entries this node dropped because a completed sink covers them.",
        samples: |s, w| w.sample(&[], s.mesh.pruning.actors_pruned),
    },
    Family {
        name: "countermesh_entries_pruned_refused_total",
        kind: COUNTER,
        help: "Entries refused because their actor was pruned (a node partitioned longer than after_down).",
        samples: |s, w| w.sample(&[], s.mesh.pruning.entries_refused),
    },
    Family {
        name: "countermesh_tombstones",
        kind: GAUGE,
        help: "Pruned actors remembered (one small record each).",
        samples: |s, w| w.sample(&[], s.mesh.pruning.tombstones),
    },
    Family {
        name: "countermesh_strict_configured",
        kind: GAUGE,
        help: "1 if a ZooKeeper connect string is configured.",
        samples: |s, w| w.sample(&[], u8::from(s.state.strict.configured())),
    },
    Family {
        name: "countermesh_strict_connected",
        kind: GAUGE,
        help: "1 once the agent holds a ZooKeeper session.",
        samples: |s, w| w.sample(&[], u8::from(s.state.strict.connected())),
    },
    Family {
        name: "countermesh_strict_ops_total",
        kind: COUNTER,
        help: "Strict operations by op and outcome (ok, mismatch, unavailable, ambiguous, ...).",
        samples: |s, w| {
            for ((op, outcome), n) in &s.strict.outcomes {
                w.sample(&[("op", op), ("outcome", outcome)], n);
            }
        },
    },
    Family {
        name: "countermesh_strict_op_duration_seconds",
        kind: HISTOGRAM,
        help: "Latency of strict operations, ZooKeeper round trips and retries included.",
        samples: strict_latency,
    },
    Family {
        name: "countermesh_resp_connections_total",
        kind: COUNTER,
        help: "RESP (--resp) connections accepted.",
        samples: |s, w| {
            w.sample(
                &[],
                s.state.stats.resp.connections_total.load(Ordering::Relaxed),
            );
        },
    },
    Family {
        name: "countermesh_resp_connections",
        kind: GAUGE,
        help: "RESP connections open now (at most --resp-max-connections).",
        samples: |s, w| {
            w.sample(
                &[],
                s.state.stats.resp.connections_open.load(Ordering::Relaxed),
            );
        },
    },
    Family {
        name: "countermesh_resp_commands_total",
        kind: COUNTER,
        help: "RESP commands run, by command (unknown names as `unknown`).",
        samples: |s, w| resp_slots(&s.state.stats.resp.commands, w),
    },
    Family {
        name: "countermesh_resp_command_errors_total",
        kind: COUNTER,
        help: "RESP commands answered with an error, by command.",
        samples: |s, w| resp_slots(&s.state.stats.resp.errors, w),
    },
    Family {
        name: "countermesh_resp_protocol_errors_total",
        kind: COUNTER,
        help: "RESP connections closed because their stream was not valid RESP or broke a size limit.",
        samples: |s, w| {
            w.sample(
                &[],
                s.state.stats.resp.protocol_errors.load(Ordering::Relaxed),
            );
        },
    },
    Family {
        name: "countermesh_http_requests_total",
        kind: COUNTER,
        help: "HTTP responses by route template and status code.",
        samples: |s, w| {
            for ((route, status), n) in &s.http {
                w.sample(&[("route", route), ("status", &status.to_string())], n);
            }
        },
    },
];

/// One sample per RESP command slot, labelled with the command's name.
fn resp_slots(slots: &[std::sync::atomic::AtomicU64], w: &mut Samples<'_>) {
    for (slot, n) in slots.iter().enumerate() {
        w.sample(
            &[("command", crate::agent::stats::RespStats::slot_name(slot))],
            n.load(Ordering::Relaxed),
        );
    }
}

fn members(s: &Snapshot<'_>, w: &mut Samples<'_>) {
    for member_state in [MemberState::Alive, MemberState::Suspect, MemberState::Down] {
        let peers = s
            .mesh
            .members
            .iter()
            .filter(|m| m.state == member_state)
            .count();
        let total = peers + usize::from(member_state == MemberState::Alive);
        w.sample(&[("state", member_state.as_str())], total);
    }
}

/// One gossip family: `pick` chooses messages or bytes from each `(kind, messages,
/// bytes)` row.
fn gossip(
    rows: &[(MessageKind, u64, u64)],
    w: &mut Samples<'_>,
    pick: fn(&(MessageKind, u64, u64)) -> u64,
) {
    for row in rows {
        w.sample(&[("kind", row.0.as_str())], pick(row));
    }
}

/// The strict latency histograms, one per op.
fn strict_latency(s: &Snapshot<'_>, w: &mut Samples<'_>) {
    for (op, h) in &s.strict.latency {
        histogram(w, &[("op", op)], h);
    }
}

/// One histogram's `_bucket` (cumulative, as Prometheus expects), `_sum` and `_count`
/// samples, each with `labels`.
fn histogram(w: &mut Samples<'_>, labels: &[(&str, &str)], h: &Histogram) {
    let mut cumulative = 0;
    for (bound, n) in LATENCY_BUCKETS.iter().zip(h.buckets) {
        cumulative += n;
        let bound = bound.to_string();
        let mut with_le = labels.to_vec();
        with_le.push(("le", &bound));
        w.sample_named("_bucket", &with_le, cumulative);
    }
    let mut with_le = labels.to_vec();
    with_le.push(("le", "+Inf"));
    w.sample_named("_bucket", &with_le, h.count);
    w.sample_named("_sum", labels, h.sum_seconds);
    w.sample_named("_count", labels, h.count);
}

/// The whole exposition.
pub(crate) fn render(state: &AgentState) -> String {
    let snapshot = Snapshot {
        state,
        mesh: state.mesh.metrics(),
        strict: state.stats.strict(),
        durable: state.stats.durable(),
        http: state.stats.http(),
    };
    let mut out = String::with_capacity(8 * 1024);
    for family in FAMILIES {
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
        let mut samples = Samples {
            out: &mut out,
            name: family.name,
        };
        (family.samples)(&snapshot, &mut samples);
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
