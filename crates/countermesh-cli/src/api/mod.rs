//! The agent's HTTP API: the router and the middleware every request passes through
//! (request accounting, authentication, the JSON content-type rule). Handlers live in
//! [`eventual`], [`strict`], [`status_page`] and [`prometheus`]; what they answer is in
//! [`replies`] and [`error`].
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
//! Single operations take bodies up to [`body::MAX_SMALL_BODY_BYTES`]; batches up to
//! [`body::MAX_BODY_BYTES`], at most
//! [`MAX_CONCURRENT_BATCHES`](crate::agent::state::MAX_CONCURRENT_BATCHES) parsed at once.

mod body;
pub(crate) mod error;
mod eventual;
mod prometheus;
mod replies;
mod status_page;
mod strict;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use self::body::{MAX_BODY_BYTES, MAX_SMALL_BODY_BYTES};
use self::error::ApiError;
use crate::agent::state::AgentState;

type Shared = State<Arc<AgentState>>;

/// Every route of the agent, with authentication (all but `/healthz`), request
/// accounting and the body limit.
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
