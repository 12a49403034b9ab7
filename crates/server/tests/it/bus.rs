//! The bus itself: what it does with input that is not a good command, and the catalog.

use serde_json::{Value, json};

use crate::support::{ADMIN_TOKEN, TestApp, assert_matches_answer_schema, native_config};

/// Every malformed request gets the envelope with its status, and nothing is written.
#[tokio::test]
async fn bad_input_gets_the_envelope_and_writes_nothing() {
    let app = TestApp::builder().body_limit(64 * 1024).spawn().await;
    let configs_before = app.count_rows("webhook_configs").await;
    let tokens_before = app.count_rows("api_tokens").await;

    let not_json = app.post_raw(Some(ADMIN_TOKEN), "application/json", b"{\"$type\": ".to_vec()).await;
    not_json.assert_error(400, "Invalid command");
    assert!(not_json.has_error("not valid JSON"), "{:?}", not_json.errors());

    let array = app.post_raw(Some(ADMIN_TOKEN), "application/json", native_config("a").to_string().into_bytes()).await;
    assert_eq!(array.status, 200, "a well-formed command is accepted: {:#}", array.body);
    let array = app.cmd(Some(ADMIN_TOKEN), json!([native_config("b")])).await;
    array.assert_error(400, "Invalid command");
    assert_eq!(array.errors(), vec!["body must be a JSON object"]);

    let missing = app.admin(json!({"key": "c"})).await;
    missing.assert_error(400, "Invalid command");
    assert_eq!(missing.errors(), vec!["missing `$type`"]);

    let not_string = app.admin(json!({"$type": 7})).await;
    not_string.assert_error(400, "Invalid command");

    let unknown = app.admin(json!({"$type": "Foo"})).await;
    unknown.assert_error(400, "Invalid command");
    assert_eq!(unknown.errors(), vec!["unknown command type 'Foo'"]);
    let text = unknown.body.to_string();
    assert!(!text.contains("CreateWebHookConfigCommand"), "must not list known types: {text}");

    let wrong_type = app.admin(json!({"$type": "GetWebHookConfigByIdQuery", "id": "seven"})).await;
    wrong_type.assert_error(422, "Validation failed");
    assert!(wrong_type.errors()[0].starts_with("id: invalid type"), "{:?}", wrong_type.errors());

    let missing_field = app.admin(json!({"$type": "ActivateWebHookConfigCommand"})).await;
    missing_field.assert_error(422, "Validation failed");
    assert!(missing_field.has_error("missing field `id`"), "{:?}", missing_field.errors());

    let unknown_field = app.admin(json!({"$type": "ActivateWebHookConfigCommand", "id": 1, "force": true})).await;
    unknown_field.assert_error(422, "Validation failed");
    assert!(unknown_field.has_error("unknown field `force`"), "{:?}", unknown_field.errors());

    let mut huge = native_config("huge");
    huge["description"] = Value::String("x".repeat(70 * 1024));
    let too_large = app.admin(huge).await;
    too_large.assert_error(413, "Payload too large");

    assert_eq!(app.count_rows("webhook_configs").await, configs_before + 1, "only the one good command wrote");
    assert_eq!(app.count_rows("api_tokens").await, tokens_before);
}

/// Every registered name dispatches to its own type: posting `{"$type": name}` never meets
/// "unknown command type", and `GET /api/bpm/commands` lists each with a permission and a schema.
#[tokio::test]
async fn every_registered_command_round_trips() {
    let app = TestApp::spawn().await;
    let catalog = app.get("/api/bpm/commands", Some(ADMIN_TOKEN)).await;
    let commands = catalog.assert_ok("Commands retrieved successfully").as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = commands.iter().filter_map(|c| c["name"].as_str()).collect();
    for expected in [
        "CreateWebHookConfigCommand",
        "UpdateWebHookConfigCommand",
        "ActivateWebHookConfigCommand",
        "DeactivateWebHookConfigCommand",
        "DeleteWebHookConfigCommand",
        "GetWebHookConfigListQuery",
        "GetWebHookConfigByIdQuery",
        "LookupWebHookByKeyCommand",
        "CreateApiTokenCommand",
        "RevokeApiTokenCommand",
        "GetApiTokenListQuery",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    for command in &commands {
        let name = command["name"].as_str().unwrap_or_default();
        assert!(command["permission"].is_string(), "{name} has no permission");
        assert_eq!(command["schema"]["type"], json!("object"), "{name}'s schema: {:#}", command["schema"]);

        // Parsing in-process: the name dispatches to a type that reports the same name.
        match hookbus_core::parse_command_value(json!({"$type": name})) {
            Ok(parsed) => assert_eq!(parsed.name(), name),
            Err(hookbus_core::CommandError::Validation(_)) => {}
            Err(other) => panic!("{name} did not dispatch: {other}"),
        }
        // And over HTTP.
        let reply = app.admin(json!({"$type": name})).await;
        assert_ne!(reply.status, 400, "{name}: {:#}", reply.body);
        assert!(reply.body["success"].is_boolean(), "{name}: {:#}", reply.body);
    }
}

#[tokio::test]
async fn the_schema_comes_from_the_rust_type() {
    let app = TestApp::spawn().await;
    let catalog = app.get("/api/bpm/commands", Some(ADMIN_TOKEN)).await;
    let commands = catalog.data().as_array().cloned().unwrap_or_default();
    let create = commands.iter().find(|c| c["name"] == "CreateWebHookConfigCommand").cloned().unwrap_or_default();
    assert_eq!(create["permission"], json!("webhooks:write"));
    let properties = &create["schema"]["properties"];
    for field in ["key", "description", "isEnabled", "path", "action", "executionType", "allowableIPs"] {
        assert!(properties.get(field).is_some(), "{field} missing: {properties:#}");
    }
    let revoke = commands.iter().find(|c| c["name"] == "RevokeApiTokenCommand").cloned().unwrap_or_default();
    assert_eq!(revoke["permission"], json!("admin"));
    assert_eq!(revoke["schema"]["required"], json!(["id"]));
    assert_eq!(revoke["answer"]["required"], json!(["id", "name", "revokedAt"]));
    let issue = commands.iter().find(|c| c["name"] == "CreateApiTokenCommand").cloned().unwrap_or_default();
    assert_eq!(issue["answer"]["properties"]["token"]["type"], json!("string"));
}

/// Every success the suite sees is checked against its command's answer schema (in
/// `TestApp::cmd`); this shows that check rejects an answer that breaks the schema.
#[tokio::test]
async fn an_answer_that_breaks_its_schema_is_caught() {
    let app = TestApp::spawn().await;
    let issued = app
        .admin(json!({"$type": "CreateApiTokenCommand", "name": "schema-check", "permissions": ["webhooks:read"]}))
        .await;
    let mut answer = issued.assert_ok("API token created successfully").clone();
    assert_matches_answer_schema("CreateApiTokenCommand", &answer);

    let token = answer.as_object_mut().and_then(|fields| fields.remove("token"));
    assert!(token.is_some());
    let missing = std::panic::catch_unwind(|| assert_matches_answer_schema("CreateApiTokenCommand", &answer));
    assert!(missing.is_err(), "an answer without its token passed the schema");

    answer["token"] = json!(42);
    let mistyped = std::panic::catch_unwind(|| assert_matches_answer_schema("CreateApiTokenCommand", &answer));
    assert!(mistyped.is_err(), "a numeric token passed the schema");
}

#[tokio::test]
async fn only_post_reaches_the_bus_and_unknown_paths_are_404() {
    let app = TestApp::spawn().await;
    let get = app.get("/api/bpm/cmd", Some(ADMIN_TOKEN)).await;
    get.assert_error(405, "Method not allowed");
    assert_eq!(get.headers.get("allow").and_then(|v| v.to_str().ok()), Some("POST"));

    let missing = app.get("/no/such/path", None).await;
    missing.assert_error(404, "Webhook configuration not found");
}
