//! A finished log row on its way to the batch writer.
//!
//! The row's JSON columns are text already: the request is serialized once, straight from the
//! request, and the writer hands that text to the database as it is. (An `ActiveModel` would clone
//! each JSON tree into a `Value` and serialize it again when binding: under load, more work than
//! the handler's.)

use std::{borrow::Cow, sync::Arc};

use hookbus_core::{CommandError, Reply, Timestamp};
use hookbus_router::InboundRequest;
use uuid::Uuid;

use crate::{HeaderRedaction, InboundStatus, entity};

/// One row of `inbound_events` that needs no further update: the writer only inserts it.
///
/// Its text takes what the request already allocated (the request's JSON, its body, a literal
/// message) and the writer binds it by reference: a routed request should not copy
/// its log row to hand it on.
#[derive(Debug)]
pub(crate) struct LogRow {
    pub id: Uuid,
    pub config_id: i32,
    pub config_version: Option<i32>,
    pub config_key: String,
    /// The request's stored form (see [`stored`](crate::stored)), secret headers redacted.
    pub request: String,
    pub raw_body: String,
    pub duplicate_of: Option<Uuid>,
    pub status: InboundStatus,
    pub http_status: Option<i32>,
    pub message: Option<Cow<'static, str>>,
    /// JSON.
    pub data: Option<Arc<str>>,
    /// JSON.
    pub errors: Option<Arc<str>>,
    pub attempts: i32,
    pub duration_ms: Option<i64>,
    pub received_at: Timestamp,
    pub completed_at: Option<Timestamp>,
}

impl LogRow {
    /// A finished row for `request` under `config_id` (its `config_version`) and `key`, with
    /// `result` as its outcome.
    pub fn finished(
        config_id: i32,
        config_version: Option<i32>,
        config_key: String,
        mut request: InboundRequest,
        result: &Result<Reply, CommandError>,
        duration_ms: i64,
        redaction: &HeaderRedaction,
    ) -> Result<Self, CommandError> {
        let raw_body = take_for_storage(&mut request, redaction);
        let (status, http_status, message) = outcome_columns(result.as_ref());
        let (data, errors) = match result {
            Ok(reply) => (Some(reply.data.to_text().map_err(CommandError::internal)?), None),
            Err(error) => (None, Some(to_json(&error.details())?)),
        };
        Ok(Self {
            id: Uuid::now_v7(),
            config_id,
            config_version,
            request: crate::stored::to_stored(&request, &config_key, request.received_at)?,
            config_key,
            raw_body,
            duplicate_of: None,
            status,
            http_status: Some(http_status),
            message: Some(message),
            data,
            errors,
            attempts: 1,
            duration_ms: Some(duration_ms),
            received_at: request.received_at,
            completed_at: Some(hookbus_core::now()),
        })
    }

    /// The row of a stored-form entry (a fixed route's, built as a model for its other paths).
    pub fn from_model(model: entity::Model) -> Self {
        Self {
            id: model.id,
            config_id: model.config_id,
            config_version: model.config_version,
            config_key: model.config_key,
            request: model.request.into_string(),
            raw_body: model.raw_body,
            duplicate_of: model.duplicate_of,
            status: model.status,
            http_status: model.http_status,
            message: model.message.map(Cow::Owned),
            data: model.data.map(|data| data.into_string().into()),
            errors: model.errors.map(|errors| errors.into_string().into()),
            attempts: model.attempts,
            duration_ms: model.duration_ms,
            received_at: model.received_at,
            completed_at: model.completed_at,
        }
    }
}

/// Makes `request` what the log keeps: takes its raw body out, to be stored beside the request's
/// JSON (see [`stored_text`]), and redacts its secret headers.
pub(crate) fn take_for_storage(request: &mut InboundRequest, redaction: &HeaderRedaction) -> String {
    redaction.redact(&mut request.headers);
    stored_text(std::mem::take(&mut request.raw_body))
}

/// The outcome columns every finished row has, whichever way it is stored: status, HTTP status
/// and message.
pub(crate) fn outcome_columns(result: Result<&Reply, &CommandError>) -> (InboundStatus, i32, Cow<'static, str>) {
    match result {
        Ok(reply) => (InboundStatus::Succeeded, 200, reply.message.clone()),
        Err(error) => (InboundStatus::Failed, i32::from(error.status()), Cow::Owned(error.message())),
    }
}

fn to_json(value: &impl serde::Serialize) -> Result<Arc<str>, CommandError> {
    serde_json::to_string(value).map(Arc::from).map_err(CommandError::internal)
}

/// A raw body as the log stores it: NUL characters, which PostgreSQL's text cannot hold, become
/// U+FFFD on every database alike (the body was lossy UTF-8 already).
pub(crate) fn stored_text(text: String) -> String {
    if text.contains('\0') { text.replace('\0', "\u{FFFD}") } else { text }
}
