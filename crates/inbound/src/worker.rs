//! The durable queue behind `respondAsync`: requests answered 202 are run here, with retries,
//! from the database, so a crash after the 202 loses nothing. And the log's retention sweep.
//!
//! A request reaches the worker in one of two ways. Handed over in memory ([`Handoff`]): the
//! intake gives its row this instance's lease before writing it, and once the row is committed
//! hands the request itself to the worker, which runs it at once, without a poll, a claim or a
//! read of the row. Or from the database: a poll claims due rows under a lease (a request that
//! found the hand-over full, a retry, or one whose instance died holding it).

use std::{sync::Arc, time::Duration};

use chrono::Duration as Span;
use futures_util::{StreamExt, stream::FuturesUnordered};
use hookbus_configs::ConfigCache;
use hookbus_core::{CommandError, MissingService, Services, Timestamp, error_chain};
use hookbus_router::InboundRequest;
use hookbus_seal::Sealer;
use hookbus_store::Store;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    QueryTrait, Select, Statement,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType},
};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{HeaderRedaction, InboundStatus, Outcomes, entity, outcome::Outcome, receive};

/// Events claimed per round, and handed-over requests run side by side at most, as a batch.
const BATCH: usize = 16;

/// Batches run at once: while one waits for its outcomes' commit, the next claims and runs.
const BATCHES_IN_FLIGHT: usize = 4;

/// Queued requests handed from the intake to this instance's worker in memory.
///
/// A request is handed over only when there is room ([`reserve`](Self::reserve) before its row is
/// written): its row then carries this instance's lease from the start, so no other instance's
/// poll takes it while it waits here; should this instance die first, the lease runs out and any
/// instance's poll runs it, as it would a claimed request. Without room the row is written
/// without a lease and waits for a poll.
#[derive(Debug, Clone)]
pub struct Handoff {
    /// `None` when nothing is handed over (room for none).
    requests: Option<mpsc::Sender<Handed>>,
    lease: Duration,
}

/// The worker's end of the [`Handoff`].
#[derive(Debug)]
pub struct Handovers(Option<mpsc::Receiver<Handed>>);

impl Handoff {
    /// Room for `capacity` requests waiting for the worker (0: every request waits for a poll);
    /// each handed over under a lease of `lease`.
    pub fn new(capacity: usize, lease: Duration) -> (Self, Handovers) {
        if capacity == 0 {
            return (Self { requests: None, lease }, Handovers(None));
        }
        let (requests, received) = mpsc::channel(capacity);
        (Self { requests: Some(requests), lease }, Handovers(Some(received)))
    }

    /// A place for one request, when there is room: its row is to carry the lease it names.
    pub(crate) fn reserve(&self) -> Option<Reserved> {
        let permit = self.requests.clone()?.try_reserve_owned().ok()?;
        Some(Reserved { permit, lease_until: lease_until(hookbus_core::now(), self.lease) })
    }
}

/// Room for one request in the [`Handoff`]; dropped unused, it is given back.
#[derive(Debug)]
pub(crate) struct Reserved {
    permit: mpsc::OwnedPermit<Handed>,
    pub lease_until: Timestamp,
}

impl Reserved {
    /// Hands over the request of event `id` (its row committed) to configuration `config_id`.
    pub(crate) fn hand_over(self, id: Uuid, config_id: i32, request: InboundRequest) {
        let lease_until = self.lease_until;
        self.permit.send(Handed { id, config_id, request, lease_until });
    }
}

/// A request handed over: as it came, secret headers and all (they never leave memory).
#[derive(Debug)]
pub(crate) struct Handed {
    id: Uuid,
    config_id: i32,
    request: InboundRequest,
    lease_until: Timestamp,
}

/// When a lease of `lease` taken at `now` runs out.
fn lease_until(now: Timestamp, lease: Duration) -> Timestamp {
    now + Span::from_std(lease).unwrap_or(Span::minutes(1))
}

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
    /// Runs the requests handed over through `handovers` as they come, and polls the queue.
    pub fn spawn(self, services: Arc<Services>, handovers: Handovers) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            tokio::join!(self.take_handovers(&services, handovers), self.poll(&services));
        })
    }

    /// Runs the requests handed over, a batch of up to [`BATCH`] as soon as it is there, up to
    /// [`BATCHES_IN_FLIGHT`] batches at once.
    async fn take_handovers(&self, services: &Arc<Services>, handovers: Handovers) {
        let Handovers(Some(mut handovers)) = handovers else { return };
        let mut running = FuturesUnordered::new();
        let mut handed = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                received = handovers.recv_many(&mut handed, BATCH), if running.len() < BATCHES_IN_FLIGHT => {
                    if received == 0 {
                        // Every sender is gone: nothing more can come.
                        break;
                    }
                    running.push(self.run_handed(services, std::mem::take(&mut handed)));
                }
                Some(()) = running.next() => {}
            }
        }
        while running.next().await.is_some() {}
    }

    /// Polls the queue every `poll`. A round that finds a full batch is followed at once by more,
    /// up to [`BATCHES_IN_FLIGHT`] at a time (one claiming while another runs and another
    /// records), so a backlog drains as fast as its requests run, not a batch per poll or per
    /// round trip.
    async fn poll(&self, services: &Arc<Services>) {
        let mut ticker = tokio::time::interval(self.poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let mut rounds = FuturesUnordered::new();
            rounds.push(self.round(services));
            while let Some(round) = rounds.next().await {
                match round {
                    Ok(due) if due >= BATCH => {
                        while rounds.len() < BATCHES_IN_FLIGHT {
                            rounds.push(self.round(services));
                        }
                    }
                    // The queue is drained: the rounds under way finish, no more start.
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(error = %error_chain(&error), "async queue poll failed; the next one tries again");
                    }
                }
            }
        }
    }

    /// Runs handed-over requests side by side. One whose lease is half gone is not run here: its
    /// lease is given up, so that a poll takes it at once (run this late, it could outlast its
    /// lease and be taken over mid-run).
    async fn run_handed(&self, services: &Arc<Services>, handed: Vec<Handed>) {
        let margin = Span::from_std(self.lease / 2).unwrap_or(Span::seconds(30));
        let now = hookbus_core::now();
        let (fresh, late): (Vec<Handed>, Vec<Handed>) =
            handed.into_iter().partition(|handed| handed.lease_until - margin > now);
        if !late.is_empty()
            && let Err(error) = self.give_up_leases(services, late.iter().map(|handed| handed.id)).await
        {
            tracing::warn!(error = %error_chain(&error), "queued requests wait for their leases to run out");
        }
        let runs = fresh
            .into_iter()
            .map(|handed| self.run(services, handed.id, handed.config_id, 1, false, Ok(handed.request)));
        for result in futures_util::future::join_all(runs).await {
            if let Err(error) = result {
                tracing::warn!(error = %error_chain(&error), "a queued request's outcome was not recorded; it runs again when its lease runs out");
            }
        }
    }

    /// Makes the queued requests `ids`, handed over and not run, due for any poll at once.
    async fn give_up_leases(
        &self,
        services: &Arc<Services>,
        ids: impl Iterator<Item = Uuid>,
    ) -> Result<(), WorkerError> {
        let store = services.require::<Store>()?;
        let release = entity::Entity::update_many()
            .col_expr(entity::Column::LeaseUntil, Expr::value(Option::<Timestamp>::None))
            .filter(entity::Column::Id.is_in(ids))
            .filter(entity::Column::Status.eq(InboundStatus::Pending));
        store.write(|db| release.exec(db)).await?;
        Ok(())
    }

    /// Claims what is due, up to a batch, and runs it side by side. Returns how many it claimed.
    pub async fn round(&self, services: &Arc<Services>) -> Result<usize, WorkerError> {
        let store = services.require::<Store>()?;
        let claimed = self.claim(store, hookbus_core::now()).await?;
        let count = claimed.len();
        // Side by side, so that their outcomes (and the writes of their handlers) share commits.
        let runs = claimed.into_iter().map(|event| {
            let request = receive::request_of(&event).and_then(|mut request| {
                // The secret headers as they came, for this run only.
                if let Some(sealed) = &event.sealed_headers {
                    HeaderRedaction::unseal(&mut request.headers, sealed, services.get::<Sealer>()?)
                        .map_err(CommandError::internal)?;
                }
                Ok(request)
            });
            self.run(services, event.id, event.config_id, event.attempts, true, request)
        });
        let runs = futures_util::future::join_all(runs).await;
        runs.into_iter().collect::<Result<(), _>>()?;
        Ok(count)
    }

    /// Takes up to a batch of due events, the longest due first, in one statement: of several
    /// workers each event goes to exactly one (on PostgreSQL the rows another worker is taking are
    /// skipped, not waited for; on SQLite an instance's writes take turns and instances share one
    /// file lock).
    async fn claim(&self, store: &Store, now: Timestamp) -> Result<Vec<entity::Model>, DbErr> {
        let lease_until = lease_until(now, self.lease);
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

    /// Runs event `id` (to configuration `config_id`, on its `attempts`th run, which its row
    /// counts already when it was `claimed`) and stores its outcome: a failure goes back in the
    /// queue until its last attempt.
    async fn run(
        &self,
        services: &Arc<Services>,
        id: Uuid,
        config_id: i32,
        attempts: i32,
        claimed: bool,
        request: Result<InboundRequest, CommandError>,
    ) -> Result<(), WorkerError> {
        let started = std::time::Instant::now();
        // What the row counts while this run goes on, unless another worker takes it over.
        let found = if claimed { attempts } else { attempts - 1 };
        let entry = services.require::<ConfigCache>()?.by_id(config_id);
        let outcome = match (entry, request) {
            (Some(entry), Ok(request)) => {
                let (result, outcome) = receive::run(services, &entry, &request, id, found).await?;
                if result.is_err() && attempts < self.max_attempts {
                    outcome.retry_at(self.next_attempt(attempts))
                } else {
                    outcome
                }
            }
            (None, _) => {
                let gone = CommandError::not_found("Configuration not found", "The configuration was deleted");
                Outcome::finished(id, found, Err(&gone), receive::elapsed_ms(started), None)?
            }
            (_, Err(bad)) => Outcome::finished(id, found, Err(&bad), receive::elapsed_ms(started), None)?,
        };
        let outcome = if claimed { outcome } else { outcome.counting_its_attempt() };
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
        .limit(BATCH as u64)
}

/// The worker's poll as SQL for `backend`, for checking how the database plans it.
pub fn poll_statement(backend: DbBackend) -> Statement {
    due_ids(hookbus_core::now()).build(backend)
}

/// Queued, due, and held by no worker: never leased, or its lease ran out (its worker died). A
/// request handed over in memory waits `Pending` under its instance's lease; a claimed one runs
/// `Processing` under its claimer's.
///
/// Only queued rows have a next attempt time (a claimed row keeps the one it was claimed at;
/// finished rows have none), so the condition starts with it: the partial index on
/// `next_attempt_at` then holds exactly the queue, and the poll never scans the log.
fn due(now: Timestamp) -> Condition {
    Condition::all()
        .add(entity::Column::NextAttemptAt.is_not_null())
        .add(entity::Column::NextAttemptAt.lte(now))
        .add(entity::Column::Status.is_in([InboundStatus::Pending, InboundStatus::Processing]))
        .add(Condition::any().add(entity::Column::LeaseUntil.is_null()).add(entity::Column::LeaseUntil.lt(now)))
}
