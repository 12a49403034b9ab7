use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ApiTokens::Table)
                    .if_not_exists()
                    .col(pk_uuid(ApiTokens::Id))
                    .col(string(ApiTokens::Name))
                    // SHA-256 of the token, hex: the token itself is never stored.
                    .col(string_uniq(ApiTokens::TokenHash))
                    .col(string(ApiTokens::Permissions))
                    .col(uuid_null(ApiTokens::PartnerId))
                    .col(string_null(ApiTokens::CustomerId))
                    .col(timestamp_with_time_zone_null(ApiTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(ApiTokens::RevokedAt))
                    .col(timestamp_with_time_zone(ApiTokens::CreatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ApiTokens::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum ApiTokens {
    Table,
    Id,
    Name,
    TokenHash,
    Permissions,
    PartnerId,
    CustomerId,
    ExpiresAt,
    RevokedAt,
    CreatedAt,
}
