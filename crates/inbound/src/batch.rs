//! Logging plain requests off the request path.
//!
//! A request with neither an idempotency key nor `respondAsync` needs its log row only for the
//! record, so the row is written once, with its outcome, by a background task that inserts many
//! rows per statement. Requests that do need their row first (idempotent ones, for the unique key;
//! queued ones, to survive a crash) are written directly. A crash can lose the last few
//! milliseconds of plain log rows, never a handler's effects.

use std::{sync::Arc, time::Duration};

use hookbus_store::Store;
use sea_orm::{DbBackend, EntityTrait};
use tokio::sync::{Semaphore, mpsc};

use crate::entity;

/// Rows per INSERT.
const BATCH: usize = 500;

/// INSERTs in flight at once on PostgreSQL, each on its own connection: one at a time, the
/// writer's round trips bounded the router's throughput (the server sat partly idle). SQLite
/// takes one writer at a time anyway.
const POSTGRES_INSERTS_IN_FLIGHT: usize = 4;

/// Sends finished plain log rows to the writer task.
#[derive(Debug, Clone)]
pub struct LogWriter {
    rows: mpsc::Sender<entity::ActiveModel>,
}

impl LogWriter {
    /// Starts the writer task on `store`. `capacity` bounds the rows waiting: when it is full,
    /// requests wait for the writer (back-pressure) rather than dropping rows.
    pub fn spawn(store: Store, capacity: usize) -> Self {
        let (rows, mut queue) = mpsc::channel::<entity::ActiveModel>(capacity);
        let in_flight = match store.db().get_database_backend() {
            DbBackend::Postgres => POSTGRES_INSERTS_IN_FLIGHT,
            _ => 1,
        };
        let permits = Arc::new(Semaphore::new(in_flight));
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while queue.recv_many(&mut batch, BATCH).await > 0 {
                let rows = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { break };
                let db = store.db().clone();
                tokio::spawn(async move {
                    if let Err(e) = entity::Entity::insert_many(rows).exec(&db).await {
                        hookbus_core::CommandError::internal(e);
                        // A failing database: don't spin.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    drop(permit);
                });
            }
        });
        Self { rows }
    }

    pub(crate) async fn write(&self, row: entity::ActiveModel) {
        // Fails only when the writer task is gone (the runtime is stopping).
        let _ = self.rows.send(row).await;
    }
}
