use sea_orm_migration::prelude::*;

/// Indexes that let the list queries and the sweeps read only what they return, however long the
/// tables grow:
/// - `inbound_events (config_key, received_at, id)` replaces the index on `config_key` alone. The
///   log is listed by key, newest first; with the key alone, a busy key's listing sorted all of
///   that key's rows for every page (or walked the time index past every other key's rows).
/// - `process_instances (definition_id, created_at, id)` and `(created_at, id)`: instances are
///   listed newest first, with or without a definition, and deleting a definition counts its
///   running instances; none of the three had an index.
/// - `provider_notifications (claimed_at)`: the retention sweep deletes the old deduplication rows.
#[derive(DeriveMigrationName)]
pub struct Migration;

const INBOUND_KEY: &str = "idx_inbound_events_config_key";
const INBOUND_KEY_TIME: &str = "idx_inbound_events_key_received_at";
const INSTANCES_DEFINITION: &str = "idx_process_instances_definition_created_at";
const INSTANCES_CREATED: &str = "idx_process_instances_created_at";
const PROVIDER_CLAIMED: &str = "idx_provider_notifications_claimed_at";

/// The new indexes: name, table, columns.
fn created() -> [(&'static str, DynIden, Vec<DynIden>); 4] {
    [
        (
            INBOUND_KEY_TIME,
            InboundEvents::Table.into_iden(),
            vec![
                InboundEvents::ConfigKey.into_iden(),
                InboundEvents::ReceivedAt.into_iden(),
                InboundEvents::Id.into_iden(),
            ],
        ),
        (
            INSTANCES_DEFINITION,
            ProcessInstances::Table.into_iden(),
            vec![
                ProcessInstances::DefinitionId.into_iden(),
                ProcessInstances::CreatedAt.into_iden(),
                ProcessInstances::Id.into_iden(),
            ],
        ),
        (
            INSTANCES_CREATED,
            ProcessInstances::Table.into_iden(),
            vec![ProcessInstances::CreatedAt.into_iden(), ProcessInstances::Id.into_iden()],
        ),
        (
            PROVIDER_CLAIMED,
            ProviderNotifications::Table.into_iden(),
            vec![ProviderNotifications::ClaimedAt.into_iden()],
        ),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, columns) in created() {
            let mut index = Index::create();
            index.name(name).table(table).if_not_exists();
            for column in columns {
                index.col(column);
            }
            manager.create_index(index).await?;
        }
        // The new inbound index's prefix serves every query the old one did.
        manager.drop_index(Index::drop().name(INBOUND_KEY).table(InboundEvents::Table).if_exists().to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(INBOUND_KEY)
                    .table(InboundEvents::Table)
                    .col(InboundEvents::ConfigKey)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        for (name, table, _) in created() {
            manager.drop_index(Index::drop().name(name).table(table).to_owned()).await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum InboundEvents {
    Table,
    Id,
    ConfigKey,
    ReceivedAt,
}

#[derive(DeriveIden)]
enum ProcessInstances {
    Table,
    Id,
    DefinitionId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ProviderNotifications {
    Table,
    ClaimedAt,
}
