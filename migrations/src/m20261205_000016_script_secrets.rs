use sea_orm_migration::prelude::*;

/// Script secrets: named values scripts read with `secret("name")`, sealed under
/// `outbound.encryption_key` like signing secrets, with who set them and when.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ScriptSecrets::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(ScriptSecrets::Name).text().not_null().primary_key())
                    .col(ColumnDef::new(ScriptSecrets::Value).text().not_null())
                    .col(ColumnDef::new(ScriptSecrets::CreatedBy).text().not_null())
                    .col(ColumnDef::new(ScriptSecrets::CreatedAt).timestamp_with_time_zone().not_null())
                    .col(ColumnDef::new(ScriptSecrets::UpdatedBy).text().not_null())
                    .col(ColumnDef::new(ScriptSecrets::UpdatedAt).timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ScriptSecrets::Table).if_exists().to_owned()).await
    }
}

#[derive(DeriveIden)]
enum ScriptSecrets {
    Table,
    Name,
    Value,
    CreatedBy,
    CreatedAt,
    UpdatedBy,
    UpdatedAt,
}
