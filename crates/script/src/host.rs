//! What a script can ask of hookbus beyond pure functions: running a bus command.
//!
//! A script runs on a blocking thread; the run's host and deadline sit in thread-locals for its
//! duration, so that the engine, shared by every run, stays free of per-run state.

use std::{
    cell::{Cell, RefCell},
    sync::Arc,
    time::Instant,
};

use serde_json::Value;

/// A bus command's failure, as a script sees it (and as it surfaces if the script does not catch
/// it).
#[derive(Debug, Clone, PartialEq)]
pub struct HostError {
    pub status: u16,
    pub message: String,
    pub errors: Vec<String>,
}

/// Why a command called from a script gave no value.
#[derive(Debug, Clone, PartialEq)]
pub enum HostFailure {
    /// The command failed; the script may catch it.
    Command(HostError),
    /// The script's deadline passed while the command ran: the script stops there.
    Deadline,
}

impl From<HostError> for HostFailure {
    fn from(error: HostError) -> Self {
        Self::Command(error)
    }
}

/// Implemented by the router: runs a command for the script, blocking until it is done or until
/// `deadline`, the script's own, whichever comes first. A script's whole run, the commands it
/// waits for included, ends by its deadline.
pub trait ScriptHost: Send + Sync {
    fn command(&self, name: &str, fields: Value, deadline: Instant) -> Result<Value, HostFailure>;

    /// Takes a `log()` line (secrets already redacted); `false` leaves it to the log.
    fn log(&self, _line: &str) -> bool {
        false
    }

    /// Told how many operations the run took, when it ends.
    fn finished(&self, _operations: u64) {}

    /// The value of script secret `name`, for `secret(name)`. A host without secrets has none.
    fn secret(&self, name: &str, _deadline: Instant) -> Result<String, HostFailure> {
        Err(HostError {
            status: 404,
            message: "Secret not found".into(),
            errors: vec![format!("secret: no secret named '{name}'")],
        }
        .into())
    }
}

pub(crate) struct Run {
    pub host: Arc<dyn ScriptHost>,
    pub deadline: Instant,
    pub label: String,
    /// The secret values the run has read: never in its value, its errors or its log lines.
    pub revealed: RefCell<Vec<String>>,
    /// Operations so far.
    pub operations: Cell<u64>,
}

/// Replaces every secret value in `text` with `***`.
pub fn redact_text(text: &str, revealed: &[String]) -> String {
    revealed
        .iter()
        .filter(|value| !value.is_empty())
        .fold(text.to_owned(), |text, value| text.replace(value.as_str(), "***"))
}

/// As [`redact_text`], in every string (and member name) of `value`.
pub fn redact_value(value: &mut Value, revealed: &[String]) {
    match value {
        Value::String(text) => *text = redact_text(text, revealed),
        Value::Array(items) => items.iter_mut().for_each(|item| redact_value(item, revealed)),
        Value::Object(members) => {
            let taken = std::mem::take(members);
            for (name, mut member) in taken {
                redact_value(&mut member, revealed);
                members.insert(redact_text(&name, revealed), member);
            }
        }
        _ => {}
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Run>> = const { RefCell::new(None) };
}

/// Installs `run` for this thread until the guard drops.
pub(crate) fn enter(run: Run) -> RunGuard {
    CURRENT.with(|current| *current.borrow_mut() = Some(run));
    RunGuard
}

pub(crate) struct RunGuard;

impl Drop for RunGuard {
    fn drop(&mut self) {
        CURRENT.with(|current| *current.borrow_mut() = None);
    }
}

pub(crate) fn with_run<T>(f: impl FnOnce(&Run) -> T) -> Option<T> {
    CURRENT.with(|current| current.borrow().as_ref().map(f))
}
