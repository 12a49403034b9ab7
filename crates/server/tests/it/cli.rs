//! The `hookbus` binary itself: its subcommands, start-up checks and graceful stop.
//!
//! These tests block on child processes, so they run on a multi-thread runtime: the in-process
//! server they talk to keeps being driven meanwhile.

use std::{
    process::{Command, Output, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

use crate::support::{
    ADMIN_TOKEN, TestApp, TestDatabase, free_port, hookbus, native_config, ready, serve, terminate, with, within,
};

/// A server whose info-level log goes to a file, up and answering.
struct Logging {
    child: std::process::Child,
    client: reqwest::Client,
    base: String,
    log_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Logging {
    async fn start(database: &TestDatabase, format: &str) -> Self {
        let dir = tempfile::tempdir().expect("a folder");
        let log_path = dir.path().join("stdout.log");
        let port = free_port();
        let child = hookbus(&database.url)
            .env("HOOKBUS_LISTEN", format!("127.0.0.1:{port}"))
            .env("HOOKBUS_BOOTSTRAP_TOKEN", ADMIN_TOKEN)
            .env("HOOKBUS_LOG__LEVEL", "info")
            .env("HOOKBUS_LOG__FORMAT", format)
            .stdout(std::fs::File::create(&log_path).expect("the log file"))
            .stderr(Stdio::null())
            .spawn()
            .expect("the server starts");
        let client = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let ready = within(Duration::from_secs(20), || async { crate::support::ready(&client, &base).await }).await;
        assert!(ready.is_some(), "the server comes up");
        Self { child, client, base, log_path, _dir: dir }
    }
}

fn run(command: &mut Command) -> Output {
    command.output().expect("the binary runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_then_create_a_token_that_the_server_accepts() {
    let database = TestDatabase::create().await;
    let migrated = run(hookbus(&database.url).arg("migrate"));
    assert!(migrated.status.success(), "{}", String::from_utf8_lossy(&migrated.stderr));
    assert!(String::from_utf8_lossy(&migrated.stdout).contains("migrations applied"));

    let created = run(hookbus(&database.url).args([
        "token",
        "create",
        "--name",
        "deploy",
        "--permission",
        "webhooks:read",
        "--permission",
        "webhooks:write",
    ]));
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let issued: Value = serde_json::from_slice(&created.stdout).expect("the token as JSON");
    assert_eq!(issued["permissions"], json!(["webhooks:read", "webhooks:write"]));
    let token = issued["token"].as_str().unwrap_or_default().to_owned();

    let app = TestApp::builder().database(std::sync::Arc::new(database)).spawn().await;
    app.cmd(Some(&token), json!({"$type": "GetWebHookConfigListQuery"}))
        .await
        .assert_ok("Webhook configurations retrieved successfully");

    let refused = run(hookbus(&app.database.url).args(["token", "create", "--name", "x", "--permission", "root"]));
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown permission 'root'"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmd_posts_to_a_running_server() {
    let app = TestApp::spawn().await;
    let output = run(hookbus(&app.database.url).args([
        "cmd",
        r#"{"$type": "LookupWebHookByKeyCommand", "key": "none"}"#,
        "--url",
        &app.address,
        "--token",
        ADMIN_TOKEN,
    ]));
    assert!(!output.status.success(), "a failed command exits non-zero");
    let envelope: Value = serde_json::from_slice(&output.stdout).expect("the envelope");
    assert_eq!(envelope["message"], json!("Lookup failed"));

    let output = run(hookbus(&app.database.url).env("HOOKBUS_TOKEN", ADMIN_TOKEN).args([
        "cmd",
        r#"{"$type": "GetWebHookConfigListQuery"}"#,
        "--url",
        &app.address,
    ]));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    let envelope: Value = serde_json::from_slice(&output.stdout).expect("the envelope");
    assert_eq!(envelope["data"]["totalCount"], json!(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_setting_stops_start_up_naming_the_key() {
    let database = TestDatabase::create().await;
    let cases = [
        ("HOOKBUS_LISTEN", "not-an-address", "server.listen"),
        ("HOOKBUS_SERVER__WORKERS", "many", "server.workers"),
        ("HOOKBUS_SERVER__WROKERS", "2", "wrokers"),
        ("HOOKBUS_LOG__FORMAT", "xml", "log.format"),
    ];
    for (variable, value, key) in cases {
        let output = run(hookbus(&database.url).env(variable, value).arg("serve"));
        assert!(!output.status.success(), "{variable}={value} must stop start-up");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(key), "{variable}={value}: {stderr}");
    }
    let output = run(hookbus("mysql://localhost/x").arg("serve"));
    assert!(String::from_utf8_lossy(&output.stderr).contains("database.url"));

    let missing = run(hookbus(&database.url).env("HOOKBUS_CONFIG", "/no/such/file.toml").arg("serve"));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("HOOKBUS_CONFIG"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_layers_over_the_defaults_and_sigterm_stops_gracefully() {
    let database = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("a folder");
    let port = free_port();
    let file = dir.path().join("hookbus.toml");
    std::fs::write(&file, format!("[server]\nlisten = \"127.0.0.1:{port}\"\nworkers = 1\n")).expect("write config");

    let mut child = hookbus(&database.url)
        .env("HOOKBUS_CONFIG", &file)
        .env("HOOKBUS_BOOTSTRAP_TOKEN", ADMIN_TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the server starts");
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/readyz");
    let ready = within(Duration::from_secs(20), || async { client.get(&url).send().await.is_ok() }).await;
    assert!(ready.is_some(), "the server listens on the port from the config file");

    let code = terminate(&mut child);
    assert!(code.success(), "a graceful stop exits 0, got {code}");
}

/// With request logging on, each request's line carries its id, route, status and method, and
/// never the caller's token. (The root span is skipped when nothing records it; this shows it is
/// still built when something does.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_log_lines_name_the_request_and_keep_tokens_out() {
    let database = TestDatabase::create().await;
    let logging = Logging::start(&database, "json").await;
    let (client, base, log_path) = (&logging.client, &logging.base, &logging.log_path);
    let mut child = logging.child;

    let response = client
        .post(format!("{base}/api/bpm/cmd"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"$type": "GetWebHookConfigListQuery"}))
        .send()
        .await
        .expect("the request is answered");
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"].to_str().expect("a text header").to_owned();

    // The line is written when the span closes; a graceful stop flushes the rest.
    terminate(&mut child);
    let log = std::fs::read_to_string(log_path).expect("the log");
    let line: Value = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["span"]["request_id"] == json!(request_id))
        .unwrap_or_else(|| panic!("a line for request {request_id} in:\n{log}"));
    assert_eq!(line["span"]["http.route"], "/api/bpm/cmd", "{line}");
    assert_eq!(line["span"]["http.method"], "POST", "{line}");
    assert_eq!(line["span"]["http.status_code"], 200, "{line}");
    assert!(!log.contains(ADMIN_TOKEN), "the bearer token stays out of the log:\n{log}");
}

/// The server turns transparent huge pages off for itself (`hookbus_server::memory`): with them,
/// mimalloc's arenas doubled its resident memory. The kernel reports the flag per process.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_without_transparent_huge_pages() {
    let database = TestDatabase::create().await;
    let port = free_port();
    let mut child = serve(&database.url, port, &[]);
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let started = within(Duration::from_secs(20), || ready(&client, &base)).await;
    assert!(started.is_some(), "the server became ready");

    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).expect("the process's status");
    let thp = status.lines().find_map(|line| line.strip_prefix("THP_enabled:")).map(str::trim);
    assert_eq!(thp, Some("0"), "THP_enabled in /proc/<pid>/status");

    let code = terminate(&mut child);
    assert!(code.success(), "a graceful stop exits 0, got {code}");
}

/// A script's `log()` line reaches the server's log, with the value of a secret it read as `***`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripts_log_line_never_carries_a_secrets_value() {
    let database = TestDatabase::create().await;
    let logging = Logging::start(&database, "text").await;
    let (client, base, log_path) = (&logging.client, &logging.base, &logging.log_path);
    let mut child = logging.child;
    let command = |body: Value| client.post(format!("{base}/api/bpm/cmd")).bearer_auth(ADMIN_TOKEN).json(&body).send();

    let value = "Log-Secret-Value-42";
    let saved = command(json!({"$type": "SetScriptSecretCommand", "name": "log-key", "value": value})).await;
    assert_eq!(saved.expect("answered").status(), 200);
    let code = r#"let key = secret("log-key"); log("checking with " + key); #{ ok: true }"#;
    let config =
        with(native_config("logs-secret"), json!({"commandName": null, "executionType": 2, "executionCode": code}));
    assert_eq!(command(config).await.expect("answered").status(), 200);
    let routed = client.post(format!("{base}/api/webhooks/logs-secret")).json(&json!({})).send().await;
    assert_eq!(routed.expect("answered").status(), 200);

    terminate(&mut child);
    let log = std::fs::read_to_string(log_path).expect("the log");
    assert!(log.contains("checking with ***"), "the script's line is logged, redacted:\n{log}");
    assert!(!log.contains(value), "the secret's value is in the log:\n{log}");
}
