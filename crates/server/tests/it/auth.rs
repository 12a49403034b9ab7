//! Who may run what: the authentication and permission matrix.

use std::time::Duration;

use serde_json::json;

use crate::support::{ADMIN_TOKEN, TestApp, native_config, with};

fn list() -> serde_json::Value {
    json!({"$type": "GetWebHookConfigListQuery"})
}

#[tokio::test]
async fn no_token_or_a_bad_one_is_401() {
    let app = TestApp::spawn().await;
    app.cmd(None, list()).await.assert_error(401, "Unauthorized");
    app.cmd(Some("hbk_not-a-real-token"), list()).await.assert_error(401, "Unauthorized");
    app.cmd(Some(""), list()).await.assert_error(401, "Unauthorized");

    let basic = app
        .client
        .post(format!("{}/api/bpm/cmd", app.address))
        .header("authorization", format!("Basic {ADMIN_TOKEN}"))
        .json(&list())
        .send()
        .await
        .expect("answer");
    assert_eq!(basic.status(), 401, "only the Bearer scheme is accepted");

    // A 401 comes before any look at the body: nothing about commands leaks.
    let unknown = app.cmd(None, json!({"$type": "Foo"})).await;
    unknown.assert_error(401, "Unauthorized");
    app.get("/api/bpm/commands", None).await.assert_error(401, "Unauthorized");
}

#[tokio::test]
async fn a_token_needs_the_commands_permission() {
    let app = TestApp::spawn().await;
    let (_, reader) = app.token(&["webhooks:read"]).await;
    let (_, writer) = app.token(&["webhooks:write"]).await;

    app.cmd(Some(&reader), list()).await.assert_ok("Webhook configurations retrieved successfully");
    let denied = app.cmd(Some(&reader), native_config("denied")).await;
    denied.assert_error(403, "Forbidden");
    assert_eq!(denied.errors(), vec!["requires permission webhooks:write"]);
    assert_eq!(app.count_rows("webhook_configs").await, 0, "a forbidden command writes nothing");

    // A configuration runs its command with its saver's authority: saving one needs the
    // permission of the command it runs, here webhooks:read.
    let unrunnable = app.cmd(Some(&writer), native_config("unrunnable")).await;
    unrunnable.assert_error(403, "Forbidden");
    assert_eq!(
        unrunnable.errors(),
        vec![
            "commandName: GetWebHookConfigListQuery requires permission webhooks:read, which this token does not have"
        ]
    );
    let runnable = with(native_config("allowed"), json!({"commandName": "DeactivateWebHookConfigCommand"}));
    app.cmd(Some(&writer), runnable).await.assert_ok("Webhook configuration created successfully");
    let no_read = app.cmd(Some(&writer), list()).await;
    no_read.assert_error(403, "Forbidden");
    assert_eq!(no_read.errors(), vec!["requires permission webhooks:read"]);

    // Token management needs admin, which only admin grants.
    let escalate =
        app.cmd(Some(&writer), json!({"$type": "CreateApiTokenCommand", "name": "x", "permissions": ["admin"]})).await;
    escalate.assert_error(403, "Forbidden");
    assert_eq!(escalate.errors(), vec!["requires permission admin"]);
}

#[tokio::test]
async fn admin_implies_every_permission() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.token(&["admin"]).await;
    app.cmd(Some(&admin), native_config("by-admin")).await.assert_ok("Webhook configuration created successfully");
    app.cmd(Some(&admin), list()).await.assert_ok("Webhook configurations retrieved successfully");
    app.cmd(Some(&admin), json!({"$type": "GetApiTokenListQuery"}))
        .await
        .assert_ok("API tokens retrieved successfully");
}

#[tokio::test]
async fn a_revoked_token_is_refused_at_once() {
    let app = TestApp::spawn().await;
    let (id, token) = app.token(&["webhooks:read"]).await;
    app.cmd(Some(&token), list()).await.assert_ok("Webhook configurations retrieved successfully");
    app.admin(json!({"$type": "RevokeApiTokenCommand", "id": id})).await.assert_ok("API token revoked successfully");
    app.cmd(Some(&token), list()).await.assert_error(401, "Unauthorized");
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let app = TestApp::spawn().await;
    let expires_at = (chrono::Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
    let reply = app
        .admin(json!({
            "$type": "CreateApiTokenCommand", "name": "short-lived",
            "permissions": ["webhooks:read"], "expiresAt": expires_at,
        }))
        .await;
    let token = reply.assert_ok("API token created successfully")["token"].as_str().unwrap_or_default().to_owned();
    app.cmd(Some(&token), list()).await.assert_ok("Webhook configurations retrieved successfully");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    app.cmd(Some(&token), list()).await.assert_error(401, "Unauthorized");
}

#[tokio::test]
async fn an_owner_bound_token_carries_its_owner() {
    let app = TestApp::spawn().await;
    let partner = "5f0c6a8e-3d6b-4a53-9b1e-2a8f6f0e9c11";
    let reply = app
        .admin(json!({
            "$type": "CreateApiTokenCommand", "name": "partner", "permissions": ["webhooks:read"], "partnerId": partner,
        }))
        .await;
    let data = reply.assert_ok("API token created successfully");
    assert_eq!(data["partnerId"], json!(partner));
    let token = data["token"].as_str().unwrap_or_default().to_owned();
    app.cmd(Some(&token), list()).await.assert_ok("Webhook configurations retrieved successfully");
    // The binding does not widen what the token may do.
    app.cmd(Some(&token), native_config("bound")).await.assert_error(403, "Forbidden");

    let listed = app.admin(json!({"$type": "GetApiTokenListQuery"})).await;
    let items = listed.data()["items"].as_array().cloned().unwrap_or_default();
    assert!(items.iter().any(|t| t["partnerId"] == json!(partner)), "{items:?}");

    let both = app
        .admin(json!({
            "$type": "CreateApiTokenCommand", "name": "both", "permissions": ["webhooks:read"],
            "partnerId": partner, "customerId": "cust-1",
        }))
        .await;
    both.assert_error(422, "Validation failed");
    assert!(both.has_error("partnerId"), "{:?}", both.errors());

    let not_guid = app
        .admin(json!({
            "$type": "CreateApiTokenCommand", "name": "bad", "permissions": ["webhooks:read"], "partnerId": "p-1",
        }))
        .await;
    not_guid.assert_error(422, "Validation failed");
    assert!(not_guid.errors()[0].starts_with("partnerId:"), "{:?}", not_guid.errors());
}

#[tokio::test]
async fn the_bootstrap_token_is_admin() {
    let app = TestApp::spawn().await;
    app.cmd(Some(ADMIN_TOKEN), json!({"$type": "GetApiTokenListQuery"}))
        .await
        .assert_ok("API tokens retrieved successfully");
}
