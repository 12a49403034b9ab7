//! Deduplication that holds across instances: the `provider_notifications` table, one row per
//! provider and deduplication key.
//!
//! A request *claims* a notification by inserting its row (`Claimed`), in the transaction that
//! logs the request; of two requests carrying it, on one instance or two, exactly one inserts it.
//! Once its events are stored the row becomes `Published`, and every later copy is a duplicate.
//! A notification whose publishing failed is released (its row deleted), so the provider's retry
//! is taken again. A claim whose request died before settling it is taken over after
//! [`ABANDONED_AFTER`]; publishing again is safe because each notification's event id is fixed
//! by its key, and publishing is idempotent by event id.

use std::collections::HashMap;

use chrono::Duration;
use hookbus_core::{CommandError, Timestamp};
use hookbus_store::{DbResultExt, Store};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect,
    QueryTrait, TryInsertResult, sea_query::Expr,
};
use uuid::Uuid;

/// The `provider_notifications` table.
pub(crate) mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "provider_notifications")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub provider: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub dedupe_key: String,
        pub inbound_event_id: Uuid,
        pub state: String,
        pub event_id: Option<String>,
        pub claimed_at: DateTimeUtc,
        pub published_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

const CLAIMED: &str = "Claimed";
const PUBLISHED: &str = "Published";

/// A claim still `Claimed` this long after it was made belongs to a request that died: the
/// requests of the fixed routes publish and forward within seconds.
const ABANDONED_AFTER: Duration = Duration::minutes(5);

/// How a notification stood when a request met it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Published by the request logged as `first`.
    Published { first: Uuid },
    /// Being published right now by the request logged as `first`.
    InProgress { first: Uuid },
}

/// What claiming a notification gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// It is this request's to publish.
    Taken,
    Seen(Seen),
}

/// Which of `keys` were seen before (a plain read, to spare duplicates any further work; the
/// claim itself decides). Claims abandoned by a dead request do not count.
pub(crate) async fn seen<C: ConnectionTrait>(
    db: &C,
    provider: &str,
    keys: impl IntoIterator<Item = &str>,
) -> Result<HashMap<String, Seen>, CommandError> {
    let rows = entity::Entity::find()
        .filter(entity::Column::Provider.eq(provider))
        .filter(entity::Column::DedupeKey.is_in(keys))
        .all(db)
        .await
        .or_internal()?;
    let now = hookbus_core::now();
    Ok(rows.into_iter().filter_map(|row| Some((row.dedupe_key.clone(), state_of(&row, now)?))).collect())
}

/// Claims `key` for the request logged as `event`, inside the caller's transaction.
pub(crate) async fn claim<C: ConnectionTrait>(
    txn: &C,
    provider: &str,
    key: &str,
    event: Uuid,
) -> Result<Claim, CommandError> {
    // A row released between our statements (a failed publish elsewhere) lets us try again.
    for _ in 0..3 {
        let now = hookbus_core::now();
        let row = entity::ActiveModel {
            provider: Set(provider.to_owned()),
            dedupe_key: Set(key.to_owned()),
            inbound_event_id: Set(event),
            state: Set(CLAIMED.to_owned()),
            event_id: Set(None),
            claimed_at: Set(now),
            published_at: Set(None),
        };
        let inserted = entity::Entity::insert(row)
            .on_conflict_do_nothing_on([entity::Column::Provider, entity::Column::DedupeKey])
            .exec_without_returning(txn)
            .await
            .or_internal()?;
        if matches!(inserted, TryInsertResult::Inserted(rows) if rows > 0) {
            return Ok(Claim::Taken);
        }
        // Someone has it: a dead request's claim is taken over, anything else is seen.
        let taken_over = entity::Entity::update_many()
            .col_expr(entity::Column::InboundEventId, Expr::value(event))
            .col_expr(entity::Column::ClaimedAt, Expr::value(now))
            .filter(of(provider, key))
            .filter(entity::Column::State.eq(CLAIMED))
            .filter(entity::Column::ClaimedAt.lt(now - ABANDONED_AFTER))
            .exec(txn)
            .await
            .or_internal()?;
        if taken_over.rows_affected > 0 {
            return Ok(Claim::Taken);
        }
        let row = entity::Entity::find_by_id((provider.to_owned(), key.to_owned())).one(txn).await.or_internal()?;
        if let Some(seen) = row.and_then(|row| state_of(&row, now)) {
            return Ok(Claim::Seen(seen));
        }
    }
    Err(CommandError::conflict("Duplicate request", "This notification is being processed by another request"))
}

/// Deletes the rows of notifications claimed before `cutoff` (the inbound log's retention deletes
/// their requests then too), in chunks (see [`Store::delete_in_chunks`]); a claim still being
/// published stays. A provider sending one of them again after that is taken as new, and
/// publishing it again is idempotent while its outbound event is kept. Returns how many went.
pub async fn sweep(store: &Store, cutoff: Timestamp) -> Result<u64, DbErr> {
    let settled = Condition::any()
        .add(entity::Column::State.eq(PUBLISHED))
        .add(entity::Column::ClaimedAt.lt(hookbus_core::now() - ABANDONED_AFTER));
    let old = entity::Entity::find()
        .select_only()
        .column(entity::Column::Provider)
        .column(entity::Column::DedupeKey)
        .filter(entity::Column::ClaimedAt.lt(cutoff))
        .filter(settled)
        .into_query();
    let key = Expr::tuple([Expr::col(entity::Column::Provider), Expr::col(entity::Column::DedupeKey)]);
    store.delete_in_chunks(entity::Entity, key, old).await
}

/// Marks `key`, claimed by the request logged as `event`, published under `event_id`.
pub(crate) async fn settle<C: ConnectionTrait>(
    txn: &C,
    provider: &str,
    key: &str,
    event: Uuid,
    event_id: &str,
) -> Result<(), CommandError> {
    entity::Entity::update_many()
        .col_expr(entity::Column::State, Expr::value(PUBLISHED))
        .col_expr(entity::Column::EventId, Expr::value(event_id))
        .col_expr(entity::Column::PublishedAt, Expr::value(hookbus_core::now()))
        .filter(of(provider, key))
        .filter(entity::Column::InboundEventId.eq(event))
        .exec(txn)
        .await
        .or_internal()?;
    Ok(())
}

/// Gives up `key`, claimed by the request logged as `event`, so that a retry can take it.
pub(crate) async fn release<C: ConnectionTrait>(
    txn: &C,
    provider: &str,
    key: &str,
    event: Uuid,
) -> Result<(), CommandError> {
    entity::Entity::delete_many()
        .filter(of(provider, key))
        .filter(entity::Column::InboundEventId.eq(event))
        .filter(entity::Column::State.eq(CLAIMED))
        .exec(txn)
        .await
        .or_internal()?;
    Ok(())
}

fn of(provider: &str, key: &str) -> sea_orm::Condition {
    sea_orm::Condition::all().add(entity::Column::Provider.eq(provider)).add(entity::Column::DedupeKey.eq(key))
}

/// A row's state as later requests see it; `None` for an abandoned claim.
fn state_of(row: &entity::Model, now: Timestamp) -> Option<Seen> {
    let first = row.inbound_event_id;
    match row.state.as_str() {
        PUBLISHED => Some(Seen::Published { first }),
        _ if now - row.claimed_at >= ABANDONED_AFTER => None,
        _ => Some(Seen::InProgress { first }),
    }
}
