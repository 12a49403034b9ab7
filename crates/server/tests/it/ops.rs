//! Health, readiness and metrics.

use serde_json::json;

use crate::support::{TestApp, native_config, with};

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let health = app.get("/healthz", None).await;
    assert_eq!(health.assert_ok("OK")["status"], json!("ok"));
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.assert_ok("Ready")["database"], json!("ok"));
    assert!(health.headers.get("x-request-id").is_some(), "every response names its request id");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_time_commands_by_type() {
    let app = TestApp::spawn().await;
    app.admin(json!({"$type": "GetWebHookConfigListQuery"})).await;
    app.admin(json!({"$type": "GetWebHookConfigByIdQuery", "id": 99})).await;
    app.cmd(None, json!({"$type": "GetWebHookConfigListQuery"})).await;
    app.call("POST", "/api/webhooks/nobody", Some(json!({})), &[]).await;
    app.call("POST", "/api/webhooks/mono/callback", Some(json!({})), &[]).await;
    app.call("GET", "/nowhere", None, &[]).await;

    let response = app.client.get(format!("{}/metrics", app.address)).send().await.expect("metrics answer");
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap_or_default();
    let has = |needle: &str| text.lines().any(|line| line.contains(needle));
    assert!(has(r#"hookbus_http_requests_total{route="/api/bpm/cmd",method="POST",status="200"} 1"#), "{text}");
    assert!(has(r#"hookbus_http_requests_total{route="/api/bpm/cmd",method="POST",status="404"} 1"#), "{text}");
    assert!(has(r#"hookbus_http_requests_total{route="/api/bpm/cmd",method="POST",status="401"} 1"#), "{text}");
    assert!(has(r#"hookbus_http_requests_total{route="/api/webhooks/{key}",method="POST",status="404"} 1"#), "{text}");
    assert!(
        has(r#"hookbus_http_requests_total{route="/api/webhooks/mono/callback",method="POST",status="503"} 1"#),
        "{text}"
    );
    assert!(has(r#"hookbus_http_requests_total{route="unmatched",method="GET",status="404"} 1"#), "{text}");
    assert!(
        has(r#"hookbus_command_duration_seconds_count{command="GetWebHookConfigListQuery",outcome="ok"} 1"#),
        "{text}"
    );
    assert!(
        has(r#"hookbus_command_duration_seconds_count{command="GetWebHookConfigByIdQuery",outcome="error"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_count_router_executions_by_type_and_outcome() {
    let app = TestApp::spawn().await;
    let created = app.admin(with(native_config("counted"), json!({"commandName": "GetWebHookConfigByIdQuery"}))).await;
    let id = created.assert_ok("Webhook configuration created successfully")["id"].clone();
    app.call("POST", "/api/webhooks/counted", Some(json!({"id": id})), &[])
        .await
        .assert_ok("Webhook configuration retrieved successfully");
    app.call("POST", "/api/webhooks/counted", Some(json!({"id": 999})), &[])
        .await
        .assert_error(404, "Configuration not found");
    app.call("POST", "/api/webhooks/counted", Some(json!({"id": 998})), &[])
        .await
        .assert_error(404, "Configuration not found");

    let text = app.client.get(format!("{}/metrics", app.address)).send().await.expect("metrics answer");
    let text = text.text().await.unwrap_or_default();
    let has = |needle: &str| text.lines().any(|line| line == needle);
    assert!(has(r#"hookbus_router_executions_total{execution_type="0",outcome="ok"} 1"#), "{text}");
    assert!(has(r#"hookbus_router_executions_total{execution_type="0",outcome="error"} 2"#), "{text}");
    // Every type's counters exist from the start, at zero.
    assert!(has(r#"hookbus_router_executions_total{execution_type="2",outcome="ok"} 0"#), "{text}");
}
