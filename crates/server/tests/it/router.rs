//! The dynamic router: matching, admission, and running handlers.

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};

use crate::support::{TestApp, native_config, with, within};

async fn configure(app: &TestApp, config: Value) -> Value {
    app.admin(config).await.assert_ok("Webhook configuration created successfully").clone()
}

/// A type-0 route running `GetWebHookConfigByIdQuery` with the body's fields.
fn lookup_route(key: &str) -> Value {
    with(native_config(key), json!({"commandName": "GetWebHookConfigByIdQuery"}))
}

#[tokio::test]
async fn a_native_command_runs_with_the_body_as_its_fields() {
    let app = TestApp::spawn().await;
    let target = configure(&app, lookup_route("lookup")).await;

    let by_key = app.call("POST", "/api/webhooks/lookup", Some(json!({"id": target["id"]})), &[]).await;
    let data = by_key.assert_ok("Webhook configuration retrieved successfully");
    assert_eq!(data["key"], json!("lookup"));

    let by_path = app.call("POST", "/hooks/lookup", Some(json!({"id": target["id"]})), &[]).await;
    assert_eq!(by_path.assert_ok("Webhook configuration retrieved successfully")["key"], json!("lookup"));

    let wrong_field = app.call("POST", "/api/webhooks/lookup", Some(json!({"id": "one"})), &[]).await;
    wrong_field.assert_error(422, "Validation failed");
    assert!(wrong_field.errors()[0].starts_with("id: invalid type"), "{:?}", wrong_field.errors());

    let unknown = app.call("POST", "/api/webhooks/lookup", Some(json!({"id": target["id"], "force": true})), &[]).await;
    unknown.assert_error(422, "Validation failed");
    assert!(unknown.has_error("unknown field `force`"), "{:?}", unknown.errors());

    // The configuration names the command: a `$type` in the body changes nothing.
    let retyped = json!({"$type": "DeleteWebHookConfigCommand", "id": target["id"]});
    let retyped = app.call("POST", "/api/webhooks/lookup", Some(retyped), &[]).await;
    assert_eq!(retyped.assert_ok("Webhook configuration retrieved successfully")["key"], json!("lookup"));
    let still_there = json!({"$type": "GetWebHookConfigByIdQuery", "id": target["id"]});
    app.admin(still_there).await.assert_ok("Webhook configuration retrieved successfully");

    let not_object = app.call("POST", "/api/webhooks/lookup", Some(json!([1, 2])), &[]).await;
    not_object.assert_error(422, "Validation failed");
    assert!(not_object.has_error("must be a JSON object"), "{:?}", not_object.errors());

    let missing = app.call("POST", "/api/webhooks/lookup", Some(json!({"id": 999})), &[]).await;
    missing.assert_error(404, "Configuration not found");
}

#[tokio::test]
async fn unknown_inactive_wrong_method_and_too_large() {
    let app = TestApp::builder().body_limit(2048).spawn().await;
    app.call("POST", "/api/webhooks/nothing-here", None, &[])
        .await
        .assert_error(404, "Webhook configuration not found");
    app.call("POST", "/hooks/nothing-here", None, &[]).await.assert_error(404, "Webhook configuration not found");

    let config = configure(&app, with(lookup_route("sleepy"), json!({"isEnabled": false, "action": "put"}))).await;
    let inactive = app.call("PUT", "/api/webhooks/sleepy", Some(json!({"id": 1})), &[]).await;
    inactive.assert_error(404, "Webhook configuration is inactive");

    app.admin(json!({"$type": "ActivateWebHookConfigCommand", "id": config["id"]})).await;
    let wrong = app.call("POST", "/api/webhooks/sleepy", Some(json!({"id": 1})), &[]).await;
    wrong.assert_error(405, "Method not allowed");
    assert_eq!(wrong.headers.get("allow").and_then(|v| v.to_str().ok()), Some("PUT"));
    app.call("PUT", "/hooks/sleepy", Some(json!({"id": config["id"]})), &[])
        .await
        .assert_ok("Webhook configuration retrieved successfully");

    let huge = json!({"id": 1, "padding": "x".repeat(4096)});
    app.call("PUT", "/api/webhooks/sleepy", Some(huge), &[]).await.assert_error(413, "Payload too large");

    let bad_json = app
        .client
        .put(format!("{}/api/webhooks/sleepy", app.address))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("answer");
    assert_eq!(bad_json.status(), 400);
}

#[tokio::test]
async fn the_allow_list_admits_addresses_ranges_and_mapped_ipv6() {
    // The test client is 127.0.0.1; trusting it as a proxy lets X-Forwarded-For name other clients.
    let app = TestApp::builder().trusted_proxies(&["127.0.0.1"]).spawn().await;
    let config = with(lookup_route("guarded"), json!({"allowableIPs": "203.0.113.0/24, 2001:db8::/32, 198.51.100.7"}));
    let target = configure(&app, config).await;
    let body = json!({"id": target["id"]});
    let from = |ip: &'static str| [("x-forwarded-for", ip)];

    for allowed in ["203.0.113.77", "198.51.100.7", "2001:db8::42", "::ffff:203.0.113.5"] {
        let reply = app.call("POST", "/api/webhooks/guarded", Some(body.clone()), &from(allowed)).await;
        assert_eq!(reply.status, 200, "{allowed}: {:#}", reply.body);
    }
    for refused in ["198.51.100.8", "2001:db9::1", "10.0.0.1"] {
        let reply = app.call("POST", "/api/webhooks/guarded", Some(body.clone()), &from(refused)).await;
        reply.assert_error(403, "Forbidden");
        assert!(reply.has_error(refused), "{:?}", reply.errors());
    }
    // Without the header the client is the peer, 127.0.0.1, which the list does not name.
    app.call("POST", "/api/webhooks/guarded", Some(body), &[]).await.assert_error(403, "Forbidden");
}

#[tokio::test]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_does_not_pass() {
    let app = TestApp::spawn().await; // no trusted proxies
    let target = configure(&app, with(lookup_route("partner"), json!({"allowableIPs": "203.0.113.0/24"}))).await;
    let spoofed = app
        .call("POST", "/api/webhooks/partner", Some(json!({"id": target["id"]})), &[("x-forwarded-for", "203.0.113.9")])
        .await;
    spoofed.assert_error(403, "Forbidden");
    assert!(spoofed.has_error("127.0.0.1"), "the peer address is the client: {:?}", spoofed.errors());
}

#[tokio::test]
async fn a_command_chain_maps_inputs_over_request_body_and_steps() {
    let app = TestApp::spawn().await;
    let first = configure(&app, with(native_config("first"), json!({"description": "Paystack settlement"}))).await;
    let steps = json!([
        {"commandName": "GetWebHookConfigByIdQuery", "input": {"id": "$.body.configId"}},
        {"commandName": "GetWebHookConfigListQuery", "input": {"searchText": "$.last.key", "pageSize": 5}},
        {"commandName": "LookupWebHookByKeyCommand", "input": {"key": "$.steps[0].key"}}
    ]);
    configure(
        &app,
        with(native_config("chain"), json!({"commandName": null, "executionType": 1, "commandChain": steps})),
    )
    .await;

    let reply = app.call("POST", "/api/webhooks/chain", Some(json!({"configId": first["id"]})), &[]).await;
    let data = reply.assert_ok("Command chain completed");
    assert_eq!(data["steps"].as_array().map(Vec::len), Some(3));
    assert_eq!(data["steps"][0]["description"], json!("Paystack settlement"));
    assert_eq!(data["steps"][1]["totalCount"], json!(1), "step 1 searched for step 0's key");
    assert_eq!(data["result"]["key"], json!("first"));
    assert_eq!(data["result"], data["steps"][2]);
}

#[tokio::test]
async fn a_failing_step_stops_the_chain_unless_it_may_fail() {
    let app = TestApp::spawn().await;
    let strict = json!([
        {"commandName": "GetWebHookConfigByIdQuery", "input": {"id": 4040}},
        {"commandName": "GetWebHookConfigListQuery"}
    ]);
    configure(
        &app,
        with(native_config("strict"), json!({"commandName": null, "executionType": 1, "commandChain": strict})),
    )
    .await;
    let failed = app.call("POST", "/api/webhooks/strict", Some(json!({})), &[]).await;
    failed.assert_error(404, "Step 0 (GetWebHookConfigByIdQuery) failed");
    assert_eq!(
        failed.errors(),
        vec!["Configuration not found", "No webhook configuration found with the specified ID"]
    );

    let lenient = json!([
        {"commandName": "GetWebHookConfigByIdQuery", "input": {"id": 4040}, "continueOnError": true},
        {"commandName": "GetWebHookConfigListQuery", "input": {"pageSize": 1}}
    ]);
    configure(
        &app,
        with(native_config("lenient"), json!({"commandName": null, "executionType": 1, "commandChain": lenient})),
    )
    .await;
    let reply = app.call("POST", "/api/webhooks/lenient", None, &[]).await;
    let data = reply.assert_ok("Command chain completed");
    assert_eq!(data["steps"][0]["error"]["status"], json!(404));
    assert_eq!(data["result"]["totalCount"], json!(2));
}

#[tokio::test]
async fn the_router_runs_commands_without_admin() {
    let app = TestApp::spawn().await;
    // Saving refuses admin commands; the internal principal could not run them anyway.
    let refused = app.admin(with(native_config("tokens"), json!({"commandName": "GetApiTokenListQuery"}))).await;
    refused.assert_error(422, "Validation failed");
}

#[tokio::test]
async fn a_route_change_reaches_every_instance_within_two_seconds() {
    let first = TestApp::spawn().await;
    let second = TestApp::builder().database(Arc::clone(&first.database)).spawn().await;
    let config = configure(&first, lookup_route("moving")).await;
    let body = json!({"id": config["id"]});

    let routable = within(Duration::from_secs(2), || async {
        second.call("POST", "/api/webhooks/moving", Some(body.clone()), &[]).await.status == 200
    })
    .await;
    assert!(routable.is_some(), "the new configuration was not routable on the second instance within 2 s");

    first.admin(json!({"$type": "DeactivateWebHookConfigCommand", "id": config["id"]})).await;
    first
        .call("POST", "/api/webhooks/moving", Some(body.clone()), &[])
        .await
        .assert_error(404, "Webhook configuration is inactive");
    let stopped = within(Duration::from_secs(2), || async {
        second.call("POST", "/api/webhooks/moving", Some(body.clone()), &[]).await.status == 404
    })
    .await;
    assert!(stopped.is_some(), "the deactivation did not reach the second instance within 2 s");
}

fn script(key: &str, code: &str) -> Value {
    with(native_config(key), json!({"commandName": null, "executionType": 2, "executionCode": code}))
}

const VERIFY_SIGNATURE: &str = r#"
let signature = headers["x-signature"];
if signature == () { reject(401, "missing signature"); }
let expected = hmac_sha256_hex("s3cret-key", raw_body);
if !constant_time_eq(signature, expected) { reject(401, "bad signature"); }
#{ accepted: body.amount, reference: body.reference }
"#;

#[tokio::test]
async fn a_script_verifies_an_hmac_signature_and_rejects_a_bad_one() {
    let app = TestApp::spawn().await;
    configure(&app, script("signed", VERIFY_SIGNATURE)).await;
    let body = r#"{"amount": 1500, "reference": "NIP-000123"}"#;
    // HMAC-SHA256 of the body with key "s3cret-key", computed independently of hookbus.
    let signature = hmac_hex("s3cret-key", body);

    let send = |signature: Option<String>| {
        let mut request = app
            .client
            .post(format!("{}/api/webhooks/signed", app.address))
            .header("content-type", "application/json")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("x-signature", signature);
        }
        request.send()
    };
    let good = send(Some(signature.clone())).await.expect("answer");
    assert_eq!(good.status(), 200);
    let envelope: Value = good.json().await.unwrap_or_default();
    assert_eq!(envelope["data"], json!({"accepted": 1500, "reference": "NIP-000123"}));
    assert_eq!(envelope["message"], json!("Script executed successfully"));

    let mut tampered = signature.into_bytes();
    tampered[0] = if tampered[0] == b'0' { b'1' } else { b'0' };
    let bad = send(Some(String::from_utf8(tampered).unwrap_or_default())).await.expect("answer");
    assert_eq!(bad.status(), 401);
    let envelope: Value = bad.json().await.unwrap_or_default();
    assert_eq!(envelope["message"], json!("bad signature"));
    assert_eq!(envelope["success"], json!(false));

    let missing = send(None).await.expect("answer");
    assert_eq!(missing.status(), 401);
}

/// HMAC-SHA256 (RFC 2104) written out here so the test does not trust hookbus's own helper.
pub(crate) fn hmac_hex(key: &str, message: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key.as_bytes());
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message.as_bytes()).finalize();
    let outer = Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_script_runs_commands_on_the_bus() {
    let app = TestApp::spawn().await;
    let target = configure(&app, with(native_config("target"), json!({"description": "looked up by a script"}))).await;
    let code = r#"
        let config = command("GetWebHookConfigByIdQuery", #{ id: body.id });
        log("found " + config.key);
        #{ key: config.key, description: config.description, at: now() }
    "#;
    configure(&app, script("scripted", code)).await;
    let reply = app.call("POST", "/api/webhooks/scripted", Some(json!({"id": target["id"]})), &[]).await;
    let data = reply.assert_ok("Script executed successfully");
    assert_eq!(data["key"], json!("target"));
    assert_eq!(data["description"], json!("looked up by a script"));
    assert!(data["at"].as_str().is_some_and(|t| t.ends_with('Z')));

    let missing = app.call("POST", "/api/webhooks/scripted", Some(json!({"id": 9999})), &[]).await;
    missing.assert_error(404, "Configuration not found");

    configure(&app, script("thrower", r#"throw "amount must be positive""#)).await;
    let thrown = app.call("POST", "/api/webhooks/thrower", Some(json!({})), &[]).await;
    thrown.assert_error(422, "Script failed");
    assert!(thrown.has_error("amount must be positive"), "{:?}", thrown.errors());
}

/// Runaway scripts end within a second with a clear error, and meanwhile other requests are
/// served: scripts run off the request threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runaway_scripts_stop_and_harm_nothing_else() {
    let app = TestApp::spawn().await;
    let cases = [
        ("spin", "loop {}", "the script"),
        ("recurse", "fn down(n) { down(n + 1) } down(0)", "nested calls deeper than"),
        ("strings", r#"let s = "xxxxxxxx"; loop { s += s; }"#, "length of strings"),
        ("arrays", "let a = [0]; loop { a += a; }", "size of arrays"),
    ];
    for (key, code, _) in &cases {
        configure(&app, script(key, code)).await;
    }
    let target = configure(&app, lookup_route("cheap")).await;

    let runaways = cases.iter().map(|(key, _, expected)| {
        let app = &app;
        async move {
            let started = std::time::Instant::now();
            let reply = app.call("POST", &format!("/api/webhooks/{key}"), Some(json!({})), &[]).await;
            (key, expected, reply, started.elapsed())
        }
    });
    let cheap = async {
        // While the runaways run, ordinary requests keep answering quickly.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut slowest = Duration::ZERO;
        for _ in 0..10 {
            let started = std::time::Instant::now();
            let reply = app.call("POST", "/api/webhooks/cheap", Some(json!({"id": target["id"]})), &[]).await;
            assert_eq!(reply.status, 200);
            slowest = slowest.max(started.elapsed());
        }
        slowest
    };
    let (outcomes, slowest) = tokio::join!(futures_util::future::join_all(runaways), cheap);
    for (key, expected, reply, took) in outcomes {
        reply.assert_error(500, "Script failed");
        assert!(reply.has_error(expected), "{key}: {:?}", reply.errors());
        assert!(took < Duration::from_secs(1), "{key} took {took:?}");
    }
    assert!(slowest < Duration::from_millis(250), "an ordinary request took {slowest:?} beside the runaways");
}
