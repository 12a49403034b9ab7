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

/// Whether `source` names `identifier` as a whole word anywhere (code, comment or string alike).
/// A script can read a scope variable only by naming it (there is no `eval`), so a variable it
/// never names need not be built: the router skips inputs a script cannot read.
pub fn mentions(source: &str, identifier: &str) -> bool {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    source.match_indices(identifier).any(|(at, _)| {
        let before = source[..at].chars().next_back();
        let after = source[at + identifier.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

#[cfg(test)]
mod tests {
    use super::mentions;

    #[test]
    fn mentions_finds_whole_words_only() {
        assert!(mentions("let x = body.amount;", "body"));
        assert!(mentions("body", "body"));
        assert!(mentions("f(request)", "request"));
        assert!(!mentions("let raw_body = 1; let nobody = 2; let bodyguard = 3;", "body"));
        assert!(mentions("let x = raw_body;", "raw_body"));
        assert!(!mentions("let x = headers;", "request"));
    }
}
