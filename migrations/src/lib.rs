//! The database schema, as ordered migrations that run on SQLite and PostgreSQL alike.
//!
//! The server applies them at start-up and `hookbus migrate` applies them on demand. A migration,
//! once released, is never edited: change the schema with a new one.

use sea_orm_migration::prelude::*;

mod m20261122_000001_api_tokens;
mod m20261122_000002_webhook_configs;
mod m20261122_000003_config_generation;
mod m20261122_000004_inbound_events;
mod m20261122_000005_processes;
mod m20261122_000006_outbound;
mod m20261122_000007_provider_notifications;
mod m20261123_000008_events_occurred_at;
mod m20261123_000009_inbound_events_json_as_text;
mod m20261123_000010_listing_indexes;
mod m20261204_000011_delegated_authority;
mod m20261204_000012_delivery_queue;
mod m20261204_000013_sealed_headers;
mod m20261204_000014_delivery_lanes;
mod m20261205_000015_config_versions;
mod m20261205_000016_script_secrets;
mod m20261205_000017_subscription_generation;

/// Every migration, in order.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_api_tokens::Migration),
            Box::new(m20261122_000002_webhook_configs::Migration),
            Box::new(m20261122_000003_config_generation::Migration),
            Box::new(m20261122_000004_inbound_events::Migration),
            Box::new(m20261122_000005_processes::Migration),
            Box::new(m20261122_000006_outbound::Migration),
            Box::new(m20261122_000007_provider_notifications::Migration),
            Box::new(m20261123_000008_events_occurred_at::Migration),
            Box::new(m20261123_000009_inbound_events_json_as_text::Migration),
            Box::new(m20261123_000010_listing_indexes::Migration),
            Box::new(m20261204_000011_delegated_authority::Migration),
            Box::new(m20261204_000012_delivery_queue::Migration),
            Box::new(m20261204_000013_sealed_headers::Migration),
            Box::new(m20261204_000014_delivery_lanes::Migration),
            Box::new(m20261205_000015_config_versions::Migration),
            Box::new(m20261205_000016_script_secrets::Migration),
            Box::new(m20261205_000017_subscription_generation::Migration),
        ]
    }
}
