//! Inbound reliability: the event log, idempotency, respondAsync and replay.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};

use crate::support::{
    ADMIN_TOKEN, ROUTES_WRITE_CONFIGS, TestApp, TestDatabase, free_port, kill_9, native_config, ready, serve, with,
    within,
};

/// A type-2 route whose handler has a visible side effect: it creates a configuration keyed by
/// the body's `ref`. Running it twice for one `ref` fails with 409, so a repeat that ran the
/// handler again would show.
fn creating_route(key: &str, extra: Value) -> Value {
    let code = r#"
        let created = command("CreateWebHookConfigCommand", #{
            key: "made-" + body.ref, description: "made by a script", isEnabled: true,
            path: "/made/" + body.ref, action: "POST", executionType: 0,
            commandName: "GetWebHookConfigListQuery"
        });
        #{ created: created.id, ref: body.ref }
    "#;
    with(with(native_config(key), json!({"commandName": null, "executionType": 2, "executionCode": code})), extra)
}

async fn events(app: &TestApp, filter: Value) -> Vec<Value> {
    let reply = app.admin(with(json!({"$type": "GetInboundEventListQuery", "pageSize": 100}), filter)).await;
    reply.assert_ok("Inbound events retrieved successfully")["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn every_request_is_logged_with_secrets_redacted() {
    let app = TestApp::spawn().await;
    app.admin(with(native_config("logged"), json!({"commandName": "GetWebHookConfigByIdQuery"}))).await;
    let headers = [("authorization", "Bearer partner-secret"), ("mono-webhook-secret", "s3cr3t"), ("x-trace", "t-1")];
    app.call("POST", "/api/webhooks/logged?source=test", Some(json!({"id": 1})), &headers).await;
    app.call("POST", "/api/webhooks/logged", Some(json!({"id": 999})), &[]).await;

    // Plain requests are logged by a batch writer, a moment after they are answered.
    let written =
        within(Duration::from_secs(2), || async { events(&app, json!({"key": "logged"})).await.len() == 2 }).await;
    assert!(written.is_some(), "the two requests were not logged");
    let logged = events(&app, json!({"key": "logged"})).await;
    let (failed, succeeded) = (&logged[0], &logged[1]);
    assert_eq!(succeeded["status"], json!("Succeeded"));
    assert_eq!(succeeded["httpStatus"], json!(200));
    assert_eq!(succeeded["data"]["key"], json!("logged"));
    assert_eq!(succeeded["request"]["headers"]["authorization"], json!("[redacted]"));
    assert_eq!(succeeded["request"]["headers"]["mono-webhook-secret"], json!("[redacted]"));
    assert_eq!(succeeded["request"]["headers"]["x-trace"], json!("t-1"));
    assert_eq!(succeeded["request"]["query"]["source"], json!("test"));
    assert_eq!(succeeded["request"]["ip"], json!("127.0.0.1"));
    assert!(succeeded["durationMs"].is_number());
    assert_eq!(failed["status"], json!("Failed"));
    assert_eq!(failed["httpStatus"], json!(404));
    assert_eq!(failed["message"], json!("Configuration not found"));

    // Nothing stored anywhere holds the secrets.
    let db = app.database.connect().await;
    use sea_orm::{ConnectionTrait, Statement};
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), "SELECT * FROM inbound_events"))
        .await
        .expect("select");
    assert_eq!(rows.len(), 2);
    let dump = format!("{rows:?}");
    assert!(!dump.contains("partner-secret") && !dump.contains("s3cr3t"), "a secret reached the database");

    let one = app.inbound_event(&succeeded["id"]).await;
    assert_eq!(one.assert_ok("Inbound event retrieved successfully")["id"], succeeded["id"]);
    assert_eq!(events(&app, json!({"status": "failed"})).await.len(), 1);
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    assert_eq!(events(&app, json!({"from": later})).await.len(), 0);
    let bad = app.admin(json!({"$type": "GetInboundEventListQuery", "status": "Lost"})).await;
    bad.assert_error(422, "Validation failed");

    let (_, reader) = app.token(&["webhooks:read"]).await;
    app.cmd(Some(&reader), json!({"$type": "GetInboundEventListQuery"})).await.assert_error(403, "Forbidden");
}

#[tokio::test]
async fn a_repeated_idempotency_key_gets_the_first_result_without_running_again() {
    let app = TestApp::builder().router_permissions(ROUTES_WRITE_CONFIGS).spawn().await;
    app.admin(creating_route("once-by-body", json!({"idempotencyKey": "$.ref"}))).await;
    let opted_in = json!({"idempotencyKey": "header:X-Delivery-Id", "idempotencyReturnsResult": true});
    app.admin(creating_route("once-by-header", opted_in)).await;

    // A repeat learns that its key was seen, and the first's status, but not the first's answer:
    // it passed none of the handler's checks.
    let first = app.call("POST", "/api/webhooks/once-by-body", Some(json!({"ref": "a1"})), &[]).await;
    assert_eq!(first.assert_ok("Script executed successfully")["ref"], json!("a1"));
    let again = app.call("POST", "/api/webhooks/once-by-body", Some(json!({"ref": "a1"})), &[]).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["message"], json!("Duplicate request: one with this idempotency key was processed"));
    assert_eq!(again.data(), &json!({"duplicate": true}), "the repeat gets no data of the first");

    // A configuration that opts in answers repeats with the first result.
    let header = [("x-delivery-id", "d-77")];
    let first = app.call("POST", "/api/webhooks/once-by-header", Some(json!({"ref": "b1"})), &header).await;
    let data = first.assert_ok("Script executed successfully").clone();
    // Same delivery id, different body: still a repeat.
    let again = app.call("POST", "/api/webhooks/once-by-header", Some(json!({"ref": "b2"})), &header).await;
    assert_eq!(again.assert_ok("Script executed successfully"), &data, "the repeat gets the first result");
    assert_eq!(again.data()["ref"], json!("b1"));

    // Each handler ran once: one configuration per ref, and the repeats are logged as duplicates.
    let made = app.admin(json!({"$type": "GetWebHookConfigListQuery", "searchText": "made-"})).await;
    assert_eq!(made.data()["totalCount"], json!(2));
    let duplicates = events(&app, json!({"status": "Duplicate"})).await;
    assert_eq!(duplicates.len(), 2);
    assert!(duplicates.iter().all(|d| d["duplicateOf"].is_string()));

    // A request without the key is not deduplicated.
    let fresh = app.call("POST", "/api/webhooks/once-by-header", Some(json!({"ref": "c1"})), &[]).await;
    fresh.assert_ok("Script executed successfully");
}

#[tokio::test]
async fn a_failed_first_request_can_be_sent_again() {
    let app = TestApp::spawn().await;
    let route = with(
        native_config("retryable"),
        json!({"commandName": "GetWebHookConfigByIdQuery", "idempotencyKey": "header:X-Attempt"}),
    );
    app.admin(route).await;
    let (body, key) = (json!({"id": 2}), [("x-attempt", "x-1")]);
    app.call("POST", "/api/webhooks/retryable", Some(body.clone()), &key)
        .await
        .assert_error(404, "Configuration not found");
    app.admin(native_config("second")).await; // id 2 exists now
    let retried = app.call("POST", "/api/webhooks/retryable", Some(body), &key).await;
    assert_eq!(retried.assert_ok("Webhook configuration retrieved successfully")["key"], json!("second"));
}

#[tokio::test]
async fn respond_async_answers_202_and_runs_in_the_background() {
    let app = TestApp::builder().router_permissions(ROUTES_WRITE_CONFIGS).spawn().await;
    app.admin(creating_route("later", json!({"respondAsync": true}))).await;
    let accepted = app.call("POST", "/api/webhooks/later", Some(json!({"ref": "q1"})), &[]).await;
    assert_eq!(accepted.status, 202, "{:#}", accepted.body);
    assert_eq!(accepted.message(), "Accepted");
    let id = accepted.data()["eventId"].clone();

    let done = within(Duration::from_secs(5), || async {
        let event = app.inbound_event(&id).await;
        event.data()["status"] == json!("Succeeded")
    })
    .await;
    assert!(done.is_some(), "the queued request did not run");
    let made = app.admin(json!({"$type": "LookupWebHookByKeyCommand", "key": "made-q1"})).await;
    made.assert_ok("Webhook configuration found");
}

/// A queued request is handed to the instance's worker as soon as its row is committed: it runs
/// without waiting for the next poll (ten minutes away here), once.
#[tokio::test]
async fn a_queued_request_runs_at_once_without_waiting_for_a_poll() {
    let app = TestApp::builder()
        .router_permissions(ROUTES_WRITE_CONFIGS)
        .configure(|s| s.inbound.async_poll_ms = 600_000)
        .spawn()
        .await;
    app.admin(creating_route("at-once", json!({"respondAsync": true}))).await;
    let accepted =
        app.call("POST", "/api/webhooks/at-once", Some(json!({"ref": "h1"})), &[("x-api-key", "in-memory")]).await;
    assert_eq!(accepted.status, 202, "{:#}", accepted.body);
    let id = accepted.data()["eventId"].clone();
    let done = within(Duration::from_secs(5), || async {
        let event = app.inbound_event(&id).await;
        event.data()["status"] == json!("Succeeded")
    })
    .await;
    assert!(done.is_some(), "the handed-over request did not run before the next poll");
    let event = app.inbound_event(&id).await;
    assert_eq!(event.data()["attempts"], json!(1), "{:#}", event.body);
    assert!(event.data()["nextAttemptAt"].is_null(), "{:#}", event.body);
    let made = app.admin(json!({"$type": "LookupWebHookByKeyCommand", "key": "made-h1"})).await;
    made.assert_ok("Webhook configuration found");
    let leftovers = "inbound_events WHERE lease_until IS NOT NULL OR sealed_headers IS NOT NULL";
    assert_eq!(app.count_rows(leftovers).await, 0, "no lease or sealed secret outlives the run");
}

/// A request handed over in memory waits under its instance's lease: no poll takes it while the
/// lease lasts (here, as if its instance died before running it), and once the lease has run
/// out a poll does.
#[tokio::test]
async fn a_handed_over_request_is_left_to_its_lease_then_taken_by_a_poll() {
    let app = TestApp::builder().configure(|s| s.inbound.async_poll_ms = 20).spawn().await;
    let config =
        with(native_config("leased"), json!({"commandName": "GetWebHookConfigByIdQuery", "respondAsync": true}));
    app.admin(config).await;
    let accepted = app.call("POST", "/api/webhooks/leased", Some(json!({"id": 1})), &[]).await;
    assert_eq!(accepted.status, 202, "{:#}", accepted.body);
    let finished = "inbound_events WHERE status = 'Succeeded' AND attempts = 1";
    let ran = within(Duration::from_secs(5), || async { app.count_rows(finished).await == 1 }).await;
    assert!(ran.is_some(), "the request did not run");

    // Back to how a hand-over leaves it, its instance gone before the run.
    let db = app.database.connect().await;
    let backend = db.get_database_backend();
    let requeue = |lease_until: chrono::DateTime<chrono::Utc>| {
        let sql = "UPDATE inbound_events SET status = 'Pending', completed_at = NULL, next_attempt_at = ?, \
                   lease_until = ?";
        let sql = if backend == DbBackend::Postgres {
            sql.replacen('?', "$1", 1).replacen('?', "$2", 1)
        } else {
            sql.to_owned()
        };
        let now = chrono::Utc::now();
        db.execute_raw(Statement::from_sql_and_values(backend, sql, [now.into(), lease_until.into()]))
    };
    requeue(chrono::Utc::now() + chrono::Duration::hours(1)).await.expect("requeue");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        app.count_rows("inbound_events WHERE status = 'Pending' AND attempts = 1").await,
        1,
        "taken under a live lease"
    );

    requeue(chrono::Utc::now() - chrono::Duration::seconds(1)).await.expect("requeue");
    let taken = "inbound_events WHERE status = 'Succeeded' AND attempts = 2 AND lease_until IS NULL";
    let rerun = within(Duration::from_secs(5), || async { app.count_rows(taken).await == 1 }).await;
    assert!(rerun.is_some(), "a poll did not take the request once its lease ran out");
}

#[tokio::test]
async fn replay_runs_the_current_handler_on_the_stored_request() {
    let app = TestApp::spawn().await;
    app.admin(with(native_config("replayable"), json!({"commandName": "GetWebHookConfigByIdQuery"}))).await;
    app.call("POST", "/api/webhooks/replayable", Some(json!({"id": 2})), &[("authorization", "Bearer x")]).await;
    let written =
        within(Duration::from_secs(2), || async { events(&app, json!({"status": "Failed"})).await.len() == 1 }).await;
    assert!(written.is_some(), "the failed request was not logged");
    let failed = events(&app, json!({"status": "Failed"})).await;

    app.admin(native_config("now-exists")).await;
    let replayed = app.admin(json!({"$type": "ReplayInboundEventCommand", "id": failed[0]["id"]})).await;
    let event = replayed.assert_ok("Inbound event replayed");
    assert_eq!(event["status"], json!("Succeeded"));
    assert_eq!(event["replayOf"], failed[0]["id"]);
    assert_eq!(event["data"]["key"], json!("now-exists"));

    let missing =
        app.admin(json!({"$type": "ReplayInboundEventCommand", "id": "0192f0c4-0000-7000-8000-000000000000"})).await;
    missing.assert_error(404, "Replay failed");
}

/// A crash after the 202 loses nothing: the server is killed (SIGKILL) before its queue is polled,
/// and after a restart the handler runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_request_survives_kill_9() {
    let database = TestDatabase::create().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let start = |poll_ms: &str, handoff: &str| {
        let env = [
            ("HOOKBUS_INBOUND__ASYNC_POLL_MS", poll_ms),
            ("HOOKBUS_INBOUND__ASYNC_HANDOFF", handoff),
            ("HOOKBUS_ROUTER__INTERNAL_PERMISSIONS", ROUTES_WRITE_CONFIGS),
        ];
        serve(&database.url, port, &env)
    };
    let client = reqwest::Client::new();
    let is_ready = || ready(&client, &base);
    let command = |body: Value| client.post(format!("{base}/api/bpm/cmd")).bearer_auth(ADMIN_TOKEN).json(&body).send();

    // Polls once at start, then not for ten minutes, and hands nothing over in memory: the
    // request waits in the queue.
    let mut first = start("600000", "0");
    assert!(within(Duration::from_secs(20), is_ready).await.is_some(), "the server did not start");
    let created = command(creating_route("durable", json!({"respondAsync": true}))).await.expect("answer");
    assert_eq!(created.status(), 200);
    let accepted = client.post(format!("{base}/api/webhooks/durable")).json(&json!({"ref": "k9"})).send().await;
    assert_eq!(accepted.expect("answer").status(), 202);
    kill_9(&mut first);

    // Before the restart: queued, not run.
    let db = database.connect().await;
    use sea_orm::{ConnectionTrait, Statement};
    let backend = db.get_database_backend();
    let count = |sql: &'static str| {
        let db = &db;
        async move {
            let row = db.query_one_raw(Statement::from_string(backend, sql)).await.expect("query").expect("row");
            row.try_get::<i64>("", "n").expect("count")
        }
    };
    assert_eq!(count("SELECT COUNT(*) AS n FROM inbound_events WHERE status = 'Pending'").await, 1);
    assert_eq!(count("SELECT COUNT(*) AS n FROM webhook_configs WHERE key = 'made-k9'").await, 0);

    let mut second = start("100", "256");
    assert!(within(Duration::from_secs(20), is_ready).await.is_some(), "the server did not restart");
    let ran = within(Duration::from_secs(10), || async {
        let found = command(json!({"$type": "LookupWebHookByKeyCommand", "key": "made-k9"})).await;
        found.is_ok_and(|r| r.status() == 200)
    })
    .await;
    let _ = second.kill();
    let _ = second.wait();
    assert!(ran.is_some(), "the handler did not run after the restart");
}

/// A synchronous idempotent request whose server stopped mid-run stays `Processing`; once it is
/// older than any request can take, a repeat frees its key and runs. A recent one still gets 409.
#[tokio::test]
async fn an_abandoned_first_request_frees_its_key() {
    let app = TestApp::builder().router_permissions(ROUTES_WRITE_CONFIGS).spawn().await;
    app.admin(creating_route("abandoned", json!({"idempotencyKey": "$.ref"}))).await;
    let first = app.call("POST", "/api/webhooks/abandoned", Some(json!({"ref": "z1"})), &[]).await;
    first.assert_ok("Script executed successfully");

    // Make it look as if the run never finished: Processing, and (first) received just now.
    let db = app.database.connect().await;
    use sea_orm::{ConnectionTrait, DbBackend};
    let backend = db.get_database_backend();
    db.execute_unprepared("UPDATE inbound_events SET status = 'Processing' WHERE config_key = 'abandoned'")
        .await
        .expect("update");
    let made = app.admin(json!({"$type": "LookupWebHookByKeyCommand", "key": "made-z1"})).await;
    app.admin(json!({"$type": "DeleteWebHookConfigCommand", "id": made.data()["id"]})).await;
    let busy = app.call("POST", "/api/webhooks/abandoned", Some(json!({"ref": "z1"})), &[]).await;
    busy.assert_error(409, "Duplicate request");

    // Long after, it is clearly abandoned.
    let a_year_earlier = match backend {
        DbBackend::Postgres => {
            "UPDATE inbound_events SET received_at = received_at - interval '1 year' WHERE status = 'Processing'"
        }
        _ => {
            "UPDATE inbound_events SET received_at = replace(received_at, substr(received_at, 1, 4), '2000') WHERE status = 'Processing'"
        }
    };
    db.execute_unprepared(a_year_earlier).await.expect("update");
    let again = app.call("POST", "/api/webhooks/abandoned", Some(json!({"ref": "z1"})), &[]).await;
    again.assert_ok("Script executed successfully");
    app.admin(json!({"$type": "LookupWebHookByKeyCommand", "key": "made-z1"}))
        .await
        .assert_ok("Webhook configuration found");
}

/// Finished events past the retention are deleted by the periodic sweep, however many there are
/// (the sweep deletes in chunks of `DELETE_CHUNK`); queued ones stay, however old.
#[tokio::test]
async fn finished_events_past_the_retention_are_deleted() {
    let app = TestApp::builder()
        .configure(|settings| {
            settings.inbound.retention_days = 0;
            settings.inbound.retention_sweep_secs = 2;
        })
        .spawn()
        .await;
    app.admin(native_config("short-lived")).await;
    app.call("POST", "/api/webhooks/short-lived", Some(json!({})), &[])
        .await
        .assert_ok("Webhook configurations retrieved successfully");
    let logged = within(Duration::from_secs(2), || async { !events(&app, json!({})).await.is_empty() }).await;
    assert!(logged.is_some(), "the request was not logged");
    // More old finished rows than two chunks, and one old request still queued (due tomorrow).
    let db = app.database.connect().await;
    let old = usize::try_from(hookbus_store::DELETE_CHUNK * 2 + 17).expect("a small count");
    fill_log(&db, old, "filler").await;
    let backend = db.get_database_backend();
    let tomorrow = match backend {
        DbBackend::Postgres => "now() + interval '1 day'",
        _ => "datetime('now', '+1 day')",
    };
    let old_request = match backend {
        DbBackend::Postgres => "now() - interval '1 day'",
        _ => "datetime('now', '-1 day')",
    };
    let queued = format!(
        "INSERT INTO inbound_events (id, config_id, config_key, request, raw_body, status, attempts, \
         next_attempt_at, received_at) VALUES ({}, 1, 'queued', '{{}}', '', 'Pending', 0, {tomorrow}, {old_request})",
        match backend {
            DbBackend::Postgres => "gen_random_uuid()",
            _ => "randomblob(16)",
        }
    );
    db.execute_unprepared(&queued).await.expect("queue an old request");

    let swept = within(Duration::from_secs(8), || async { app.count_rows("inbound_events").await == 1 }).await;
    assert!(swept.is_some(), "the sweep left {} events", app.count_rows("inbound_events").await);
    let left = events(&app, json!({})).await;
    assert_eq!(left.len(), 1);
    assert_eq!((left[0]["key"].clone(), left[0]["status"].clone()), (json!("queued"), json!("Pending")));
}

/// A type-2 route `key` answering with `code`, called once at `/api/webhooks/{target}` with `body`
/// as `content_type`; the request's log entry, once written.
async fn log_one(app: &TestApp, key: &str, code: &str, target: &str, content_type: &str, body: &str) -> Value {
    app.admin(with(native_config(key), json!({"commandName": null, "executionType": 2, "executionCode": code}))).await;
    let answer = app
        .client
        .post(format!("{}/api/webhooks/{target}", app.address))
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .expect("an answer");
    assert_eq!(answer.status(), 200);
    let logged = within(Duration::from_secs(2), || async { events(app, json!({"key": key})).await.len() == 1 }).await;
    assert!(logged.is_some(), "the request was not logged");
    events(app, json!({"key": key})).await.remove(0)
}

/// The log stores a body exactly (tabs, line breaks, backslashes, quotes, non-ASCII), whichever way
/// the database is written to (PostgreSQL's COPY has its own escaping); only NUL, which PostgreSQL's
/// text cannot hold, becomes U+FFFD in the raw body, on both databases. Inside the JSON columns a
/// NUL is an escape (`\u0000`) and is kept, in batched rows and in rows stored one by one alike.
/// Replay runs on the stored raw body.
#[tokio::test]
async fn the_log_keeps_a_body_with_text_format_specials_intact() {
    let app = TestApp::spawn().await;
    let sent = "tab\there\nnew line\r\nback\\slash \\N \\t \"quoted\" naïve ₦100 \0 end";
    let event = log_one(&app, "echoes", "#{ raw: raw_body, body: body }", "echoes", "text/plain", sent).await;
    let stored = sent.replace('\0', "\u{FFFD}");
    assert_eq!(event["request"]["body"], json!(sent), "the parsed body keeps its NUL inside the JSON");
    assert_eq!(event["data"]["raw"], json!(sent), "the answer's data is stored as given");
    assert_eq!(event["request"]["headers"]["content-type"], json!("text/plain"));

    let replayed = app.admin(json!({"$type": "ReplayInboundEventCommand", "id": event["id"]})).await;
    let replay = replayed.assert_ok("Inbound event replayed");
    assert_eq!(replay["data"]["raw"], json!(stored), "the stored raw body");
    assert_eq!(replay["data"]["body"], json!(sent), "a replay's row, stored one by one, keeps NUL inside the JSON");
    assert_eq!(replay["request"]["body"], json!(sent), "the request as first received");
}

/// A JSON body is stored once, as the raw text: the row's `request` column leaves out the body,
/// the key and the arrival time (all in other columns), and the queries and a replay get the whole
/// request back.
#[tokio::test]
async fn a_json_body_is_stored_once_and_read_back_whole() {
    let app = TestApp::spawn().await;
    let code = "#{ raw: raw_body, body: body, key: request.key }";
    let sent = r#"{ "ref": "marker-77", "amount": 2500.5, "items": [1, {"x": null}], "note": "naïve ₦" }"#;
    let event = log_one(&app, "once", code, "once?source=test", "application/json", sent).await;
    let db = app.database.connect().await;
    let statement = "SELECT request, raw_body FROM inbound_events WHERE config_key = 'once'";
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), statement))
        .await
        .expect("select")
        .expect("the row");
    let (request, raw_body): (String, String) =
        (row.try_get("", "request").expect("request"), row.try_get("", "raw_body").expect("raw_body"));
    assert_eq!(raw_body, sent, "the raw body is stored exactly");
    for left_out in ["marker-77", "\"body\"", "\"key\"", "\"receivedAt\""] {
        assert!(!request.contains(left_out), "the request column repeats {left_out}: {request}");
    }

    let parsed: Value = serde_json::from_str(sent).expect("JSON");
    assert_eq!(event["request"]["body"], parsed);
    assert_eq!(event["request"]["key"], json!("once"));
    assert_eq!(event["request"]["path"], json!("/api/webhooks/once"));
    assert_eq!(event["request"]["query"]["source"], json!("test"));
    let instant =
        |value: &Value| chrono::DateTime::parse_from_rfc3339(value.as_str().expect("a time")).expect("a time");
    assert_eq!(instant(&event["request"]["receivedAt"]), instant(&event["receivedAt"]));
    let one = app.inbound_event(&event["id"]).await;
    assert_eq!(one.assert_ok("Inbound event retrieved successfully")["request"], event["request"]);

    let replayed = app.admin(json!({"$type": "ReplayInboundEventCommand", "id": event["id"]})).await;
    let replay = replayed.assert_ok("Inbound event replayed");
    assert_eq!(replay["data"], json!({"raw": sent, "body": parsed, "key": "once"}));
    assert_eq!(replay["request"], event["request"]);
}

/// When the database refuses one row of a batch, the writer stores that batch's rows one by one, so
/// the refused row is the only one lost and the log goes on. A trigger stands in for whatever a
/// database may refuse; the requests are sent at once so that they land in one batch (it fills
/// for 10 ms after its first row).
#[tokio::test]
async fn a_row_the_database_refuses_costs_only_itself() {
    let app = TestApp::spawn().await;
    app.admin(with(native_config("batched"), json!({"commandName": "GetWebHookConfigByIdQuery"}))).await;
    let db = app.database.connect().await;
    let refuse: &[&str] = match db.get_database_backend() {
        DbBackend::Postgres => &[
            "CREATE FUNCTION refuse_marked() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.raw_body LIKE '%refuse-me%' THEN RAISE EXCEPTION 'refused by the test'; END IF; \
             RETURN NEW; END $$",
            "CREATE TRIGGER refuse_marked BEFORE INSERT ON inbound_events FOR EACH ROW EXECUTE FUNCTION refuse_marked()",
        ],
        _ => &["CREATE TRIGGER refuse_marked BEFORE INSERT ON inbound_events \
                WHEN NEW.raw_body LIKE '%refuse-me%' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"],
    };
    for statement in refuse {
        db.execute_unprepared(statement).await.expect("create the trigger");
    }

    let good = 15;
    let mut bodies = vec![json!({"id": 1}); good];
    bodies.insert(good / 2, json!({"id": 1, "note": "refuse-me"}));
    let calls = bodies.into_iter().map(|body| app.call("POST", "/api/webhooks/batched", Some(body), &[]));
    let answers = futures_util::future::join_all(calls).await;
    let statuses: Vec<u16> = answers.iter().map(|answer| answer.status).collect();
    assert_eq!(statuses.iter().filter(|status| **status == 200).count(), good, "{statuses:?}");

    let count = |filter: &'static str| {
        let db = &db;
        async move {
            let statement = format!("SELECT COUNT(*) AS n FROM inbound_events WHERE config_key = 'batched' {filter}");
            let row = db
                .query_one_raw(Statement::from_string(db.get_database_backend(), statement))
                .await
                .expect("count")
                .expect("a row");
            row.try_get::<i64>("", "n").expect("a count")
        }
    };
    let logged =
        within(Duration::from_secs(3), || async { count("").await == i64::try_from(good).expect("small") }).await;
    assert!(logged.is_some(), "{} of the {good} accepted rows were logged", count("").await);
    assert_eq!(count("AND raw_body LIKE '%refuse-me%'").await, 0, "the refused row is not in the log");

    // The log goes on.
    app.call("POST", "/api/webhooks/batched", Some(json!({"id": 1})), &[]).await;
    let more =
        within(Duration::from_secs(2), || async { count("").await == i64::try_from(good + 1).expect("small") }).await;
    assert!(more.is_some(), "a request after the refused row was not logged");
}

/// The async worker polls five times a second; with a long log, a poll that read the log instead
/// of the queue's partial index would cost the database more than the requests it serves.
#[tokio::test]
async fn the_async_poll_reads_the_queue_index_not_the_log() {
    let app = TestApp::spawn().await;
    let db = app.database.connect().await;
    let backend = db.get_database_backend();
    // A long log of finished plain requests, as a busy router leaves it; none of them queued.
    // (PostgreSQL plans the poll by the table's size: with 20k rows even a poll ordered by
    // `received_at` used the queue's index; with 200k it walked the log.)
    fill_log(&db, 200_000, "filler").await;

    let plan = plan_of(&db, hookbus_inbound::poll_statement(backend)).await;
    assert!(plan.contains("idx_inbound_events_next_attempt_at"), "the poll does not use the queue's index:\n{plan}");
    assert!(!plan.contains("idx_inbound_events_received_at"), "the poll reads the log in time order:\n{plan}");
}

/// The log is listed by key, newest first: the page comes from the index on key and time, read
/// in order, not from sorting all of the key's rows (or walking every key's rows in time order).
#[tokio::test]
async fn the_log_of_one_key_is_listed_from_its_index_without_a_sort() {
    let app = TestApp::spawn().await;
    let db = app.database.connect().await;
    let backend = db.get_database_backend();
    for key in ["busy", "quiet", "other"] {
        fill_log(&db, 50_000, key).await;
    }
    db.execute_unprepared("ANALYZE").await.expect("analyze");

    let plan = plan_of(&db, hookbus_inbound::list_statement(backend, "busy")).await;
    assert!(plan.contains("idx_inbound_events_key_received_at"), "the listing does not use its index:\n{plan}");
    assert!(!plan.contains("Sort") && !plan.contains("TEMP B-TREE"), "the listing sorts the key's rows:\n{plan}");
}

/// `count` finished log rows under `key`, received a second apart going back from now, written
/// straight into the table (a busy router's log, without the traffic).
async fn fill_log(db: &sea_orm::DatabaseConnection, count: usize, key: &str) {
    let fill = match db.get_database_backend() {
        DbBackend::Postgres => format!(
            "INSERT INTO inbound_events (id, config_id, config_key, request, raw_body, status, attempts, \
             received_at, completed_at) \
             SELECT gen_random_uuid(), 1, '{key}', '{{}}', '', 'Succeeded', 1, now() - i * interval '1 second', now() \
             FROM generate_series(1, {count}) AS i"
        ),
        _ => format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) \
             INSERT INTO inbound_events (id, config_id, config_key, request, raw_body, status, attempts, \
             received_at, completed_at) \
             SELECT randomblob(16), 1, '{key}', '{{}}', '', 'Succeeded', 1, datetime('now', '-' || i || ' seconds'), \
             datetime('now') FROM n"
        ),
    };
    db.execute_unprepared(&fill).await.expect("fill the log");
}

/// How the database plans `statement`, one line per step.
async fn plan_of(db: &sea_orm::DatabaseConnection, statement: Statement) -> String {
    let backend = db.get_database_backend();
    let (explain, column) = match backend {
        DbBackend::Postgres => ("EXPLAIN", "QUERY PLAN"),
        _ => ("EXPLAIN QUERY PLAN", "detail"),
    };
    let values = statement.values.map(|values| values.0).unwrap_or_default();
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(backend, format!("{explain} {}", statement.sql), values))
        .await
        .expect("a plan");
    let lines: Vec<String> = rows.iter().map(|row| row.try_get::<String>("", column).expect("a plan line")).collect();
    lines.join("\n")
}
