//! Delivery isolation: one partner's endpoint never delays another's. Fair turns between
//! subscriptions, each subscription's concurrency, the circuit breaker, rate limits, ordered
//! delivery, hookbus's operational events, and the start-up check of the encryption key.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    outbound::{burst, subscribe},
    receiver::{Answer, Received, Receiver},
    support::TestApp,
};

/// Waits up to `limit` for `check` to give a value, polling every 50 ms.
async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Some(value) = check().await {
            return Some(value);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

const PARTNER: &str = "6f1c2a4e-8d3b-4c5a-9e7f-0a1b2c3d4e5f";
const OTHER_PARTNER: &str = "0b9d1f3e-2c4a-4e6b-8d0f-1a3c5e7b9d2f";

async fn publish(app: &TestApp, n: usize) {
    let reply = app
        .admin(json!({"$type": "PublishEventCommand", "eventName": "WB_Send_Sms", "eventId": format!("e-{n}"),
                      "data": {"n": n}}))
        .await;
    reply.assert_ok("Event published successfully");
}

async fn subscription(app: &TestApp, id: &str) -> Value {
    app.admin(json!({"$type": "GetWebhookSubscriptionQuery", "id": id}))
        .await
        .assert_ok("Webhook subscription retrieved successfully")
        .clone()
}

async fn notifications(app: &TestApp, subscription: &str) -> Vec<Value> {
    let reply =
        app.admin(json!({"$type": "GetNotificationListQuery", "subscriptionId": subscription, "pageSize": 100})).await;
    reply.assert_ok("Notifications retrieved successfully")["items"].as_array().cloned().unwrap_or_default()
}

async fn metrics(app: &TestApp) -> String {
    let response = app.client.get(format!("{}/metrics", app.address)).send().await.expect("metrics");
    response.text().await.expect("metrics text")
}

fn event_ids(received: &[Received]) -> BTreeSet<String> {
    received.iter().filter_map(|r| r.body["eventId"].as_str().map(str::to_owned)).collect()
}

fn percentile(mut latencies: Vec<Duration>, p: f64) -> Duration {
    latencies.sort_unstable();
    let at = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len().max(1)) - 1;
    latencies.get(at).copied().unwrap_or_default()
}

/// A partner whose endpoint hangs (answers only after 10 s) and a healthy partner get the same
/// 400 events. The breaker is kept out of it: fair turns and the per-subscription limit alone keep
/// the healthy partner's deliveries fast, while the hanging one never holds more than its 8
/// attempts. The attempt timeout is longer than the hang, so that the receiver's count of requests
/// in flight is the sender's (a timed-out request would still count at the receiver).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_endpoint_does_not_delay_a_healthy_one() {
    let app = TestApp::builder()
        .configure(|s| {
            s.outbound.timeout_ms = 15_000;
            s.outbound.lease_secs = 60;
            s.outbound.breaker_failures = 1_000_000;
        })
        .spawn()
        .await;
    let hanging = Receiver::start().await;
    hanging.answer(Answer::Slow(Duration::from_secs(10), 200));
    let healthy = Receiver::start().await;
    subscribe(&app, &hanging.url, &["WB_Send_Sms"], json!({"name": "hangs"})).await;
    subscribe(&app, &healthy.url, &["WB_Send_Sms"], json!({"partnerId": OTHER_PARTNER, "name": "healthy"})).await;

    let published = burst(std::slice::from_ref(&app.address), 0..400, None).await;
    assert_eq!(published.len(), 400);
    let arrived = healthy.wait_for(400, Duration::from_secs(15)).await;
    assert_eq!(event_ids(&arrived).len(), 400, "the healthy partner got {} of 400", event_ids(&arrived).len());
    let latencies: Vec<Duration> = arrived.iter().map(Received::latency).collect();
    let p99 = percentile(latencies, 0.99);
    assert!(p99 < Duration::from_secs(1), "the healthy partner's publish-to-receipt p99 was {p99:?}");
    assert!(hanging.max_in_flight() <= 8, "the hanging endpoint had {} attempts at once", hanging.max_in_flight());
    assert!(hanging.max_in_flight() >= 2, "the hanging endpoint was not tried concurrently");
}

/// `maxConcurrency` bounds a subscription's attempts in flight; it is validated and shown.
#[tokio::test]
async fn max_concurrency_bounds_a_subscriptions_attempts_in_flight() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.answer(Answer::Slow(Duration::from_millis(150), 200));
    let (id, _) = subscribe(&app, &receiver.url, &["WB_Send_Sms"], json!({"maxConcurrency": 3})).await;
    assert_eq!(subscription(&app, &id).await["maxConcurrency"], json!(3));

    for n in 0..24 {
        publish(&app, n).await;
    }
    let arrived = receiver.wait_for(24, Duration::from_secs(15)).await;
    assert_eq!(event_ids(&arrived).len(), 24);
    assert_eq!(receiver.max_in_flight(), 3, "maxConcurrency 3 allows exactly 3 at once here");

    let refused = app
        .admin(json!({"$type": "UpdateWebhookSubscriptionCommand", "id": id, "maxConcurrency": 1000,
                      "rateLimitPerSecond": -1}))
        .await;
    refused.assert_error(422, "Validation failed");
    assert!(refused.has_error("maxConcurrency: must be between 1 and 256"), "{:?}", refused.errors());
    assert!(refused.has_error("rateLimitPerSecond: must be between 1 and 10000"), "{:?}", refused.errors());
    let reset = app.admin(json!({"$type": "UpdateWebhookSubscriptionCommand", "id": id, "maxConcurrency": 0})).await;
    assert_eq!(reset.assert_ok("Webhook subscription updated successfully")["maxConcurrency"], Value::Null);
}

/// An endpoint that stops answering is unhealthy after `breaker_failures` timeouts: its
/// notifications wait without using attempts, one probe at a time, and the backlog drains once a
/// probe is answered. Health shows on the subscription and on a held notification, and hookbus
/// announces both changes to the platform's subscriptions, not to the subscription concerned nor
/// to another partner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_is_held_probed_and_drained_once_it_answers() {
    let app = TestApp::builder()
        .configure(|s| {
            s.outbound.timeout_ms = 300;
            s.outbound.breaker_failures = 3;
            s.outbound.breaker_cooldown_secs = 1;
            s.outbound.breaker_max_cooldown_secs = 2;
        })
        .spawn()
        .await;
    let monitor = Receiver::start().await;
    let other = Receiver::start().await;
    let broken = Receiver::start().await;
    broken.answer(Answer::Slow(Duration::from_secs(2), 200));
    let operations = ["hookbus.subscription.unhealthy", "hookbus.subscription.healthy"];
    // A platform subscription (no owner), another partner's, and the one whose endpoint breaks,
    // which subscribes to the operational events too.
    let created = app
        .admin(json!({"$type": "CreateWebhookSubscriptionCommand", "webhookUri": monitor.url, "events": operations}))
        .await;
    assert_eq!(created.assert_ok("Webhook subscription created successfully")["partnerId"], Value::Null);
    subscribe(&app, &other.url, &operations, json!({"partnerId": OTHER_PARTNER})).await;
    let (id, _) = subscribe(
        &app,
        &broken.url,
        &["WB_Send_Sms", operations[0], operations[1]],
        json!({"maxAttempts": 100, "retryIntervalSeconds": 1}),
    )
    .await;

    for n in 0..10 {
        publish(&app, n).await;
    }
    let unhealthy = eventually(Duration::from_secs(10), || async {
        let view = subscription(&app, &id).await;
        (view["health"]["status"] == "unhealthy").then_some(view)
    })
    .await
    .expect("the endpoint never became unhealthy");
    let health = &unhealthy["health"];
    let gauge = eventually(Duration::from_secs(3), || async {
        metrics(&app).await.contains("hookbus_subscriptions_unhealthy 1").then_some(())
    })
    .await;
    assert!(gauge.is_some(), "{}", metrics(&app).await);
    assert!(health["since"].is_string() && health["nextProbeAt"].is_string(), "{health:#}");
    assert!(health["reason"].as_str().unwrap_or_default().contains("timed out"), "{health:#}");

    // Held: only probes reach the endpoint, and the notifications keep their attempts.
    let before = broken.count();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let probes = broken.count() - before;
    assert!(probes <= 3, "{probes} requests in 2.5 s while unhealthy (cool-down 1 s, then 2 s)");
    let waiting = notifications(&app, &id).await;
    assert_eq!(waiting.len(), 10);
    for notification in &waiting {
        assert!(["Pending", "Failed"].contains(&notification["status"].as_str().unwrap_or_default()));
        let attempts = notification["attempts"].as_i64().unwrap_or_default();
        assert!(attempts <= 4, "a held notification used {attempts} attempts: {notification:#}");
    }
    let one = waiting[0]["id"].clone();
    let detail = app.admin(json!({"$type": "GetNotificationByIdQuery", "id": one})).await;
    let held = &detail.assert_ok("Notification retrieved successfully")["held"];
    assert_eq!(held["reason"], json!("endpointUnhealthy"), "{held:#}");
    assert!(held["nextProbeAt"].is_string(), "{held:#}");

    // It answers again: the next probe closes the breaker and the backlog drains.
    broken.answer(Answer::Status(200));
    let drained = eventually(Duration::from_secs(10), || async {
        let all = notifications(&app, &id).await;
        all.iter().all(|n| n["status"] == "Delivered").then_some(())
    })
    .await;
    assert!(drained.is_some(), "the backlog did not drain once the endpoint answered");
    let healthy = eventually(Duration::from_secs(5), || async {
        (subscription(&app, &id).await["health"]["status"] == "healthy").then_some(())
    })
    .await;
    assert!(healthy.is_some(), "the endpoint stayed unhealthy after answering");
    let gauge = eventually(Duration::from_secs(3), || async {
        metrics(&app).await.contains("hookbus_subscriptions_unhealthy 0").then_some(())
    })
    .await;
    assert!(gauge.is_some(), "{}", metrics(&app).await);

    // The platform's monitor heard both changes, with the subscription's details.
    let announced = eventually(Duration::from_secs(5), || async {
        let names: Vec<Value> = monitor.received().iter().map(|r| r.body["eventName"].clone()).collect();
        (names.contains(&json!(operations[0])) && names.contains(&json!(operations[1]))).then_some(())
    })
    .await;
    assert!(
        announced.is_some(),
        "the monitor got {:?}",
        monitor.received().iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    let alert = monitor.received().into_iter().find(|r| r.body["eventName"] == operations[0]).expect("alert");
    let data = &alert.body["data"];
    assert_eq!(data["subscriptionId"], json!(id));
    assert_eq!(data["partnerId"], json!(PARTNER));
    assert_eq!(data["webhookUri"], json!(broken.url));
    assert_eq!(data["counts"]["consecutiveFailures"], json!(3));
    assert!(data["reason"].as_str().unwrap_or_default().contains("timed out"), "{data:#}");
    // Neither the subscription concerned nor another partner heard of it.
    assert!(broken.received().iter().all(|r| r.body["eventName"] == "WB_Send_Sms"));
    assert_eq!(other.count(), 0, "another partner was told about this partner's endpoint");
}

/// hookbus's own event names can be neither published nor registered through the bus.
#[tokio::test]
async fn operational_event_names_are_reserved() {
    let app = TestApp::spawn().await;
    let published = app
        .admin(json!({"$type": "PublishEventCommand", "eventName": "hookbus.subscription.unhealthy", "data": {}}))
        .await;
    published.assert_error(422, "Validation failed");
    assert!(published.has_error("eventName: names starting with 'hookbus.' are hookbus's own events"));
    let registered =
        app.admin(json!({"$type": "RegisterEventTypeCommand", "name": "hookbus.mine", "description": "mine"})).await;
    registered.assert_error(422, "Validation failed");
    let catalog = app.admin(json!({"$type": "GetEventCatalogQuery"})).await;
    let names: Vec<Value> = catalog.data().as_array().into_iter().flatten().map(|t| t["name"].clone()).collect();
    for name in [
        "hookbus.subscription.unhealthy",
        "hookbus.subscription.healthy",
        "hookbus.subscription.suspended",
        "hookbus.notification.expired",
    ] {
        assert!(names.contains(&json!(name)), "{name} is not in the catalog");
    }
}

/// A notification that expires and the suspension that follows are announced; the expiry of an
/// operational event is not.
#[tokio::test]
async fn expiries_and_suspensions_are_announced() {
    let app = TestApp::builder().configure(|s| s.outbound.suspend_after_expired = 2).spawn().await;
    let monitor = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.answer(Answer::Status(500));
    let created = app
        .admin(json!({"$type": "CreateWebhookSubscriptionCommand", "webhookUri": monitor.url,
                      "events": ["hookbus.notification.expired", "hookbus.subscription.suspended"]}))
        .await;
    created.assert_ok("Webhook subscription created successfully");
    let (id, _) = subscribe(&app, &failing.url, &["WB_Send_Sms"], json!({"maxAttempts": 2})).await;
    publish(&app, 1).await;
    publish(&app, 2).await;
    let heard = eventually(Duration::from_secs(10), || async {
        let names: Vec<Value> = monitor.received().iter().map(|r| r.body["eventName"].clone()).collect();
        let expired = names.iter().filter(|n| **n == "hookbus.notification.expired").count();
        (expired == 2 && names.contains(&json!("hookbus.subscription.suspended"))).then_some(())
    })
    .await;
    assert!(heard.is_some(), "the monitor got {:?}", monitor.received().iter().map(|r| &r.body).collect::<Vec<_>>());
    let expired = monitor.received().into_iter().find(|r| r.body["eventName"] == "hookbus.notification.expired");
    let data = expired.expect("an expiry").body["data"].clone();
    assert_eq!(data["subscriptionId"], json!(id));
    assert_eq!(data["eventName"], json!("WB_Send_Sms"));
    assert_eq!(data["counts"]["attempts"], json!(2));
    assert!(data["reason"].as_str().unwrap_or_default().contains("500"), "{data:#}");
    let suspended = monitor.received().into_iter().find(|r| r.body["eventName"] == "hookbus.subscription.suspended");
    let data = suspended.expect("a suspension").body["data"].clone();
    assert_eq!(data["reason"], json!("2 notifications expired in a row"));
}

/// `rateLimitPerSecond` spaces attempts out: what waits uses no attempt and never fails.
#[tokio::test]
async fn a_rate_limit_spaces_attempts_out() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (id, _) = subscribe(&app, &receiver.url, &["WB_Send_Sms"], json!({"rateLimitPerSecond": 20})).await;
    assert_eq!(subscription(&app, &id).await["rateLimitPerSecond"], json!(20));
    let published = burst(std::slice::from_ref(&app.address), 0..80, None).await;
    assert_eq!(published.len(), 80);
    let arrived = receiver.wait_for(80, Duration::from_secs(15)).await;
    assert_eq!(event_ids(&arrived).len(), 80);
    app.settled().await;
    let first = arrived.first().map(|r| r.at).expect("a delivery");
    let span = arrived.last().map(|r| r.at.duration_since(first)).unwrap_or_default().as_secs_f64();
    // 80 at 20 a second: the first at once, the other 79 over about 3.95 s.
    let rate = 79.0 / span;
    assert!((18.0..=22.0).contains(&rate), "{rate:.1} deliveries a second over {span:.2} s, limit 20");
    assert!(notifications(&app, &id).await.iter().all(|n| n["attempts"] == 1 && n["status"] == "Delivered"));
    let waited = metrics(&app)
        .await
        .lines()
        .find_map(|line| line.strip_prefix("hookbus_deliveries_held_total{reason=\"rate_limit\"} "))
        .and_then(|count| count.trim().parse::<f64>().ok())
        .unwrap_or_default();
    assert!(waited >= 40.0, "only {waited} deliveries counted as waiting for the rate limit");
}

/// `ordering: fifo`: 200 events arrive in publish order though every fifth request fails once;
/// the failed one is retried before anything after it is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_delivers_in_publish_order_through_failures() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.script((1..=260).map(|n| if n % 5 == 0 { Answer::Status(500) } else { Answer::Status(200) }));
    let (id, _) = subscribe(&app, &receiver.url, &["WB_Send_Sms"], json!({"ordering": "fifo"})).await;
    for n in 0..200 {
        publish(&app, n).await;
    }
    let done =
        eventually(Duration::from_secs(60), || async { (event_ids(&receiver.received()).len() == 200).then_some(()) })
            .await;
    assert!(done.is_some(), "{} of 200 arrived", event_ids(&receiver.received()).len());
    let sequence: Vec<i64> = receiver.received().iter().map(|r| r.body["data"]["n"].as_i64().unwrap_or(-1)).collect();
    for pair in sequence.windows(2) {
        assert!(pair[1] == pair[0] || pair[1] == pair[0] + 1, "out of order: {pair:?} in {sequence:?}");
    }
    assert_eq!(sequence.first(), Some(&0));
    assert_eq!(sequence.last(), Some(&199));
    assert!(sequence.len() >= 240, "every fifth request fails once: {} requests", sequence.len());
    assert_eq!(subscription(&app, &id).await["ordering"], json!("fifo"));
}

/// A notification that cannot be signed (its stored secret does not decrypt) records why, on the
/// notification and in its attempt log, instead of waiting silently.
#[tokio::test]
async fn a_notification_that_cannot_be_signed_says_why() {
    use sea_orm::ConnectionTrait;
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (id, _) = subscribe(&app, &receiver.url, &["WB_Send_Sms"], json!({"maxAttempts": 2})).await;
    let db = app.database.connect().await;
    db.execute_unprepared("UPDATE subscriptions SET secret = 'not-a-sealed-secret'").await.expect("corrupt");
    publish(&app, 1).await;
    let failed = eventually(Duration::from_secs(10), || async {
        let all = notifications(&app, &id).await;
        all.into_iter().find(|n| n["status"] == "Expired")
    })
    .await
    .expect("the notification never expired");
    assert!(failed["lastError"].as_str().unwrap_or_default().contains("cannot be signed"), "{failed:#}");
    let log = failed["attemptLog"].as_array().cloned().unwrap_or_default();
    assert_eq!(log.len(), 2, "{failed:#}");
    assert!(log.iter().all(|a| a["error"].as_str().unwrap_or_default().contains("cannot be signed")));
    assert_eq!(receiver.count(), 0);
}

/// An instance started with another encryption key than the one the database's secrets were
/// sealed with refuses to start, naming the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_encryption_key_refuses_to_start() {
    use crate::support::{free_port, hookbus};
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    subscribe(&app, &receiver.url, &["WB_Send_Sms"], json!({})).await;
    let mut server = hookbus(&app.database.url)
        .env("HOOKBUS_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("HOOKBUS_BOOTSTRAP_TOKEN", crate::support::ADMIN_TOKEN)
        .env("HOOKBUS_OUTBOUND__ENCRYPTION_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.try_wait().expect("status") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = server.kill();
            panic!("the server started with the wrong key");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut server.stderr.take().expect("stderr"), &mut stderr).expect("read");
    assert!(stderr.contains("outbound.encryption_key"), "{stderr}");
    assert!(stderr.contains("HOOKBUS_OUTBOUND__ENCRYPTION_KEY"), "{stderr}");
    assert!(!stderr.contains("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="), "the key was printed");
}

/// A FIFO subscription's notification behind one that waits for a retry says what it waits for.
#[tokio::test]
async fn a_notification_held_behind_a_failed_one_says_so() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.answer(Answer::Status(500));
    // Retries a day apart ("seconds" are milliseconds in tests: 86 s).
    let (id, _) =
        subscribe(&app, &receiver.url, &["WB_Send_Sms"], json!({"ordering": "fifo", "retryIntervalSeconds": 86_400}))
            .await;
    publish(&app, 1).await;
    publish(&app, 2).await;
    let first_failed = eventually(Duration::from_secs(10), || async {
        let all = notifications(&app, &id).await;
        all.iter().any(|n| n["status"] == "Failed").then_some(all)
    })
    .await
    .expect("the first notification never failed");
    let failed = first_failed.iter().find(|n| n["status"] == "Failed").expect("failed")["id"].clone();
    let waiting = first_failed.iter().find(|n| n["status"] == "Pending").expect("pending")["id"].clone();
    let detail = app.admin(json!({"$type": "GetNotificationByIdQuery", "id": waiting})).await;
    let held = &detail.assert_ok("Notification retrieved successfully")["held"];
    assert_eq!(held, &json!({"reason": "ordering", "behind": failed}));
    assert_eq!(receiver.count(), 1, "the second was sent before the first was delivered");
}
