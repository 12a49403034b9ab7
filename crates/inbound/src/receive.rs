//! Receiving a request: log it, deduplicate it, run it now or queue it.

use std::{sync::Arc, time::Instant};

use hookbus_configs::{ConfigEntry, IdempotencyRule};
use hookbus_core::{CommandError, Reply, Services, Timestamp};
use hookbus_router::{InboundRequest, Router};
use hookbus_seal::Sealer;
use hookbus_store::{DbResultExt, Store};
use sea_orm::{ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, QueryFilter, Set, SqlErr};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    Handoff, HeaderRedaction, InboundStatus, Intake, LogWriter, Outcomes, entity,
    entity::JsonText,
    outcome::Outcome,
    row::{LogRow, outcome_columns, stored_text, take_for_storage},
};

/// What the router answers.
#[derive(Debug)]
pub enum Receipt {
    /// The handler ran, or a repeat got the first result.
    Done(Result<Reply, CommandError>),
    /// Stored for the async worker: answer 202 with this event id.
    Accepted(Uuid),
}

/// The inbound pipeline; everything it needs comes from the services.
#[derive(Debug, Clone, Copy)]
pub struct Inbound;

impl Inbound {
    /// Logs `request` for `entry`, then runs it (or queues it, for `respondAsync`), unless its
    /// idempotency key was seen: then it gets the first result.
    pub async fn receive(
        services: &Arc<Services>,
        entry: &ConfigEntry,
        request: InboundRequest,
    ) -> Result<Receipt, CommandError> {
        let idempotency_value = entry.idempotency.as_ref().and_then(|rule| idempotency_value(rule, &request));
        let queued = entry.respond_async;
        if !queued && idempotency_value.is_none() {
            return plain(services, entry, request).await;
        }
        let redaction = services.get::<HeaderRedaction>()?;
        let mut row = new_row(entry, request.clone(), redaction)?;
        if queued {
            // It runs after its answer, from the log, where its secret headers are redacted: they
            // wait sealed until its last run.
            row.sealed_headers = Set(redaction.seal(&request.headers, services.get::<Sealer>()?));
        }
        // With room in the hand-over, it goes to this instance's worker once committed, its row
        // leased to this instance meanwhile; without, it waits for a poll.
        let handoff = if queued { services.get::<Handoff>()?.reserve() } else { None };
        row.idempotency_value = Set(idempotency_value.clone());
        row.status = Set(if queued { InboundStatus::Pending } else { InboundStatus::Processing });
        // A queued request's runs are counted as they happen (a claim counts the run it takes
        // the row for; a handed-over run's outcome counts it).
        row.attempts = Set(if queued { 0 } else { 1 });
        row.next_attempt_at = Set(queued.then(hookbus_core::now));
        row.lease_until = Set(handoff.as_ref().map(|reserved| reserved.lease_until));
        // `new_row` gave the row its id.
        let id = row.id.clone().unwrap();
        let intake = services.get::<Intake>()?;
        // A second try only after freeing the key of a first request that was abandoned.
        let mut tries = 0;
        loop {
            tries += 1;
            match intake.insert(row.clone()).await {
                Ok(()) => break,
                // Its idempotency key is taken: the row was left out, or refused.
                Err(e)
                    if matches!(e, DbErr::RecordNotInserted)
                        || matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) =>
                {
                    let value = idempotency_value.clone().unwrap_or_default();
                    match repeat(services, entry, &value, &request).await? {
                        Repeat::Answered(receipt) => return Ok(receipt),
                        Repeat::Freed if tries < 2 => continue,
                        Repeat::Freed => return Err(in_progress()),
                    }
                }
                Err(e) => return Err(CommandError::internal(e)),
            }
        }
        if queued {
            if let Some(reserved) = handoff {
                reserved.hand_over(id, entry.id, request);
            }
            return Ok(Receipt::Accepted(id));
        }
        Ok(Receipt::Done(run_and_record(services, entry, &request, id).await))
    }
}

/// A request that needs no row before it runs: run it, then hand the finished row to the batch
/// writer.
async fn plain(
    services: &Arc<Services>,
    entry: &ConfigEntry,
    request: InboundRequest,
) -> Result<Receipt, CommandError> {
    let started = Instant::now();
    let result = services.get::<Router>()?.execute(entry, &request, services).await;
    let duration_ms = elapsed_ms(started);
    // The request is ours now: it moves into its row without another copy.
    let row = LogRow::finished(
        entry.id,
        Some(entry.version),
        entry.key.clone(),
        request,
        &result,
        duration_ms,
        services.get::<HeaderRedaction>()?,
    )?;
    services.get::<LogWriter>()?.write(row).await;
    Ok(Receipt::Done(result))
}

pub(crate) fn set_outcome(row: &mut entity::ActiveModel, result: Result<&Reply, &CommandError>) {
    let (status, http_status, message) = outcome_columns(result);
    row.status = Set(status);
    row.http_status = Set(Some(http_status));
    row.message = Set(Some(stored_text(message.into_owned())));
    // JSON values always serialize.
    let (data, errors) = crate::outcome::documents(result).expect("replies and error details are JSON");
    row.data = Set(data);
    row.errors = Set(errors);
}

/// Runs the handler and records the outcome on event `id`, its last run (a synchronous one: its
/// row was written with its one attempt).
pub(crate) async fn run_and_record(
    services: &Arc<Services>,
    entry: &ConfigEntry,
    request: &InboundRequest,
    id: Uuid,
) -> Result<Reply, CommandError> {
    let (result, outcome) = run(services, entry, request, id, 1).await?;
    services.get::<Outcomes>()?.write(outcome).await?;
    result
}

/// Runs the handler on event `id`, whose row counts `found_attempts`: its result, and the outcome
/// to store for it (as the last run; a run to be tried again makes it [`Outcome::retry_at`]).
pub(crate) async fn run(
    services: &Arc<Services>,
    entry: &ConfigEntry,
    request: &InboundRequest,
    id: Uuid,
    found_attempts: i32,
) -> Result<(Result<Reply, CommandError>, Outcome), CommandError> {
    let started = Instant::now();
    let result = services.get::<Router>()?.execute(entry, request, services).await;
    // A queued request runs with the configuration as it is when it runs.
    let outcome = Outcome::finished(id, found_attempts, result.as_ref(), elapsed_ms(started), Some(entry.version))?;
    Ok((result, outcome))
}

/// How a repeat was handled.
enum Repeat {
    /// With the first result, a 202 for a still-queued first, or a 409 while the first runs.
    Answered(Receipt),
    /// The first was abandoned and its key freed: this request may take it.
    Freed,
}

/// A synchronous request still `Processing` this long after it arrived was abandoned: the server
/// running it stopped. (No synchronous handler runs this long: scripts have a deadline, commands
/// are single transactions.)
const ABANDONED_AFTER: chrono::Duration = chrono::Duration::minutes(5);

/// The answer to a repeat of a request that succeeded, without the first's data.
const DUPLICATE_ANSWER: &str = "Duplicate request: one with this idempotency key was processed";

/// A request whose idempotency key was seen before.
async fn repeat(
    services: &Services,
    entry: &ConfigEntry,
    value: &str,
    request: &InboundRequest,
) -> Result<Repeat, CommandError> {
    let store = services.get::<Store>()?;
    let first = entity::Entity::find()
        .filter(entity::Column::ConfigId.eq(entry.id))
        .filter(entity::Column::IdempotencyValue.eq(value))
        .one(store.db())
        .await
        .or_internal()?;
    let Some(first) = first else {
        // The first one failed and freed the key between our insert and this read.
        return Ok(Repeat::Freed);
    };
    let abandoned = first.status == InboundStatus::Processing
        && first.lease_until.is_none()
        && hookbus_core::now() - first.received_at > ABANDONED_AFTER;
    if abandoned {
        let failed = CommandError::Unavailable("Abandoned: the server stopped while it ran".into());
        services.get::<Outcomes>()?.write(Outcome::finished(first.id, first.attempts, Err(&failed), 0, None)?).await?;
        return Ok(Repeat::Freed);
    }
    let mut duplicate = new_row(entry, request.clone(), services.get::<HeaderRedaction>()?)?;
    duplicate.duplicate_of = Set(Some(first.id));
    duplicate.status = Set(InboundStatus::Duplicate);
    duplicate.duration_ms = Set(Some(0));
    duplicate.completed_at = Set(Some(hookbus_core::now()));
    let receipt = match first.status {
        // The repeat passed none of the handler's own checks (a script's signature check does not
        // run), so it learns only that the key was seen, unless the configuration opts in.
        InboundStatus::Succeeded if entry.idempotency_returns_result => {
            duplicate.http_status = Set(Some(200));
            duplicate.message = Set(first.message.clone());
            duplicate.data = Set(first.data.clone());
            Receipt::Done(Ok(Reply {
                data: first.data.as_ref().map(JsonText::parse).transpose()?.unwrap_or(Value::Null).into(),
                message: first.message.unwrap_or_default().into(),
            }))
        }
        InboundStatus::Succeeded => {
            let data = json!({"duplicate": true});
            duplicate.http_status = Set(Some(200));
            duplicate.message = Set(Some(DUPLICATE_ANSWER.to_owned()));
            duplicate.data = Set(Some(JsonText::of(&data)?));
            Receipt::Done(Ok(Reply { data: data.into(), message: DUPLICATE_ANSWER.into() }))
        }
        InboundStatus::Pending if entry.respond_async => {
            duplicate.http_status = Set(Some(202));
            Receipt::Accepted(first.id)
        }
        _ => {
            duplicate.http_status = Set(Some(409));
            Receipt::Done(Err(in_progress()))
        }
    };
    store.write(|db| duplicate.insert(db)).await.or_internal()?;
    Ok(Repeat::Answered(receipt))
}

fn in_progress() -> CommandError {
    CommandError::conflict("Duplicate request", "A request with this idempotency key is still being processed")
}

/// A new event row for `request` to `entry`: secret headers redacted, no outcome yet. Callers set
/// what their kind of row needs (status, attempts, outcome).
pub(crate) fn new_row(
    entry: &ConfigEntry,
    request: InboundRequest,
    redaction: &HeaderRedaction,
) -> Result<entity::ActiveModel, CommandError> {
    let received_at = request.received_at;
    row_for(entry.id, Some(entry.version), entry.key.clone(), request, received_at, redaction)
}

/// As [`new_row`], for a request logged under `config_id` and `key` (a fixed route has no
/// configuration) and received (or replayed) at `received_at`.
pub(crate) fn row_for(
    config_id: i32,
    config_version: Option<i32>,
    key: String,
    mut request: InboundRequest,
    received_at: Timestamp,
    redaction: &HeaderRedaction,
) -> Result<entity::ActiveModel, CommandError> {
    let raw_body = take_for_storage(&mut request, redaction);
    Ok(entity::ActiveModel {
        id: Set(Uuid::now_v7()),
        config_id: Set(config_id),
        config_version: Set(config_version),
        request: Set(JsonText::from_stored(crate::stored::to_stored(&request, &key, received_at)?)),
        config_key: Set(key),
        raw_body: Set(raw_body),
        idempotency_value: Set(None),
        duplicate_of: Set(None),
        replay_of: Set(None),
        status: Set(InboundStatus::Processing),
        http_status: Set(None),
        message: Set(None),
        data: Set(None),
        errors: Set(None),
        attempts: Set(0),
        next_attempt_at: Set(None),
        lease_until: Set(None),
        duration_ms: Set(None),
        received_at: Set(received_at),
        completed_at: Set(None),
        sealed_headers: Set(None),
    })
}

/// The request a stored row holds (secret headers as redacted when stored).
pub(crate) fn request_of(event: &entity::Model) -> Result<InboundRequest, CommandError> {
    let restored =
        crate::stored::restore(event.request.as_str(), &event.config_key, event.received_at, &event.raw_body)?;
    let request: InboundRequest =
        serde_json::from_value(Value::Object(restored.request)).map_err(CommandError::internal)?;
    Ok(InboundRequest { raw_body: event.raw_body.clone(), body_from_raw: restored.body_from_raw, ..request })
}

pub(crate) fn elapsed_ms(started: Instant) -> i64 {
    i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX)
}

/// The request's unique id under `rule`; none when the header or path is absent or null.
pub(crate) fn idempotency_value(rule: &IdempotencyRule, request: &InboundRequest) -> Option<String> {
    match rule {
        IdempotencyRule::Header(name) => request.headers.get(name).cloned(),
        IdempotencyRule::Path(query) => match hookbus_script::select(query, &request.body) {
            Value::Null => None,
            Value::String(text) => Some(text),
            other => Some(other.to_string()),
        },
    }
    .filter(|value| !value.is_empty())
}
