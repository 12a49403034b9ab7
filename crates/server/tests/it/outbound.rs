//! Outbound events, subscriptions and delivery, against a real receiver on 127.0.0.1.

use std::time::Duration;

use sea_orm::ConnectionTrait;
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
        (
            json!({"webhookUri": "https://10.1.2.3/hooks"}),
            "webhookUri: blocked: address not allowed: 10.1.2.3 is a private address",
        ),
        (
            json!({"webhookUri": "https://[::1]/hooks"}),
            "webhookUri: blocked: address not allowed: ::1 is a loopback address",
        ),
        (
            json!({"webhookUri": "https://[::127.0.0.1]/hooks"}),
            "webhookUri: blocked: address not allowed: ::7f00:1 is an IPv4-compatible address",
        ),
        (json!({"events": ["*"]}), "events: '*' is not an event name"),
        (json!({"events": ["WB_Nope"]}), "events: unknown event name 'WB_Nope'"),
        (json!({"partnerId": "not-a-guid"}), "partnerId: 'not-a-guid' is not a GUID"),
        (json!({"partnerId": 7}), "partnerId: must be a GUID string"),
        (json!({"colour": "red"}), "colour: unknown field `colour`"),
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
    assert_eq!(delivered["lastHttpStatus"], 200);
    assert_eq!(delivered["lastAttemptAt"], log[0]["attemptedAt"]);
    assert!(delivered["deliveredAt"].is_string(), "{delivered:#}");
    assert!(delivered["nextAttemptAt"].is_null() && delivered["lastError"].is_null(), "{delivered:#}");

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
    app.settled().await;
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
    assert_eq!(expired["lastHttpStatus"], 503);
    assert!(expired["lastError"].as_str().is_some_and(|e| e.contains("503")), "{expired:#}");
    assert!(expired["nextAttemptAt"].is_null() && expired["deliveredAt"].is_null(), "{expired:#}");

    // The receiver recovers; resending queues the notification again as new attempts.
    receiver.answer(Answer::Status(200));
    let reply = app.admin(json!({"$type": "ResendExpiredNotificationsCommand", "subscriptionId": id})).await;
    assert_eq!(reply.assert_ok("Expired notifications queued again")["requeued"], 1);
    let delivered = settled(&app, &id, "Delivered").await;
    assert_eq!(delivered["attempts"], 1);
    assert_eq!(delivered["attemptLog"].as_array().map(Vec::len), Some(4));
    assert_eq!(delivered["lastHttpStatus"], 200);
    assert!(delivered["lastError"].is_null() && delivered["deliveredAt"].is_string(), "{delivered:#}");
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

const OTHER_PARTNER: &str = "0b6a9a6e-1f0e-4b43-8d8e-3c9e5d7f2a10";

#[tokio::test]
async fn owner_bound_tokens_see_only_their_own_subscriptions() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (mine, _) = subscribe(&app, &receiver.url, &["WB_Loan_Opened"], json!({})).await;
    let reply = app
        .admin(json!({"$type": "CreateWebhookSubscriptionCommand", "partnerId": OTHER_PARTNER,
                      "webhookUri": receiver.url, "events": ["WB_Loan_Opened"]}))
        .await;
    let theirs = reply.assert_ok("Webhook subscription created successfully")["id"].as_str().expect("id").to_owned();

    let reply = app
        .admin(json!({"$type": "CreateApiTokenCommand", "name": "partner", "partnerId": PARTNER,
                      "permissions": ["subscriptions:read", "subscriptions:write"]}))
        .await;
    let token = reply.assert_ok("API token created successfully")["token"].as_str().expect("token").to_owned();
    let token = Some(token.as_str());

    let reply = app.cmd(token, json!({"$type": "GetWebhookSubscriptionQuery", "id": mine})).await;
    reply.assert_ok("Webhook subscription retrieved successfully");
    for command in [
        json!({"$type": "GetWebhookSubscriptionQuery", "id": theirs}),
        json!({"$type": "UpdateWebhookSubscriptionCommand", "id": theirs, "name": "mine now"}),
        json!({"$type": "DeleteWebhookSubscriptionCommand", "id": theirs}),
        json!({"$type": "PingWebhookSubscriptionCommand", "id": theirs}),
        json!({"$type": "RotateWebhookSecretCommand", "id": theirs}),
    ] {
        let reply = app.cmd(token, command.clone()).await;
        assert_eq!(reply.status, 404, "{command}: {:#}", reply.body);
        assert!(reply.has_error("Subscription not found"), "{:#}", reply.body);
    }
    let reply = app.cmd(token, json!({"$type": "GetWebhookSubscriptionListQuery"})).await;
    let page = reply.assert_ok("Webhook subscriptions retrieved successfully");
    assert_eq!(page["totalCount"], 1);
    assert_eq!(page["items"][0]["id"], mine.as_str());

    // Creating for another owner is refused; omitting the owner uses the token's.
    let reply = app
        .cmd(
            token,
            json!({"$type": "CreateWebhookSubscriptionCommand", "partnerId": OTHER_PARTNER,
                           "webhookUri": receiver.url, "events": ["WB_Loan_Opened"]}),
        )
        .await;
    assert_eq!(reply.status, 403, "{:#}", reply.body);
    let reply = app
        .cmd(
            token,
            json!({"$type": "CreateWebhookSubscriptionCommand", "webhookUri": receiver.url,
                           "events": ["WB_Loan_Opened"]}),
        )
        .await;
    assert_eq!(reply.assert_ok("Webhook subscription created successfully")["partnerId"], PARTNER);

    // Their notifications are invisible too.
    publish(&app, "WB_Loan_Opened", json!({})).await;
    receiver.wait_for(3, WAIT).await;
    let reply = app.cmd(token, json!({"$type": "GetNotificationListQuery", "pageSize": 100})).await;
    let items =
        reply.assert_ok("Notifications retrieved successfully")["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 2, "{items:#?}");
    assert!(items.iter().all(|n| n["subscriptionId"] != theirs.as_str()));
}

#[tokio::test]
async fn attribute_resource_and_match_filters_choose_who_receives_an_event() {
    let app = TestApp::spawn().await;
    let contacts = Receiver::start().await;
    let fees = Receiver::start().await;
    let big = Receiver::start().await;
    let loans_only = Receiver::start().await;
    subscribe(
        &app,
        &contacts.url,
        &["WB_Loan_Opened"],
        json!({"filters": {"attributes": ["/contacts/*/contactType/name"]}}),
    )
    .await;
    subscribe(
        &app,
        &fees.url,
        &["WB_Loan_Opened"],
        json!({"filters": {"attributes": ["/fees/*", "/applications/0/"]}}),
    )
    .await;
    subscribe(&app, &big.url, &["WB_Loan_Opened"], json!({"filters": {"match": ["$.data.items[?@.amount > 1000]"]}}))
        .await;
    subscribe(&app, &loans_only.url, &["WB_Loan_Opened"], json!({"resource": "Loan"})).await;

    let send = |changed: Value, resource: Value, data: Value| {
        let app = &app;
        async move {
            let reply = app
                .admin(json!({"$type": "PublishEventCommand", "eventName": "WB_Loan_Opened", "resource": resource,
                              "changedAttributes": changed, "data": data}))
                .await;
            reply.assert_ok("Event published successfully")["notifications"].as_i64().unwrap_or(-1)
        }
    };
    // A contact's type name changed: the contacts filter matches; the fees filter does not; the
    // JSONPath filter finds no big item; the resource filter passes.
    assert_eq!(send(json!(["/contacts/2/contactType/name"]), json!("Loan"), json!({"items": []})).await, 2);
    // A fee changed, on an event of another resource.
    assert_eq!(send(json!(["/fees/0/amount"]), json!("Transaction"), json!({"items": [{"amount": 5000}]})).await, 2);
    // No changed attributes: attribute filters do not apply.
    assert_eq!(send(Value::Null, json!("Loan"), json!({"items": [{"amount": 5}]})).await, 3);

    for (receiver, expected) in [(&contacts, 2), (&fees, 2), (&big, 1), (&loans_only, 2)] {
        assert_eq!(receiver.wait_for(expected, WAIT).await.len(), expected, "{}", receiver.url);
    }
    app.settled().await;
    assert_eq!([contacts.count(), fees.count(), big.count(), loans_only.count()], [2, 2, 1, 2]);
}

#[tokio::test]
async fn the_ssrf_guard_blocks_private_targets_on_every_attempt_unless_allowed() {
    // No allowed ranges here: loopback is forbidden like any reserved range.
    let app = TestApp::builder().configure(|s| s.outbound.allow_cidrs = vec![]).spawn().await;
    let receiver = Receiver::start().await;
    // A literal private address is refused when saved.
    let reply = app
        .admin(json!({"$type": "CreateWebhookSubscriptionCommand", "partnerId": PARTNER,
                      "webhookUri": "http://192.168.10.20/hook", "events": ["WB_Send_Sms"]}))
        .await;
    reply.assert_error(422, "Validation failed");
    assert!(reply.has_error("192.168.10.20 is a private address"), "{:#}", reply.body);
    let reply = app
        .admin(json!({"$type": "CreateWebhookSubscriptionCommand", "partnerId": PARTNER,
                      "webhookUri": receiver.url, "events": ["WB_Send_Sms"]}))
        .await;
    assert!(reply.has_error("127.0.0.1 is a loopback address"), "{:#}", reply.body);

    // A name is checked where it resolves, at each attempt: localhost resolves to loopback.
    let port = receiver.url.split(':').nth(2).and_then(|rest| rest.split('/').next()).expect("port").to_owned();
    let (id, _) =
        subscribe(&app, &format!("http://localhost:{port}/hook"), &["WB_Send_Sms"], json!({"maxAttempts": 1})).await;
    publish(&app, "WB_Send_Sms", json!({})).await;
    let expired = settled(&app, &id, "Expired").await;
    let error = expired["attemptLog"][0]["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("blocked: address not allowed (localhost resolves"), "{error}");
    // What the name resolved to stays on the server.
    assert!(!error.contains("127.0.0.1") && !error.contains("::1") && !error.contains("loopback"), "{error}");
    assert_eq!(receiver.count(), 0, "the request reached the receiver");

    let reply = app.admin(json!({"$type": "PingWebhookSubscriptionCommand", "id": id})).await;
    let data = reply.assert_ok("Ping failed");
    assert!(data["error"].as_str().is_some_and(|e| e.contains("blocked")), "{data:#}");
    assert_eq!(receiver.count(), 0);
}

#[tokio::test]
async fn the_allow_list_lets_a_range_through() {
    // The default test configuration allows 127.0.0.0/8; `localhost` resolves into it.
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let url = receiver.url.replace("127.0.0.1", "localhost");
    let (id, _) = subscribe(&app, &url, &["WB_Send_Sms"], json!({})).await;
    publish(&app, "WB_Send_Sms", json!({})).await;
    settled(&app, &id, "Delivered").await;
    assert_eq!(receiver.count(), 1);
}

#[tokio::test]
async fn ping_sends_a_signed_ping_and_reports_status_and_latency() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (id, secret) = subscribe(&app, &receiver.url, &["WB_Send_Sms"], json!({})).await;
    let reply = app.admin(json!({"$type": "PingWebhookSubscriptionCommand", "id": id})).await;
    let data = reply.assert_ok("Ping delivered");
    assert_eq!(data["statusCode"], 200);
    assert!(data["latencyMs"].as_i64().is_some_and(|ms| ms >= 0));
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["eventName"], "ping");
    assert!(got[0].verify(&secret));

    receiver.answer(Answer::Status(500));
    let reply = app.admin(json!({"$type": "PingWebhookSubscriptionCommand", "id": id})).await;
    let data = reply.assert_ok("Ping failed");
    assert_eq!(data["statusCode"], 500);
    assert_eq!(data["success"], false);
}

#[tokio::test]
async fn simulated_events_go_to_one_owner_with_the_sample_payload() {
    let app = TestApp::spawn().await;
    let mine = Receiver::start().await;
    let theirs = Receiver::start().await;
    subscribe(&app, &mine.url, &["WB_Customer_Created"], json!({})).await;
    app.admin(json!({"$type": "CreateWebhookSubscriptionCommand", "partnerId": OTHER_PARTNER,
                     "webhookUri": theirs.url, "events": ["WB_Customer_Created"]}))
        .await
        .assert_ok("Webhook subscription created successfully");
    let reply = app
        .admin(json!({"$type": "GenerateSimulatedWebhookCommand", "eventName": "WB_Customer_Created", "partnerId": PARTNER}))
        .await;
    assert_eq!(reply.assert_ok("Simulated webhook queued")["notifications"], 1);
    let got = mine.wait_for(1, WAIT).await;
    assert_eq!(got[0].body["simulated"], true);
    assert_eq!(got[0].body["data"]["firstName"], "Ada");
    app.settled().await;
    assert_eq!(theirs.count(), 0);
}

#[tokio::test]
async fn during_rotation_both_secrets_sign() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (id, old) = subscribe(&app, &receiver.url, &["WB_Send_Sms"], json!({})).await;
    let reply = app.admin(json!({"$type": "RotateWebhookSecretCommand", "id": id})).await;
    let data =
        reply.assert_ok("Signing secret rotated; the previous secret signs beside it until previousSecretValidUntil");
    let new = data["secret"].as_str().expect("new secret").to_owned();
    assert_ne!(new, old);
    publish(&app, "WB_Send_Sms", json!({})).await;
    let got = receiver.wait_for(1, WAIT).await;
    let signatures = got[0].header("webhook-signature").unwrap_or_default().to_owned();
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    assert!(got[0].verify(&new), "new secret does not verify");
    assert!(got[0].verify(&old), "old secret does not verify");
}

#[tokio::test]
async fn updates_remove_first_then_add_and_owner_wide_commands_apply_to_every_subscription() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (id, _) = subscribe(
        &app,
        &receiver.url,
        &["WB_Send_Sms", "WB_Send_Otp"],
        json!({"headers": {"X-One": ["1"], "X-Two": ["2"]}}),
    )
    .await;
    let reply = app
        .admin(json!({"$type": "UpdateWebhookSubscriptionCommand", "id": id,
                      "removeEvents": ["WB_Send_Sms", "WB_Loan_Opened"], "addEvents": ["WB_Loan_Opened"],
                      "removeHeaders": ["x-one", "X-Two"], "addHeaders": {"X-Two": ["22"]},
                      "deliveryPolicy": "exponential", "maxAttempts": 7}))
        .await;
    let data = reply.assert_ok("Webhook subscription updated successfully");
    assert_eq!(data["events"], json!(["WB_Send_Otp", "WB_Loan_Opened"]));
    assert_eq!(data["headers"], json!({"x-two": ["22"]}));
    assert_eq!(data["deliveryPolicy"], "exponential");
    assert_eq!(data["maxAttempts"], 7);
    let reply = app.admin(json!({"$type": "UpdateWebhookSubscriptionCommand", "id": id, "events": ["*"]})).await;
    reply.assert_error(422, "Validation failed");

    let reply = app.admin(json!({"$type": "GetRegisteredWebhooksQuery", "partnerId": PARTNER})).await;
    assert_eq!(
        reply.assert_ok("Registered webhooks retrieved successfully"),
        &json!(["WB_Loan_Opened", "WB_Send_Otp"])
    );

    let moved = receiver.url.replace("/hook", "/moved");
    let reply = app.admin(json!({"$type": "UpdateWebhookUriCommand", "partnerId": PARTNER, "webhookUri": moved})).await;
    assert_eq!(reply.assert_ok("Webhook URI updated successfully")[0]["webhookUri"], moved.as_str());
    let reply = app.admin(json!({"$type": "SubscribeAllEventsCommand", "partnerId": PARTNER})).await;
    assert_eq!(reply.assert_ok("Subscribed to all events")[0]["subscribeAll"], true);
    let reply = app.admin(json!({"$type": "GetRegisteredWebhooksQuery", "partnerId": PARTNER})).await;
    assert!(reply.data().as_array().is_some_and(|names| names.len() >= 22));
    let published = publish(&app, "WB_Application_Ready", json!({})).await;
    assert_eq!(published["notifications"], 1);

    // Unregistering names from a subscribe-all subscription leaves every other name.
    let reply = app
        .admin(json!({"$type": "UnregisterWebhookEventsCommand", "id": id, "events": ["WB_Application_Ready"]}))
        .await;
    let data = reply.assert_ok("Webhook events unregistered successfully");
    assert_eq!(data[0]["subscribeAll"], false);
    assert!(data[0]["events"].as_array().is_some_and(|e| e.len() >= 21 && !e.contains(&json!("WB_Application_Ready"))));
    assert_eq!(publish(&app, "WB_Application_Ready", json!({})).await["notifications"], 0);
    assert_eq!(publish(&app, "WB_Loan_Opened", json!({})).await["notifications"], 1);

    let reply = app.admin(json!({"$type": "UnregisterWebhookEventsCommand", "partnerId": PARTNER})).await;
    assert_eq!(reply.assert_ok("Webhook events unregistered successfully")[0]["isActive"], false);
    assert_eq!(publish(&app, "WB_Application_Ready", json!({})).await["notifications"], 0);

    // An owner without a subscription has nothing to change: an empty success, and nobody
    // else's subscription moves.
    let elsewhere = "https://elsewhere.example.com/hooks";
    let reply = app
        .admin(json!({"$type": "UpdateWebhookUriCommand", "partnerId": OTHER_PARTNER, "webhookUri": elsewhere}))
        .await;
    assert_eq!(reply.assert_ok("Webhook URI updated successfully"), &json!([]));
    let reply = app.admin(json!({"$type": "SubscribeAllEventsCommand", "partnerId": OTHER_PARTNER})).await;
    assert_eq!(reply.assert_ok("Subscribed to all events"), &json!([]));
    let mine = app.admin(json!({"$type": "GetWebhookSubscriptionListQuery", "partnerId": PARTNER})).await;
    assert_eq!(mine.assert_ok("Webhook subscriptions retrieved successfully")["items"][0]["webhookUri"], json!(moved));
}

#[tokio::test]
async fn deleting_a_subscription_cancels_its_waiting_notifications() {
    let app = TestApp::builder().configure(|s| s.outbound.retry_second_ms = 1000).spawn().await;
    let receiver = Receiver::start().await;
    receiver.answer(Answer::Status(500));
    let (id, _) = subscribe(&app, &receiver.url, &["WB_Send_Sms"], json!({"retryIntervalSeconds": 3600})).await;
    publish(&app, "WB_Send_Sms", json!({})).await;
    let failed = settled(&app, &id, "Failed").await;
    let notification = failed["id"].as_str().expect("id").to_owned();
    let reply = app.admin(json!({"$type": "DeleteWebhookSubscriptionCommand", "id": id})).await;
    assert_eq!(reply.assert_ok("Webhook subscription deleted successfully")["cancelledNotifications"], 1);
    let reply = app.admin(json!({"$type": "GetNotificationByIdQuery", "id": notification})).await;
    assert_eq!(reply.assert_ok("Notification retrieved successfully")["status"], "Cancelled");
    app.admin(json!({"$type": "GetWebhookSubscriptionQuery", "id": id}))
        .await
        .assert_error(404, "Subscription not found");
}

#[tokio::test]
async fn a_receiver_that_fails_then_recovers_gets_everything_after_resend() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.answer(Answer::Status(500));
    let (id, _) = subscribe(&app, &receiver.url, &["WB_Send_Sms"], json!({"maxAttempts": 2})).await;
    for n in 0..50 {
        publish(&app, "WB_Send_Sms", json!({"n": n})).await;
    }
    let count = |status: &'static str| {
        let (app, id) = (&app, &id);
        async move {
            let reply =
                app.admin(json!({"$type": "GetNotificationListQuery", "subscriptionId": id, "status": status})).await;
            reply.data()["totalCount"].as_i64().unwrap_or(-1)
        }
    };
    // Five expiries in a row suspend the subscription; what follows is diverted.
    let settled = within(WAIT, || async { count("Expired").await + count("Diverted").await == 50 }).await;
    assert!(settled.is_some(), "notifications did not all expire or divert");
    assert!(count("Expired").await >= 5);
    let reply = app.admin(json!({"$type": "GetWebhookSubscriptionQuery", "id": id})).await;
    assert_eq!(reply.data()["suspended"], true);

    // The receiver recovers: unsuspend sends what was diverted, resend what expired.
    receiver.answer(Answer::Status(200));
    let recovered = std::time::Instant::now();
    app.admin(json!({"$type": "UnsuspendWebhookSubscriptionCommand", "id": id}))
        .await
        .assert_ok("Subscription unsuspended; diverted notifications are being sent");
    app.admin(json!({"$type": "ResendExpiredNotificationsCommand", "subscriptionId": id}))
        .await
        .assert_ok("Expired notifications queued again");
    let delivered = within(WAIT, || async { count("Delivered").await == 50 }).await;
    assert!(delivered.is_some(), "not everything was delivered after the resend");
    let mut seen: Vec<i64> =
        receiver.received().iter().filter(|r| r.at >= recovered).filter_map(|r| r.body["data"]["n"].as_i64()).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen, (0..50).collect::<Vec<_>>());
}

/// Publishes `count` events named `burst-{n}` from 32 concurrent clients, spread over `servers`;
/// returns the event ids whose publishing succeeded.
pub(crate) async fn burst(
    servers: &[String],
    range: std::ops::Range<usize>,
    stop: Option<&std::sync::atomic::AtomicBool>,
) -> Vec<String> {
    use futures_util::{StreamExt, stream};
    let client = reqwest::Client::new();
    stream::iter(range)
        .map(|n| {
            let client = client.clone();
            let url = format!("{}/api/bpm/cmd", servers[n % servers.len()]);
            async move {
                if stop.is_some_and(|stop| stop.load(std::sync::atomic::Ordering::SeqCst)) {
                    return None;
                }
                let body = json!({"$type": "PublishEventCommand", "eventName": "WB_Send_Sms", "eventId": format!("burst-{n}"),
                                  "data": {"n": n}});
                let sent = client.post(url).bearer_auth(crate::support::ADMIN_TOKEN).json(&body).send().await;
                // A failure is printed (shown with a failing test): the transport error, or the
                // answer's status and headers (a body that is not JSON reads as null).
                let reply = match sent {
                    Ok(response) => crate::support::into_reply(response).await,
                    Err(error) => {
                        eprintln!("burst-{n} not published: {error:?}");
                        return None;
                    }
                };
                if reply.body["success"] == true {
                    Some(format!("burst-{n}"))
                } else {
                    eprintln!("burst-{n} not published: {reply:?}");
                    None
                }
            }
        })
        .buffer_unordered(32)
        .filter_map(|id| async move { id })
        .collect::<Vec<_>>()
        .await
}

/// Distinct event ids the receiver got.
fn distinct_event_ids(receiver: &Receiver) -> std::collections::BTreeSet<String> {
    receiver.received().iter().filter_map(|r| r.body["eventId"].as_str().map(str::to_owned)).collect()
}

/// SIGKILL during a burst of 2,000 publications: after a restart every notification whose
/// publishing succeeded is delivered, and publishing the rest again (same eventIds) completes the
/// set. Nothing acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_published_is_lost_when_the_server_is_killed_mid_burst() {
    use crate::support::{TEST_ENCRYPTION_KEY, TestDatabase, free_port, kill_9, ready, serve};
    let database = TestDatabase::create().await;
    let receiver = Receiver::start().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let env = [
        ("HOOKBUS_OUTBOUND_ALLOW_CIDRS", "127.0.0.0/8"),
        ("HOOKBUS_OUTBOUND_ALLOW_HTTP", "true"),
        ("HOOKBUS_OUTBOUND__ENCRYPTION_KEY", TEST_ENCRYPTION_KEY),
        ("HOOKBUS_OUTBOUND__POLL_MS", "50"),
        ("HOOKBUS_OUTBOUND__LEASE_SECS", "3"),
        ("HOOKBUS_OUTBOUND__TIMEOUT_MS", "2000"),
        // An attempt that fails (a timeout on a loaded machine) is retried within the test's
        // waits: the default interval, 60 "seconds", is 1.2 s here.
        ("HOOKBUS_OUTBOUND__RETRY_SECOND_MS", "20"),
    ];
    let client = reqwest::Client::new();
    let start = || serve(&database.url, port, &env);
    let mut server = start();
    assert!(within(Duration::from_secs(20), || ready(&client, &base)).await.is_some(), "the server did not start");
    let subscribe = json!({"$type": "CreateWebhookSubscriptionCommand", "partnerId": PARTNER,
                           "webhookUri": receiver.url, "events": ["WB_Send_Sms"]});
    let reply = client
        .post(format!("{base}/api/bpm/cmd"))
        .bearer_auth(crate::support::ADMIN_TOKEN)
        .json(&subscribe)
        .send()
        .await;
    assert_eq!(reply.expect("answer").status(), 200);

    let stop = std::sync::atomic::AtomicBool::new(false);
    let servers = [base.clone()];
    let killer = async {
        // Kill once part of the burst is published and deliveries are under way.
        within(Duration::from_secs(30), || async { receiver.count() >= 300 }).await;
        kill_9(&mut server);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let (published, ()) = tokio::join!(burst(&servers, 0..2_000, Some(&stop)), killer);
    assert!(published.len() >= 300 && published.len() < 2_000, "killed too late or too early: {}", published.len());

    let mut server = start();
    assert!(within(Duration::from_secs(20), || ready(&client, &base)).await.is_some(), "no restart");
    let all_acknowledged = within(Duration::from_secs(30), || async {
        let seen = distinct_event_ids(&receiver);
        published.iter().all(|id| seen.contains(id))
    })
    .await;
    let seen = distinct_event_ids(&receiver);
    let lost: Vec<&String> = published.iter().filter(|id| !seen.contains(*id)).collect();
    assert!(all_acknowledged.is_some(), "{} acknowledged events never arrived, e.g. {:?}", lost.len(), lost.first());

    // The rest of the burst, published again after the restart: every one of 2,000 arrives.
    let again = burst(&servers, 0..2_000, None).await;
    assert_eq!(again.len(), 2_000);
    let complete = within(Duration::from_secs(30), || async { distinct_event_ids(&receiver).len() == 2_000 }).await;
    if complete.is_none() {
        let seen = distinct_event_ids(&receiver);
        let missing: Vec<String> = again.iter().filter(|id| !seen.contains(*id)).cloned().collect();
        let state = delivery_state(&database.connect().await, &missing).await;
        panic!("only {} of 2000 events arrived; the missing ones in the database:\n{state}", seen.len());
    }
    kill_9(&mut server);
}

/// What the database holds of the deliveries of `event_keys`, a line each, for a failure message.
async fn delivery_state(db: &sea_orm::DatabaseConnection, event_keys: &[String]) -> String {
    use sea_orm::{ConnectionTrait, Statement};
    let keys = event_keys.iter().map(|key| format!("'{key}'")).collect::<Vec<_>>().join(", ");
    let statement = format!(
        "SELECT e.event_key, n.status, n.attempts, n.last_http_status, n.last_error, \
         CAST(q.next_attempt_at AS TEXT) AS next_attempt_at, CAST(q.lease_until AS TEXT) AS lease_until \
         FROM events e LEFT JOIN notifications n ON n.event_id = e.id \
         LEFT JOIN delivery_queue q ON q.notification_id = n.id WHERE e.event_key IN ({keys})"
    );
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), statement)).await;
    match rows {
        Ok(rows) => rows
            .iter()
            .map(|row| {
                let text = |column: &str| row.try_get::<Option<String>>("", column).ok().flatten().unwrap_or_default();
                let number = |column: &str| row.try_get::<Option<i32>>("", column).ok().flatten().unwrap_or_default();
                format!(
                    "{} status={} attempts={} http={} error={} next={} lease={}",
                    text("event_key"),
                    text("status"),
                    number("attempts"),
                    number("last_http_status"),
                    text("last_error"),
                    text("next_attempt_at"),
                    text("lease_until"),
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(error) => format!("(could not read: {error})"),
    }
}

/// Two instances on one database deliver 2,000 notifications: each exactly once. Their in-memory
/// queues are small, so most notifications wait in the database and both instances' pollers
/// compete to claim them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_deliver_every_notification_once() {
    let small = |s: &mut hookbus_server::Settings| s.outbound.queue_capacity = 32;
    let first = TestApp::builder().configure(small).spawn().await;
    let second = TestApp::builder().database(std::sync::Arc::clone(&first.database)).configure(small).spawn().await;
    let receiver = Receiver::start().await;
    subscribe(&first, &receiver.url, &["WB_Send_Sms"], json!({})).await;
    // The second instance sees the subscription at once: publishing reads it from the database.
    let published = burst(&[first.address.clone(), second.address.clone()], 0..2_000, None).await;
    assert_eq!(published.len(), 2_000);
    let complete = within(Duration::from_secs(60), || async { receiver.count() >= 2_000 }).await;
    assert!(complete.is_some(), "only {} deliveries", receiver.count());
    // Any duplicate would have arrived once both instances have settled.
    first.settled().await;
    second.settled().await;
    let got = receiver.received();
    let ids: std::collections::BTreeSet<&str> = got.iter().filter_map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 2_000, "distinct notifications delivered");
    assert_eq!(got.len(), 2_000, "{} duplicate deliveries", got.len() - ids.len());
    assert_eq!(distinct_event_ids(&receiver).len(), 2_000);
}

/// A router script publishes an event with `publish()`; it reaches the subscription like any other.
#[tokio::test]
async fn scripts_publish_events_through_the_same_path() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    let (id, _) = subscribe(&app, &receiver.url, &["WB_Partner_Request"], json!({})).await;
    let code = r#"
        let first = publish("WB_Partner_Request", #{ partner: body.partner }, #{ eventId: "req-" + body.ref, resource: "Partner" });
        let again = publish("WB_Partner_Request", #{ partner: body.partner }, #{ eventId: "req-" + body.ref });
        #{ first: first.notifications, repeated: again.duplicate }
    "#;
    let config = json!({"$type": "CreateWebHookConfigCommand", "key": "partner-requests", "description": "publishes",
                        "isEnabled": true, "path": "/hooks/partner-requests", "action": "POST", "executionType": 2,
                        "executionCode": code});
    app.admin(config).await.assert_ok("Webhook configuration created successfully");
    let reply = app.call("POST", "/hooks/partner-requests", Some(json!({"partner": "acme", "ref": "77"})), &[]).await;
    assert_eq!(reply.assert_ok("Script executed successfully"), &json!({"first": 1, "repeated": true}));
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].body["eventId"], "req-77");
    assert_eq!(got[0].body["resource"], "Partner");
    assert_eq!(got[0].body["data"], json!({"partner": "acme"}));
    settled(&app, &id, "Delivered").await;

    let bad = r#"publish("Not_An_Event", #{})"#;
    let config = json!({"$type": "CreateWebHookConfigCommand", "key": "bad-publisher", "description": "publishes junk",
                        "isEnabled": true, "path": "/hooks/bad-publisher", "action": "POST", "executionType": 2,
                        "executionCode": bad});
    app.admin(config).await.assert_ok("Webhook configuration created successfully");
    let reply = app.call("POST", "/hooks/bad-publisher", Some(json!({})), &[]).await;
    assert_eq!(reply.status, 422, "{:#}", reply.body);
}

/// Finished notifications, their attempts and their events are deleted after the retention.
#[tokio::test]
async fn finished_deliveries_are_deleted_after_the_retention() {
    let app = sweeping_app().await;
    let receiver = Receiver::start().await;
    receiver.script([Answer::Status(500)]);
    subscribe(&app, &receiver.url, &["WB_Send_Sms"], json!({})).await;
    publish(&app, "WB_Send_Sms", json!({})).await;
    assert_eq!(receiver.wait_for(2, WAIT).await.len(), 2);
    let swept = within(WAIT, || history_is_gone(&app)).await;
    assert!(swept.is_some(), "finished rows were kept past the retention");
    assert_eq!(app.count_rows("subscriptions").await, 1);
}

/// A server that keeps no delivery history: everything finished is swept within a second.
async fn sweeping_app() -> TestApp {
    TestApp::builder()
        .configure(|s| {
            s.outbound.retention_days = 0;
            s.outbound.retention_sweep_secs = 1;
        })
        .spawn()
        .await
}

/// No notification, attempt or event is left.
async fn history_is_gone(app: &TestApp) -> bool {
    app.count_rows("notifications").await == 0
        && app.count_rows("delivery_attempts").await == 0
        && app.count_rows("events").await == 0
}

/// A retention too long to count back from today keeps everything, and the poller, which also
/// sweeps, goes on: a retry after several sweeps is still delivered. (Subtracting such a
/// retention from now overflows; a panic there would take the poller down with it.)
#[tokio::test]
async fn an_endless_retention_keeps_everything_and_retries_go_on() {
    let app = TestApp::builder()
        .configure(|s| {
            s.outbound.retention_days = u64::MAX;
            s.outbound.retention_sweep_secs = 1;
            s.inbound.retention_days = u64::MAX;
            s.inbound.retention_sweep_secs = 1;
        })
        .spawn()
        .await;
    let receiver = Receiver::start().await;
    receiver.script([Answer::Status(500)]);
    subscribe(&app, &receiver.url, &["WB_Send_Sms"], json!({})).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    publish(&app, "WB_Send_Sms", json!({})).await;
    assert_eq!(receiver.wait_for(2, WAIT).await.len(), 2, "the retry was not delivered");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(app.count_rows("notifications").await, 1);
    assert_eq!(app.count_rows("events").await, 1);
}

/// A long history is swept whole, chunk after chunk: more old delivered notifications than two
/// chunks, each with its attempt and its event, written straight into the tables.
#[tokio::test]
async fn a_long_delivery_history_is_swept_in_chunks() {
    let app = sweeping_app().await;
    let db = app.database.connect().await;
    let count = hookbus_store::DELETE_CHUNK * 2 + 17;
    let statements = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => [
            format!(
                "INSERT INTO events (id, event_key, event_name, data, simulated, notifications, occurred_at) \
                 SELECT gen_random_uuid(), 'old-' || i, 'WB_Send_Sms', '{{}}', false, 1, now() - interval '1 day' \
                 FROM generate_series(1, {count}) AS i"
            ),
            "INSERT INTO notifications (id, event_id, subscription_id, event_name, status, attempts, created_at, \
             updated_at) SELECT gen_random_uuid(), id, gen_random_uuid(), event_name, 'Delivered', 1, occurred_at, \
             occurred_at FROM events"
                .to_owned(),
        ],
        _ => [
            format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) \
                 INSERT INTO events (id, event_key, event_name, data, simulated, notifications, occurred_at) \
                 SELECT randomblob(16), 'old-' || i, 'WB_Send_Sms', '{{}}', false, 1, datetime('now', '-1 day') FROM n"
            ),
            "INSERT INTO notifications (id, event_id, subscription_id, event_name, status, attempts, created_at, \
             updated_at) SELECT randomblob(16), id, randomblob(16), event_name, 'Delivered', 1, occurred_at, \
             occurred_at FROM events"
                .to_owned(),
        ],
    };
    for statement in statements {
        db.execute_unprepared(&statement).await.expect("write the history");
    }
    let attempts = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => "gen_random_uuid()",
        _ => "randomblob(16)",
    };
    db.execute_unprepared(&format!(
        "INSERT INTO delivery_attempts (id, notification_id, attempt, attempted_at, duration_ms) \
         SELECT {attempts}, id, 1, created_at, 5 FROM notifications"
    ))
    .await
    .expect("write the attempts");

    let swept = within(Duration::from_secs(10), || history_is_gone(&app)).await;
    assert!(
        swept.is_some(),
        "left: {} notifications, {} attempts, {} events",
        app.count_rows("notifications").await,
        app.count_rows("delivery_attempts").await,
        app.count_rows("events").await
    );
}

/// A graceful stop lets an attempt under way finish and records its outcome.
#[tokio::test]
async fn a_graceful_stop_finishes_deliveries_under_way() {
    let app = TestApp::spawn().await;
    let database = std::sync::Arc::clone(&app.database);
    let receiver = Receiver::start().await;
    receiver.answer(Answer::Slow(Duration::from_millis(700), 200));
    let (id, _) = subscribe(&app, &receiver.url, &["WB_Send_Sms"], json!({})).await;
    publish(&app, "WB_Send_Sms", json!({})).await;
    assert_eq!(receiver.wait_for(1, WAIT).await.len(), 1, "the attempt did not start");
    app.stop().await;

    let after = TestApp::builder().database(database).spawn().await;
    let newest = notifications(&after, &id).await;
    assert_eq!(newest[0]["status"], "Delivered", "{:#}", newest[0]);
    assert_eq!(receiver.count(), 1);
}

/// `secureSsl` (the default) checks the endpoint's certificate; `secureSsl: false` accepts a
/// self-signed one.
#[tokio::test]
async fn secure_ssl_decides_whether_the_certificate_is_checked() {
    let app = TestApp::spawn().await;
    let receiver = crate::tls_receiver::TlsReceiver::start().await;
    let (checked, _) = subscribe(&app, &receiver.url, &["WB_Send_Sms"], json!({"maxAttempts": 1})).await;
    let (unchecked, _) =
        subscribe(&app, &receiver.url, &["WB_Send_Sms"], json!({"maxAttempts": 1, "secureSsl": false})).await;
    publish(&app, "WB_Send_Sms", json!({})).await;
    let refused = settled(&app, &checked, "Expired").await;
    let error = refused["attemptLog"][0]["error"].as_str().unwrap_or_default().to_lowercase();
    assert!(error.contains("certificate"), "{error}");
    settled(&app, &unchecked, "Delivered").await;
    assert_eq!(receiver.count(), 1);
}

/// An endpoint slower than `outbound.timeout_ms` fails the attempt with a timeout. The
/// notification then shows no HTTP status: the timed-out attempt's, not the 500 before it.
#[tokio::test]
async fn a_slow_endpoint_times_out() {
    let app = TestApp::builder().configure(|s| s.outbound.timeout_ms = 300).spawn().await;
    let receiver = Receiver::start().await;
    receiver.script([Answer::Status(500)]);
    receiver.answer(Answer::Slow(Duration::from_secs(2), 200));
    let (id, _) =
        subscribe(&app, &receiver.url, &["WB_Send_Sms"], json!({"maxAttempts": 2, "retryIntervalSeconds": 5})).await;
    publish(&app, "WB_Send_Sms", json!({})).await;
    let expired = settled(&app, &id, "Expired").await;
    assert_eq!(expired["attemptLog"][0]["httpStatus"], 500, "{expired:#}");
    let attempt = &expired["attemptLog"][1];
    assert!(attempt["error"].as_str().is_some_and(|e| e.starts_with("timed out")), "{attempt:#}");
    assert!(attempt["durationMs"].as_i64().is_some_and(|ms| (250..1500).contains(&ms)), "{attempt:#}");
    assert!(expired["lastHttpStatus"].is_null(), "{expired:#}");
    assert_eq!(expired["lastAttemptAt"], attempt["attemptedAt"]);
    assert!(expired["lastError"].as_str().is_some_and(|e| e.starts_with("timed out")), "{expired:#}");
}

/// Ten publishers of one `eventId` at once: one event, one delivery, every answer a success with
/// the same id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_of_one_event_id_store_it_once() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    subscribe(&app, &receiver.url, &["WB_Loan_Opened"], json!({})).await;
    let command = json!({"$type": "PublishEventCommand", "eventName": "WB_Loan_Opened", "eventId": "loan-race",
                         "data": {"loanId": "race"}});
    let answers = futures_util::future::join_all((0..10).map(|_| app.admin(command.clone()))).await;
    for answer in &answers {
        assert_eq!(answer.status, 200, "{:#}", answer.body);
        assert_eq!(answer.data()["eventId"], "loan-race");
    }
    assert_eq!(answers.iter().filter(|a| a.data()["duplicate"] == false).count(), 1);
    receiver.wait_for(1, WAIT).await;
    app.settled().await;
    assert_eq!(receiver.count(), 1);
    assert_eq!(app.count_rows("events").await, 1);
    assert_eq!(app.count_rows("notifications").await, 1);
}
