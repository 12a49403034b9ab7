use sea_orm_migration::{prelude::*, schema::*};

/// One row counting changes to `webhook_configs`. Every write bumps it in its own transaction, so
/// an instance learns that its cached configurations are stale by reading one row.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WebhookConfigGeneration::Table)
                    .if_not_exists()
                    .col(integer(WebhookConfigGeneration::Id).primary_key())
                    .col(big_integer(WebhookConfigGeneration::Generation))
                    .to_owned(),
            )
            .await?;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(WebhookConfigGeneration::Table)
                    .columns([WebhookConfigGeneration::Id, WebhookConfigGeneration::Generation])
                    .values_panic([1.into(), 0i64.into()])
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(WebhookConfigGeneration::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum WebhookConfigGeneration {
    Table,
    Id,
    Generation,
}
