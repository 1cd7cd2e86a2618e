//! The idempotency key of a write: the `Idempotency-Key` header or the body's `op_id`
//! field, validated and turned into the strict client's [`OpId`]. Strict writes pass it
//! to ZooKeeper as their op-id; eventual writes use the same format, remembered by the
//! agent itself (`agent/idempotency.rs`).
//!
//! The key maps to the op-id **unchanged**. [`OpId`]'s rules (1 to 128 bytes of ASCII
//! letters, digits, `-`, `_`, `.`, `~`) are already a length bound and a charset safe
//! inside a znode name, and they admit the usual key formats (UUIDs, ULIDs, hex,
//! unpadded base64url). So no hash is needed, the mapping is deterministic across
//! agents, restarts and builds, and a program using the strict library directly can
//! retry, with the same op-id, a write an HTTP client started (keys are per counter).
//! Anything else is refused with 400 rather than rewritten, so two different keys can
//! never name one operation.
//!
//! The header may also be given in the structured-field form of the IETF draft
//! (`Idempotency-Key: "8e03978e-..."`): one pair of surrounding double quotes is removed.

use axum::http::HeaderMap;
use countermesh_strict::OpId;
use serde_json::{Map, Value};

use crate::api::error::ApiError;

/// The request header that carries the key.
pub(crate) const HEADER: &str = "idempotency-key";
/// The body field that carries the key (for clients that cannot set headers).
pub(crate) const FIELD: &str = "op_id";

/// The request's idempotency key as an op-id: `None` when neither the header nor the
/// `op_id` field is present. Both may be given only if they are equal.
pub(crate) fn op_id(
    headers: &HeaderMap,
    body: &Map<String, Value>,
) -> Result<Option<OpId>, ApiError> {
    let header = from_header(headers)?;
    let field = from_body(body)?;
    match (header, field) {
        (Some(header), Some(field)) if header != field => {
            Err(ApiError::invalid_idempotency_key(format!(
                "the Idempotency-Key header ({header:?}) and the body's `op_id` ({field:?}) \
                 differ; send the key once, or the same key in both"
            )))
        }
        (header, field) => header.or(field).map(|key| parse(&key)).transpose(),
    }
}

fn from_header(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut values = headers.get_all(HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::invalid_idempotency_key(
            "more than one Idempotency-Key header; send exactly one",
        ));
    }
    let text = value.to_str().map_err(|_| {
        ApiError::invalid_idempotency_key("the Idempotency-Key header is not visible ASCII")
    })?;
    let text = text.trim();
    // The draft standard sends the key as a structured-field string ("..."); the
    // characters allowed inside never need escaping, so removing the quotes is enough.
    let unquoted = text
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(text);
    Ok(Some(unquoted.to_owned()))
}

fn from_body(body: &Map<String, Value>) -> Result<Option<String>, ApiError> {
    match body.get(FIELD) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(key)) => Ok(Some(key.clone())),
        Some(other) => Err(ApiError::invalid_idempotency_key(format!(
            "`{FIELD}` must be a string, not {other}"
        ))),
    }
}

fn parse(key: &str) -> Result<OpId, ApiError> {
    OpId::new(key).map_err(|_| {
        // The strict crate's message would echo the key in Rust debug syntax; this one
        // states the rule in HTTP terms.
        let shown: String = key.chars().take(40).collect();
        ApiError::invalid_idempotency_key(format!(
            "invalid idempotency key {shown:?}: use 1 to {} characters from A-Z, a-z, 0-9, \
             '-', '_', '.', '~' (a UUID or ULID fits)",
            OpId::MAX_LEN
        ))
    })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde_json::json;

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(HEADER, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn body(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(object) => object,
            _ => Map::new(),
        }
    }

    fn key(headers: &HeaderMap, object: Value) -> Result<Option<String>, ApiError> {
        op_id(headers, &body(object)).map(|id| id.map(|id| id.to_string()))
    }

    #[test]
    fn the_key_maps_to_the_op_id_unchanged() {
        let uuid = "3f1c2a9e-7b4d-4c1a-9f0e-2d5b8c7a6e10";
        assert_eq!(key(&headers(&[uuid]), json!({})), Ok(Some(uuid.to_owned())));
        let quoted = format!("\"{uuid}\"");
        assert_eq!(
            key(&headers(&[&quoted]), json!({})),
            Ok(Some(uuid.to_owned()))
        );
        assert_eq!(
            key(&HeaderMap::new(), json!({"op_id": uuid})),
            Ok(Some(uuid.to_owned()))
        );
        assert_eq!(
            key(&headers(&[uuid]), json!({"op_id": uuid})),
            Ok(Some(uuid.to_owned()))
        );
        assert_eq!(key(&HeaderMap::new(), json!({"op_id": null})), Ok(None));
        assert_eq!(key(&HeaderMap::new(), json!({})), Ok(None));
    }

    #[test]
    fn bad_or_conflicting_keys_are_400() {
        let long = "k".repeat(OpId::MAX_LEN + 1);
        for (headers, object) in [
            (headers(&["a"]), json!({"op_id": "b"})),
            (headers(&["a", "a"]), json!({})),
            (headers(&["with space"]), json!({})),
            (headers(&["a/b"]), json!({})),
            (headers(&[""]), json!({})),
            (headers(&["\"\""]), json!({})),
            (headers(&[&long]), json!({})),
            (HeaderMap::new(), json!({"op_id": 7})),
            (HeaderMap::new(), json!({"op_id": "a:b"})),
        ] {
            let error = key(&headers, object.clone()).unwrap_err();
            assert_eq!(
                (error.status.as_u16(), error.code),
                (400, "invalid_idempotency_key"),
                "{headers:?} {object}"
            );
        }
        let mut binary = HeaderMap::new();
        binary.insert(HEADER, HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        assert!(key(&binary, json!({})).is_err());
    }
}
