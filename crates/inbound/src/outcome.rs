//! A run's outcome on its log row, written in groups: the outcomes that finish while one commit is
//! under way share the next (see [`GroupCommit`]). The async worker runs a batch of queued
//! requests side by side, so their outcomes (and their retries, and the end of their sealed
//! secret headers) take one commit instead of one or two each.

use std::{collections::HashSet, sync::Arc};

use hookbus_core::{CommandError, Reply, Timestamp};
use hookbus_store::{GroupCommit, GroupCommitMetrics, GroupWrite, Store};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait},
};
use sqlx::postgres::PgPool;
use uuid::Uuid;

use crate::{
    InboundStatus,
    entity::{self, JsonText},
    row::{outcome_columns, stored_text},
};

/// Writes the outcomes of runs of logged requests.
#[derive(Debug, Clone)]
pub struct Outcomes {
    rows: GroupCommit<Rows>,
}

impl Outcomes {
    /// Writes through `store`, its group commits counted in `metrics`.
    pub fn new(store: &Store, metrics: &GroupCommitMetrics) -> Self {
        Self { rows: GroupCommit::new(Rows { store: store.shared() }, metrics, "outcome") }
    }

    /// Stores `outcome` on its row; returns once it is committed.
    pub(crate) async fn write(&self, outcome: Outcome) -> Result<(), CommandError> {
        match self.rows.write(Arc::new(outcome)).await {
            Ok(()) => Ok(()),
            // Another worker took the request over (its lease ran out) and records its own run,
            // or the row is gone (the retention sweep does not take unfinished rows; an operator
            // may have deleted it): nothing is left to record on.
            Err(DbErr::RecordNotInserted) => Ok(()),
            Err(error) => Err(CommandError::internal(error)),
        }
    }
}

/// What a finished run leaves on its row.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub id: Uuid,
    /// The row's attempts as the run found them. A row that counts more was taken over by another
    /// worker meanwhile (its lease ran out): this outcome is not written, the other run's is.
    pub found_attempts: i32,
    pub status: InboundStatus,
    pub http_status: i32,
    pub message: String,
    /// The reply's data, on success.
    pub data: Option<JsonText>,
    /// The error's details, on failure.
    pub errors: Option<JsonText>,
    /// The configuration version it ran with; `None` keeps the one stored (a run that found no
    /// configuration).
    pub config_version: Option<i32>,
    /// Frees the idempotency key: the run failed, and the sender may try again.
    pub free_key: bool,
    /// The run was the request's last: its sealed secret headers go.
    pub forget_secrets: bool,
    pub duration_ms: i64,
    /// When it finished; `None` while it waits for another run.
    pub completed_at: Option<Timestamp>,
    /// When it runs again (it goes back to `Pending`, its failure kept on it meanwhile).
    pub next_attempt_at: Option<Timestamp>,
    /// The run is counted in the row's attempts now: it was handed over in memory. (A claim
    /// counts the run it takes a row for; a synchronous run is counted when its row is written.)
    pub counts_attempt: bool,
}

impl Outcome {
    /// The last run of request `id`, whose row counted `found_attempts` when it ran, which ended
    /// in `result` after `duration_ms`.
    pub(crate) fn finished(
        id: Uuid,
        found_attempts: i32,
        result: Result<&Reply, &CommandError>,
        duration_ms: i64,
        config_version: Option<i32>,
    ) -> Result<Self, CommandError> {
        let (status, http_status, message) = outcome_columns(result);
        let (data, errors) = documents(result)?;
        Ok(Self {
            id,
            found_attempts,
            status,
            http_status,
            message: stored_text(message.into_owned()),
            data,
            errors,
            config_version,
            free_key: result.is_err(),
            forget_secrets: true,
            duration_ms,
            completed_at: Some(hookbus_core::now()),
            next_attempt_at: None,
            counts_attempt: false,
        })
    }

    /// Makes it the outcome of a run handed over in memory, which no claim counted.
    pub(crate) fn counting_its_attempt(self) -> Self {
        Self { counts_attempt: true, ..self }
    }

    /// Makes a failed run one to try again at `next`: the request waits, still sealed, and keeps
    /// its idempotency key (a repeat meanwhile is told it is queued, rather than run beside it).
    pub(crate) fn retry_at(self, next: Timestamp) -> Self {
        Self {
            status: InboundStatus::Pending,
            free_key: false,
            forget_secrets: false,
            completed_at: None,
            next_attempt_at: Some(next),
            ..self
        }
    }
}

/// A run's `data` (the reply's, on success) and `errors` (the error's details, on failure).
pub(crate) fn documents(
    result: Result<&Reply, &CommandError>,
) -> Result<(Option<JsonText>, Option<JsonText>), CommandError> {
    Ok(match result {
        Ok(reply) => (Some(JsonText::of(&reply.data)?), None),
        Err(error) => (None, Some(JsonText::of(&error.details())?)),
    })
}

#[derive(Debug)]
struct Rows {
    store: Store,
}

impl GroupWrite for Rows {
    type Item = Outcome;
    /// Outcomes per commit: on SQLite an `UPDATE` each in the one transaction, on PostgreSQL an
    /// element of each column's array.
    const BUDGET: usize = 256;

    fn in_flight(&self) -> usize {
        self.store.commits_in_flight()
    }

    fn weight(&self, _outcome: &Outcome) -> usize {
        1
    }

    /// One statement on PostgreSQL; on SQLite one `UPDATE` an outcome, in one transaction. An
    /// outcome whose row is gone, or counts a later run, is not written.
    async fn write(&self, outcomes: &[Arc<Outcome>]) -> Result<Vec<bool>, DbErr> {
        if self.store.db().get_database_backend() == DbBackend::Postgres {
            let updated: HashSet<Uuid> =
                update_arrays(self.store.db().pool().get_postgres_connection_pool(), outcomes).await?;
            return Ok(outcomes.iter().map(|outcome| updated.contains(&outcome.id)).collect());
        }
        let txn = self.store.begin_write().await?;
        let mut written = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            let update = update_one(outcome).exec(&*txn).await?;
            written.push(update.rows_affected > 0);
        }
        txn.commit().await?;
        Ok(written)
    }
}

/// The `UPDATE` of one outcome's row.
fn update_one(outcome: &Outcome) -> sea_orm::UpdateMany<entity::Entity> {
    use entity::Column;
    let keep_or_null = |clear: bool, column: Column| -> Expr {
        if clear { Expr::value(Option::<String>::None) } else { Expr::col(column) }
    };
    let mut update = entity::Entity::update_many()
        .col_expr(Column::Status, Expr::value(outcome.status))
        .col_expr(Column::HttpStatus, Expr::value(Some(outcome.http_status)))
        .col_expr(Column::Message, Expr::value(Some(outcome.message.clone())))
        .col_expr(Column::Data, Expr::value(outcome.data.clone()))
        .col_expr(Column::Errors, Expr::value(outcome.errors.clone()))
        .col_expr(Column::IdempotencyValue, keep_or_null(outcome.free_key, Column::IdempotencyValue))
        .col_expr(Column::SealedHeaders, keep_or_null(outcome.forget_secrets, Column::SealedHeaders))
        .col_expr(Column::DurationMs, Expr::value(Some(outcome.duration_ms)))
        .col_expr(Column::CompletedAt, Expr::value(outcome.completed_at))
        .col_expr(Column::NextAttemptAt, Expr::value(outcome.next_attempt_at))
        .col_expr(Column::LeaseUntil, Expr::value(Option::<Timestamp>::None))
        .filter(Column::Id.eq(outcome.id))
        .filter(Column::Attempts.eq(outcome.found_attempts));
    if let Some(version) = outcome.config_version {
        update = update.col_expr(Column::ConfigVersion, Expr::value(Some(version)));
    }
    if outcome.counts_attempt {
        update = update.col_expr(Column::Attempts, Expr::col(Column::Attempts).add(1));
    }
    update
}

/// PostgreSQL: the outcomes as one array per column, joined to their rows in one `UPDATE` (one
/// statement text for any number, prepared once per connection). Returns the ids updated.
async fn update_arrays(pool: &PgPool, outcomes: &[Arc<Outcome>]) -> Result<HashSet<Uuid>, DbErr> {
    const UPDATE: &str = "UPDATE inbound_events AS e SET status = o.status, http_status = o.http_status, \
        message = o.message, data = o.data, errors = o.errors, \
        config_version = COALESCE(o.config_version, e.config_version), \
        idempotency_value = CASE WHEN o.free_key THEN NULL ELSE e.idempotency_value END, \
        sealed_headers = CASE WHEN o.forget_secrets THEN NULL ELSE e.sealed_headers END, \
        duration_ms = o.duration_ms, completed_at = o.completed_at, next_attempt_at = o.next_attempt_at, \
        lease_until = NULL, attempts = e.attempts + CASE WHEN o.counts_attempt THEN 1 ELSE 0 END \
        FROM unnest($1::uuid[], $2::text[], $3::int4[], $4::text[], $5::text[], $6::text[], $7::int4[], \
        $8::bool[], $9::bool[], $10::int8[], $11::timestamptz[], $12::timestamptz[], $13::bool[], $14::int4[]) \
        AS o(id, status, http_status, message, data, errors, config_version, free_key, forget_secrets, \
        duration_ms, completed_at, next_attempt_at, counts_attempt, found_attempts) \
        WHERE e.id = o.id AND e.attempts = o.found_attempts RETURNING e.id";
    // One column's values, borrowed from the outcomes.
    macro_rules! array {
        (|$o:ident| $view:expr) => {
            outcomes.iter().map(|$o| $view).collect::<Vec<_>>()
        };
    }
    sqlx::query_scalar::<_, Uuid>(UPDATE)
        .bind(array!(|o| o.id))
        .bind(array!(|o| o.status.as_str()))
        .bind(array!(|o| o.http_status))
        .bind(array!(|o| o.message.as_str()))
        .bind(array!(|o| o.data.as_ref().map(JsonText::as_str)))
        .bind(array!(|o| o.errors.as_ref().map(JsonText::as_str)))
        .bind(array!(|o| o.config_version))
        .bind(array!(|o| o.free_key))
        .bind(array!(|o| o.forget_secrets))
        .bind(array!(|o| o.duration_ms))
        .bind(array!(|o| o.completed_at))
        .bind(array!(|o| o.next_attempt_at))
        .bind(array!(|o| o.counts_attempt))
        .bind(array!(|o| o.found_attempts))
        .fetch_all(pool)
        .await
        .map(|updated| updated.into_iter().collect())
        .map_err(hookbus_store::query_error)
}
