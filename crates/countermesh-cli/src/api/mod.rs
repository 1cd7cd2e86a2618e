//! The agent's HTTP API: the router and the middleware every request passes through
//! (request accounting here; the `Host` check, authentication and the JSON content-type
//! rule in [`guard`]). Handlers live in
//! [`eventual`], [`strict`], [`status_page`] and [`prometheus`]; what they answer is in
//! [`replies`] and [`error`].
//!
//! | route | answer |
//! |---|---|
//! | `POST /v1/counters/{name}/add[?durable=true]` `{"delta"[,"op_id"]}` (+ `Idempotency-Key`) | `{"name","delta","consistency":"eventual"}` (+ `"durable":true`) |
//! | `GET /v1/counters/{name}` | `{"name","value","consistency","contributors","members"}` |
//! | `POST /v1/counters:batch[?durable=true]` `{"adds":[{"name","delta"}][,"op_id"]}` (+ `Idempotency-Key`) | `{"applied","consistency"}` (+ `"durable":true`) |
//! | `GET /v1/counters?prefix=&limit=&after=` | `{"counters":[{"name","value","contributors"}],"consistency","truncated","next"}` |
//! | `GET /v1/members` | `{"self":{..},"members":[{"addr","actor","incarnation","state"}]}` |
//! | `POST /v1/strict/{name}/add` `{"delta"[,"op_id"]}` (+ `Idempotency-Key`) | `{"name","value","consistency":"strict"}` |
//! | `GET /v1/strict/{name}[?sequential=true]` | `{"name","value","consistency":"strict"}` |
//! | `POST /v1/strict/{name}/cas` `{"expected","new"[,"op_id"]}` (+ `Idempotency-Key`) | `{"name","swapped":true,"value"}` or 409 |
//! | `POST /v1/strict/{name}/set` `{"value"[,"op_id"]}` (+ `Idempotency-Key`) | `{"name","value"}` |
//! | `DELETE /v1/strict/{name}` | `{"name","deleted":true}` |
//! | `GET /v1/status`, `GET /`, `GET /metrics`, `GET /healthz` | status JSON, page, Prometheus, `ok` |
//! | `GET /status.js`, `GET /status.css` | the status page's script and style |
//!
//! Strict writes (add, cas, set) take an idempotency key, as the `Idempotency-Key`
//! header or the body's `op_id` field (400 `invalid_idempotency_key` if both are given
//! and differ, or the key is not 1 to 128 characters from `A-Za-z0-9-_.~`). A retry with
//! the same key returns the original answer (the add's original post-value, the cas's
//! original outcome) and applies nothing; the same key with another operation on the
//! same counter is 422 `idempotency_key_reused`. Keys are remembered in ZooKeeper for
//! the strict client's `receipt_max_age` (10 minutes) after the write; see
//! [`idempotency`].
//!
//! Eventual writes (add, batch) take the same key; the agent remembers it in memory for
//! `--idempotency-window` (at most `--idempotency-max-keys` keys, oldest evicted), so a
//! repeat is answered without adding again until then or until the agent restarts;
//! see `agent/idempotency.rs`.
//!
//! Eventual writes with `?durable=true` answer only after the mesh's flush, so every
//! add made before the answer is in the data directory (the promise of
//! `Mesh::flush`); the answer then carries `"durable": true`. `durable=false` is the
//! default; any other value is 400 `invalid_value`. An agent without `--data-dir`
//! refuses durable requests with 400 `durable_requires_data_dir` before adding
//! anything; a failed flush is 503 `not_durable` (the adds were applied in memory and
//! spread by gossip, but are not on this node's disk). A keyed repeat with
//! `durable=true` adds nothing and flushes again before it answers. See
//! `agent/durable.rs`.
//!
//! Strict counters are created at 0 by their first write (add, cas, set). Reading one
//! that does not exist answers 404 and creates nothing: a `GET` can be triggered by any
//! web page (`<img src>`), so it must not be able to fill ZooKeeper with znodes.
//!
//! Every POST must say `Content-Type: application/json` (415 otherwise), even without a
//! body: a browser cannot send that type cross-site without a CORS preflight, which the
//! agent never grants, so a web page cannot change counters through a local agent. A
//! page that rebinds its own DNS name to the agent is same-origin and escapes that rule,
//! so every route but `/healthz` also refuses a `Host` the agent does not answer to
//! (403 `host_not_allowed`; see [`guard`]).
//! Single operations take bodies up to [`body::MAX_SMALL_BODY_BYTES`]; batches up to
//! [`body::MAX_BODY_BYTES`], at most
//! [`MAX_CONCURRENT_BATCHES`](crate::agent::state::MAX_CONCURRENT_BATCHES) read and
//! parsed at once (a batch takes its slot before reading its body, so waiting batches
//! hold no body in memory). Every request must complete within `--request-timeout`
//! (408 otherwise); connections are capped and must send their headers within
//! `--header-timeout` (see `agent/server.rs`). Listings return at most
//! [`eventual::MAX_LIST_LIMIT`] counters per request and page with `after`.

mod body;
pub(crate) mod error;
mod eventual;
pub(crate) mod guard;
mod idempotency;
mod prometheus;
mod replies;
mod status_page;
mod strict;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use self::body::{MAX_BODY_BYTES, MAX_SMALL_BODY_BYTES};
use self::error::ApiError;
use crate::agent::state::AgentState;

type Shared = State<Arc<AgentState>>;

/// Every route of the agent, with the guards (all but `/healthz`: `Host`, token, JSON
/// content type), request accounting and the body limit.
pub(crate) fn router(state: Arc<AgentState>) -> Router {
    Router::new()
        .route("/", get(status_page::page))
        .route("/v1/status", get(status_page::status))
        .route("/metrics", get(prometheus::metrics))
        .route("/v1/counters", get(eventual::list))
        .route("/v1/counters:batch", post(eventual::batch))
        .route("/v1/counters/{name}", get(eventual::read))
        .route(
            "/v1/counters/{name}/add",
            post(eventual::add).layer(small_body()),
        )
        .route("/v1/members", get(eventual::members))
        .route("/v1/strict/{name}", get(strict::get).delete(strict::delete))
        .route(
            "/v1/strict/{name}/add",
            post(strict::add).layer(small_body()),
        )
        .route(
            "/v1/strict/{name}/cas",
            post(strict::cas).layer(small_body()),
        )
        .route(
            "/v1/strict/{name}/set",
            post(strict::set).layer(small_body()),
        )
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(guard::require_json))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard::authenticate,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard::check_host,
        ))
        // Static and data-free: no Host check or token (the page loads its script and
        // style before it can send a token).
        .route("/healthz", get(|| async { "ok" }))
        .route("/status.js", get(status_page::script))
        .route("/status.css", get(status_page::style))
        .layer(middleware::from_fn_with_state(state.clone(), deadline))
        .layer(middleware::from_fn_with_state(state.clone(), account))
        .layer(middleware::from_fn(guard::security_headers))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

fn small_body() -> DefaultBodyLimit {
    DefaultBodyLimit::max(MAX_SMALL_BODY_BYTES)
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

/// Answers 408 (and closes the connection) when a request, body upload included, takes
/// longer than `--request-timeout`: a client trickling its body in holds a task and a
/// buffer only that long.
async fn deadline(State(state): Shared, request: Request, next: Next) -> Response {
    match tokio::time::timeout(state.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let mut response = ApiError::request_timeout(state.request_timeout).into_response();
            // The rest of the body may still be on its way; do not read it.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
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
