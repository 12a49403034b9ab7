//! Token commands and revocation across instances.

use std::{sync::Arc, time::Duration};

use serde_json::json;

use crate::support::{TestApp, within};

#[tokio::test]
async fn a_token_is_shown_once_and_stored_hashed() {
    let app = TestApp::spawn().await;
    let reply = app
        .admin(
            json!({"$type": "CreateApiTokenCommand", "name": "ci", "permissions": ["webhooks:read", "inbound:read"]}),
        )
        .await;
    let data = reply.assert_ok("API token created successfully").clone();
    let token = data["token"].as_str().unwrap_or_default().to_owned();
    assert!(token.starts_with("hbk_") && token.len() > 40, "{token}");
    assert_eq!(data["name"], json!("ci"));
    assert_eq!(data["permissions"], json!(["webhooks:read", "inbound:read"]));

    let listed = app.admin(json!({"$type": "GetApiTokenListQuery", "pageSize": 5})).await;
    let page = listed.assert_ok("API tokens retrieved successfully");
    assert_eq!(page["totalCount"], json!(1));
    assert_eq!(page["pageSize"], json!(5));
    assert!(!page.to_string().contains(&token), "the list never shows a token");
    assert!(page["items"][0].get("token").is_none());

    // Only a hash is at rest.
    let db = app.database.connect().await;
    use sea_orm::{ConnectionTrait, Statement};
    let backend = db.get_database_backend();
    let rows =
        db.query_all_raw(Statement::from_string(backend, "SELECT token_hash FROM api_tokens")).await.expect("select");
    let stored: Vec<String> = rows.iter().filter_map(|r| r.try_get::<String>("", "token_hash").ok()).collect();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], token);
    assert!(!stored[0].contains(token.trim_start_matches("hbk_")));
}

#[tokio::test]
async fn token_rules_are_checked() {
    let app = TestApp::spawn().await;
    let empty = app.admin(json!({"$type": "CreateApiTokenCommand", "name": " ", "permissions": []})).await;
    empty.assert_error(422, "Validation failed");
    assert!(empty.has_error("Name is required") && empty.has_error("at least one permission"), "{:?}", empty.errors());

    let unknown = app.admin(json!({"$type": "CreateApiTokenCommand", "name": "x", "permissions": ["root"]})).await;
    unknown.assert_error(422, "Validation failed");
    assert!(unknown.errors()[0].starts_with("permissions[0]:"), "{:?}", unknown.errors());

    let past = app
        .admin(json!({
            "$type": "CreateApiTokenCommand", "name": "x", "permissions": ["admin"], "expiresAt": "2020-01-01T00:00:00Z",
        }))
        .await;
    past.assert_error(422, "Validation failed");
    assert!(past.has_error("expiresAt"), "{:?}", past.errors());
    assert_eq!(app.count_rows("api_tokens").await, 0);
}

#[tokio::test]
async fn revoking_twice_or_an_unknown_token() {
    let app = TestApp::spawn().await;
    let (id, _) = app.token(&["webhooks:read"]).await;
    let revoked = app.admin(json!({"$type": "RevokeApiTokenCommand", "id": id})).await;
    let data = revoked.assert_ok("API token revoked successfully");
    assert_eq!(data["id"], json!(id));
    assert!(data["revokedAt"].as_str().is_some_and(|t| t.ends_with('Z')));

    let again = app.admin(json!({"$type": "RevokeApiTokenCommand", "id": id})).await;
    again.assert_error(409, "Revocation failed");
    assert_eq!(again.errors(), vec!["Token is already revoked"]);

    let unknown =
        app.admin(json!({"$type": "RevokeApiTokenCommand", "id": "0192f0c4-0000-7000-8000-000000000000"})).await;
    unknown.assert_error(404, "Revocation failed");
}

/// Two servers on one database: a token revoked through one stops working on the other within
/// two seconds, even though the other had it cached.
#[tokio::test]
async fn a_revocation_reaches_every_instance_within_two_seconds() {
    let first = TestApp::spawn().await;
    let second = TestApp::builder().database(Arc::clone(&first.database)).spawn().await;
    let (id, token) = first.token(&["webhooks:read"]).await;
    let list = json!({"$type": "GetWebHookConfigListQuery"});
    second.cmd(Some(&token), list.clone()).await.assert_ok("Webhook configurations retrieved successfully");

    first.admin(json!({"$type": "RevokeApiTokenCommand", "id": id})).await.assert_ok("API token revoked successfully");
    first.cmd(Some(&token), list.clone()).await.assert_error(401, "Unauthorized");
    let took =
        within(Duration::from_secs(2), || async { second.cmd(Some(&token), list.clone()).await.status == 401 }).await;
    assert!(took.is_some(), "the second instance still accepted the token after 2 s");
}
