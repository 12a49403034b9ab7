//! Health, readiness and metrics.

use std::time::Duration;

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
async fn the_fixed_read_routes_answer_another_method_with_405() {
    let app = TestApp::spawn().await;
    for path in ["/healthz", "/readyz", "/metrics", "/api/bpm/commands", "/api/openapi.json"] {
        for method in ["POST", "TRACE", "DELETE"] {
            let reply = app.call(method, path, None, &[]).await;
            assert_eq!(reply.status, 405, "{method} {path}: {:#}", reply.body);
            assert_eq!(reply.headers.get("allow").and_then(|v| v.to_str().ok()), Some("GET"), "{method} {path}");
            assert_eq!(reply.body["success"], json!(false));
        }
    }
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
    // Any token is a method: made-up ones share one label value rather than each adding a series.
    app.call("BREW", "/nowhere", None, &[]).await;
    app.call("FLY", "/nowhere", None, &[]).await;

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
    assert!(has(r#"hookbus_http_requests_total{route="unmatched",method="_OTHER",status="404"} 2"#), "{text}");
    assert!(!text.contains("BREW") && !text.contains("FLY"), "{text}");
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

/// Reads from `stream` until the peer closes it or `limit` passes; returns what came and whether
/// the peer closed.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, limit: Duration) -> (String, bool) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buffer = [0_u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buffer[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

/// An idle keep-alive connection is held for `server.keep_alive_secs` and then closed; a new
/// connection that sends nothing is answered 408 after `server.client_request_timeout_ms`. (actix
/// reckons both deadlines from a clock it refreshes every 500 ms, so they can come up to half a
/// second early: the margins below allow for that.)
#[tokio::test]
async fn idle_connections_are_closed_after_the_configured_times() {
    use tokio::io::AsyncWriteExt;
    let app = TestApp::builder()
        .configure(|settings| {
            settings.server.keep_alive_secs = 3;
            settings.server.client_request_timeout_ms = 2_000;
        })
        .spawn()
        .await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let request = b"GET /healthz HTTP/1.1\r\nHost: hookbus\r\n\r\n";

    let mut kept = tokio::net::TcpStream::connect(&address).await.expect("connect");
    kept.write_all(request).await.expect("first request");
    let (first, closed) = read_until_closed(&mut kept, Duration::from_secs(1)).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert!(!closed, "closed right after the first answer");
    // Idle for 1 s in all, well within the 3 s: the connection still serves.
    kept.write_all(request).await.expect("second request");
    let (second, closed) = read_until_closed(&mut kept, Duration::from_millis(300)).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert!(!closed, "closed within the keep-alive time");
    // Idle past the 3 s: the server closes it.
    let (rest, closed) = read_until_closed(&mut kept, Duration::from_secs(6)).await;
    assert!(closed && rest.is_empty(), "still open after the keep-alive time: {rest:?}");

    let mut silent = tokio::net::TcpStream::connect(&address).await.expect("connect");
    let started = std::time::Instant::now();
    let (answer, closed) = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(closed, "the slow connection stays open");
    assert!(started.elapsed() >= Duration::from_millis(1_400), "answered 408 after {:?}", started.elapsed());
}
