//! The security model over HTTP: delegated authority through routes and processes, providers that
//! verify before they read, owner-bound publishing, slow clients, replay as a write, private
//! repeats, scripts held to their deadline, and the hardening of secrets and addresses.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    outbound::subscribe,
    receiver::Receiver,
    support::{ADMIN_TOKEN, TestApp, TestDatabase, free_port, hookbus, native_config, with},
};

const PARTNER: &str = "6f1c2a4e-8d3b-4c5a-9e7f-0a1b2c3d4e5f";
const OTHER_PARTNER: &str = "0b6e4f2a-1c3d-4e5f-8a9b-7c6d5e4f3a2b";
const WAIT: Duration = Duration::from_secs(10);

/// A token bound to `partner` with `permissions`.
async fn partner_token(app: &TestApp, partner: &str, permissions: &[&str]) -> String {
    let reply = app
        .admin(json!({"$type": "CreateApiTokenCommand", "name": "partner", "partnerId": partner,
                      "permissions": permissions}))
        .await;
    reply.assert_ok("API token created successfully")["token"].as_str().expect("token").to_owned()
}

/// A subscription of `partner` to WB_Loan_Opened at `url`, made by the admin; its id.
async fn subscription_of(app: &TestApp, partner: &str, url: &str) -> String {
    let reply = app
        .admin(json!({"$type": "CreateWebhookSubscriptionCommand", "partnerId": partner,
                      "webhookUri": url, "events": ["WB_Loan_Opened"],
                      "headers": {"x-partner-auth": [format!("secret-of-{partner}")]}}))
        .await;
    reply.assert_ok("Webhook subscription created successfully")["id"].as_str().expect("id").to_owned()
}

fn definition(name: &str, steps: Value) -> Value {
    json!({"$type": "CreateProcessDefinitionCommand", "name": name, "steps": steps})
}

fn route(key: &str, execution: Value) -> Value {
    with(with(native_config(key), json!({"commandName": null})), execution)
}

/// The inbound log's entries under `key`, newest first, which must be `count` once the server has
/// settled (the log is written in batches, a moment after each answer).
async fn logged(app: &TestApp, key: &str, count: usize) -> Vec<Value> {
    app.settled().await;
    let query = json!({"$type": "GetInboundEventListQuery", "key": key, "pageSize": 100});
    let items = app.admin(query).await.data()["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), count, "entries under {key}: {items:#?}");
    items
}

/// The subscriptions' owners in a list answer.
fn owners(page: &Value) -> Vec<String> {
    page["items"].as_array().into_iter().flatten().map(|s| s["partnerId"].as_str().unwrap_or("").to_owned()).collect()
}

#[tokio::test]
async fn saving_a_route_or_a_process_needs_the_permission_of_every_command_it_runs() {
    let app = TestApp::spawn().await;
    let processes_only = partner_token(&app, PARTNER, &["processes:write"]).await;
    let steps = json!([
        {"name": "all", "commandName": "GetWebhookSubscriptionListQuery"},
        {"name": "theirs", "commandName": "CreateWebhookSubscriptionCommand",
         "input": {"partnerId": OTHER_PARTNER, "webhookUri": "https://partner.example.com/h", "subscribeAll": true}},
    ]);
    let refused = app.cmd(Some(&processes_only), definition("escalate", steps)).await;
    refused.assert_error(403, "Forbidden");
    assert_eq!(
        refused.errors(),
        [
            "steps[0].commandName: GetWebhookSubscriptionListQuery requires permission subscriptions:read, which this \
             token does not have",
            "steps[1].commandName: CreateWebhookSubscriptionCommand requires permission subscriptions:write, which \
             this token does not have",
        ]
    );
    // A script step's commands count too.
    let script = json!([{"name": "s", "code": r#"command("GetInboundEventListQuery", #{})"#}]);
    let refused = app.cmd(Some(&processes_only), definition("scripted", script)).await;
    assert_eq!(
        refused.errors(),
        ["steps[0].code: GetInboundEventListQuery requires permission inbound:read, which this token does not have"]
    );
    assert_eq!(app.count_rows("process_definitions").await, 0);

    let webhooks_only = app.token(&["webhooks:write"]).await.1;
    for (command, permission) in
        [("GetWebhookSubscriptionListQuery", "subscriptions:read"), ("GetInboundEventListQuery", "inbound:read")]
    {
        let config = with(native_config(&format!("leak-{}", command.len())), json!({"commandName": command}));
        let refused = app.cmd(Some(&webhooks_only), config).await;
        refused.assert_error(403, "Forbidden");
        assert!(
            refused.has_error(&format!("commandName: {command} requires permission {permission}")),
            "{:?}",
            refused.errors()
        );
    }
    let chain = route(
        "chained",
        json!({"executionType": 1, "commandChain": [{"commandName": "DeactivateWebHookConfigCommand"},
                                                    {"commandName": "GetWebhookSubscriptionQuery"}]}),
    );
    let refused = app.cmd(Some(&webhooks_only), chain).await;
    assert_eq!(
        refused.errors(),
        ["commandChain[1].commandName: GetWebhookSubscriptionQuery requires permission subscriptions:read, which \
             this token does not have"]
    );
    let script = route("scripted", json!({"executionType": 2, "executionCode": r#"publish("WB_Loan_Opened", #{})"#}));
    let refused = app.cmd(Some(&webhooks_only), script).await;
    assert!(
        refused.has_error("executionCode: PublishEventCommand requires permission events:publish"),
        "{:?}",
        refused.errors()
    );
    assert_eq!(app.count_rows("webhook_configs").await, 0, "nothing refused was saved");
}

#[tokio::test]
async fn a_process_runs_with_its_savers_authority_bound_to_its_owner() {
    let app = TestApp::builder()
        .router_permissions("subscriptions:read,subscriptions:write,processes:read,processes:write")
        .spawn()
        .await;
    let receiver = Receiver::start().await;
    let mine = subscription_of(&app, PARTNER, &receiver.url).await;
    subscription_of(&app, OTHER_PARTNER, &receiver.url).await;

    let partner = partner_token(
        &app,
        PARTNER,
        &["processes:write", "processes:read", "subscriptions:read", "subscriptions:write"],
    )
    .await;
    let steps = json!([
        {"name": "all", "commandName": "GetWebhookSubscriptionListQuery"},
        {"name": "theirs", "commandName": "CreateWebhookSubscriptionCommand",
         "input": {"partnerId": OTHER_PARTNER, "webhookUri": "https://partner.example.com/h", "subscribeAll": true}},
    ]);
    let saved = app.cmd(Some(&partner), definition("escalate", steps)).await;
    let saved = saved.assert_ok("Process definition created successfully").clone();
    assert_eq!(saved["runAs"]["partnerId"], json!(PARTNER), "{saved:#}");
    assert!(saved["runAs"]["savedBy"].as_str().is_some_and(|by| by.starts_with("token:")), "{saved:#}");

    // Started by the admin, it is still bound to its saver's owner.
    let started = app
        .admin(json!({"$type": "StartProcessInstanceCommand", "id": saved["id"], "executionMode": "Supervised"}))
        .await;
    let state = started.assert_ok("Process instance finished").clone();
    assert_eq!(owners(&state["variables"]["all"]), [PARTNER], "only the saver's owner: {state:#}");
    assert_eq!(state["variables"]["all"]["items"][0]["id"], json!(mine));
    assert_eq!(state["status"], json!("ERROR"), "{state:#}");
    assert!(state["error"].as_str().is_some_and(|e| e.contains("step 1 (theirs) failed")), "{state:#}");
    let theirs = app.admin(json!({"$type": "GetWebhookSubscriptionListQuery", "partnerId": OTHER_PARTNER})).await;
    assert_eq!(theirs.data()["totalCount"], json!(1), "no subscription was made for the other owner");

    // An admin's definition started by a partner's token is bound to that partner.
    let listing = app
        .admin(definition("listing", json!([{"name": "all", "commandName": "GetWebhookSubscriptionListQuery"}])))
        .await;
    let id = listing.assert_ok("Process definition created successfully")["id"].clone();
    let started = app
        .cmd(Some(&partner), json!({"$type": "StartProcessInstanceCommand", "id": id, "executionMode": "Supervised"}))
        .await;
    let state = started.assert_ok("Process instance finished");
    assert_eq!(owners(&state["variables"]["all"]), [PARTNER], "{state:#}");
    // A definition bound to one partner does not exist for another.
    let other = partner_token(&app, OTHER_PARTNER, &["processes:write"]).await;
    app.cmd(Some(&other), json!({"$type": "StartProcessInstanceCommand", "id": saved["id"]}))
        .await
        .assert_error(404, "Start failed");
}

#[tokio::test]
async fn a_route_runs_with_its_savers_authority_within_the_ceiling() {
    let ceiling = "webhooks:read,subscriptions:read,events:publish,processes:read,processes:write";
    let app = TestApp::builder().router_permissions(ceiling).spawn().await;
    let receiver = Receiver::start().await;
    subscription_of(&app, PARTNER, &receiver.url).await;
    subscription_of(&app, OTHER_PARTNER, &receiver.url).await;

    let partner = partner_token(&app, PARTNER, &["webhooks:write", "subscriptions:read"]).await;
    let native = with(native_config("native-list"), json!({"commandName": "GetWebhookSubscriptionListQuery"}));
    let saved = app.cmd(Some(&partner), native).await;
    assert_eq!(saved.assert_ok("Webhook configuration created successfully")["runAs"]["partnerId"], json!(PARTNER));
    let chain = route(
        "chain-list",
        json!({"executionType": 1, "commandChain": [{"commandName": "GetWebhookSubscriptionListQuery"}]}),
    );
    app.cmd(Some(&partner), chain).await.assert_ok("Webhook configuration created successfully");
    let script = route(
        "script-list",
        json!({"executionType": 2, "executionCode": r#"command("GetWebhookSubscriptionListQuery", #{})"#}),
    );
    app.cmd(Some(&partner), script).await.assert_ok("Webhook configuration created successfully");

    // Anyone may call a route, and gets only what its saver's owner could see.
    let native = app.call("POST", "/api/webhooks/native-list", Some(json!({})), &[]).await;
    assert_eq!(owners(native.data()), [PARTNER], "{:#}", native.body);
    let chain = app.call("POST", "/api/webhooks/chain-list", Some(json!({})), &[]).await;
    assert_eq!(owners(&chain.data()["result"]), [PARTNER], "{:#}", chain.body);
    let script = app.call("POST", "/api/webhooks/script-list", Some(json!({})), &[]).await;
    assert_eq!(owners(script.data()), [PARTNER], "{:#}", script.body);

    // A name computed at run time is checked when it runs: the saver cannot publish.
    let dynamic = route(
        "dynamic",
        json!({"executionType": 2, "executionCode": r#"let name = "Publish" + "EventCommand"; command(name, #{eventName: "WB_Loan_Opened", data: #{}})"#}),
    );
    app.cmd(Some(&partner), dynamic).await.assert_ok("Webhook configuration created successfully");
    let refused = app.call("POST", "/api/webhooks/dynamic", Some(json!({})), &[]).await;
    refused.assert_error(403, "Forbidden");
    assert_eq!(refused.errors(), ["requires permission events:publish"]);

    // The ceiling bounds even an admin's route: no route may write subscriptions here.
    let create = with(native_config("creating"), json!({"commandName": "CreateWebhookSubscriptionCommand"}));
    app.admin(create).await.assert_ok("Webhook configuration created successfully");
    let body = json!({"partnerId": OTHER_PARTNER, "webhookUri": "https://partner.example.com/h", "subscribeAll": true});
    let refused = app.call("POST", "/api/webhooks/creating", Some(body), &[]).await;
    refused.assert_error(403, "Forbidden");
    assert_eq!(refused.errors(), ["requires permission subscriptions:write"]);

    // With the default ceiling, reading subscriptions through a route is not possible at all.
    let default = TestApp::spawn().await;
    let listing = with(native_config("list"), json!({"commandName": "GetWebhookSubscriptionListQuery"}));
    default.admin(listing).await.assert_ok("Webhook configuration created successfully");
    default.call("POST", "/api/webhooks/list", Some(json!({})), &[]).await.assert_error(403, "Forbidden");
}

#[tokio::test]
async fn an_owner_bound_publisher_reaches_only_its_own_subscriptions_and_ids() {
    let app = TestApp::spawn().await;
    let (mine, theirs) = (Receiver::start().await, Receiver::start().await);
    subscription_of(&app, PARTNER, &mine.url).await;
    subscription_of(&app, OTHER_PARTNER, &theirs.url).await;
    let partner = partner_token(&app, PARTNER, &["events:publish"]).await;

    let publish = |event_id: &str| {
        json!({"$type": "PublishEventCommand", "eventName": "WB_Loan_Opened",
                                          "data": {"loan": 1}, "eventId": event_id})
    };
    let reply = app.cmd(Some(&partner), publish("loan-1")).await;
    let published = reply.assert_ok("Event published successfully");
    assert_eq!((published["eventId"].clone(), published["notifications"].clone()), (json!("loan-1"), json!(1)));
    let received = mine.wait_for(1, WAIT).await;
    assert_eq!(received[0].body["eventId"], json!("loan-1"), "the partner sees its own id");

    // The same id from the platform is another event: the partner's did not pre-empt it.
    let reply = app.admin(publish("loan-1")).await;
    let platform = reply.assert_ok("Event published successfully");
    assert_eq!((platform["duplicate"].clone(), platform["notifications"].clone()), (json!(false), json!(2)));
    theirs.wait_for(1, WAIT).await;
    mine.wait_for(2, WAIT).await;
    app.settled().await;
    assert_eq!((mine.count(), theirs.count()), (2, 1), "the partner's event reached only the partner");

    // A script's publish() in a route the partner saved reaches the partner's subscriptions only.
    let publisher = partner_token(&app, PARTNER, &["webhooks:write", "events:publish"]).await;
    let script = route(
        "partner-publisher",
        json!({"executionType": 2,
                                                   "executionCode": r#"publish("WB_Loan_Opened", #{loan: 2})"#}),
    );
    app.cmd(Some(&publisher), script).await.assert_ok("Webhook configuration created successfully");
    let reply = app.call("POST", "/api/webhooks/partner-publisher", Some(json!({})), &[]).await;
    assert_eq!(reply.assert_ok("Script executed successfully")["notifications"], json!(1));
    mine.wait_for(3, WAIT).await;
    app.settled().await;
    assert_eq!((mine.count(), theirs.count()), (3, 1), "the route's event reached only its saver's owner");

    // Provider event ids are reserved, for every publisher.
    for (token, id) in
        [(partner.as_str(), "remita.payment:424242"), (ADMIN_TOKEN, "mono:evt_1"), (ADMIN_TOKEN, "remita.collection:9")]
    {
        let refused = app.cmd(Some(token), publish(id)).await;
        refused.assert_error(422, "Validation failed");
        assert!(refused.has_error("eventId: ids starting with"), "{:?}", refused.errors());
    }
}

#[tokio::test]
async fn the_remita_routes_refuse_everyone_until_callers_are_configured() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    subscribe(&app, &receiver.url, &["remita.payment.notification", "remita.collection.notification"], json!({})).await;
    let payment = json!([{"rrr": "424242", "amount": "250000.00", "payerName": "Mallory"}]);
    let collection = json!({"transactionRef": "T1", "mandateId": "M1", "amount": "5.00", "status": "successful"});
    for (path, body) in
        [("/api/webhooks/remita", payment), ("/api/webhooks/remita/collection-notification", collection)]
    {
        let refused = app.call("POST", path, Some(body), &[]).await;
        refused.assert_error(503, "route not configured");
        assert!(refused.has_error("providers.remita.allowable_ips"), "{:?}", refused.errors());
    }
    let events = app.admin(json!({"$type": "GetNotificationListQuery"})).await;
    assert_eq!(events.data()["totalCount"], json!(0), "nothing was published");
    let entries = logged(&app, "remita", 1).await;
    let refused = &entries[0]["request"]["body"]["notStored"];
    assert_eq!((refused["complete"].clone(), refused["bytes"].as_u64().is_some()), (json!(true), true), "{entries:#?}");

    // Anyone, when the operator says so explicitly.
    let open = TestApp::builder().configure(|s| s.providers.remita.allow_any_ip = true).spawn().await;
    let reply =
        open.call("POST", "/api/webhooks/remita", Some(json!([{"rrr": "424242", "amount": "1.00"}])), &[]).await;
    assert_eq!(reply.assert_ok("Remita payment notifications processed")["accepted"], json!(1));
}

/// Refused callers cost no storage: a refused request's body is logged as its size and digest.
#[tokio::test]
async fn unverified_bodies_are_never_stored() {
    let app = TestApp::spawn().await; // no Mono secret: the route is not configured
    let megabyte = vec![b'x'; 1 << 20];
    for _ in 0..5 {
        let response = app
            .client
            .post(format!("{}/api/webhooks/mono/callback", app.address))
            .header("content-type", "application/json")
            .body(megabyte.clone())
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), 503);
    }
    let mono = TestApp::builder()
        .database(std::sync::Arc::clone(&app.database))
        .configure(|s| s.providers.mono.secret = hookbus_providers::Secret::new("sec_live_right"));
    let mono = mono.spawn().await;
    let wrong = mono
        .client
        .post(format!("{}/api/webhooks/mono/callback", mono.address))
        .header("mono-webhook-secret", "sec_live_wrong")
        .body(megabyte.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(wrong.status(), 401);

    mono.settled().await;
    let items = logged(&app, "mono/callback", 6).await;
    use sha2::{Digest, Sha256};
    let digest = hex_of(&Sha256::digest(&megabyte));
    for item in &items {
        assert_eq!(item["request"]["body"]["notStored"], json!({"bytes": 1 << 20, "sha256": digest, "complete": true}));
    }
    use sea_orm::{ConnectionTrait, Statement};
    let db = app.database.connect().await;
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT SUM(LENGTH(raw_body)) + SUM(LENGTH(request)) AS n FROM inbound_events",
        ))
        .await
        .expect("query")
        .expect("row");
    let stored: i64 = row.try_get("", "n").expect("a total");
    assert!(stored < 10_000, "{stored} bytes stored for six refused megabytes");
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads what the server sends on `stream` until it closes the connection (or `limit` passes);
/// the text and how long it took.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).expect("timeout");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
    }
    (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
}

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: hookbus\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_second_request_head_is_cut_off() {
    let app = TestApp::builder().configure(|s| s.server.client_request_timeout_ms = 600).spawn().await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let (answer, took) = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&address).expect("connect");
        stream.write_all(HEALTH).expect("first request");
        let mut buffer = [0u8; 1024];
        stream.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        let n = stream.read(&mut buffer).expect("first answer");
        assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"), "the first request is served");
        // One byte of a second request, and nothing more.
        stream.write_all(b"G").expect("one byte");
        read_until_closed(&mut stream, Duration::from_secs(10))
    })
    .await
    .expect("the client");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(took < Duration::from_secs(3), "the connection stayed open {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_trickled_byte_by_byte_is_cut_off() {
    let app = TestApp::builder().configure(|s| s.server.client_request_timeout_ms = 600).spawn().await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let took = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&address).expect("connect");
        stream.write_all(HEALTH).expect("first request");
        let mut buffer = [0u8; 1024];
        stream.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        let n = stream.read(&mut buffer).expect("first answer");
        assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 200"), "the first request is served");
        let started = Instant::now();
        // A byte every 150 ms: every read succeeds, the head never ends.
        for byte in b"GET /healthz HTTP/1.1\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter().cycle().take(100)
        {
            if stream.write_all(&[*byte]).is_err() {
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(150));
        }
        started.elapsed()
    })
    .await
    .expect("the client");
    assert!(took < Duration::from_secs(4), "the trickle was served for {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_is_answered_408_and_closed() {
    let app = TestApp::builder().configure(|s| s.server.body_read_timeout_ms = 800).spawn().await;
    app.admin(native_config("slow-body")).await.assert_ok("Webhook configuration created successfully");
    let address = app.address.trim_start_matches("http://").to_owned();
    let (answer, took) = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&address).expect("connect");
        let head = "POST /api/webhooks/slow-body HTTP/1.1\r\nhost: hookbus\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n";
        stream.write_all(head.as_bytes()).expect("head");
        let started = Instant::now();
        let writer = stream.try_clone().expect("clone");
        std::thread::spawn(move || {
            let mut writer = writer;
            for _ in 0..60 {
                if writer.write_all(b" ").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(15));
        (answer, started.elapsed())
    })
    .await
    .expect("the client");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("did not arrive within 800 ms"), "{answer:?}");
    assert!(took < Duration::from_secs(4), "the body was waited for {took:?}");
}

#[tokio::test]
async fn replay_is_a_write_and_refuses_inactive_configurations() {
    let app = TestApp::spawn().await;
    let config = app.admin(with(native_config("replayed"), json!({"commandName": "GetWebHookConfigListQuery"}))).await;
    let config_id = config.data()["id"].clone();
    app.call("POST", "/api/webhooks/replayed", Some(json!({})), &[])
        .await
        .assert_ok("Webhook configurations retrieved successfully");
    let id = logged(&app, "replayed", 1).await[0]["id"].clone();

    let reader = app.token(&["inbound:read"]).await.1;
    let refused = app.cmd(Some(&reader), json!({"$type": "ReplayInboundEventCommand", "id": id})).await;
    refused.assert_error(403, "Forbidden");
    assert_eq!(refused.errors(), ["requires permission webhooks:write"]);
    let writer = app.token(&["webhooks:write"]).await.1;
    app.cmd(Some(&writer), json!({"$type": "ReplayInboundEventCommand", "id": id}))
        .await
        .assert_ok("Inbound event replayed");

    app.admin(json!({"$type": "DeactivateWebHookConfigCommand", "id": config_id})).await;
    let inactive = app.admin(json!({"$type": "ReplayInboundEventCommand", "id": id})).await;
    inactive.assert_error(409, "Replay failed");
    assert_eq!(inactive.errors(), ["The configuration is inactive"]);
    // The original and the one replay: the refused one ran nothing.
    logged(&app, "replayed", 2).await;
}

/// A replay takes the request's idempotency key as a repeat would: a request already processed is
/// not run again; one whose first run failed (and freed its key) is.
#[tokio::test]
async fn a_replay_keeps_idempotency() {
    let app = TestApp::spawn().await;
    let echo = route(
        "once",
        json!({"executionType": 2, "executionCode": "#{ ref: body.ref }",
                                    "idempotencyKey": "$.ref"}),
    );
    let id = app.admin(echo).await.assert_ok("Webhook configuration created successfully")["id"].clone();
    app.call("POST", "/api/webhooks/once", Some(json!({"ref": "r1"})), &[])
        .await
        .assert_ok("Script executed successfully");
    let first = logged(&app, "once", 1).await[0]["id"].clone();
    let refused = app.admin(json!({"$type": "ReplayInboundEventCommand", "id": first})).await;
    refused.assert_error(409, "Replay failed");
    assert!(refused.has_error("idempotency key was processed"), "{:?}", refused.errors());

    // A first run that failed frees its key: its replay runs, and then holds the key.
    let failing = json!({"executionType": 2, "executionCode": r#"throw "not yet""#});
    let mut update = with(with(route("once", failing), json!({"idempotencyKey": "$.ref"})), json!({"id": id}));
    update["$type"] = json!("UpdateWebHookConfigCommand");
    update.as_object_mut().map(|fields| fields.remove("key"));
    app.admin(update.clone()).await.assert_ok("Webhook configuration updated successfully");
    app.call("POST", "/api/webhooks/once", Some(json!({"ref": "r2"})), &[]).await.assert_error(422, "Script failed");
    let failed = logged(&app, "once", 2).await[0]["id"].clone();
    update["executionCode"] = json!("#{ ref: body.ref, replayed: true }");
    app.admin(update).await.assert_ok("Webhook configuration updated successfully");
    let replayed = app.admin(json!({"$type": "ReplayInboundEventCommand", "id": failed})).await;
    replayed.assert_ok("Inbound event replayed");
    let again = app.call("POST", "/api/webhooks/once", Some(json!({"ref": "r2"})), &[]).await;
    assert_eq!(again.data(), &json!({"duplicate": true}), "the replay holds the key: {:#}", again.body);
}

#[tokio::test]
async fn scripts_cannot_wait_past_their_deadline_or_for_script_threads() {
    let app = TestApp::builder()
        .router_permissions("webhooks:read,webhooks:write,processes:read,processes:write")
        .configure(|s| s.script.threads = 2)
        .spawn()
        .await;
    let sleeper = route("sleeper", json!({"executionType": 2, "executionCode": "sleep(3); 1"}));
    app.admin(sleeper).await.assert_ok("Webhook configuration created successfully");
    let started = Instant::now();
    let slept = app.call("POST", "/api/webhooks/sleeper", Some(json!({})), &[]).await;
    slept.assert_error(422, "Script failed");
    assert!(slept.has_error("sleep is not available"), "{:?}", slept.errors());
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());

    // A script that replays its own route's requests would hold every script thread waiting for
    // another: it gets an error instead.
    let replayer = route(
        "replayer",
        json!({"executionType": 2, "executionCode": r#"
            if body.id == () { return "first"; }
            command("ReplayInboundEventCommand", #{id: body.id})
        "#}),
    );
    app.admin(replayer).await.assert_ok("Webhook configuration created successfully");
    app.call("POST", "/api/webhooks/replayer", Some(json!({})), &[]).await.assert_ok("Script executed successfully");
    let id = logged(&app, "replayer", 1).await[0]["id"].clone();
    for _ in 0..3 {
        let refused = app.call("POST", "/api/webhooks/replayer", Some(json!({"id": id})), &[]).await;
        refused.assert_error(422, "Not available in scripts");
        assert!(refused.has_error("ReplayInboundEventCommand cannot run from a script"), "{:?}", refused.errors());
    }
    let supervised = route(
        "supervisor",
        json!({"executionType": 2, "executionCode": r#"command("StartProcessInstanceCommand", #{id: 1, executionMode: "Supervised"})"#}),
    );
    app.admin(supervised).await.assert_ok("Webhook configuration created successfully");
    let refused = app.call("POST", "/api/webhooks/supervisor", Some(json!({})), &[]).await;
    refused.assert_error(422, "Not available in scripts");

    // The script threads are free: other scripts still run at once.
    let quick = route("quick", json!({"executionType": 2, "executionCode": "40 + 2"}));
    app.admin(quick).await;
    let started = Instant::now();
    for _ in 0..4 {
        let answer = app.call("POST", "/api/webhooks/quick", Some(json!({})), &[]).await;
        assert_eq!(answer.assert_ok("Script executed successfully"), &json!(42));
    }
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test]
async fn secret_headers_are_redacted_by_name_and_the_list_is_configurable() {
    let app = TestApp::spawn().await;
    app.admin(native_config("redacted")).await;
    let headers = [
        ("verif-hash", "flutterwave-secret-hash"),
        ("x-webhook-secret", "partner-shared-secret"),
        ("x-signature", "sig-abc"),
        ("x-api-key", "key-123"),
        ("x-request-source", "partner-prod"),
    ];
    app.call("POST", "/api/webhooks/redacted", Some(json!({})), &headers).await;
    let custom =
        TestApp::builder().configure(|s| s.inbound.redact_headers = vec!["x-partner-sig".into()]).spawn().await;
    custom.admin(native_config("redacted")).await;
    custom
        .call("POST", "/api/webhooks/redacted", Some(json!({})), &[("x-partner-sig", "p-1"), ("verif-hash", "h-1")])
        .await;

    let stored = logged(&app, "redacted", 1).await[0]["request"]["headers"].clone();
    for name in ["verif-hash", "x-webhook-secret", "x-signature", "x-api-key"] {
        assert_eq!(stored[name], json!("[redacted]"), "{name}: {stored:#}");
    }
    assert_eq!(stored["x-request-source"], json!("partner-prod"));
    let stored = logged(&custom, "redacted", 1).await[0]["request"]["headers"].clone();
    assert_eq!((stored["x-partner-sig"].clone(), stored["verif-hash"].clone()), (json!("[redacted]"), json!("h-1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_bootstrap_token_stops_start_up() {
    let database = TestDatabase::create().await;
    let output = hookbus(&database.url)
        .env("HOOKBUS_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("HOOKBUS_BOOTSTRAP_TOKEN", "change-me")
        .output()
        .expect("the binary runs");
    assert!(!output.status.success(), "the server started with a short bootstrap token");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("auth.bootstrap_token") && stderr.contains("at least 32"), "{stderr}");
    assert!(!stderr.contains("change-me"), "the token was printed: {stderr}");
}

/// A queued request runs after its answer, from the log, where its secret headers are redacted:
/// they wait sealed under the server's key until its last run, then are gone.
#[tokio::test]
async fn a_queued_request_checks_its_signature_header_and_no_secret_stays_at_rest() {
    use sea_orm::{ConnectionTrait, Statement};
    let app = TestApp::spawn().await;
    let code = r#"if headers["x-signature"] != "sig-abc-123" { throw "bad signature" } #{ ok: true }"#;
    let queued = route("signed-later", json!({"executionType": 2, "executionCode": code, "respondAsync": true}));
    app.admin(queued).await.assert_ok("Webhook configuration created successfully");
    let accepted =
        app.call("POST", "/api/webhooks/signed-later", Some(json!({})), &[("x-signature", "sig-abc-123")]).await;
    assert_eq!(accepted.status, 202, "{:#}", accepted.body);
    let id = accepted.data()["eventId"].clone();
    let done = || async {
        let event = app.inbound_event(&id).await;
        event.data()["status"] == "Succeeded"
    };
    let ran = crate::support::within(WAIT, done).await;
    let event = app.inbound_event(&id).await;
    assert!(ran.is_some(), "the queued request did not succeed: {:#}", event.body);
    assert_eq!(event.data()["request"]["headers"]["x-signature"], json!("[redacted]"));

    let db = app.database.connect().await;
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), "SELECT * FROM inbound_events"))
        .await
        .expect("select");
    let dump = format!("{rows:?}");
    assert!(!dump.contains("sig-abc-123"), "the header's value is at rest: {dump}");
    let sealed = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM inbound_events WHERE sealed_headers IS NOT NULL",
        ))
        .await
        .expect("count")
        .expect("a row");
    assert_eq!(sealed.try_get::<i64>("", "n").expect("a count"), 0, "sealed headers outlived the last run");
}
