//! The fixed provider routes: Mono's callback and Remita's payment and collection
//! notifications, over HTTP, with a local fake of Remita's status API.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use actix_web::{App, HttpResponse, HttpServer, web};
use hookbus_providers::Secret;
use serde_json::{Value, json};
use sha2::{Digest, Sha512};

use crate::{
    outbound::subscribe,
    receiver::Receiver,
    support::{Reply, TestApp, TestDatabase, free_port, into_reply, kill_9, native_config, ready, serve, with, within},
};

const MONO: &str = "/api/webhooks/mono/callback";
const REMITA: &str = "/api/webhooks/remita";
const COLLECTION: &str = "/api/webhooks/remita/collection-notification";
const MONO_SECRET: &str = "sec_test_3f9a1c0d7e5b";

/// A sample payload from `examples/providers/`, so that the examples stay true.
fn example(name: &str) -> Value {
    let text = match name {
        "mono-account-updated" => include_str!("../../../../examples/providers/mono-account-updated.json"),
        "mono-direct-debit-payment-successful" => {
            include_str!("../../../../examples/providers/mono-direct-debit-payment-successful.json")
        }
        "mono-mandate-approved" => include_str!("../../../../examples/providers/mono-mandate-approved.json"),
        "remita-payment-notification" => {
            include_str!("../../../../examples/providers/remita-payment-notification.json")
        }
        "remita-collection-notification" => {
            include_str!("../../../../examples/providers/remita-collection-notification.json")
        }
        other => panic!("no example {other}"),
    };
    serde_json::from_str(text).expect("examples are JSON")
}

async fn mono_app() -> TestApp {
    TestApp::builder().configure(|s| s.providers.mono.secret = Secret::new(MONO_SECRET)).spawn().await
}

/// A server whose Remita routes take requests from 127.0.0.1, as the tests send them.
async fn remita_app() -> TestApp {
    TestApp::builder().configure(|s| s.providers.remita.allowable_ips = "127.0.0.1".into()).spawn().await
}

async fn mono(app: &TestApp, body: Value) -> Reply {
    app.call("POST", MONO, Some(body), &[("mono-webhook-secret", MONO_SECRET)]).await
}

/// Posts raw bytes with a content type and headers.
async fn post_bytes(app: &TestApp, path: &str, body: impl Into<reqwest::Body>, headers: &[(&str, &str)]) -> Reply {
    let mut request = app.client.post(format!("{}{path}", app.address)).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    into_reply(request.body(body).send().await.expect("the server answers")).await
}

/// The inbound log's entries under `key`, once there are `count` of them (refused requests are
/// logged by the batch writer, a moment after they are answered).
async fn logged(app: &TestApp, key: &str, count: usize) -> Vec<Value> {
    let list = || async {
        let reply = app.admin(json!({"$type": "GetInboundEventListQuery", "key": key, "pageSize": 100})).await;
        reply.assert_ok("Inbound events retrieved successfully")["items"].as_array().cloned().unwrap_or_default()
    };
    within(Duration::from_secs(3), || async { list().await.len() >= count }).await;
    let events = list().await;
    assert_eq!(events.len(), count, "log entries under {key}: {events:#?}");
    events
}

/// Notifications taken (claimed or published) so far, by any route.
async fn taken(app: &TestApp) -> i64 {
    app.count_rows("provider_notifications").await
}

/// Outbound events published so far.
async fn published(app: &TestApp) -> i64 {
    app.count_rows("events").await
}

/// What `receiver` got, once it got `count` deliveries (and a moment for any extra to arrive).
async fn deliveries(receiver: &Receiver, count: usize) -> Vec<Value> {
    receiver.wait_for(count + 1, Duration::from_millis(1500)).await.into_iter().map(|r| r.body).collect()
}

fn payment(rrr: &str) -> Value {
    json!({"rrr": rrr, "channnel": "BRANCH", "amount": "1000.00", "payerName": "Test Payer"})
}

#[tokio::test]
async fn mono_answers_503_until_a_secret_is_configured() {
    let app = TestApp::spawn().await;
    let reply = mono(&app, example("mono-account-updated")).await;
    reply.assert_error(503, "route not configured");
    assert!(reply.has_error("HOOKBUS_MONO_SECRET"), "{:?}", reply.errors());
    let entry = &logged(&app, "mono/callback", 1).await[0];
    assert_eq!(entry["httpStatus"], json!(503));
    assert_eq!((taken(&app).await, published(&app).await), (0, 0));
}

#[tokio::test]
async fn a_mono_event_is_accepted_once_and_its_repeats_are_acknowledged() {
    let app = mono_app().await;
    let receiver = Receiver::start().await;
    let names = ["mono.events.account_updated", "direct_debit.payment_successful", "events.mandates.approved"];
    subscribe(&app, &receiver.url, &names, json!({})).await;

    // Without event_id: the same event name, account and body is a repeat.
    let first = mono(&app, example("mono-account-updated")).await;
    let data = first.assert_ok("Mono event received");
    assert_eq!(data["event"], json!("mono.events.account_updated"));
    assert_eq!(data["outcome"], json!("accepted"));
    assert!(data["eventId"].is_string(), "{data:#}");
    let again = mono(&app, example("mono-account-updated")).await;
    let repeat = again.assert_ok("Mono event already received");
    assert_eq!(repeat["outcome"], json!("duplicate"));
    // The same account with a new balance is a new event.
    let mut changed = example("mono-account-updated");
    changed["data"]["account"]["balance"] = json!(17000000);
    assert_eq!(mono(&app, changed).await.assert_ok("Mono event received")["outcome"], json!("accepted"));

    // With event_id: that decides, whatever else changed.
    let payment = example("mono-direct-debit-payment-successful");
    mono(&app, payment.clone()).await.assert_ok("Mono event received");
    let mut resent = payment;
    resent["timestamp"] = json!("2026-11-22T10:47:07.118Z");
    mono(&app, resent).await.assert_ok("Mono event already received");
    mono(&app, example("mono-mandate-approved")).await.assert_ok("Mono event received");
    assert_eq!(taken(&app).await, 4);

    // Each accepted event is published once, under Mono's name, with Mono's data.
    assert_eq!(published(&app).await, 4);
    let delivered = deliveries(&receiver, 4).await;
    assert_eq!(delivered.len(), 4, "{delivered:#?}");
    let payment = delivered.iter().find(|d| d["eventName"] == json!("direct_debit.payment_successful"));
    let payment = payment.expect("the payment event");
    assert_eq!(payment["data"]["id"], json!("txd_k2v8n4q1w7e3r5t9"));
    assert_eq!(payment["eventId"], json!("mono:event_id:evt_6f1d2c8a0b3e4f5a9c7d"));
    assert!(delivered.iter().any(|d| d["eventId"] == data["eventId"]));

    // Every request is logged; repeats as duplicates of the first.
    let entries = logged(&app, "mono/callback", 6).await;
    let duplicates: Vec<&Value> = entries.iter().filter(|e| e["status"] == json!("Duplicate")).collect();
    assert_eq!(duplicates.len(), 2);
    let first_id = entries.iter().find(|e| e["data"]["eventId"] == data["eventId"]).map(|e| e["id"].clone());
    assert_eq!(Some(repeat["duplicateOf"].clone()), first_id);
    assert!(duplicates.iter().any(|d| Some(d["duplicateOf"].clone()) == first_id));
}

/// The deduplication records go with the inbound log's retention (here none, swept every
/// second): once swept, a provider's resend of the notification is taken as new.
#[tokio::test]
async fn deduplication_records_are_swept_with_the_inbound_retention() {
    let app = TestApp::builder()
        .configure(|s| {
            s.providers.mono.secret = Secret::new(MONO_SECRET);
            s.inbound.retention_days = 0;
            s.inbound.retention_sweep_secs = 1;
        })
        .spawn()
        .await;
    let first = mono(&app, example("mono-account-updated")).await;
    assert_eq!(first.assert_ok("Mono event received")["outcome"], json!("accepted"));
    let swept = within(Duration::from_secs(5), || async { taken(&app).await == 0 }).await;
    assert!(swept.is_some(), "the deduplication record was not swept");
    let resent = mono(&app, example("mono-account-updated")).await;
    assert_eq!(resent.assert_ok("Mono event received")["outcome"], json!("accepted"));
    assert_eq!(taken(&app).await, 1);
}

#[tokio::test]
async fn a_wrong_or_missing_mono_secret_is_401_even_for_a_known_event() {
    let app = mono_app().await;
    mono(&app, example("mono-mandate-approved")).await.assert_ok("Mono event received");
    for headers in [vec![("mono-webhook-secret", "sec_test_wrong")], vec![("mono-webhook-secret", "")], vec![]] {
        let reply = app.call("POST", MONO, Some(example("mono-mandate-approved")), &headers).await;
        reply.assert_error(401, "Unauthorized");
    }
    // Verification comes before the body is looked at.
    post_bytes(&app, MONO, "{not json", &[("mono-webhook-secret", "nope")]).await.assert_error(401, "Unauthorized");
    assert_eq!(taken(&app).await, 1);
    logged(&app, "mono/callback", 5).await;
}

#[tokio::test]
async fn malformed_mono_bodies_are_refused_and_publish_nothing() {
    let app = mono_app().await;
    let secret = [("mono-webhook-secret", MONO_SECRET)];
    let not_json = post_bytes(&app, MONO, "{\"event\": ", &secret).await;
    not_json.assert_error(400, "Invalid request body");

    let cases = [
        (json!([{"event": "mono.events.account_updated", "data": {}}]), "body: must be a JSON object, not an array"),
        (json!({"data": {"id": "x"}}), "event is required"),
        (json!({"event": "mono.events.account_updated"}), "data is required"),
        (json!({"event": 42, "data": {}}), "event must be a string, not a number"),
        (json!({"event": "direct_debit.payment_successful", "data": "paid"}), "data must be an object, not a string"),
        (json!({"event": "x", "data": {}, "event_id": ["e1"]}), "event_id must be a string or a number"),
    ];
    for (body, problem) in cases {
        let reply = mono(&app, body).await;
        reply.assert_error(422, "Validation failed");
        assert!(reply.has_error(problem), "expected '{problem}' in {:?}", reply.errors());
    }
    assert_eq!((taken(&app).await, published(&app).await), (0, 0));
    let entries = logged(&app, "mono/callback", 7).await;
    assert!(entries.iter().all(|e| e["status"] == json!("Failed")));
}

/// Mono resends for days what is not acknowledged, so an event whose name the catalog does not
/// know is acknowledged as ignored and kept in the log; once the name is registered, later ones
/// are published, and replaying the logged request publishes the first (once).
#[tokio::test]
async fn an_unknown_mono_event_is_ignored_then_published_once_registered_and_replayed() {
    let app = mono_app().await;
    let first = json!({"event": "mono.events.made_up", "event_id": "evt-1", "data": {"id": "acc-1"}});
    let reply = mono(&app, first).await;
    let ignored = reply.assert_ok("Mono event ignored");
    assert_eq!(ignored["outcome"], json!("ignored"));
    assert!(ignored["reason"].as_str().unwrap_or_default().contains("RegisterEventTypeCommand"), "{ignored:#}");
    assert_eq!((taken(&app).await, published(&app).await), (0, 0));
    let entries = logged(&app, "mono/callback", 1).await;
    assert_eq!(entries[0]["status"], json!("Succeeded"));
    let original = entries[0]["id"].clone();

    app.admin(json!({"$type": "RegisterEventTypeCommand", "name": "mono.events.made_up",
                     "description": "Mono: an event hookbus learnt of later"}))
        .await
        .assert_ok("Event type registered successfully");
    let later = mono(&app, json!({"event": "mono.events.made_up", "event_id": "evt-2", "data": {"id": "acc-2"}})).await;
    assert_eq!(later.assert_ok("Mono event received")["outcome"], json!("accepted"));
    assert_eq!(published(&app).await, 1);

    let replayed = app.admin(json!({"$type": "ReplayInboundEventCommand", "id": original})).await;
    let entry = replayed.assert_ok("Inbound event replayed");
    assert_eq!(entry["replayOf"], original);
    assert_eq!(entry["status"], json!("Succeeded"));
    assert_eq!(entry["data"]["outcome"], json!("accepted"), "{entry:#}");
    assert_eq!(published(&app).await, 2);
    // A second replay finds it published: a duplicate, not a second event.
    let again = app.admin(json!({"$type": "ReplayInboundEventCommand", "id": original})).await;
    assert_eq!(again.assert_ok("Inbound event replayed")["data"]["outcome"], json!("duplicate"));
    assert_eq!(published(&app).await, 2);
}

#[tokio::test]
async fn secret_headers_are_redacted_in_the_log() {
    let app = mono_app().await;
    let headers = [("mono-webhook-secret", MONO_SECRET), ("x-request-source", "mono-prod")];
    app.call("POST", MONO, Some(example("mono-account-updated")), &headers).await.assert_ok("Mono event received");
    let wrong = [("mono-webhook-secret", "sec_test_guess_7781"), ("authorization", "Bearer stolen-token")];
    app.call("POST", MONO, Some(example("mono-account-updated")), &wrong).await.assert_error(401, "Unauthorized");

    let entries = logged(&app, "mono/callback", 2).await;
    for entry in &entries {
        let one = app.inbound_event(&entry["id"]).await;
        let event = one.assert_ok("Inbound event retrieved successfully");
        assert_eq!(event["configId"], json!(0));
        assert_eq!(event["request"]["headers"]["mono-webhook-secret"], json!("[redacted]"));
        assert_eq!(event["request"]["path"], json!(MONO));
    }
    let accepted = entries.iter().find(|e| e["status"] == json!("Succeeded")).expect("the accepted request");
    assert_eq!(accepted["request"]["headers"]["x-request-source"], json!("mono-prod"));
    assert_eq!(accepted["request"]["body"]["event"], json!("mono.events.account_updated"));

    use sea_orm::{ConnectionTrait, Statement};
    let db = app.database.connect().await;
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), "SELECT * FROM inbound_events"))
        .await
        .expect("select");
    let dump = format!("{rows:?}");
    for secret in [MONO_SECRET, "sec_test_guess_7781", "stolen-token"] {
        assert!(!dump.contains(secret), "{secret} reached the database");
    }
}

#[tokio::test]
async fn the_fixed_routes_win_over_the_router_and_take_only_post() {
    let app = mono_app().await;
    for path in [MONO, REMITA, COLLECTION] {
        let reply = app.call("GET", path, None, &[]).await;
        reply.assert_error(405, "Method not allowed");
        assert_eq!(reply.headers.get("allow").and_then(|v| v.to_str().ok()), Some("POST"));
    }
    let reserved = app.admin(with(native_config("remita"), json!({}))).await;
    reserved.assert_error(422, "Validation failed");
}

#[tokio::test]
async fn remita_payments_are_accepted_per_item_and_deduplicated_by_rrr() {
    let app = remita_app().await;
    let receiver = Receiver::start().await;
    subscribe(&app, &receiver.url, &["remita.payment.notification"], json!({})).await;
    let reply = app.call("POST", REMITA, Some(example("remita-payment-notification")), &[]).await;
    let data = reply.assert_ok("Remita payment notifications processed");
    assert_eq!(data["received"], json!(2));
    assert_eq!(data["accepted"], json!(2));
    assert_eq!(data["items"][0]["rrr"], json!("110002071256"));
    assert_eq!(data["items"][0]["outcome"], json!("accepted"));
    assert_eq!(data["items"][1]["outcome"], json!("accepted"));

    // One old, one new, and the new one twice in the same request.
    let body = json!([payment("110002071256"), payment("450001239876"), payment("450001239876")]);
    let reply = app.call("POST", REMITA, Some(body), &[]).await;
    let data = reply.assert_ok("Remita payment notifications processed");
    let outcomes: Vec<&Value> = data["items"].as_array().into_iter().flatten().map(|i| &i["outcome"]).collect();
    assert_eq!(outcomes, [&json!("duplicate"), &json!("accepted"), &json!("duplicate")]);
    assert_eq!((data["accepted"].clone(), data["duplicates"].clone()), (json!(1), json!(2)));
    assert_eq!(taken(&app).await, 3);

    // The whole first request again: a duplicate request, logged as one.
    let again = app.call("POST", REMITA, Some(example("remita-payment-notification")), &[]).await;
    assert_eq!(again.assert_ok("Remita payment notifications processed")["duplicates"], json!(2));
    let entries = logged(&app, "remita", 3).await;
    assert_eq!(entries[0]["status"], json!("Duplicate"));
    assert_eq!(entries[1]["status"], json!("Succeeded"));

    // One event per accepted payment, with `channel` beside Remita's `channnel` and every field kept.
    assert_eq!(published(&app).await, 3);
    let delivered = deliveries(&receiver, 3).await;
    assert_eq!(delivered.len(), 3, "{delivered:#?}");
    let second = delivered.iter().find(|d| d["data"]["rrr"] == json!("290007781423")).expect("the second payment");
    assert_eq!(second["eventName"], json!("remita.payment.notification"));
    assert_eq!(second["eventId"], json!("remita.payment:290007781423"));
    assert_eq!(second["data"]["channel"], json!("INTERNET"));
    assert_eq!(second["data"]["channnel"], json!("INTERNET"));
    assert_eq!(second["data"]["narration"], json!("School fees, first term"));
}

#[tokio::test]
async fn malformed_remita_payments_are_refused_whole_and_publish_nothing() {
    let app = remita_app().await;
    post_bytes(&app, REMITA, "[{\"rrr\": \"1\"", &[]).await.assert_error(400, "Invalid request body");

    let cases = [
        (json!(payment("110002071256")), "body: must be a JSON array of objects, not an object"),
        (json!([]), "body: at least one notification is required"),
        (json!([payment("1"), {"amount": "5.00"}]), "[1].rrr is required"),
        (json!([payment("1"), "110002071257"]), "[1]: must be an object, not a string"),
        (json!([{"rrr": "1", "amount": true}]), "[0].amount must be a number, not a boolean"),
        (json!([{"rrr": "1", "amount": "ten"}]), "[0].amount must be a decimal number"),
        (json!([{"rrr": {"id": 1}, "amount": 1}]), "[0].rrr must be a string or a number, not an object"),
        (json!([with(payment("1"), json!({"payerName": ["A", "B"]}))]), "[0].payerName must be a string or a number"),
        (json!([{"rrr": "../../x", "amount": 1}]), "[0].rrr must be at most 64 letters, digits or '-'"),
    ];
    for (body, problem) in cases {
        let reply = app.call("POST", REMITA, Some(body), &[]).await;
        reply.assert_error(422, "Validation failed");
        assert!(reply.has_error(problem), "expected '{problem}' in {:?}", reply.errors());
    }

    // 10,000 small items are within the byte limit (1 MiB) but over providers.max_items.
    let many = Value::Array((0..10_000).map(|i| json!({"rrr": i, "amount": 1})).collect());
    let reply = app.call("POST", REMITA, Some(many), &[]).await;
    reply.assert_error(413, "Payload too large");
    assert!(reply.has_error("at most 1000 notifications per request, got 10000"), "{:?}", reply.errors());
    // Fewer, larger items are over the byte limit.
    let padded = with(payment("1"), json!({"narration": "x".repeat(4096)}));
    let huge = Value::Array(vec![padded; 300]);
    let reply = app.call("POST", REMITA, Some(huge), &[]).await;
    reply.assert_error(413, "Payload too large");
    assert!(reply.has_error("larger than 1048576 bytes"), "{:?}", reply.errors());

    assert_eq!((taken(&app).await, published(&app).await), (0, 0));
    logged(&app, "remita", 12).await;
}

#[tokio::test]
async fn the_remita_allow_list_uses_the_client_ip() {
    let app = TestApp::builder()
        .trusted_proxies(&["127.0.0.1"])
        .configure(|s| s.providers.remita.allowable_ips = "203.0.113.0/24, 198.51.100.7".into())
        .spawn()
        .await;
    let body = json!([payment("110002071256")]);
    let refused = app.call("POST", REMITA, Some(body.clone()), &[]).await;
    refused.assert_error(403, "Forbidden");
    assert!(refused.has_error("127.0.0.1"), "{:?}", refused.errors());
    let outside = app.call(
        "POST",
        COLLECTION,
        Some(example("remita-collection-notification")),
        &[("x-forwarded-for", "198.51.100.8")],
    );
    outside.await.assert_error(403, "Forbidden");
    assert_eq!(taken(&app).await, 0);

    let inside = app.call("POST", REMITA, Some(body.clone()), &[("x-forwarded-for", "203.0.113.20")]).await;
    inside.assert_ok("Remita payment notifications processed");
    // A repeat from outside is refused before it is recognised as a repeat.
    app.call("POST", REMITA, Some(body), &[("x-forwarded-for", "192.0.2.1")]).await.assert_error(403, "Forbidden");
    let entries = logged(&app, "remita", 3).await;
    assert_eq!(entries.iter().filter(|e| e["httpStatus"] == json!(403)).count(), 2);
}

/// A fake of Remita's status API on 127.0.0.1: answers each RRR with the status in `statuses`
/// (`"404"`: an HTTP 404), and records the path of every call.
struct FakeRemita {
    base_url: String,
    calls: Arc<Mutex<Vec<String>>>,
    _server: actix_web::dev::ServerHandle,
}

impl FakeRemita {
    async fn start(statuses: &[(&str, &str)]) -> Self {
        let statuses: Arc<BTreeMap<String, String>> =
            Arc::new(statuses.iter().map(|(rrr, status)| ((*rrr).to_owned(), (*status).to_owned())).collect());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&calls);
        let server = HttpServer::new(move || {
            let statuses = Arc::clone(&statuses);
            let recorded = Arc::clone(&recorded);
            App::new().route(
                "/remita/ecomm/{merchant}/{rrr}/{hash}/status.reg",
                web::get().to(move |request: actix_web::HttpRequest, path: web::Path<(String, String, String)>| {
                    let (statuses, recorded) = (Arc::clone(&statuses), Arc::clone(&recorded));
                    async move {
                        recorded.lock().expect("lock").push(request.path().to_owned());
                        let (_, rrr, _) = path.into_inner();
                        match statuses.get(&rrr).map(String::as_str) {
                            Some("404") | None => HttpResponse::NotFound().finish(),
                            Some(status) => HttpResponse::Ok().json(json!({
                                "RRR": rrr, "status": status, "amount": 1000.0, "orderId": "INV-1",
                                "message": if status == "01" || status == "00" { "Approved" } else { "Transaction Pending" },
                                "transactiontime": "2026-11-22 11:13:40 AM",
                            })),
                        }
                    }
                }),
            )
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind the fake");
        let base_url = format!("http://{}", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self { base_url, calls, _server: handle }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("lock").clone()
    }
}

/// A server that confirms payments with the status API at `base_url`.
async fn verifying_app(base_url: String, database: Option<Arc<TestDatabase>>) -> TestApp {
    let mut builder = TestApp::builder().configure(move |s| {
        let remita = &mut s.providers.remita;
        remita.allowable_ips = "127.0.0.1".into();
        remita.merchant_id = "2547916".into();
        remita.api_key = Secret::new("1946");
        remita.base_url = base_url;
        remita.status_timeout_ms = 2000;
    });
    if let Some(database) = database {
        builder = builder.database(database);
    }
    builder.spawn().await
}

#[tokio::test]
async fn payments_are_confirmed_with_the_status_api_when_configured() {
    let fake = FakeRemita::start(&[("110002071256", "01"), ("290007781423", "00"), ("450001239876", "021")]).await;
    let app = verifying_app(fake.base_url.clone(), None).await;

    let body = json!([payment("110002071256"), payment("290007781423"), payment("450001239876")]);
    let reply = app.call("POST", REMITA, Some(body), &[]).await;
    let data = reply.assert_ok("Remita payment notifications processed");
    assert_eq!((data["accepted"].clone(), data["notPaid"].clone()), (json!(2), json!(1)));
    assert_eq!(data["items"][2]["outcome"], json!("notPaid"));
    assert_eq!(data["items"][2]["status"], json!("021"));
    assert_eq!(data["items"][2]["reason"], json!("Transaction Pending"));
    assert_eq!(taken(&app).await, 2, "an unpaid notification is not taken");
    assert_eq!(published(&app).await, 2);

    // The call carries the merchant id and SHA-512(rrr + apiKey + merchantId), lower-case hex.
    let hash = hex(&Sha512::digest(b"11000207125619462547916"));
    let expected = format!("/remita/ecomm/2547916/110002071256/{hash}/status.reg");
    assert!(fake.calls().contains(&expected), "{:?}", fake.calls());

    // Known payments are duplicates without another call; the unpaid one is asked about again.
    let before = fake.calls().len();
    let body = json!([payment("110002071256"), payment("450001239876")]);
    let data = app.call("POST", REMITA, Some(body), &[]).await;
    let data = data.assert_ok("Remita payment notifications processed");
    assert_eq!((data["duplicates"].clone(), data["notPaid"].clone()), (json!(1), json!(1)));
    assert_eq!(fake.calls().len(), before + 1);
}

/// Remita signs nothing, so what its status API confirms is published as Remita states it: a
/// payer who knows an RRR cannot publish altered references first.
#[tokio::test]
async fn a_confirmed_payment_is_published_with_remitas_own_fields() {
    let fake = FakeRemita::start(&[("110002071256", "01")]).await;
    let app = verifying_app(fake.base_url.clone(), None).await;
    let receiver = Receiver::start().await;
    subscribe(&app, &receiver.url, &["remita.payment.notification"], json!({})).await;
    let forged = with(payment("110002071256"), json!({"orderRef": "FORGED-REF", "amount": "1000"}));
    let reply = app.call("POST", REMITA, Some(json!([forged])), &[]).await;
    assert_eq!(reply.assert_ok("Remita payment notifications processed")["accepted"], json!(1));
    let delivered = deliveries(&receiver, 1).await;
    let data = &delivered[0]["data"];
    // The fake answers orderId INV-1, amount 1000.0, status 01 "Approved".
    assert_eq!(data["orderRef"], json!("INV-1"), "{data:#}");
    assert_eq!(data["amount"], json!(1000.0), "{data:#}");
    assert_eq!(data["rrr"], json!("110002071256"));
    assert_eq!((data["status"].clone(), data["statusMessage"].clone()), (json!("01"), json!("Approved")));
    assert_eq!(data["transactiondate"], json!("2026-11-22 11:13:40 AM"));
    assert_eq!(data["confirmedBy"], json!("remita-status-api"));
    // What Remita does not state stays as sent.
    assert_eq!(data["payerName"], json!("Test Payer"));
}

/// Remita's answer gives the amount paid (1000.0 from the fake): a notification claiming another
/// amount for a paid RRR is not taken, and the same RRR with the amount paid is.
#[tokio::test]
async fn a_payment_whose_amount_differs_from_remitas_is_not_taken() {
    let fake = FakeRemita::start(&[("110002071256", "00")]).await;
    let app = verifying_app(fake.base_url.clone(), None).await;

    let inflated = with(payment("110002071256"), json!({"amount": "5000.00"}));
    let reply = app.call("POST", REMITA, Some(json!([inflated])), &[]).await;
    let data = reply.assert_ok("Remita payment notifications processed");
    assert_eq!((data["accepted"].clone(), data["amountMismatches"].clone()), (json!(0), json!(1)));
    assert_eq!(data["items"][0]["outcome"], json!("amountMismatch"));
    assert_eq!(
        (data["items"][0]["amount"].clone(), data["items"][0]["paidAmount"].clone()),
        (json!("5000.00"), json!("1000.0"))
    );
    assert_eq!((taken(&app).await, published(&app).await), (0, 0));

    // The amount paid, written another way, is the same amount.
    let right = with(payment("110002071256"), json!({"amount": 1000}));
    let reply = app.call("POST", REMITA, Some(json!([right])), &[]).await;
    let data = reply.assert_ok("Remita payment notifications processed");
    assert_eq!((data["accepted"].clone(), data["amountMismatches"].clone()), (json!(1), json!(0)));
    assert_eq!((taken(&app).await, published(&app).await), (1, 1));
}

#[tokio::test]
async fn an_unreachable_status_api_is_a_503_and_the_retry_is_taken() {
    let app = verifying_app(format!("http://127.0.0.1:{}", free_port()), None).await;
    let body = json!([payment("110002071256")]);
    let reply = app.call("POST", REMITA, Some(body.clone()), &[]).await;
    reply.assert_error(503, "Payment status unavailable");
    assert!(reply.has_error("[0] rrr 110002071256: Payment status unavailable"), "{:?}", reply.errors());
    assert_eq!((taken(&app).await, published(&app).await), (0, 0));

    // A status API that answers 404 is no answer either.
    let fake = FakeRemita::start(&[("110002071256", "404")]).await;
    let app = verifying_app(fake.base_url.clone(), Some(Arc::clone(&app.database))).await;
    app.call("POST", REMITA, Some(body.clone()), &[]).await.assert_error(503, "Payment status unavailable");

    // Once Remita answers, the same notification is accepted.
    let fake = FakeRemita::start(&[("110002071256", "00")]).await;
    let app = verifying_app(fake.base_url.clone(), Some(Arc::clone(&app.database))).await;
    let data = app.call("POST", REMITA, Some(body), &[]).await;
    assert_eq!(data.assert_ok("Remita payment notifications processed")["accepted"], json!(1));
    assert_eq!((taken(&app).await, published(&app).await), (1, 1));
}

#[tokio::test]
async fn collection_notifications_take_an_object_or_an_array_and_dedupe_by_reference() {
    let app = remita_app().await;
    let receiver = Receiver::start().await;
    subscribe(&app, &receiver.url, &["remita.collection.notification"], json!({})).await;
    let one = app.call("POST", COLLECTION, Some(example("remita-collection-notification")), &[]).await;
    let data = one.assert_ok("Remita collection notifications processed");
    assert_eq!(data["items"][0]["transactionRef"], json!("RDD-2026112210551803"));
    assert_eq!(data["items"][0]["outcome"], json!("accepted"));

    let many = json!([
        example("remita-collection-notification"),
        {"requestId": "1732273999001", "mandateId": 290084556612_u64, "amount": 30000, "status": "FAILED", "reason": "Insufficient funds"},
        {"rrr": "330008812777", "mandateId": "290084556612", "amount": "30000.00", "status": "SUCCESSFUL"},
    ]);
    let reply = app.call("POST", COLLECTION, Some(many), &[]).await;
    let data = reply.assert_ok("Remita collection notifications processed");
    let outcomes: Vec<&Value> = data["items"].as_array().into_iter().flatten().map(|i| &i["outcome"]).collect();
    assert_eq!(outcomes, [&json!("duplicate"), &json!("accepted"), &json!("accepted")]);
    assert_eq!(data["items"][1]["requestId"], json!("1732273999001"));
    assert_eq!(taken(&app).await, 3);

    let cases = [
        (
            json!({"mandateId": "M1", "amount": 1, "status": "SUCCESSFUL"}),
            "transactionRef, requestId or rrr is required",
        ),
        (json!({"rrr": "1", "amount": 1, "status": "SUCCESSFUL"}), "mandateId is required"),
        (json!([{"rrr": "1", "mandateId": "M1", "amount": 1, "status": 0}]), "[0].status must be a string"),
        (json!([{"rrr": "1", "mandateId": "M1", "status": "SUCCESSFUL"}]), "[0].amount is required"),
        (json!([]), "body: at least one notification is required"),
        (json!("SUCCESSFUL"), "body: must be a JSON object or an array of objects, not a string"),
    ];
    for (body, problem) in cases {
        let reply = app.call("POST", COLLECTION, Some(body), &[]).await;
        reply.assert_error(422, "Validation failed");
        assert!(reply.has_error(problem), "expected '{problem}' in {:?}", reply.errors());
    }
    post_bytes(&app, COLLECTION, "status=SUCCESSFUL", &[]).await.assert_error(400, "Invalid request body");
    let many = Value::Array(
        (0..10_000).map(|i| json!({"rrr": i, "mandateId": 1, "amount": 1, "status": "SUCCESSFUL"})).collect(),
    );
    let refused = app.call("POST", COLLECTION, Some(many), &[]).await;
    refused.assert_error(413, "Payload too large");
    assert_eq!((taken(&app).await, published(&app).await), (3, 3));
    logged(&app, "remita/collection-notification", 10).await;
    let delivered = deliveries(&receiver, 3).await;
    assert_eq!(delivered.len(), 3, "{delivered:#?}");
    let failed = delivered.iter().find(|d| d["data"]["status"] == json!("FAILED")).expect("the failed debit");
    assert_eq!(failed["eventName"], json!("remita.collection.notification"));
    assert_eq!(failed["data"]["reason"], json!("Insufficient funds"));
}

#[tokio::test]
async fn one_notification_sent_to_two_instances_at_once_is_taken_once() {
    let first = mono_app().await;
    let second = TestApp::builder()
        .database(Arc::clone(&first.database))
        .configure(|s| s.providers.mono.secret = Secret::new(MONO_SECRET))
        .spawn()
        .await;
    for round in 0..5 {
        let mut body = example("mono-direct-debit-payment-successful");
        body["event_id"] = json!(format!("evt_race_{round}"));
        let (a, b) = tokio::join!(mono(&first, body.clone()), mono(&second, body));
        let outcomes = [a.data()["outcome"].clone(), b.data()["outcome"].clone()];
        assert!(
            outcomes.contains(&json!("accepted"))
                && (outcomes.contains(&json!("duplicate")) || [a.status, b.status].contains(&409)),
            "round {round}: {:#} / {:#}",
            a.body,
            b.body
        );
    }
    assert_eq!((taken(&first).await, published(&first).await), (5, 5));
}

#[tokio::test]
async fn accepted_notifications_are_forwarded_to_a_router_configuration() {
    let app = TestApp::builder()
        .configure(|s| {
            s.providers.mono.secret = Secret::new(MONO_SECRET);
            s.providers.mono.forward_to_key = "mono-extra".into();
            s.providers.remita.forward_to_key = "remita-extra".into();
            s.providers.remita.allowable_ips = "127.0.0.1".into();
        })
        .spawn()
        .await;
    let script = r#"#{ got: body, secret: headers["mono-webhook-secret"] ?? "none", key: request.key }"#;
    for key in ["mono-extra", "remita-extra"] {
        let config =
            with(native_config(key), json!({"commandName": null, "executionType": 2, "executionCode": script}));
        app.admin(config).await.assert_ok("Webhook configuration created successfully");
    }

    let reply = mono(&app, example("mono-mandate-approved")).await;
    let forwarded = &reply.assert_ok("Mono event received")["forwarded"];
    assert_eq!(forwarded["status"], json!(200));
    assert_eq!(forwarded["data"]["got"]["event"], json!("events.mandates.approved"));
    assert_eq!(forwarded["data"]["secret"], json!("[redacted]"));
    assert_eq!(forwarded["data"]["key"], json!("mono-extra"));
    // A repeat is not forwarded again.
    let repeat = mono(&app, example("mono-mandate-approved")).await;
    assert!(repeat.assert_ok("Mono event already received").get("forwarded").is_none());

    // Only the accepted payments go on.
    app.call("POST", REMITA, Some(json!([payment("110002071256")])), &[]).await;
    let body = json!([payment("110002071256"), payment("290007781423")]);
    let reply = app.call("POST", REMITA, Some(body), &[]).await;
    let forwarded = &reply.assert_ok("Remita payment notifications processed")["forwarded"];
    assert_eq!(forwarded["data"]["got"], json!([payment("290007781423")]));
    // The forwarded requests are in the log under their configuration.
    logged(&app, "remita-extra", 2).await;
}

/// The operators' fixed names reach the routes, secrets and ids as written (`0123` stays text).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixed_environment_names_configure_the_routes() {
    let fake = FakeRemita::start(&[("110002071256", "01")]).await;
    let database = TestDatabase::create().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let env = [
        ("HOOKBUS_MONO_SECRET", "0123"),
        ("HOOKBUS_REMITA_MERCHANT_ID", "0042"),
        ("HOOKBUS_REMITA_API_KEY", "007"),
        ("HOOKBUS_REMITA_BASE_URL", fake.base_url.as_str()),
        ("HOOKBUS_TRUSTED_PROXIES", "127.0.0.1"),
        ("HOOKBUS_PROVIDERS__REMITA__ALLOWABLE_IPS", "203.0.113.0/24"),
    ];
    let mut server = serve(&database.url, port, &env);
    let client = reqwest::Client::new();
    assert!(within(Duration::from_secs(20), || ready(&client, &base)).await.is_some(), "the server did not start");

    let post = |path: &str, body: Value, header: (&'static str, &'static str)| {
        client.post(format!("{base}{path}")).header(header.0, header.1).json(&body).send()
    };
    let mono = post(MONO, example("mono-mandate-approved"), ("mono-webhook-secret", "0123")).await;
    assert_eq!(into_reply(mono.expect("answer")).await.assert_ok("Mono event received")["outcome"], json!("accepted"));
    let remita = post(REMITA, json!([payment("110002071256")]), ("x-forwarded-for", "203.0.113.9")).await;
    let remita = into_reply(remita.expect("answer")).await;
    assert_eq!(remita.assert_ok("Remita payment notifications processed")["accepted"], json!(1));
    let hash = hex(&Sha512::digest(b"1100020712560070042"));
    assert_eq!(fake.calls(), [format!("/remita/ecomm/0042/110002071256/{hash}/status.reg")]);
    kill_9(&mut server);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
