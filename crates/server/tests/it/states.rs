//! States are types: a stored state hookbus does not know is an error when read, never taken for
//! another state.

use serde_json::json;

use crate::{
    outbound::subscribe,
    receiver::Receiver,
    support::{TestApp, native_config},
};

#[tokio::test]
async fn an_unknown_stored_state_is_an_error_not_a_default() {
    use sea_orm::ConnectionTrait;
    let app = TestApp::spawn().await;
    let db = app.database.connect().await;
    let receiver = Receiver::start().await;
    let (subscription, _) = subscribe(&app, &receiver.url, &["WB_Send_Sms"], json!({})).await;
    let published = app
        .admin(json!({"$type": "PublishEventCommand", "eventName": "WB_Send_Sms", "data": {}}))
        .await
        .assert_ok("Event published successfully")
        .clone();
    receiver.wait_for(1, std::time::Duration::from_secs(10)).await;
    app.admin(native_config("states")).await.assert_ok("Webhook configuration created successfully");
    app.call("POST", "/api/webhooks/states", Some(json!({})), &[]).await;
    let definition = app
        .admin(json!({"$type": "CreateProcessDefinitionCommand", "name": "p", "steps": [{"name": "a", "code": "1"}]}))
        .await;
    let started = app
        .admin(json!({"$type": "StartProcessInstanceCommand", "id": definition.data()["id"], "executionMode": "Supervised"}))
        .await;
    let instance = started.assert_ok("Process instance finished")["instanceId"].clone();
    // Everything is written; now each state column gets a value hookbus never writes.
    let list = app.admin(json!({"$type": "GetNotificationListQuery", "status": "Delivered"})).await;
    assert_eq!(list.data()["totalCount"], json!(1), "{published:#}");
    // The log is written in batches, a moment after the answer.
    let logged = || async {
        app.admin(json!({"$type": "GetInboundEventListQuery", "key": "states"})).await.data()["totalCount"] == 1
    };
    assert!(crate::support::within(std::time::Duration::from_secs(10), logged).await.is_some());
    let inbound = app.admin(json!({"$type": "GetInboundEventListQuery", "key": "states"})).await;
    let inbound_id = inbound.data()["items"][0]["id"].clone();
    for sql in [
        "UPDATE notifications SET status = 'Lost'",
        "UPDATE subscriptions SET delivery_policy = 'sometimes'",
        "UPDATE inbound_events SET status = 'Lost'",
        "UPDATE process_instances SET status = 'PAUSED'",
    ] {
        db.execute_unprepared(sql).await.expect("corrupt a state");
    }
    let notification = app.admin(json!({"$type": "GetNotificationListQuery"})).await;
    notification.assert_error(500, "Internal server error");
    app.admin(json!({"$type": "GetWebhookSubscriptionQuery", "id": subscription}))
        .await
        .assert_error(500, "Internal server error");
    app.admin(json!({"$type": "GetInboundEventByIdQuery", "id": inbound_id}))
        .await
        .assert_error(500, "Internal server error");
    app.admin(json!({"$type": "GetProcessInstanceByIdQuery", "id": instance}))
        .await
        .assert_error(500, "Internal server error");
}
