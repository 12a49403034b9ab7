//! Outbound events, subscriptions and delivery (SPEC 5), against a real receiver on 127.0.0.1.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    receiver::{Answer, Receiver},
    support::{TestApp, within},
};

const PARTNER: &str = "6f1c2a4e-8d3b-4c5a-9e7f-0a1b2c3d4e5f";
const WAIT: Duration = Duration::from_secs(10);

/// Creates a subscription to `events` at `url` for PARTNER; returns `(id, secret)`.
pub(crate) async fn subscribe(app: &TestApp, url: &str, events: &[&str], extra: Value) -> (String, String) {
    let mut command = json!({
        "$type": "CreateWebhookSubscriptionCommand",
        "partnerId": PARTNER,
        "name": "partner hook",
        "webhookUri": url,
        "events": events,
    });
    for (key, value) in extra.as_object().cloned().unwrap_or_default() {
        command[key] = value;
    }
    let reply = app.admin(command).await;
    let data = reply.assert_ok("Webhook subscription created successfully");
    (data["id"].as_str().expect("id").to_owned(), data["secret"].as_str().expect("secret").to_owned())
}

async fn publish(app: &TestApp, event_name: &str, data: Value) -> Value {
    let reply = app.admin(json!({"$type": "PublishEventCommand", "eventName": event_name, "data": data})).await;
    reply.assert_ok("Event published successfully").clone()
}

/// The notifications of a subscription, newest first.
async fn notifications(app: &TestApp, subscription: &str) -> Vec<Value> {
    let reply =
        app.admin(json!({"$type": "GetNotificationListQuery", "subscriptionId": subscription, "pageSize": 100})).await;
    reply.assert_ok("Notifications retrieved successfully")["items"].as_array().cloned().unwrap_or_default()
}

/// Waits until the subscription's newest notification has `status`; returns it.
async fn settled(app: &TestApp, subscription: &str, status: &str) -> Value {
    let started = std::time::Instant::now();
    loop {
        let newest = notifications(app, subscription).await.into_iter().next().unwrap_or(Value::Null);
        if newest["status"] == status {
            return newest;
        }
        assert!(started.elapsed() < WAIT, "notification never reached {status}: {newest:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_catalog_lists_built_in_and_registered_events_and_refuses_unknown_names() {
    let app = TestApp::spawn().await;
    let reply = app.admin(json!({"$type": "GetEventCatalogQuery"})).await;
    let names: Vec<String> = reply
        .assert_ok("Event catalog retrieved successfully")
        .as_array()
        .expect("list")
        .iter()
        .map(|t| t["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(names.iter().filter(|n| n.starts_with("WB_")).count(), 22);
    for name in ["WB_Partner_Request", "WB_Loan_Opened", "mono.events.account_updated", "remita.payment.notification"] {
        assert!(names.iter().any(|n| n == name), "{name} missing");
    }

    let reply = app.admin(json!({"$type": "PublishEventCommand", "eventName": "Loan_Exploded", "data": {}})).await;
    reply.assert_error(422, "Validation failed");
    assert!(reply.has_error("eventName: unknown event name 'Loan_Exploded'"), "{:#}", reply.body);

    let reply = app
        .admin(json!({"$type": "RegisterEventTypeCommand", "name": "Loan_Exploded", "description": "A loan exploded",
                      "samplePayload": {"loanId": "L-1"}}))
        .await;
    reply.assert_ok("Event type registered successfully");
    app.admin(json!({"$type": "RegisterEventTypeCommand", "name": "Loan_Exploded", "description": "again"}))
        .await
        .assert_error(409, "Registration failed");
    let published = publish(&app, "Loan_Exploded", json!({"loanId": "L-1"})).await;
    assert_eq!(published["notifications"], 0);
}

#[tokio::test]
async fn subscriptions_are_validated_when_saved() {
    let app = TestApp::builder().configure(|s| s.outbound.allow_http = false).spawn().await;
    let base = json!({"$type": "CreateWebhookSubscriptionCommand", "partnerId": PARTNER,
                      "webhookUri": "https://partner.example.com/hooks", "events": ["WB_Loan_Opened"]});
    let with = |change: Value| {
        let mut command = base.clone();
        for (key, value) in change.as_object().cloned().unwrap_or_default() {
            command[key] = value;
        }
        command
    };
    let cases = [
        (
            json!({"webhookUri": "http://partner.example.com/hooks"}),
            "webhookUri: webhookUri must be an absolute https URL",
        ),
        (json!({"webhookUri": "https://10.1.2.3/hooks"}), "webhookUri: blocked: 10.1.2.3 is a private address"),
        (json!({"webhookUri": "https://[::1]/hooks"}), "webhookUri: blocked: ::1 is a loopback address"),
        (json!({"events": ["*"]}), "events: '*' is not an event name"),
        (json!({"events": ["WB_Nope"]}), "events: unknown event name 'WB_Nope'"),
        (json!({"partnerId": "not-a-guid"}), "partnerId"),
        (json!({"secret": "weakweakweakweak"}), "secret: must be a whsec_ secret"),
        (json!({"filters": {"attributes": ["fees"]}}), "filters.attributes[0]: 'fees' must start with '/'"),
        (json!({"filters": {"match": ["$["]}}), "filters.match[0]: invalid JSONPath"),
        (json!({"filters": {"attributes": (0..51).map(|i| format!("/fields/{i}")).collect::<Vec<_>>()}}), "at most 50"),
        (json!({"maxAttempts": 0}), "maxAttempts"),
        (json!({"headers": {"webhook-signature": ["x"]}}), "cannot be overridden"),
        (json!({"deliveryPolicy": "sometimes"}), "deliveryPolicy"),
    ];
    for (change, expected) in cases {
        let reply = app.admin(with(change.clone())).await;
        assert_eq!(reply.status, 422, "{change}: {:#}", reply.body);
        assert!(reply.has_error(expected), "{change}: expected '{expected}' in {:#}", reply.body);
    }
    assert_eq!(app.count_rows("subscriptions").await, 0, "nothing half-written");
}

#[tokio::test]
async fn secrets_are_shown_once_masked_on_read_and_encrypted_at_rest() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (id, secret) = subscribe(&app, &receiver.url, &["WB_Loan_Opened"], json!({})).await;
    assert!(secret.starts_with("whsec_") && secret.len() > 40, "{secret}");

    let reply = app.admin(json!({"$type": "GetWebhookSubscriptionQuery", "id": id})).await;
    let data = reply.assert_ok("Webhook subscription retrieved successfully");
    let tail = &secret[secret.len() - 4..];
    assert_eq!(data["secret"], format!("whsec_****{tail}"));
    assert!(!reply.body.to_string().contains(&secret));

    let chosen = "Partner-Secret-2026!";
    let (_, shown) = subscribe(&app, &receiver.url, &["WB_Loan_Opened"], json!({"secret": chosen})).await;
    assert_eq!(shown, chosen);
    let db = app.database.connect().await;
    let rows = sea_orm::ConnectionTrait::query_all_raw(
        &db,
        sea_orm::Statement::from_string(db.get_database_backend(), "SELECT secret FROM subscriptions"),
    )
    .await
    .expect("rows");
    for row in rows {
        let stored: String = row.try_get("", "secret").expect("secret");
        assert!(!stored.contains(&secret) && !stored.contains(chosen), "stored in the clear: {stored}");
    }
}

#[tokio::test]
async fn a_published_event_arrives_signed_with_the_standard_webhooks_headers() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (id, secret) = subscribe(
        &app,
        &receiver.url,
        &["WB_Loan_Opened"],
        json!({"headers": {"X-Partner-Key": ["k-123"], "X-Trace": ["a", "b"]}}),
    )
    .await;
    let published = publish(&app, "WB_Loan_Opened", json!({"loanId": "L-9", "amount": 250000})).await;
    assert_eq!(published["notifications"], 1);

    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    let request = &got[0];
    assert!(request.verify(&secret), "the reference library rejects the signature: {:?}", request.headers);
    assert!(!request.verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "verifies with any secret");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("x-partner-key"), Some("k-123"));
    assert_eq!(request.headers.get_all("x-trace").iter().count(), 2);
    assert_eq!(request.body["eventName"], "WB_Loan_Opened");
    assert_eq!(request.body["eventId"], published["eventId"]);
    assert_eq!(request.body["data"]["loanId"], "L-9");
    assert!(request.body["occurredAt"].as_str().is_some_and(|t| t.ends_with('Z')));

    let delivered = settled(&app, &id, "Delivered").await;
    assert_eq!(request.header("webhook-id"), delivered["id"].as_str());
    assert_eq!(delivered["attempts"], 1);
    let log = delivered["attemptLog"].as_array().expect("attempts");
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["httpStatus"], 200);
    assert_eq!(log[0]["responseExcerpt"], "answered 200");

    // The subscription shows its last delivery; custom header values that look like keys are masked.
    let reply = app.admin(json!({"$type": "GetWebhookSubscriptionQuery", "id": id})).await;
    let data = reply.assert_ok("Webhook subscription retrieved successfully");
    assert_eq!(data["lastDelivery"]["status"], "Delivered");
    assert_eq!(data["lastDelivery"]["httpStatus"], 200);
    assert_eq!(data["headers"]["x-partner-key"], json!(["****"]));
    assert_eq!(data["headers"]["x-trace"], json!(["a", "b"]));
}

#[tokio::test]
async fn publishing_with_an_event_id_is_idempotent() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    subscribe(&app, &receiver.url, &["WB_Customer_Created"], json!({})).await;
    let command = json!({"$type": "PublishEventCommand", "eventName": "WB_Customer_Created", "eventId": "cust-42",
                         "data": {"customerId": "42"}});
    let first = app.admin(command.clone()).await;
    let first = first.assert_ok("Event published successfully").clone();
    let again = app.admin(command).await;
    let again = again.assert_ok("Event already published");
    assert_eq!(again["eventId"], "cust-42");
    assert_eq!(again["notifications"], first["notifications"]);
    assert_eq!(again["duplicate"], true);
    receiver.wait_for(1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.count(), 1);
    assert_eq!(app.count_rows("events").await, 1);
}

#[tokio::test]
async fn failures_are_retried_then_delivered_with_every_attempt_logged() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.script([Answer::Status(500), Answer::Status(502)]);
    let (id, _) = subscribe(&app, &receiver.url, &["WB_Loan_Created"], json!({"retryIntervalSeconds": 5})).await;
    publish(&app, "WB_Loan_Created", json!({"loanId": "L-1"})).await;
    let delivered = settled(&app, &id, "Delivered").await;
    assert_eq!(delivered["attempts"], 3);
    let statuses: Vec<Value> =
        delivered["attemptLog"].as_array().expect("log").iter().map(|a| a["httpStatus"].clone()).collect();
    assert_eq!(statuses, [json!(500), json!(502), json!(200)]);
    let errors = delivered["attemptLog"][0]["error"].as_str().unwrap_or_default().to_owned();
    assert!(errors.contains("500"), "{errors}");
    // Every attempt carried the same webhook-id.
    let ids: Vec<String> =
        receiver.received().iter().map(|r| r.header("webhook-id").unwrap_or_default().to_owned()).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|i| *i == ids[0]));
}

#[tokio::test]
async fn attempts_run_out_into_expired_and_resend_delivers_them() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.answer(Answer::Status(503));
    let (id, _) = subscribe(&app, &receiver.url, &["WB_Loan_Closed"], json!({"maxAttempts": 3})).await;
    publish(&app, "WB_Loan_Closed", json!({"loanId": "L-2"})).await;
    let expired = settled(&app, &id, "Expired").await;
    assert_eq!(expired["attempts"], 3);
    assert_eq!(receiver.count(), 3);

    // The receiver recovers; resending queues the notification again as new attempts.
    receiver.answer(Answer::Status(200));
    let reply = app.admin(json!({"$type": "ResendExpiredNotificationsCommand", "subscriptionId": id})).await;
    assert_eq!(reply.assert_ok("Expired notifications queued again")["requeued"], 1);
    let delivered = settled(&app, &id, "Delivered").await;
    assert_eq!(delivered["attempts"], 1);
    assert_eq!(delivered["attemptLog"].as_array().map(Vec::len), Some(4));
}

#[tokio::test]
async fn gone_suspends_at_once_new_events_are_diverted_and_unsuspend_sends_them() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.script([Answer::Status(410)]);
    let (id, _) = subscribe(&app, &receiver.url, &["WB_Send_Sms"], json!({})).await;
    publish(&app, "WB_Send_Sms", json!({"n": 1})).await;
    settled(&app, &id, "Diverted").await;
    let reply = app.admin(json!({"$type": "GetWebhookSubscriptionQuery", "id": id})).await;
    let data = reply.assert_ok("Webhook subscription retrieved successfully");
    assert_eq!(data["suspended"], true);
    assert!(data["suspendedAt"].is_string());

    publish(&app, "WB_Send_Sms", json!({"n": 2})).await;
    let newest = notifications(&app, &id).await;
    assert_eq!(newest.len(), 2);
    assert!(newest.iter().all(|n| n["status"] == "Diverted"), "{newest:#?}");
    assert_eq!(receiver.count(), 1);

    let reply = app.admin(json!({"$type": "UnsuspendWebhookSubscriptionCommand", "id": id})).await;
    assert_eq!(reply.assert_ok("Subscription unsuspended; diverted notifications are being sent")["requeued"], 2);
    let got = receiver.wait_for(3, WAIT).await;
    assert_eq!(got.len(), 3);
    let mut numbers: Vec<i64> = got[1..].iter().filter_map(|r| r.body["data"]["n"].as_i64()).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, [1, 2]);
    app.admin(json!({"$type": "UnsuspendWebhookSubscriptionCommand", "id": id}))
        .await
        .assert_error(409, "Unsuspend failed");
}

#[tokio::test]
async fn a_run_of_expired_notifications_suspends_the_subscription() {
    let app = TestApp::builder().configure(|s| s.outbound.suspend_after_expired = 2).spawn().await;
    let receiver = Receiver::start().await;
    receiver.answer(Answer::Status(500));
    let (id, _) = subscribe(&app, &receiver.url, &["WB_Send_Otp"], json!({"maxAttempts": 1})).await;
    publish(&app, "WB_Send_Otp", json!({"n": 1})).await;
    settled(&app, &id, "Expired").await;
    let reply = app.admin(json!({"$type": "GetWebhookSubscriptionQuery", "id": id})).await;
    assert_eq!(reply.assert_ok("Webhook subscription retrieved successfully")["suspended"], false);
    publish(&app, "WB_Send_Otp", json!({"n": 2})).await;
    let suspended = within(WAIT, || async {
        let reply = app.admin(json!({"$type": "GetWebhookSubscriptionQuery", "id": id})).await;
        reply.data()["suspended"] == true
    })
    .await;
    assert!(suspended.is_some(), "not suspended after two expiries in a row");
    publish(&app, "WB_Send_Otp", json!({"n": 3})).await;
    assert_eq!(notifications(&app, &id).await[0]["status"], "Diverted");
}

#[tokio::test]
async fn retry_after_is_honoured() {
    // One "second" is 100 ms here: the interval (50 s) would wait 5 s, Retry-After (1 s) 100 ms.
    let app = TestApp::builder().configure(|s| s.outbound.retry_second_ms = 100).spawn().await;
    let receiver = Receiver::start().await;
    receiver.script([Answer::RetryAfter(429, "1")]);
    let (id, _) = subscribe(&app, &receiver.url, &["WB_Send_Sms"], json!({"retryIntervalSeconds": 50})).await;
    publish(&app, "WB_Send_Sms", json!({})).await;
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2, "no retry within {WAIT:?}");
    let gap = got[1].at - got[0].at;
    assert!(gap >= Duration::from_millis(90) && gap < Duration::from_secs(3), "retried after {gap:?}");
    settled(&app, &id, "Delivered").await;
}

#[tokio::test]
async fn hmac_can_be_disabled() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    subscribe(&app, &receiver.url, &["WB_Send_Sms"], json!({"hmacEnabled": false})).await;
    publish(&app, "WB_Send_Sms", json!({})).await;
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("webhook-signature"), None);
    assert_eq!(got[0].header("webhook-id"), None);
}

#[tokio::test]
async fn metrics_count_deliveries_and_publish_to_delivery_latency() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (id, _) = subscribe(&app, &receiver.url, &["WB_Send_Sms"], json!({})).await;
    publish(&app, "WB_Send_Sms", json!({})).await;
    settled(&app, &id, "Delivered").await;
    let text = app.client.get(format!("{}/metrics", app.address)).send().await.expect("metrics");
    let text = text.text().await.expect("text");
    assert!(text.contains("hookbus_deliveries_total{outcome=\"delivered\"} 1"), "{text}");
    assert!(text.contains("hookbus_delivery_latency_seconds_count 1"), "{text}");
    assert!(text.contains("hookbus_delivery_queue_depth"), "{text}");
}
