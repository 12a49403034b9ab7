//! Units of work: the writes of everything one routed request runs commit together or not at
//! all.
//!
//! A [`Store`] made with [`Store::within`] sends its statements to the unit instead of the pool.
//! The unit's transaction begins at its first write (reads before it go to the pool, so a route
//! that only reads never takes SQLite's write lock); from then on every statement runs in it, and
//! a [`Store::begin_write`] inside it is a savepoint. What must happen only once the writes are
//! durable (handing notifications to senders, starting a process, updating a cache) is registered
//! with [`Store::after_commit`]; what must be undone in memory when they are not, with
//! [`Store::on_rollback`].

use std::sync::{Arc, Mutex};

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, ExecResult, QueryResult, Statement,
    entity::prelude::async_trait,
};

use crate::{Store, WriteTransaction};

type Hook = Box<dyn FnOnce() + Send>;

/// The writes of one routed request (or one process step), and what waits for their outcome.
pub struct UnitOfWork {
    /// The shared store, whose writer turn the unit takes when it begins.
    store: Store,
    txn: tokio::sync::OnceCell<WriteTransaction>,
    hooks: Mutex<Hooks>,
}

#[derive(Default)]
struct Hooks {
    after_commit: Vec<Hook>,
    on_rollback: Vec<Hook>,
}

impl std::fmt::Debug for UnitOfWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnitOfWork").field("begun", &self.txn.initialized()).finish()
    }
}

/// A unit still referenced when its owner ended it: something kept a handle past the request.
#[derive(Debug, thiserror::Error)]
#[error("the unit of work was still in use when it ended; its writes were rolled back")]
pub struct UnitInUse;

/// How a unit ended.
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    #[error(transparent)]
    InUse(#[from] UnitInUse),
    #[error("the unit of work did not commit")]
    Database(#[from] DbErr),
}

impl UnitOfWork {
    pub fn new(store: &Store) -> Arc<Self> {
        Arc::new(Self { store: store.shared(), txn: tokio::sync::OnceCell::new(), hooks: Mutex::default() })
    }

    /// The transaction, begun at the first write.
    pub(crate) async fn begin(&self) -> Result<&WriteTransaction, DbErr> {
        self.txn.get_or_try_init(|| self.store.begin_own_write()).await
    }

    pub(crate) fn begun(&self) -> Option<&DatabaseTransaction> {
        self.txn.get().map(|txn| &**txn)
    }

    pub(crate) fn after_commit(&self, hook: Hook) {
        self.lock().after_commit.push(hook);
    }

    pub(crate) fn on_rollback(&self, hook: Hook) {
        self.lock().on_rollback.push(hook);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Hooks> {
        self.hooks.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Commits the writes, then runs the after-commit hooks. Fails (and rolls back) when the unit
    /// is still referenced or the commit fails; the rollback hooks run then.
    pub async fn commit(self: Arc<Self>) -> Result<(), UnitError> {
        let Some(unit) = Arc::into_inner(self) else {
            return Err(UnitInUse.into());
        };
        let Self { txn, hooks, .. } = unit;
        let hooks = hooks.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        let committed = match txn.into_inner() {
            Some(txn) => txn.commit().await,
            None => Ok(()),
        };
        match committed {
            Ok(()) => {
                hooks.after_commit.into_iter().for_each(|hook| hook());
                Ok(())
            }
            Err(error) => {
                hooks.on_rollback.into_iter().for_each(|hook| hook());
                Err(error.into())
            }
        }
    }

    /// Rolls the writes back and runs the rollback hooks.
    pub async fn rollback(self: Arc<Self>) {
        let hooks = std::mem::take(&mut *self.lock());
        // Dropping the transaction rolls it back; a handle kept elsewhere keeps it open until
        // that handle goes, and it never commits.
        drop(self);
        hooks.on_rollback.into_iter().for_each(|hook| hook());
    }
}

/// Where a store's statements go: the pool, or a unit of work.
#[derive(Debug, Clone)]
pub struct Db {
    pub(crate) conn: DatabaseConnection,
    pub(crate) unit: Option<Arc<UnitOfWork>>,
}

impl Db {
    /// The pool itself, for what must not run in a unit (a job that holds a lock of its own).
    pub fn pool(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// The connection a statement runs on: the unit's transaction once begun (begun first for a
    /// statement that may write), else the pool.
    async fn route(&self, sql: &str) -> Result<Route<'_>, DbErr> {
        let Some(unit) = &self.unit else { return Ok(Route::Pool(&self.conn)) };
        if let Some(txn) = unit.begun() {
            return Ok(Route::Unit(txn));
        }
        if reads_only(sql) {
            return Ok(Route::Pool(&self.conn));
        }
        Ok(Route::Unit(unit.begin().await?))
    }
}

enum Route<'a> {
    Pool(&'a DatabaseConnection),
    Unit(&'a DatabaseTransaction),
}

/// A plain `SELECT`: the one kind of statement that runs on the pool before a unit has written.
/// (An `INSERT … RETURNING` is run as a query, so the kind of call does not tell.)
fn reads_only(sql: &str) -> bool {
    sql.trim_start().get(..6).is_some_and(|word| word.eq_ignore_ascii_case("select"))
}

#[async_trait::async_trait]
impl ConnectionTrait for Db {
    fn get_database_backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match self.route(&stmt.sql).await? {
            Route::Pool(conn) => conn.execute_raw(stmt).await,
            Route::Unit(txn) => txn.execute_raw(stmt).await,
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match self.route(sql).await? {
            Route::Pool(conn) => conn.execute_unprepared(sql).await,
            Route::Unit(txn) => txn.execute_unprepared(sql).await,
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self.route(&stmt.sql).await? {
            Route::Pool(conn) => conn.query_one_raw(stmt).await,
            Route::Unit(txn) => txn.query_one_raw(stmt).await,
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self.route(&stmt.sql).await? {
            Route::Pool(conn) => conn.query_all_raw(stmt).await,
            Route::Unit(txn) => txn.query_all_raw(stmt).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reads_only;

    #[test]
    fn only_a_select_reads_only() {
        assert!(reads_only("SELECT 1"));
        assert!(reads_only("  select * from x"));
        assert!(!reads_only("INSERT INTO x VALUES (1) RETURNING id"));
        assert!(!reads_only("WITH e AS (INSERT INTO x VALUES (1)) SELECT 1"));
        assert!(!reads_only("UPDATE x SET a = 1"));
    }
}
