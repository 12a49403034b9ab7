//! Publishing from the subscriptions kept in memory: every change to them reaches the next
//! publish, whether made through this instance, through another one, or in SQL; the delivery
//! statistics the outcome writer keeps are no change.

use std::sync::Arc;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use serde_json::{Value, json};

use crate::{
    receiver::Receiver,
    support::{TestApp, TestDatabase},
};

const EVENT: &str = "WB_Loan_Created";

/// The delivery statistics, which the database does not count as a change.
const STATISTICS: [&str; 4] = ["last_delivery_at", "last_delivery_status", "last_http_status", "expired_streak"];

/// Subscribes to `events`, or to everything when `events` is null.
async fn subscribe(app: &TestApp, receiver: &Receiver, events: Value) -> String {
    let mut command = json!({"$type": "CreateWebhookSubscriptionCommand", "name": "kept", "webhookUri": receiver.url});
    if events.is_null() {
        command["subscribeAll"] = json!(true);
    } else {
        command["events"] = events;
    }
    let reply = app.admin(command).await;
    reply.assert_ok("Webhook subscription created successfully")["id"].as_str().expect("an id").to_owned()
}

/// Publishes EVENT; returns how many subscriptions it reached.
async fn reach(app: &TestApp) -> i64 {
    let reply = app.admin(json!({"$type": "PublishEventCommand", "eventName": EVENT, "data": {}})).await;
    reply.assert_ok("Event published successfully")["notifications"].as_i64().expect("a count")
}

async fn execute(db: &DatabaseConnection, sql: &str) {
    db.execute_raw(Statement::from_string(db.get_database_backend(), sql)).await.expect(sql);
}

async fn generation(db: &DatabaseConnection) -> i64 {
    let statement = Statement::from_string(
        db.get_database_backend(),
        "SELECT generation FROM subscription_generation WHERE id = 1",
    );
    let row = db.query_one_raw(statement).await.expect("the generation").expect("one row");
    row.try_get("", "generation").expect("a number")
}

#[tokio::test]
async fn every_change_through_the_bus_reaches_the_next_publish() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    assert_eq!(reach(&app).await, 0);

    let named = subscribe(&app, &receiver, json!([EVENT])).await;
    assert_eq!(reach(&app).await, 1, "a new subscription");
    let everything = subscribe(&app, &receiver, Value::Null).await;
    assert_eq!(reach(&app).await, 2, "a new subscription to everything");

    let reply = app
        .admin(json!({"$type": "UpdateWebhookSubscriptionCommand", "id": named, "events": ["WB_Customer_Created"]}))
        .await;
    reply.assert_ok("Webhook subscription updated successfully");
    assert_eq!(reach(&app).await, 1, "its event names changed");

    let reply = app
        .admin(json!({"$type": "UpdateWebhookSubscriptionCommand", "id": named, "events": [EVENT],
                      "resource": "loans/7"}))
        .await;
    reply.assert_ok("Webhook subscription updated successfully");
    assert_eq!(reach(&app).await, 1, "only to everything: the other wants a resource the event does not name");

    let reply = app.admin(json!({"$type": "DeleteWebhookSubscriptionCommand", "id": everything})).await;
    reply.assert_ok("Webhook subscription deleted successfully");
    assert_eq!(reach(&app).await, 0, "deleted");
}

#[tokio::test]
async fn changes_made_in_sql_reach_the_next_publish_and_statistics_are_no_change() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    subscribe(&app, &receiver, json!([EVENT])).await;
    assert_eq!(reach(&app).await, 1);
    let db = app.database.connect().await;

    let before = generation(&db).await;
    execute(&db, "UPDATE subscriptions SET last_delivery_at = CURRENT_TIMESTAMP, last_delivery_status = 'Delivered', last_http_status = 200, expired_streak = 3").await;
    assert_eq!(generation(&db).await, before, "the delivery statistics changed nothing");
    assert_eq!(reach(&app).await, 1);

    execute(&db, "UPDATE subscriptions SET is_active = false").await;
    assert!(generation(&db).await > before);
    assert_eq!(reach(&app).await, 0, "deactivated in SQL");
    execute(&db, "UPDATE subscriptions SET is_active = true").await;
    assert_eq!(reach(&app).await, 1, "active again");
    execute(&db, "DELETE FROM subscription_events").await;
    assert_eq!(reach(&app).await, 0, "its event names removed in SQL");
}

#[tokio::test]
async fn a_subscription_made_through_another_instance_reaches_the_next_publish() {
    let database = Arc::new(TestDatabase::create().await);
    let publisher = TestApp::builder().database(Arc::clone(&database)).spawn().await;
    let other = TestApp::builder().database(Arc::clone(&database)).spawn().await;
    let receiver = Receiver::start().await;
    assert_eq!(reach(&publisher).await, 0);

    let id = subscribe(&other, &receiver, json!([EVENT])).await;
    assert_eq!(reach(&publisher).await, 1, "subscribed through the other instance");
    let reply = other.admin(json!({"$type": "DeleteWebhookSubscriptionCommand", "id": id})).await;
    reply.assert_ok("Webhook subscription deleted successfully");
    assert_eq!(reach(&publisher).await, 0, "deleted through the other instance");
}

/// On SQLite the trigger names the columns it watches: every column of `subscriptions` but the
/// statistics, which must exist (a renamed one would count every batch of outcomes as a change).
#[tokio::test]
async fn every_subscription_column_but_the_statistics_is_watched() {
    let app = TestApp::spawn().await;
    let db = app.database.connect().await;
    let backend = db.get_database_backend();
    let columns_sql = match backend {
        DbBackend::Postgres => {
            "SELECT column_name AS name FROM information_schema.columns WHERE table_name = 'subscriptions'"
        }
        _ => "SELECT name FROM pragma_table_info('subscriptions')",
    };
    let rows = db.query_all_raw(Statement::from_string(backend, columns_sql)).await.expect("the columns");
    let columns: Vec<String> = rows.iter().map(|row| row.try_get("", "name").expect("a name")).collect();
    for statistic in STATISTICS {
        assert!(columns.iter().any(|column| column == statistic), "{statistic} is a column");
    }
    if backend != DbBackend::Sqlite {
        return;
    }
    let trigger = db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'subscriptions_changed'",
        ))
        .await
        .expect("the trigger")
        .expect("one row");
    let sql: String = trigger.try_get("", "sql").expect("its SQL");
    for column in columns.iter().filter(|column| !STATISTICS.contains(&column.as_str())) {
        assert!(sql.contains(&format!("OLD.{column} IS NOT NEW.{column}")), "the trigger watches {column}: {sql}");
    }
}
