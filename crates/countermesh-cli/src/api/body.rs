//! Request parsing shared by the handlers: counter names from the path, JSON object
//! bodies, integer fields. Every failure is an [`ApiError`] naming what was wrong.

use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::StatusCode;
use serde_json::{Map, Value};

use crate::api::error::ApiError;

/// The largest request body accepted (a batch of ~100,000 short adds fits).
pub(crate) const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// The largest body of a single-operation route.
pub(crate) const MAX_SMALL_BODY_BYTES: usize = 64 * 1024;

/// An eventual counter's name from the path, validated.
pub(crate) fn counter_name(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(name) = path.map_err(|e| ApiError::invalid_name(format!("bad counter name: {e}")))?;
    countermesh_core::validate_name(&name).map_err(|e| {
        ApiError::invalid_name(format!(
            "{e} (names are 1 to 256 bytes of UTF-8 without control characters)"
        ))
    })?;
    Ok(name)
}

/// A strict counter's name from the path, validated by the strict crate's rules.
pub(crate) fn strict_name(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(name) = path.map_err(|e| ApiError::invalid_name(format!("bad counter name: {e}")))?;
    countermesh_strict::validate_name(&name).map_err(|e| ApiError::from_strict(&e))?;
    Ok(name)
}

/// The body as a JSON object. An empty body is `{}` when every field is optional.
pub(crate) fn json_object(
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
pub(crate) fn optional_i64(
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

/// A required integer field.
pub(crate) fn required_i64(object: &Map<String, Value>, field: &str) -> Result<i64, ApiError> {
    optional_i64(object, field, "")?
        .ok_or_else(|| ApiError::invalid_body(format!("missing field `{field}` (an integer)")))
}
