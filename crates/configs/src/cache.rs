//! Configurations in memory: the router (and the by-id and by-key reads) are
//! served from here, and a change made through any instance reaches every instance within one
//! refresh interval.
//!
//! How it stays right:
//! - every write bumps the one-row generation counter in its own transaction ([`bump_generation`]);
//! - each instance polls that row and, when it moved, loads a snapshot of every configuration and
//!   the generation in one read transaction, so the two agree;
//! - an instance applies its own writes at once, tagged with their generation, so it reads its own
//!   writes; a snapshot older than what was applied is refused, and own writes newer than a
//!   snapshot are applied again on top of it.
//!
//! A miss is not proof of absence: readers fall back to the database, so a configuration created
//! on another instance is found at once. An update or delete made elsewhere can be seen late, by
//! at most one refresh interval.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock},
    time::Duration,
};

use sea_orm::{
    ConnectionTrait, DatabaseConnection, EntityTrait, QueryOrder, Statement, TransactionTrait, Value as DbValue,
};

use hookbus_script::ScriptEngine;

use crate::{ConfigEntry, entity};

/// A configuration as cached.
pub type CachedConfig = Arc<ConfigEntry>;

/// A change this instance made, with the generation its transaction gave it.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    Upsert(CachedConfig),
    Remove(i32),
}

#[derive(Debug, Default)]
struct State {
    /// The generation the maps reflect completely.
    generation: i64,
    by_id: HashMap<i32, CachedConfig>,
    by_key: HashMap<String, i32>,
    by_path: HashMap<String, i32>,
    /// Own changes past `generation`, kept until the maps reflect every generation before them.
    pending: BTreeMap<i64, Change>,
}

impl State {
    fn apply(&mut self, change: &Change) {
        match change {
            Change::Upsert(entry) => {
                if let Some(old) = self.by_id.get(&entry.id) {
                    let (key, path) = (old.key.clone(), old.path.clone());
                    self.by_key.remove(&key);
                    self.by_path.remove(&path);
                }
                self.by_key.insert(entry.key.clone(), entry.id);
                self.by_path.insert(entry.path.clone(), entry.id);
                self.by_id.insert(entry.id, Arc::clone(entry));
            }
            Change::Remove(id) => {
                if let Some(old) = self.by_id.remove(id) {
                    self.by_key.remove(&old.key);
                    self.by_path.remove(&old.path);
                }
            }
        }
    }

    /// Moves `generation` forward over consecutive own changes.
    fn advance(&mut self) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() != self.generation + 1 {
                break;
            }
            entry.remove();
            self.generation += 1;
        }
    }
}

/// The shared cache; cloning it is cheap.
#[derive(Debug, Clone)]
pub struct ConfigCache {
    state: Arc<RwLock<State>>,
    db: DatabaseConnection,
    /// Compiles the scripts of the configurations as they enter the cache.
    scripts: ScriptEngine,
}

impl ConfigCache {
    /// Loads every configuration, compiling their scripts with `scripts`.
    pub async fn load(db: DatabaseConnection, scripts: ScriptEngine) -> Result<Self, CacheError> {
        let cache = Self { state: Arc::default(), db, scripts };
        cache.reload().await?;
        Ok(cache)
    }

    /// Keeps the cache in step with the database until the runtime stops.
    pub fn spawn_refresher(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let cache = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(error) = cache.refresh().await {
                    tracing::warn!(error = %hookbus_core::error_chain(&error), "configuration refresh failed; the next one tries again");
                }
            }
        })
    }

    /// Reloads if the database's generation moved past the cache's.
    pub async fn refresh(&self) -> Result<(), CacheError> {
        let current = read_generation(&self.db).await?;
        if current > self.generation() { self.reload().await } else { Ok(()) }
    }

    pub fn generation(&self) -> i64 {
        self.read().generation
    }

    pub fn by_id(&self, id: i32) -> Option<CachedConfig> {
        self.read().by_id.get(&id).cloned()
    }

    pub fn by_key(&self, key: &str) -> Option<CachedConfig> {
        let state = self.read();
        state.by_key.get(key).and_then(|id| state.by_id.get(id)).cloned()
    }

    pub fn by_path(&self, path: &str) -> Option<CachedConfig> {
        let state = self.read();
        state.by_path.get(path).and_then(|id| state.by_id.get(id)).cloned()
    }

    /// Applies a change this instance committed under `generation`.
    pub(crate) fn record(&self, generation: i64, change: Change) {
        let mut state = self.write();
        if generation <= state.generation {
            return;
        }
        state.apply(&change);
        state.pending.insert(generation, change);
        state.advance();
    }

    async fn reload(&self) -> Result<(), CacheError> {
        // One read transaction, so that the rows and the generation describe the same moment.
        let txn = self.db.begin().await?;
        let generation = read_generation(&txn).await?;
        let rows = entity::Entity::find().order_by_asc(entity::Column::Id).all(&txn).await?;
        txn.commit().await?;

        let mut state = self.write();
        if generation <= state.generation {
            return Ok(());
        }
        let pending = std::mem::take(&mut state.pending);
        let mut fresh = State { generation, ..State::default() };
        for row in rows {
            // A version already cached is kept as it is: its script compiled, its view built.
            if let Some(kept) = state.by_id.get(&row.id).filter(|kept| kept.version == row.version) {
                fresh.apply(&Change::Upsert(Arc::clone(kept)));
                continue;
            }
            match ConfigEntry::new(row, &self.scripts) {
                Ok(entry) => fresh.apply(&Change::Upsert(Arc::new(entry))),
                // Serving the rest beats serving nothing; the bad one answers 404 until fixed.
                Err(error) => tracing::error!(error = %error, "a stored configuration cannot be served"),
            }
        }
        for (g, change) in pending.into_iter().filter(|(g, _)| *g > generation) {
            fresh.apply(&change);
            fresh.pending.insert(g, change);
        }
        fresh.advance();
        *state = fresh;
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn read_generation(db: &impl ConnectionTrait) -> Result<i64, CacheError> {
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(Statement::from_string(backend, "SELECT generation FROM webhook_config_generation WHERE id = 1"))
        .await?;
    row.and_then(|row| row.try_get::<i64>("", "generation").ok()).ok_or(CacheError::MissingGeneration)
}

/// Bumps the generation inside a write transaction and returns the new value. The row lock this
/// takes orders configuration writes, so generations follow commit order.
pub(crate) async fn bump_generation(txn: &impl ConnectionTrait) -> Result<i64, CacheError> {
    let backend = txn.get_database_backend();
    let row = txn
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            "UPDATE webhook_config_generation SET generation = generation + 1 WHERE id = 1 RETURNING generation",
            Vec::<DbValue>::new(),
        ))
        .await?;
    row.and_then(|row| row.try_get::<i64>("", "generation").ok()).ok_or(CacheError::MissingGeneration)
}

/// Why the cache could not be read or kept in step.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("the database failed")]
    Database(#[from] sea_orm::DbErr),
    #[error("the webhook_config_generation row is missing; run the migrations")]
    MissingGeneration,
}
