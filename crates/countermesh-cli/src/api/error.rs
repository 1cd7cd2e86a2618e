//! [`ApiError`]: every error the HTTP API answers, as a status code and a JSON body
//! `{"error": {"code", "message"}}` whose code scripts can match on.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use countermesh_strict::{StrictError, ZooKeeperErrorKind};
use serde::Serialize;

use crate::agent::durable::DurableError;
use crate::agent::state::OpenError;
use crate::agent::strict::StrictFailure;

/// An API error: a stable machine-readable code, a status and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    /// The value a compare-and-set found instead of the expected one.
    pub(crate) actual: Option<i64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    actual: Option<i64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            actual: None,
        }
    }

    pub(crate) fn invalid_name(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_name", message)
    }

    pub(crate) fn invalid_value(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_value", message)
    }

    pub(crate) fn invalid_body(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_body", message)
    }

    pub(crate) fn invalid_idempotency_key(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_idempotency_key", message)
    }

    /// A key reused for a different request: 422 as the IETF idempotency-key draft
    /// answers it, not 409, which clients (and the CLI's exit code 4) read as a CAS
    /// mismatch.
    pub(crate) fn idempotency_key_reused(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            message,
        )
    }

    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this agent requires `Authorization: Bearer <token>`",
        )
    }

    pub(crate) fn host_not_allowed(host: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            format!(
                "this agent does not answer to the Host {host:?}: it answers loopback names, \
                 its --http address and the names given with --allowed-host (a guard \
                 against DNS rebinding); start it with --allowed-host NAME to reach it by \
                 another name"
            ),
        )
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub(crate) fn cas_mismatch(actual: i64) -> Self {
        Self {
            actual: Some(actual),
            ..Self::new(
                StatusCode::CONFLICT,
                "cas_mismatch",
                format!("the counter holds {actual}, not the expected value; nothing changed"),
            )
        }
    }

    pub(crate) fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send request bodies as `Content-Type: application/json` (required on every \
             POST, also without a body, so a web page cannot post to the agent cross-site)",
        )
    }

    pub(crate) fn request_timeout(limit: std::time::Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request took longer than {limit:?} (--request-timeout), body included; \
                 an eventual add or batch was not applied unless it had reached its flush \
                 (durable=true: then it was applied in memory, durability unknown), a \
                 strict write may or may not have been (read the counter to know)"
            ),
        )
    }

    pub(crate) fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// Maps a strict-mode failure. Every variant except `Ambiguous` means the operation
    /// had no effect, and the message says so where a client might wonder.
    pub(crate) fn from_strict(error: &StrictError) -> Self {
        match error {
            StrictError::InvalidName { .. } => Self::invalid_name(error.to_string()),
            StrictError::NotFound { .. } => Self::not_found(error.to_string()),
            StrictError::Overflow { .. } => {
                Self::invalid_value(format!("{error}; the counter is unchanged"))
            }
            // Too much contention is retryable and had no effect: like an unreachable
            // quorum, the right reaction is to try again later, not to change the request.
            StrictError::Conflict { .. } => Self::unavailable(format!(
                "too much contention on this counter: {error}; no effect, retry later"
            )),
            StrictError::Unavailable { deadline } => Self::unavailable(format!(
                "ZooKeeper is unreachable: no quorum answered within {deadline:?}; the \
                 operation had no effect"
            )),
            StrictError::SessionExpired => Self::unavailable(
                "the ZooKeeper session expired; the operation had no effect, retry",
            ),
            StrictError::Ambiguous { op_id, deadline } => Self::unavailable(format!(
                "outcome unknown: the write was sent but ZooKeeper stayed unreachable for \
                 {deadline:?}, so it may or may not have taken effect (at most once; op id \
                 {op_id})"
            )),
            StrictError::OpIdReused { op_id } => Self::idempotency_key_reused(format!(
                "the idempotency key {op_id:?} was already used on this counter for a \
                 different operation (another kind or other values); this request had no \
                 effect and the earlier one keeps its result. Use a new key for a new \
                 operation"
            )),
            StrictError::InvalidOpId { .. } => Self::invalid_idempotency_key(error.to_string()),
            StrictError::Corrupt { .. } | StrictError::InvalidConfig(_) => {
                Self::internal(error.to_string())
            }
            // The agent's identity is not allowed to do this: only the operator can fix
            // it (credentials or ACLs), so it is neither the client's fault nor a bug.
            StrictError::ZooKeeper(zk)
                if matches!(
                    zk.kind(),
                    ZooKeeperErrorKind::NoAuth
                        | ZooKeeperErrorKind::AuthFailed
                        | ZooKeeperErrorKind::InvalidAcl
                ) =>
            {
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "zookeeper_not_authorized",
                    format!(
                        "ZooKeeper refused this agent: {zk}; the operation had no effect. \
                         The counters' ACLs need credentials this agent does not have: start \
                         it with --zookeeper-auth-file (or --zookeeper-tls-*) holding the \
                         identity that owns the root"
                    ),
                )
            }
            StrictError::ZooKeeper(_) => Self::internal(error.to_string()),
            _ => Self::internal(error.to_string()),
        }
    }
}

impl From<OpenError> for ApiError {
    fn from(error: OpenError) -> Self {
        match error {
            OpenError::InvalidName(message) => Self::invalid_name(message),
            error @ OpenError::Limit { .. } => {
                Self::new(StatusCode::FORBIDDEN, "counter_limit", error.to_string())
            }
            // The store's counter limit protects the node's memory; the client can do
            // nothing about it but wait for an operator.
            error @ OpenError::StoreFull { .. } => Self::unavailable(error.to_string()),
            OpenError::Mesh(message) => Self::internal(message),
        }
    }
}

impl From<DurableError> for ApiError {
    fn from(error: DurableError) -> Self {
        match error {
            // 400, not 409: the request asks for something this agent's configuration
            // can never give, so retrying it unchanged cannot help (409 suggests a state
            // that may change, and the CLI reads 409 as a CAS mismatch), and it is not
            // 503 either, which clients retry. Nothing was added.
            error @ DurableError::NoDataDir => Self::new(
                StatusCode::BAD_REQUEST,
                "durable_requires_data_dir",
                error.to_string(),
            ),
            // The disk (or a stopping mesh) is at fault, not the request: 503, and the
            // message says the add is in memory so a client does not simply re-add.
            error @ DurableError::Flush(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_durable",
                error.to_string(),
            ),
        }
    }
}

impl From<StrictFailure> for ApiError {
    fn from(failure: StrictFailure) -> Self {
        match failure {
            StrictFailure::NotConfigured => Self::unavailable(
                "strict mode is not configured on this agent: start it with --zookeeper \
                 HOST:PORT[/chroot] (or COUNTERMESH_ZOOKEEPER)",
            ),
            StrictFailure::NotConnected { connect, why } => Self::unavailable(format!(
                "ZooKeeper at {connect} is not reachable yet ({why}); the agent keeps \
                 trying in the background"
            )),
            StrictFailure::Op(error) => Self::from_strict(&error),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
                actual: self.actual,
            },
        };
        (self.status, Json(body)).into_response()
    }
}
