//! The delivery benchmark: the hookbus binary as a child process (so that its memory
//! can be read on its own), a receiver in this process answering 200 at once, and three loads:
//!
//! - (a) 2,000 events published by 32 concurrent clients to 1 subscription;
//! - (b) the same to 10 subscriptions (20,000 deliveries);
//! - (c) a fixed 500 events/s for 10 s to 1 subscription;
//! - (d) 1,000 events to a healthy endpoint and to one that hangs (answers after 20 s), beside the
//!   same 1,000 to the healthy endpoint alone: the healthy endpoint's p50/p99 with and without a
//!   hanging neighbour.
//!
//! It prints publish/s, deliveries/s and publish-to-receipt p50/p99, and the server's RSS idle and
//! at its peak, beside the figures of the Svix server measured on this machine kind.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::{App, HttpResponse, HttpServer, dev::ServerHandle, web};
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};

use crate::scenario::{Backend, Database as BenchDatabase};

const TOKEN: &str = "bench-bootstrap-token-0123456789abcdef";
const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// When this process started measuring: publishers stamp events with the time since, receivers
/// subtract.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Receipts: how many, and each one's publish-to-receipt latency.
#[derive(Debug, Default)]
pub(crate) struct Receipts {
    count: AtomicUsize,
    latencies_us: Mutex<Vec<u64>>,
}

impl Receipts {
    pub(crate) fn arrived(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    pub(crate) fn reset(&self) {
        self.count.store(0, Ordering::SeqCst);
        self.latencies_us.lock().map(|mut l| l.clear()).ok();
    }

    /// Waits for `n` receipts, up to `limit`; returns when the last one came.
    pub(crate) async fn wait_for(&self, n: usize, limit: Duration) -> Option<Instant> {
        let started = Instant::now();
        while self.count.load(Ordering::SeqCst) < n {
            if started.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Some(Instant::now())
    }

    fn percentiles(&self) -> (f64, f64) {
        let mut all = self.latencies_us.lock().map(|l| l.clone()).unwrap_or_default();
        all.sort_unstable();
        let at = |q: f64| all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1))).copied();
        (at(0.50).unwrap_or(0) as f64 / 1000.0, at(0.99).unwrap_or(0) as f64 / 1000.0)
    }
}

async fn receive(body: web::Bytes, receipts: web::Data<Receipts>) -> HttpResponse {
    let now = epoch().elapsed().as_micros() as u64;
    let sent = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["data"]["t"].as_u64());
    if let Some(sent) = sent {
        receipts.latencies_us.lock().map(|mut l| l.push(now.saturating_sub(sent))).ok();
    }
    receipts.count.fetch_add(1, Ordering::SeqCst);
    HttpResponse::Ok().finish()
}

/// An endpoint that hangs: it answers every request after `pause`.
fn start_hanging(pause: Duration) -> (String, ServerHandle) {
    let server = HttpServer::new(move || {
        App::new().default_service(web::to(move || async move {
            tokio::time::sleep(pause).await;
            HttpResponse::Ok().finish()
        }))
    })
    .workers(1)
    .max_connections(100_000)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .expect("bind the hanging endpoint");
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://{addr}"), handle)
}

pub(crate) fn start_receiver(receipts: Arc<Receipts>) -> (String, ServerHandle) {
    let server = HttpServer::new(move || {
        App::new().app_data(web::Data::from(Arc::clone(&receipts))).default_service(web::to(receive))
    })
    .workers(2)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .expect("bind the receiver");
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://{addr}"), handle)
}

/// The hookbus binary, serving on `port`.
pub(crate) struct Server {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Server {
    pub(crate) fn start(binary: &Path, database_url: &str, workers: usize) -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| e.to_string())?;
        let child = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOOKBUS_DATABASE_URL", database_url)
            .env("HOOKBUS_LISTEN", format!("127.0.0.1:{port}"))
            .env("HOOKBUS_BOOTSTRAP_TOKEN", TOKEN)
            .env("HOOKBUS_SERVER__WORKERS", workers.to_string())
            .env("HOOKBUS_OUTBOUND_ALLOW_CIDRS", "127.0.0.0/8")
            .env("HOOKBUS_OUTBOUND_ALLOW_HTTP", "true")
            .env("HOOKBUS_OUTBOUND__ENCRYPTION_KEY", KEY)
            .env("HOOKBUS_LOG__LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e} (run `just bench`, which builds it)", binary.display()))?;
        Ok(Self { child, base: format!("http://127.0.0.1:{port}"), client: reqwest::Client::new() })
    }

    pub(crate) async fn ready(&self) -> bool {
        for _ in 0..400 {
            if self.client.get(format!("{}/readyz", self.base)).send().await.is_ok_and(|r| r.status() == 200) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Waits until `total` notifications are recorded as delivered: outcomes of a load are still
    /// being written after its last receipt, and the next load should not pay for them.
    async fn settle(&self, total: usize) -> Result<(), String> {
        for _ in 0..600 {
            let page = self
                .command(json!({"$type": "GetNotificationListQuery", "status": "Delivered", "pageSize": 1}))
                .await?;
            if page["totalCount"].as_u64().unwrap_or(0) as usize >= total {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("fewer than {total} notifications were recorded as delivered"))
    }

    async fn command(&self, body: Value) -> Result<Value, String> {
        let response = self
            .client
            .post(format!("{}/api/bpm/cmd", self.base))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let reply: Value = response.json().await.map_err(|e| e.to_string())?;
        if reply["success"] == json!(true) { Ok(reply["data"].clone()) } else { Err(reply.to_string()) }
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `VmRSS` (now) or `VmHWM` (peak) of the server process, in MiB.
    fn memory(&self, field: &str) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find(|line| line.starts_with(field))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Publishes `count` events named `event` from `clients` concurrent clients; returns how long it
/// took and how many failed.
pub(crate) async fn publish_burst(server: &Server, event: &str, count: usize, clients: usize) -> (Duration, usize) {
    let started = Instant::now();
    let failures = stream::iter(0..count)
        .map(|n| publish_one(server, event, n))
        .buffer_unordered(clients)
        .filter(|ok| std::future::ready(!ok))
        .count()
        .await;
    (started.elapsed(), failures)
}

async fn publish_one(server: &Server, event: &str, n: usize) -> bool {
    let t = epoch().elapsed().as_micros() as u64;
    let body = json!({"$type": "PublishEventCommand", "eventName": event, "data": {"n": n, "t": t}});
    server.command(body).await.is_ok()
}

pub(crate) async fn subscribe(server: &Server, receiver: &str, event: &str, count: usize) -> Result<(), String> {
    for i in 0..count {
        server
            .command(json!({
                "$type": "CreateWebhookSubscriptionCommand",
                "partnerId": "6f1c2a4e-8d3b-4c5a-9e7f-0a1b2c3d4e5f",
                "name": format!("bench {event} {i}"),
                "webhookUri": format!("{receiver}/{event}/{i}"),
                "events": [event],
            }))
            .await?;
    }
    Ok(())
}

/// Runs the three loads against one database; prints a line each. `false` when one failed.
pub async fn run(backend: Backend, postgres_url: &str, dir: &Path, binary: &Path, workers: usize) -> bool {
    epoch();
    let database = match BenchDatabase::create(backend, postgres_url, dir, "delivery").await {
        Ok(database) => database,
        Err(e) => {
            eprintln!("hookbus-bench: delivery {backend}: {e}");
            return false;
        }
    };
    let ok = match measure(backend, &database.url, binary, workers).await {
        Ok(()) => true,
        Err(e) => {
            eprintln!("hookbus-bench: delivery {backend}: {e}");
            false
        }
    };
    database.drop().await;
    ok
}

async fn measure(backend: Backend, database_url: &str, binary: &Path, workers: usize) -> Result<(), String> {
    let receipts = Arc::new(Receipts::default());
    let (receiver, receiver_handle) = start_receiver(Arc::clone(&receipts));
    let server = Server::start(binary, database_url, workers)?;
    if !server.ready().await {
        return Err("the server did not become ready".into());
    }
    subscribe(&server, &receiver, "WB_Send_Sms", 1).await?;
    subscribe(&server, &receiver, "WB_Send_Otp", 10).await?;
    subscribe(&server, &receiver, "WB_Send_Loan_Otp", 1).await?;
    // (d): the healthy endpoint alone, then beside one that hangs.
    let (hanging, hanging_handle) = start_hanging(Duration::from_secs(20));
    subscribe(&server, &receiver, "WB_Send_Application_Ready", 1).await?;
    subscribe(&server, &receiver, "WB_Send_Two_Factor_Code", 1).await?;
    subscribe(&server, &hanging, "WB_Send_Two_Factor_Code", 1).await?;
    // Warm up connections and caches, then let the server settle before reading its idle memory.
    publish_burst(&server, "WB_Send_Sms", 100, 8).await;
    receipts.wait_for(100, Duration::from_secs(30)).await;
    let mut delivered = 100;
    server.settle(delivered).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = server.memory("VmRSS:");

    let label = format!("{backend:<10} delivery");
    for (name, event, subscriptions, target) in [
        ("(a) 2000 events x 1 subscription ", "WB_Send_Sms", 1, "target >= 1000 deliveries/s; Svix ~780/s, p99 92 ms"),
        ("(b) 2000 events x 10 subscriptions", "WB_Send_Otp", 10, "target >= 3000 deliveries/s; Svix ~2530/s"),
    ] {
        receipts.reset();
        let started = Instant::now();
        let (publishing, failures) = publish_burst(&server, event, 2_000, 32).await;
        let expected = 2_000 * subscriptions;
        let last = receipts.wait_for(expected, Duration::from_secs(120)).await.ok_or_else(|| {
            format!("{name}: only {} of {expected} deliveries arrived", receipts.count.load(Ordering::SeqCst))
        })?;
        let (p50, p99) = receipts.percentiles();
        println!(
            "{label} {name}: publish {:>6.0}/s  deliveries {:>6.0}/s  publish-to-receipt p50 {p50:>6.1} ms  p99 {p99:>7.1} ms  \
             errors {failures}   [{target}]",
            2_000.0 / publishing.as_secs_f64(),
            expected as f64 / (last - started).as_secs_f64(),
        );
        delivered += expected;
        server.settle(delivered).await?;
    }

    receipts.reset();
    let rate = 500;
    let seconds = 10;
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let server = Arc::new(server);
    let mut sent = Vec::new();
    for n in 0..(rate * seconds) as usize {
        ticker.tick().await;
        let server = Arc::clone(&server);
        sent.push(tokio::spawn(async move {
            let started = Instant::now();
            publish_one(&server, "WB_Send_Loan_Otp", n).await.then(|| started.elapsed())
        }));
    }
    let mut failures = 0;
    let mut answered_us = Vec::new();
    for task in sent {
        match task.await {
            Ok(Some(took)) => answered_us.push(took.as_micros() as u64),
            _ => failures += 1,
        }
    }
    answered_us.sort_unstable();
    let answer_p99 = answered_us.get(answered_us.len() * 99 / 100).copied().unwrap_or(0) as f64 / 1000.0;
    let expected = (rate * seconds) as usize - failures;
    receipts.wait_for(expected, Duration::from_secs(60)).await.ok_or_else(|| {
        format!("(c): only {} of {expected} deliveries arrived", receipts.count.load(Ordering::SeqCst))
    })?;
    let (p50, p99) = receipts.percentiles();
    println!(
        "{label} (c) 500 events/s for 10 s          : publish-to-receipt p50 {p50:>6.1} ms  p99 {p99:>7.1} ms  errors {failures}   \
         (publish answered p99 {answer_p99:.1} ms)   [target p99 <= 10 ms; Svix ~10 ms]"
    );
    println!(
        "{label} memory                              : RSS idle {idle:>5.1} MiB  peak {:>5.1} MiB   [Svix 40 MB idle, 65 MB peak]",
        server.memory("VmHWM:")
    );

    let mut healthy = Vec::new();
    for event in ["WB_Send_Application_Ready", "WB_Send_Two_Factor_Code"] {
        receipts.reset();
        let (_, failures) = publish_burst(&server, event, 1_000, 32).await;
        receipts.wait_for(1_000 - failures, Duration::from_secs(120)).await.ok_or_else(|| {
            format!("(d): only {} of 1000 healthy deliveries arrived", receipts.count.load(Ordering::SeqCst))
        })?;
        healthy.push(receipts.percentiles());
    }
    let [(alone_p50, alone_p99), (beside_p50, beside_p99)] = healthy[..] else {
        return Err("(d): no figures".into());
    };
    println!(
        "{label} (d) 1000 events, healthy endpoint    : alone p50 {alone_p50:>6.1} ms  p99 {alone_p99:>7.1} ms   beside one \
         that hangs p50 {beside_p50:>6.1} ms  p99 {beside_p99:>7.1} ms   p99 {:.2}x   [target <= 2x; Svix 19.6 s \
         against 62 ms]",
        beside_p99 / alone_p99.max(0.001),
    );
    hanging_handle.stop(false).await;
    receiver_handle.stop(false).await;
    Ok(())
}
