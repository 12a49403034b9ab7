//! The delivery queue: one row per notification still to be sent (`delivery_queue`), apart from
//! the notifications themselves.
//!
//! A row exists exactly while its notification waits to be sent or is being sent (`Pending`,
//! `Failed`): `next_attempt_at` orders the queue, `lease_until` says until when an instance holds
//! it. Keeping the queue apart keeps the notifications' indexes still: a notification's status
//! changes touch no indexed column, so PostgreSQL rewrites it in place (a HOT update, no new index
//! entries), and the rows that churn live in a table as small as the backlog, which autovacuum
//! keeps small (see migration 12).
//!
//! Everything that puts a notification in the queue or takes it out goes through this module, in
//! the same transaction as the notification's own change.

use hookbus_core::Timestamp;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Statement,
    sea_query::{Alias, Expr, ExprTrait, IntoIden, Query, TableRef, ValueTuple},
};
use uuid::Uuid;

use crate::entity::{notification, queue_entry};

/// A queue row to write.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub notification_id: Uuid,
    pub subscription_id: Uuid,
    pub next_attempt_at: Timestamp,
    pub lease_until: Option<Timestamp>,
}

impl From<Entry> for queue_entry::ActiveModel {
    fn from(entry: Entry) -> Self {
        let Entry { notification_id, subscription_id, next_attempt_at, lease_until } = entry;
        queue_entry::Model { notification_id, subscription_id, next_attempt_at, lease_until }.into()
    }
}

/// A lane's request for notifications from the queue.
#[derive(Debug, Clone)]
pub(crate) struct Fill {
    pub subscription_id: Uuid,
    pub room: usize,
    pub fifo: bool,
    /// Ids in memory: the queue read skips them.
    pub held: Vec<Uuid>,
    /// The lane's generation when asked (see `Lane::generation`).
    pub generation: u64,
}

/// Queues `entries` (new notifications).
pub(crate) async fn enqueue(db: &impl ConnectionTrait, entries: Vec<Entry>) -> Result<(), DbErr> {
    for chunk in entries.chunks(1_000) {
        let rows = chunk.iter().cloned().map(queue_entry::ActiveModel::from);
        queue_entry::Entity::insert_many(rows).exec_without_returning(db).await?;
    }
    Ok(())
}

/// Queues again, due `now`, the notifications `which` selects that are not in the queue (a resend,
/// an unsuspension). Call it before changing their status, which `which` may read.
pub(crate) async fn enqueue_matching(
    db: &impl ConnectionTrait,
    which: Condition,
    now: Timestamp,
) -> Result<u64, DbErr> {
    let waiting = Query::select()
        .expr(Expr::value(1))
        .from(queue_entry::Entity)
        .and_where(
            Expr::col((queue_entry::Entity, queue_entry::Column::NotificationId))
                .equals((notification::Entity, notification::Column::Id)),
        )
        .to_owned();
    let select = notification::Entity::find()
        .select_only()
        .column(notification::Column::Id)
        .column(notification::Column::SubscriptionId)
        .expr(Expr::value(now))
        .filter(which)
        .filter(Expr::not_exists(waiting))
        .into_query();
    let insert = Query::insert()
        .into_table(queue_entry::Entity)
        .columns([
            queue_entry::Column::NotificationId,
            queue_entry::Column::SubscriptionId,
            queue_entry::Column::NextAttemptAt,
        ])
        .select_from(select)
        .map_err(|e| DbErr::Custom(e.to_string()))?
        .to_owned();
    Ok(db.execute(&insert).await?.rows_affected())
}

/// Leases, until `lease_until`, each lane's next notifications, up to the lane's room: due ones by
/// due time, or for a FIFO lane the ones at the head of its queue in publish order, stopping at
/// the first that is not due (it holds back those after it). Returns (notification, subscription)
/// in each lane's order. On PostgreSQL rows another transaction is claiming are skipped, not
/// waited for.
pub(crate) async fn claim_for(
    db: &impl ConnectionTrait,
    fills: &[Fill],
    now: Timestamp,
    lease_until: Timestamp,
) -> Result<Vec<(Uuid, Uuid)>, DbErr> {
    let (fifo, unordered): (Vec<&Fill>, Vec<&Fill>) = fills.iter().partition(|fill| fill.fifo);
    let mut claimed = Vec::new();
    if !unordered.is_empty() {
        let mut rows = if db.get_database_backend() == DbBackend::Postgres {
            claim_unordered_postgres(db, &unordered, now, lease_until).await?
        } else {
            let mut rows = Vec::new();
            for fill in unordered {
                rows.extend(claim_unordered_one(db, fill, now, lease_until).await?);
            }
            rows
        };
        rows.sort_unstable_by_key(|row| (row.next_attempt_at, row.notification_id));
        claimed.extend(rows.into_iter().map(|row| (row.notification_id, row.subscription_id)));
    }
    for fill in fifo {
        let taken = claim_head(db, fill, now, lease_until).await?;
        claimed.extend(taken.into_iter().map(|id| (id, fill.subscription_id)));
    }
    Ok(claimed)
}

#[derive(Debug, FromQueryResult)]
struct ClaimedRow {
    notification_id: Uuid,
    subscription_id: Uuid,
    next_attempt_at: Timestamp,
}

/// Every lane in one statement: a lateral read of each lane's due rows, by its index.
async fn claim_unordered_postgres(
    db: &impl ConnectionTrait,
    fills: &[&Fill],
    now: Timestamp,
    lease_until: Timestamp,
) -> Result<Vec<ClaimedRow>, DbErr> {
    let lanes: Vec<serde_json::Value> =
        fills.iter().map(|fill| serde_json::json!({"id": fill.subscription_id, "room": fill.room})).collect();
    let sql = "UPDATE delivery_queue SET lease_until = $1 WHERE notification_id IN (
            SELECT c.notification_id FROM jsonb_to_recordset($2::jsonb) AS l(id uuid, room int)
            CROSS JOIN LATERAL (
                SELECT q.notification_id FROM delivery_queue q
                WHERE q.subscription_id = l.id AND q.next_attempt_at <= $3
                  AND (q.lease_until IS NULL OR q.lease_until < $3)
                ORDER BY q.next_attempt_at LIMIT l.room
                FOR UPDATE SKIP LOCKED) c)
         RETURNING notification_id, subscription_id, next_attempt_at";
    let values = [lease_until.into(), serde_json::Value::Array(lanes).into(), now.into()];
    ClaimedRow::find_by_statement(Statement::from_sql_and_values(DbBackend::Postgres, sql, values)).all(db).await
}

async fn claim_unordered_one(
    db: &impl ConnectionTrait,
    fill: &Fill,
    now: Timestamp,
    lease_until: Timestamp,
) -> Result<Vec<ClaimedRow>, DbErr> {
    let sql = "UPDATE delivery_queue SET lease_until = ?1 WHERE notification_id IN (
            SELECT notification_id FROM delivery_queue
            WHERE subscription_id = ?2 AND next_attempt_at <= ?3 AND (lease_until IS NULL OR lease_until < ?3)
            ORDER BY next_attempt_at LIMIT ?4)
         RETURNING notification_id, subscription_id, next_attempt_at";
    let room = i64::try_from(fill.room).unwrap_or(i64::MAX);
    let values = [lease_until.into(), fill.subscription_id.into(), now.into(), room.into()];
    let backend = db.get_database_backend();
    ClaimedRow::find_by_statement(Statement::from_sql_and_values(backend, sql, values)).all(db).await
}

/// A FIFO lane's head: after what it holds in memory, the rows in id order while they are due
/// and free.
async fn claim_head(
    db: &impl ConnectionTrait,
    fill: &Fill,
    now: Timestamp,
    lease_until: Timestamp,
) -> Result<Vec<Uuid>, DbErr> {
    let rows = queue_entry::Entity::find()
        .filter(queue_entry::Column::SubscriptionId.eq(fill.subscription_id))
        .order_by_asc(queue_entry::Column::NotificationId)
        .limit(u64::try_from(fill.room + fill.held.len()).unwrap_or(u64::MAX))
        .all(db)
        .await?;
    let mut taken = Vec::new();
    for row in rows {
        if fill.held.contains(&row.notification_id) {
            continue;
        }
        let free = row.lease_until.is_none_or(|until| until < now);
        if row.next_attempt_at > now || !free || taken.len() == fill.room {
            break;
        }
        taken.push(row.notification_id);
    }
    for piece in taken.chunks(PIECE) {
        queue_entry::Entity::update_many()
            .col_expr(queue_entry::Column::LeaseUntil, Expr::value(Some(lease_until)))
            .filter(queue_entry::Column::NotificationId.is_in(piece.iter().copied()))
            .exec(db)
            .await?;
    }
    Ok(taken)
}

/// Whether any of `fills`' lanes has a due notification no instance holds: what [`claim_for`]
/// would look for, read without a write.
pub(crate) async fn any_due(db: &impl ConnectionTrait, fills: &[Fill], now: Timestamp) -> Result<bool, DbErr> {
    for piece in fills.chunks(PIECE) {
        let due = queue_entry::Entity::find()
            .filter(queue_entry::Column::SubscriptionId.is_in(piece.iter().map(|fill| fill.subscription_id)))
            .filter(queue_entry::Column::NextAttemptAt.lte(now))
            .filter(
                Condition::any()
                    .add(queue_entry::Column::LeaseUntil.is_null())
                    .add(queue_entry::Column::LeaseUntil.lt(now)),
            )
            .one(db)
            .await?;
        if due.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Releases the leases of notifications that left memory untried: any instance may take them.
pub(crate) async fn unlease(db: &impl ConnectionTrait, notifications: &[Uuid]) -> Result<(), DbErr> {
    for piece in notifications.chunks(PIECE) {
        queue_entry::Entity::update_many()
            .col_expr(queue_entry::Column::LeaseUntil, Expr::value(Option::<Timestamp>::None))
            .filter(queue_entry::Column::NotificationId.is_in(piece.iter().copied()))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Extends, with their lanes' lease, the leases of the notifications those lanes hold.
pub(crate) async fn extend_leases(
    db: &impl ConnectionTrait,
    lanes: &[Uuid],
    now: Timestamp,
    lease_until: Timestamp,
) -> Result<(), DbErr> {
    for piece in lanes.chunks(PIECE) {
        queue_entry::Entity::update_many()
            .col_expr(queue_entry::Column::LeaseUntil, Expr::value(Some(lease_until)))
            .filter(queue_entry::Column::SubscriptionId.is_in(piece.iter().copied()))
            .filter(queue_entry::Column::LeaseUntil.gt(now))
            .exec(db)
            .await?;
    }
    Ok(())
}

#[derive(Debug, FromQueryResult)]
struct Claimed {
    notification_id: Uuid,
}

/// What becomes of a notification's queue row after an attempt.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Next {
    /// Sent again at this time (the lease is given up).
    RetryAt(Timestamp),
    /// Out of the queue: delivered, expired, diverted or cancelled.
    Done,
}

/// Applies the next step of each notification, in notification id order (the order every
/// instance locks rows in), a few statements per batch.
pub(crate) async fn settle(db: &impl ConnectionTrait, next: &[(Uuid, Next)]) -> Result<(), DbErr> {
    let mut done: Vec<Uuid> = Vec::new();
    let mut retries: Vec<(Uuid, Timestamp)> = Vec::new();
    for (id, step) in next {
        match step {
            Next::Done => done.push(*id),
            Next::RetryAt(at) => retries.push((*id, *at)),
        }
    }
    done.sort_unstable();
    retries.sort_unstable_by_key(|(id, _)| *id);
    for piece in done.chunks(PIECE) {
        queue_entry::Entity::delete_many()
            .filter(queue_entry::Column::NotificationId.is_in(piece.iter().copied()))
            .exec(db)
            .await?;
    }
    for piece in retries.chunks(PIECE) {
        let rows = piece.iter().map(|(id, at)| ValueTuple::Two((*id).into(), (*at).into())).collect();
        let list = Alias::new("v");
        let column = |n: usize| Expr::col((list.clone(), Alias::new(format!("column{n}"))));
        let update = Query::update()
            .table(queue_entry::Entity)
            .value(queue_entry::Column::NextAttemptAt, column(2))
            .value(queue_entry::Column::LeaseUntil, Expr::value(Option::<Timestamp>::None))
            .from(TableRef::ValuesList(rows, list.clone().into_iden()))
            .and_where(
                Expr::col((queue_entry::Entity, queue_entry::Column::NotificationId))
                    .equals((list.clone(), Alias::new("column1"))),
            )
            .to_owned();
        db.execute(&update).await?;
    }
    Ok(())
}

/// Rows per statement of [`settle`].
const PIECE: usize = 64;

/// Takes out of the queue the notifications of `subscription_id` that no instance holds now (the
/// subscription is suspended or deleted); their ids. Those being sent finish their attempt.
pub(crate) async fn take_waiting(
    db: &impl ConnectionTrait,
    subscription_id: Uuid,
    now: Timestamp,
) -> Result<Vec<Uuid>, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "DELETE FROM delivery_queue WHERE subscription_id = $1 AND (lease_until IS NULL OR lease_until < $2)
             RETURNING notification_id"
        }
        _ => {
            "DELETE FROM delivery_queue WHERE subscription_id = ?1 AND (lease_until IS NULL OR lease_until < ?2)
             RETURNING notification_id"
        }
    };
    let statement = Statement::from_sql_and_values(backend, sql, [subscription_id.into(), now.into()]);
    let rows = Claimed::find_by_statement(statement).all(db).await?;
    Ok(rows.into_iter().map(|row| row.notification_id).collect())
}

/// Takes every notification of `subscription_id` out of the queue (the subscription is deleted).
pub(crate) async fn remove_subscription(db: &impl ConnectionTrait, subscription_id: Uuid) -> Result<u64, DbErr> {
    let removed = queue_entry::Entity::delete_many()
        .filter(queue_entry::Column::SubscriptionId.eq(subscription_id))
        .exec(db)
        .await?;
    Ok(removed.rows_affected)
}

/// Whether anything in the queue is being sent, or due and free to be sent: not held for an
/// unhealthy endpoint's next probe.
pub(crate) async fn busy(db: &impl ConnectionTrait, now: Timestamp) -> Result<bool, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT q.notification_id FROM delivery_queue q
             LEFT JOIN delivery_lanes l ON l.subscription_id = q.subscription_id
             WHERE q.lease_until > $1
                OR (q.next_attempt_at <= $1 AND (l.healthy IS NULL OR l.healthy OR l.next_probe_at <= $1))
             LIMIT 1"
        }
        _ => {
            "SELECT q.notification_id FROM delivery_queue q
             LEFT JOIN delivery_lanes l ON l.subscription_id = q.subscription_id
             WHERE q.lease_until > ?1
                OR (q.next_attempt_at <= ?1 AND (l.healthy IS NULL OR l.healthy OR l.next_probe_at <= ?1))
             LIMIT 1"
        }
    };
    let row = Claimed::find_by_statement(Statement::from_sql_and_values(backend, sql, [now.into()])).one(db).await?;
    Ok(row.is_some())
}

/// How many notifications wait to be sent. On PostgreSQL the statistics' count of live rows: an
/// estimate that reads no row (counting would walk the rows deleted since the last vacuum too).
pub(crate) async fn depth(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT COALESCE(MAX(n_live_tup), 0)::BIGINT AS n FROM pg_stat_user_tables WHERE relname = 'delivery_queue'"
        }
        _ => "SELECT COUNT(*) AS n FROM delivery_queue",
    };
    let row = db.query_one_raw(Statement::from_string(backend, sql)).await?;
    let count = row.map(|row| row.try_get::<i64>("", "n")).transpose()?.unwrap_or(0);
    Ok(u64::try_from(count).unwrap_or(0))
}
