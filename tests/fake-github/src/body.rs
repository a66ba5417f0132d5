//! Reading JSON request bodies the way GitHub does: 400 when the body is not
//! JSON, 422 ("Invalid request") when a field is missing or has the wrong type.

use serde_json::{Map, Value};

use crate::api_error::ApiError;

fn invalid(msg: String) -> ApiError {
    ApiError::validation_simple(format!("Invalid request.\n\n{msg}"))
}

/// The body as a JSON object. An empty body counts as `{}` only when
/// `allow_empty` (endpoints whose body is optional).
pub(crate) fn object(body: &[u8], allow_empty: bool) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        if allow_empty {
            return Ok(Map::new());
        }
        return Err(ApiError::new(400, "Problems parsing JSON"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(invalid(format!("{other} is not an object."))),
        Err(_) => Err(ApiError::new(400, "Problems parsing JSON")),
    }
}

fn missing(field: &str) -> ApiError {
    invalid(format!("\"{field}\" wasn't supplied."))
}

fn wrong(field: &str, v: &Value, what: &str) -> ApiError {
    invalid(format!("For 'properties/{field}', {v} is not {what}."))
}

pub(crate) fn req_str(m: &Map<String, Value>, field: &str) -> Result<String, ApiError> {
    opt_str(m, field)?.ok_or_else(|| missing(field))
}

pub(crate) fn opt_str(m: &Map<String, Value>, field: &str) -> Result<Option<String>, ApiError> {
    match m.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(wrong(field, v, "a string")),
    }
}

pub(crate) fn req_u64(m: &Map<String, Value>, field: &str) -> Result<u64, ApiError> {
    match m.get(field) {
        None => Err(missing(field)),
        Some(v) => v.as_u64().ok_or_else(|| wrong(field, v, "an integer")),
    }
}

pub(crate) fn opt_bool(m: &Map<String, Value>, field: &str) -> Result<Option<bool>, ApiError> {
    match m.get(field) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(wrong(field, v, "a boolean")),
    }
}

pub(crate) fn req_str_array(m: &Map<String, Value>, field: &str) -> Result<Vec<String>, ApiError> {
    opt_str_array(m, field)?.ok_or_else(|| missing(field))
}

pub(crate) fn opt_str_array(
    m: &Map<String, Value>,
    field: &str,
) -> Result<Option<Vec<String>>, ApiError> {
    match m.get(field) {
        None => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(wrong(&format!("{field}/items"), other, "a string")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(v) => Err(wrong(field, v, "an array")),
    }
}

pub(crate) fn req_u64_array(m: &Map<String, Value>, field: &str) -> Result<Vec<u64>, ApiError> {
    opt_u64_array(m, field)?.ok_or_else(|| missing(field))
}

pub(crate) fn opt_u64_array(
    m: &Map<String, Value>,
    field: &str,
) -> Result<Option<Vec<u64>>, ApiError> {
    match m.get(field) {
        None => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| wrong(&format!("{field}/items"), v, "an integer"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(v) => Err(wrong(field, v, "an array")),
    }
}
