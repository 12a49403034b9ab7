//! Several instances on one database: each notification delivered once under fan-out, and no
//! slower than one instance alone.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use serde_json::json;

use crate::{
    outbound::{burst, subscribe},
    receiver::Receiver,
    support::{TestApp, TestDatabase},
};

const EVENTS: usize = 600;
const SUBSCRIPTIONS: usize = 10;
const LEASE_SECS: u64 = 3;

/// Servers on one new database, each delivering with a short lease, so that a notification whose
/// outcome was lost would be sent again within the test.
async fn instances(count: usize) -> Vec<TestApp> {
    let database = std::sync::Arc::new(TestDatabase::create().await);
    let mut apps = Vec::new();
    for _ in 0..count {
        let app = TestApp::builder()
            .database(std::sync::Arc::clone(&database))
            .configure(|s| s.outbound.lease_secs = LEASE_SECS)
            .spawn()
            .await;
        apps.push(app);
    }
    apps
}

/// Publishes EVENTS events alternately through `apps` to SUBSCRIPTIONS subscriptions; returns the
/// receiver once every delivery arrived, and how long that took from the first publish.
async fn fan_out(apps: &[TestApp]) -> (Receiver, Duration) {
    let receiver = Receiver::start().await;
    for n in 0..SUBSCRIPTIONS {
        subscribe(&apps[n % apps.len()], &receiver.url, &["WB_Send_Sms"], json!({"name": format!("partner {n}")}))
            .await;
    }
    let servers: Vec<String> = apps.iter().map(|app| app.address.clone()).collect();
    let started = Instant::now();
    let published = burst(&servers, 0..EVENTS, None).await;
    assert_eq!(published.len(), EVENTS);
    let expected = EVENTS * SUBSCRIPTIONS;
    receiver.wait_for(expected, Duration::from_secs(120)).await;
    let took = started.elapsed();
    assert!(receiver.count() >= expected, "only {} of {expected} deliveries arrived", receiver.count());
    (receiver, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_over_two_instances_delivers_each_notification_once_and_in_time() {
    let alone = instances(1).await;
    let (_, one) = fan_out(&alone).await;
    drop(alone);

    let together = instances(2).await;
    let (receiver, two) = fan_out(&together).await;
    // Any notification whose outcome was not recorded is sent again once its lease runs out.
    tokio::time::sleep(Duration::from_secs(LEASE_SECS + 2)).await;
    let got = receiver.received();
    let distinct: BTreeSet<&str> = got.iter().filter_map(|r| r.header("webhook-id")).collect();
    assert_eq!(distinct.len(), EVENTS * SUBSCRIPTIONS, "distinct notifications delivered");
    assert_eq!(got.len(), distinct.len(), "{} deliveries arrived twice", got.len() - distinct.len());
    eprintln!("{EVENTS} events to {SUBSCRIPTIONS} subscriptions: one instance {one:?}, two instances {two:?}");
    assert!(two <= one * 2, "two instances took {two:?}, one alone {one:?}");
}

/// Retention sweeps run on one instance at a time: while another holds the sweep's lock, old
/// history stays. Diverted notifications (of a suspended subscription) go with the rest.
#[tokio::test]
async fn one_instance_sweeps_at_a_time_and_diverted_notifications_are_swept() {
    use sea_orm::{ConnectionTrait, DbBackend, TransactionTrait};
    let app = TestApp::builder()
        .configure(|s| {
            s.outbound.retention_days = 1;
            s.outbound.retention_sweep_secs = 1;
        })
        .spawn()
        .await;
    let db = app.database.connect().await;
    let backend = db.get_database_backend();
    // Another instance's sweep, as far as this one can tell.
    let held = if backend == DbBackend::Postgres {
        let txn = db.begin().await.expect("begin");
        let key = hookbus_store::Singleton::OutboundRetention.lock_key();
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({key})")).await.expect("lock");
        Some(txn)
    } else {
        None
    };
    // Two days old: a delivered notification and a diverted one.
    let (id, two_days_ago) = match backend {
        DbBackend::Postgres => ("gen_random_uuid()", "now() - interval '2 days'"),
        _ => ("randomblob(16)", "datetime('now', '-2 days')"),
    };
    for (key, status) in [("old-delivered", "Delivered"), ("old-diverted", "Diverted")] {
        db.execute_unprepared(&format!(
            "INSERT INTO events (id, event_key, event_name, data, simulated, notifications, occurred_at) \
             VALUES ({id}, '{key}', 'WB_Send_Sms', '{{}}', false, 1, {two_days_ago})"
        ))
        .await
        .expect("an old event");
        db.execute_unprepared(&format!(
            "INSERT INTO notifications (id, event_id, subscription_id, event_name, status, attempts, created_at, \
             updated_at) SELECT {id}, id, {id}, event_name, '{status}', 0, occurred_at, occurred_at FROM events \
             WHERE event_key = '{key}'"
        ))
        .await
        .expect("an old notification");
    }

    if let Some(txn) = held {
        // Two sweep intervals pass under the other instance's lock: nothing goes.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        assert_eq!(app.count_rows("notifications").await, 2, "swept while another instance held the sweep");
        txn.commit().await.expect("release");
    }
    let gone = || async { app.count_rows("notifications").await == 0 && app.count_rows("events").await == 0 };
    assert!(crate::support::within(Duration::from_secs(10), gone).await.is_some(), "the old history was kept");
}

/// The queue is a table of its own, as small as the backlog: a delivered notification leaves it.
/// On PostgreSQL a notification's status update touches no indexed column, so most stay in their
/// page (HOT updates: no new index entries).
#[tokio::test]
async fn delivered_notifications_leave_the_queue_and_their_updates_stay_in_place() {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let apps = instances(1).await;
    let app = &apps[0];
    let receiver = Receiver::start().await;
    for n in 0..4 {
        subscribe(app, &receiver.url, &["WB_Send_Sms"], json!({"name": format!("partner {n}")})).await;
    }
    let published = burst(std::slice::from_ref(&app.address), 0..500, None).await;
    assert_eq!(published.len(), 500);
    receiver.wait_for(2_000, Duration::from_secs(60)).await;
    let empty = || async { app.count_rows("delivery_queue").await == 0 };
    assert!(crate::support::within(Duration::from_secs(10), empty).await.is_some(), "the queue kept delivered rows");
    assert_eq!(app.count_rows("notifications").await, 2_000);

    let db = app.database.connect().await;
    if db.get_database_backend() != DbBackend::Postgres {
        return;
    }
    // The statistics reach the view a moment after the server's transactions end.
    let stats = "SELECT n_tup_upd AS updates, n_tup_hot_upd AS hot FROM pg_stat_user_tables \
                 WHERE relname = 'notifications'";
    let read = || async {
        let row = db.query_one_raw(Statement::from_string(DbBackend::Postgres, stats)).await.expect("stats");
        let row = row.expect("the notifications table");
        (row.try_get::<i64>("", "updates").expect("updates"), row.try_get::<i64>("", "hot").expect("hot"))
    };
    let counted = || async { read().await.0 >= 2_000 };
    assert!(
        crate::support::within(Duration::from_secs(30), counted).await.is_some(),
        "no statistics: {:?}",
        read().await
    );
    let (updates, hot) = read().await;
    assert!(hot * 2 > updates, "{hot} of {updates} notification updates were HOT");
}

/// A subscription's rate limit holds across instances: two instances publish to it and either may
/// send, yet over ten seconds the receiver gets the limit's rate, within 10%.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_across_two_instances() {
    const RATE: usize = 20;
    let apps = instances(2).await;
    let receiver = Receiver::start().await;
    subscribe(&apps[0], &receiver.url, &["WB_Send_Sms"], json!({"rateLimitPerSecond": RATE})).await;
    let servers: Vec<String> = apps.iter().map(|app| app.address.clone()).collect();
    // More than ten seconds' worth, published through both instances at once.
    let published = burst(&servers, 0..RATE * 13, None).await;
    assert_eq!(published.len(), RATE * 13);
    let arrived = receiver.wait_for(RATE * 11, Duration::from_secs(30)).await;
    let first = arrived.first().map(|r| r.at).expect("a delivery");
    let window = Duration::from_secs(10);
    let within_window = arrived.iter().filter(|r| r.at.duration_since(first) < window).count();
    let expected = RATE * 10;
    assert!(
        within_window.abs_diff(expected) * 10 <= expected,
        "{within_window} deliveries in the first 10 s, limit {RATE}/s ({expected} expected, 10% either way)"
    );
}
