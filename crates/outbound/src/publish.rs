//! Publishing: the event and its notifications are written in one transaction, so once
//! publishing succeeds every delivery it implies happens, even if the process dies at once.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock},
};

use hookbus_core::{
    Answered, CommandError, Context, Handler, Owner, Permission, Services, Timestamp, register_command,
};
use hookbus_store::{DbResultExt, GroupCommit, GroupCommitMetrics, GroupWrite, Store};
use schemars::JsonSchema;
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, SqlErr};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    NotificationStatus, Outbound, catalog,
    delivery::{EventBody, Job, Target},
    entity::{event, notification, subscription},
    lane, queue,
    subscription::{Ordering, filters_of},
};

/// An event to publish.
#[derive(Debug, Clone, Default)]
pub struct NewEvent {
    pub event_name: String,
    pub resource: Option<String>,
    pub data: Value,
    /// Makes publishing idempotent: a repeat is answered with the first result.
    pub event_id: Option<String>,
    /// Paths that changed (`/contacts/0/name`), for attribute filters.
    pub changed_attributes: Option<Vec<String>>,
}

/// What publishing did.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Published {
    /// The publisher's `eventId`, or the generated id.
    pub event_id: String,
    pub event_name: String,
    pub occurred_at: hookbus_core::Timestamp,
    /// Notifications created, one per matching subscription.
    pub notifications: i32,
    /// This `eventId` was published before; nothing new was created.
    pub duplicate: bool,
}

/// Who receives an event: every matching subscription, or one owner's (simulated events, and
/// events published by an owner-bound token), or for hookbus's own events about a subscription,
/// the platform's subscriptions and the subscription owner's, but not that subscription.
#[derive(Debug, Clone)]
pub(crate) enum Audience {
    Everyone,
    Owner(Owner),
    About { subscription_id: Uuid, owner: Option<Owner> },
}

/// Publishes `event` to every matching subscription.
pub async fn publish(services: &Services, event: NewEvent) -> Result<Published, CommandError> {
    publish_to(services.get::<Store>()?, services.get::<Outbound>()?, event, Audience::Everyone, false).await
}

/// Publishes `event` to `audience`, writing through `store` (in a routed request's unit of work,
/// the event is delivered once the unit commits).
pub(crate) async fn publish_to(
    store: &Store,
    outbound: &Outbound,
    event: NewEvent,
    audience: Audience,
    simulated: bool,
) -> Result<Published, CommandError> {
    check(&event)?;
    if event.event_name.starts_with(catalog::OPERATIONS_PREFIX) && !simulated {
        return Err(CommandError::validation(format!(
            "eventName: names starting with '{}' are hookbus's own events",
            catalog::OPERATIONS_PREFIX
        )));
    }
    publish_with(store, outbound, event, audience, simulated).await
}

/// Publishes one of hookbus's own events about `about` (see `delivery::operations`).
pub(crate) async fn publish_operational(
    store: &Store,
    outbound: &Outbound,
    event: NewEvent,
    about: &subscription::Model,
) -> Result<Published, CommandError> {
    let audience = Audience::About { subscription_id: about.id, owner: crate::owner::owner_of(about) };
    publish_with(store, outbound, event, audience, false).await
}

async fn publish_with(
    store: &Store,
    outbound: &Outbound,
    mut event: NewEvent,
    audience: Audience,
    simulated: bool,
) -> Result<Published, CommandError> {
    let db = store.db();
    catalog::ensure_known(db, "eventName", std::slice::from_ref(&event.event_name)).await?;
    if let Some(key) = &event.event_id
        && let Some(first) = find_published(store, key).await?
    {
        return Ok(first);
    }

    let now = hookbus_core::now();
    let id = Uuid::now_v7();
    let document = json!({"eventName": event.event_name, "resource": event.resource, "data": event.data});
    let data = std::mem::take(&mut event.data);
    let mut row = event::Model {
        id,
        event_key: event.event_id.clone().unwrap_or_else(|| id.to_string()),
        event_name: event.event_name.clone(),
        resource: event.resource.clone(),
        data,
        changed_attributes: event.changed_attributes.clone().map(|paths| json!(paths)),
        simulated,
        notifications: 0,
        occurred_at: now,
    };
    // Outside a unit of work everyone's subscriptions come from memory, checked as the rows are
    // written (see `recipients`); inside one, the unit's own changes count, so they are read.
    let from_memory = !store.in_unit() && matches!(audience, Audience::Everyone);
    let mut outdated = 0;
    let rows = loop {
        let (subscriptions, generation) = if from_memory && outdated < OUTDATED_TRIES {
            let matching = outbound.recipients.of(db, &event.event_name).await.or_internal()?;
            let wanted = matching.subscriptions.iter().filter(|sub| wants(sub, &event, &document)).cloned().collect();
            (wanted, Some(matching.generation))
        } else {
            let read = recipients(&event.event_name, &audience).all(db).await.or_internal()?;
            (read.into_iter().filter(|sub| wants(sub, &event, &document)).collect(), None)
        };
        let rows = Arc::new(EventRows::new(outbound, row, subscriptions, generation));
        // Inside a unit of work the unit commits; outside, concurrent publishes share commits.
        let written = if store.in_unit() {
            write(store, std::slice::from_ref(&rows)).await.and_then(|written| only(&written))
        } else {
            outbound.events.write(Arc::clone(&rows)).await
        };
        let Err(error) = written else { break rows };
        outbound.dispatcher.lanes.cancel(&rows.reserved.keys().copied().collect::<Vec<_>>());
        match (Written::from(error), &event.event_id) {
            (Written::Outdated, _) => {
                outbound.recipients.outdated(generation.unwrap_or_default());
                outdated += 1;
                row = Arc::try_unwrap(rows).map_or_else(|shared| shared.row.clone(), |rows| rows.row);
            }
            // Another publisher of the same eventId won the race: answer with its result.
            (Written::Duplicate, Some(key)) => {
                return find_published(store, key)
                    .await?
                    .ok_or_else(|| CommandError::conflict("Publishing failed", "eventId was published concurrently"));
            }
            (Written::Duplicate, None) => {
                return Err(CommandError::conflict("Publishing failed", "eventId was published concurrently"));
            }
            (Written::Failed(error), _) => return Err(error),
        }
    };
    let answer = published(&rows.row, false);
    // Senders get the notifications once they are durable: at once, or when the routed request
    // this publish belongs to commits. Rolled back, the lanes reserved for them are released.
    if store.in_unit() {
        let reserved_lanes: Vec<Uuid> = rows.reserved.keys().copied().collect();
        let released = outbound.clone();
        store.on_rollback(move || released.dispatcher.lanes.cancel(&reserved_lanes));
        let outbound = outbound.clone();
        store.after_commit(move || deliver_published(&outbound, &rows));
    } else {
        deliver_published(outbound, &rows);
    }
    Ok(answer)
}

/// What follows a durable publish: the reserved lanes' notifications to this instance's senders,
/// the others' lanes signalled.
fn deliver_published(outbound: &Outbound, rows: &EventRows) {
    outbound.metrics.published();
    if !rows.reserved.is_empty() {
        hand_over(outbound, &rows.row, &rows.subscriptions, &rows.notifications, &rows.reserved);
    }
    if !rows.signalled.is_empty() {
        outbound.dispatcher.lanes.queued(&rows.signalled);
        outbound.dispatcher.poll_now();
    }
}

/// Gives the new notifications of `reserved` lanes to this instance's senders. A job that cannot
/// be built (its secret does not decrypt) is given back: the poller reads it from the queue and
/// records why it cannot be sent.
fn hand_over(
    outbound: &Outbound,
    row: &event::Model,
    subscriptions: &[subscription::Model],
    notifications: &[notification::Model],
    reserved: &HashMap<Uuid, Timestamp>,
) {
    let now = hookbus_core::now();
    let lanes = &outbound.dispatcher.lanes;
    let Ok(body) = EventBody::of(row) else {
        lanes.cancel(&reserved.keys().copied().collect::<Vec<_>>());
        return;
    };
    let mut jobs = Vec::with_capacity(reserved.len());
    let mut unbuilt = Vec::new();
    for (sub, n) in subscriptions.iter().zip(notifications).filter(|(sub, _)| reserved.contains_key(&sub.id)) {
        match Target::of(outbound, sub, now) {
            Ok(target) => {
                jobs.push(Job { notification_id: n.id, attempts: 0, event: Arc::clone(&body), target });
            }
            Err(_) => unbuilt.push((sub.id, n.id)),
        }
    }
    lanes.hand_over(jobs);
    if !unbuilt.is_empty() {
        lanes.cancel(&unbuilt.iter().map(|(sub, _)| *sub).collect::<Vec<_>>());
        lanes.give_back(unbuilt.into_iter().map(|(_, n)| n));
        outbound.dispatcher.poll_now();
    }
}

/// Times a publish answered from memory may find the subscriptions changed before it reads them
/// from the database for its write (a writer changing them faster than publishes can follow).
const OUTDATED_TRIES: u32 = 2;

enum Written {
    Duplicate,
    /// Not written: the subscriptions changed since they were read.
    Outdated,
    Failed(CommandError),
}

impl From<DbErr> for Written {
    fn from(error: DbErr) -> Self {
        match error.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => Written::Duplicate,
            _ if matches!(error, DbErr::RecordNotInserted) => Written::Outdated,
            _ => Written::Failed(CommandError::internal(error)),
        }
    }
}

/// One write's result as an error: [`DbErr::RecordNotInserted`] when it was left out.
fn only(written: &[bool]) -> Result<(), DbErr> {
    if written.iter().all(|&done| done) { Ok(()) } else { Err(DbErr::RecordNotInserted) }
}

/// One publish: the event, its notifications and their queue entries, the lanes to signal, and
/// what its senders get once they are durable.
pub(crate) struct EventRows {
    row: event::Model,
    subscriptions: Vec<subscription::Model>,
    notifications: Vec<notification::Model>,
    queued: Vec<queue::Entry>,
    /// Lanes this instance owns, leased until then: their notifications go to its senders.
    reserved: HashMap<Uuid, Timestamp>,
    /// Lanes other instances own (or nobody does): signalled in the same write.
    signalled: Vec<Uuid>,
    /// The generation its subscriptions were read at, when they came from memory: its rows are
    /// written only while it is the current one.
    generation: Option<i64>,
}

impl EventRows {
    /// The rows of `row` for `subscriptions`, read at `generation` (`None`: read in this write's
    /// own transaction). Subscriptions whose lane this instance owns take their notification in
    /// memory, leased until the lane's lease; the others' lanes are signalled in the same write.
    fn new(
        outbound: &Outbound,
        mut row: event::Model,
        subscriptions: Vec<subscription::Model>,
        generation: Option<i64>,
    ) -> Self {
        let now = row.occurred_at;
        row.notifications = i32::try_from(subscriptions.len()).unwrap_or(i32::MAX);
        let waiting: Vec<&subscription::Model> = subscriptions.iter().filter(|sub| !sub.suspended).collect();
        let unordered: Vec<Uuid> =
            waiting.iter().filter(|sub| sub.ordering == Ordering::Unordered).map(|sub| sub.id).collect();
        let reserved: HashMap<Uuid, Timestamp> = unordered
            .iter()
            .zip(outbound.dispatcher.lanes.reserve(&unordered, now))
            .filter_map(|(id, lease)| lease.map(|until| (*id, until)))
            .collect();
        let signalled: Vec<Uuid> = waiting.iter().map(|sub| sub.id).filter(|id| !reserved.contains_key(id)).collect();
        let notifications: Vec<notification::Model> = subscriptions
            .iter()
            .map(|sub| notification::Model {
                id: Uuid::now_v7(),
                event_id: row.id,
                subscription_id: sub.id,
                event_name: row.event_name.clone(),
                status: if sub.suspended { NotificationStatus::Diverted } else { NotificationStatus::Pending },
                attempts: 0,
                next_attempt_at: (!sub.suspended).then_some(now),
                last_attempt_at: None,
                last_http_status: None,
                last_error: None,
                created_at: now,
                updated_at: now,
                delivered_at: None,
            })
            .collect();
        let queued: Vec<queue::Entry> = notifications
            .iter()
            .filter(|n| n.next_attempt_at.is_some())
            .map(|n| queue::Entry {
                notification_id: n.id,
                subscription_id: n.subscription_id,
                next_attempt_at: now,
                lease_until: reserved.get(&n.subscription_id).copied(),
            })
            .collect();
        Self { row, subscriptions, notifications, queued, reserved, signalled, generation }
    }

    /// Values its rows take in a group's write, a column's value each.
    fn values(&self) -> usize {
        EVENT_COLUMNS
            + NOTIFICATION_COLUMNS * self.notifications.len()
            + QUEUE_COLUMNS * self.queued.len()
            + self.signalled.len()
            + 1
    }
}

const EVENT_COLUMNS: usize = 10;
const NOTIFICATION_COLUMNS: usize = 9;
const QUEUE_COLUMNS: usize = 4;

/// Values one group's write holds at most, so that its statement (or transaction) stays a
/// bounded size.
const VALUES_PER_WRITE: usize = 30_000;

/// Writes publishes in groups: the publishes that arrive while one commits share the next
/// commit (see [`GroupCommit`]).
#[derive(Debug, Clone)]
pub(crate) struct EventWriter {
    store: Store,
}

impl EventWriter {
    pub(crate) fn group(store: &Store, metrics: &GroupCommitMetrics) -> GroupCommit<Self> {
        GroupCommit::new(Self { store: store.shared() }, metrics, "publish")
    }
}

impl GroupWrite for EventWriter {
    type Item = EventRows;
    const BUDGET: usize = VALUES_PER_WRITE;

    fn in_flight(&self) -> usize {
        self.store.commits_in_flight()
    }

    fn weight(&self, rows: &EventRows) -> usize {
        rows.values()
    }

    async fn write(&self, items: &[Arc<EventRows>]) -> Result<Vec<bool>, DbErr> {
        write(&self.store, items).await
    }
}

/// Writes the events of `items`, their notifications and their queue entries, and signals their
/// lanes, all or nothing; except that an event whose subscriptions were read at a generation that
/// is no longer the current one is left out with its rows. Returns, item by item, whether it was
/// written.
///
/// Inside a unit of work the rows are written in a savepoint of the unit's transaction.
async fn write(store: &Store, items: &[Arc<EventRows>]) -> Result<Vec<bool>, DbErr> {
    if store.db().get_database_backend() == DbBackend::Postgres && !store.in_unit() {
        write_in_one_statement(store, items).await
    } else {
        write_in_a_transaction(store, items).await
    }
}

/// Whether `rows` are written when the subscriptions' generation is `current`.
fn current_for(rows: &EventRows, current: i64) -> bool {
    rows.generation.is_none_or(|generation| generation == current)
}

/// The lanes `items` signal, each once, and the time to signal them with (the earliest event's).
fn signals(items: &[&EventRows]) -> (Vec<Uuid>, Timestamp) {
    let mut lanes: Vec<Uuid> = items.iter().flat_map(|rows| rows.signalled.iter().copied()).collect();
    lanes.sort_unstable();
    lanes.dedup();
    let now = items.iter().map(|rows| rows.row.occurred_at).min().unwrap_or_else(hookbus_core::now);
    (lanes, now)
}

async fn write_in_a_transaction(store: &Store, items: &[Arc<EventRows>]) -> Result<Vec<bool>, DbErr> {
    let txn = store.begin_write().await?;
    let current = if items.iter().any(|rows| rows.generation.is_some()) {
        crate::recipients::current_generation(&*txn).await?
    } else {
        0
    };
    let written: Vec<bool> = items.iter().map(|rows| current_for(rows, current)).collect();
    let items: Vec<&EventRows> =
        items.iter().zip(&written).filter(|(_, done)| **done).map(|(rows, _)| &**rows).collect();
    for chunk in items.chunks(1_000) {
        let rows = chunk.iter().map(|rows| event::ActiveModel::from(rows.row.clone()));
        event::Entity::insert_many(rows).exec_without_returning(&*txn).await?;
    }
    let notifications: Vec<&notification::Model> = items.iter().flat_map(|rows| &rows.notifications).collect();
    for chunk in notifications.chunks(1_000) {
        let rows = chunk.iter().map(|n| notification::ActiveModel::from((*n).clone()));
        notification::Entity::insert_many(rows).exec_without_returning(&*txn).await?;
    }
    queue::enqueue(&*txn, items.iter().flat_map(|rows| rows.queued.iter().cloned()).collect()).await?;
    let (lanes, now) = signals(&items);
    lane::mark_due(&*txn, &lanes, now).await?;
    txn.commit().await?;
    Ok(written)
}

/// PostgreSQL: the events, their notifications, their queue entries and the signals of the lanes
/// this instance does not own in one statement, atomic on its own, so that a group of publishes
/// costs one round trip and one commit. An event is inserted only if its generation is the
/// current one (or it has none); its notifications only with their event, its queue entries only
/// with their notification. The statement answers the current generation, which tells which were.
///
/// The rows go as one array per column: the statement's text is the same for any group, so each
/// connection prepares it once (a `VALUES` list would have a text per group shape, and parsing
/// and planning those would cost PostgreSQL more than the rows).
async fn write_in_one_statement(store: &Store, items: &[Arc<EventRows>]) -> Result<Vec<bool>, DbErr> {
    static WRITE: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH \
        w0 AS (INSERT INTO events (id, event_key, event_name, resource, data, changed_attributes, simulated, \
            notifications, occurred_at) \
            SELECT id, event_key, event_name, resource, data, changed_attributes, simulated, notifications, \
            occurred_at \
            FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[], $7::bool[], \
            $8::int4[], $9::timestamptz[], $10::int8[]) AS v (id, event_key, event_name, resource, data, \
            changed_attributes, simulated, notifications, occurred_at, generation) \
            WHERE generation IS NULL \
            OR generation = ({generation}) \
            RETURNING id), \
        w1 AS (INSERT INTO notifications (id, event_id, subscription_id, event_name, status, attempts, \
            next_attempt_at, created_at, updated_at) \
            SELECT v.* FROM unnest($11::uuid[], $12::uuid[], $13::uuid[], $14::text[], $15::text[], \
            $16::int4[], $17::timestamptz[], $18::timestamptz[], $19::timestamptz[]) AS v (id, event_id, \
            subscription_id, event_name, status, attempts, next_attempt_at, created_at, updated_at) \
            JOIN w0 ON w0.id = v.event_id RETURNING notifications.id), \
        w2 AS (INSERT INTO delivery_queue (notification_id, subscription_id, next_attempt_at, lease_until) \
            SELECT v.* FROM unnest($20::uuid[], $21::uuid[], $22::timestamptz[], $23::timestamptz[]) \
            AS v (notification_id, subscription_id, next_attempt_at, lease_until) \
            JOIN w1 ON w1.id = v.notification_id), \
        w3 AS (UPDATE delivery_lanes SET due_at = $25 WHERE subscription_id = ANY($24::uuid[]) \
            AND (due_at IS NULL OR due_at > $25) AND (healthy OR next_probe_at <= $25)) \
        {generation}",
            generation = crate::recipients::GENERATION_SQL
        )
    });
    use sqlx::types::Json;

    let events: Vec<&event::Model> = items.iter().map(|rows| &rows.row).collect();
    let notifications: Vec<&notification::Model> = items.iter().flat_map(|rows| &rows.notifications).collect();
    let entries: Vec<&queue::Entry> = items.iter().flat_map(|rows| &rows.queued).collect();
    // A lane signalled for an event left out finds nothing to do: harmless.
    let (lanes, now) = signals(&items.iter().map(|rows| &**rows).collect::<Vec<_>>());
    let pool = store.db().pool().get_postgres_connection_pool();
    let current: i64 = sqlx::query_scalar(WRITE.as_str())
        .bind(events.iter().map(|e| e.id).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.event_key.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.event_name.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.resource.as_deref()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| Json(&e.data)).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.changed_attributes.as_ref().map(Json)).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.simulated).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.notifications).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.occurred_at).collect::<Vec<_>>())
        .bind(items.iter().map(|rows| rows.generation).collect::<Vec<_>>())
        .bind(notifications.iter().map(|n| n.id).collect::<Vec<_>>())
        .bind(notifications.iter().map(|n| n.event_id).collect::<Vec<_>>())
        .bind(notifications.iter().map(|n| n.subscription_id).collect::<Vec<_>>())
        .bind(notifications.iter().map(|n| n.event_name.as_str()).collect::<Vec<_>>())
        .bind(notifications.iter().map(|n| n.status.as_str()).collect::<Vec<_>>())
        .bind(notifications.iter().map(|n| n.attempts).collect::<Vec<_>>())
        .bind(notifications.iter().map(|n| n.next_attempt_at).collect::<Vec<_>>())
        .bind(notifications.iter().map(|n| n.created_at).collect::<Vec<_>>())
        .bind(notifications.iter().map(|n| n.updated_at).collect::<Vec<_>>())
        .bind(entries.iter().map(|entry| entry.notification_id).collect::<Vec<_>>())
        .bind(entries.iter().map(|entry| entry.subscription_id).collect::<Vec<_>>())
        .bind(entries.iter().map(|entry| entry.next_attempt_at).collect::<Vec<_>>())
        .bind(entries.iter().map(|entry| entry.lease_until).collect::<Vec<_>>())
        .bind(lanes)
        .bind(now)
        .fetch_one(pool)
        .await
        .map_err(hookbus_store::query_error)?;
    Ok(items.iter().map(|rows| current_for(rows, current)).collect())
}

/// Event ids the bus may not use: the provider routes' (`mono:<key>`, `remita.payment:<rrr>`), so
/// that nobody can publish a provider's event before the provider does and have the genuine one
/// dropped as a repeat, and the prefix of owners' ids.
const RESERVED_EVENT_ID_PREFIXES: [&str; 5] = ["mono.", "mono:", "remita.", "remita:", OWNER_SCOPE];

/// The prefix of the stored key of an event id published by an owner-bound token.
const OWNER_SCOPE: &str = "owner:";

/// Hex digits of the owner's digest in a scoped key.
const OWNER_DIGEST_HEX: usize = 16;

fn check_event_id(event_id: Option<&str>) -> Result<(), CommandError> {
    match event_id {
        Some(id) if RESERVED_EVENT_ID_PREFIXES.iter().any(|prefix| id.starts_with(prefix)) => {
            Err(CommandError::validation(format!(
                "eventId: ids starting with {} are reserved (the provider routes publish under mono: and remita.*:)",
                RESERVED_EVENT_ID_PREFIXES.join(", ")
            )))
        }
        _ => Ok(()),
    }
}

/// The key an event id is stored and deduplicated under: as given for an unbound publisher;
/// `owner:<digest of the owner>:<id>` for an owner-bound one, so that each owner's ids are its own.
fn stored_event_key(owner: Option<&Owner>, event_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let Some(owner) = owner else { return event_id.to_owned() };
    let named = match owner {
        Owner::Partner(id) => format!("partner:{id}"),
        Owner::Customer(id) => format!("customer:{id}"),
    };
    let digest = hex::encode(Sha256::digest(named.as_bytes()));
    format!("{OWNER_SCOPE}{}:{event_id}", &digest[..OWNER_DIGEST_HEX])
}

/// The event id as its publisher gave it: a stored key without its owner scope.
pub(crate) fn public_event_id(key: &str) -> &str {
    key.strip_prefix(OWNER_SCOPE)
        .and_then(|rest| rest.get(OWNER_DIGEST_HEX..))
        .and_then(|rest| rest.strip_prefix(':'))
        .unwrap_or(key)
}

fn published(row: &event::Model, duplicate: bool) -> Published {
    Published {
        event_id: public_event_id(&row.event_key).to_owned(),
        event_name: row.event_name.clone(),
        occurred_at: row.occurred_at,
        notifications: row.notifications,
        duplicate,
    }
}

async fn find_published(store: &Store, key: &str) -> Result<Option<Published>, CommandError> {
    let first = event::Entity::find().filter(event::Column::EventKey.eq(key)).one(store.db()).await.or_internal()?;
    Ok(first.map(|row| published(&row, true)))
}

/// Active subscriptions to `event_name` (by name or to everything), limited to the audience.
fn recipients(event_name: &str, audience: &Audience) -> sea_orm::Select<subscription::Entity> {
    let query = crate::recipients::subscribed(event_name);
    match audience {
        Audience::Everyone => query,
        Audience::Owner(owner) => query.filter(crate::owner::owner_condition(owner)),
        Audience::About { subscription_id, owner } => {
            let platform = Condition::all()
                .add(subscription::Column::PartnerId.is_null())
                .add(subscription::Column::CustomerId.is_null());
            let audience = match owner {
                Some(owner) => Condition::any().add(platform).add(crate::owner::owner_condition(owner)),
                None => platform,
            };
            query.filter(audience).filter(subscription::Column::Id.ne(*subscription_id))
        }
    }
}

/// The subscription's resource and filters admit the event.
fn wants(sub: &subscription::Model, event: &NewEvent, document: &Value) -> bool {
    let resource_ok = match (&sub.resource, &event.resource) {
        (Some(wanted), Some(given)) => wanted.eq_ignore_ascii_case(given),
        (Some(_), None) => false,
        (None, _) => true,
    };
    resource_ok && filters_of(sub).admit(document, event.changed_attributes.as_deref())
}

fn check(event: &NewEvent) -> Result<(), CommandError> {
    let mut errors = Vec::new();
    if event.event_name.trim().is_empty() {
        errors.push("eventName: must not be empty".to_owned());
    }
    if event.event_name == catalog::PING {
        errors.push("eventName: 'ping' is reserved for PingWebhookSubscriptionCommand".to_owned());
    }
    if let Some(key) = &event.event_id
        && (key.trim().is_empty() || key.len() > 200)
    {
        errors.push("eventId: must be 1 to 200 characters".to_owned());
    }
    if let Some(resource) = &event.resource
        && resource.len() > 200
    {
        errors.push("resource: must be at most 200 characters".to_owned());
    }
    for (i, path) in event.changed_attributes.iter().flatten().enumerate() {
        if !path.starts_with('/') {
            errors.push(format!("changedAttributes[{i}]: '{path}' must start with '/'"));
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(CommandError::Validation(errors)) }
}

/// Publishes an event to every matching subscription.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishEventCommand {
    pub event_name: String,
    #[serde(default)]
    pub resource: Option<String>,
    pub data: Value,
    #[serde(default)]
    pub event_id: Option<String>,
    #[serde(default)]
    pub changed_attributes: Option<Vec<String>>,
}

impl Handler for PublishEventCommand {
    const PERMISSION: Permission = Permission::EventsPublish;
    type Answer = Published;

    /// A publisher bound to an owner reaches only that owner's subscriptions, and its `eventId`s
    /// are its own: they can neither pre-empt nor reveal another publisher's.
    async fn handle(&self, ctx: &Context) -> Result<Answered<Self::Answer>, CommandError> {
        check_event_id(self.event_id.as_deref())?;
        let owner = ctx.principal.owner.as_ref();
        let event = NewEvent {
            event_name: self.event_name.clone(),
            resource: self.resource.clone(),
            data: self.data.clone(),
            event_id: self.event_id.as_deref().map(|id| stored_event_key(owner, id)),
            changed_attributes: self.changed_attributes.clone(),
        };
        let audience = owner.map_or(Audience::Everyone, |owner| Audience::Owner(owner.clone()));
        let (store, outbound) = (ctx.service::<Store>()?, ctx.service::<Outbound>()?);
        let mut published = publish_to(store, outbound, event, audience, false).await?;
        published.event_id = public_event_id(&published.event_id).to_owned();
        let message = if published.duplicate { "Event already published" } else { "Event published successfully" };
        Answered::ok(published, message)
    }
}
register_command!("PublishEventCommand" => PublishEventCommand);
