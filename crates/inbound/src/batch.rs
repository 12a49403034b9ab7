//! Logging plain requests off the request path.
//!
//! A request with neither an idempotency key nor `respondAsync` needs its log row only for the
//! record, so the row is written once, with its outcome, by a background task that stores many
//! rows per statement: binary `COPY ... FROM STDIN` on PostgreSQL (the database's bulk path: no
//! parameters to bind, no plan, no text to parse), multi-row `INSERT`s on SQLite. Requests that
//! do need their row first (idempotent ones, for the unique key; queued ones, to survive a crash)
//! are written directly. A crash can lose the plain log rows of the last few milliseconds (the
//! batch filling and the batch being written), never a handler's effects.

use std::{
    sync::{
        Arc, LazyLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use hookbus_core::CommandError;
use hookbus_store::Store;
use sea_orm::DbBackend;
use sqlx::{
    AssertSqlSafe,
    postgres::{PgPool, PgPoolCopyExt},
    sqlite::SqlitePool,
};
use tokio::sync::{Notify, Semaphore, mpsc};

use crate::{
    copy::{COLUMN_COUNT, COLUMNS},
    row::LogRow,
};

/// Rows the writer takes from the queue at once: one COPY, or one transaction of INSERTs.
const BATCH: usize = 500;

/// How long the writer lets a batch fill after its first row. Every transaction costs a commit
/// (on SQLite, a WAL append of each page it touched); without the wait, batches under load stay a
/// few dozen rows long and their commits take a large share of the router's CPU.
const LINGER: Duration = Duration::from_millis(10);

/// Rows per INSERT on SQLite.
const ROWS_PER_INSERT: usize = 32;

/// Statements in flight at once on PostgreSQL, each on its own connection: with one, the writer's
/// round trips bound the router's throughput (the server sits partly idle); with more, batches get
/// smaller and PostgreSQL spends more per row. SQLite takes one writer at a time anyway.
const POSTGRES_WRITES_IN_FLIGHT: usize = 2;

/// Sends finished plain log rows to the writer task.
#[derive(Debug, Clone)]
pub struct LogWriter {
    rows: mpsc::Sender<LogRow>,
    progress: Arc<Progress>,
}

/// How far the writer got: rows handed to it and rows it finished with (stored, or given up on
/// and logged), and a wake-up for whoever waits for the two to meet.
#[derive(Debug, Default)]
struct Progress {
    sent: AtomicU64,
    done: AtomicU64,
    changed: Notify,
}

impl LogWriter {
    /// Starts the writer task on `store`. `capacity` bounds the rows waiting: when it is full,
    /// requests wait for the writer (back-pressure) rather than dropping rows.
    pub fn spawn(store: Store, capacity: usize) -> Self {
        let (rows, mut queue) = mpsc::channel::<LogRow>(capacity);
        let sink = Arc::new(Sink::new(store));
        let in_flight = match sink.as_ref() {
            Sink::Postgres(_) => POSTGRES_WRITES_IN_FLIGHT,
            Sink::Sqlite(..) => 1,
        };
        let permits = Arc::new(Semaphore::new(in_flight));
        let progress = Arc::new(Progress::default());
        let done = Arc::clone(&progress);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            // The turn first, then the rows: taken before the wait for a turn, a batch held only
            // what had come since the last one was taken, and the rows arriving during the wait
            // went to the batch after it.
            while let Ok(permit) = Arc::clone(&permits).acquire_owned().await {
                if queue.recv_many(&mut batch, BATCH).await == 0 {
                    break;
                }
                if batch.len() < BATCH {
                    tokio::time::sleep(LINGER).await;
                    while batch.len() < BATCH {
                        match queue.try_recv() {
                            Ok(row) => batch.push(row),
                            Err(_) => break,
                        }
                    }
                }
                let rows = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                let sink = Arc::clone(&sink);
                let done = Arc::clone(&done);
                tokio::spawn(async move {
                    let count = rows.len() as u64;
                    sink.store(rows).await;
                    drop(permit);
                    done.done.fetch_add(count, Ordering::SeqCst);
                    done.changed.notify_waiters();
                });
            }
        });
        Self { rows, progress }
    }

    pub(crate) async fn write(&self, row: LogRow) {
        self.progress.sent.fetch_add(1, Ordering::SeqCst);
        // Fails only when the writer task is gone (the runtime is stopping).
        if self.rows.send(row).await.is_err() {
            self.progress.done.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Waits until every row handed to the writer so far, and since, is written: the log is
    /// complete for now.
    pub async fn idle(&self) {
        loop {
            let changed = self.progress.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.progress.done.load(Ordering::SeqCst) >= self.progress.sent.load(Ordering::SeqCst) {
                return;
            }
            changed.await;
        }
    }
}

/// Where rows go.
#[derive(Debug)]
enum Sink {
    Postgres(PgPool),
    /// SQLite's pool, and the store whose writer turn its transactions take.
    Sqlite(Store, SqlitePool),
}

impl Sink {
    fn new(store: Store) -> Self {
        match store.db().pool().get_database_backend() {
            DbBackend::Postgres => Self::Postgres(store.db().pool().get_postgres_connection_pool().clone()),
            _ => {
                let pool = store.db().pool().get_sqlite_connection_pool().clone();
                Self::Sqlite(store, pool)
            }
        }
    }

    /// Stores `rows`; when the batch fails, each row on its own, so that one row the database
    /// refuses costs only itself. (Failures are logged where they happen.)
    async fn store(&self, rows: Vec<LogRow>) {
        if self.write(&rows).await.is_ok() {
            return;
        }
        let mut lost = 0;
        if rows.len() > 1 {
            for row in &rows {
                lost += usize::from(self.write(std::slice::from_ref(row)).await.is_err());
            }
            tracing::warn!(rows = rows.len(), lost, "inbound log batch failed; its rows were stored one by one");
        }
        if lost == rows.len() {
            // A failing database: don't spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn write(&self, rows: &[LogRow]) -> Result<(), CommandError> {
        match self {
            Self::Postgres(pool) => copy(pool, rows).await.map_err(CommandError::internal),
            Self::Sqlite(store, pool) => insert(store, pool, rows).await.map_err(CommandError::internal),
        }
    }
}

/// `COPY inbound_events FROM STDIN` in PostgreSQL's binary format (see [`copy`](crate::copy)).
async fn copy(pool: &PgPool, rows: &[LogRow]) -> Result<(), sqlx::Error> {
    static STATEMENT: LazyLock<String> =
        LazyLock::new(|| format!("COPY inbound_events ({COLUMNS}) FROM STDIN (FORMAT binary)"));
    let mut copy = pool.copy_in_raw(STATEMENT.as_str()).await?;
    copy.send(crate::copy::encode(rows)).await?;
    copy.finish().await?;
    Ok(())
}

/// Multi-row `INSERT`s of up to [`ROWS_PER_INSERT`] rows in one write transaction, bound through
/// sqlx directly: the shared text columns are bound without a copy (sea-orm's values would take
/// each column by value, and then again into sqlx's arguments). A statement of the full size is
/// prepared once and then found in the connection's statement cache; one the size of a whole
/// batch would be parsed again for nearly every batch (batches vary in size), and parsing costs
/// SQLite more than inserting.
async fn insert(store: &Store, pool: &SqlitePool, rows: &[LogRow]) -> Result<(), sqlx::Error> {
    static FULL_INSERT: LazyLock<String> = LazyLock::new(|| insert_sql(ROWS_PER_INSERT));
    // The same turn as the store's own write transactions, taken at `BEGIN` (see `begin_write`).
    let _turn = store.write_turn().await;
    let mut txn = pool.begin_with("BEGIN IMMEDIATE").await?;
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut insert = if chunk.len() == ROWS_PER_INSERT {
            sqlx::query(FULL_INSERT.as_str())
        } else {
            sqlx::query(AssertSqlSafe(insert_sql(chunk.len())))
        };
        for row in chunk {
            insert = insert
                .bind(row.id)
                .bind(row.config_id)
                .bind(row.config_key.as_str())
                .bind(row.request.as_str())
                .bind(row.raw_body.as_str())
                .bind(row.duplicate_of)
                .bind(row.status.as_str())
                .bind(row.http_status)
                .bind(row.message.as_deref())
                .bind(row.data.as_deref())
                .bind(row.errors.as_deref())
                .bind(row.attempts)
                .bind(row.duration_ms)
                .bind(row.received_at)
                .bind(row.completed_at)
                .bind(row.config_version);
        }
        insert.execute(&mut *txn).await?;
    }
    txn.commit().await
}

/// `INSERT INTO inbound_events (...) VALUES (?, ...), ...` for `rows` rows.
fn insert_sql(rows: usize) -> String {
    let placeholders = format!("({})", vec!["?"; COLUMN_COUNT].join(", "));
    format!("INSERT INTO inbound_events ({COLUMNS}) VALUES {}", vec![placeholders; rows].join(", "))
}
