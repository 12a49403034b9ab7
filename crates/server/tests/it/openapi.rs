//! The OpenAPI document: served to callers with a token, printed by `hookbus openapi`, and true
//! to what the server answers.

use serde_json::{Value, json};

use crate::support::{ADMIN_TOKEN, TestApp, hookbus};

async fn document(app: &TestApp) -> Value {
    let reply = app.get("/api/openapi.json", Some(ADMIN_TOKEN)).await;
    assert_eq!(reply.status, 200, "{:#}", reply.body);
    reply.body
}

#[tokio::test]
async fn the_document_describes_every_command_route_and_catalog_event() {
    let app = TestApp::spawn().await;
    app.get("/api/openapi.json", None).await.assert_error(401, "Unauthorized");
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");

    let bus = &doc["paths"]["/api/bpm/cmd"]["post"];
    let variants = bus["requestBody"]["content"]["application/json"]["schema"]["oneOf"].as_array().cloned();
    let catalog = hookbus_core::catalog();
    assert_eq!(variants.map(|v| v.len()), Some(catalog.len()));
    for info in &catalog {
        let reference = bus["x-answers"][info.name]["$ref"].as_str().unwrap_or_default();
        let name = reference.trim_start_matches("#/components/schemas/");
        assert!(doc["components"]["schemas"][name].is_object(), "{}'s answer {reference} is missing", info.name);
        let command = &doc["components"]["schemas"][info.name];
        assert_eq!(command["properties"]["$type"]["const"], info.name);
        assert_eq!(command["x-permission"], info.permission.as_str());
    }
    for path in [
        "/api/Webhook/register",
        "/api/Webhook/unregister",
        "/api/Webhook/update-all",
        "/api/Webhook/get-registered-webhooks",
        "/api/Webhook/update-webhook-uri",
        "/api/Webhook/generate-simulated-webhook",
        "/api/Webhook/subscription",
        "/api/webhooks/{key}",
        "/api/webhooks/mono/callback",
        "/api/webhooks/remita",
        "/api/webhooks/remita/collection-notification",
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/bpm/commands",
        "/api/openapi.json",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearerAuth"]["scheme"], "bearer");

    // The webhooks: one per catalog event, with the Standard Webhooks headers.
    let webhooks = doc["webhooks"].as_object().cloned().unwrap_or_default();
    assert!(webhooks.contains_key("WB_Loan_Opened") && webhooks.contains_key("hookbus.notification.expired"));
    let headers: Vec<&str> = webhooks["WB_Loan_Opened"]["post"]["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(headers, ["webhook-id", "webhook-timestamp", "webhook-signature"]);

    // A registered event appears as soon as it is in the catalog.
    app.admin(json!({"$type": "RegisterEventTypeCommand", "name": "ACME_Invoice_Paid",
                     "description": "An invoice was paid", "samplePayload": {"invoice": 7}}))
        .await
        .assert_ok("Event type registered successfully");
    let doc = document(&app).await;
    let invoice = &doc["webhooks"]["ACME_Invoice_Paid"]["post"];
    assert_eq!(invoice["summary"], "An invoice was paid");
    assert_eq!(invoice["requestBody"]["content"]["application/json"]["example"]["data"], json!({"invoice": 7}));
}

#[tokio::test]
async fn the_cli_prints_the_document_with_the_built_in_events() {
    let app = TestApp::spawn().await;
    let served = document(&app).await;
    let output = hookbus(&app.database.url).arg("openapi").output().expect("hookbus runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(printed["paths"], served["paths"]);
    assert_eq!(printed["components"], served["components"]);
    assert_eq!(printed["webhooks"], served["webhooks"], "no event registered: the same catalog");
}

/// A delivery's body matches the schema the `webhooks` entries give it.
#[tokio::test]
async fn a_delivery_matches_its_documented_body() {
    let app = TestApp::spawn().await;
    let receiver = crate::receiver::Receiver::start().await;
    crate::outbound::subscribe(&app, &receiver.url, &["WB_Loan_Opened"], json!({})).await;
    app.admin(json!({"$type": "PublishEventCommand", "eventName": "WB_Loan_Opened", "resource": "loan/42",
                     "data": {"loanId": 42}, "changedAttributes": ["/status"]}))
        .await
        .assert_ok("Event published successfully");
    let got = receiver.wait_for(1, std::time::Duration::from_secs(10)).await;
    let doc = document(&app).await;
    let mut schema =
        doc["webhooks"]["WB_Loan_Opened"]["post"]["requestBody"]["content"]["application/json"]["schema"].clone();
    schema["components"] = doc["components"].clone();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator.iter_errors(&got[0].body).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}: {:#}", got[0].body);
}
