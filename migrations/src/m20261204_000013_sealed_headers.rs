use sea_orm_migration::prelude::*;

/// `inbound_events.sealed_headers`: the values of a queued (`respondAsync`) request's secret
/// headers, sealed under the server's key, kept only until the request has run for the last time.
/// The log stores those headers redacted; a queued request runs after its answer, and a script that
/// checks a signature header needs the header as it came.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(InboundEvents::Table)
                    .add_column(ColumnDef::new(InboundEvents::SealedHeaders).text().null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(InboundEvents::Table).drop_column(InboundEvents::SealedHeaders).to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden)]
enum InboundEvents {
    Table,
    SealedHeaders,
}
