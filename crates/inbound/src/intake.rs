//! The rows a request needs before it runs (a queued request's, so that it survives a crash after
//! its 202; an idempotent one's, for its unique key), written in groups: the requests that arrive
//! while one commit is under way share the next (see [`GroupCommit`]). Each request is answered
//! only once its row is committed; a row the database refuses (its idempotency key taken) fails
//! only its own request.

use std::{collections::HashSet, sync::Arc};

use hookbus_store::{GroupCommit, GroupCommitMetrics, GroupWrite, Store};
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, QueryTrait};
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
        let mut insert = entity::Entity::insert_many(rows.iter().map(|row| (**row).clone())).build(backend);
        insert.sql.push_str(" ON CONFLICT DO NOTHING RETURNING id");
        let inserted = self.store.write(|db| db.query_all_raw(insert)).await?;
        let inserted: HashSet<Uuid> = inserted.iter().map(|row| row.try_get("", "id")).collect::<Result<_, _>>()?;
        Ok(rows.iter().map(|row| row.id.try_as_ref().is_some_and(|id| inserted.contains(id))).collect())
    }
}
