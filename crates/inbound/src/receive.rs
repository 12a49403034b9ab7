//! Receiving a request: log it, deduplicate it, run it now or queue it.

use std::{sync::Arc, time::Instant};

use hookbus_configs::{ConfigEntry, IdempotencyRule};
use hookbus_core::{CommandError, Reply, Services};
use hookbus_router::{InboundRequest, Router};
use hookbus_store::{DbResultExt, Store};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set, SqlErr, sea_query::Expr};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{entity, redact_headers, status};

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
        let store = services.get::<Store>()?;
        let idempotency_value = entry.idempotency.as_ref().and_then(|rule| idempotency_value(rule, &request));
        let queued = entry.model.respond_async;
        let now = hookbus_core::now();
        let row = entity::ActiveModel {
            id: Set(Uuid::now_v7()),
            config_id: Set(entry.model.id),
            config_key: Set(entry.model.key.clone()),
            request: Set(stored_request(&request)?),
            raw_body: Set(request.raw_body.clone()),
            idempotency_value: Set(idempotency_value.clone()),
            duplicate_of: Set(None),
            replay_of: Set(None),
            status: Set(if queued { status::PENDING } else { status::PROCESSING }.to_owned()),
            http_status: Set(None),
            message: Set(None),
            data: Set(None),
            errors: Set(None),
            attempts: Set(if queued { 0 } else { 1 }),
            next_attempt_at: Set(queued.then_some(now)),
            lease_until: Set(None),
            duration_ms: Set(None),
            received_at: Set(request.received_at),
            completed_at: Set(None),
        };
        let event = match row.insert(store.db()).await {
            Ok(event) => event,
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                let value = idempotency_value.unwrap_or_default();
                return repeat(store, entry, &value, &request).await;
            }
            Err(e) => return Err(CommandError::internal(e)),
        };
        if queued {
            return Ok(Receipt::Accepted(event.id));
        }
        Ok(Receipt::Done(run_and_record(services, entry, &request, event.id).await))
    }
}

/// Runs the handler and records the outcome on event `id`.
pub(crate) async fn run_and_record(
    services: &Arc<Services>,
    entry: &ConfigEntry,
    request: &InboundRequest,
    id: Uuid,
) -> Result<Reply, CommandError> {
    let started = Instant::now();
    let result = services.get::<Router>()?.execute(entry, request, services).await;
    record(services.get::<Store>()?, id, &result, started).await?;
    result
}

/// Stores a finished run. A failure frees the idempotency key, so the sender may try again.
pub(crate) async fn record(
    store: &Store,
    id: Uuid,
    result: &Result<Reply, CommandError>,
    started: Instant,
) -> Result<(), CommandError> {
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let mut update = entity::Entity::update_many()
        .col_expr(entity::Column::DurationMs, Expr::value(duration_ms))
        .col_expr(entity::Column::CompletedAt, Expr::value(hookbus_core::now()))
        .col_expr(entity::Column::LeaseUntil, Expr::value(Option::<hookbus_core::Timestamp>::None))
        .col_expr(entity::Column::NextAttemptAt, Expr::value(Option::<hookbus_core::Timestamp>::None));
    update = match result {
        Ok(reply) => update
            .col_expr(entity::Column::Status, Expr::value(status::SUCCEEDED))
            .col_expr(entity::Column::HttpStatus, Expr::value(200))
            .col_expr(entity::Column::Message, Expr::value(reply.message.clone()))
            .col_expr(entity::Column::Data, Expr::value(reply.data.clone())),
        Err(error) => update
            .col_expr(entity::Column::Status, Expr::value(status::FAILED))
            .col_expr(entity::Column::HttpStatus, Expr::value(i32::from(error.status())))
            .col_expr(entity::Column::Message, Expr::value(error.message()))
            .col_expr(entity::Column::Errors, Expr::value(json!(error.details())))
            .col_expr(entity::Column::IdempotencyValue, Expr::value(Option::<String>::None)),
    };
    update.filter(entity::Column::Id.eq(id)).exec(store.db()).await.or_internal()?;
    Ok(())
}

/// A request whose idempotency key was seen before.
async fn repeat(
    store: &Store,
    entry: &ConfigEntry,
    value: &str,
    request: &InboundRequest,
) -> Result<Receipt, CommandError> {
    let first = entity::Entity::find()
        .filter(entity::Column::ConfigId.eq(entry.model.id))
        .filter(entity::Column::IdempotencyValue.eq(value))
        .one(store.db())
        .await
        .or_internal()?;
    let Some(first) = first else {
        // The first one failed and freed the key between our insert and this read.
        return Err(in_progress());
    };
    let mut duplicate = entity::ActiveModel {
        id: Set(Uuid::now_v7()),
        config_id: Set(entry.model.id),
        config_key: Set(entry.model.key.clone()),
        request: Set(stored_request(request)?),
        raw_body: Set(request.raw_body.clone()),
        idempotency_value: Set(None),
        duplicate_of: Set(Some(first.id)),
        replay_of: Set(None),
        status: Set(status::DUPLICATE.to_owned()),
        http_status: Set(None),
        message: Set(None),
        data: Set(None),
        errors: Set(None),
        attempts: Set(0),
        next_attempt_at: Set(None),
        lease_until: Set(None),
        duration_ms: Set(Some(0)),
        received_at: Set(request.received_at),
        completed_at: Set(Some(hookbus_core::now())),
    };
    let receipt = match first.status.as_str() {
        status::SUCCEEDED => {
            duplicate.http_status = Set(Some(200));
            duplicate.message = Set(first.message.clone());
            duplicate.data = Set(first.data.clone());
            Receipt::Done(Ok(Reply {
                data: first.data.unwrap_or(Value::Null),
                message: first.message.unwrap_or_default(),
            }))
        }
        status::PENDING if entry.model.respond_async => {
            duplicate.http_status = Set(Some(202));
            Receipt::Accepted(first.id)
        }
        _ => {
            duplicate.http_status = Set(Some(409));
            Receipt::Done(Err(in_progress()))
        }
    };
    duplicate.insert(store.db()).await.or_internal()?;
    Ok(receipt)
}

fn in_progress() -> CommandError {
    CommandError::conflict("Duplicate request", "A request with this idempotency key is still being processed")
}

/// The request as stored: secret headers redacted.
pub(crate) fn stored_request(request: &InboundRequest) -> Result<Value, CommandError> {
    let mut stored = request.clone();
    redact_headers(&mut stored.headers);
    serde_json::to_value(stored).map_err(CommandError::internal)
}

/// The request's unique id under `rule`; none when the header or path is absent or null.
fn idempotency_value(rule: &IdempotencyRule, request: &InboundRequest) -> Option<String> {
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
