//! Log entries of the fixed provider routes.
//!
//! A fixed route has no configuration behind it, so its entries carry configuration id 0 and a key
//! naming the route (`mono/callback`), which no configuration key can be: keys have no `/`. The
//! providers crate decides how an entry is written: inserted with its deduplication claims in one
//! transaction and finished later, or handed finished to the batch writer when the request was
//! refused before anything else was written.

use std::time::Instant;

use hookbus_core::{CommandError, Reply};
use hookbus_router::InboundRequest;
use hookbus_store::DbResultExt;
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, Set, TryIntoModel, Unchanged};
use uuid::Uuid;

use crate::{HeaderRedaction, InboundStatus, LogWriter, entity, receive, row::LogRow};

/// Replays fixed routes' logged requests for `ReplayInboundEventCommand`. The routes live in the
/// providers crate, which depends on this one, so it registers its replayer as a service
/// ([`FixedRoutes`]).
pub trait FixedRouteReplayer: Send + Sync + std::fmt::Debug + 'static {
    /// Runs the route that logs under `key` again on `request`, logging the run as a new entry that
    /// replays `replay_of`; the new entry's id.
    fn replay<'a>(
        &'a self,
        services: &'a std::sync::Arc<hookbus_core::Services>,
        key: &'a str,
        request: InboundRequest,
        replay_of: Uuid,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Uuid, CommandError>> + Send + 'a>>;
}

/// The fixed routes' replayer, as a service.
#[derive(Debug, Clone)]
pub struct FixedRoutes(pub std::sync::Arc<dyn FixedRouteReplayer>);

/// One request to a fixed route, on its way into the inbound event log, secret headers redacted.
#[derive(Debug)]
pub struct FixedRouteEntry {
    id: Uuid,
    row: entity::ActiveModel,
    started: Instant,
}

impl FixedRouteEntry {
    /// The configuration id of every fixed-route entry.
    pub const CONFIG_ID: i32 = 0;

    /// An entry for `request` under the route's `key`, `Processing` until [`finish`](Self::finish).
    /// `started` is when handling began, for the entry's duration.
    pub fn new(
        key: &str,
        request: InboundRequest,
        started: Instant,
        redaction: &HeaderRedaction,
    ) -> Result<Self, CommandError> {
        let id = Uuid::now_v7();
        let received_at = request.received_at;
        let mut row = receive::row_for(Self::CONFIG_ID, None, key.to_owned(), request, received_at, redaction)?;
        row.id = Set(id);
        row.status = Set(InboundStatus::Processing);
        row.attempts = Set(1);
        Ok(Self { id, row, started })
    }

    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Records the outcome, the duration and the completion time.
    pub fn finish(&mut self, result: Result<&Reply, &CommandError>) {
        receive::set_outcome(&mut self.row, result);
        self.row.duration_ms = Set(Some(receive::elapsed_ms(self.started)));
        self.row.completed_at = Set(Some(hookbus_core::now()));
    }

    /// Marks the entry as a replay of the request logged as `original`.
    pub fn replays(&mut self, original: Uuid) {
        self.row.replay_of = Set(Some(original));
    }

    /// Marks a finished entry as a repeat of the request logged as `first`.
    pub fn mark_duplicate(&mut self, first: Uuid) {
        self.row.status = Set(InboundStatus::Duplicate);
        self.row.duplicate_of = Set(Some(first));
    }

    /// Inserts the entry as it stands, on `db` (which may be a transaction).
    pub async fn insert<C: ConnectionTrait>(&self, db: &C) -> Result<(), CommandError> {
        entity::Entity::insert(self.row.clone()).exec_without_returning(db).await.or_internal()?;
        Ok(())
    }

    /// Writes the outcome of an entry [`insert`](Self::insert)ed before.
    pub async fn update<C: ConnectionTrait>(&self, db: &C) -> Result<(), CommandError> {
        let outcome = entity::ActiveModel {
            id: Unchanged(self.id),
            status: self.row.status.clone(),
            http_status: self.row.http_status.clone(),
            message: self.row.message.clone(),
            data: self.row.data.clone(),
            errors: self.row.errors.clone(),
            duplicate_of: self.row.duplicate_of.clone(),
            duration_ms: self.row.duration_ms.clone(),
            completed_at: self.row.completed_at.clone(),
            ..Default::default()
        };
        outcome.update(db).await.or_internal()?;
        Ok(())
    }

    /// Hands a finished entry that was never inserted to the batch writer.
    pub async fn write(self, writer: &LogWriter) -> Result<(), CommandError> {
        let model = self.row.try_into_model().or_internal()?;
        writer.write(LogRow::from_model(model)).await;
        Ok(())
    }
}
