//! Delivery lanes (`delivery_lanes`): one row per subscription, saying which instance sends its
//! notifications. One instance at a time owns a lane, for a lease it renews while it has work, so
//! a subscription's concurrency, rate limit, ordering and circuit breaker are applied in one place,
//! in memory, however many instances share the database.
//!
//! `due_at` is how work reaches an instance that does not own the lane yet: whoever queues a
//! notification for a lane it does not own sets it, and the pollers take lanes whose `due_at` has
//! come and whose lease is free or ran out. Releasing a lane sets it to when the lane's next work
//! is due. A lane whose signal was missed (a release racing with a publish on another instance,
//! an owner that died) is found by [`repair`], which every poller runs every few seconds.

use hookbus_core::Timestamp;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter, Statement,
    sea_query::{Expr, ExprTrait, OnConflict},
};
use uuid::Uuid;

use crate::entity::lane;

/// An endpoint's circuit breaker, as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Health {
    Healthy,
    Unhealthy { since: Timestamp, next_probe_at: Timestamp, cooldown_secs: i32, reason: String },
}

impl Health {
    pub fn of(row: &lane::Model) -> Self {
        match (row.healthy, row.unhealthy_since, row.next_probe_at) {
            (false, Some(since), Some(next_probe_at)) => Self::Unhealthy {
                since,
                next_probe_at,
                cooldown_secs: row.cooldown_secs,
                reason: row.health_reason.clone().unwrap_or_default(),
            },
            _ => Self::Healthy,
        }
    }
}

/// Creates the lane of a new subscription.
pub(crate) async fn create(db: &impl ConnectionTrait, subscription_id: Uuid) -> Result<(), DbErr> {
    let row = lane::Model {
        subscription_id,
        owner: None,
        lease_until: None,
        due_at: None,
        healthy: true,
        unhealthy_since: None,
        next_probe_at: None,
        cooldown_secs: 0,
        health_reason: None,
    };
    lane::Entity::insert(lane::ActiveModel::from(row))
        .on_conflict(OnConflict::column(lane::Column::SubscriptionId).do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Removes the lane of a deleted subscription.
pub(crate) async fn delete(db: &impl ConnectionTrait, subscription_id: Uuid) -> Result<(), DbErr> {
    lane::Entity::delete_by_id(subscription_id).exec(db).await?;
    Ok(())
}

/// Leases to `owner`, until `lease_until`, up to `limit` lanes whose work is due and that no other
/// instance holds; their rows. Their `due_at` is cleared: the owner reads their queue itself. On
/// PostgreSQL lanes another instance is taking are skipped, not waited for.
pub(crate) async fn acquire(
    db: &impl ConnectionTrait,
    owner: Uuid,
    now: Timestamp,
    lease_until: Timestamp,
    limit: usize,
) -> Result<Vec<lane::Model>, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "UPDATE delivery_lanes SET owner = $1, lease_until = $2, due_at = NULL WHERE subscription_id IN (
                SELECT subscription_id FROM delivery_lanes
                WHERE due_at <= $3 AND (owner IS NULL OR owner = $1 OR lease_until < $3)
                ORDER BY due_at LIMIT $4
                FOR UPDATE SKIP LOCKED)
             RETURNING *"
        }
        _ => {
            "UPDATE delivery_lanes SET owner = ?1, lease_until = ?2, due_at = NULL WHERE subscription_id IN (
                SELECT subscription_id FROM delivery_lanes
                WHERE due_at <= ?3 AND (owner IS NULL OR owner = ?1 OR lease_until < ?3)
                ORDER BY due_at LIMIT ?4)
             RETURNING *"
        }
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let values = [owner.into(), lease_until.into(), now.into(), limit.into()];
    lane::Model::find_by_statement(Statement::from_sql_and_values(backend, sql, values)).all(db).await
}

/// Whether any lane is due for `owner` to take: what [`acquire`] would take, read without a write.
pub(crate) async fn any_due(db: &impl ConnectionTrait, owner: Uuid, now: Timestamp) -> Result<bool, DbErr> {
    let free = lane::Column::Owner.is_null().or(lane::Column::Owner.eq(owner)).or(lane::Column::LeaseUntil.lt(now));
    let due = lane::Entity::find().filter(lane::Column::DueAt.lte(now)).filter(free).one(db).await?;
    Ok(due.is_some())
}

/// Extends `owner`'s lease of `lanes` to `lease_until`; the lanes it still held. A lane missing
/// from the answer was taken over by another instance after the lease ran out.
pub(crate) async fn renew(
    db: &impl ConnectionTrait,
    owner: Uuid,
    lanes: &[Uuid],
    lease_until: Timestamp,
) -> Result<Vec<Uuid>, DbErr> {
    let mut kept = Vec::with_capacity(lanes.len());
    for piece in lanes.chunks(PIECE) {
        let renewed = lane::Entity::update_many()
            .col_expr(lane::Column::LeaseUntil, Expr::value(Some(lease_until)))
            .filter(lane::Column::Owner.eq(owner))
            .filter(lane::Column::SubscriptionId.is_in(piece.iter().copied()))
            .exec_with_returning(db)
            .await?;
        kept.extend(renewed.into_iter().map(|row| row.subscription_id));
    }
    Ok(kept)
}

/// Gives `owner`'s lanes up. Each lane's `due_at` becomes the time its next work is due: its
/// earliest queued notification, and for an unhealthy endpoint not before its next probe.
pub(crate) async fn release(db: &impl ConnectionTrait, owner: Uuid, lanes: &[Uuid]) -> Result<(), DbErr> {
    let next = "(SELECT MIN(q.next_attempt_at) FROM delivery_queue q \
                WHERE q.subscription_id = delivery_lanes.subscription_id)";
    let due =
        format!("CASE WHEN healthy OR {next} IS NULL OR {next} > next_probe_at THEN {next} ELSE next_probe_at END");
    for piece in lanes.chunks(PIECE) {
        lane::Entity::update_many()
            .col_expr(lane::Column::Owner, Expr::value(Option::<Uuid>::None))
            .col_expr(lane::Column::LeaseUntil, Expr::value(Option::<Timestamp>::None))
            .col_expr(lane::Column::DueAt, Expr::cust(due.clone()))
            .filter(lane::Column::Owner.eq(owner))
            .filter(lane::Column::SubscriptionId.is_in(piece.iter().copied()))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Signals that work is due on `lanes` now (notifications queued for lanes this instance does not
/// own). Writes only lanes whose signal is not already set, and not those of unhealthy endpoints
/// before their next probe (their signal is set for it).
pub(crate) async fn mark_due(db: &impl ConnectionTrait, lanes: &[Uuid], now: Timestamp) -> Result<(), DbErr> {
    for piece in lanes.chunks(PIECE) {
        lane::Entity::update_many()
            .col_expr(lane::Column::DueAt, Expr::value(Some(now)))
            .filter(lane::Column::SubscriptionId.is_in(piece.iter().copied()))
            .filter(lane::Column::DueAt.is_null().or(lane::Column::DueAt.gt(now)))
            .filter(lane::Column::Healthy.eq(true).or(lane::Column::NextProbeAt.lte(now)))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Sets the signal of every lane that has due work but neither an owner nor a signal: the safety
/// net behind [`mark_due`] and [`release`], and how the lanes of an instance that died are taken
/// over. `owned_too` also covers owned lanes (notifications put back by a command). Returns how
/// many lanes it woke.
pub(crate) async fn repair(db: &impl ConnectionTrait, now: Timestamp, owned_too: bool) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let (p, unowned) = match backend {
        DbBackend::Postgres => ("$1", "(owner IS NULL OR lease_until < $1)"),
        _ => ("?1", "(owner IS NULL OR lease_until < ?1)"),
    };
    let sql = format!(
        "UPDATE delivery_lanes SET due_at = {p}
         WHERE (due_at IS NULL OR due_at > {p}) AND {owner}
           AND (healthy OR next_probe_at <= {p})
           AND EXISTS (SELECT 1 FROM delivery_queue q WHERE q.subscription_id = delivery_lanes.subscription_id
                       AND q.next_attempt_at <= {p})",
        owner = if owned_too { "TRUE" } else { unowned },
    );
    let woken = db.execute_raw(Statement::from_sql_and_values(backend, sql, [now.into()])).await?;
    Ok(woken.rows_affected())
}

/// Records a change of an endpoint's health, if `owner` still holds its lane.
pub(crate) async fn record_health(
    db: &impl ConnectionTrait,
    owner: Uuid,
    subscription_id: Uuid,
    health: &Health,
) -> Result<(), DbErr> {
    let (healthy, since, next_probe_at, cooldown, reason) = match health {
        Health::Healthy => (true, None, None, 0, None),
        Health::Unhealthy { since, next_probe_at, cooldown_secs, reason } => {
            (false, Some(*since), Some(*next_probe_at), *cooldown_secs, Some(reason.clone()))
        }
    };
    lane::Entity::update_many()
        .col_expr(lane::Column::Healthy, Expr::value(healthy))
        .col_expr(lane::Column::UnhealthySince, Expr::value(since))
        .col_expr(lane::Column::NextProbeAt, Expr::value(next_probe_at))
        .col_expr(lane::Column::CooldownSecs, Expr::value(cooldown))
        .col_expr(lane::Column::HealthReason, Expr::value(reason))
        .filter(lane::Column::SubscriptionId.eq(subscription_id))
        .filter(lane::Column::Owner.eq(owner))
        .exec(db)
        .await?;
    Ok(())
}

/// The stored health of each of `subscriptions`' endpoints (healthy when a lane is missing).
pub(crate) async fn health_of(
    db: &impl ConnectionTrait,
    subscriptions: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Health>, DbErr> {
    let mut health = std::collections::HashMap::with_capacity(subscriptions.len());
    for piece in subscriptions.chunks(PIECE) {
        let rows = lane::Entity::find()
            .filter(lane::Column::SubscriptionId.is_in(piece.iter().copied()))
            .filter(lane::Column::Healthy.eq(false))
            .all(db)
            .await?;
        health.extend(rows.iter().map(|row| (row.subscription_id, Health::of(row))));
    }
    Ok(health)
}

/// How many endpoints are unhealthy.
pub(crate) async fn unhealthy_count(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    lane::Entity::find().filter(lane::Column::Healthy.eq(false)).count(db).await
}

/// Lanes per statement.
const PIECE: usize = 500;
