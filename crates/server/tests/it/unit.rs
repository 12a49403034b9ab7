//! A routed request is one unit of work: what its commands write commits when the route succeeds
//! and is rolled back when it fails; events it published are delivered, and processes it started
//! run, only once it commits. The inbound log records every request either way.

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

fn chain(key: &str, steps: Value) -> Value {
    with(native_config(key), json!({"commandName": null, "executionType": 1, "commandChain": steps}))
}

async fn configs(app: &TestApp) -> Vec<String> {
    let reply = app.admin(json!({"$type": "GetWebHookConfigListQuery", "pageSize": 100})).await;
    let items = reply.assert_ok("Webhook configurations retrieved successfully")["items"].clone();
    items.as_array().into_iter().flatten().filter_map(|c| c["key"].as_str().map(str::to_owned)).collect()
}

async fn logged_statuses(app: &TestApp, key: &str) -> Vec<String> {
    app.settled().await;
    let reply = app.admin(json!({"$type": "GetInboundEventListQuery", "key": key, "pageSize": 100})).await;
    let items = reply.assert_ok("Inbound events retrieved successfully")["items"].clone();
    items.as_array().into_iter().flatten().filter_map(|e| e["status"].as_str().map(str::to_owned)).collect()
}

/// The config a script or step creates: `made-<ref>`.
fn made(reference: &str) -> Value {
    json!({"key": format!("made-{reference}"), "description": "made by a route", "isEnabled": true,
           "path": format!("/made/{reference}"), "action": "POST", "executionType": 0,
           "commandName": "GetWebHookConfigListQuery"})
}

#[tokio::test]
async fn a_script_that_publishes_then_throws_publishes_nothing() {
    let app = TestApp::builder().router_permissions(ROUTES_WRITE_CONFIGS).spawn().await;
    let receiver = Receiver::start().await;
    subscribe(&app, &receiver.url, &["WB_Loan_Created"], json!({})).await;
    let code = r#"
        publish("WB_Loan_Created", #{ loanId: body.loan });
        command("CreateWebHookConfigCommand", #{
            key: "made-" + body.loan, description: "made by a route", isEnabled: true,
            path: "/made/" + body.loan, action: "POST", executionType: 0, commandName: "GetWebHookConfigListQuery"
        });
        if body.fail { throw "a later line failed"; }
        #{ published: true }
    "#;
    app.admin(script("loans", code)).await.assert_ok("Webhook configuration created successfully");

    let reply = app.call("POST", "/api/webhooks/loans", Some(json!({"loan": "L1", "fail": true})), &[]).await;
    reply.assert_error(422, "Script failed");
    app.settled().await;
    assert_eq!(receiver.count(), 0, "a rolled-back event reached the partner");
    assert_eq!(app.count_rows("events").await, 0);
    assert_eq!(app.count_rows("notifications").await, 0);
    assert!(!configs(&app).await.contains(&"made-L1".to_owned()), "the script's command was not rolled back");

    // The provider retries; the route succeeds once: one event, one delivery.
    let reply = app.call("POST", "/api/webhooks/loans", Some(json!({"loan": "L1", "fail": false})), &[]).await;
    reply.assert_ok("Script executed successfully");
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].body["data"]["loanId"], "L1");
    app.settled().await;
    assert_eq!(receiver.count(), 1);
    assert_eq!(app.count_rows("events").await, 1);
    assert!(configs(&app).await.contains(&"made-L1".to_owned()));
    let metrics = app.client.get(format!("{}/metrics", app.address)).send().await.expect("metrics");
    let metrics = metrics.text().await.unwrap_or_default();
    assert!(metrics.contains("hookbus_events_published_total 1"), "{metrics}");

    assert_eq!(logged_statuses(&app, "loans").await, ["Succeeded", "Failed"], "both requests are logged");
}

#[tokio::test]
async fn a_chain_whose_second_step_fails_leaves_no_row_of_its_first() {
    let app = TestApp::builder().router_permissions(ROUTES_WRITE_CONFIGS).spawn().await;
    let steps = |continue_on_error: bool| {
        json!([
            {"commandName": "CreateWebHookConfigCommand", "input": made("chained")},
            {"commandName": "GetWebHookConfigByIdQuery", "input": {"id": 4040}, "continueOnError": continue_on_error},
        ])
    };
    app.admin(chain("strict", steps(false))).await.assert_ok("Webhook configuration created successfully");
    let reply = app.call("POST", "/api/webhooks/strict", Some(json!({})), &[]).await;
    reply.assert_error(404, "Step 1 (GetWebHookConfigByIdQuery) failed");
    assert!(!configs(&app).await.contains(&"made-chained".to_owned()), "the first step's row stayed");
    assert_eq!(logged_statuses(&app, "strict").await, ["Failed"]);

    // A step that may fail does not fail the route: the first step's row commits.
    app.admin(chain("lenient", steps(true))).await.assert_ok("Webhook configuration created successfully");
    app.call("POST", "/api/webhooks/lenient", Some(json!({})), &[]).await.assert_ok("Command chain completed");
    assert!(configs(&app).await.contains(&"made-chained".to_owned()));
}

#[tokio::test]
async fn a_rejected_script_starts_no_process_and_a_successful_one_starts_it_after_commit() {
    let app = TestApp::builder().router_permissions(ROUTES_WRITE_CONFIGS).spawn().await;
    let steps = json!([{"name": "make", "commandName": "CreateWebHookConfigCommand", "input": made("by-process")}]);
    let reply = app.admin(json!({"$type": "CreateProcessDefinitionCommand", "name": "maker", "steps": steps})).await;
    let definition = reply.assert_ok("Process definition created successfully")["id"].clone();
    let code = format!(
        r#"let started = start_process({definition}, #{{}});
           if body.reject {{ reject(400, "refused after starting"); }}
           #{{ instance: started.instanceId }}"#
    );
    app.admin(script("starter", &code)).await.assert_ok("Webhook configuration created successfully");

    let reply = app.call("POST", "/api/webhooks/starter", Some(json!({"reject": true})), &[]).await;
    reply.assert_error(400, "refused after starting");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.count_rows("process_instances").await, 0, "a rolled-back start left an instance");
    assert!(!configs(&app).await.contains(&"made-by-process".to_owned()), "a rolled-back process ran");

    let reply = app.call("POST", "/api/webhooks/starter", Some(json!({"reject": false})), &[]).await;
    let instance = reply.assert_ok("Script executed successfully")["instance"].clone();
    let finished = crate::support::within(Duration::from_secs(10), || async {
        let reply = app.admin(json!({"$type": "GetProcessInstanceByIdQuery", "id": instance})).await;
        reply.data()["status"] == "COMPLETED"
    })
    .await;
    assert!(finished.is_some(), "the process did not run after the route committed");
    assert!(configs(&app).await.contains(&"made-by-process".to_owned()));
}

#[tokio::test]
async fn a_route_that_only_reads_answers_as_before_and_a_replay_is_refused_inside_a_route() {
    let app = TestApp::builder().router_permissions(ROUTES_WRITE_CONFIGS).spawn().await;
    app.admin(native_config("reader")).await.assert_ok("Webhook configuration created successfully");
    let reply = app.call("POST", "/hooks/reader", Some(json!({"pageSize": 1})), &[]).await;
    assert_eq!(reply.assert_ok("Webhook configurations retrieved successfully")["totalCount"], 1);

    // A replay is a routed request with a unit of its own: not inside another.
    let replaying = with(native_config("replaying"), json!({"commandName": "ReplayInboundEventCommand"}));
    app.admin(replaying).await.assert_ok("Webhook configuration created successfully");
    let id = "0192f0c4-0000-7000-8000-000000000000";
    let reply = app.call("POST", "/api/webhooks/replaying", Some(json!({"id": id})), &[]).await;
    reply.assert_error(422, "Not available in routed requests");
    assert!(reply.has_error("cannot run inside a routed request"), "{:#}", reply.body);
}

#[tokio::test]
async fn a_process_step_that_fails_leaves_none_of_its_writes() {
    let app = TestApp::builder().router_permissions(ROUTES_WRITE_CONFIGS).spawn().await;
    let code = r#"
        command("CreateWebHookConfigCommand", #{
            key: "made-by-step", description: "made by a step", isEnabled: true,
            path: "/made/by-step", action: "POST", executionType: 0, commandName: "GetWebHookConfigListQuery"
        });
        if context.fail { throw "the step failed after writing"; }
        #{ made: true }
    "#;
    let steps = json!([{"name": "make", "code": code}]);
    let reply = app.admin(json!({"$type": "CreateProcessDefinitionCommand", "name": "stepper", "steps": steps})).await;
    let definition = reply.assert_ok("Process definition created successfully")["id"].clone();
    let start = |fail: bool| {
        json!({"$type": "StartProcessInstanceCommand", "id": definition, "executionMode": "Supervised",
               "runtimeContext": {"fail": fail}})
    };
    let reply = app.admin(start(true)).await;
    assert_eq!(reply.assert_ok("Process instance finished")["status"], "ERROR", "{:#}", reply.body);
    assert!(!configs(&app).await.contains(&"made-by-step".to_owned()), "the failed step's write stayed");

    let reply = app.admin(start(false)).await;
    assert_eq!(reply.assert_ok("Process instance finished")["status"], "COMPLETED", "{:#}", reply.body);
    assert!(configs(&app).await.contains(&"made-by-step".to_owned()));
}
