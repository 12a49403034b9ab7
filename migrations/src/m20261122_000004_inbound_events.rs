use sea_orm_migration::{prelude::*, schema::*};

/// The inbound event log: every request the router received, its outcome, and, for
/// `respondAsync` configurations, the durable queue of requests still to run.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(InboundEvents::Table)
                    .if_not_exists()
                    .col(pk_uuid(InboundEvents::Id))
                    .col(integer(InboundEvents::ConfigId))
                    .col(string(InboundEvents::ConfigKey))
                    .col(json(InboundEvents::Request))
                    .col(text(InboundEvents::RawBody))
                    // Only while it identifies a request whose handler succeeded or is running, so
                    // that a failed request can be sent again.
                    .col(string_null(InboundEvents::IdempotencyValue))
                    .col(uuid_null(InboundEvents::DuplicateOf))
                    .col(uuid_null(InboundEvents::ReplayOf))
                    .col(string_len(InboundEvents::Status, 16))
                    .col(integer_null(InboundEvents::HttpStatus))
                    .col(string_null(InboundEvents::Message))
                    .col(json_null(InboundEvents::Data))
                    .col(json_null(InboundEvents::Errors))
                    .col(integer(InboundEvents::Attempts))
                    .col(timestamp_with_time_zone_null(InboundEvents::NextAttemptAt))
                    .col(timestamp_with_time_zone_null(InboundEvents::LeaseUntil))
                    .col(big_integer_null(InboundEvents::DurationMs))
                    .col(timestamp_with_time_zone(InboundEvents::ReceivedAt))
                    .col(timestamp_with_time_zone_null(InboundEvents::CompletedAt))
                    .to_owned(),
            )
            .await?;
        // Partial indexes: most rows (plain requests) have neither an idempotency value nor a
        // retry time, and need not pay for an entry in these.
        manager
            .create_index(
                Index::create()
                    .name("idx_inbound_events_idempotency")
                    .table(InboundEvents::Table)
                    .col(InboundEvents::ConfigId)
                    .col(InboundEvents::IdempotencyValue)
                    .unique()
                    .and_where(Expr::col(InboundEvents::IdempotencyValue).is_not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_inbound_events_next_attempt_at")
                    .table(InboundEvents::Table)
                    .col(InboundEvents::NextAttemptAt)
                    .and_where(Expr::col(InboundEvents::NextAttemptAt).is_not_null())
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("idx_inbound_events_received_at", InboundEvents::ReceivedAt),
            ("idx_inbound_events_config_key", InboundEvents::ConfigKey),
        ] {
            manager.create_index(Index::create().name(name).table(InboundEvents::Table).col(column).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(InboundEvents::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum InboundEvents {
    Table,
    Id,
    ConfigId,
    ConfigKey,
    Request,
    RawBody,
    IdempotencyValue,
    DuplicateOf,
    ReplayOf,
    Status,
    HttpStatus,
    Message,
    Data,
    Errors,
    Attempts,
    NextAttemptAt,
    LeaseUntil,
    DurationMs,
    ReceivedAt,
    CompletedAt,
}
