//! The durable queue behind `respondAsync`: requests answered 202 are run here, with retries,
//! from the database, so a crash after the 202 loses nothing. And the log's retention sweep.

use std::{sync::Arc, time::Duration};

use chrono::Duration as Span;
use hookbus_configs::ConfigCache;
use hookbus_core::{CommandError, MissingService, Services, Timestamp, error_chain};
use hookbus_seal::Sealer;
use hookbus_store::Store;
use sea_orm::{
    ColumnTrait, Condition, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select,
    Statement,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use crate::{HeaderRedaction, InboundStatus, entity, receive};

/// Events claimed per round.
const BATCH: u64 = 16;

/// Runs queued requests until the runtime stops.
#[derive(Debug, Clone)]
pub struct AsyncWorker {
    pub poll: Duration,
    /// How long a claimed event is this worker's; after that another worker may take it over.
    pub lease: Duration,
    pub max_attempts: i32,
    /// First retry delay; each next one doubles, up to an hour.
    pub retry_base: Duration,
}

impl AsyncWorker {
    pub fn spawn(self, services: Arc<Services>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(self.poll);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                // A full batch may leave more due: the next round starts at once, so a backlog
                // drains as fast as its requests run, not a batch per poll.
                loop {
                    match self.round(&services).await {
                        Ok(due) if due >= BATCH as usize => {}
                        Ok(_) => break,
                        Err(error) => {
                            tracing::warn!(error = %error_chain(&error), "async queue poll failed; the next one tries again");
                            break;
                        }
                    }
                }
            }
        })
    }

    /// Claims and runs what is due, up to a batch. Returns how many were due.
    pub async fn round(&self, services: &Arc<Services>) -> Result<usize, WorkerError> {
        let store = services.require::<Store>()?;
        let now = hookbus_core::now();
        let candidates: Vec<Uuid> = due_ids(now).into_tuple().all(store.db()).await?;
        for id in &candidates {
            if let Some(event) = self.claim(store, *id, now).await? {
                self.run(services, store, event).await?;
            }
        }
        Ok(candidates.len())
    }

    /// Takes `id` if it is still due: one conditional update, so of several workers exactly one
    /// wins.
    async fn claim(&self, store: &Store, id: Uuid, now: Timestamp) -> Result<Option<entity::Model>, DbErr> {
        let lease_until = now + Span::from_std(self.lease).unwrap_or(Span::minutes(1));
        let claim = entity::Entity::update_many()
            .col_expr(entity::Column::Status, Expr::value(InboundStatus::Processing))
            .col_expr(entity::Column::LeaseUntil, Expr::value(Some(lease_until)))
            .col_expr(entity::Column::Attempts, Expr::col(entity::Column::Attempts).add(1))
            .filter(entity::Column::Id.eq(id))
            .filter(due(now));
        let claimed = store.write(|db| claim.exec(db)).await?;
        if claimed.rows_affected == 0 {
            return Ok(None);
        }
        entity::Entity::find_by_id(id).one(store.db()).await
    }

    async fn run(&self, services: &Arc<Services>, store: &Store, event: entity::Model) -> Result<(), WorkerError> {
        let started = std::time::Instant::now();
        let entry = services.require::<ConfigCache>()?.by_id(event.config_id);
        let request = receive::request_of(&event).and_then(|mut request| {
            // The secret headers as they came, for this run only.
            if let Some(sealed) = &event.sealed_headers {
                HeaderRedaction::unseal(&mut request.headers, sealed, services.get::<Sealer>()?)
                    .map_err(CommandError::internal)?;
            }
            Ok(request)
        });
        let result = match (entry, request) {
            (Some(entry), Ok(request)) => receive::run_and_record(services, &entry, &request, event.id).await,
            (None, _) => {
                let gone = Err(CommandError::not_found("Configuration not found", "The configuration was deleted"));
                receive::record(store, event.id, &gone, started, None).await?;
                return Ok(forget_secrets(store, &event).await?);
            }
            (_, Err(bad)) => {
                receive::record(store, event.id, &Err(bad), started, None).await?;
                return Ok(forget_secrets(store, &event).await?);
            }
        };
        if result.is_ok() || event.attempts >= self.max_attempts {
            return Ok(forget_secrets(store, &event).await?);
        }
        {
            // Back in the queue; the failure is kept on the event meanwhile.
            let delay = self.retry_base.saturating_mul(1 << (event.attempts - 1).clamp(0, 12));
            let next =
                hookbus_core::now() + Span::from_std(delay.min(Duration::from_secs(3600))).unwrap_or(Span::hours(1));
            let retry = entity::Entity::update_many()
                .col_expr(entity::Column::Status, Expr::value(InboundStatus::Pending))
                .col_expr(entity::Column::NextAttemptAt, Expr::value(Some(next)))
                .col_expr(entity::Column::CompletedAt, Expr::value(Option::<Timestamp>::None))
                .filter(entity::Column::Id.eq(event.id));
            store.write(|db| retry.exec(db)).await?;
        }
        Ok(())
    }
}

/// What stops a round of the worker; a request's own failure is recorded on it instead.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("the database failed")]
    Database(#[from] DbErr),
    #[error(transparent)]
    Wiring(#[from] MissingService),
    #[error("a request's outcome was not recorded")]
    Record(#[from] CommandError),
}

/// Drops a queued request's sealed secret headers after its last run.
async fn forget_secrets(store: &Store, event: &entity::Model) -> Result<(), DbErr> {
    if event.sealed_headers.is_none() {
        return Ok(());
    }
    let forget = entity::Entity::update_many()
        .col_expr(entity::Column::SealedHeaders, Expr::value(Option::<String>::None))
        .filter(entity::Column::Id.eq(event.id));
    store.write(|db| forget.exec(db)).await?;
    Ok(())
}

/// Deletes the finished events received before `cutoff` (queued and running ones stay, however
/// old), in chunks (see [`Store::delete_in_chunks`]). Returns how many went.
pub async fn sweep(store: &Store, cutoff: Timestamp) -> Result<u64, DbErr> {
    let finished = entity::Entity::find()
        .select_only()
        .column(entity::Column::Id)
        .filter(entity::Column::ReceivedAt.lt(cutoff))
        .filter(entity::Column::Status.is_in([
            InboundStatus::Succeeded,
            InboundStatus::Failed,
            InboundStatus::Duplicate,
        ]))
        .into_query();
    store.delete_in_chunks(entity::Entity, Expr::col(entity::Column::Id), finished).await
}

/// The ids of up to [`BATCH`] due events, the longest due first.
///
/// Ordered by `next_attempt_at`, so that the partial index on it serves the order as well as the
/// filter. Any other order (by `received_at`, say) lets PostgreSQL walk the whole log through that
/// column's index looking for the few queued rows, a cost that grows with the log, not the queue.
fn due_ids(now: Timestamp) -> Select<entity::Entity> {
    entity::Entity::find()
        .select_only()
        .column(entity::Column::Id)
        .filter(due(now))
        .order_by_asc(entity::Column::NextAttemptAt)
        .limit(BATCH)
}

/// The worker's poll as SQL for `backend`, for checking how the database plans it.
pub fn poll_statement(backend: DbBackend) -> Statement {
    due_ids(hookbus_core::now()).build(backend)
}

/// Queued and due, or claimed by a worker whose lease ran out (it died).
///
/// Only queued rows have a next attempt time (a claimed row keeps the one it was claimed at;
/// finished rows have none), so the condition starts with it: the partial index on
/// `next_attempt_at` then holds exactly the queue, and the poll never scans the log.
fn due(now: Timestamp) -> Condition {
    Condition::all().add(entity::Column::NextAttemptAt.is_not_null()).add(entity::Column::NextAttemptAt.lte(now)).add(
        Condition::any().add(entity::Column::Status.eq(InboundStatus::Pending)).add(
            Condition::all()
                .add(entity::Column::Status.eq(InboundStatus::Processing))
                .add(entity::Column::LeaseUntil.lt(now)),
        ),
    )
}
