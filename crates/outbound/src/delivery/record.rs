//! Recording outcomes. Senders hand each outcome to one writer task, which writes them in batches
//! (one transaction for many attempts), so the database is not the bottleneck of delivery. An
//! outcome lost in a crash only means the notification is sent again when its lease runs out.
//!
//! Instances sharing a database write their batches at the same time, and their batches touch the
//! same subscriptions (every subscription to an event gets a notification). Every batch therefore
//! locks rows in one order: its notifications by id, then its subscriptions by id, so that two
//! batches can wait for each other but never deadlock. A batch that fails anyway (the database
//! restarting, a serialization failure) is written again in place, not left for its leases to run
//! out, which would send every notification in it a second time.

use std::{
    collections::{BTreeMap, HashSet},
    time::Duration,
};

use hookbus_core::Timestamp;
use hookbus_store::Store;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    sea_query::{Alias, Expr, ExprTrait, Func, IntoIden, Query, TableRef, UpdateStatement, ValueTuple},
};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{
    Dispatcher, Job,
    operations::{Announcer, Operational},
};
use crate::{
    NotificationStatus, Outbound,
    entity::{attempt, notification, subscription},
    queue,
};

/// Outcomes written per transaction, at most.
const BATCH: usize = 512;

/// How long the writer lets a small batch fill before writing it. Outcomes are recorded after
/// their delivery, off every answer's path; at a steady few hundred deliveries a second, writing
/// each one as it comes costs a transaction (a WAL flush on PostgreSQL) per delivery, which
/// competes with the publishes' own commits. Under load batches fill at once and never wait.
const LINGER: Duration = Duration::from_millis(10);

/// Rows per statement, at most (see [`piece_sizes`]). The notifications' statement binds
/// [`NOTIFICATION_VALUES`] parameters per row: 576 at most, far under SQLite's 32,766.
const PIECE: usize = 64;

/// What one HTTP attempt saw.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    pub attempted_at: Timestamp,
    pub duration_ms: i64,
    pub http_status: Option<i32>,
    pub error: Option<String>,
    pub excerpt: Option<String>,
}

/// The next state of a notification after a sender handled it.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub notification_id: Uuid,
    pub subscription_id: Uuid,
    pub status: NotificationStatus,
    pub attempts: i32,
    pub attempt: Option<Attempt>,
    pub next_attempt_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
    pub error: Option<String>,
    /// The endpoint answered 410 Gone: suspend the subscription now.
    pub suspend: bool,
    /// The attempt timed out or could not connect (what the circuit breaker counts).
    pub unreachable: bool,
    /// It came from a sender (not from the poller's clean-up of orphans).
    pub sent: bool,
}

impl Outcome {
    pub fn new(job: &Job) -> Self {
        Self::of(job.notification_id, job.target.id, job.attempts)
    }

    /// A notification's outcome with nothing seen yet: still pending, from a sender.
    pub fn of(notification_id: Uuid, subscription_id: Uuid, attempts: i32) -> Self {
        Self {
            notification_id,
            subscription_id,
            status: NotificationStatus::Pending,
            attempts,
            attempt: None,
            next_attempt_at: None,
            delivered_at: None,
            error: None,
            suspend: false,
            unreachable: false,
            sent: true,
        }
    }

    pub fn with_attempt(mut self, attempt: Attempt) -> Self {
        self.attempt = Some(attempt);
        self
    }

    pub fn finish(mut self, status: NotificationStatus, error: Option<String>) -> Self {
        self.status = status;
        self.error = error;
        self
    }
}

/// The handle senders record through.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    outcomes: mpsc::UnboundedSender<Outcome>,
}

impl Writer {
    /// Starts the writer. Each written batch tells `dispatcher` how many attempts it finished
    /// (outcomes of the poller's orphans were never counted as attempts) and which notifications
    /// left memory; expiries and suspensions are announced once written.
    pub fn spawn(
        store: Store,
        outbound: Outbound,
        dispatcher: Dispatcher,
        operations: Announcer,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (outcomes, mut receiver) = mpsc::unbounded_channel::<Outcome>();
        let task = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            // A batch is retried for up to half a lease: past that, its notifications may be
            // another instance's already.
            let patience = Duration::from_secs(Ord::max(outbound.settings.lease_secs, 1)) / 2;
            while receiver.recv_many(&mut batch, BATCH).await > 0 {
                if batch.len() < PIECE {
                    tokio::time::sleep(LINGER).await;
                    while batch.len() < BATCH {
                        match receiver.try_recv() {
                            Ok(outcome) => batch.push(outcome),
                            Err(_) => break,
                        }
                    }
                }
                let suspended = write_until_done(&store, &outbound, &batch, patience).await;
                let written: Vec<(Uuid, Uuid)> =
                    batch.iter().map(|outcome| (outcome.subscription_id, outcome.notification_id)).collect();
                dispatcher.lanes.written(&written);
                let attempted = batch.iter().filter(|outcome| outcome.sent).count();
                dispatcher.finished(attempted);
                for outcome in batch.iter().filter(|outcome| outcome.status == NotificationStatus::Expired) {
                    operations.announce(Operational::Expired {
                        notification_id: outcome.notification_id,
                        subscription_id: outcome.subscription_id,
                        attempts: outcome.attempts,
                        reason: outcome.error.clone(),
                    });
                }
                for (subscription_id, reason) in suspended {
                    operations.announce(Operational::Suspended { subscription_id, reason });
                }
                batch.clear();
            }
        });
        (Self { outcomes }, task)
    }

    pub fn record(&self, outcome: Outcome) {
        // Fails only once the writer stopped with the runtime; the lease covers that.
        let _ = self.outcomes.send(outcome);
    }
}

/// Writes a batch, trying again with a growing pause while it fails, for up to `patience`; the
/// subscriptions it suspended, with why. A batch that could not be written is logged with the
/// database's error; its notifications are sent again once their leases run out.
async fn write_until_done(
    store: &Store,
    outbound: &Outbound,
    batch: &[Outcome],
    patience: Duration,
) -> Vec<(Uuid, String)> {
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(20);
    for tries in 1.. {
        let error = match write(store, outbound, batch).await {
            Ok(suspended) => return suspended,
            Err(error) => hookbus_core::error_chain(&error),
        };
        if started.elapsed() + pause > patience {
            tracing::error!(count = batch.len(), tries, %error, "delivery outcomes not recorded; their notifications are sent again when their leases run out");
            return Vec::new();
        }
        tracing::warn!(count = batch.len(), tries, %error, "delivery outcomes not recorded; trying again");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
    Vec::new()
}

async fn write(store: &Store, outbound: &Outbound, outcomes: &[Outcome]) -> Result<Vec<(Uuid, String)>, DbErr> {
    let mut suspended = Vec::new();
    let now = hookbus_core::now();
    let txn = store.begin_write().await?;
    let attempts: Vec<attempt::ActiveModel> = outcomes
        .iter()
        .filter_map(|outcome| {
            let a = outcome.attempt.as_ref()?;
            Some(attempt::ActiveModel {
                id: Set(Uuid::now_v7()),
                notification_id: Set(outcome.notification_id),
                attempt: Set(outcome.attempts),
                attempted_at: Set(a.attempted_at),
                duration_ms: Set(a.duration_ms),
                http_status: Set(a.http_status),
                error: Set(a.error.clone()),
                response_excerpt: Set(a.excerpt.clone()),
            })
        })
        .collect();
    let mut attempts = attempts.into_iter();
    for size in piece_sizes(attempts.len()) {
        attempt::Entity::insert_many(attempts.by_ref().take(size)).exec(&*txn).await?;
    }
    let latest = latest(outcomes);
    update_notifications(&*txn, &latest, now).await?;
    let next: Vec<(Uuid, queue::Next)> = latest
        .iter()
        .map(|outcome| {
            let next = outcome.next_attempt_at.map_or(queue::Next::Done, queue::Next::RetryAt);
            (outcome.notification_id, next)
        })
        .collect();
    queue::settle(&*txn, &next).await?;
    // In id order (see the module's comment).
    for (subscription_id, summary) in summarize(outcomes) {
        let mut update = subscription::Entity::update_many();
        if let Some((at, status, http)) = summary.last {
            update = update
                .col_expr(subscription::Column::LastDeliveryAt, Expr::value(Some(at)))
                .col_expr(subscription::Column::LastDeliveryStatus, Expr::value(Some(status.as_str())))
                .col_expr(subscription::Column::LastHttpStatus, Expr::value(http));
        }
        let streak = if summary.reset {
            Expr::value(summary.expired)
        } else {
            Expr::col(subscription::Column::ExpiredStreak).add(summary.expired)
        };
        update
            .col_expr(subscription::Column::ExpiredStreak, streak)
            .filter(subscription::Column::Id.eq(subscription_id))
            .exec(&*txn)
            .await?;
        if summary.gone || summary.expired > 0 {
            // 410 suspends at once; expiries only when the run reaches the limit.
            let limit = Ord::max(outbound.settings.suspend_after_expired, 1);
            let threshold = (!summary.gone).then_some(limit);
            if crate::state::suspend(&*txn, subscription_id, threshold, now).await? {
                let reason = if summary.gone {
                    "the endpoint answered 410 Gone".to_owned()
                } else {
                    format!("{limit} notifications expired in a row")
                };
                suspended.push((subscription_id, reason));
            }
        }
    }
    txn.commit().await?;
    Ok(suspended)
}

/// Parameters per outcome in [`update_notifications`].
const NOTIFICATION_VALUES: usize = 9;

/// The batch's notifications in a few statements (pieces of up to [`PIECE`]), not one per
/// outcome (a round trip each):
/// `UPDATE notifications SET .. FROM (VALUES (..), ..) AS v WHERE notifications.id = v.column1`.
/// PostgreSQL and SQLite (3.33 and later) both take `UPDATE .. FROM` and name a `VALUES` list's
/// columns `column1`, `column2`, and so on. An outcome without an attempt keeps the last attempt's
/// time and status; one not delivered keeps `delivered_at`.
async fn update_notifications(db: &impl ConnectionTrait, latest: &[&Outcome], now: Timestamp) -> Result<(), DbErr> {
    let mut rows = latest.iter().map(|outcome| {
        let attempt = outcome.attempt.as_ref();
        let values = vec![
            outcome.notification_id.into(),
            outcome.status.into(),
            outcome.attempts.into(),
            outcome.next_attempt_at.into(),
            outcome.error.clone().into(),
            attempt.is_some().into(),
            attempt.map(|a| a.attempted_at).into(),
            attempt.and_then(|a| a.http_status).into(),
            outcome.delivered_at.into(),
        ];
        debug_assert_eq!(values.len(), NOTIFICATION_VALUES);
        ValueTuple::Many(values)
    });
    for size in piece_sizes(latest.len()) {
        let piece: Vec<ValueTuple> = rows.by_ref().take(size).collect();
        db.execute(&notifications_update(piece, now)).await?;
    }
    Ok(())
}

/// Each notification's last outcome in the batch, in id order. With two rows for one
/// notification, `UPDATE .. FROM` applies one of them, unspecified which (one statement after
/// another applied the later). Two outcomes of one notification in a batch take a lease that ran
/// out under a slow attempt.
fn latest(outcomes: &[Outcome]) -> Vec<&Outcome> {
    let mut seen = HashSet::with_capacity(outcomes.len());
    let mut latest: Vec<&Outcome> =
        outcomes.iter().rev().filter(|outcome| seen.insert(outcome.notification_id)).collect();
    latest.sort_unstable_by_key(|outcome| outcome.notification_id);
    latest
}

/// The update of [`update_notifications`] for `rows`.
fn notifications_update(rows: Vec<ValueTuple>, now: Timestamp) -> UpdateStatement {
    let list = Alias::new("v");
    let value = |n: usize| Expr::col((list.clone(), Alias::new(format!("column{n}"))));
    let current = |column: notification::Column| Expr::col((notification::Entity, column));
    let with_attempt = |new: Expr, old: notification::Column| Expr::case(value(6), new).finally(current(old));
    Query::update()
        .table(notification::Entity)
        .value(notification::Column::Status, value(2))
        .value(notification::Column::Attempts, value(3))
        .value(notification::Column::NextAttemptAt, value(4))
        .value(notification::Column::LastError, value(5))
        .value(notification::Column::UpdatedAt, Expr::value(now))
        .value(notification::Column::LastAttemptAt, with_attempt(value(7), notification::Column::LastAttemptAt))
        .value(notification::Column::LastHttpStatus, with_attempt(value(8), notification::Column::LastHttpStatus))
        .value(
            notification::Column::DeliveredAt,
            Func::coalesce([value(9), current(notification::Column::DeliveredAt)]),
        )
        .from(TableRef::ValuesList(rows, list.clone().into_iden()))
        .and_where(current(notification::Column::Id).equals((list.clone(), Alias::new("column1"))))
        .to_owned()
}

/// Sizes that split `len` rows into statements: pieces of [`PIECE`] rows, then falling powers of
/// two (100 rows: 64, 32, 4). The database driver keeps every distinct statement text prepared on
/// its connection (up to its cache's capacity); statements sized to each batch would fill that
/// cache with large one-off texts, where these come in seven shapes.
fn piece_sizes(len: usize) -> impl Iterator<Item = usize> {
    let mut rest = len;
    std::iter::from_fn(move || {
        let size = match rest {
            0 => return None,
            n if n >= PIECE => PIECE,
            n => 1 << n.ilog2(),
        };
        rest -= size;
        Some(size)
    })
}

/// Per subscription: the last attempt, and how the run of expired notifications changes.
#[derive(Debug, Default)]
struct Summary {
    last: Option<(Timestamp, NotificationStatus, Option<i32>)>,
    /// Expired since the last delivery in this batch (or in all of it).
    expired: i32,
    /// A delivery in this batch ended the run.
    reset: bool,
    gone: bool,
}

/// Ordered by subscription id: the order every batch locks subscriptions in.
fn summarize(outcomes: &[Outcome]) -> BTreeMap<Uuid, Summary> {
    let mut summaries: BTreeMap<Uuid, Summary> = BTreeMap::new();
    for outcome in outcomes {
        let summary = summaries.entry(outcome.subscription_id).or_default();
        if let Some(attempt) = &outcome.attempt {
            summary.last = Some((attempt.attempted_at, outcome.status, attempt.http_status));
        }
        match outcome.status {
            NotificationStatus::Delivered => {
                summary.reset = true;
                summary.expired = 0;
            }
            NotificationStatus::Expired => summary.expired += 1,
            _ => {}
        }
        summary.gone |= outcome.suspend;
    }
    summaries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(notification_id: Uuid, status: NotificationStatus) -> Outcome {
        Outcome::of(notification_id, Uuid::nil(), 1).finish(status, None)
    }

    #[test]
    fn a_notification_recorded_twice_in_a_batch_takes_its_last_outcome() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let batch = [
            outcome(a, NotificationStatus::Pending),
            outcome(b, NotificationStatus::Delivered),
            outcome(a, NotificationStatus::Expired),
        ];
        let kept: Vec<(Uuid, NotificationStatus)> =
            latest(&batch).iter().map(|o| (o.notification_id, o.status)).collect();
        // In id order: a was made first.
        assert_eq!(kept, vec![(a, NotificationStatus::Expired), (b, NotificationStatus::Delivered)]);
    }

    #[test]
    fn subscriptions_are_summarized_in_id_order() {
        let ids: Vec<Uuid> = (0..20).map(|_| Uuid::new_v4()).collect();
        let batch: Vec<Outcome> = ids
            .iter()
            .map(|id| Outcome::of(Uuid::now_v7(), *id, 1).finish(NotificationStatus::Delivered, None))
            .collect();
        let order: Vec<Uuid> = summarize(&batch).into_keys().collect();
        let mut sorted = ids;
        sorted.sort();
        assert_eq!(order, sorted);
    }

    #[test]
    fn pieces_cover_every_row_in_few_shapes() {
        assert_eq!(piece_sizes(0).count(), 0);
        assert_eq!(piece_sizes(1).collect::<Vec<_>>(), [1]);
        assert_eq!(piece_sizes(100).collect::<Vec<_>>(), [64, 32, 4]);
        assert_eq!(piece_sizes(BATCH).collect::<Vec<_>>(), [PIECE; BATCH / PIECE]);
        for len in 0..=BATCH {
            assert_eq!(piece_sizes(len).sum::<usize>(), len);
            assert!(piece_sizes(len).all(|size| size.is_power_of_two() && size <= PIECE));
        }
    }
}
