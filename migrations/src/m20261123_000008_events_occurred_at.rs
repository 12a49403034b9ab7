use sea_orm_migration::prelude::*;

/// An index on `events.occurred_at`, for the retention sweep: it deletes old events that no
/// notification references, and without the index it read every event to find the old ones.
#[derive(DeriveMigrationName)]
pub struct Migration;

const NAME: &str = "idx_events_occurred_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create().name(NAME).table(Events::Table).col(Events::OccurredAt).if_not_exists().to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(NAME).table(Events::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Events {
    Table,
    OccurredAt,
}
