//! The process engine and StartProcess routes (type 3).

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    ADMIN_TOKEN, ROUTES_WRITE_CONFIGS, TestApp, TestDatabase, free_port, kill_9, native_config, ready, serve, within,
};

async fn define(app: &TestApp, name: &str, steps: Value) -> Value {
    let reply = app.admin(json!({"$type": "CreateProcessDefinitionCommand", "name": name, "steps": steps})).await;
    reply.assert_ok("Process definition created successfully")["id"].clone()
}

async fn instance(app: &TestApp, id: &Value) -> Value {
    app.admin(json!({"$type": "GetProcessInstanceByIdQuery", "id": id})).await.data().clone()
}

/// A step that creates a configuration: visible, and failing with 409 if it ever ran twice.
fn create_step(name: &str, key: &str) -> Value {
    json!({"name": name, "commandName": "CreateWebHookConfigCommand", "input": {
        "key": key, "description": "made by a process", "isEnabled": true, "path": format!("/proc/{key}"),
        "action": "POST", "executionType": 0, "commandName": "GetWebHookConfigListQuery"
    }})
}

#[tokio::test]
async fn definitions_are_checked_when_saved() {
    let app = TestApp::spawn().await;
    let bad = app
        .admin(json!({"$type": "CreateProcessDefinitionCommand", "name": " ", "steps": [
            {"name": "a", "commandName": "GetWebHookConfigByIdQuery", "code": "1"},
            {"name": "a", "commandName": "NoSuchCommand"},
            {"name": "bad name", "code": "let x = ;"},
            {"name": "c", "commandName": "GetWebHookConfigByIdQuery", "input": {"id": "$.[["}},
            {"name": "d", "commandName": "CreateApiTokenCommand"}
        ]}))
        .await;
    bad.assert_error(422, "Validation failed");
    for expected in [
        "name: Name is required",
        "steps[0]: give exactly one of commandName and code",
        "steps[1].name: 'a' is used by another step",
        "steps[1].commandName: 'NoSuchCommand' is not a registered command",
        "steps[2].name: 'bad name'",
        "steps[2].code: syntax error at line 1",
        "steps[3].input.id: '$.[[' is not a valid JSONPath",
        "steps[4].commandName: 'CreateApiTokenCommand' requires admin",
    ] {
        assert!(bad.has_error(expected), "{expected} missing from {:?}", bad.errors());
    }
    let empty = app.admin(json!({"$type": "CreateProcessDefinitionCommand", "name": "x", "steps": []})).await;
    assert!(empty.has_error("at least one step"), "{:?}", empty.errors());

    let id = define(&app, "onboarding", json!([{"name": "a", "code": "1"}])).await;
    let fetched = app.admin(json!({"$type": "GetProcessDefinitionByIdQuery", "id": id})).await;
    assert_eq!(fetched.assert_ok("Process definition retrieved successfully")["name"], json!("onboarding"));
    let listed = app.admin(json!({"$type": "GetProcessDefinitionListQuery"})).await;
    assert_eq!(listed.data()["totalCount"], json!(1));
    app.admin(json!({"$type": "GetProcessDefinitionByIdQuery", "id": 99}))
        .await
        .assert_error(404, "Process definition not found");
}

#[tokio::test]
async fn a_supervised_instance_runs_command_and_script_steps_to_the_end() {
    let app = TestApp::builder().router_permissions(ROUTES_WRITE_CONFIGS).spawn().await;
    let target = app.admin(native_config("looked-up")).await.data()["id"].clone();
    let id = define(
        &app,
        "lookup-and-score",
        json!([
            {"name": "config", "commandName": "GetWebHookConfigByIdQuery", "input": {"id": "$.configId"}},
            {"name": "score", "code": "#{ key: context.config.key, doubled: context.amount * 2 }"},
            create_step("made", "from-process")
        ]),
    )
    .await;
    let started = app
        .admin(json!({
            "$type": "StartProcessInstanceCommand", "id": id, "executionMode": "Supervised",
            "runtimeContext": format!("{{\"configId\": {target}, \"amount\": 21}}"),
        }))
        .await;
    let state = started.assert_ok("Process instance finished");
    assert_eq!(state["status"], json!("COMPLETED"), "{state:#}");
    assert_eq!(state["currentStep"], json!(3));
    assert_eq!(state["variables"]["amount"], json!(21));
    assert_eq!(state["variables"]["config"]["key"], json!("looked-up"));
    assert_eq!(state["variables"]["score"], json!({"key": "looked-up", "doubled": 42}));
    assert_eq!(state["variables"]["made"]["key"], json!("from-process"));
    let log = state["stepLog"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        log.iter().map(|s| s["name"].clone()).collect::<Vec<_>>(),
        vec![json!("config"), json!("score"), json!("made")]
    );
    assert!(log.iter().all(|s| s["startedAt"].is_string() && s["finishedAt"].is_string()));

    let bad_context = app.admin(json!({"$type": "StartProcessInstanceCommand", "id": id, "runtimeContext": [1]})).await;
    bad_context.assert_error(422, "Validation failed");
    let missing = app.admin(json!({"$type": "StartProcessInstanceCommand", "id": 999})).await;
    missing.assert_error(404, "Start failed");
}

#[tokio::test]
async fn a_failing_step_ends_the_instance_in_error() {
    let app = TestApp::spawn().await;
    let id = define(
        &app,
        "fails",
        json!([
            {"name": "ok", "code": "1"},
            {"name": "lookup", "commandName": "GetWebHookConfigByIdQuery", "input": {"id": 4242}},
            {"name": "never", "code": "2"}
        ]),
    )
    .await;
    let started = app.admin(json!({"$type": "StartProcessInstanceCommand", "id": id})).await;
    let data = started.assert_ok("Process instance started").clone();
    assert_eq!(data["status"], json!("RUNNING"));
    let instance_id = data["instanceId"].clone();
    let ended =
        within(Duration::from_secs(5), || async { instance(&app, &instance_id).await["status"] == json!("ERROR") })
            .await;
    assert!(ended.is_some(), "the instance did not end in ERROR");
    let state = instance(&app, &instance_id).await;
    assert!(state["error"].as_str().is_some_and(|e| e.contains("step 1 (lookup) failed")), "{state:#}");
    assert_eq!(state["stepLog"][1]["error"]["status"], json!(404));
    assert_eq!(state["stepLog"].as_array().map(Vec::len), Some(2), "the step after the failure never ran");

    let listed = app.admin(json!({"$type": "GetProcessInstanceListQuery", "status": "error"})).await;
    assert_eq!(listed.data()["totalCount"], json!(1));
}

#[tokio::test]
async fn a_cancelled_instance_runs_no_further_step() {
    let app = TestApp::spawn().await;
    let spin = "let n = 0; while n < 20000 { n += 1; } n";
    let steps: Vec<Value> = (0..20).map(|i| json!({"name": format!("s{i}"), "code": spin})).collect();
    let id = define(&app, "long", json!(steps)).await;
    let started = app.admin(json!({"$type": "StartProcessInstanceCommand", "id": id})).await;
    let instance_id = started.data()["instanceId"].clone();

    let deleting = app.admin(json!({"$type": "DeleteProcessDefinitionCommand", "id": id})).await;
    deleting.assert_error(409, "Deletion failed");

    let cancelled = app.admin(json!({"$type": "CancelProcessInstanceCommand", "id": instance_id})).await;
    assert_eq!(cancelled.assert_ok("Process instance cancelled")["status"], json!("CANCELLED"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let state = instance(&app, &instance_id).await;
    assert_eq!(state["status"], json!("CANCELLED"));
    let done = state["currentStep"].as_i64().unwrap_or_default();
    assert!(done < 20, "every step ran despite the cancellation");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(instance(&app, &instance_id).await["currentStep"].as_i64(), Some(done), "a step ran after it settled");

    let again = app.admin(json!({"$type": "CancelProcessInstanceCommand", "id": instance_id})).await;
    again.assert_error(409, "Cancellation failed");
    app.admin(json!({"$type": "DeleteProcessDefinitionCommand", "id": id}))
        .await
        .assert_ok("Process definition deleted successfully");
}

#[tokio::test]
async fn routes_and_scripts_start_processes() {
    let app = TestApp::spawn().await;
    let id =
        define(&app, "partner-callback", json!([{"name": "greeting", "code": r#""hello " + context.partner"#}])).await;
    let route = json!({
        "$type": "CreateWebHookConfigCommand", "key": "partner-callback", "description": "starts a process",
        "isEnabled": true, "path": "/hooks/partner/callback", "action": "POST", "executionType": 3,
        "processDefinitionId": id,
    });
    app.admin(route).await.assert_ok("Webhook configuration created successfully");
    let reply = app.call("POST", "/hooks/partner/callback", Some(json!({"partner": "acme"})), &[]).await;
    let data = reply.assert_ok("Process instance started").clone();
    assert_eq!(data["status"], json!("RUNNING"));
    let done = within(Duration::from_secs(5), || async {
        instance(&app, &data["instanceId"]).await["status"] == json!("COMPLETED")
    })
    .await;
    assert!(done.is_some());
    assert_eq!(instance(&app, &data["instanceId"]).await["variables"]["greeting"], json!("hello acme"));

    let code = format!(r#"let started = start_process({id}, #{{ partner: body.who }}); started.instanceId"#);
    let script = json!({
        "$type": "CreateWebHookConfigCommand", "key": "starter", "description": "script starting a process",
        "isEnabled": true, "path": "/hooks/starter", "action": "POST", "executionType": 2, "executionCode": code,
    });
    app.admin(script).await.assert_ok("Webhook configuration created successfully");
    let started = app.call("POST", "/hooks/starter", Some(json!({"who": "globex"})), &[]).await;
    let instance_id = started.assert_ok("Script executed successfully").clone();
    let done = within(Duration::from_secs(5), || async {
        instance(&app, &instance_id).await["variables"]["greeting"] == json!("hello globex")
    })
    .await;
    assert!(done.is_some());
}

/// The server is killed (SIGKILL) in the middle of a process; after a restart the instance
/// completes, and no completed step runs again (the create steps would fail with 409 on a second
/// run and end the instance in ERROR).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_resumes_after_kill_9_without_rerunning_steps() {
    let database = TestDatabase::create().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let start = || {
        let env = [
            ("HOOKBUS_PROCESSES__LEASE_SECS", "1"),
            ("HOOKBUS_PROCESSES__POLL_MS", "100"),
            ("HOOKBUS_SCRIPT__TIMEOUT", "10000"),
            ("HOOKBUS_SCRIPT__MAX_OPERATIONS", "100000000"),
            ("HOOKBUS_ROUTER__INTERNAL_PERMISSIONS", ROUTES_WRITE_CONFIGS),
        ];
        serve(&database.url, port, &env)
    };
    let client = reqwest::Client::new();
    let is_ready = || ready(&client, &base);
    let command = |body: Value| {
        let client = client.clone();
        let url = format!("{base}/api/bpm/cmd");
        async move {
            let response = client.post(url).bearer_auth(ADMIN_TOKEN).json(&body).send().await.expect("answer");
            response.json::<Value>().await.unwrap_or_default()
        }
    };
    let spin = json!({"code": "let n = 0; while n < 150000 { n += 1; } n"});
    let mut steps = Vec::new();
    for i in 1..=4 {
        steps.push(create_step(&format!("create{i}"), &format!("proc-{i}")));
        let mut wait = spin.clone();
        wait["name"] = json!(format!("wait{i}"));
        steps.push(wait);
    }

    let mut first = start();
    assert!(within(Duration::from_secs(20), is_ready).await.is_some(), "the server did not start");
    let definition =
        command(json!({"$type": "CreateProcessDefinitionCommand", "name": "resumable", "steps": steps})).await;
    let id = definition["data"]["id"].clone();
    let started = command(json!({"$type": "StartProcessInstanceCommand", "id": id})).await;
    let instance_id = started["data"]["instanceId"].clone();
    let get = json!({"$type": "GetProcessInstanceByIdQuery", "id": instance_id});

    // Kill it part-way, while a wait step runs (an odd next step): a step that is running when the
    // server dies runs again after the restart, and a create step run twice would fail. Killing
    // inside a wait step makes every create step before the kill a completed one.
    let midway = within(Duration::from_secs(20), || async {
        command(get.clone()).await["data"]["currentStep"].as_i64().is_some_and(|n| n >= 2 && n % 2 == 1)
    })
    .await;
    assert!(midway.is_some(), "the process did not get going");
    kill_9(&mut first);

    // Killed part-way: still RUNNING, some steps done, some not.
    let db = database.connect().await;
    use sea_orm::{ConnectionTrait, Statement};
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT status, current_step FROM process_instances",
        ))
        .await
        .expect("query")
        .expect("the instance");
    assert_eq!(row.try_get::<String>("", "status").ok().as_deref(), Some("RUNNING"));
    let at_kill = row.try_get::<i32>("", "current_step").unwrap_or_default();
    assert!((2..8).contains(&at_kill), "killed at step {at_kill}: make the steps slower");
    assert_eq!(at_kill % 2, 1, "killed outside a wait step (step {at_kill}): make the wait steps slower");

    let mut second = start();
    assert!(within(Duration::from_secs(20), is_ready).await.is_some(), "the server did not restart");
    let done = within(Duration::from_secs(30), || async {
        let status = command(get.clone()).await["data"]["status"].clone();
        status == json!("COMPLETED") || status == json!("ERROR")
    })
    .await;
    let state = command(get.clone()).await;
    let _ = second.kill();
    let _ = second.wait();
    assert!(done.is_some(), "the instance did not finish after the restart: {state:#}");
    assert_eq!(state["data"]["status"], json!("COMPLETED"), "a step ran twice: {state:#}");
    assert_eq!(state["data"]["stepLog"].as_array().map(Vec::len), Some(8));
}
