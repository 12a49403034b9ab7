use sea_orm_migration::{prelude::*, schema::*};

/// The notifications the fixed provider routes have taken, one row per provider and
/// deduplication key. The primary key is what makes deduplication hold across instances sharing
/// the database: of two requests carrying the same notification, one inserts the row and the other
/// finds it.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ProviderNotifications::Table)
                    .if_not_exists()
                    .col(string_len(ProviderNotifications::Provider, 32))
                    .col(string(ProviderNotifications::DedupeKey))
                    // The inbound event (log row) of the request that took it.
                    .col(uuid(ProviderNotifications::InboundEventId))
                    // Claimed while its request publishes it; Published once its events are stored.
                    .col(string_len(ProviderNotifications::State, 16))
                    .col(string_null(ProviderNotifications::EventId))
                    .col(timestamp_with_time_zone(ProviderNotifications::ClaimedAt))
                    .col(timestamp_with_time_zone_null(ProviderNotifications::PublishedAt))
                    .primary_key(
                        Index::create().col(ProviderNotifications::Provider).col(ProviderNotifications::DedupeKey),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ProviderNotifications::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum ProviderNotifications {
    Table,
    Provider,
    DedupeKey,
    InboundEventId,
    State,
    EventId,
    ClaimedAt,
    PublishedAt,
}
