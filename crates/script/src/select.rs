//! Selecting with a JSONPath, the same way everywhere (chain inputs and the scripts' `jsonpath`).

use jsonpath_rust::parser::model::JpQuery;
use serde_json::Value;

/// The single match; the matches as an array when several; `null` when none.
pub fn select(query: &JpQuery, value: &Value) -> Value {
    match jsonpath_rust::query::js_path_process(query, value) {
        Ok(found) if found.len() == 1 => found.into_iter().next().map(|m| m.val().clone()).unwrap_or(Value::Null),
        Ok(found) if found.is_empty() => Value::Null,
        Ok(found) => Value::Array(found.into_iter().map(|m| m.val().clone()).collect()),
        Err(_) => Value::Null,
    }
}
