use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

/// The delivery queue in a table of its own, and storage settings that keep the busy tables small
/// on PostgreSQL.
///
/// `delivery_queue` holds one row per notification still to be sent: when it is due
/// (`next_attempt_at`, indexed: the pollers' order) and which instance holds it (`lease_until`).
/// It replaces the partial index on `notifications.next_attempt_at` (and the notifications'
/// `lease_until`), with which every delivery changed an indexed column: no update of a notification
/// could stay in place (PostgreSQL's HOT update), each wrote new entries into all five of its
/// indexes and left a dead entry in the queue's index that every poll walked until vacuum came.
/// With the queue apart, a notification's updates touch no indexed column, and the rows that churn
/// are in a table as small as the backlog.
///
/// On PostgreSQL:
/// - `fillfactor` leaves room in each page of `notifications` (60: an outcome batch updates most
///   rows of a page in one transaction, so the page needs room for their new versions all at
///   once), `delivery_queue` (70) and `subscriptions` (70, whose delivery counters change with
///   every batch) for the new version of an updated row, so that the update stays on its page
///   (HOT);
/// - autovacuum comes after 1% of the rows changed instead of 20% on the tables that churn
///   (`notifications`, `inbound_events`, `delivery_attempts` for inserts), and after a fixed 1,000
///   dead rows on `delivery_queue`, whose size is the backlog's.
#[derive(DeriveMigrationName)]
pub struct Migration;

const QUEUE_INDEX: &str = "idx_delivery_queue_next_attempt_at";
const OLD_QUEUE_INDEX: &str = "idx_notifications_queue";

/// PostgreSQL storage parameters: table, settings.
const STORAGE: [(&str, &str); 6] = [
    (
        "notifications",
        "fillfactor = 60, autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02, \
         autovacuum_vacuum_insert_scale_factor = 0.05",
    ),
    (
        "delivery_queue",
        "fillfactor = 70, autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000, \
         autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 1000, autovacuum_vacuum_cost_delay = 0",
    ),
    ("subscriptions", "fillfactor = 70"),
    (
        "inbound_events",
        "autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.02, \
         autovacuum_vacuum_insert_scale_factor = 0.05",
    ),
    ("delivery_attempts", "autovacuum_vacuum_insert_scale_factor = 0.05, autovacuum_analyze_scale_factor = 0.02"),
    ("events", "autovacuum_vacuum_insert_scale_factor = 0.05, autovacuum_analyze_scale_factor = 0.02"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DeliveryQueue::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(DeliveryQueue::NotificationId).uuid().not_null().primary_key())
                    .col(ColumnDef::new(DeliveryQueue::SubscriptionId).uuid().not_null())
                    .col(ColumnDef::new(DeliveryQueue::NextAttemptAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(DeliveryQueue::LeaseUntil).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(QUEUE_INDEX)
                    .table(DeliveryQueue::Table)
                    .col(DeliveryQueue::NextAttemptAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared(
            "INSERT INTO delivery_queue (notification_id, subscription_id, next_attempt_at, lease_until) \
             SELECT id, subscription_id, next_attempt_at, lease_until FROM notifications \
             WHERE next_attempt_at IS NOT NULL",
        )
        .await?;
        manager
            .drop_index(Index::drop().name(OLD_QUEUE_INDEX).table(Notifications::Table).if_exists().to_owned())
            .await?;
        manager
            .alter_table(Table::alter().table(Notifications::Table).drop_column(Notifications::LeaseUntil).to_owned())
            .await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            for (table, settings) in STORAGE {
                db.execute_unprepared(&format!("ALTER TABLE {table} SET ({settings})")).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if manager.get_database_backend() == DbBackend::Postgres {
            for (table, settings) in STORAGE {
                let names: Vec<&str> =
                    settings.split(',').filter_map(|setting| setting.split('=').next()).map(str::trim).collect();
                db.execute_unprepared(&format!("ALTER TABLE {table} RESET ({})", names.join(", "))).await?;
            }
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Notifications::Table)
                    .add_column(ColumnDef::new(Notifications::LeaseUntil).timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;
        db.execute_unprepared(
            "UPDATE notifications SET lease_until = (SELECT lease_until FROM delivery_queue \
             WHERE delivery_queue.notification_id = notifications.id)",
        )
        .await?;
        manager
            .create_index(
                Index::create()
                    .name(OLD_QUEUE_INDEX)
                    .table(Notifications::Table)
                    .col(Notifications::NextAttemptAt)
                    .and_where(Expr::col(Notifications::NextAttemptAt).is_not_null())
                    .to_owned(),
            )
            .await?;
        manager.drop_table(Table::drop().table(DeliveryQueue::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum DeliveryQueue {
    Table,
    NotificationId,
    SubscriptionId,
    NextAttemptAt,
    LeaseUntil,
}

#[derive(DeriveIden)]
enum Notifications {
    Table,
    NextAttemptAt,
    LeaseUntil,
}
