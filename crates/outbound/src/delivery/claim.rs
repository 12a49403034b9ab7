//! The poller: claims notifications that are due (retries, leftovers of a full in-memory queue,
//! and those whose worker died) and hands them to this instance's senders.

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::Duration as Span;
use hookbus_core::error_chain;
use hookbus_store::{DELETE_CHUNK, Singleton, Store};
use sea_orm::{
    ColumnTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, QueryTrait,
    sea_query::{Expr, Query},
};
use uuid::Uuid;

use super::{Dispatcher, EngineError, EventBody, Job, Outcome, Target, record::Writer};
use crate::{
    NotificationStatus, Outbound,
    entity::{attempt, event, notification, subscription},
    queue,
};

/// Notifications claimed per round, at most.
const CLAIM: usize = 500;
/// How often the queue depth is counted for `/metrics`.
const DEPTH_EVERY: Duration = Duration::from_secs(5);

pub(super) struct Poller {
    pub dispatcher: Dispatcher,
    pub store: Store,
    pub outbound: Outbound,
    pub writer: Writer,
}

impl Poller {
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(self.outbound.settings.poll_ms.max(1)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_depth = tokio::time::Instant::now() - DEPTH_EVERY;
            let mut last_sweep = tokio::time::Instant::now();
            loop {
                ticker.tick().await;
                // A full round may follow at once: the backlog is larger than one claim.
                loop {
                    match self.round().await {
                        Ok(CLAIM) => {}
                        Ok(_) => break,
                        Err(error) => {
                            tracing::warn!(error = %error_chain(&error), "delivery poll failed; the next one tries again");
                            break;
                        }
                    }
                }
                self.dispatcher.progressed();
                if last_depth.elapsed() >= DEPTH_EVERY {
                    match depth(&self.store).await {
                        Ok(depth) => self.outbound.metrics.queue_depth(depth),
                        Err(error) => tracing::warn!(error = %error_chain(&error), "queue depth not read"),
                    }
                    last_depth = tokio::time::Instant::now();
                }
                if last_sweep.elapsed() >= Duration::from_secs(self.outbound.settings.retention_sweep_secs.max(1)) {
                    // One instance sweeps at a time; the next sweep tries again after a failure.
                    let days = self.outbound.settings.retention_days;
                    let swept = self.store.exclusively(Singleton::OutboundRetention, || sweep(&self.store, days)).await;
                    if let Err(error) | Ok(Some(Err(error))) = swept {
                        tracing::warn!(error = %error_chain(&error), "delivery retention sweep failed");
                    }
                    last_sweep = tokio::time::Instant::now();
                }
            }
        })
    }

    /// Claims what is due, up to the room left in memory. Returns how many were claimed.
    async fn round(&self) -> Result<usize, EngineError> {
        let room = self.dispatcher.room().min(CLAIM);
        if room == 0 || !self.dispatcher.reserve(room) {
            return Ok(0);
        }
        let claimed = match self.claim(room).await {
            Ok(claimed) => claimed,
            Err(error) => {
                self.dispatcher.release(room);
                return Err(error);
            }
        };
        self.dispatcher.release(room - claimed.len());
        let count = claimed.len();
        if count > 0 {
            let jobs = self.jobs(claimed).await;
            match jobs {
                Ok((jobs, orphans)) => {
                    self.dispatcher.release(orphans.len());
                    for orphan in orphans {
                        self.writer.record(orphan);
                    }
                    self.dispatcher.submit(jobs);
                }
                // The leases run out and the notifications are claimed again.
                Err(error) => {
                    self.dispatcher.release(count);
                    return Err(error);
                }
            }
        }
        Ok(count)
    }

    /// Leases up to `limit` due notifications to this instance; the notifications.
    async fn claim(&self, limit: usize) -> Result<Vec<notification::Model>, EngineError> {
        let now = hookbus_core::now();
        let lease_until = now + Span::seconds(i64::try_from(self.outbound.settings.lease_secs).unwrap_or(60));
        let txn = self.store.begin_write().await?;
        let ids = queue::claim(&*txn, limit, now, lease_until).await?;
        txn.commit().await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut claimed = notification::Entity::find()
            .filter(notification::Column::Id.is_in(ids.iter().copied()))
            .all(self.store.db())
            .await?;
        // A queue entry whose notification is gone (deleted with its history) is dropped.
        if claimed.len() < ids.len() {
            let found: std::collections::HashSet<Uuid> = claimed.iter().map(|n| n.id).collect();
            let gone: Vec<(Uuid, queue::Next)> =
                ids.iter().filter(|id| !found.contains(id)).map(|id| (*id, queue::Next::Done)).collect();
            queue::settle(self.store.db(), &gone).await?;
        }
        claimed.sort_unstable_by_key(|n| n.next_attempt_at);
        Ok(claimed)
    }

    /// Builds the jobs of claimed notifications. Those whose event or subscription is gone are
    /// returned as cancelled outcomes instead.
    async fn jobs(&self, claimed: Vec<notification::Model>) -> Result<(Vec<Job>, Vec<Outcome>), EngineError> {
        let db = self.store.db();
        let now = hookbus_core::now();
        let event_ids: Vec<Uuid> = claimed.iter().map(|n| n.event_id).collect();
        let subscription_ids: Vec<Uuid> = claimed.iter().map(|n| n.subscription_id).collect();
        // Each event's body and each subscription's target is built once and shared by its jobs.
        let mut bodies: HashMap<Uuid, Arc<EventBody>> = HashMap::new();
        for event in event::Entity::find().filter(event::Column::Id.is_in(dedup(event_ids))).all(db).await? {
            bodies.insert(event.id, EventBody::of(&event)?);
        }
        let mut targets: HashMap<Uuid, Arc<Target>> = HashMap::new();
        for subscription in
            subscription::Entity::find().filter(subscription::Column::Id.is_in(dedup(subscription_ids))).all(db).await?
        {
            targets.insert(subscription.id, Target::of(&self.outbound, &subscription, now)?);
        }
        let (mut jobs, mut orphans) = (Vec::new(), Vec::new());
        for row in claimed {
            let (Some(body), Some(target)) = (bodies.get(&row.event_id), targets.get(&row.subscription_id)) else {
                orphans.push(cancelled(&row, "the event or the subscription was deleted"));
                continue;
            };
            jobs.push(Job {
                notification_id: row.id,
                attempts: row.attempts,
                event: Arc::clone(body),
                target: Arc::clone(target),
            });
        }
        Ok((jobs, orphans))
    }
}

fn dedup(mut ids: Vec<Uuid>) -> Vec<Uuid> {
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn cancelled(row: &notification::Model, why: &str) -> Outcome {
    let outcome = Outcome::of(row.id, row.subscription_id, row.attempts);
    Outcome { sent: false, ..outcome.finish(NotificationStatus::Cancelled, Some(why.to_owned())) }
}

/// Deletes finished notifications older than the retention (delivered, expired, cancelled, and
/// diverted ones: a suspended subscription keeps its diverted notifications for the retention
/// only), their attempts, and events left without notifications. Returns how many notifications
/// went.
///
/// In chunks, as the inbound sweep (see [`Store::delete_in_chunks`]): each chunk of notifications
/// goes with its attempts in one short write transaction, so that a sweep of a long history never
/// holds the writer (or one PostgreSQL transaction) over all of it.
pub(crate) async fn sweep(store: &Store, retention_days: u64) -> Result<u64, DbErr> {
    // A retention longer than any date can go back keeps everything.
    let Some(cutoff) = hookbus_core::retention_cutoff(Duration::from_secs(retention_days.saturating_mul(86_400)))
    else {
        return Ok(0);
    };
    let mut deleted = 0;
    loop {
        let txn = store.begin_write().await?;
        let ids: Vec<Uuid> = notification::Entity::find()
            .select_only()
            .column(notification::Column::Id)
            .filter(notification::Column::CreatedAt.lt(cutoff))
            .filter(notification::Column::Status.is_in([
                NotificationStatus::Delivered,
                NotificationStatus::Expired,
                NotificationStatus::Cancelled,
                NotificationStatus::Diverted,
            ]))
            .limit(DELETE_CHUNK)
            .into_tuple()
            .all(&*txn)
            .await?;
        if ids.is_empty() {
            break;
        }
        attempt::Entity::delete_many()
            .filter(attempt::Column::NotificationId.is_in(ids.iter().copied()))
            .exec(&*txn)
            .await?;
        let chunk = notification::Entity::delete_many()
            .filter(notification::Column::Id.is_in(ids))
            .exec(&*txn)
            .await?
            .rows_affected;
        txn.commit().await?;
        deleted += chunk;
        if chunk < DELETE_CHUNK {
            break;
        }
    }
    // NOT EXISTS, not NOT IN: PostgreSQL cannot turn `NOT IN (subquery)` into an anti-join (the
    // NULL semantics differ), and with more notifications than fit its hash memory it scanned
    // every notification for each old event (8 s a sweep with 500k notifications).
    let referenced = Query::select()
        .expr(Expr::value(1))
        .from(notification::Entity)
        .and_where(sea_orm::sea_query::ExprTrait::equals(
            Expr::col((notification::Entity, notification::Column::EventId)),
            (event::Entity, event::Column::Id),
        ))
        .to_owned();
    let unreferenced = event::Entity::find()
        .select_only()
        .column(event::Column::Id)
        .filter(event::Column::OccurredAt.lt(cutoff))
        .filter(Expr::not_exists(referenced))
        .into_query();
    store.delete_in_chunks(event::Entity, Expr::col(event::Column::Id), unreferenced).await?;
    Ok(deleted)
}

/// Notifications waiting to be sent.
async fn depth(store: &Store) -> Result<u64, DbErr> {
    queue::depth(store.db()).await
}
