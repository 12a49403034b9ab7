//! Fields a command does not have.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::CommandError;

/// The fields of a command body that the command does not have. serde's `deny_unknown_fields`
/// does not work beside a `#[serde(flatten)]` group (the owner, a configuration's fields), so such
/// commands collect the rest here (`#[serde(flatten)]`, `#[schemars(skip)]`) and refuse it by name.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct UnknownFields(BTreeMap<String, Value>);

impl UnknownFields {
    /// One message per unknown field, `name: unknown field \`name\``, as serde words it.
    pub fn problems(&self) -> Vec<String> {
        self.0.keys().map(|name| format!("{name}: unknown field `{name}`")).collect()
    }

    /// A 422 naming every unknown field, if there is one.
    pub fn refuse(&self) -> Result<(), CommandError> {
        if self.0.is_empty() { Ok(()) } else { Err(CommandError::Validation(self.problems())) }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}
