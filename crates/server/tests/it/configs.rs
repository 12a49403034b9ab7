//! The eight router-configuration commands: every message and status.

use serde_json::{Value, json};

use crate::support::{Reply, TestApp, native_config, with};

async fn create(app: &TestApp, command: Value) -> Value {
    app.admin(command).await.assert_ok("Webhook configuration created successfully").clone()
}

#[track_caller]
fn assert_invalid(reply: &Reply, expected: &str) {
    reply.assert_error(422, "Validation failed");
    assert!(reply.has_error(expected), "expected an error containing {expected:?}, got {:?}", reply.errors());
}

#[tokio::test]
async fn create_returns_the_stored_configuration() {
    let app = TestApp::spawn().await;
    let config = create(
        &app,
        with(native_config("nibss.payments_v1"), json!({"action": "post", "allowableIPs": "10.0.0.0/8, 192.168.1.7"})),
    )
    .await;
    assert!(config["id"].as_i64().is_some_and(|id| id > 0));
    assert_eq!(config["key"], json!("nibss.payments_v1"));
    assert_eq!(config["action"], json!("POST"), "methods are stored upper-case");
    assert_eq!(config["executionType"], json!(0));
    assert_eq!(config["commandName"], json!("GetWebHookConfigListQuery"));
    assert_eq!(config["allowableIPs"], json!("10.0.0.0/8,192.168.1.7"));
    assert_eq!(config["respondAsync"], json!(false));
    assert!(config["createdAt"].as_str().is_some_and(|t| t.ends_with('Z')));

    let fetched = app.admin(json!({"$type": "GetWebHookConfigByIdQuery", "id": config["id"]})).await;
    assert_eq!(fetched.assert_ok("Webhook configuration retrieved successfully"), &config);
}

#[tokio::test]
async fn create_reports_every_missing_field_at_once() {
    let app = TestApp::spawn().await;
    let reply = app.admin(json!({"$type": "CreateWebHookConfigCommand"})).await;
    reply.assert_error(422, "Validation failed");
    for expected in [
        "Key is required",
        "Description is required",
        "IsEnabled is required",
        "Path is required",
        "Action is required",
        "ExecutionType is required",
    ] {
        assert!(reply.errors().iter().any(|e| e == expected), "{expected} missing from {:?}", reply.errors());
    }
}

#[tokio::test]
async fn key_rules() {
    let app = TestApp::spawn().await;
    assert_invalid(&app.admin(with(native_config("x"), json!({"key": "has space"}))).await, "Key may contain only");
    assert_invalid(&app.admin(with(native_config("x"), json!({"key": "k".repeat(101)}))).await, "at most 100");
    assert_invalid(&app.admin(with(native_config("x"), json!({"key": "mono"}))).await, "reserved");
    assert_invalid(&app.admin(with(native_config("x"), json!({"key": "Remita"}))).await, "reserved");
    assert_eq!(app.count_rows("webhook_configs").await, 0);
}

#[tokio::test]
async fn path_and_action_rules() {
    let app = TestApp::spawn().await;
    let cases = [
        (json!({"path": "hooks/x"}), "Path must start with '/'"),
        (json!({"path": "/api/bpm/cmd"}), "reserved path /api/bpm"),
        (json!({"path": "/api/webhooks/mono/callback"}), "reserved path /api/webhooks"),
        (json!({"path": "/healthz"}), "reserved path /healthz"),
        (json!({"path": "/metrics"}), "reserved path /metrics"),
        (json!({"path": "/a/../b"}), "segments"),
        (json!({"action": "OPTIONS"}), "Action 'OPTIONS' is not one of"),
        (json!({"executionType": 7}), "executionType 7 is not one of"),
        (json!({"description": "   "}), "Description is required"),
    ];
    for (change, expected) in cases {
        assert_invalid(&app.admin(with(native_config("x"), change)).await, expected);
    }
    for method in ["get", "Put", "PATCH", "delete"] {
        let key = format!("m-{}", method.to_lowercase());
        let config = create(&app, with(native_config(&key), json!({"action": method}))).await;
        assert_eq!(config["action"], json!(method.to_uppercase()));
    }
}

#[tokio::test]
async fn exactly_the_field_of_the_execution_type() {
    let app = TestApp::spawn().await;
    let base = with(native_config("x"), json!({"commandName": null}));

    assert_invalid(&app.admin(base.clone()).await, "commandName is required for executionType 0");
    assert_invalid(
        &app.admin(with(base.clone(), json!({"executionType": 1}))).await,
        "commandChain is required for executionType 1",
    );
    assert_invalid(
        &app.admin(with(base.clone(), json!({"executionType": 2}))).await,
        "executionCode is required for executionType 2",
    );
    assert_invalid(
        &app.admin(with(base.clone(), json!({"executionType": 3}))).await,
        "processDefinitionId is required for executionType 3",
    );
    let both = with(base.clone(), json!({"commandName": "GetWebHookConfigListQuery", "executionCode": "1"}));
    assert_invalid(&app.admin(both).await, "executionCode must not be given for executionType 0");

    assert_invalid(
        &app.admin(with(base.clone(), json!({"commandName": "NoSuchCommand"}))).await,
        "'NoSuchCommand' is not a registered command",
    );
    assert_invalid(
        &app.admin(with(base.clone(), json!({"commandName": "CreateApiTokenCommand"}))).await,
        "requires admin",
    );
    assert_eq!(app.count_rows("webhook_configs").await, 0);
}

#[tokio::test]
async fn scripts_are_compiled_when_saved() {
    let app = TestApp::spawn().await;
    let script = |code: &str| {
        with(native_config("script"), json!({"commandName": null, "executionType": 2, "executionCode": code}))
    };
    let bad = app.admin(script("let total = 1;\nlet fee = ;\ntotal")).await;
    assert_invalid(&bad, "executionCode: syntax error at line 2, column 11");
    assert_invalid(&app.admin(script(r#"eval("1")"#)).await, "executionCode");

    let config = create(&app, script("let amount = body.amount;\namount * 2")).await;
    assert_eq!(config["executionType"], json!(2));
    assert_eq!(config["executionCode"], json!("let amount = body.amount;\namount * 2"));
    assert_eq!(config["commandName"], Value::Null);
}

#[tokio::test]
async fn command_chains_are_checked_when_saved() {
    let app = TestApp::spawn().await;
    let chain = |steps: Value| {
        with(native_config("chain"), json!({"commandName": null, "executionType": 1, "commandChain": steps}))
    };
    assert_invalid(&app.admin(chain(json!([]))).await, "at least one step");
    assert_invalid(
        &app.admin(chain(json!([{"commandName": "GetWebHookConfigByIdQuery", "input": {"id": "$.body.[["}}]))).await,
        "commandChain[0].input.id: '$.body.[[' is not a valid JSONPath",
    );
    assert_invalid(&app.admin(chain(json!([{"commandName": "Nope"}]))).await, "commandChain[0].commandName");

    let steps = json!([
        {"commandName": "GetWebHookConfigByIdQuery", "input": {"id": "$.body.configId"}},
        {"commandName": "GetWebHookConfigListQuery", "input": {"pageSize": 5, "searchText": "$.last.key"}, "continueOnError": true}
    ]);
    let config = create(&app, chain(steps)).await;
    assert_eq!(config["commandChain"][1]["continueOnError"], json!(true));
    assert_eq!(config["commandChain"][0]["input"]["id"], json!("$.body.configId"));
}

#[tokio::test]
async fn allow_lists_and_idempotency_keys_are_parsed_when_saved() {
    let app = TestApp::spawn().await;
    let bad_ips =
        app.admin(with(native_config("x"), json!({"allowableIPs": "10.0.0.1, 300.1.1.1, 10.0.0.0/40"}))).await;
    bad_ips.assert_error(422, "Validation failed");
    assert_eq!(
        bad_ips.errors(),
        vec![
            "allowableIPs: '300.1.1.1' is not an IP address or CIDR range",
            "allowableIPs: '10.0.0.0/40' is not an IP address or CIDR range",
        ]
    );
    assert_invalid(&app.admin(with(native_config("x"), json!({"idempotencyKey": "$.[["}))).await, "idempotencyKey");
    assert_invalid(&app.admin(with(native_config("x"), json!({"idempotencyKey": "header:"}))).await, "idempotencyKey");

    let config = create(
        &app,
        with(
            native_config("ok"),
            json!({"allowableIPs": "2001:db8::/32,::1", "idempotencyKey": "header:X-Event-Id", "respondAsync": true}),
        ),
    )
    .await;
    assert_eq!(config["allowableIPs"], json!("2001:db8::/32,::1"));
    assert_eq!(config["idempotencyKey"], json!("header:x-event-id"));
    assert_eq!(config["respondAsync"], json!(true));
}

#[tokio::test]
async fn start_process_takes_a_definition_id() {
    let app = TestApp::spawn().await;
    let process = |id: Value| {
        with(native_config("proc"), json!({"commandName": null, "executionType": 3, "processDefinitionId": id}))
    };
    assert_invalid(&app.admin(process(json!(0))).await, "processDefinitionId must be a positive integer");
    assert_invalid(&app.admin(process(json!(12))).await, "processDefinitionId: no process definition has id 12");
    let definition = app
        .admin(json!({"$type": "CreateProcessDefinitionCommand", "name": "p", "steps": [{"name": "a", "code": "1"}]}))
        .await;
    let id = definition.assert_ok("Process definition created successfully")["id"].clone();
    let config = create(&app, process(id.clone())).await;
    assert_eq!(config["processDefinitionId"], id);
}

#[tokio::test]
async fn keys_and_paths_are_unique_and_reusable_after_delete() {
    let app = TestApp::spawn().await;
    let first = create(&app, native_config("dup")).await;

    let same_key = app.admin(with(native_config("dup"), json!({"path": "/other"}))).await;
    same_key.assert_error(409, "A webhook configuration with this key already exists");
    let same_path = app.admin(with(native_config("other"), json!({"path": "/hooks/dup"}))).await;
    same_path.assert_error(409, "A webhook configuration with this path already exists");
    assert_eq!(app.count_rows("webhook_configs").await, 1);

    let deleted = app.admin(json!({"$type": "DeleteWebHookConfigCommand", "id": first["id"]})).await;
    let data = deleted.assert_ok("Webhook configuration deleted successfully");
    assert_eq!(data["id"], first["id"]);
    assert_eq!(data["key"], json!("dup"));
    assert!(data["deletedAt"].is_string());
    create(&app, native_config("dup")).await;
}

#[tokio::test]
async fn update_replaces_everything_but_the_key() {
    let app = TestApp::spawn().await;
    let original = create(&app, native_config("upd")).await;
    let update = json!({
        "$type": "UpdateWebHookConfigCommand", "id": original["id"],
        "description": "now a script", "isEnabled": false, "path": "/hooks/upd-v2", "action": "put",
        "executionType": 2, "executionCode": "body",
    });
    let reply = app.admin(update.clone()).await;
    let updated = reply.assert_ok("Webhook configuration updated successfully");
    assert_eq!(updated["key"], json!("upd"));
    assert_eq!(updated["executionType"], json!(2));
    assert_eq!(updated["commandName"], Value::Null, "full replacement clears the old type's field");
    assert_eq!(updated["action"], json!("PUT"));
    assert_eq!(updated["isEnabled"], json!(false));
    assert_eq!(updated["createdAt"], original["createdAt"]);

    let missing = app.admin(with(update.clone(), json!({"id": 9999}))).await;
    missing.assert_error(404, "Update failed");
    assert_eq!(missing.errors(), vec!["Configuration not found"]);

    let with_key = app.admin(with(update.clone(), json!({"key": "renamed"}))).await;
    assert_invalid(&with_key, "Key cannot be changed");

    let partial =
        app.admin(json!({"$type": "UpdateWebHookConfigCommand", "id": original["id"], "description": "x"})).await;
    assert_invalid(&partial, "Path is required");

    create(&app, native_config("taken")).await;
    let clash = app.admin(with(update, json!({"path": "/hooks/taken"}))).await;
    clash.assert_error(409, "A webhook configuration with this path already exists");
}

#[tokio::test]
async fn activate_and_deactivate() {
    let app = TestApp::spawn().await;
    let config = create(&app, with(native_config("toggle"), json!({"isEnabled": false}))).await;
    let id = config["id"].clone();

    let activated = app.admin(json!({"$type": "ActivateWebHookConfigCommand", "id": id})).await;
    let data = activated.assert_ok("Webhook configuration activated successfully");
    assert_eq!(data["id"], id);
    assert_eq!(data["key"], json!("toggle"));
    assert_eq!(data["isEnabled"], json!(true));
    assert!(data["activatedAt"].is_string());

    let again = app.admin(json!({"$type": "ActivateWebHookConfigCommand", "id": id})).await;
    again.assert_error(409, "Activation failed");
    assert_eq!(again.errors(), vec!["Configuration is already active"]);

    let deactivated = app.admin(json!({"$type": "DeactivateWebHookConfigCommand", "id": id})).await;
    let data = deactivated.assert_ok("Webhook configuration deactivated successfully");
    assert_eq!(data["isEnabled"], json!(false));
    assert!(data["deactivatedAt"].is_string());

    let again = app.admin(json!({"$type": "DeactivateWebHookConfigCommand", "id": id})).await;
    again.assert_error(409, "Deactivation failed");
    assert_eq!(again.errors(), vec!["Configuration is already inactive"]);

    let missing = app.admin(json!({"$type": "ActivateWebHookConfigCommand", "id": 4242})).await;
    missing.assert_error(404, "Activation failed");
    assert_eq!(missing.errors(), vec!["Configuration not found"]);
    let missing = app.admin(json!({"$type": "DeactivateWebHookConfigCommand", "id": 4242})).await;
    missing.assert_error(404, "Deactivation failed");
    let missing = app.admin(json!({"$type": "DeleteWebHookConfigCommand", "id": 4242})).await;
    missing.assert_error(404, "Deletion failed");
    assert_eq!(missing.errors(), vec!["Configuration not found"]);
}

#[tokio::test]
async fn get_by_id_and_lookup_by_key() {
    let app = TestApp::spawn().await;
    let missing = app.admin(json!({"$type": "GetWebHookConfigByIdQuery", "id": 77})).await;
    missing.assert_error(404, "Configuration not found");
    assert_eq!(missing.errors(), vec!["No webhook configuration found with the specified ID"]);

    let a = create(&app, native_config("alpha")).await;
    let b = create(&app, native_config("beta")).await;
    let found = app.admin(json!({"$type": "LookupWebHookByKeyCommand", "key": "beta"})).await;
    assert_eq!(found.assert_ok("Webhook configuration found"), &b);

    let lost = app.admin(json!({"$type": "LookupWebHookByKeyCommand", "key": "gamma"})).await;
    lost.assert_error(404, "Lookup failed");
    assert_eq!(lost.errors(), vec!["No webhook configuration found with the specified key"]);

    for all in [json!({"$type": "LookupWebHookByKeyCommand"}), json!({"$type": "LookupWebHookByKeyCommand", "key": ""})]
    {
        let reply = app.admin(all).await;
        assert_eq!(reply.assert_ok("Webhook configuration found"), &json!([a, b]));
    }
}

#[tokio::test]
async fn list_pages_and_filters() {
    let app = TestApp::spawn().await;
    for i in 0..12 {
        let key = format!("svc-{i:02}");
        let mut command = with(native_config(&key), json!({"isEnabled": i % 2 == 0}));
        if i == 3 {
            command = with(command, json!({"description": "Paystack SETTLEMENT feed"}));
        }
        if i == 5 {
            command = with(command, json!({"commandName": null, "executionType": 2, "executionCode": "body"}));
        }
        create(&app, command).await;
    }
    let page = |query: Value| {
        let app = &app;
        async move {
            let reply = app.admin(with(json!({"$type": "GetWebHookConfigListQuery"}), query)).await;
            reply.assert_ok("Webhook configurations retrieved successfully").clone()
        }
    };

    let first = page(json!({})).await;
    assert_eq!(
        (first["totalCount"].clone(), first["pageNumber"].clone(), first["pageSize"].clone()),
        (json!(12), json!(1), json!(10))
    );
    assert_eq!(first["items"].as_array().map(Vec::len), Some(10));
    let second = page(json!({"pageNumber": 2, "pageSize": 10})).await;
    assert_eq!(second["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(second["items"][0]["key"], json!("svc-10"));

    let search = page(json!({"searchText": "settlement"})).await;
    assert_eq!(search["totalCount"], json!(1), "search is case-insensitive over the description");
    assert_eq!(page(json!({"searchText": "/HOOKS/SVC-1"})).await["totalCount"], json!(2), "and over the path");
    assert_eq!(page(json!({"searchText": "svc-0"})).await["totalCount"], json!(10), "and over the key");
    assert_eq!(page(json!({"searchText": "100%_"})).await["totalCount"], json!(0), "wildcards are literal");

    assert_eq!(page(json!({"isEnabled": true})).await["totalCount"], json!(6));
    assert_eq!(page(json!({"executionType": 2})).await["totalCount"], json!(1));
    assert_eq!(page(json!({"executionType": 0, "isEnabled": false})).await["totalCount"], json!(5));

    let too_big = app.admin(json!({"$type": "GetWebHookConfigListQuery", "pageSize": 101})).await;
    assert_invalid(&too_big, "pageSize must be between 1 and 100");
    let zero = app.admin(json!({"$type": "GetWebHookConfigListQuery", "pageNumber": 0})).await;
    assert_invalid(&zero, "pageNumber must be 1 or more");
}

/// Concurrent creates of one key: exactly one wins, every other gets the 409, none a 500, and one
/// row exists. Shows that the writes are atomic under contention on either database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_key_conflict_cleanly() {
    let app = TestApp::spawn().await;
    let attempts = (0..16).map(|i| {
        let command = with(native_config("race"), json!({"path": format!("/hooks/race-{i}")}));
        app.admin(command)
    });
    let replies = futures_util::future::join_all(attempts).await;
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 409), "{statuses:?}");
    for reply in replies.iter().filter(|r| r.status == 409) {
        reply.assert_error(409, "A webhook configuration with this key already exists");
    }
    assert_eq!(app.count_rows("webhook_configs").await, 1);
}

/// Two instances on one database: a configuration created through one is found through the other
/// at once; an update or delete reaches the other within two seconds; each instance reads its own
/// writes immediately.
#[tokio::test]
async fn changes_reach_every_instance_within_two_seconds() {
    let first = TestApp::spawn().await;
    let second = TestApp::builder().database(std::sync::Arc::clone(&first.database)).spawn().await;
    let created = create(&first, native_config("shared")).await;
    let id = created["id"].clone();
    let get = json!({"$type": "GetWebHookConfigByIdQuery", "id": id});
    let by_key = json!({"$type": "LookupWebHookByKeyCommand", "key": "shared"});

    let seen = second.admin(get.clone()).await;
    assert_eq!(seen.assert_ok("Webhook configuration retrieved successfully")["key"], json!("shared"));
    second.admin(by_key.clone()).await.assert_ok("Webhook configuration found");

    let update = with(
        native_config("shared"),
        json!({"$type": "UpdateWebHookConfigCommand", "id": id, "key": null, "description": "changed"}),
    );
    first.admin(update).await.assert_ok("Webhook configuration updated successfully");
    let own = first.admin(get.clone()).await;
    assert_eq!(own.data()["description"], json!("changed"), "the writing instance reads its write at once");
    let took = crate::support::within(std::time::Duration::from_secs(2), || async {
        second.admin(get.clone()).await.data()["description"] == json!("changed")
    })
    .await;
    assert!(took.is_some(), "the update did not reach the second instance within 2 s");

    first
        .admin(json!({"$type": "DeleteWebHookConfigCommand", "id": id}))
        .await
        .assert_ok("Webhook configuration deleted successfully");
    first.admin(get.clone()).await.assert_error(404, "Configuration not found");
    let took = crate::support::within(std::time::Duration::from_secs(2), || async {
        second.admin(get.clone()).await.status == 404 && second.admin(by_key.clone()).await.status == 404
    })
    .await;
    assert!(took.is_some(), "the delete did not reach the second instance within 2 s");
}

/// A type-2 configuration whose script answers `{"from": label}`.
fn labelled_script(key: &str, label: &str) -> Value {
    with(
        native_config(key),
        json!({"executionType": 2, "commandName": null,
               "executionCode": format!("#{{ from: \"{label}\" }}")}),
    )
}

async fn versions(app: &TestApp, id: &Value) -> Vec<Value> {
    let reply = app.admin(json!({"$type": "GetWebHookConfigVersionsQuery", "id": id})).await;
    reply.assert_ok("Webhook configuration versions retrieved successfully").as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn every_change_keeps_a_version_and_rollback_makes_an_old_one_current() {
    let app = TestApp::spawn().await;
    let created = create(&app, labelled_script("versioned", "first")).await;
    let id = created["id"].clone();
    let update = with(
        labelled_script("versioned", "second"),
        json!({"$type": "UpdateWebHookConfigCommand", "id": id, "key": null}),
    );
    app.admin(update).await.assert_ok("Webhook configuration updated successfully");
    let toggle = |name: &str| json!({"$type": name, "id": id});
    app.admin(toggle("DeactivateWebHookConfigCommand"))
        .await
        .assert_ok("Webhook configuration deactivated successfully");
    app.admin(toggle("ActivateWebHookConfigCommand")).await.assert_ok("Webhook configuration activated successfully");

    let history = versions(&app, &id).await;
    let changes: Vec<&str> = history.iter().filter_map(|v| v["change"].as_str()).collect();
    assert_eq!(changes, ["activated", "deactivated", "updated", "created"], "newest first: {history:#?}");
    let numbers: Vec<i64> = history.iter().filter_map(|v| v["version"].as_i64()).collect();
    assert_eq!(numbers, [4, 3, 2, 1]);
    assert!(history.iter().all(|v| v["changedBy"] == "bootstrap" && v["changedAt"].is_string()), "{history:#?}");
    assert_eq!(history[3]["config"]["executionCode"], "#{ from: \"first\" }");
    assert_eq!(history[2]["config"]["executionCode"], "#{ from: \"second\" }");
    assert_eq!(history[1]["config"]["isEnabled"], false);

    let reply = app.call("POST", "/api/webhooks/versioned", Some(json!({})), &[]).await;
    assert_eq!(reply.body["data"]["from"], "second", "{:#}", reply.body);

    // Back to version 1: its script, still enabled, as version 5; history is not rewritten.
    let reply = app.admin(json!({"$type": "RollbackWebHookConfigCommand", "id": id, "version": 1})).await;
    let current = reply.assert_ok("Webhook configuration rolled back to version 1");
    assert_eq!(current["executionCode"], "#{ from: \"first\" }");
    assert_eq!(current["isEnabled"], true);
    let reply = app.call("POST", "/api/webhooks/versioned", Some(json!({})), &[]).await;
    assert_eq!(reply.body["data"]["from"], "first", "the router runs the rolled-back script: {:#}", reply.body);
    let history = versions(&app, &id).await;
    assert_eq!(history.len(), 5);
    assert_eq!((history[0]["version"].as_i64(), history[0]["change"].as_str()), (Some(5), Some("rolledBack")));

    // The log names the version that handled each request; a replay runs any version.
    app.settled().await;
    let reply = app.admin(json!({"$type": "GetInboundEventListQuery", "key": "versioned", "pageSize": 10})).await;
    let logged =
        reply.assert_ok("Inbound events retrieved successfully")["items"].as_array().cloned().unwrap_or_default();
    let handled: Vec<(Option<&str>, Option<i64>)> =
        logged.iter().map(|e| (e["data"]["from"].as_str(), e["configVersion"].as_i64())).collect();
    assert_eq!(handled.len(), 2, "{logged:#?}");
    assert!(handled.contains(&(Some("second"), Some(4))) && handled.contains(&(Some("first"), Some(5))), "{handled:?}");
    let original = logged.iter().find(|e| e["configVersion"] == 4).expect("the run of version 4")["id"].clone();
    let replay = |version: Value| json!({"$type": "ReplayInboundEventCommand", "id": original, "version": version});
    let reply = app.admin(replay(json!(2))).await;
    let event = reply.assert_ok("Inbound event replayed");
    assert_eq!((event["data"]["from"].as_str(), event["configVersion"].as_i64()), (Some("second"), Some(2)));
    let reply = app.admin(replay(Value::Null)).await;
    let event = reply.assert_ok("Inbound event replayed");
    assert_eq!((event["data"]["from"].as_str(), event["configVersion"].as_i64()), (Some("first"), Some(5)));
    app.admin(replay(json!(99))).await.assert_error(404, "Replay failed");

    for (command, status, message) in [
        (json!({"$type": "RollbackWebHookConfigCommand", "id": id, "version": 99}), 404, "Rollback failed"),
        (json!({"$type": "RollbackWebHookConfigCommand", "id": 4242, "version": 1}), 404, "Rollback failed"),
        (json!({"$type": "GetWebHookConfigVersionsQuery", "id": 4242}), 404, "Not found"),
        (json!({"$type": "RollbackWebHookConfigCommand", "id": id}), 422, "Validation failed"),
    ] {
        app.admin(command).await.assert_error(status, message);
    }
    // Reading the history needs webhooks:read; rolling back, webhooks:write.
    let (_, reader) = app.token(&["webhooks:read"]).await;
    let reply = app.cmd(Some(&reader), json!({"$type": "GetWebHookConfigVersionsQuery", "id": id})).await;
    reply.assert_ok("Webhook configuration versions retrieved successfully");
    let reply = app.cmd(Some(&reader), json!({"$type": "RollbackWebHookConfigCommand", "id": id, "version": 2})).await;
    assert_eq!(reply.status, 403, "{:#}", reply.body);
}

#[tokio::test]
async fn a_deleted_configuration_keeps_its_history_until_the_retention() {
    let app = TestApp::spawn().await;
    let id = create(&app, labelled_script("short-lived", "only")).await["id"].clone();
    app.admin(json!({"$type": "DeleteWebHookConfigCommand", "id": id}))
        .await
        .assert_ok("Webhook configuration deleted successfully");
    let history = versions(&app, &id).await;
    let changes: Vec<&str> = history.iter().filter_map(|v| v["change"].as_str()).collect();
    assert_eq!(changes, ["deleted", "created"]);
    assert_eq!(history[0]["config"]["executionCode"], "#{ from: \"only\" }", "its last state");
    app.admin(json!({"$type": "RollbackWebHookConfigCommand", "id": id, "version": 1}))
        .await
        .assert_error(404, "Rollback failed");

    // A new configuration under the same key has a history of its own.
    let again = create(&app, labelled_script("short-lived", "again")).await["id"].clone();
    assert_ne!(again, id);
    assert_eq!(versions(&app, &again).await.len(), 1);
    assert_eq!(versions(&app, &id).await.len(), 2);
}

#[tokio::test]
async fn deleted_histories_are_swept_after_the_retention_and_live_ones_stay() {
    let app = TestApp::builder()
        .configure(|settings| {
            settings.inbound.retention_days = 0;
            settings.inbound.retention_sweep_secs = 1;
        })
        .spawn()
        .await;
    let gone = create(&app, labelled_script("gone", "x")).await["id"].clone();
    let kept = create(&app, labelled_script("kept", "y")).await["id"].clone();
    app.admin(json!({"$type": "DeleteWebHookConfigCommand", "id": gone}))
        .await
        .assert_ok("Webhook configuration deleted successfully");
    let swept = crate::support::within(std::time::Duration::from_secs(5), || async {
        app.admin(json!({"$type": "GetWebHookConfigVersionsQuery", "id": gone})).await.status == 404
    })
    .await;
    assert!(swept.is_some(), "the deleted configuration's history was kept past the retention");
    assert_eq!(versions(&app, &kept).await.len(), 1, "a live configuration's history stays");
}

#[tokio::test]
async fn a_rollback_reaches_a_second_instance_within_the_refresh_interval() {
    let first = TestApp::spawn().await;
    let second = TestApp::builder().database(std::sync::Arc::clone(&first.database)).spawn().await;
    let id = create(&first, labelled_script("shared-script", "first")).await["id"].clone();
    let update = with(
        labelled_script("shared-script", "second"),
        json!({"$type": "UpdateWebHookConfigCommand", "id": id, "key": null}),
    );
    first.admin(update).await.assert_ok("Webhook configuration updated successfully");
    let runs = |label: &'static str| {
        let second = &second;
        async move {
            second.call("POST", "/api/webhooks/shared-script", Some(json!({})), &[]).await.body["data"]["from"] == label
        }
    };
    assert!(crate::support::within(std::time::Duration::from_secs(2), || runs("second")).await.is_some());
    first
        .admin(json!({"$type": "RollbackWebHookConfigCommand", "id": id, "version": 1}))
        .await
        .assert_ok("Webhook configuration rolled back to version 1");
    let took = crate::support::within(std::time::Duration::from_secs(2), || runs("first")).await;
    assert!(took.is_some(), "the second instance did not run the rolled-back script within 2 s");
}
