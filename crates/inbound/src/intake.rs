//! The rows a request needs before it runs (a queued request's, so that it survives a crash after
//! its 202; an idempotent one's, for its unique key), written in groups: the requests that arrive
//! while one commit is under way share the next (see [`GroupCommit`]). Each request is answered
//! only once its row is committed; a row the database refuses (its idempotency key taken) fails
//! only its own request.

use std::{collections::HashSet, sync::Arc};

use hookbus_store::{GroupCommit, GroupCommitMetrics, GroupWrite, Store};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryTrait};
use sqlx::postgres::PgPool;
use uuid::Uuid;

use crate::entity;

/// Writes the rows of requests that need theirs first.
#[derive(Debug, Clone)]
pub struct Intake {
    rows: GroupCommit<Rows>,
}

impl Intake {
    /// Writes through `store`, its group commits counted in `metrics`.
    pub fn new(store: &Store, metrics: &GroupCommitMetrics) -> Self {
        Self { rows: GroupCommit::new(Rows { store: store.shared() }, metrics, "intake") }
    }

    /// Inserts `row`; returns once it is committed.
    pub(crate) async fn insert(&self, row: entity::ActiveModel) -> Result<(), DbErr> {
        self.rows.write(Arc::new(row)).await
    }
}

#[derive(Debug)]
struct Rows {
    store: Store,
}

impl GroupWrite for Rows {
    type Item = entity::ActiveModel;
    /// Rows per commit: one multi-row INSERT, well under both databases' limits on bound
    /// parameters (21 columns a row).
    const BUDGET: usize = 256;

    fn in_flight(&self) -> usize {
        self.store.commits_in_flight()
    }

    fn weight(&self, _row: &entity::ActiveModel) -> usize {
        1
    }

    /// One statement, atomic on its own, in this instance's writer turn on SQLite. A row whose
    /// idempotency key is taken is left out (`ON CONFLICT DO NOTHING`), so that a repeat does not
    /// fail the requests it arrived with; its request learns that from the missing id.
    async fn write(&self, rows: &[Arc<entity::ActiveModel>]) -> Result<Vec<bool>, DbErr> {
        let backend = self.store.db().get_database_backend();
        let inserted: HashSet<Uuid> = if backend == DbBackend::Postgres {
            let pool = self.store.db().pool().get_postgres_connection_pool();
            insert_arrays(pool, rows).await?
        } else {
            let mut insert = entity::Entity::insert_many(rows.iter().map(|row| (**row).clone())).build(backend);
            insert.sql.push_str(" ON CONFLICT DO NOTHING RETURNING id");
            let inserted = self.store.write(|db| db.query_all_raw(insert)).await?;
            inserted.iter().map(|row| row.try_get("", "id")).collect::<Result<_, _>>()?
        };
        Ok(rows.iter().map(|row| row.id.try_as_ref().is_some_and(|id| inserted.contains(id))).collect())
    }
}

/// PostgreSQL: the rows as one array per column, unnested into one `INSERT`. Its text is the same
/// for any number of rows, so each connection prepares it once; a multi-row `VALUES` list has a
/// text per row count, and parsing and planning one of 21 columns a row cost PostgreSQL more
/// than inserting the rows. Returns the ids inserted (a taken idempotency key leaves its row out).
async fn insert_arrays(pool: &PgPool, rows: &[Arc<entity::ActiveModel>]) -> Result<HashSet<Uuid>, DbErr> {
    const INSERT: &str = "INSERT INTO inbound_events (id, config_id, config_key, request, raw_body, \
        idempotency_value, duplicate_of, replay_of, status, http_status, message, data, errors, attempts, \
        next_attempt_at, lease_until, duration_ms, received_at, completed_at, sealed_headers, config_version) \
        SELECT * FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::text[], $5::text[], $6::text[], \
        $7::uuid[], $8::uuid[], $9::text[], $10::int4[], $11::text[], $12::text[], $13::text[], $14::int4[], \
        $15::timestamptz[], $16::timestamptz[], $17::int8[], $18::timestamptz[], $19::timestamptz[], \
        $20::text[], $21::int4[]) \
        ON CONFLICT DO NOTHING RETURNING id";
    let rows: Vec<&entity::ActiveModel> = rows.iter().map(|row| &**row).collect();
    let column = |name: &str| DbErr::Custom(format!("an inbound row without its {name}"));
    // Each column's values, borrowed from the rows.
    macro_rules! array {
        ($field:ident) => {
            rows.iter()
                .map(|row| row.$field.try_as_ref().ok_or_else(|| column(stringify!($field))))
                .collect::<Result<Vec<_>, DbErr>>()?
        };
        ($field:ident, $view:expr) => {
            rows.iter()
                .map(|row| row.$field.try_as_ref().map($view).ok_or_else(|| column(stringify!($field))))
                .collect::<Result<Vec<_>, DbErr>>()?
        };
    }
    let inserted = sqlx::query_scalar::<_, Uuid>(INSERT)
        .bind(array!(id))
        .bind(array!(config_id))
        .bind(array!(config_key, String::as_str))
        .bind(array!(request, entity::JsonText::as_str))
        .bind(array!(raw_body, String::as_str))
        .bind(array!(idempotency_value, Option::as_deref))
        .bind(array!(duplicate_of))
        .bind(array!(replay_of))
        .bind(array!(status, |status: &crate::InboundStatus| status.as_str()))
        .bind(array!(http_status))
        .bind(array!(message, Option::as_deref))
        .bind(array!(data, |data: &Option<entity::JsonText>| data.as_ref().map(entity::JsonText::as_str)))
        .bind(array!(errors, |errors: &Option<entity::JsonText>| errors.as_ref().map(entity::JsonText::as_str)))
        .bind(array!(attempts))
        .bind(array!(next_attempt_at))
        .bind(array!(lease_until))
        .bind(array!(duration_ms))
        .bind(array!(received_at))
        .bind(array!(completed_at))
        .bind(array!(sealed_headers, Option::as_deref))
        .bind(array!(config_version))
        .fetch_all(pool)
        .await
        .map_err(hookbus_store::query_error)?;
    Ok(inserted.into_iter().collect())
}
