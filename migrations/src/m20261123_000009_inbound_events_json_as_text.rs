use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

/// The inbound log's JSON columns (`request`, `data`, `errors`) become `text` on PostgreSQL.
///
/// hookbus writes them from values it serialized itself, always valid JSON, and as `json` columns
/// PostgreSQL parsed every one again on insert: a fifth of the database's work under router load.
/// On PostgreSQL this rewrites the table (there is no binary cast from `json` to `text`), holding
/// its lock meanwhile; a large log is best swept to its retention first. SQLite keeps any column's
/// values as text already: nothing to do there.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        alter(manager, "text").await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        alter(manager, "json").await
    }
}

async fn alter(manager: &SchemaManager<'_>, to: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    let columns = ["request", "data", "errors"]
        .map(|column| format!("ALTER COLUMN {column} TYPE {to} USING {column}::{to}"))
        .join(", ");
    manager.get_connection().execute_unprepared(&format!("ALTER TABLE inbound_events {columns}")).await?;
    Ok(())
}
