//! Handlers for strict counters on ZooKeeper: add, get, compare-and-set, set, delete.
//!
//! The writes (add, cas, set) take an idempotency key (see [`idempotency`]): a retry
//! with the same key, from this agent or any other of the same ZooKeeper root, gets the
//! original answer and applies nothing, for the strict client's receipt lifetime
//! (`receipt_max_age`, 10 minutes).

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use countermesh_strict::Outcome;

use crate::agent::strict::Open;
use crate::api::Shared;
use crate::api::body::{json_object, optional_i64, required_i64, strict_name};
use crate::api::error::ApiError;
use crate::api::idempotency;
use crate::api::replies::{CasReply, DeleteReply, SetReply, StrictValueReply};

fn ok_label<T>(_: &T) -> &'static str {
    "ok"
}

pub(crate) async fn add(
    State(state): Shared,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<StrictValueReply>, ApiError> {
    let name = strict_name(path)?;
    let object = json_object(body, true)?;
    let delta = optional_i64(&object, "delta", "")?.unwrap_or(1);
    let key = idempotency::op_id(&headers, &object)?;
    let value = state
        .strict
        .run(
            &state.stats,
            ("add", Open::OrCreate),
            &name,
            ok_label,
            |c| {
                let key = key.clone();
                async move {
                    match key {
                        Some(key) => c.add_with_op_id(delta, &key).await,
                        None => c.add(delta).await,
                    }
                }
            },
        )
        .await?;
    Ok(Json(StrictValueReply {
        name,
        value,
        consistency: "strict",
    }))
}

pub(crate) async fn get(
    State(state): Shared,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<StrictValueReply>, ApiError> {
    let name = strict_name(path)?;
    let Query(query) =
        query.map_err(|e| ApiError::invalid_value(format!("bad query string: {e}")))?;
    let sequential = match query.get("sequential").map(String::as_str) {
        None | Some("false" | "0") => false,
        Some("true" | "1" | "") => true,
        Some(other) => {
            return Err(ApiError::invalid_value(format!(
                "`sequential` must be true or false, not {other:?}"
            )));
        }
    };
    let value = if sequential {
        state
            .strict
            .run(
                &state.stats,
                ("get_sequential", Open::Existing),
                &name,
                ok_label,
                |c| async move { c.get_sequential().await },
            )
            .await?
    } else {
        state
            .strict
            .run(
                &state.stats,
                ("get", Open::Existing),
                &name,
                ok_label,
                |c| async move { c.get().await },
            )
            .await?
    };
    Ok(Json(StrictValueReply {
        name,
        value,
        consistency: "strict",
    }))
}

pub(crate) async fn cas(
    State(state): Shared,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CasReply>, ApiError> {
    let name = strict_name(path)?;
    let object = json_object(body, false)?;
    let expected = required_i64(&object, "expected")?;
    let new = required_i64(&object, "new")?;
    let key = idempotency::op_id(&headers, &object)?;
    let label = |outcome: &Outcome| match outcome {
        Outcome::Swapped => "ok",
        Outcome::Mismatch { .. } => "mismatch",
    };
    let outcome = state
        .strict
        .run(&state.stats, ("cas", Open::OrCreate), &name, label, |c| {
            let key = key.clone();
            async move {
                match key {
                    Some(key) => c.compare_and_set_with_op_id(expected, new, &key).await,
                    None => c.compare_and_set(expected, new).await,
                }
            }
        })
        .await?;
    match outcome {
        Outcome::Swapped => Ok(Json(CasReply {
            name,
            swapped: true,
            value: new,
        })),
        Outcome::Mismatch { actual } => Err(ApiError::cas_mismatch(actual)),
    }
}

pub(crate) async fn set(
    State(state): Shared,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SetReply>, ApiError> {
    let name = strict_name(path)?;
    let object = json_object(body, false)?;
    let value = required_i64(&object, "value")?;
    let key = idempotency::op_id(&headers, &object)?;
    state
        .strict
        .run(
            &state.stats,
            ("set", Open::OrCreate),
            &name,
            ok_label,
            |c| {
                let key = key.clone();
                async move {
                    match key {
                        Some(key) => c.set_with_op_id(value, &key).await,
                        None => c.set(value).await,
                    }
                }
            },
        )
        .await?;
    Ok(Json(SetReply { name, value }))
}

pub(crate) async fn delete(
    State(state): Shared,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<DeleteReply>, ApiError> {
    let name = strict_name(path)?;
    state.strict.delete(&state.stats, &name).await?;
    Ok(Json(DeleteReply {
        name,
        deleted: true,
    }))
}
