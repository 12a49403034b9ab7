//! The script workbench: dry runs of saved and draft configurations, always rolled back.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    outbound::subscribe,
    receiver::Receiver,
    support::{ROUTES_WRITE_CONFIGS, TestApp, native_config, with},
};

fn script(key: &str, code: &str) -> Value {
    with(native_config(key), json!({"commandName": null, "executionType": 2, "executionCode": code}))
}

/// A script that logs, creates a configuration, publishes an event and starts nothing else.
const BUSY: &str = r#"
    log("creating for " + body.ref);
    let made = command("CreateWebHookConfigCommand", #{
        key: "made-" + body.ref, description: "made by a script", isEnabled: true,
        path: "/made/" + body.ref, action: "POST", executionType: 0, commandName: "GetWebHookConfigListQuery"
    });
    publish("WB_Loan_Created", #{ loanId: body.ref });
    if body.fail == true { throw "failed after writing"; }
    #{ made: made.key }
"#;

async fn config_count(app: &TestApp) -> u64 {
    let reply = app.admin(json!({"$type": "GetWebHookConfigListQuery"})).await;
    reply.assert_ok("Webhook configurations retrieved successfully")["totalCount"].as_u64().unwrap_or_default()
}

fn dry_run(target: Value, request: Value) -> Value {
    with(json!({"$type": "TestWebHookConfigCommand", "request": request}), target)
}

#[tokio::test]
async fn a_dry_run_reports_everything_and_leaves_nothing_behind() {
    let app = TestApp::builder().router_permissions(ROUTES_WRITE_CONFIGS).spawn().await;
    let receiver = Receiver::start().await;
    subscribe(&app, &receiver.url, &["WB_Loan_Created"], json!({})).await;
    // Saved inactive: the router answers 404 for it, a dry run runs it.
    let saved = app.admin(with(script("busy", BUSY), json!({"isEnabled": false}))).await;
    let id = saved.assert_ok("Webhook configuration created successfully")["id"].clone();
    let before = config_count(&app).await;

    let reply = app.admin(dry_run(json!({"id": id}), json!({"body": {"ref": "R1"}}))).await;
    let run = reply.assert_ok("Dry run completed").clone();
    assert_eq!(run["status"], 200);
    assert_eq!(run["response"]["data"], json!({"made": "made-R1"}));
    assert_eq!(run["response"]["message"], "Script executed successfully");
    assert_eq!(run["logs"], json!(["creating for R1"]));
    let names: Vec<&str> =
        run["commands"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["CreateWebHookConfigCommand", "PublishEventCommand"]);
    assert_eq!(run["commands"][0]["success"], true);
    assert_eq!(run["commands"][0]["input"]["key"], "made-R1");
    assert_eq!(run["events"][0]["eventName"], "WB_Loan_Created");
    assert_eq!(run["events"][0]["data"], json!({"loanId": "R1"}));
    assert_eq!(run["processes"], json!([]));
    assert!(run["scriptOperations"].as_u64().unwrap_or_default() > 0, "{run:#}");
    assert!(run["durationMs"].is_u64());

    // Nothing stays: no configuration, no event, no delivery, no log entry.
    assert_eq!(config_count(&app).await, before, "the dry run's configuration stayed");
    app.settled().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.count(), 0);
    assert_eq!(app.count_rows("events").await, 0);
    assert_eq!(app.count_rows("inbound_events").await, 0);

    // A failing run says what the caller would have got.
    let reply = app.admin(dry_run(json!({"id": id}), json!({"body": {"ref": "R2", "fail": true}}))).await;
    let run = reply.assert_ok("Dry run completed; the route failed").clone();
    assert_eq!(run["status"], 422);
    assert_eq!(run["response"]["message"], "Script failed");
    assert_eq!(run["response"]["success"], false);
    assert_eq!(config_count(&app).await, before);
}

#[tokio::test]
async fn a_draft_runs_with_the_callers_authority_and_admission_is_checked() {
    let app = TestApp::spawn().await;
    let draft = json!({"description": "draft", "isEnabled": true, "path": "/draft", "action": "POST",
                       "executionType": 2, "allowableIPs": "10.0.0.0/8",
                       "executionCode": "if body.amount <= 0 { reject(400, \"amount must be positive\"); } #{ ok: body.amount }"});
    let request = |body: Value| json!({"body": body, "ip": "10.1.2.3"});
    let reply = app.admin(dry_run(json!({"config": draft}), request(json!({"amount": 5})))).await;
    assert_eq!(reply.assert_ok("Dry run completed")["response"]["data"], json!({"ok": 5}));
    let reply = app.admin(dry_run(json!({"config": draft}), request(json!({"amount": 0})))).await;
    let run = reply.assert_ok("Dry run completed; the route failed").clone();
    assert_eq!(
        (run["status"].as_u64(), run["response"]["message"].as_str()),
        (Some(400), Some("amount must be positive"))
    );

    // The router's admission: the method and the caller's address.
    let reply = app.admin(dry_run(json!({"config": draft}), json!({"method": "GET", "ip": "10.1.2.3"}))).await;
    assert_eq!(reply.assert_ok("Dry run completed; the route failed")["status"], 405);
    let reply = app.admin(dry_run(json!({"config": draft}), json!({"ip": "192.0.2.1"}))).await;
    assert_eq!(reply.assert_ok("Dry run completed; the route failed")["status"], 403);

    // A draft is checked as a save would check it.
    let broken = with(draft.clone(), json!({"executionCode": "let x = ;"}));
    let reply = app.admin(dry_run(json!({"config": broken}), json!({}))).await;
    assert_eq!(reply.status, 422, "{:#}", reply.body);
    for (target, status) in [(json!({}), 422), (json!({"id": 1, "config": draft}), 422), (json!({"id": 4040}), 404)] {
        let reply = app.admin(dry_run(target.clone(), json!({}))).await;
        assert_eq!(reply.status, status, "{target}: {:#}", reply.body);
    }
    let (_, reader) = app.token(&["webhooks:read"]).await;
    let reply = app.cmd(Some(&reader), dry_run(json!({"config": draft}), json!({}))).await;
    assert_eq!(reply.status, 403, "{:#}", reply.body);
}

#[tokio::test]
async fn a_secrets_value_never_appears_in_a_dry_run() {
    let app = TestApp::builder().router_permissions(&format!("{ROUTES_WRITE_CONFIGS},secrets:read")).spawn().await;
    let value = "Sup3r-Secret-Value-123";
    app.admin(json!({"$type": "SetScriptSecretCommand", "name": "key", "value": value}))
        .await
        .assert_ok("Script secret saved");
    let code = r#"
        let key = secret("key");
        log("the key is " + key);
        let found = command("GetWebHookConfigListQuery", #{ searchText: key });
        #{ key: key, signed: hmac_sha256_hex(key, raw_body) }
    "#;
    let id = app.admin(script("secretive", code)).await.assert_ok("Webhook configuration created successfully")["id"]
        .clone();
    let reply = app.admin(dry_run(json!({"id": id}), json!({"rawBody": "{\"a\":1}"}))).await;
    let run = reply.assert_ok("Dry run completed").clone();
    assert!(!reply.body.to_string().contains(value), "{:#}", reply.body);
    assert_eq!(run["logs"], json!(["the key is ***"]));
    assert_eq!(run["commands"][0]["input"]["searchText"], "***");
    assert_eq!(run["response"]["data"]["key"], "***");
    assert_eq!(run["response"]["data"]["signed"].as_str().map(str::len), Some(64));
}

#[tokio::test]
async fn a_filter_test_says_whether_an_event_is_delivered_and_which_rule_decided() {
    let app = TestApp::spawn().await;
    let extra = json!({"resource": "loan/1",
                       "filters": {"attributes": ["/status"], "match": ["$[?(@.amount > 100)]"]}});
    let (id, _) = subscribe(&app, "https://partner.example.com/hooks", &["WB_Loan_Opened"], extra).await;
    let test = |event: Value| json!({"$type": "TestSubscriptionFilterCommand", "id": id, "event": event});
    let event = |changes: Value| {
        with(
            json!({"eventName": "WB_Loan_Opened", "resource": "loan/1", "data": {"amount": 500},
                    "changedAttributes": ["/status"]}),
            changes,
        )
    };
    for (changes, delivered, decided_by) in [
        (json!({}), true, "all"),
        (json!({"eventName": "WB_Send_Sms"}), false, "events"),
        (json!({"resource": "loan/2"}), false, "resource"),
        (json!({"changedAttributes": ["/fees/1"]}), false, "filters.attributes"),
        (json!({"data": {"amount": 50}}), false, "filters.match[0]"),
    ] {
        let reply = app.admin(test(event(changes.clone()))).await;
        let decision = reply.assert_ok("Filter tested");
        assert_eq!(decision["delivered"], delivered, "{changes}: {decision:#}");
        assert_eq!(decision["decidedBy"], decided_by, "{changes}: {decision:#}");
    }

    // An unsaved subscription: every event unless `events` is given.
    let unsaved = json!({"$type": "TestSubscriptionFilterCommand", "filters": {"match": ["$.data.vip"]},
                         "event": {"eventName": "WB_Send_Sms", "data": {"vip": true}}});
    assert_eq!(app.admin(unsaved.clone()).await.assert_ok("Filter tested")["delivered"], true);
    let refused = with(unsaved.clone(), json!({"events": ["WB_Send_Otp"]}));
    assert_eq!(app.admin(refused).await.assert_ok("Filter tested")["decidedBy"], "events");
    let bad = with(unsaved, json!({"filters": {"match": ["$["]}}));
    assert_eq!(app.admin(bad).await.status, 422);

    // Another owner's subscription does not exist for a bound token.
    let reply = app
        .admin(json!({"$type": "CreateApiTokenCommand", "name": "other", "permissions": ["subscriptions:read"],
                      "partnerId": "0d9c8b7a-6e5f-4d3c-8b2a-1f0e9d8c7b6a"}))
        .await;
    let token = reply.assert_ok("API token created successfully")["token"].as_str().unwrap_or_default().to_owned();
    let reply = app.cmd(Some(&token), test(event(json!({})))).await;
    assert_eq!(reply.status, 404, "{:#}", reply.body);
}
