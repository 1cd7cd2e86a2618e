//! The agent's HTTP API: routes, authentication, request accounting and the JSON
//! handlers for eventual and strict counters.
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/counters/{name}/add` `{"delta"}` | `{"name","delta","consistency":"eventual"}` |
//! | `GET /v1/counters/{name}` | `{"name","value","consistency","contributors","members"}` |
//! | `POST /v1/counters:batch` `{"adds":[{"name","delta"}]}` | `{"applied","consistency"}` |
//! | `GET /v1/counters?prefix=&limit=` | `{"counters":[{"name","value","contributors"}],"consistency","truncated"}` |
//! | `GET /v1/members` | `{"self":{..},"members":[{"addr","actor","incarnation","state"}]}` |
//! | `POST /v1/strict/{name}/add` `{"delta"}` | `{"name","value","consistency":"strict"}` |
//! | `GET /v1/strict/{name}[?sequential=true]` | `{"name","value","consistency":"strict"}` |
//! | `POST /v1/strict/{name}/cas` `{"expected","new"}` | `{"name","swapped":true,"value"}` or 409 |
//! | `POST /v1/strict/{name}/set` `{"value"}` | `{"name","value"}` |
//! | `DELETE /v1/strict/{name}` | `{"name","deleted":true}` |
//! | `GET /v1/status`, `GET /`, `GET /metrics`, `GET /healthz` | status JSON, page, Prometheus, `ok` |
//!
//! Strict counters are created at 0 by their first use through any route, `GET`
//! included, so reading a strict counter never answers 404.
//!
//! Every POST must say `Content-Type: application/json` (415 otherwise), even without a
//! body: a browser cannot send that type cross-site without a CORS preflight, which the
//! agent never grants, so a web page cannot change counters through a local agent.
//! Single operations take bodies up to [`MAX_SMALL_BODY_BYTES`]; batches up to
//! [`MAX_BODY_BYTES`], at most [`MAX_CONCURRENT_BATCHES`] parsed at once.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use countermesh::MemberState;
use countermesh_strict::Outcome;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::agent_state::AgentState;
use crate::api_error::ApiError;

/// The largest request body accepted (a batch of ~100,000 short adds fits).
pub(crate) const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// The largest body of a single-operation route.
pub(crate) const MAX_SMALL_BODY_BYTES: usize = 64 * 1024;
/// Batches parsed at the same time; parsing holds memory proportional to the body.
pub(crate) const MAX_CONCURRENT_BATCHES: usize = 2;
/// The most entries one batch may carry.
pub(crate) const MAX_BATCH_ENTRIES: usize = 100_000;
/// How many counters a listing returns unless `limit` says otherwise.
const DEFAULT_LIST_LIMIT: usize = 10_000;

type Shared = State<Arc<AgentState>>;

/// Every route of the agent, with authentication (all but `/healthz`), request
/// accounting and the body limit.
pub(crate) fn router(state: Arc<AgentState>) -> Router {
    Router::new()
        .route("/", get(crate::status_page::page))
        .route("/v1/status", get(crate::status_page::status))
        .route("/metrics", get(crate::prometheus::metrics))
        .route("/v1/counters", get(list))
        .route("/v1/counters:batch", post(batch))
        .route("/v1/counters/{name}", get(read))
        .route("/v1/counters/{name}/add", post(add).layer(small_body()))
        .route("/v1/members", get(members))
        .route("/v1/strict/{name}", get(strict_get).delete(strict_delete))
        .route(
            "/v1/strict/{name}/add",
            post(strict_add).layer(small_body()),
        )
        .route(
            "/v1/strict/{name}/cas",
            post(strict_cas).layer(small_body()),
        )
        .route(
            "/v1/strict/{name}/set",
            post(strict_set).layer(small_body()),
        )
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(require_json))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .route("/healthz", get(|| async { "ok" }))
        .layer(middleware::from_fn_with_state(state.clone(), account))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

fn small_body() -> DefaultBodyLimit {
    DefaultBodyLimit::max(MAX_SMALL_BODY_BYTES)
}

/// Refuses a POST that does not declare a JSON body (see the module docs: CSRF).
async fn require_json(request: Request, next: Next) -> Response {
    if request.method() == axum::http::Method::POST {
        let json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return ApiError::unsupported_media_type().into_response();
        }
    }
    next.run(request).await
}

async fn unknown_route() -> ApiError {
    ApiError::not_found(
        "no such route (the API lives under /v1/counters, /v1/strict, /v1/members and /v1/status)",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: "this route does not take that method".to_owned(),
        actual: None,
    }
}

/// Rejects requests without the bearer token when one is configured.
async fn authenticate(State(state): Shared, request: Request, next: Next) -> Response {
    let Some(token) = &state.token else {
        return next.run(request).await;
    };
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, credentials) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| credentials.trim().to_owned())
        });
    // A browser cannot set a header on a plain navigation, so the status page (and only
    // it) also takes the token from its query string; its script then sends the header.
    let from_query = || {
        (request.uri().path() == "/")
            .then(|| Query::<HashMap<String, String>>::try_from_uri(request.uri()).ok())
            .flatten()
            .and_then(|Query(mut query)| query.remove("token"))
    };
    let presented = bearer.or_else(from_query);
    if presented.is_some_and(|presented| same(presented.as_bytes(), token.as_bytes())) {
        return next.run(request).await;
    }
    let mut response = ApiError::unauthorized().into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Compares every byte whatever the first difference, so the time taken does not tell
/// a guesser how much of the token it got right.
fn same(presented: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(presented.len() != expected.len());
    for (i, &byte) in expected.iter().enumerate() {
        diff |= byte ^ presented.get(i).copied().unwrap_or(!byte);
    }
    diff == 0
}

/// Counts responses by route template (never the raw path, which would let clients
/// create unbounded label values) and status.
async fn account(State(state): Shared, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    state.stats.count_http(&route, response.status().as_u16());
    response
}

// ---- Request parsing ----

fn counter_name(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(name) = path.map_err(|e| ApiError::invalid_name(format!("bad counter name: {e}")))?;
    countermesh_core::validate_name(&name).map_err(|e| {
        ApiError::invalid_name(format!(
            "{e} (names are 1 to 256 bytes of UTF-8 without control characters)"
        ))
    })?;
    Ok(name)
}

fn strict_name(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(name) = path.map_err(|e| ApiError::invalid_name(format!("bad counter name: {e}")))?;
    countermesh_strict::validate_name(&name).map_err(|e| ApiError::from_strict(&e))?;
    Ok(name)
}

/// The body as a JSON object. An empty body is `{}` when every field is optional.
fn json_object(
    body: Result<Bytes, BytesRejection>,
    empty_is_ok: bool,
) -> Result<Map<String, Value>, ApiError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large(format!(
                "the request body is too large: single operations take at most \
                 {MAX_SMALL_BODY_BYTES} bytes, batches at most {MAX_BODY_BYTES} (split it)"
            ))
        } else {
            ApiError::invalid_body(format!("cannot read the request body: {rejection}"))
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return if empty_is_ok {
            Ok(Map::new())
        } else {
            Err(ApiError::invalid_body(
                "the request body is empty; expected a JSON object",
            ))
        };
    }
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ApiError::invalid_body(
            "the request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::invalid_body(format!(
            "the request body is not valid JSON: {e}"
        ))),
    }
}

/// An optional integer field: absent or `null` is `None`; anything but an integer in
/// the `i64` range is `invalid_value`.
fn optional_i64(
    object: &Map<String, Value>,
    field: &str,
    at: &str,
) -> Result<Option<i64>, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value.as_i64().map(Some).ok_or_else(|| {
            ApiError::invalid_value(format!(
                "{at}`{field}` must be an integer from -9223372036854775808 to \
                 9223372036854775807, not {value}"
            ))
        }),
    }
}

fn required_i64(object: &Map<String, Value>, field: &str) -> Result<i64, ApiError> {
    optional_i64(object, field, "")?
        .ok_or_else(|| ApiError::invalid_body(format!("missing field `{field}` (an integer)")))
}

// ---- Eventual counters ----

#[derive(Serialize)]
struct AddReply {
    name: String,
    delta: i64,
    consistency: &'static str,
}

/// A local atomic add: never waits for the network.
async fn add(
    State(state): Shared,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AddReply>, ApiError> {
    let name = counter_name(path)?;
    let object = json_object(body, true)?;
    let delta = optional_i64(&object, "delta", "")?.unwrap_or(1);
    state.counter(&name)?.add(delta);
    state.stats.count_adds(1);
    Ok(Json(AddReply {
        name,
        delta,
        consistency: "eventual",
    }))
}

#[derive(Serialize)]
struct ReadReply {
    name: String,
    value: i128,
    consistency: &'static str,
    contributors: usize,
    members: usize,
}

async fn read(
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

#[derive(Serialize)]
struct BatchReply {
    applied: usize,
    consistency: &'static str,
}

/// Many adds in one request. Every entry is validated before any is applied, so a bad
/// entry leaves every counter untouched.
async fn batch(
    State(state): Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<BatchReply>, ApiError> {
    // Parsing holds memory proportional to the body, so only a few batches parse at
    // once; the rest wait their turn.
    let _permit = state
        .batch_slots
        .acquire()
        .await
        .map_err(|_| ApiError::unavailable("the agent is stopping"))?;
    let object = json_object(body, false)?;
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
    // Open every handle before adding anything, so a counter that cannot be created
    // (the node's counter limit) fails the batch with nothing applied.
    let handles = parsed
        .iter()
        .map(|(name, _)| state.counter(name))
        .collect::<Result<Vec<_>, _>>()?;
    for (counter, (_, delta)) in handles.iter().zip(&parsed) {
        counter.add(*delta);
    }
    state.stats.count_adds(parsed.len() as u64);
    state
        .stats
        .batches
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(Json(BatchReply {
        applied: parsed.len(),
        consistency: "eventual",
    }))
}

#[derive(Serialize)]
struct ListEntry {
    name: String,
    value: i128,
    contributors: usize,
}

#[derive(Serialize)]
struct ListReply {
    counters: Vec<ListEntry>,
    consistency: &'static str,
    /// Whether more counters matched than `limit` allowed.
    truncated: bool,
}

async fn list(
    State(state): Shared,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<ListReply>, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::invalid_value(format!("bad query string: {e}")))?;
    let prefix = query.get("prefix").map_or("", String::as_str);
    let limit = match query.get("limit") {
        None => DEFAULT_LIST_LIMIT,
        Some(limit) => limit.parse::<usize>().map_err(|_| {
            ApiError::invalid_value(format!(
                "`limit` must be a non-negative integer, not {limit:?}"
            ))
        })?,
    };
    state.stats.count_read();
    let (page, truncated) = state.mesh.counters_page(prefix, limit);
    let counters = page
        .into_iter()
        .map(|c| ListEntry {
            name: c.name.to_string(),
            value: c.value,
            contributors: c.contributors,
        })
        .collect();
    Ok(Json(ListReply {
        counters,
        consistency: "eventual",
        truncated,
    }))
}

#[derive(Serialize)]
pub(crate) struct SelfReply {
    pub(crate) addr: String,
    pub(crate) actor: String,
    pub(crate) incarnation: u64,
}

#[derive(Serialize)]
pub(crate) struct MemberReply {
    pub(crate) addr: String,
    pub(crate) actor: String,
    pub(crate) incarnation: u64,
    pub(crate) state: &'static str,
}

#[derive(Serialize)]
struct MembersReply {
    #[serde(rename = "self")]
    me: SelfReply,
    members: Vec<MemberReply>,
}

pub(crate) fn self_reply(state: &AgentState) -> SelfReply {
    let id = state.mesh.id();
    SelfReply {
        addr: id.addr().to_string(),
        actor: id.actor().to_string(),
        incarnation: id.incarnation(),
    }
}

pub(crate) fn member_replies(state: &AgentState) -> Vec<MemberReply> {
    state
        .mesh
        .members()
        .into_iter()
        .map(|m| MemberReply {
            addr: m.addr.to_string(),
            actor: m.actor.to_string(),
            incarnation: m.incarnation,
            state: m.state.as_str(),
        })
        .collect()
}

async fn members(State(state): Shared) -> Json<MembersReply> {
    Json(MembersReply {
        me: self_reply(&state),
        members: member_replies(&state),
    })
}

// ---- Strict counters ----

#[derive(Serialize)]
struct StrictValueReply {
    name: String,
    value: i64,
    consistency: &'static str,
}

fn ok_label<T>(_: &T) -> &'static str {
    "ok"
}

async fn strict_add(
    State(state): Shared,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<StrictValueReply>, ApiError> {
    let name = strict_name(path)?;
    let object = json_object(body, true)?;
    let delta = optional_i64(&object, "delta", "")?.unwrap_or(1);
    let value = state
        .strict
        .run(&state.stats, "add", &name, ok_label, |c| async move {
            c.add(delta).await
        })
        .await?;
    Ok(Json(StrictValueReply {
        name,
        value,
        consistency: "strict",
    }))
}

async fn strict_get(
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
                "get_sequential",
                &name,
                ok_label,
                |c| async move { c.get_sequential().await },
            )
            .await?
    } else {
        state
            .strict
            .run(&state.stats, "get", &name, ok_label, |c| async move {
                c.get().await
            })
            .await?
    };
    Ok(Json(StrictValueReply {
        name,
        value,
        consistency: "strict",
    }))
}

#[derive(Serialize)]
struct CasReply {
    name: String,
    swapped: bool,
    value: i64,
}

async fn strict_cas(
    State(state): Shared,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<CasReply>, ApiError> {
    let name = strict_name(path)?;
    let object = json_object(body, false)?;
    let expected = required_i64(&object, "expected")?;
    let new = required_i64(&object, "new")?;
    let label = |outcome: &Outcome| match outcome {
        Outcome::Swapped => "ok",
        Outcome::Mismatch { .. } => "mismatch",
    };
    let outcome = state
        .strict
        .run(&state.stats, "cas", &name, label, |c| async move {
            c.compare_and_set(expected, new).await
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

#[derive(Serialize)]
struct SetReply {
    name: String,
    value: i64,
}

async fn strict_set(
    State(state): Shared,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SetReply>, ApiError> {
    let name = strict_name(path)?;
    let object = json_object(body, false)?;
    let value = required_i64(&object, "value")?;
    state
        .strict
        .run(&state.stats, "set", &name, ok_label, |c| async move {
            c.set(value).await
        })
        .await?;
    Ok(Json(SetReply { name, value }))
}

#[derive(Serialize)]
struct DeleteReply {
    name: String,
    deleted: bool,
}

async fn strict_delete(
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

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn token_comparison() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secreT", b"secret"));
        assert!(!same(b"secret2", b"secret"));
        assert!(!same(b"secre", b"secret"));
        assert!(!same(b"", b"secret"));
    }
}
