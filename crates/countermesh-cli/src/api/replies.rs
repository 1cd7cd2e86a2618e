//! Every JSON answer of the API, in one place, so handlers and the status page share
//! shapes without importing from each other.

use serde::Serialize;

use crate::agent::state::AgentState;

/// `POST /v1/counters/{name}/add`.
#[derive(Serialize)]
pub(crate) struct AddReply {
    pub(crate) name: String,
    pub(crate) delta: i64,
    pub(crate) consistency: &'static str,
    /// Present (and `true`) only for `?durable=true`, answered after the flush.
    #[serde(skip_serializing_if = "is_false")]
    pub(crate) durable: bool,
}

/// Leaves `durable` out of answers that did not ask for it, so they stay as they were.
// serde's `skip_serializing_if` passes a reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_false(value: &bool) -> bool {
    !*value
}

/// `GET /v1/counters/{name}`.
#[derive(Serialize)]
pub(crate) struct ReadReply {
    pub(crate) name: String,
    pub(crate) value: i128,
    pub(crate) consistency: &'static str,
    pub(crate) contributors: usize,
    pub(crate) members: usize,
}

/// `POST /v1/counters:batch`.
#[derive(Serialize)]
pub(crate) struct BatchReply {
    pub(crate) applied: usize,
    pub(crate) consistency: &'static str,
    /// As in [`AddReply`].
    #[serde(skip_serializing_if = "is_false")]
    pub(crate) durable: bool,
}

/// One counter of a listing (and of the status page).
#[derive(Serialize)]
pub(crate) struct CounterRow {
    pub(crate) name: String,
    pub(crate) value: i128,
    pub(crate) contributors: usize,
}

impl From<countermesh::CounterValue> for CounterRow {
    fn from(c: countermesh::CounterValue) -> Self {
        Self {
            name: c.name.to_string(),
            value: c.value,
            contributors: c.contributors,
        }
    }
}

/// `GET /v1/counters`.
#[derive(Serialize)]
pub(crate) struct ListReply {
    pub(crate) counters: Vec<CounterRow>,
    pub(crate) consistency: &'static str,
    /// Whether more counters matched than `limit` allowed.
    pub(crate) truncated: bool,
    /// When truncated, the `after` that asks for the next page (the last name here).
    pub(crate) next: Option<String>,
}

/// This node, in `/v1/members` and `/v1/status`.
#[derive(Serialize)]
pub(crate) struct SelfReply {
    pub(crate) addr: String,
    pub(crate) actor: String,
    pub(crate) incarnation: u64,
}

impl SelfReply {
    pub(crate) fn of(state: &AgentState) -> Self {
        let id = state.mesh.id();
        Self {
            addr: id.addr().to_string(),
            actor: id.actor().to_string(),
            incarnation: id.incarnation(),
        }
    }
}

/// A peer, in `/v1/members` and `/v1/status`.
#[derive(Serialize)]
pub(crate) struct MemberReply {
    pub(crate) addr: String,
    pub(crate) actor: String,
    pub(crate) incarnation: u64,
    pub(crate) state: &'static str,
}

impl MemberReply {
    /// Every peer this node knows, with its SWIM state.
    pub(crate) fn all(state: &AgentState) -> Vec<Self> {
        state
            .mesh
            .members()
            .into_iter()
            .map(|m| Self {
                addr: m.addr.to_string(),
                actor: m.actor.to_string(),
                incarnation: m.incarnation,
                state: m.state.as_str(),
            })
            .collect()
    }
}

/// `GET /v1/members`.
#[derive(Serialize)]
pub(crate) struct MembersReply {
    #[serde(rename = "self")]
    pub(crate) me: SelfReply,
    pub(crate) members: Vec<MemberReply>,
}

/// `POST /v1/strict/{name}/add` and `GET /v1/strict/{name}`.
#[derive(Serialize)]
pub(crate) struct StrictValueReply {
    pub(crate) name: String,
    pub(crate) value: i64,
    pub(crate) consistency: &'static str,
}

/// `POST /v1/strict/{name}/cas` when it swapped.
#[derive(Serialize)]
pub(crate) struct CasReply {
    pub(crate) name: String,
    pub(crate) swapped: bool,
    pub(crate) value: i64,
}

/// `POST /v1/strict/{name}/set`.
#[derive(Serialize)]
pub(crate) struct SetReply {
    pub(crate) name: String,
    pub(crate) value: i64,
}

/// `DELETE /v1/strict/{name}`.
#[derive(Serialize)]
pub(crate) struct DeleteReply {
    pub(crate) name: String,
    pub(crate) deleted: bool,
}

/// `GET /v1/status`, which the status page polls.
#[derive(Serialize)]
pub(crate) struct StatusReply {
    #[serde(rename = "self")]
    pub(crate) me: SelfReply,
    pub(crate) version: &'static str,
    pub(crate) uptime_seconds: u64,
    pub(crate) members: Vec<MemberReply>,
    /// Distinct counters this node knows (the list below is cut at 50).
    pub(crate) counter_count: usize,
    pub(crate) counters: Vec<CounterRow>,
    pub(crate) peer_lag: Vec<LagRow>,
    /// Adds per second over the last minute, oldest first, one sample per second.
    pub(crate) add_rate: Vec<u64>,
    pub(crate) adds_total: u64,
    pub(crate) reads_total: u64,
    pub(crate) gossip: GossipTotals,
    pub(crate) strict: StrictStatus,
}

/// One peer's replication lag in `/v1/status`.
#[derive(Serialize)]
pub(crate) struct LagRow {
    pub(crate) peer: String,
    pub(crate) versions_behind: u64,
}

/// Gossip byte totals in `/v1/status`.
#[derive(Serialize)]
pub(crate) struct GossipTotals {
    pub(crate) sent_bytes: u64,
    pub(crate) received_bytes: u64,
}

/// Strict mode's state in `/v1/status`.
#[derive(Serialize)]
pub(crate) struct StrictStatus {
    pub(crate) configured: bool,
    pub(crate) connected: bool,
    pub(crate) state: String,
}
