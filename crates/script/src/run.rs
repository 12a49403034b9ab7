//! Running a compiled script with its inputs, its host and its deadline.

use std::{sync::Arc, time::Instant};

use rhai::{Dynamic, EvalAltResult, Scope};
use serde_json::Value;

use crate::{AST, HostError, ScriptEngine, ScriptHost, helpers::MARKER, host};

/// Why a script run did not produce a value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScriptError {
    /// `reject(status, message)`.
    #[error("rejected with {status}: {message}")]
    Rejected { status: u16, message: String },
    /// A `command(...)` that failed and was not caught.
    #[error("command failed: {}", .0.message)]
    Command(HostError),
    /// The script broke a limit: operations, call depth, sizes, or time.
    #[error("{0}")]
    Limit(String),
    /// Anything else: `throw`, a type error, an unknown function, a bad conversion.
    #[error("{0}")]
    Failed(String),
}

impl ScriptEngine {
    /// Runs `ast` with `inputs` as variables in scope. Blocks: call it off the async runtime's
    /// worker threads. `label` names the script in its log lines.
    pub fn run(
        &self,
        ast: &AST,
        inputs: &[(&str, &Value)],
        host: Arc<dyn ScriptHost>,
        label: &str,
    ) -> Result<Value, ScriptError> {
        let mut scope = Scope::new();
        for (name, value) in inputs {
            let value = rhai::serde::to_dynamic(value).map_err(|e| ScriptError::Failed(e.to_string()))?;
            scope.push_dynamic(name.to_string(), value);
        }
        let deadline = Instant::now() + self.limits().timeout;
        let run = host::enter(host::Run {
            host,
            deadline,
            label: label.to_owned(),
            revealed: Default::default(),
            operations: Default::default(),
        });
        let result = self.engine().eval_ast_with_scope::<Dynamic>(&mut scope, ast);
        let result = match result {
            Ok(value) => rhai::serde::from_dynamic::<Value>(&value)
                .map_err(|e| ScriptError::Failed(format!("the script's value is not JSON: {e}"))),
            Err(error) => Err(self.classify(*error)),
        };
        // The secrets it read stay out of what it answers and of why it failed.
        let revealed = host::with_run(|run| {
            run.host.finished(run.operations.get());
            run.revealed.take()
        })
        .unwrap_or_default();
        drop(run);
        if revealed.is_empty() {
            return result;
        }
        match result {
            Ok(mut value) => {
                host::redact_value(&mut value, &revealed);
                Ok(value)
            }
            Err(error) => Err(error.redacted(&revealed)),
        }
    }

    fn classify(&self, error: EvalAltResult) -> ScriptError {
        let limits = self.limits();
        match error {
            EvalAltResult::ErrorTooManyOperations(_) => {
                ScriptError::Limit(format!("the script exceeded its limit of {} operations", limits.max_operations))
            }
            EvalAltResult::ErrorTerminated(_, _) => {
                ScriptError::Limit(format!("the script ran longer than {} ms", limits.timeout.as_millis()))
            }
            EvalAltResult::ErrorStackOverflow(_) => {
                ScriptError::Limit(format!("the script nested calls deeper than {} levels", limits.max_call_levels))
            }
            EvalAltResult::ErrorDataTooLarge(what, _) => {
                let what = match what.as_str() {
                    "Length of string" => "the length of strings",
                    "Size of array/BLOB" => "the size of arrays",
                    "Size of object map" => "the size of object maps",
                    _ => "a size",
                };
                ScriptError::Limit(format!("the script exceeded the limit on {what}"))
            }
            EvalAltResult::ErrorRuntime(thrown, position) => {
                thrown_error(thrown).unwrap_or_else(|thrown| ScriptError::Failed(format!("{thrown}{}", at(position))))
            }
            EvalAltResult::ErrorInFunctionCall(name, _, inner, _) => match self.classify(*inner) {
                ScriptError::Failed(message) => ScriptError::Failed(format!("in function {name}: {message}")),
                other => other,
            },
            other => ScriptError::Failed(other.to_string()),
        }
    }
}

impl ScriptError {
    fn redacted(self, revealed: &[String]) -> Self {
        let redact = |text: String| host::redact_text(&text, revealed);
        match self {
            Self::Rejected { status, message } => Self::Rejected { status, message: redact(message) },
            Self::Command(HostError { status, message, errors }) => Self::Command(HostError {
                status,
                message: redact(message),
                errors: errors.into_iter().map(redact).collect(),
            }),
            Self::Limit(text) => Self::Limit(redact(text)),
            Self::Failed(text) => Self::Failed(redact(text)),
        }
    }
}

/// hookbus's own thrown maps become their errors; anything else is returned for the caller.
fn thrown_error(thrown: Dynamic) -> Result<ScriptError, Dynamic> {
    let Some(map) = thrown.read_lock::<rhai::Map>().map(|map| map.clone()) else { return Err(thrown) };
    let text = |key: &str| map.get(key).map(|v| v.to_string()).unwrap_or_default();
    let status = map.get("status").and_then(|v| v.as_int().ok()).and_then(|s| u16::try_from(s).ok()).unwrap_or(500);
    match map.get(MARKER).map(|v| v.to_string()).as_deref() {
        Some("reject") => Ok(ScriptError::Rejected { status, message: text("message") }),
        Some("command") => {
            let errors = map
                .get("errors")
                .and_then(|v| v.read_lock::<rhai::Array>().map(|a| a.iter().map(|e| e.to_string()).collect()))
                .unwrap_or_default();
            Ok(ScriptError::Command(HostError { status, message: text("message"), errors }))
        }
        _ => Err(thrown),
    }
}

fn at(position: rhai::Position) -> String {
    match (position.line(), position.position()) {
        (Some(line), Some(column)) => format!(" (line {line}, column {column})"),
        _ => String::new(),
    }
}
