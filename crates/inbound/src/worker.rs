//! The durable queue behind `respondAsync`: requests answered 202 are run here, with retries,
//! from the database, so a crash after the 202 loses nothing. And the log's retention sweep.

use std::{sync::Arc, time::Duration};

use chrono::Duration as Span;
use hookbus_configs::ConfigCache;
use hookbus_core::{CommandError, MissingService, Services, Timestamp, error_chain};
use hookbus_seal::Sealer;
use hookbus_store::Store;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait, Select, Statement,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType},
};

use crate::{HeaderRedaction, InboundStatus, Outcomes, entity, outcome::Outcome, receive};

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

    /// Claims what is due, up to a batch, and runs it side by side. Returns how many it claimed.
    pub async fn round(&self, services: &Arc<Services>) -> Result<usize, WorkerError> {
        let store = services.require::<Store>()?;
        let claimed = self.claim(store, hookbus_core::now()).await?;
        let count = claimed.len();
        // Side by side, so that their outcomes (and the writes of their handlers) share commits.
        let runs = futures_util::future::join_all(claimed.into_iter().map(|event| self.run(services, event))).await;
        runs.into_iter().collect::<Result<(), _>>()?;
        Ok(count)
    }

    /// Takes up to a batch of due events, the longest due first, in one statement: of several
    /// workers each event goes to exactly one (on PostgreSQL the rows another worker is taking are
    /// skipped, not waited for; on SQLite an instance's writes take turns and instances share one
    /// file lock).
    async fn claim(&self, store: &Store, now: Timestamp) -> Result<Vec<entity::Model>, DbErr> {
        let lease_until = now + Span::from_std(self.lease).unwrap_or(Span::minutes(1));
        let mut candidates = due_ids(now).into_query();
        if store.db().get_database_backend() == DbBackend::Postgres {
            candidates.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let claim = entity::Entity::update_many()
            .col_expr(entity::Column::Status, Expr::value(InboundStatus::Processing))
            .col_expr(entity::Column::LeaseUntil, Expr::value(Some(lease_until)))
            .col_expr(entity::Column::Attempts, Expr::col(entity::Column::Attempts).add(1))
            .filter(entity::Column::Id.in_subquery(candidates))
            .filter(due(now));
        store.write(|db| claim.exec_with_returning(db)).await
    }

    /// Runs a claimed event and stores its outcome: a failure goes back in the queue until its
    /// last attempt.
    async fn run(&self, services: &Arc<Services>, event: entity::Model) -> Result<(), WorkerError> {
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
        let outcome = match (entry, request) {
            (Some(entry), Ok(request)) => {
                let (result, outcome) = receive::run(services, &entry, &request, event.id).await?;
                if result.is_err() && event.attempts < self.max_attempts {
                    outcome.retry_at(self.next_attempt(event.attempts))
                } else {
                    outcome
                }
            }
            (None, _) => {
                let gone = CommandError::not_found("Configuration not found", "The configuration was deleted");
                Outcome::finished(event.id, Err(&gone), receive::elapsed_ms(started), None)?
            }
            (_, Err(bad)) => Outcome::finished(event.id, Err(&bad), receive::elapsed_ms(started), None)?,
        };
        services.require::<Outcomes>()?.write(outcome).await?;
        Ok(())
    }

    /// When a request that failed its `attempts`th run runs again: the first retry after
    /// `retry_base`, each next one after twice the last, up to an hour.
    fn next_attempt(&self, attempts: i32) -> Timestamp {
        let delay = self.retry_base.saturating_mul(1 << (attempts - 1).clamp(0, 12));
        hookbus_core::now() + Span::from_std(delay.min(Duration::from_secs(3600))).unwrap_or(Span::hours(1))
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
