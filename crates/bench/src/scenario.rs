//! The servers under load and the requests sent to them.

use std::{fmt, path::Path, path::PathBuf};

use actix_web::{App, HttpResponse, HttpServer, dev::ServerHandle, web};
use hookbus_server::{Application, Settings};
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

const TOKEN: &str = "bench-bootstrap-token-0123456789abcdef";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// A bare actix route that parses the JSON body and sends it back. Always measured.
    #[value(skip)]
    Echo,
    /// `GetWebHookConfigByIdQuery` through the bus: auth, dispatch, one indexed read.
    GetById,
    /// `CreateWebHookConfigCommand` with a new key each time: validation and a transaction.
    Create,
    /// The router, type 0: `GetWebHookConfigByIdQuery` with the body as its fields.
    RouteNative,
    /// The router, type 1: a chain of three lookups, each input mapped by JSONPath.
    RouteChain,
    /// The router, type 2: a 20-line script that checks an HMAC signature and builds an answer.
    RouteScript,
    /// The router with respondAsync: the request is stored durably and answered 202.
    RouteAsync,
}

/// The script of `RouteScript`: what a payment notification handler does.
const SCRIPT: &str = r#"
let signature = headers["x-signature"];
if signature == () { reject(401, "missing signature"); }
let expected = hmac_sha256_hex("bench-secret", raw_body);
if !constant_time_eq(signature, expected) { reject(401, "bad signature"); }
let amount = body.amount;
if amount <= 0 { throw "amount must be positive"; }
let fee = if amount > 5000 { 50 } else { amount / 100 };
let channel = switch body.channel {
    "NIP" => "instant",
    "USSD" => "ussd",
    _ => "other"
};
let reference = body.reference;
let parts = reference.split("-");
#{
    reference: reference,
    batch: parts[0],
    amount: amount,
    fee: fee,
    net: amount - fee,
    channel: channel,
    receivedAt: now()
}
"#;

/// The body the script route checks and reads.
pub const ROUTE_BODY: &str = r#"{"id":1,"amount":2500,"channel":"NIP","reference":"B7-000123"}"#;
/// The body of the native, chain and async routes: the query's fields.
const LOOKUP_BODY: &str = r#"{"id":1}"#;

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Echo => "echo (bare actix JSON)",
            Scenario::GetById => "GetWebHookConfigByIdQuery",
            Scenario::Create => "CreateWebHookConfigCommand",
            Scenario::RouteNative => "route type 0 (native command)",
            Scenario::RouteChain => "route type 1 (chain of 3)",
            Scenario::RouteScript => "route type 2 (20-line script)",
            Scenario::RouteAsync => "route respondAsync (202)",
        }
    }

    /// A wrk script sending this scenario's requests.
    pub fn write_script(self, dir: &Path, token: &str) -> std::io::Result<PathBuf> {
        let headers = format!(
            "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
             wrk.headers[\"Authorization\"] = \"Bearer {token}\"\n"
        );
        let route = |body: &str, signature: &str| {
            format!(
                "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
                 wrk.headers[\"X-Signature\"] = \"{signature}\"\nwrk.body = '{body}'\n"
            )
        };
        let body = match self {
            Scenario::RouteNative | Scenario::RouteChain | Scenario::RouteAsync => route(LOOKUP_BODY, ""),
            Scenario::RouteScript => route(ROUTE_BODY, &hmac_hex("bench-secret", ROUTE_BODY)),
            Scenario::Echo | Scenario::GetById => {
                format!("{headers}wrk.body = '{{\"$type\":\"GetWebHookConfigByIdQuery\",\"id\":1}}'\n")
            }
            // Each wrk thread numbers its own keys under the run's prefix (the script's argument), so
            // that every request of every run creates a new configuration.
            Scenario::Create => format!(
                "{headers}\
                 local threads = 0\n\
                 function setup(thread) threads = threads + 1; thread:set(\"tid\", threads) end\n\
                 local counter = 0\n\
                 local run = \"\"\n\
                 function init(args) run = args[1] or \"run\" end\n\
                 function request()\n\
                 \x20 counter = counter + 1\n\
                 \x20 local key = run .. \"-\" .. tid .. \"-\" .. counter\n\
                 \x20 local body = '{{\"$type\":\"CreateWebHookConfigCommand\",\"key\":\"' .. key .. \
                 '\",\"description\":\"benchmark\",\"isEnabled\":true,\"path\":\"/bench/' .. key .. \
                 '\",\"action\":\"POST\",\"executionType\":0,\"commandName\":\"GetWebHookConfigListQuery\"}}'\n\
                 \x20 return wrk.format(nil, nil, nil, body)\n\
                 end\n"
            ),
        };
        let path = dir.join(format!("{self:?}.lua"));
        std::fs::write(&path, body)?;
        Ok(path)
    }
}

/// A server under load.
pub struct Target {
    name: String,
    base: String,
    handle: ServerHandle,
    database: Database,
}

impl Target {
    pub async fn echo(workers: usize) -> Self {
        let server = HttpServer::new(|| {
            App::new().route(
                "/echo",
                web::post().to(|body: web::Json<Value>| async move { HttpResponse::Ok().json(body.into_inner()) }),
            )
        })
        .workers(workers)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind the echo server");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        let database = Database { url: String::new(), postgres: None };
        Self { name: "echo".into(), base: format!("http://{addr}"), handle, database }
    }

    pub async fn hookbus(backend: Backend, workers: usize, postgres_url: &str, dir: &Path) -> Result<Self, String> {
        let mut settings = Settings::defaults().map_err(|e| e.to_string())?;
        settings.server.listen = "127.0.0.1:0".parse().map_err(|_| "address")?;
        settings.server.workers = workers;
        settings.auth.bootstrap_token = TOKEN.into();
        let database = Database::create(backend, postgres_url, dir, "router").await?;
        settings.database.url = database.url.clone();
        let app = Application::build(settings).await.map_err(|e| e.to_string())?;
        let base = format!("http://{}", app.local_addr());
        let handle = app.handle();
        tokio::spawn(app.run_until_stopped());
        let target = Self { name: backend.to_string(), base, handle, database };
        target.seed().await?;
        Ok(target)
    }

    /// The configurations the scenarios use; `seed` (id 1) is the one `GetById` reads.
    async fn seed(&self) -> Result<(), String> {
        let base = |key: &str| {
            json!({
                "$type": "CreateWebHookConfigCommand", "key": key, "description": "used by the benchmark",
                "isEnabled": true, "path": format!("/bench/{key}"), "action": "POST",
            })
        };
        let merge = |mut config: Value, extra: Value| {
            for (field, value) in extra.as_object().cloned().unwrap_or_default() {
                config[field] = value;
            }
            config
        };
        let lookup = json!({"executionType": 0, "commandName": "GetWebHookConfigByIdQuery"});
        let configs = [
            merge(base("seed"), json!({"executionType": 0, "commandName": "GetWebHookConfigListQuery"})),
            merge(base("native"), lookup.clone()),
            merge(
                base("chain"),
                json!({"executionType": 1, "commandChain": [
                    {"commandName": "GetWebHookConfigByIdQuery", "input": {"id": "$.body.id"}},
                    {"commandName": "GetWebHookConfigByIdQuery", "input": {"id": "$.last.id"}},
                    {"commandName": "GetWebHookConfigByIdQuery", "input": {"id": "$.steps[0].id"}}
                ]}),
            ),
            merge(base("script"), json!({"executionType": 2, "executionCode": SCRIPT})),
            merge(merge(base("async"), lookup), json!({"respondAsync": true})),
        ];
        let client = reqwest::Client::new();
        for config in configs {
            let response = client
                .post(format!("{}/api/bpm/cmd", self.base))
                .bearer_auth(TOKEN)
                .json(&config)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let body: Value = response.json().await.map_err(|e| e.to_string())?;
            if body["success"] != json!(true) {
                return Err(format!("seeding failed: {body}"));
            }
        }
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn token(&self) -> &str {
        TOKEN
    }

    pub fn url(&self, scenario: Scenario) -> String {
        match scenario {
            Scenario::Echo => format!("{}/echo", self.base),
            Scenario::GetById | Scenario::Create => format!("{}/api/bpm/cmd", self.base),
            Scenario::RouteNative => format!("{}/api/webhooks/native", self.base),
            Scenario::RouteChain => format!("{}/api/webhooks/chain", self.base),
            Scenario::RouteScript => format!("{}/api/webhooks/script", self.base),
            Scenario::RouteAsync => format!("{}/api/webhooks/async", self.base),
        }
    }

    /// The async route's requests: how many were accepted, and how many of them wait or run.
    pub async fn async_requests(&self) -> Result<(i64, i64), String> {
        let db = sea_orm::Database::connect(&self.database.url).await.map_err(|e| e.to_string())?;
        let count = |condition: &str| {
            let sql = format!("SELECT COUNT(*) AS n FROM inbound_events WHERE config_key = 'async'{condition}");
            let statement = sea_orm::Statement::from_string(db.get_database_backend(), sql);
            let db = &db;
            async move {
                let row = db.query_one_raw(statement).await.map_err(|e| e.to_string())?.ok_or("no count")?;
                row.try_get::<i64>("", "n").map_err(|e| e.to_string())
            }
        };
        let accepted = count("").await?;
        let queued = count(" AND status IN ('Pending', 'Processing')").await?;
        db.close().await.map_err(|e| e.to_string())?;
        Ok((accepted, queued))
    }

    pub async fn finish(self) {
        self.handle.stop(false).await;
        self.database.drop().await;
    }
}

/// A database of its own for one benchmark: a SQLite file in the run's folder, or a PostgreSQL
/// database dropped at the end.
pub struct Database {
    pub url: String,
    postgres: Option<(String, String)>,
}

impl Database {
    pub async fn create(backend: Backend, postgres_url: &str, dir: &Path, label: &str) -> Result<Self, String> {
        match backend {
            Backend::Sqlite => {
                Ok(Self { url: format!("sqlite://{}", dir.join(format!("{label}.db")).display()), postgres: None })
            }
            Backend::Postgres => {
                let name = format!("hookbus_bench_{}", uuid::Uuid::new_v4().simple());
                let admin = sea_orm::Database::connect(postgres_url).await.map_err(|e| format!("PostgreSQL: {e}"))?;
                admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.map_err(|e| e.to_string())?;
                let base = postgres_url.rsplit_once('/').map_or(postgres_url, |(base, _)| base);
                Ok(Self { url: format!("{base}/{name}"), postgres: Some((postgres_url.to_owned(), name)) })
            }
        }
    }

    pub async fn drop(self) {
        if let Some((admin_url, name)) = self.postgres
            && let Ok(admin) = sea_orm::Database::connect(&admin_url).await
        {
            let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        }
    }
}

/// HMAC-SHA256, hex: the signature the script route checks.
fn hmac_hex(key: &str, message: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}
