//! A subscription's delivery state: suspended, and back. The delivery engine suspends (a 410, a
//! run of expired notifications) and the commands unsuspend and resend, all through here, so that
//! a state change and what it does to the queue are written together, in one place.

use hookbus_core::Timestamp;
use schemars::JsonSchema;
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, sea_query::Expr};
use serde::Serialize;
use uuid::Uuid;

use crate::{
    NotificationStatus,
    entity::{notification, subscription},
    queue,
};

/// How many notifications went back into the queue.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Requeued {
    pub requeued: u64,
}

/// Suspends a subscription (at once, or when its run of expired notifications reached
/// `threshold`), and diverts what waits in its queue. Returns whether it was suspended now.
pub(crate) async fn suspend(
    db: &impl ConnectionTrait,
    subscription_id: Uuid,
    threshold: Option<i32>,
    now: Timestamp,
) -> Result<bool, DbErr> {
    let mut update = subscription::Entity::update_many()
        .col_expr(subscription::Column::Suspended, Expr::value(true))
        .col_expr(subscription::Column::SuspendedAt, Expr::value(Some(now)))
        .col_expr(subscription::Column::UpdatedAt, Expr::value(now))
        .filter(subscription::Column::Id.eq(subscription_id))
        .filter(subscription::Column::Suspended.eq(false));
    if let Some(threshold) = threshold {
        update = update.filter(subscription::Column::ExpiredStreak.gte(threshold));
    }
    let changed = update.exec(db).await?;
    if changed.rows_affected > 0 {
        tracing::warn!(%subscription_id, "subscription suspended; new notifications are diverted");
        // What no instance is sending now; those being sent are diverted by their senders.
        let waiting = queue::take_waiting(db, subscription_id, now).await?;
        for piece in waiting.chunks(500) {
            notification::Entity::update_many()
                .col_expr(notification::Column::Status, Expr::value(NotificationStatus::Diverted))
                .col_expr(notification::Column::NextAttemptAt, Expr::value(Option::<Timestamp>::None))
                .col_expr(notification::Column::UpdatedAt, Expr::value(now))
                .filter(notification::Column::Id.is_in(piece.iter().copied()))
                .exec(db)
                .await?;
        }
    }
    Ok(changed.rows_affected > 0)
}

/// Puts notifications back in the queue as new attempts, due now (a resend, an unsuspension).
pub(crate) async fn requeue(db: &impl ConnectionTrait, which: Condition) -> Result<u64, DbErr> {
    let now = hookbus_core::now();
    // Queued first: `which` reads the status the update changes.
    queue::enqueue_matching(db, which.clone(), now).await?;
    // Their lanes, owned or not, learn that work is due.
    crate::lane::repair(db, now, true).await?;
    let requeued = notification::Entity::update_many()
        .col_expr(notification::Column::Status, Expr::value(NotificationStatus::Pending))
        .col_expr(notification::Column::Attempts, Expr::value(0))
        .col_expr(notification::Column::NextAttemptAt, Expr::value(Some(now)))
        .col_expr(notification::Column::UpdatedAt, Expr::value(now))
        .filter(which)
        .exec(db)
        .await?;
    Ok(requeued.rows_affected)
}

/// Resumes delivery to a suspended subscription: its expiry streak starts again, and its diverted
/// notifications go back into the queue. Returns how many.
pub(crate) async fn unsuspend(db: &impl ConnectionTrait, subscription_id: Uuid) -> Result<u64, DbErr> {
    subscription::Entity::update_many()
        .col_expr(subscription::Column::Suspended, Expr::value(false))
        .col_expr(subscription::Column::SuspendedAt, Expr::value(Option::<Timestamp>::None))
        .col_expr(subscription::Column::ExpiredStreak, Expr::value(0))
        .col_expr(subscription::Column::UpdatedAt, Expr::value(hookbus_core::now()))
        .filter(subscription::Column::Id.eq(subscription_id))
        .exec(db)
        .await?;
    let diverted = Condition::all()
        .add(notification::Column::SubscriptionId.eq(subscription_id))
        .add(notification::Column::Status.eq(NotificationStatus::Diverted));
    requeue(db, diverted).await
}
