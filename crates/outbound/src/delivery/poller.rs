//! The poller: takes lanes whose work is due, keeps their leases, reads each owned lane's due
//! notifications from the queue into memory, writes the lanes' health changes, gives back what
//! left memory untried, and releases lanes that have been idle for a while.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use chrono::Duration as Span;
use hookbus_core::error_chain;
use hookbus_store::{DELETE_CHUNK, Singleton, Store};
use sea_orm::{
    ColumnTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, QueryTrait,
    sea_query::{Expr, Query},
};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    Dispatcher, EngineError, EventBody, Job, Outcome, Target,
    lanes::{Adopted, LaneChange},
    operations::{Announcer, Operational},
    record::{Attempt, Writer},
    retry,
};
use crate::{
    NotificationStatus, Outbound,
    entity::{attempt, event, notification, subscription},
    lane::{self, Health},
    queue,
};

/// Lanes taken per round, at most.
const ACQUIRE: usize = 200;
/// How often the queue depth and the unhealthy endpoints are counted for `/metrics`.
const GAUGES_EVERY: Duration = Duration::from_secs(5);
/// How often lanes with due work and no signal are looked for (see [`lane::repair`]).
const REPAIR_EVERY: Duration = Duration::from_secs(5);
/// How long a lane stays owned with nothing in memory.
const LANE_IDLE: Duration = Duration::from_secs(5);

pub(super) struct Poller {
    pub dispatcher: Dispatcher,
    pub store: Store,
    pub outbound: Outbound,
    pub writer: Writer,
    pub operations: Announcer,
    pub poll_now: Arc<Notify>,
}

impl Poller {
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(self.outbound.settings.poll_ms.max(1)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_gauges = tokio::time::Instant::now() - GAUGES_EVERY;
            let mut last_repair = tokio::time::Instant::now();
            let mut last_sweep = tokio::time::Instant::now();
            let lanes = Arc::clone(&self.dispatcher.lanes);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = self.poll_now.notified() => {}
                    () = lanes.fill_wanted().notified() => {}
                }
                if let Err(error) = self.round().await {
                    tracing::warn!(error = %error_chain(&error), "delivery poll failed; the next one tries again");
                }
                self.dispatcher.progressed();
                if last_repair.elapsed() >= REPAIR_EVERY {
                    let repaired = async {
                        let txn = self.store.begin_write().await?;
                        let woken = lane::repair(&*txn, hookbus_core::now(), false).await?;
                        txn.commit().await?;
                        Ok::<_, DbErr>(woken)
                    };
                    match repaired.await {
                        Ok(0) => {}
                        Ok(woken) => tracing::debug!(woken, "delivery lanes with unsignalled work woken"),
                        Err(error) => tracing::warn!(error = %error_chain(&error), "delivery lanes not repaired"),
                    }
                    last_repair = tokio::time::Instant::now();
                }
                if last_gauges.elapsed() >= GAUGES_EVERY {
                    match gauges(&self.store).await {
                        Ok((depth, unhealthy)) => {
                            self.outbound.metrics.queue_depth(depth);
                            self.outbound.metrics.unhealthy(unhealthy);
                        }
                        Err(error) => tracing::warn!(error = %error_chain(&error), "delivery gauges not read"),
                    }
                    last_gauges = tokio::time::Instant::now();
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

    /// One pass over the lanes.
    async fn round(&self) -> Result<(), EngineError> {
        self.settle_memory().await?;
        self.renew().await?;
        self.acquire().await?;
        self.fill().await?;
        self.release_idle().await
    }

    fn lease(&self) -> Span {
        Span::seconds(i64::try_from(self.outbound.settings.lease_secs.max(1)).unwrap_or(60))
    }

    /// Writes the endpoints' health changes (and announces them), gives back to the queue what
    /// left memory untried, and reports the waits counted.
    async fn settle_memory(&self) -> Result<(), EngineError> {
        let lanes = &self.dispatcher.lanes;
        for (reason, count) in lanes.take_held_counts() {
            self.outbound.metrics.held(reason.label(), count);
        }
        let given_back: Vec<Uuid> = lanes.take_give_back().into_iter().map(|(id, _)| id).collect();
        let changes = lanes.take_changes();
        if given_back.is_empty() && changes.is_empty() {
            return Ok(());
        }
        let txn = self.store.begin_write().await?;
        queue::unlease(&*txn, &given_back).await?;
        for change in &changes {
            let LaneChange::Health { subscription_id, health, .. } = change;
            lane::record_health(&*txn, self.dispatcher.instance, *subscription_id, health).await?;
        }
        txn.commit().await?;
        if !changes.is_empty() {
            self.outbound.metrics.unhealthy(lane::unhealthy_count(self.store.db()).await?);
        }
        for change in changes {
            let LaneChange::Health { subscription_id, health, previous, failures } = change;
            match (&previous, &health) {
                (Health::Healthy, Health::Unhealthy { reason, next_probe_at, .. }) => {
                    tracing::warn!(%subscription_id, %reason, "endpoint unhealthy; its notifications wait for a probe");
                    self.operations.announce(Operational::Unhealthy {
                        subscription_id,
                        reason: reason.clone(),
                        failures,
                        next_probe_at: *next_probe_at,
                    });
                }
                (Health::Unhealthy { since, .. }, Health::Healthy) => {
                    tracing::info!(%subscription_id, "endpoint healthy again");
                    self.operations.announce(Operational::Healthy { subscription_id, unhealthy_since: *since });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Renews the leases of owned lanes whose lease is half spent, with their notifications'.
    async fn renew(&self) -> Result<(), EngineError> {
        let now = hookbus_core::now();
        let lanes = &self.dispatcher.lanes;
        let expiring = lanes.expiring(now + self.lease() / 2);
        if expiring.is_empty() {
            return Ok(());
        }
        let lease_until = now + self.lease();
        let txn = self.store.begin_write().await?;
        let renewed = lane::renew(&*txn, self.dispatcher.instance, &expiring, lease_until).await?;
        queue::extend_leases(&*txn, &renewed, now, lease_until).await?;
        txn.commit().await?;
        lanes.renewed(&expiring, &renewed, lease_until);
        Ok(())
    }

    /// Takes lanes whose work is due and that no other instance holds.
    async fn acquire(&self) -> Result<(), EngineError> {
        let now = hookbus_core::now();
        let lease_until = now + self.lease();
        // A read first: with nothing to take, no write transaction (SQLite's writer is shared with
        // every publisher).
        if !lane::any_due(self.store.db(), self.dispatcher.instance, now).await? {
            return Ok(());
        }
        let txn = self.store.begin_write().await?;
        let acquired = lane::acquire(&*txn, self.dispatcher.instance, now, lease_until, ACQUIRE).await?;
        txn.commit().await?;
        if acquired.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = acquired.iter().map(|row| row.subscription_id).collect();
        let settings: HashMap<Uuid, subscription::Model> = subscription::Entity::find()
            .filter(subscription::Column::Id.is_in(ids.iter().copied()))
            .all(self.store.db())
            .await?
            .into_iter()
            .map(|row| (row.id, row))
            .collect();
        let lanes = &self.dispatcher.lanes;
        for row in &acquired {
            // A lane whose subscription is gone has nothing left to send.
            let Some(subscription) = settings.get(&row.subscription_id) else { continue };
            lanes.adopt(Adopted {
                subscription_id: row.subscription_id,
                lease_until,
                health: Health::of(row),
                max_concurrency: subscription.max_concurrency,
                rate_limit_per_second: subscription.rate_limit_per_second,
                ordering: subscription.ordering,
            });
        }
        lanes.queued(&ids);
        Ok(())
    }

    /// Reads each owned lane's due notifications into memory, up to its room.
    async fn fill(&self) -> Result<(), EngineError> {
        let now = hookbus_core::now();
        let lanes = &self.dispatcher.lanes;
        let fills = lanes.fills(now);
        if fills.is_empty() {
            return Ok(());
        }
        let lease_until = now + self.lease();
        if !queue::any_due(self.store.db(), &fills, now).await? {
            lanes.filled(&fills, &HashMap::new());
            return Ok(());
        }
        let txn = self.store.begin_write().await?;
        let claimed = queue::claim_for(&*txn, &fills, now, lease_until).await?;
        txn.commit().await?;
        let mut found: HashMap<Uuid, usize> = HashMap::new();
        for (_, subscription_id) in &claimed {
            *found.entry(*subscription_id).or_default() += 1;
        }
        lanes.filled(&fills, &found);
        if claimed.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = claimed.iter().map(|(id, _)| *id).collect();
        let mut rows = notification::Entity::find()
            .filter(notification::Column::Id.is_in(ids.iter().copied()))
            .all(self.store.db())
            .await?;
        // A queue entry whose notification is gone (deleted with its history) is dropped.
        if rows.len() < ids.len() {
            let present: HashSet<Uuid> = rows.iter().map(|n| n.id).collect();
            let gone: Vec<(Uuid, queue::Next)> =
                ids.iter().filter(|id| !present.contains(id)).map(|id| (*id, queue::Next::Done)).collect();
            let txn = self.store.begin_write().await?;
            queue::settle(&*txn, &gone).await?;
            txn.commit().await?;
        }
        // In each lane's order: FIFO lanes by id (publish order), others by due time.
        let order: HashMap<Uuid, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        rows.sort_unstable_by_key(|n| order.get(&n.id).copied().unwrap_or(usize::MAX));
        let (jobs, outcomes) = self.jobs(rows).await?;
        for outcome in outcomes {
            self.writer.record(outcome);
        }
        lanes.push(jobs, &fills);
        Ok(())
    }

    /// Gives up lanes that have had nothing in memory for a while.
    async fn release_idle(&self) -> Result<(), EngineError> {
        let lanes = &self.dispatcher.lanes;
        let idle = lanes.idle(LANE_IDLE);
        if idle.is_empty() {
            return Ok(());
        }
        let released = async {
            let txn = self.store.begin_write().await?;
            lane::release(&*txn, self.dispatcher.instance, &idle).await?;
            txn.commit().await
        };
        match released.await {
            Ok(()) => lanes.released(&idle),
            Err(error) => {
                lanes.kept(&idle);
                return Err(error.into());
            }
        }
        Ok(())
    }

    /// Builds the jobs of notifications read from the queue. Those whose event or subscription is
    /// gone are returned as cancelled outcomes instead, and those that cannot be signed (their
    /// secret does not decrypt) as failed attempts that say why.
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
        let mut targets: HashMap<Uuid, Result<Arc<Target>, (subscription::Model, String)>> = HashMap::new();
        for subscription in
            subscription::Entity::find().filter(subscription::Column::Id.is_in(dedup(subscription_ids))).all(db).await?
        {
            let target = Target::of(&self.outbound, &subscription, now)
                .map_err(|error| (subscription.clone(), error_chain(&error)));
            targets.insert(subscription.id, target);
        }
        let (mut jobs, mut outcomes) = (Vec::new(), Vec::new());
        for row in claimed {
            let (Some(body), Some(target)) = (bodies.get(&row.event_id), targets.get(&row.subscription_id)) else {
                outcomes.push(cancelled(&row, "the event or the subscription was deleted"));
                continue;
            };
            match target {
                Ok(target) => jobs.push(Job {
                    notification_id: row.id,
                    attempts: row.attempts,
                    event: Arc::clone(body),
                    target: Arc::clone(target),
                }),
                Err((subscription, error)) => outcomes.push(unsignable(&self.outbound, &row, subscription, error)),
            }
        }
        Ok((jobs, outcomes))
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

/// A notification that cannot be signed: an attempt that sent nothing, recorded with the reason
/// on the notification and in its attempt log, and retried (or expired) like any failed attempt.
fn unsignable(
    outbound: &Outbound,
    row: &notification::Model,
    subscription: &subscription::Model,
    error: &str,
) -> Outcome {
    let now = hookbus_core::now();
    let attempts = row.attempts + 1;
    let why = format!("not sent: the notification cannot be signed ({error})");
    let attempt =
        Attempt { attempted_at: now, duration_ms: 0, http_status: None, error: Some(why.clone()), excerpt: None };
    let mut outcome =
        Outcome { sent: false, ..Outcome::of(row.id, row.subscription_id, attempts).with_attempt(attempt) };
    if attempts >= subscription.max_attempts {
        return outcome.finish(NotificationStatus::Expired, Some(why));
    }
    let wait = retry::delay(
        &outbound.settings,
        subscription.delivery_policy,
        subscription.retry_interval_seconds,
        attempts,
        None,
    );
    outcome.next_attempt_at = Some(now + Span::from_std(wait).unwrap_or(Span::hours(1)));
    outcome.finish(NotificationStatus::Failed, Some(why))
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

/// Notifications waiting to be sent, and endpoints that are unhealthy.
async fn gauges(store: &Store) -> Result<(u64, u64), DbErr> {
    Ok((queue::depth(store.db()).await?, lane::unhealthy_count(store.db()).await?))
}
