//! Script secrets: kept sealed, never answered, read by scripts with `secret("name")`, and never
//! in what a run answers, logs or fails with.

use serde_json::{Value, json};

use crate::{
    router::hmac_hex,
    support::{TestApp, native_config, with},
};

const VALUE: &str = "nibss-shared-secret";
const NIBSS_CONFIG: &str = include_str!("../../../../examples/router/nibss-config.json");
const NIBSS_SECRET: &str = include_str!("../../../../examples/router/nibss-secret.json");
const NIBSS_NOTIFICATION: &str = include_str!("../../../../examples/router/nibss-notification.json");

fn example(text: &str) -> Value {
    serde_json::from_str(text).expect("the example is JSON")
}

fn script(key: &str, code: &str) -> Value {
    with(native_config(key), json!({"commandName": null, "executionType": 2, "executionCode": code}))
}

#[track_caller]
fn assert_no_value(what: &str, body: &Value) {
    assert!(!body.to_string().contains(VALUE), "{what} carries the secret's value: {body:#}");
}

#[tokio::test]
async fn secrets_are_set_listed_and_deleted_and_never_answered() {
    let app = TestApp::spawn().await;
    let reply = app.admin(example(NIBSS_SECRET)).await;
    let saved = reply.assert_ok("Script secret saved").clone();
    assert_no_value("the set answer", &reply.body);
    assert_eq!((saved["name"].as_str(), saved["createdBy"].as_str()), (Some("nibss-hmac-key"), Some("bootstrap")));

    let again = app.admin(with(example(NIBSS_SECRET), json!({"value": "an-other-value-123"}))).await;
    let again = again.assert_ok("Script secret saved").clone();
    assert_eq!(again["createdAt"], saved["createdAt"], "a new value, the same secret");

    let reply = app.admin(json!({"$type": "GetScriptSecretListQuery"})).await;
    let list = reply.assert_ok("Script secrets retrieved successfully");
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["name"], "nibss-hmac-key");
    assert!(list[0].get("value").is_none(), "{list:#}");
    let sealed =
        app.count_rows("script_secrets WHERE value LIKE '%nibss-shared%' OR value LIKE '%an-other-value%'").await;
    assert_eq!(sealed, 0, "values are sealed at rest");

    for (command, expected) in [
        (json!({"$type": "SetScriptSecretCommand", "name": "bad name", "value": "long-enough-value"}), "name:"),
        (json!({"$type": "SetScriptSecretCommand", "name": "short", "value": "1234567"}), "value: must be 8"),
        (json!({"$type": "SetScriptSecretCommand", "name": "x", "value": "long-enough-value", "colour": 1}), "colour"),
    ] {
        let reply = app.admin(command.clone()).await;
        assert_eq!(reply.status, 422, "{command}: {:#}", reply.body);
        assert!(reply.has_error(expected), "{command}: {:#}", reply.body);
    }

    // secrets:read lists, secrets:write sets and deletes; neither comes with webhooks:*.
    let (_, reader) = app.token(&["secrets:read"]).await;
    let (_, writer) = app.token(&["secrets:write"]).await;
    let (_, hooks) = app.token(&["webhooks:read", "webhooks:write"]).await;
    app.cmd(Some(&reader), json!({"$type": "GetScriptSecretListQuery"}))
        .await
        .assert_ok("Script secrets retrieved successfully");
    for token in [&reader, &hooks] {
        let reply = app.cmd(Some(token), example(NIBSS_SECRET)).await;
        assert_eq!(reply.status, 403, "{:#}", reply.body);
    }
    let reply = app.cmd(Some(&hooks), json!({"$type": "GetScriptSecretListQuery"})).await;
    assert_eq!(reply.status, 403, "{:#}", reply.body);
    app.cmd(Some(&writer), json!({"$type": "DeleteScriptSecretCommand", "name": "nibss-hmac-key"}))
        .await
        .assert_ok("Script secret deleted");
    app.admin(json!({"$type": "DeleteScriptSecretCommand", "name": "nibss-hmac-key"}))
        .await
        .assert_error(404, "Deletion failed");
}

#[tokio::test]
async fn the_nibss_example_checks_its_signature_with_a_secret_and_never_shows_it() {
    let app = TestApp::spawn().await;
    // Saving a script that reads an unknown secret names it.
    let reply = app.admin(example(NIBSS_CONFIG)).await;
    assert_eq!(reply.status, 422, "{:#}", reply.body);
    assert!(reply.has_error("unknown secret 'nibss-hmac-key'"), "{:#}", reply.body);

    app.admin(example(NIBSS_SECRET)).await.assert_ok("Script secret saved");
    let config = app.admin(example(NIBSS_CONFIG)).await;
    let config = config.assert_ok("Webhook configuration created successfully").clone();
    assert_no_value("the configuration", &config);

    let send = |signature: String| {
        let request = app
            .client
            .post(format!("{}/hooks/nibss/nip", app.address))
            .header("content-type", "application/json")
            .header("x-nibss-signature", signature)
            .body(NIBSS_NOTIFICATION);
        async move { crate::support::into_reply(request.send().await.expect("answers")).await }
    };
    send("forged".into()).await.assert_error(401, "bad signature");
    let reply = send(hmac_hex(VALUE, NIBSS_NOTIFICATION)).await;
    assert_eq!(reply.assert_ok("Script executed successfully")["sessionId"], "000015261122143512345678901234");

    // A script that tries to show the value answers, logs and fails with *** instead.
    let leaky = script(
        "leaky",
        r#"let key = secret("nibss-hmac-key"); log("key is " + key); if body.fail == true { throw "bad key " + key; } #{ key: key, inside: "k=" + key }"#,
    );
    app.admin(leaky).await.assert_ok("Webhook configuration created successfully");
    let reply = app.call("POST", "/api/webhooks/leaky", Some(json!({})), &[]).await;
    assert_eq!(reply.assert_ok("Script executed successfully"), &json!({"key": "***", "inside": "k=***"}));
    let reply = app.call("POST", "/api/webhooks/leaky", Some(json!({"fail": true})), &[]).await;
    assert_eq!(reply.status, 422, "{:#}", reply.body);
    assert!(reply.has_error("bad key ***"), "{:#}", reply.body);
    app.settled().await;
    let reply = app.admin(json!({"$type": "GetInboundEventListQuery", "pageSize": 50})).await;
    let log = reply.assert_ok("Inbound events retrieved successfully").clone();
    assert_eq!(log["totalCount"], 4);
    assert_no_value("the inbound log", &log);
}

#[tokio::test]
async fn only_who_may_read_secrets_saves_or_runs_a_script_that_reads_them() {
    let app = TestApp::builder().router_permissions("webhooks:read").spawn().await;
    app.admin(example(NIBSS_SECRET)).await.assert_ok("Script secret saved");

    let (_, hooks) = app.token(&["webhooks:read", "webhooks:write"]).await;
    let reads = script("reads", r#"#{ signed: hmac_sha256_hex(secret("nibss-hmac-key"), "x") }"#);
    let reply = app.cmd(Some(&hooks), reads.clone()).await;
    assert_eq!(reply.status, 403, "{:#}", reply.body);
    assert!(reply.has_error("secrets:read"), "{:#}", reply.body);
    let computed = script("computed", r#"let name = "nibss-hmac-key"; secret(name)"#);
    let reply = app.admin(computed).await;
    assert_eq!(reply.status, 422, "{:#}", reply.body);
    assert!(reply.has_error("secret() takes a literal name"), "{:#}", reply.body);

    // Saved by an admin, but routes here run without secrets:read: the read is refused at run time.
    app.admin(reads).await.assert_ok("Webhook configuration created successfully");
    let reply = app.call("POST", "/api/webhooks/reads", Some(json!({})), &[]).await;
    assert_eq!(reply.status, 403, "{:#}", reply.body);
    assert!(reply.has_error("secrets:read"), "{:#}", reply.body);

    // A secret a configuration reads cannot be deleted from under it.
    let reply = app.admin(json!({"$type": "DeleteScriptSecretCommand", "name": "nibss-hmac-key"})).await;
    reply.assert_error(409, "Secret in use");
    assert!(reply.has_error("configuration 'reads' reads it"), "{:#}", reply.body);
}
