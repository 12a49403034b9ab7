//! Group commit: publishes and queued requests that arrive together share commits, each is
//! answered only once its rows are committed, and one that the database refuses fails alone.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::{
    outbound::subscribe,
    receiver::Receiver,
    support::{TestApp, native_config, with, within},
};

/// A counter of `/metrics`, 0 when absent.
async fn counter(app: &TestApp, name: &str, writes: &str) -> u64 {
    let response = app.client.get(format!("{}/metrics", app.address)).send().await.expect("metrics");
    let text = response.text().await.expect("metrics text");
    let prefix = format!("{name}_total{{writes=\"{writes}\"}} ");
    text.lines().find_map(|line| line.strip_prefix(&prefix)).map_or(0, |n| n.parse().expect("a count"))
}

/// Sends `count` publishes at once, the `n`th with `event_id(n)`; returns the answers in order.
async fn publish_at_once(app: &TestApp, count: usize, event_id: impl Fn(usize) -> String) -> Vec<Value> {
    let publishes = (0..count).map(|n| {
        app.admin(json!({"$type": "PublishEventCommand", "eventName": "WB_Loan_Opened", "eventId": event_id(n),
                         "data": {"n": n}}))
    });
    let mut answers = Vec::new();
    for reply in join_all(publishes).await {
        assert_eq!(reply.status, 200, "{:#}", reply.body);
        assert_eq!(reply.data()["notifications"], 1, "{:#}", reply.body);
        answers.push(reply.body.clone());
    }
    answers
}

/// 32 publishes sent at once share commits: fewer commits than events, each event stored and
/// delivered once. Then 32 more, 16 of them with one `eventId` (a repeat makes its group's commit
/// fail, and the group is written again one by one): every publish is answered with success, the
/// repeats with the first's result, and each distinct event is stored and delivered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_share_commits_and_a_repeated_event_id_fails_only_itself() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    subscribe(&app, &receiver.url, &["WB_Loan_Opened"], json!({})).await;
    let commits_before = counter(&app, "hookbus_group_commits", "publish").await;
    let written_before = counter(&app, "hookbus_group_commit_writes", "publish").await;

    publish_at_once(&app, 32, |n| format!("loan-{n}")).await;
    let written = counter(&app, "hookbus_group_commit_writes", "publish").await - written_before;
    let commits = counter(&app, "hookbus_group_commits", "publish").await - commits_before;
    assert_eq!(written, 32, "every stored event counted once");
    assert!(commits < 32, "{commits} commits for 32 events: none was shared");
    assert_eq!(app.count_rows("events").await, 32);

    let answers =
        publish_at_once(&app, 32, |n| if n % 2 == 0 { "loan-x".to_owned() } else { format!("loan-{}", n + 100) }).await;
    let repeated: Vec<&Value> = answers.iter().filter(|answer| answer["data"]["eventId"] == "loan-x").collect();
    let firsts = repeated.iter().filter(|answer| answer["data"]["duplicate"] == false).count();
    assert_eq!((repeated.len(), firsts), (16, 1), "one publish of loan-x wins, the others get its result");
    for answer in repeated.iter().filter(|answer| answer["data"]["duplicate"] == true) {
        assert_eq!(answer["message"], "Event already published");
    }
    assert_eq!(app.count_rows("events").await, 49);
    assert_eq!(app.count_rows("notifications").await, 49);

    let received = receiver.wait_for(49, Duration::from_secs(10)).await;
    assert_eq!(received.len(), 49);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut numbers: Vec<(i64, String)> = receiver
        .received()
        .iter()
        .map(|r| (r.body["data"]["n"].as_i64().expect("n"), r.body["eventId"].as_str().unwrap_or_default().to_owned()))
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!((receiver.count(), numbers.len()), (49, 49), "each event delivered exactly once");
    assert_eq!(
        counter(&app, "hookbus_group_commit_writes", "publish").await - written_before,
        49,
        "every stored event counted once"
    );
}

/// A lone publish is not held back for company: it is committed and answered at once, in a
/// commit of its own.
#[tokio::test]
async fn a_lone_publish_commits_alone() {
    let app = TestApp::spawn().await;
    for n in 0..3 {
        let reply = app.admin(json!({"$type": "PublishEventCommand", "eventName": "WB_Loan_Opened", "data": {"n": n}}));
        reply.await.assert_ok("Event published successfully");
    }
    assert_eq!(counter(&app, "hookbus_group_commits", "publish").await, 3);
    assert_eq!(counter(&app, "hookbus_group_commit_writes", "publish").await, 3);
    assert_eq!(app.count_rows("events").await, 3);
}

/// 40 requests to a `respondAsync` route sent at once, 10 of them with one idempotency key: each
/// is answered 202 once its row is committed, the repeats with the first's event id; fewer commits
/// than rows wrote them; and the worker runs each stored request once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_queued_requests_share_commits_and_a_repeated_key_fails_only_itself() {
    // Nothing handed over in memory, and the worker polls at start and then after the requests
    // are in: a repeat meets its first still queued (a repeat of a finished request is answered
    // 200).
    let app = TestApp::builder()
        .configure(|s| {
            s.inbound.async_poll_ms = 1_500;
            s.inbound.async_handoff = 0;
        })
        .spawn()
        .await;
    let config = with(
        native_config("later"),
        json!({"commandName": "GetWebHookConfigByIdQuery", "respondAsync": true,
               "idempotencyKey": "header:X-Delivery-Id"}),
    );
    let created = app.admin(config).await;
    let config_id = created.data()["id"].clone();
    let body = json!({"id": config_id});

    let app = &app;
    let requests = (0..40).map(|n| {
        let key = if n % 4 == 0 { "delivery-1".to_owned() } else { format!("delivery-{}", n + 100) };
        let body = body.clone();
        async move { app.call("POST", "/api/webhooks/later", Some(body), &[("x-delivery-id", &key)]).await }
    });
    let replies = join_all(requests).await;
    let mut repeated: Vec<Value> = Vec::new();
    for (n, reply) in replies.iter().enumerate() {
        assert_eq!(reply.status, 202, "{:#}", reply.body);
        if n % 4 == 0 {
            repeated.push(reply.data()["eventId"].clone());
        }
    }
    repeated.dedup();
    assert_eq!(repeated.len(), 1, "every request with delivery-1 is told the first's event: {repeated:?}");
    let queued = "inbound_events WHERE duplicate_of IS NULL";
    assert_eq!(app.count_rows(queued).await, 31);

    let written = counter(app, "hookbus_group_commit_writes", "intake").await;
    let commits = counter(app, "hookbus_group_commits", "intake").await;
    assert_eq!(written, 31, "every stored request counted once");
    assert!(commits < 31, "{commits} commits for 31 requests: none was shared");

    let ran = within(Duration::from_secs(10), || async {
        app.count_rows("inbound_events WHERE duplicate_of IS NULL AND status = 'Succeeded'").await == 31
    })
    .await;
    assert!(ran.is_some(), "the worker did not run every stored request");
}

/// A backlog of queued requests drains round after round, not one batch per poll: 40 requests
/// queued between two polls 3 s apart all run before the poll after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_backlog_drains_without_waiting_for_the_next_poll() {
    let poll = Duration::from_secs(3);
    let started = tokio::time::Instant::now();
    let app = TestApp::builder()
        .configure(move |s| {
            s.inbound.async_poll_ms = u64::try_from(poll.as_millis()).expect("millis");
            // Through the poll, not handed over in memory.
            s.inbound.async_handoff = 0;
        })
        .spawn()
        .await;
    let config =
        with(native_config("backlog"), json!({"commandName": "GetWebHookConfigByIdQuery", "respondAsync": true}));
    let created = app.admin(config).await;
    let body = json!({"id": created.data()["id"].clone()});
    let app = &app;
    let requests = (0..40).map(|_| app.call("POST", "/api/webhooks/backlog", Some(body.clone()), &[]));
    for reply in join_all(requests).await {
        assert_eq!(reply.status, 202, "{:#}", reply.body);
    }
    assert!(started.elapsed() < poll, "the requests were queued before the second poll");

    // The second poll (at 3 s) takes a batch of 16; the third (at 6 s) would take the next.
    let succeeded = "inbound_events WHERE status = 'Succeeded' AND attempts = 1 AND lease_until IS NULL \
                     AND next_attempt_at IS NULL AND completed_at IS NOT NULL";
    tokio::time::sleep_until(started + poll * 2 - Duration::from_millis(500)).await;
    assert_eq!(app.count_rows(succeeded).await, 40, "every queued request ran once before the third poll");

    // A batch runs side by side: its outcomes share commits.
    let written = counter(app, "hookbus_group_commit_writes", "outcome").await;
    let commits = counter(app, "hookbus_group_commits", "outcome").await;
    assert_eq!(written, 40, "every outcome counted once");
    assert!(commits < 40, "{commits} commits for 40 outcomes: none was shared");
}

/// Two instances drain one queue: each queued request runs on exactly one of them, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_run_each_queued_request_once() {
    // A few handed over in memory, most claimed through the polls of both instances.
    let fast = |s: &mut hookbus_server::Settings| {
        s.inbound.async_poll_ms = 20;
        s.inbound.async_handoff = 4;
    };
    let first = TestApp::builder().configure(fast).spawn().await;
    let config =
        with(native_config("shared"), json!({"commandName": "GetWebHookConfigByIdQuery", "respondAsync": true}));
    let created = first.admin(config).await;
    // Started after the configuration was made, the second instance loads it at start.
    let second = TestApp::builder().database(std::sync::Arc::clone(&first.database)).configure(fast).spawn().await;
    let body = json!({"id": created.data()["id"].clone()});
    let (first, second) = (&first, &second);
    let requests = (0..200).map(|n| {
        let app = if n % 2 == 0 { first } else { second };
        app.call("POST", "/api/webhooks/shared", Some(body.clone()), &[])
    });
    for reply in join_all(requests).await {
        assert_eq!(reply.status, 202, "{:#}", reply.body);
    }
    let ran = within(Duration::from_secs(20), || async {
        first.count_rows("inbound_events WHERE status = 'Succeeded'").await == 200
    })
    .await;
    assert!(ran.is_some(), "the queued requests did not all run");
    assert_eq!(first.count_rows("inbound_events WHERE attempts = 1").await, 200, "a request was claimed twice");
    let by_first = counter(first, "hookbus_group_commit_writes", "outcome").await;
    let by_second = counter(second, "hookbus_group_commit_writes", "outcome").await;
    assert_eq!(by_first + by_second, 200, "each outcome written once: {by_first} + {by_second}");
}

/// A queued request whose handler fails goes back in the queue, its failure kept on it, until its
/// last attempt; then it is left `Failed`, its sealed secret headers gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_queued_request_is_retried_then_left_failed() {
    let app = TestApp::builder()
        .configure(|s| {
            s.inbound.async_poll_ms = 20;
            s.inbound.async_max_attempts = 3;
            s.inbound.async_retry_base_ms = 1_000;
        })
        .spawn()
        .await;
    let config = with(
        native_config("failing"),
        json!({"commandName": "GetWebHookConfigByIdQuery", "respondAsync": true,
               "idempotencyKey": "header:X-Delivery-Id"}),
    );
    app.admin(config).await;
    let headers = [("x-api-key", "sealed-secret"), ("x-delivery-id", "d-1")];
    let accepted = app.call("POST", "/api/webhooks/failing", Some(json!({"id": 999})), &headers).await;
    assert_eq!(accepted.status, 202, "{:#}", accepted.body);
    let id = accepted.data()["eventId"].clone();
    let app = &app;
    let event = || async {
        let event = app.inbound_event(&id).await;
        event.data().clone()
    };

    // Handed over, it waits `Pending` with no attempt counted; once its first run has failed it is
    // `Pending` again, that attempt counted and its failure on it.
    let retrying = within(Duration::from_secs(5), || async {
        let event = event().await;
        event["status"] == json!("Pending") && event["attempts"] == json!(1) && !event["httpStatus"].is_null()
    })
    .await;
    assert!(retrying.is_some(), "the failed first run was not queued again");
    let waiting = event().await;
    assert_eq!(waiting["httpStatus"], json!(404), "the failure is kept meanwhile: {waiting:#}");
    assert!(waiting["completedAt"].is_null() && waiting["nextAttemptAt"].is_string(), "{waiting:#}");
    let sealed = "inbound_events WHERE sealed_headers IS NOT NULL";
    assert_eq!(app.count_rows(sealed).await, 1, "sealed until the last run");
    // Its key is kept while it waits to be retried: a repeat is told it is queued, and not run.
    let repeat = app.call("POST", "/api/webhooks/failing", Some(json!({"id": 999})), &headers).await;
    assert_eq!(repeat.status, 202, "{:#}", repeat.body);
    assert_eq!(repeat.data()["eventId"], id, "the repeat is pointed at the first");
    assert_eq!(app.count_rows("inbound_events WHERE duplicate_of IS NULL").await, 1, "the repeat ran beside it");

    let failed = within(Duration::from_secs(10), || async { event().await["status"] == json!("Failed") }).await;
    assert!(failed.is_some(), "the request was not left failed");
    let last = event().await;
    assert_eq!(last["attempts"], json!(3), "{last:#}");
    assert_eq!(last["httpStatus"], json!(404), "{last:#}");
    assert!(last["completedAt"].is_string() && last["nextAttemptAt"].is_null(), "{last:#}");
    assert_eq!(app.count_rows(sealed).await, 0, "the secrets went with the last run");
    let key_kept = "inbound_events WHERE duplicate_of IS NULL AND idempotency_value IS NOT NULL";
    assert_eq!(app.count_rows(key_kept).await, 0, "the key is freed after the last run, so the sender may try again");
    assert_eq!(app.count_rows("inbound_events WHERE lease_until IS NOT NULL").await, 0);
}
