//! Handlers for eventual counters and membership: add, read, batch, list, members.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::HeaderMap;
use countermesh::MemberState;
use serde_json::Value;

use crate::agent::durable::Via;
use crate::agent::idempotency::Once;
use crate::agent::state::AgentState;
use crate::agent::stats::Waiting;
use crate::api::Shared;
use crate::api::body::{counter_name, json_object, optional_i64};
use crate::api::error::ApiError;
use crate::api::idempotency;
use crate::api::replies::{
    AddReply, BatchReply, CounterRow, ListReply, MemberReply, MembersReply, ReadReply, SelfReply,
};

/// The most entries one batch may carry.
pub(crate) const MAX_BATCH_ENTRIES: usize = 100_000;
/// How many counters a listing returns unless `limit` says otherwise.
const DEFAULT_LIST_LIMIT: usize = 1_000;
/// The most counters one listing request may return: its rows are copied under the node
/// lock, so this bounds how long one request holds it beyond the scan.
pub(crate) const MAX_LIST_LIMIT: usize = 10_000;

/// A local atomic add: never waits for the network. With an idempotency key, a repeat
/// within the window is answered without adding (see `agent/idempotency.rs`). With
/// `?durable=true` the answer waits for the flush that puts the add on disk.
pub(crate) async fn add(
    State(state): Shared,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AddReply>, ApiError> {
    let name = counter_name(path)?;
    let durable = durable_query(query.map(|Query(query)| query))?;
    let object = json_object(body, true)?;
    let delta = optional_i64(&object, "delta", "")?.unwrap_or(1);
    let key = idempotency::op_id(&headers, &object)?;
    if durable {
        // Before the add: a request that cannot be made durable must change nothing.
        state.check_durable()?;
    }
    let counter = state.counter(&name)?;
    let fingerprint = |state: &AgentState| state.keys.fingerprint(("add", &name, delta));
    if once(&state, key.as_ref(), fingerprint, || counter.add(delta))? {
        state.stats.count_adds(1);
    }
    if durable {
        // Also on a repeat of a keyed request: the original may have been answered
        // without waiting for the disk, so this answer may only say "durable" after a
        // flush of its own (cheap when nothing is pending). `durable` is therefore not
        // part of the key's fingerprint.
        state.make_durable(Via::Http).await?;
    }
    Ok(Json(AddReply {
        name,
        delta,
        consistency: "eventual",
        durable,
    }))
}

/// The `durable` query parameter of eventual writes: `true` or `false` (the default
/// when absent); anything else is 400 rather than a guess, since a client that
/// misspelt `true` would otherwise believe its add durable.
fn durable_query(query: Result<HashMap<String, String>, QueryRejection>) -> Result<bool, ApiError> {
    let query = query.map_err(|e| ApiError::invalid_value(format!("bad query string: {e}")))?;
    match query.get("durable").map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::invalid_value(format!(
            "`durable` must be `true` or `false`, not {other:?}; nothing was added"
        ))),
    }
}

pub(crate) async fn read(
    State(state): Shared,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ReadReply>, ApiError> {
    let name = counter_name(path)?;
    state.stats.count_read();
    let value = state.mesh.value(&name).ok_or_else(|| {
        ApiError::not_found(format!("this node has never heard of counter {name:?}"))
    })?;
    let alive = state
        .mesh
        .members()
        .iter()
        .filter(|m| m.state == MemberState::Alive)
        .count();
    Ok(Json(ReadReply {
        name,
        value: value.value,
        consistency: "eventual",
        contributors: value.contributors,
        members: alive + 1,
    }))
}

/// Many adds in one request. Every entry is validated before any is applied, so a bad
/// entry leaves every counter untouched.
pub(crate) async fn batch(
    State(state): Shared,
    request: Request,
) -> Result<Json<BatchReply>, ApiError> {
    let headers = request.headers().clone();
    let durable = durable_query(
        Query::<HashMap<String, String>>::try_from_uri(request.uri()).map(|Query(query)| query),
    )?;
    if durable {
        // Before the body is read and anything added: such a request must change nothing.
        state.check_durable()?;
    }
    // Reading and parsing hold memory proportional to the body, so only a few batches
    // do it at once. The slot is taken before the body is read: a batch waiting for one
    // holds nothing but its connection, whatever size it announced.
    let waiting = Waiting::new(&state.stats.batches_waiting);
    let permit = state
        .batch_slots
        .acquire()
        .await
        .map_err(|_| ApiError::unavailable("the agent is stopping"))?;
    drop(waiting);
    let body = Bytes::from_request(request, &()).await;
    let object = json_object(body, false)?;
    let parsed = batch_entries(&object)?;
    let key = idempotency::op_id(&headers, &object)?;
    // Open every handle before adding anything, so a counter that cannot be created
    // (the node's counter limit) fails the batch with nothing applied.
    let handles = parsed
        .iter()
        .map(|(name, _)| state.counter(name))
        .collect::<Result<Vec<_>, _>>()?;
    let fingerprint = |state: &AgentState| state.keys.fingerprint(("batch", &parsed));
    let apply = || {
        for (counter, (_, delta)) in handles.iter().zip(&parsed) {
            counter.add(*delta);
        }
    };
    if once(&state, key.as_ref(), fingerprint, apply)? {
        state.stats.count_adds(parsed.len() as u64);
        state.stats.batches.fetch_add(1, Ordering::Relaxed);
    }
    let applied = parsed.len();
    // The parse slot bounds memory for bodies; waiting for the disk needs none, so other
    // batches may be parsed meanwhile.
    drop(permit);
    // As for a single add, a keyed repeat flushes too before it may say "durable".
    if durable {
        state.make_durable(Via::Http).await?;
    }
    Ok(Json(BatchReply {
        applied,
        consistency: "eventual",
        durable,
    }))
}

/// Runs `apply` unless `key` was already used: returns whether it ran. A repeat of the
/// same request within the window is `Ok(false)` (answered as the original was, since
/// an eventual write's answer follows from its request); the key with another request
/// is 422. The fingerprint is only computed when there is a key.
fn once(
    state: &AgentState,
    key: Option<&countermesh_strict::OpId>,
    fingerprint: impl FnOnce(&AgentState) -> crate::agent::idempotency::Fingerprint,
    apply: impl FnOnce(),
) -> Result<bool, ApiError> {
    let Some(key) = key else {
        apply();
        return Ok(true);
    };
    match state
        .keys
        .once(key.as_str(), fingerprint(state), Instant::now(), apply)
    {
        Once::Applied(()) => Ok(true),
        Once::Repeat => Ok(false),
        Once::Conflict => Err(ApiError::idempotency_key_reused(format!(
            "the idempotency key {:?} was already used on this agent within \
             --idempotency-window for a different eventual write (another route, counter \
             or delta); this request had no effect. Use a new key for a new operation",
            key.as_str()
        ))),
    }
}

/// The `(name, delta)` pairs of a batch body, every one validated.
fn batch_entries(object: &serde_json::Map<String, Value>) -> Result<Vec<(&str, i64)>, ApiError> {
    let adds = match object.get("adds") {
        Some(Value::Array(adds)) => adds,
        Some(_) => return Err(ApiError::invalid_body("`adds` must be an array")),
        None => {
            return Err(ApiError::invalid_body(
                "missing field `adds` (an array of {\"name\", \"delta\"})",
            ));
        }
    };
    if adds.len() > MAX_BATCH_ENTRIES {
        return Err(ApiError::payload_too_large(format!(
            "the batch has {} entries; the maximum is {MAX_BATCH_ENTRIES}",
            adds.len()
        )));
    }
    let mut parsed = Vec::with_capacity(adds.len());
    for (i, entry) in adds.iter().enumerate() {
        let at = format!("adds[{i}]: ");
        let Value::Object(entry) = entry else {
            return Err(ApiError::invalid_body(format!(
                "{at}each entry must be an object"
            )));
        };
        let name = match entry.get("name") {
            Some(Value::String(name)) => name,
            Some(_) => {
                return Err(ApiError::invalid_name(format!(
                    "{at}`name` must be a string"
                )));
            }
            None => return Err(ApiError::invalid_body(format!("{at}missing field `name`"))),
        };
        countermesh_core::validate_name(name)
            .map_err(|e| ApiError::invalid_name(format!("{at}{e}")))?;
        let delta = optional_i64(entry, "delta", &at)?.unwrap_or(1);
        parsed.push((name.as_str(), delta));
    }
    Ok(parsed)
}

/// One page of counters by name. The scan and the copy of at most `limit` rows happen
/// under the node lock; serialising them happens after it is released.
pub(crate) async fn list(
    State(state): Shared,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<ListReply>, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::invalid_value(format!("bad query string: {e}")))?;
    let prefix = query.get("prefix").map_or("", String::as_str);
    let after = query.get("after").map_or("", String::as_str);
    let limit = match query.get("limit") {
        None => DEFAULT_LIST_LIMIT,
        Some(limit) => limit
            .parse::<usize>()
            .ok()
            .filter(|limit| *limit <= MAX_LIST_LIMIT)
            .ok_or_else(|| {
                ApiError::invalid_value(format!(
                    "`limit` must be an integer from 0 to {MAX_LIST_LIMIT}, not {limit:?}; \
                     page through longer listings with `after` (the `next` of each answer)"
                ))
            })?,
    };
    state.stats.count_read();
    let (page, truncated) = state.mesh.counters_page_after(prefix, after, limit);
    let next = if truncated {
        page.last().map(|last| last.name.to_string())
    } else {
        None
    };
    Ok(Json(ListReply {
        counters: page.into_iter().map(CounterRow::from).collect(),
        consistency: "eventual",
        truncated,
        next,
    }))
}

pub(crate) async fn members(State(state): Shared) -> Json<MembersReply> {
    Json(MembersReply {
        me: SelfReply::of(&state),
        members: MemberReply::all(&state),
    })
}
