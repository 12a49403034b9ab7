use sea_orm_migration::{prelude::*, schema::*};

/// Process definitions and their instances.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ProcessDefinitions::Table)
                    .if_not_exists()
                    .col(pk_auto(ProcessDefinitions::Id))
                    .col(string(ProcessDefinitions::Name))
                    .col(text_null(ProcessDefinitions::Description))
                    .col(json(ProcessDefinitions::Steps))
                    .col(timestamp_with_time_zone(ProcessDefinitions::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProcessInstances::Table)
                    .if_not_exists()
                    .col(pk_uuid(ProcessInstances::Id))
                    .col(integer(ProcessInstances::DefinitionId))
                    .col(string_len(ProcessInstances::Status, 16))
                    .col(string_len(ProcessInstances::ExecutionMode, 16))
                    .col(json(ProcessInstances::Variables))
                    .col(integer(ProcessInstances::CurrentStep))
                    .col(json(ProcessInstances::StepLog))
                    .col(text_null(ProcessInstances::Error))
                    // Whose run it is, until when: a running instance whose lease ran out (its server
                    // died) is resumed by another.
                    .col(timestamp_with_time_zone_null(ProcessInstances::LeaseUntil))
                    .col(timestamp_with_time_zone(ProcessInstances::CreatedAt))
                    .col(timestamp_with_time_zone(ProcessInstances::UpdatedAt))
                    .col(timestamp_with_time_zone_null(ProcessInstances::CompletedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_process_instances_status_lease")
                    .table(ProcessInstances::Table)
                    .col(ProcessInstances::Status)
                    .col(ProcessInstances::LeaseUntil)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ProcessInstances::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(ProcessDefinitions::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum ProcessDefinitions {
    Table,
    Id,
    Name,
    Description,
    Steps,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ProcessInstances {
    Table,
    Id,
    DefinitionId,
    Status,
    ExecutionMode,
    Variables,
    CurrentStep,
    StepLog,
    Error,
    LeaseUntil,
    CreatedAt,
    UpdatedAt,
    CompletedAt,
}
