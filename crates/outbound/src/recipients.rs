//! Who receives an event: the active subscriptions to its name, kept in memory between publishes.
//!
//! Reading them is a round trip per publish, and they seldom change. The database numbers their
//! changes: `subscription_generation` goes up with every subscription added, removed or changed
//! (triggers raise it, whichever instance or tool made the change; the delivery statistics the
//! outcome writer keeps do not count). Each publish answered from memory carries the generation
//! its subscriptions were read at, and its rows are written only while that generation is still
//! the current one, in the same statement (see `publish`). A publish that finds it outdated reads
//! the subscriptions again and writes again, so no publish ever reaches the subscriptions of
//! before a change that committed before it was written.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter, QuerySelect, QueryTrait,
    Select,
};

use crate::entity::{subscription, subscription_event};

/// Subscriptions kept at most, over every event name; past that the cache starts again empty.
const KEPT: usize = 10_000;

/// The subscriptions of an event name as of a generation.
#[derive(Debug, Clone)]
pub(crate) struct Matching {
    pub generation: i64,
    pub subscriptions: Arc<[subscription::Model]>,
}

/// The active subscriptions of each event name read so far, as of one generation.
#[derive(Debug, Default)]
pub(crate) struct Recipients {
    cached: Mutex<Cached>,
}

#[derive(Debug, Default)]
struct Cached {
    generation: i64,
    by_name: HashMap<String, Arc<[subscription::Model]>>,
    kept: usize,
}

impl Recipients {
    /// The active subscriptions to `event_name` (by name or to everything), from memory, or read
    /// from `db` with the current generation.
    pub async fn of(&self, db: &impl ConnectionTrait, event_name: &str) -> Result<Matching, DbErr> {
        if let Some(matching) = self.kept(event_name) {
            return Ok(matching);
        }
        // The generation first: a change committed between the two reads makes the generation
        // outdated at once, never the subscriptions newer than it says.
        let generation = current_generation(db).await?;
        let subscriptions: Arc<[subscription::Model]> = subscribed(event_name).all(db).await?.into();
        self.keep(event_name, generation, &subscriptions);
        Ok(Matching { generation, subscriptions })
    }

    /// A write found `generation` outdated: forget what was read at it or before.
    pub fn outdated(&self, generation: i64) {
        let mut cached = self.lock();
        if cached.generation <= generation {
            cached.by_name.clear();
            cached.kept = 0;
            cached.generation = generation + 1;
        }
    }

    fn kept(&self, event_name: &str) -> Option<Matching> {
        let cached = self.lock();
        let subscriptions = cached.by_name.get(event_name)?;
        Some(Matching { generation: cached.generation, subscriptions: Arc::clone(subscriptions) })
    }

    fn keep(&self, event_name: &str, generation: i64, subscriptions: &Arc<[subscription::Model]>) {
        let mut cached = self.lock();
        if generation < cached.generation {
            return;
        }
        if generation > cached.generation || cached.kept + subscriptions.len() > KEPT {
            cached.by_name.clear();
            cached.kept = 0;
            cached.generation = generation;
        }
        if subscriptions.len() <= KEPT {
            cached.kept += subscriptions.len();
            cached.by_name.insert(event_name.to_owned(), Arc::clone(subscriptions));
        }
    }

    fn lock(&self) -> MutexGuard<'_, Cached> {
        // The state is a plain map, whole after any panic.
        self.cached.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The generation of the subscriptions now.
pub(crate) async fn current_generation(db: &impl ConnectionTrait) -> Result<i64, DbErr> {
    #[derive(FromQueryResult)]
    struct Row {
        generation: i64,
    }
    let statement = sea_orm::Statement::from_string(db.get_database_backend(), GENERATION_SQL);
    let row = Row::find_by_statement(statement).one(db).await?;
    row.map(|row| row.generation).ok_or_else(|| DbErr::RecordNotFound("subscription_generation".to_owned()))
}

/// The current generation, as SQL.
pub(crate) const GENERATION_SQL: &str = "SELECT generation FROM subscription_generation WHERE id = 1";

/// Active subscriptions to `event_name`, by name or to everything.
pub(crate) fn subscribed(event_name: &str) -> Select<subscription::Entity> {
    let by_name = subscription_event::Entity::find()
        .select_only()
        .column(subscription_event::Column::SubscriptionId)
        .filter(subscription_event::Column::EventName.eq(event_name))
        .into_query();
    subscription::Entity::find().filter(subscription::Column::IsActive.eq(true)).filter(
        Condition::any()
            .add(subscription::Column::SubscribeAll.eq(true))
            .add(subscription::Column::Id.in_subquery(by_name)),
    )
}
