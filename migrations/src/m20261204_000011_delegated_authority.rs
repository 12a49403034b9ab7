use sea_orm_migration::prelude::*;

/// Delegated authority and private repeats:
/// - `run_as` on `webhook_configs`, `process_definitions` and `process_instances`: the authority
///   (permissions and owner) of whoever saved the configuration or definition, or started the
///   instance, as JSON text. Their commands run with it. Rows saved before it existed have none and
///   run with `router.internal_permissions` alone, bound to no owner.
/// - `idempotency_returns_result` on `webhook_configs`: whether a repeated request gets the first
///   request's answer data (off: only that it was a duplicate, and the first's status).
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        for table in tables() {
            manager
                .alter_table(
                    Table::alter().table(table).add_column(ColumnDef::new(Columns::RunAs).text().null()).to_owned(),
                )
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Columns::WebhookConfigs)
                    .add_column(ColumnDef::new(Columns::IdempotencyReturnsResult).boolean().not_null().default(false))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(Columns::WebhookConfigs).drop_column(Columns::IdempotencyReturnsResult).to_owned(),
            )
            .await?;
        for table in tables() {
            manager.alter_table(Table::alter().table(table).drop_column(Columns::RunAs).to_owned()).await?;
        }
        Ok(())
    }
}

fn tables() -> [Columns; 3] {
    [Columns::WebhookConfigs, Columns::ProcessDefinitions, Columns::ProcessInstances]
}

#[derive(DeriveIden, Clone, Copy)]
enum Columns {
    WebhookConfigs,
    ProcessDefinitions,
    ProcessInstances,
    RunAs,
    IdempotencyReturnsResult,
}
