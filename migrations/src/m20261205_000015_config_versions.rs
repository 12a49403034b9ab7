use sea_orm_migration::prelude::*;

/// The history of router configurations: `webhook_config_versions` keeps every saved state of a
/// configuration (its fields as the configuration queries show them, as JSON text), who saved it
/// and when, and what the change was. Rows outlive their configuration: a deleted configuration's
/// history is deleted with the inbound log's retention. `inbound_events.config_version` records
/// the version that handled each request.
#[derive(DeriveMigrationName)]
pub struct Migration;

const CONFIG_VERSION_INDEX: &str = "idx_webhook_config_versions_config_version";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Versions::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Versions::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(Versions::ConfigId).integer().not_null())
                    .col(ColumnDef::new(Versions::Version).integer().not_null())
                    .col(ColumnDef::new(Versions::ConfigKey).text().not_null())
                    .col(ColumnDef::new(Versions::Change).text().not_null())
                    .col(ColumnDef::new(Versions::Config).text().not_null())
                    .col(ColumnDef::new(Versions::ChangedBy).text().not_null())
                    .col(ColumnDef::new(Versions::ChangedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(CONFIG_VERSION_INDEX)
                    .table(Versions::Table)
                    .col(Versions::ConfigId)
                    .col(Versions::Version)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(InboundEvents::Table)
                    .add_column(ColumnDef::new(InboundEvents::ConfigVersion).integer().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(InboundEvents::Table).drop_column(InboundEvents::ConfigVersion).to_owned(),
            )
            .await?;
        manager.drop_table(Table::drop().table(Versions::Table).if_exists().to_owned()).await
    }
}

#[derive(DeriveIden)]
enum InboundEvents {
    Table,
    ConfigVersion,
}

#[derive(DeriveIden)]
enum Versions {
    #[sea_orm(iden = "webhook_config_versions")]
    Table,
    Id,
    ConfigId,
    Version,
    ConfigKey,
    Change,
    Config,
    ChangedBy,
    ChangedAt,
}
