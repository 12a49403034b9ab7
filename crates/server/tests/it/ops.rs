//! Health, readiness and metrics.

use serde_json::json;

use crate::support::TestApp;

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
