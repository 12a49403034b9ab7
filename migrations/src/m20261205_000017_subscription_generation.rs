use sea_orm_migration::{prelude::*, sea_orm::DbBackend};

/// `subscription_generation`: one row whose number the database raises whenever who receives what
/// may have changed: a subscription added or removed, its event names changed, or any of its
/// columns but the delivery statistics the outcome writer keeps (`last_delivery_at`,
/// `last_delivery_status`, `last_http_status`, `expired_streak`).
///
/// Publishers keep the subscriptions of each event name in memory with the generation they were
/// read at, and write an event only while that generation is still the current one, so a change
/// made by any instance, or by hand in SQL, is seen by the next publish everywhere. Triggers raise
/// it, not the code that changes subscriptions, so nothing can forget to.
///
/// On SQLite the update trigger names the columns it watches ([`WATCHED`]); a column added to
/// `subscriptions` later is added there too (a test compares the list with the table).
#[derive(DeriveMigrationName)]
pub struct Migration;

/// The columns of `subscriptions` that change who receives an event or how it is sent: all but the
/// delivery statistics.
const WATCHED: [&str; 28] = [
    "id",
    "partner_id",
    "customer_id",
    "name",
    "webhook_uri",
    "secret",
    "secret_hint",
    "previous_secret",
    "previous_secret_until",
    "is_active",
    "subscribe_all",
    "events",
    "resource",
    "filters",
    "delivery_policy",
    "max_attempts",
    "retry_interval_seconds",
    "headers",
    "hmac_enabled",
    "secure_ssl",
    "tag",
    "suspended",
    "suspended_at",
    "created_at",
    "updated_at",
    "max_concurrency",
    "rate_limit_per_second",
    "ordering",
];

/// The delivery statistics: written with every batch of outcomes, and no reason to read the
/// subscriptions again.
const STATISTICS: [&str; 4] = ["last_delivery_at", "last_delivery_status", "last_http_status", "expired_streak"];

const BUMP: &str = "UPDATE subscription_generation SET generation = generation + 1 WHERE id = 1";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SubscriptionGeneration::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(SubscriptionGeneration::Id).integer().not_null().primary_key())
                    .col(ColumnDef::new(SubscriptionGeneration::Generation).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared("INSERT INTO subscription_generation (id, generation) VALUES (1, 0)").await?;
        let statements = match manager.get_database_backend() {
            DbBackend::Postgres => postgres(),
            _ => sqlite(),
        };
        for statement in statements {
            db.execute_unprepared(&statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = manager.get_database_backend() == DbBackend::Postgres;
        let triggers =
            EVERY_CHANGE.iter().map(|(trigger, _, table)| (*trigger, *table)).chain([(CHANGED, "subscriptions")]);
        for (trigger, table) in triggers {
            let on = if postgres { format!(" ON {table}") } else { String::new() };
            db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {trigger}{on}")).await?;
        }
        if postgres {
            db.execute_unprepared("DROP FUNCTION IF EXISTS hookbus_bump_subscription_generation()").await?;
        }
        manager.drop_table(Table::drop().table(SubscriptionGeneration::Table).if_exists().to_owned()).await
    }
}

/// The triggers that count every row their event touches: (name, event, table).
const EVERY_CHANGE: [(&str, &str, &str); 5] = [
    ("subscriptions_added", "INSERT", "subscriptions"),
    ("subscriptions_removed", "DELETE", "subscriptions"),
    ("subscription_events_added", "INSERT", "subscription_events"),
    ("subscription_events_removed", "DELETE", "subscription_events"),
    ("subscription_events_changed", "UPDATE", "subscription_events"),
];

/// The trigger on updates of `subscriptions`, which counts only those that change more than the
/// statistics.
const CHANGED: &str = "subscriptions_changed";

/// PostgreSQL: statement triggers for [`EVERY_CHANGE`], and a row trigger for updates of
/// subscriptions that compares the rows without their statistics, so that a column added later is
/// watched too.
fn postgres() -> Vec<String> {
    const BUMP_FUNCTION: &str = "hookbus_bump_subscription_generation()";
    let statistics = STATISTICS.iter().map(|column| format!("'{column}'")).collect::<Vec<_>>().join(", ");
    let every_change = EVERY_CHANGE.iter().map(|(trigger, event, table)| {
        format!("CREATE TRIGGER {trigger} AFTER {event} ON {table} FOR EACH STATEMENT EXECUTE FUNCTION {BUMP_FUNCTION}")
    });
    [format!(
        "CREATE FUNCTION {BUMP_FUNCTION} RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {BUMP}; RETURN NULL; END $$"
    )]
    .into_iter()
    .chain(every_change)
    .chain([format!(
        "CREATE TRIGGER {CHANGED} AFTER UPDATE ON subscriptions FOR EACH ROW \
             WHEN ((to_jsonb(OLD) - ARRAY[{statistics}]) IS DISTINCT FROM (to_jsonb(NEW) - ARRAY[{statistics}])) \
             EXECUTE FUNCTION {BUMP_FUNCTION}"
    )])
    .collect()
}

/// SQLite: row triggers for [`EVERY_CHANGE`]; an update of a subscription counts when a watched
/// column's value changes.
fn sqlite() -> Vec<String> {
    let changed = WATCHED.iter().map(|column| format!("OLD.{column} IS NOT NEW.{column}")).collect::<Vec<_>>();
    EVERY_CHANGE
        .iter()
        .map(|(trigger, event, table)| format!("CREATE TRIGGER {trigger} AFTER {event} ON {table} BEGIN {BUMP}; END"))
        .chain([format!(
            "CREATE TRIGGER {CHANGED} AFTER UPDATE ON subscriptions WHEN {} BEGIN {BUMP}; END",
            changed.join(" OR ")
        )])
        .collect()
}

#[derive(DeriveIden)]
enum SubscriptionGeneration {
    Table,
    Id,
    Generation,
}
