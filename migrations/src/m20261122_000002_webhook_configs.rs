use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WebhookConfigs::Table)
                    .if_not_exists()
                    .col(pk_auto(WebhookConfigs::Id))
                    .col(string_len_uniq(WebhookConfigs::Key, 100))
                    .col(text(WebhookConfigs::Description))
                    .col(boolean(WebhookConfigs::IsEnabled))
                    .col(string_uniq(WebhookConfigs::Path))
                    .col(string_len(WebhookConfigs::Action, 10))
                    .col(small_integer(WebhookConfigs::ExecutionType))
                    .col(string_null(WebhookConfigs::CommandName))
                    .col(json_null(WebhookConfigs::CommandChain))
                    .col(text_null(WebhookConfigs::ExecutionCode))
                    .col(integer_null(WebhookConfigs::ProcessDefinitionId))
                    .col(text_null(WebhookConfigs::AllowableIps))
                    .col(string_null(WebhookConfigs::IdempotencyKey))
                    .col(boolean(WebhookConfigs::RespondAsync))
                    // Bumped on every change: caches and compiled scripts are keyed by it.
                    .col(integer(WebhookConfigs::Version))
                    .col(timestamp_with_time_zone(WebhookConfigs::CreatedAt))
                    .col(timestamp_with_time_zone(WebhookConfigs::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_webhook_configs_updated_at")
                    .table(WebhookConfigs::Table)
                    .col(WebhookConfigs::UpdatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(WebhookConfigs::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum WebhookConfigs {
    Table,
    Id,
    Key,
    Description,
    IsEnabled,
    Path,
    Action,
    ExecutionType,
    CommandName,
    CommandChain,
    ExecutionCode,
    ProcessDefinitionId,
    #[sea_orm(iden = "allowable_ips")]
    AllowableIps,
    IdempotencyKey,
    RespondAsync,
    Version,
    CreatedAt,
    UpdatedAt,
}
