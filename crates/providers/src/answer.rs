//! The answer to the provider, saying what became of each notification.
//!
//! A notification that could not be processed (the status API did not answer, publishing failed)
//! makes the whole answer an error, so that the provider sends the request again; what this
//! request did accept is a duplicate then, acknowledged without being published twice.

use hookbus_core::{CommandError, Reply};
use serde_json::{Map, Value, json};

use crate::{
    Route,
    outcome::{Item, Outcome},
};

pub(crate) fn answer(
    route: Route,
    body: &Value,
    items: &[Item],
    forwarded: Option<Value>,
) -> Result<Reply, CommandError> {
    let failures: Vec<(usize, &Item, &CommandError)> = items
        .iter()
        .enumerate()
        .filter_map(|(index, item)| match &item.outcome {
            Some(Outcome::Failed(error)) => Some((index, item, error)),
            _ => None,
        })
        .collect();
    if let Some((_, _, first)) = failures.first() {
        if !body.is_array() {
            return Err(same(first));
        }
        let errors = failures
            .iter()
            .map(|(index, item, error)| {
                let (field, value) = &item.notification.reference;
                let details = std::iter::once(error.message()).chain(error.details()).collect::<Vec<_>>();
                format!("[{index}] {field} {value}: {}", details.join(": "))
            })
            .collect();
        return Err(CommandError::Rejected { status: first.status(), message: first.message(), errors });
    }
    match route {
        Route::MonoCallback => mono_answer(items, forwarded),
        Route::RemitaPayment => batch_answer(items, forwarded, "Remita payment notifications processed"),
        Route::RemitaCollection => batch_answer(items, forwarded, "Remita collection notifications processed"),
    }
}

/// Mono sends one event a request.
fn mono_answer(items: &[Item], forwarded: Option<Value>) -> Result<Reply, CommandError> {
    let Some(item) = items.first() else {
        return Err(CommandError::validation("body: no event"));
    };
    if matches!(item.outcome, Some(Outcome::InProgress { .. })) {
        return Err(CommandError::conflict("Duplicate request", "This event is still being processed"));
    }
    let mut data = describe(item);
    if let Some(forwarded) = forwarded {
        data.insert("forwarded".into(), forwarded);
    }
    let message = match item.outcome {
        Some(Outcome::Duplicate { .. }) => "Mono event already received",
        Some(Outcome::Ignored { .. }) => "Mono event ignored",
        _ => "Mono event received",
    };
    Reply::new(data, message)
}

/// Remita's routes take many notifications a request: counts, and one line each.
fn batch_answer(items: &[Item], forwarded: Option<Value>, message: &'static str) -> Result<Reply, CommandError> {
    let count =
        |wanted: fn(&Outcome) -> bool| items.iter().filter(|item| item.outcome.as_ref().is_some_and(wanted)).count();
    let lines: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let mut line = Map::from_iter([("index".to_owned(), json!(index))]);
            line.extend(describe(item));
            Value::Object(line)
        })
        .collect();
    let mut data = json!({
        "received": items.len(),
        "accepted": count(|outcome| matches!(outcome, Outcome::Accepted { .. })),
        "duplicates": count(|outcome| matches!(outcome, Outcome::Duplicate { .. })),
        "processing": count(|outcome| matches!(outcome, Outcome::InProgress { .. })),
        "notPaid": count(|outcome| matches!(outcome, Outcome::NotPaid { .. })),
        "amountMismatches": count(|outcome| matches!(outcome, Outcome::AmountMismatch { .. })),
        "ignored": count(|outcome| matches!(outcome, Outcome::Ignored { .. })),
        "items": lines,
    });
    if let Some(forwarded) = forwarded {
        data["forwarded"] = forwarded;
    }
    Reply::new(data, message)
}

/// One notification: its reference, its outcome and what goes with it.
fn describe(item: &Item) -> Map<String, Value> {
    let (field, value) = &item.notification.reference;
    let mut line = Map::new();
    line.insert((*field).to_owned(), json!(value));
    let (outcome, extra) = match &item.outcome {
        Some(Outcome::Accepted { event_id }) => ("accepted", json!({"eventId": event_id})),
        Some(Outcome::Duplicate { first }) => ("duplicate", json!({"duplicateOf": first})),
        Some(Outcome::InProgress { first }) => ("processing", json!({"duplicateOf": first})),
        Some(Outcome::NotPaid { status, message }) => ("notPaid", json!({"status": status, "reason": message})),
        Some(Outcome::AmountMismatch { notified, paid }) => {
            ("amountMismatch", json!({"amount": notified, "paidAmount": paid}))
        }
        Some(Outcome::Failed(error)) => ("failed", json!({"error": error.summary()})),
        Some(Outcome::Ignored { reason }) => ("ignored", json!({"reason": reason})),
        None => ("failed", json!({})),
    };
    line.insert("outcome".into(), json!(outcome));
    if let Value::Object(extra) = extra {
        line.extend(extra);
    }
    line
}

/// An error that answers exactly as `error` does (status, message, details).
fn same(error: &CommandError) -> CommandError {
    CommandError::Rejected { status: error.status(), message: error.message(), errors: error.details() }
}
