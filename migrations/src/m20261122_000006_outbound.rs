use sea_orm_migration::{prelude::*, schema::*};

/// Outbound delivery: registered event types, published events, subscriptions, the
/// notification queue and its attempt log.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(EventTypes::Table)
                    .if_not_exists()
                    .col(string(EventTypes::Name).primary_key())
                    .col(text(EventTypes::Description))
                    .col(json_null(EventTypes::SamplePayload))
                    .col(timestamp_with_time_zone(EventTypes::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .if_not_exists()
                    .col(pk_uuid(Events::Id))
                    // The publisher's `eventId`, else the id: what makes publishing idempotent.
                    .col(string(Events::EventKey).unique_key())
                    .col(string(Events::EventName))
                    .col(string_null(Events::Resource))
                    .col(json(Events::Data))
                    .col(json_null(Events::ChangedAttributes))
                    .col(boolean(Events::Simulated))
                    .col(integer(Events::Notifications))
                    .col(timestamp_with_time_zone(Events::OccurredAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Subscriptions::Table)
                    .if_not_exists()
                    .col(pk_uuid(Subscriptions::Id))
                    .col(uuid_null(Subscriptions::PartnerId))
                    .col(string_null(Subscriptions::CustomerId))
                    .col(string(Subscriptions::Name))
                    .col(text(Subscriptions::WebhookUri))
                    // Encrypted; `SecretHint` is the mask reads show (`whsec_****abcd`).
                    .col(text(Subscriptions::Secret))
                    .col(string(Subscriptions::SecretHint))
                    .col(text_null(Subscriptions::PreviousSecret))
                    .col(timestamp_with_time_zone_null(Subscriptions::PreviousSecretUntil))
                    .col(boolean(Subscriptions::IsActive))
                    .col(boolean(Subscriptions::SubscribeAll))
                    .col(json(Subscriptions::Events))
                    .col(string_null(Subscriptions::Resource))
                    .col(json(Subscriptions::Filters))
                    .col(string_len(Subscriptions::DeliveryPolicy, 16))
                    .col(integer(Subscriptions::MaxAttempts))
                    .col(integer(Subscriptions::RetryIntervalSeconds))
                    .col(json(Subscriptions::Headers))
                    .col(boolean(Subscriptions::HmacEnabled))
                    .col(boolean(Subscriptions::SecureSsl))
                    .col(string_null(Subscriptions::Tag))
                    .col(boolean(Subscriptions::Suspended))
                    .col(timestamp_with_time_zone_null(Subscriptions::SuspendedAt))
                    .col(integer(Subscriptions::ExpiredStreak))
                    .col(timestamp_with_time_zone_null(Subscriptions::LastDeliveryAt))
                    .col(string_len_null(Subscriptions::LastDeliveryStatus, 16))
                    .col(integer_null(Subscriptions::LastHttpStatus))
                    .col(timestamp_with_time_zone(Subscriptions::CreatedAt))
                    .col(timestamp_with_time_zone(Subscriptions::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("idx_subscriptions_partner_id", Subscriptions::PartnerId),
            ("idx_subscriptions_customer_id", Subscriptions::CustomerId),
        ] {
            manager.create_index(Index::create().name(name).table(Subscriptions::Table).col(column).to_owned()).await?;
        }

        // Which subscriptions want an event name, so that publishing finds them through an index.
        manager
            .create_table(
                Table::create()
                    .table(SubscriptionEvents::Table)
                    .if_not_exists()
                    .col(uuid(SubscriptionEvents::SubscriptionId))
                    .col(string(SubscriptionEvents::EventName))
                    .primary_key(
                        Index::create().col(SubscriptionEvents::SubscriptionId).col(SubscriptionEvents::EventName),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_subscription_events_event_name")
                    .table(SubscriptionEvents::Table)
                    .col(SubscriptionEvents::EventName)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Notifications::Table)
                    .if_not_exists()
                    .col(pk_uuid(Notifications::Id))
                    .col(uuid(Notifications::EventId))
                    .col(uuid(Notifications::SubscriptionId))
                    .col(string(Notifications::EventName))
                    .col(string_len(Notifications::Status, 16))
                    .col(integer(Notifications::Attempts))
                    .col(timestamp_with_time_zone_null(Notifications::NextAttemptAt))
                    .col(timestamp_with_time_zone_null(Notifications::LeaseUntil))
                    .col(timestamp_with_time_zone_null(Notifications::LastAttemptAt))
                    .col(integer_null(Notifications::LastHttpStatus))
                    .col(text_null(Notifications::LastError))
                    .col(timestamp_with_time_zone(Notifications::CreatedAt))
                    .col(timestamp_with_time_zone(Notifications::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Notifications::DeliveredAt))
                    .to_owned(),
            )
            .await?;
        // The queue: only notifications still to send have a next attempt time, so the index the
        // workers poll stays as small as the backlog.
        manager
            .create_index(
                Index::create()
                    .name("idx_notifications_queue")
                    .table(Notifications::Table)
                    .col(Notifications::NextAttemptAt)
                    .and_where(Expr::col(Notifications::NextAttemptAt).is_not_null())
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("idx_notifications_subscription_id", Notifications::SubscriptionId),
            ("idx_notifications_event_id", Notifications::EventId),
            ("idx_notifications_created_at", Notifications::CreatedAt),
        ] {
            manager.create_index(Index::create().name(name).table(Notifications::Table).col(column).to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(DeliveryAttempts::Table)
                    .if_not_exists()
                    .col(pk_uuid(DeliveryAttempts::Id))
                    .col(uuid(DeliveryAttempts::NotificationId))
                    .col(integer(DeliveryAttempts::Attempt))
                    .col(timestamp_with_time_zone(DeliveryAttempts::AttemptedAt))
                    .col(big_integer(DeliveryAttempts::DurationMs))
                    .col(integer_null(DeliveryAttempts::HttpStatus))
                    .col(text_null(DeliveryAttempts::Error))
                    .col(text_null(DeliveryAttempts::ResponseExcerpt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_delivery_attempts_notification_id")
                    .table(DeliveryAttempts::Table)
                    .col(DeliveryAttempts::NotificationId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            DeliveryAttempts::Table.into_iden(),
            Notifications::Table.into_iden(),
            SubscriptionEvents::Table.into_iden(),
            Subscriptions::Table.into_iden(),
            Events::Table.into_iden(),
            EventTypes::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum EventTypes {
    Table,
    Name,
    Description,
    SamplePayload,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
    EventKey,
    EventName,
    Resource,
    Data,
    ChangedAttributes,
    Simulated,
    Notifications,
    OccurredAt,
}

#[derive(DeriveIden)]
enum Subscriptions {
    Table,
    Id,
    PartnerId,
    CustomerId,
    Name,
    WebhookUri,
    Secret,
    SecretHint,
    PreviousSecret,
    PreviousSecretUntil,
    IsActive,
    SubscribeAll,
    Events,
    Resource,
    Filters,
    DeliveryPolicy,
    MaxAttempts,
    RetryIntervalSeconds,
    Headers,
    HmacEnabled,
    SecureSsl,
    Tag,
    Suspended,
    SuspendedAt,
    ExpiredStreak,
    LastDeliveryAt,
    LastDeliveryStatus,
    LastHttpStatus,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SubscriptionEvents {
    Table,
    SubscriptionId,
    EventName,
}

#[derive(DeriveIden)]
enum Notifications {
    Table,
    Id,
    EventId,
    SubscriptionId,
    EventName,
    Status,
    Attempts,
    NextAttemptAt,
    LeaseUntil,
    LastAttemptAt,
    LastHttpStatus,
    LastError,
    CreatedAt,
    UpdatedAt,
    DeliveredAt,
}

#[derive(DeriveIden)]
enum DeliveryAttempts {
    Table,
    Id,
    NotificationId,
    Attempt,
    AttemptedAt,
    DurationMs,
    HttpStatus,
    Error,
    ResponseExcerpt,
}
