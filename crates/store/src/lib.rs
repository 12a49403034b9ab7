//! Database access shared by the feature crates: connecting to SQLite or PostgreSQL, applying the
//! migrations, and turning database errors into client-facing errors in one place.
//!
//! Feature crates own their entities and queries; this crate owns only what they share.

use std::{ops::Deref, sync::Arc, time::Duration};

use hookbus_core::{CommandError, Page, PageRequest};
use hookbus_migrations::Migrator;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, EntityTrait,
    PaginatorTrait, QuerySelect, Select, SqlErr, SqliteTransactionMode, TransactionOptions, TransactionTrait,
    sea_query::{Expr, ExprTrait, IntoTableRef, Query, SelectStatement},
};
use sea_orm_migration::MigratorTrait;

mod group;
mod unit;

pub use group::{GroupCommit, GroupCommitMetrics, GroupWrite};
pub use unit::{Db, UnitError, UnitInUse, UnitOfWork};

/// The database, and on SQLite the queue its writers take turns in.
///
/// SQLite allows one writer at a time. Left to itself, a waiting writer sleeps and retries in
/// SQLite's busy handler, which is unfair: under load some writers wait for seconds. Writers of one
/// instance therefore queue first-come-first-served on an async mutex before `BEGIN`. PostgreSQL
/// needs no gate.
///
/// A store made [`within`](Self::within) a [`UnitOfWork`] writes in the unit's transaction.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    writers: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl Store {
    /// Opens the pool; see [`connect`].
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, DbErr> {
        connect(url, max_connections).await.map(Self::new)
    }

    pub fn new(db: DatabaseConnection) -> Self {
        let writers = (db.get_database_backend() == DbBackend::Sqlite).then(Arc::default);
        Self { db: Db { conn: db, unit: None }, writers }
    }

    /// This store, writing in `unit`.
    pub fn within(&self, unit: &Arc<UnitOfWork>) -> Self {
        Self { db: Db { conn: self.db.conn.clone(), unit: Some(Arc::clone(unit)) }, writers: self.writers.clone() }
    }

    /// This store outside any unit of work.
    pub fn shared(&self) -> Self {
        Self { db: Db { conn: self.db.conn.clone(), unit: None }, writers: self.writers.clone() }
    }

    /// How many commits of one kind of write should be under way at once (see
    /// [`GroupWrite::in_flight`]): PostgreSQL runs commits side by side and two keep it busy while
    /// one waits for its WAL flush; SQLite takes one writer at a time anyway.
    pub fn commits_in_flight(&self) -> usize {
        match self.db.get_database_backend() {
            DbBackend::Postgres => 2,
            _ => 1,
        }
    }

    /// Whether statements go to a unit of work.
    pub fn in_unit(&self) -> bool {
        self.db.unit.is_some()
    }

    /// Refuses (422, `detail` saying why) what cannot run inside a unit of work: it would wait for
    /// work that starts only once the unit commits.
    pub fn refuse_in_unit(&self, detail: &str) -> Result<(), CommandError> {
        if !self.in_unit() {
            return Ok(());
        }
        Err(CommandError::Rejected {
            status: 422,
            message: "Not available in routed requests".into(),
            errors: vec![detail.to_owned()],
        })
    }

    /// Runs `hook` once the writes are durable: at once outside a unit of work, after its commit
    /// inside one (never, if it rolls back).
    pub fn after_commit(&self, hook: impl FnOnce() + Send + 'static) {
        match &self.db.unit {
            Some(unit) => unit.after_commit(Box::new(hook)),
            None => hook(),
        }
    }

    /// Runs `hook` if the unit of work this store writes in rolls back; outside one, never.
    pub fn on_rollback(&self, hook: impl FnOnce() + Send + 'static) {
        if let Some(unit) = &self.db.unit {
            unit.on_rollback(Box::new(hook));
        }
    }

    /// For reads, and for writes of a single statement off the busy paths; a single statement
    /// that competes with the busy writers goes through [`write`](Self::write).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Runs a write of a single statement in this instance's writer turn on SQLite (at once on
    /// PostgreSQL). Without the turn the statement would sleep in SQLite's busy handler behind
    /// whichever transaction holds it, and an unlucky request waits far longer than the queue
    /// ahead of it. Writes of several statements take [`begin_write`](Self::begin_write).
    pub async fn write<'a, T, F, Fut>(&'a self, statement: F) -> T
    where
        F: FnOnce(&'a Db) -> Fut,
        Fut: std::future::Future<Output = T> + 'a,
    {
        let _turn = self.write_turn().await;
        statement(&self.db).await
    }

    /// Waits for this instance's writer turn on SQLite (at once on PostgreSQL): what
    /// [`write`](Self::write) and [`begin_write`](Self::begin_write) hold while they write, and
    /// what a writer outside sea-orm (the inbound log's bulk insert) takes around its transaction.
    pub async fn write_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        if self.in_unit() {
            // The unit's transaction holds the turn from its first write to its end.
            return None;
        }
        match &self.writers {
            Some(writers) => Some(Arc::clone(writers).lock_owned().await),
            None => None,
        }
    }

    /// Begins a transaction that will write.
    ///
    /// On SQLite it waits its turn among this instance's writers, then takes the write lock at
    /// `BEGIN` (`IMMEDIATE`): a deferred transaction that reads and then writes would fail with
    /// `SQLITE_BUSY` when another writer got there first. PostgreSQL ignores the mode.
    pub async fn begin_write(&self) -> Result<WriteTransaction, DbErr> {
        if let Some(unit) = &self.db.unit {
            // A savepoint in the unit's transaction: its commit is the unit's to make.
            let savepoint = unit.begin().await?.begin().await?;
            return Ok(WriteTransaction { txn: savepoint, _turn: None });
        }
        self.begin_own_write().await
    }

    /// [`begin_write`](Self::begin_write) on the pool.
    pub(crate) async fn begin_own_write(&self) -> Result<WriteTransaction, DbErr> {
        let turn = self.write_turn().await;
        let options = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        };
        let txn = self.db.conn.begin_with_options(options).await?;
        Ok(WriteTransaction { txn, _turn: turn })
    }

    /// Deletes the rows of `table` whose `key` (a column, or a tuple of the key's columns) is among
    /// those `select` returns, at most [`DELETE_CHUNK`] rows per statement, each statement in its
    /// own writer turn. Retention sweeps go through it: a sweep of a long table lets the other
    /// writers (the inbound log's batches above all) go on between chunks instead of waiting behind
    /// one delete of a day's rows, and PostgreSQL never holds one transaction over all of them.
    /// Returns how many rows went.
    pub async fn delete_in_chunks(
        &self,
        table: impl IntoTableRef,
        key: Expr,
        mut select: SelectStatement,
    ) -> Result<u64, DbErr> {
        select.limit(DELETE_CHUNK);
        let delete = Query::delete().from_table(table).and_where(key.in_subquery(select)).to_owned();
        let statement = self.db.get_database_backend().build(&delete);
        let mut deleted = 0;
        loop {
            let chunk = self.write(|db| db.execute_raw(statement.clone())).await?.rows_affected();
            deleted += chunk;
            if chunk < DELETE_CHUNK {
                return Ok(deleted);
            }
        }
    }
}

/// Work that one instance at a time does for every instance sharing the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Singleton {
    /// The inbound log's retention sweep (with the provider routes' deduplication rows).
    InboundRetention,
    /// The delivery history's retention sweep.
    OutboundRetention,
}

impl Singleton {
    /// The PostgreSQL advisory lock key: "hookbus" in ASCII in the high bytes, then the job.
    pub fn lock_key(self) -> i64 {
        const HOOKBUS: i64 = 0x686f_6f6b_6275_0000;
        HOOKBUS
            | match self {
                Self::InboundRetention => 1,
                Self::OutboundRetention => 2,
            }
    }
}

impl Store {
    /// Runs `work` unless another instance on the database is running the same `job`, in which
    /// case this one skips it (`None`). On PostgreSQL a transaction holds the job's advisory lock
    /// while `work` runs (on connections of its own); it writes nothing, so it holds back neither
    /// vacuum nor other writers. On SQLite one instance owns the file: `work` always runs.
    pub async fn exclusively<T, Fut>(&self, job: Singleton, work: impl FnOnce() -> Fut) -> Result<Option<T>, DbErr>
    where
        Fut: std::future::Future<Output = T>,
    {
        if self.db.get_database_backend() != DbBackend::Postgres {
            return Ok(Some(work().await));
        }
        let txn = self.db.conn.begin().await?;
        let locked = txn
            .query_one_raw(sea_orm::Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_try_advisory_xact_lock($1) AS locked",
                [job.lock_key().into()],
            ))
            .await?
            .map(|row| row.try_get::<bool>("", "locked"))
            .transpose()?
            .unwrap_or(false);
        if !locked {
            txn.rollback().await?;
            return Ok(None);
        }
        let done = work().await;
        txn.commit().await?;
        Ok(Some(done))
    }
}

/// Rows [`Store::delete_in_chunks`] deletes per statement: on SQLite a few tens of milliseconds of
/// the writer's turn.
pub const DELETE_CHUNK: u64 = 5_000;

/// A write transaction holding its writer's turn until it ends. Use it as a connection through
/// `&*txn`.
#[derive(Debug)]
pub struct WriteTransaction {
    txn: DatabaseTransaction,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl WriteTransaction {
    pub async fn commit(self) -> Result<(), DbErr> {
        self.txn.commit().await
    }
}

impl Deref for WriteTransaction {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

/// A pooled connection idle this long is checked (a round trip) before it is handed out: the
/// database, a proxy or a firewall may have dropped it meanwhile. One used more recently is handed
/// out as it is: the pool checks every connection as it takes it back, and checking again on every
/// checkout would add a round trip to every statement.
const STALE_AFTER: Duration = Duration::from_secs(1);

/// Opens a pool. A SQLite file is created when missing; every connection runs in WAL mode, so
/// readers do not wait for the writer, with `synchronous = NORMAL` (in WAL mode a commit is
/// durable against a crash of the process, and fsyncs only at checkpoints) and foreign keys on.
///
/// These are set on each connection as it opens: a pragma run once through the pool reaches only
/// the connection that ran it (`synchronous` and `foreign_keys` are per connection).
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};

    let url = if url.starts_with("sqlite:") && !url.contains("mode=") && !url.contains(":memory:") {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}mode=rwc")
    } else {
        url.to_owned()
    };
    let in_memory = url.contains(":memory:");
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire_if_idle_for(STALE_AFTER)
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(move |sqlite| {
            let sqlite = sqlite.synchronous(SqliteSynchronous::Normal).foreign_keys(true);
            if in_memory { sqlite } else { sqlite.journal_mode(SqliteJournalMode::Wal) }
        });
    Database::connect(options).await
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// What the database server is set to that hookbus depends on, as warnings for the log at
/// start-up: on PostgreSQL, autovacuum must be on, or the queue tables keep every dead row until
/// someone vacuums them by hand.
pub async fn server_warnings(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(Vec::new());
    }
    let statement = sea_orm::Statement::from_string(
        DbBackend::Postgres,
        "SELECT current_setting('autovacuum') = 'on' AS autovacuum, current_setting('track_counts') = 'on' AS counts",
    );
    let Some(row) = db.query_one_raw(statement).await? else { return Ok(Vec::new()) };
    let mut warnings = Vec::new();
    if !row.try_get::<bool>("", "autovacuum")? || !row.try_get::<bool>("", "counts")? {
        warnings.push(
            "PostgreSQL runs with autovacuum (or track_counts) off: the delivery queue and the notifications keep \
             their dead rows until vacuumed by hand"
                .to_owned(),
        );
    }
    Ok(warnings)
}

/// One page of `query` (already filtered and ordered) with the total it selects, each row mapped
/// to what the answer shows.
pub async fn fetch_page<E, T>(
    query: Select<E>,
    page: PageRequest,
    db: &impl ConnectionTrait,
    view: impl FnMut(E::Model) -> T,
) -> Result<Page<T>, CommandError>
where
    E: EntityTrait,
    E::Model: Sync,
{
    let total = query.clone().count(db).await.or_internal()?;
    let rows = query.offset(page.offset()).limit(page.size()).all(db).await.or_internal()?;
    Ok(Page::new(rows.into_iter().map(view).collect(), total, page))
}

/// Whether the database answers.
pub async fn ping(db: &DatabaseConnection) -> bool {
    db.ping().await.is_ok()
}

/// The error of a statement run through sqlx directly (on the pool sea-orm opened), as sea-orm
/// reports its own, so that [`DbErr::sql_err`] still tells a unique-key violation apart.
pub fn query_error(error: sea_orm::sqlx::Error) -> DbErr {
    DbErr::Query(sea_orm::RuntimeErr::SqlxError(error.into()))
}

/// Turns database errors into client-facing errors.
pub trait DbResultExt<T> {
    /// Any database error is internal: logged with an id, never shown.
    fn or_internal(self) -> Result<T, CommandError>;

    /// A unique-constraint violation is a 409 with this message and detail; anything else is
    /// internal. Handlers check uniqueness before writing to name the field; this catches the race
    /// where two writers pass that check together.
    fn conflict_on_unique(self, message: &str, detail: &str) -> Result<T, CommandError>;
}

impl<T> DbResultExt<T> for Result<T, DbErr> {
    fn or_internal(self) -> Result<T, CommandError> {
        self.map_err(CommandError::internal)
    }

    fn conflict_on_unique(self, message: &str, detail: &str) -> Result<T, CommandError> {
        self.map_err(|e| match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => CommandError::conflict(message, detail),
            _ => CommandError::internal(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, Statement, TransactionTrait};

    /// Every pooled connection gets the pragmas, not only the first one opened.
    #[tokio::test]
    async fn every_sqlite_connection_runs_wal_with_normal_sync_and_foreign_keys() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let url = format!("sqlite://{}", dir.path().join("pragmas.db").display());
        let db = super::connect(&url, 4).await.expect("connect");
        // Four open transactions hold four distinct connections.
        let mut transactions = Vec::new();
        for _ in 0..4 {
            transactions.push(db.begin().await.expect("begin"));
        }
        for txn in &transactions {
            let pragma = |name: &str| {
                let sql = format!("PRAGMA {name}");
                async move {
                    let row = txn
                        .query_one_raw(Statement::from_string(txn.get_database_backend(), sql))
                        .await
                        .expect("the pragma runs")
                        .expect("the pragma answers a row");
                    row.try_get_by_index::<String>(0).or_else(|_| row.try_get_by_index::<i64>(0).map(|n| n.to_string()))
                }
            };
            assert_eq!(pragma("journal_mode").await.expect("a pragma value"), "wal");
            // NORMAL is 1 (FULL, SQLite's default, is 2).
            assert_eq!(pragma("synchronous").await.expect("a pragma value"), "1");
            assert_eq!(pragma("foreign_keys").await.expect("a pragma value"), "1");
        }
    }
}
