use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

/// Delivery lanes: each subscription's notifications are sent by one instance at a time, which
/// applies the subscription's concurrency, rate limit, ordering and endpoint health in memory.
///
/// - `delivery_lanes`: one row per subscription. `owner` and `lease_until` say which instance
///   sends for it; `due_at` is the time work is waiting for an instance to take the lane; the
///   health columns are the endpoint's circuit breaker, shared by every instance and shown by the
///   subscription queries.
/// - `delivery_queue` is read per lane, so its index leads with the subscription.
/// - `subscriptions` gains `max_concurrency`, `rate_limit_per_second` and `ordering`.
/// - `key_checks`: a value made with a configured key (never the key), so an instance started with
///   another key refuses to start.
///
/// On PostgreSQL the lanes' rows change with every lease renewal: `fillfactor` 70 keeps those
/// updates on their page, and autovacuum comes after a fixed number of dead rows.
#[derive(DeriveMigrationName)]
pub struct Migration;

const LANE_DUE_INDEX: &str = "idx_delivery_lanes_due_at";
const QUEUE_LANE_INDEX: &str = "idx_delivery_queue_lane";
const OLD_QUEUE_INDEX: &str = "idx_delivery_queue_next_attempt_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DeliveryLanes::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(DeliveryLanes::SubscriptionId).uuid().not_null().primary_key())
                    .col(ColumnDef::new(DeliveryLanes::Owner).uuid().null())
                    .col(ColumnDef::new(DeliveryLanes::LeaseUntil).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(DeliveryLanes::DueAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(DeliveryLanes::Healthy).boolean().not_null().default(true))
                    .col(ColumnDef::new(DeliveryLanes::UnhealthySince).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(DeliveryLanes::NextProbeAt).timestamp_with_time_zone().null())
                    .col(ColumnDef::new(DeliveryLanes::CooldownSecs).integer().not_null().default(0))
                    .col(ColumnDef::new(DeliveryLanes::HealthReason).text().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(LANE_DUE_INDEX)
                    .table(DeliveryLanes::Table)
                    .col(DeliveryLanes::DueAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        if manager.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(
                "ALTER TABLE delivery_lanes SET (fillfactor = 70, autovacuum_vacuum_scale_factor = 0, \
                 autovacuum_vacuum_threshold = 1000)",
            )
            .await?;
        }
        db.execute_unprepared(
            "INSERT INTO delivery_lanes (subscription_id, due_at) \
             SELECT s.id, (SELECT MIN(q.next_attempt_at) FROM delivery_queue q WHERE q.subscription_id = s.id) \
             FROM subscriptions s",
        )
        .await?;
        manager
            .create_index(
                Index::create()
                    .name(QUEUE_LANE_INDEX)
                    .table(DeliveryQueue::Table)
                    .col(DeliveryQueue::SubscriptionId)
                    .col(DeliveryQueue::NextAttemptAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(Index::drop().name(OLD_QUEUE_INDEX).table(DeliveryQueue::Table).if_exists().to_owned())
            .await?;
        // One column per statement: SQLite adds one at a time.
        for column in [
            ColumnDef::new(Subscriptions::MaxConcurrency).integer().null().to_owned(),
            ColumnDef::new(Subscriptions::RateLimitPerSecond).integer().null().to_owned(),
            ColumnDef::new(Subscriptions::Ordering).string_len(16).not_null().default("unordered").to_owned(),
        ] {
            manager.alter_table(Table::alter().table(Subscriptions::Table).add_column(column).to_owned()).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(KeyChecks::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(KeyChecks::Name).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(KeyChecks::Value).text().not_null())
                    .col(ColumnDef::new(KeyChecks::CreatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(KeyChecks::Table).to_owned()).await?;
        for column in [Subscriptions::MaxConcurrency, Subscriptions::RateLimitPerSecond, Subscriptions::Ordering] {
            manager.alter_table(Table::alter().table(Subscriptions::Table).drop_column(column).to_owned()).await?;
        }
        manager
            .create_index(
                Index::create()
                    .name(OLD_QUEUE_INDEX)
                    .table(DeliveryQueue::Table)
                    .col(DeliveryQueue::NextAttemptAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(Index::drop().name(QUEUE_LANE_INDEX).table(DeliveryQueue::Table).if_exists().to_owned())
            .await?;
        manager.drop_table(Table::drop().table(DeliveryLanes::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum DeliveryLanes {
    Table,
    SubscriptionId,
    Owner,
    LeaseUntil,
    DueAt,
    Healthy,
    UnhealthySince,
    NextProbeAt,
    CooldownSecs,
    HealthReason,
}

#[derive(DeriveIden)]
enum DeliveryQueue {
    Table,
    SubscriptionId,
    NextAttemptAt,
}

#[derive(DeriveIden)]
enum Subscriptions {
    Table,
    MaxConcurrency,
    RateLimitPerSecond,
    Ordering,
}

#[derive(DeriveIden)]
enum KeyChecks {
    Table,
    Name,
    Value,
    CreatedAt,
}
