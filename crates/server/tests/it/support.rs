//! `TestApp`: one running server and its database, and helpers to talk to it.

use std::{
    collections::HashMap,
    sync::{
        OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use actix_web::dev::ServerHandle;
use hookbus_server::{Application, Quiescence, Settings};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

/// The bootstrap token every test server accepts as `admin`.
pub const ADMIN_TOKEN: &str = "test-bootstrap-token-0123456789abcdef";

/// `router.internal_permissions` for tests whose routes and processes write router
/// configurations (the default ceiling lets them only read them).
pub const ROUTES_WRITE_CONFIGS: &str = "webhooks:read,webhooks:write,events:publish,processes:read,processes:write";

/// The outbound encryption key of every test server (base64 of 32 bytes).
pub const TEST_ENCRYPTION_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Where tests put their databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// From `HOOKBUS_TEST_DATABASE` (`sqlite`, the default, or `postgres`). Anything else is a
    /// mistake in the test command and fails the test rather than silently picking SQLite.
    pub fn from_env() -> Self {
        match std::env::var("HOOKBUS_TEST_DATABASE").as_deref() {
            Err(_) | Ok("") | Ok("sqlite") => Self::Sqlite,
            Ok("postgres") => Self::Postgres,
            Ok(other) => panic!("HOOKBUS_TEST_DATABASE={other}: expected sqlite or postgres"),
        }
    }
}

/// The server that owns test databases on PostgreSQL.
fn postgres_admin_url() -> String {
    std::env::var("HOOKBUS_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database that lives as long as the test: a SQLite file in a temporary folder, or a
/// PostgreSQL database that is dropped at the end.
#[derive(Debug)]
pub struct TestDatabase {
    pub url: String,
    postgres_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    pub async fn create() -> Self {
        match Backend::from_env() {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary folder");
                let url = format!("sqlite://{}", dir.path().join("hookbus.db").display());
                Self { url, postgres_name: None, _dir: Some(dir) }
            }
            Backend::Postgres => {
                let admin_url = postgres_admin_url();
                let name = format!("hookbus_test_{}", Uuid::new_v4().simple());
                let admin = Database::connect(&admin_url).await.expect("PostgreSQL is reachable for tests");
                admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create test database");
                admin.close().await.ok();
                let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(base, _)| base);
                Self { url: format!("{base}/{name}"), postgres_name: Some(name), _dir: None }
            }
        }
    }

    /// A direct connection, for checking rows behind the server's back.
    pub async fn connect(&self) -> DatabaseConnection {
        let url = if self.url.starts_with("sqlite") { format!("{}?mode=rw", self.url) } else { self.url.clone() };
        Database::connect(url).await.expect("connect to the test database")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(name) = self.postgres_name.take() else { return };
        // Drop runs outside any async context we can rely on: use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let admin = Database::connect(postgres_admin_url()).await.ok()?;
                admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.ok()?;
                admin.close().await.ok()
            })
        })
        .join();
    }
}

/// Builds a [`TestApp`]; every option has a sensible default.
pub struct TestAppBuilder {
    database: Option<std::sync::Arc<TestDatabase>>,
    body_limit: Option<usize>,
    trusted_proxies: Vec<String>,
    router_permissions: Option<String>,
    configure: Option<SettingsChange>,
}

/// A change to a test server's settings.
type SettingsChange = Box<dyn FnOnce(&mut Settings)>;

impl TestAppBuilder {
    /// Shares another app's database, to run two instances side by side.
    pub fn database(mut self, database: std::sync::Arc<TestDatabase>) -> Self {
        self.database = Some(database);
        self
    }

    /// Proxies whose `X-Forwarded-For` the server believes.
    pub fn trusted_proxies(mut self, proxies: &[&str]) -> Self {
        self.trusted_proxies = proxies.iter().map(|p| (*p).to_owned()).collect();
        self
    }

    /// `router.internal_permissions`, comma-separated.
    pub fn router_permissions(mut self, permissions: &str) -> Self {
        self.router_permissions = Some(permissions.to_owned());
        self
    }

    /// Any other setting.
    pub fn configure(mut self, change: impl FnOnce(&mut Settings) + 'static) -> Self {
        self.configure = Some(Box::new(change));
        self
    }

    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = Some(bytes);
        self
    }

    pub async fn spawn(self) -> TestApp {
        init_logging();
        let database = match self.database {
            Some(database) => database,
            None => std::sync::Arc::new(TestDatabase::create().await),
        };
        let mut settings = Settings::defaults().expect("embedded defaults");
        settings.server.listen = "127.0.0.1:0".parse().expect("address");
        settings.server.workers = 2;
        settings.server.shutdown_timeout_secs = 1;
        settings.database.url = database.url.clone();
        settings.database.max_connections = 5;
        settings.auth.bootstrap_token = ADMIN_TOKEN.into();
        settings.server.trusted_proxies = self.trusted_proxies;
        // Deliveries to receivers on 127.0.0.1 over plain HTTP, retries in milliseconds, and one
        // key so that instances sharing a database read each other's secrets.
        settings.outbound.allow_cidrs = vec!["127.0.0.0/8".parse().expect("range")];
        settings.outbound.allow_http = true;
        settings.outbound.encryption_key = TEST_ENCRYPTION_KEY.into();
        settings.outbound.poll_ms = 20;
        settings.outbound.retry_second_ms = 1;
        settings.outbound.timeout_ms = 2_000;
        settings.outbound.lease_secs = 10;
        if let Some(permissions) = self.router_permissions {
            settings.router.internal_permissions = permissions.split(',').map(str::to_owned).collect();
        }
        if let Some(change) = self.configure {
            change(&mut settings);
        }
        if let Some(limit) = self.body_limit {
            settings.server.body_limit_bytes = limit;
        }
        let app = Application::build(settings).await.expect("the application starts");
        let address = format!("http://{}", app.local_addr());
        let handle = app.handle();
        let quiescence = app.quiescence();
        let running = Some(tokio::spawn(app.run_until_stopped()));
        TestApp { address, client: reqwest::Client::new(), handle, database, running, quiescence }
    }
}

/// Logs from the server under test, when `TEST_LOG` is set.
fn init_logging() {
    static DONE: AtomicBool = AtomicBool::new(false);
    if std::env::var_os("TEST_LOG").is_some() && !DONE.swap(true, Ordering::SeqCst) {
        let _ = tracing_subscriber::fmt().with_env_filter("info").with_test_writer().try_init();
    }
}

/// One running server.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    handle: ServerHandle,
    pub database: std::sync::Arc<TestDatabase>,
    running: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    quiescence: Quiescence,
}

/// A response: its status, headers and JSON body (`Null` when the body is not JSON).
/// Panics unless `data` is valid against the answer schema `name` declares.
pub fn assert_matches_answer_schema(name: &str, data: &Value) {
    static VALIDATORS: OnceLock<HashMap<&'static str, jsonschema::Validator>> = OnceLock::new();
    let validators = VALIDATORS.get_or_init(|| {
        hookbus_core::catalog()
            .into_iter()
            .map(|info| {
                let schema = info.answer().to_value();
                let validator = jsonschema::validator_for(&schema)
                    .unwrap_or_else(|e| panic!("{}'s answer schema does not compile: {e}", info.name));
                (info.name, validator)
            })
            .collect()
    });
    let validator = validators.get(name).unwrap_or_else(|| panic!("{name} is not a registered command"));
    let errors: Vec<String> = validator.iter_errors(data).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{name}'s answer does not match its schema: {errors:#?}\nanswer: {data:#}");
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }

    pub fn errors(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errors| errors.iter().filter_map(|e| e.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    /// Asserts the envelope of a failure with this status and message.
    #[track_caller]
    pub fn assert_error(&self, status: u16, message: &str) {
        assert_eq!(self.status, status, "status of {:#}", self.body);
        assert_eq!(self.body["success"], json!(false), "{:#}", self.body);
        assert_eq!(self.body["data"], Value::Null, "{:#}", self.body);
        assert_eq!(self.message(), message, "{:#}", self.body);
        assert!(self.body["errors"].is_array(), "errors must be a list: {:#}", self.body);
    }

    /// Asserts a success with this message, and returns its data.
    #[track_caller]
    pub fn assert_ok(&self, message: &str) -> &Value {
        assert_eq!(self.status, 200, "status of {:#}", self.body);
        assert_eq!(self.body["success"], json!(true), "{:#}", self.body);
        assert_eq!(self.message(), message, "{:#}", self.body);
        self.data()
    }

    /// Whether some entry of `errors` contains `text`.
    pub fn has_error(&self, text: &str) -> bool {
        self.errors().iter().any(|e| e.contains(text))
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::builder().spawn().await
    }

    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            database: None,
            body_limit: None,
            trusted_proxies: Vec::new(),
            router_permissions: None,
            configure: None,
        }
    }

    /// Posts a command with the bootstrap admin token.
    pub async fn admin(&self, command: Value) -> Reply {
        self.cmd(Some(ADMIN_TOKEN), command).await
    }

    /// The inbound event `id`, as `GetInboundEventByIdQuery` answers it.
    pub async fn inbound_event(&self, id: &Value) -> Reply {
        self.admin(json!({"$type": "GetInboundEventByIdQuery", "id": id})).await
    }

    /// Posts a command with `token` (or none). A success's `data` must match the answer schema
    /// the command declares, so every command the suite runs checks the published schemas.
    pub async fn cmd(&self, token: Option<&str>, command: Value) -> Reply {
        let reply = self.post_raw(token, "application/json", command.to_string().into_bytes()).await;
        if reply.status == 200
            && reply.body["success"] == json!(true)
            && let Some(name) = command["$type"].as_str()
        {
            assert_matches_answer_schema(name, reply.data());
        }
        reply
    }

    /// Posts raw bytes to the bus.
    pub async fn post_raw(&self, token: Option<&str>, content_type: &str, body: Vec<u8>) -> Reply {
        let mut request =
            self.client.post(format!("{}/api/bpm/cmd", self.address)).header("content-type", content_type).body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        into_reply(request.send().await.expect("the server answers")).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut request = self.client.get(format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        into_reply(request.send().await.expect("the server answers")).await
    }

    /// Waits until the server has nothing left to do for now: its inbound log written and its
    /// deliveries settled (nothing in memory, in flight or due). What it has not done by then it
    /// will not do unprompted, short of a retry due later.
    pub async fn settled(&self) {
        self.quiescence.settled().await;
    }

    /// Issues a token with these permissions through the bus; returns `(id, token)`.
    pub async fn token(&self, permissions: &[&str]) -> (String, String) {
        let reply =
            self.admin(json!({"$type": "CreateApiTokenCommand", "name": "test", "permissions": permissions})).await;
        let data = reply.assert_ok("API token created successfully");
        (data["id"].as_str().unwrap_or_default().to_owned(), data["token"].as_str().unwrap_or_default().to_owned())
    }

    /// Rows in `table`, read directly from the database.
    pub async fn count_rows(&self, table: &str) -> i64 {
        let db = self.database.connect().await;
        let backend = db.get_database_backend();
        let row = db
            .query_one_raw(Statement::from_string(backend, format!("SELECT COUNT(*) AS n FROM {table}")))
            .await
            .expect("count query")
            .expect("one row");
        row.try_get::<i64>("", "n").expect("a count")
    }
}

impl TestApp {
    /// Stops gracefully, as on SIGTERM, and waits until the application has finished.
    pub async fn stop(mut self) {
        self.handle.stop(true).await;
        if let Some(running) = self.running.take() {
            let _ = running.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Sending the stop command does not need the returned future to be awaited.
        drop(self.handle.stop(false));
    }
}

pub async fn into_reply(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply { status, headers, body }
}

/// Calls the router: `method` on `path` with a JSON body and extra headers.
impl TestApp {
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>, headers: &[(&str, &str)]) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let mut request = self.client.request(method, format!("{}{path}", self.address));
        if let Some(body) = body {
            request = request.json(&body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        into_reply(request.send().await.expect("the server answers")).await
    }
}

/// A valid type-0 configuration, to be adjusted per test.
pub fn native_config(key: &str) -> Value {
    json!({
        "$type": "CreateWebHookConfigCommand",
        "key": key,
        "description": format!("{key} notifications"),
        "isEnabled": true,
        "path": format!("/hooks/{key}"),
        "action": "POST",
        "executionType": 0,
        "commandName": "GetWebHookConfigListQuery",
    })
}

/// Waits up to `limit` for `check` to hold, polling every 50 ms; returns the time it took.
pub async fn within<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// The `hookbus` binary on `database_url`, with a clean environment and quiet logs. The outbound
/// encryption key is given, so that no key file is written into the working directory.
pub fn hookbus(database_url: &str) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hookbus"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOOKBUS_DATABASE_URL", database_url)
        .env("HOOKBUS_OUTBOUND__ENCRYPTION_KEY", TEST_ENCRYPTION_KEY)
        .env("HOOKBUS_LOG__LEVEL", "warn");
    command
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// `command` with `changes` applied: each field set, or removed where the change is `null`.
pub fn with(mut command: Value, changes: Value) -> Value {
    for (field, value) in changes.as_object().cloned().unwrap_or_default() {
        if value.is_null() {
            command.as_object_mut().map(|c| c.remove(&field));
        } else {
            command[field] = value;
        }
    }
    command
}

/// `hookbus serve` on `port` with the bootstrap token and `env` on top, output discarded.
pub fn serve(database_url: &str, port: u16, env: &[(&str, &str)]) -> std::process::Child {
    let mut command = hookbus(database_url);
    command
        .env("HOOKBUS_LISTEN", format!("127.0.0.1:{port}"))
        .env("HOOKBUS_BOOTSTRAP_TOKEN", ADMIN_TOKEN)
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    command.spawn().expect("the server starts")
}

/// Whether the server at `base` answers `/readyz`.
pub async fn ready(client: &reqwest::Client, base: &str) -> bool {
    client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200)
}

/// Sends SIGKILL and reaps the process.
pub fn kill_9(child: &mut std::process::Child) {
    std::process::Command::new("kill").args(["-KILL", &child.id().to_string()]).status().expect("kill");
    let _ = child.wait();
}

/// Sends SIGTERM and waits up to ten seconds for the process to exit; its exit status.
pub fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    let sent = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(sent.success(), "kill -TERM failed");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().expect("the child's status") {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "SIGTERM did not stop the server within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}
