//! The storage benchmark (PostgreSQL only): what publishing and delivering cost the database and
//! the CPU, per event and per delivery, the figures behind `docs/scaling.md`.
//!
//! The `hookbus` binary runs as a child process against a fresh database, with a receiver in this
//! process answering 200 at once. Two loads of the same number of events are measured one after
//! the other: to 1 subscription, then to 10. For each it reads, before and after:
//!
//! - the write-ahead log position (`pg_current_wal_lsn`): WAL bytes written;
//! - `pg_stat_database`: transactions committed, rows inserted, updated and deleted;
//! - `pg_stat_user_tables` for the delivery tables: rows inserted, updated (and how many in place,
//!   HOT), deleted, and dead rows; dead rows are also sampled during the load for their peak;
//! - CPU time (user + system, from `/proc`) of the hookbus process and of every PostgreSQL process.
//!
//! With one load at 1 delivery per event and one at 10, the CPU of an event splits into a part per
//! event and a part per delivery: `cpu(n) = event + n * delivery`. The statistics reach their views
//! a moment after each transaction; the benchmark waits for them (about 11 s) before reading.
//! Run it on a quiet machine: every process named `postgres` is counted.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::{
    delivery::{Receipts, Server, publish_burst, start_receiver, subscribe},
    scenario::{Backend, Database as BenchDatabase},
};

/// The tables whose statistics are reported.
const TABLES: [&str; 5] = ["events", "notifications", "delivery_queue", "delivery_attempts", "subscriptions"];

/// Runs both loads of `events` events; prints the report. `false` when something failed.
pub async fn run(postgres_url: &str, dir: &Path, binary: &Path, workers: usize, events: usize) -> bool {
    let database = match BenchDatabase::create(Backend::Postgres, postgres_url, dir, "storage").await {
        Ok(database) => database,
        Err(e) => {
            eprintln!("hookbus-bench: storage: {e}");
            return false;
        }
    };
    let ok = match measure(&database.url, binary, workers, events).await {
        Ok(()) => true,
        Err(e) => {
            eprintln!("hookbus-bench: storage: {e}");
            false
        }
    };
    database.drop().await;
    ok
}

async fn measure(database_url: &str, binary: &Path, workers: usize, events: usize) -> Result<(), String> {
    let db = sea_orm::Database::connect(database_url).await.map_err(|e| e.to_string())?;
    let receipts = Arc::new(Receipts::default());
    let (receiver, receiver_handle) = start_receiver(Arc::clone(&receipts));
    let server = Server::start(binary, database_url, workers)?;
    if !server.ready().await {
        return Err("the server did not become ready".into());
    }
    subscribe(&server, &receiver, "WB_Send_Sms", 1).await?;
    subscribe(&server, &receiver, "WB_Send_Otp", 10).await?;
    publish_burst(&server, "WB_Send_Sms", 200, 8).await;
    receipts.wait_for(200, Duration::from_secs(30)).await;
    drained(&db).await?;
    // The warm-up's statistics reach the views before the first reading.
    tokio::time::sleep(Duration::from_secs(11)).await;

    let mut loads = Vec::new();
    for (event, fan_out) in [("WB_Send_Sms", 1), ("WB_Send_Otp", 10)] {
        let before = Snapshot::take(&db, server.pid()).await?;
        receipts.reset();
        let started = Instant::now();
        let sampler = DeadRows::sample(database_url).await?;
        let (_, failures) = publish_burst(&server, event, events, 32).await;
        if failures > 0 {
            return Err(format!("{failures} publications failed"));
        }
        let deliveries = events * fan_out;
        receipts
            .wait_for(deliveries, Duration::from_secs(600))
            .await
            .ok_or_else(|| format!("only {} of {deliveries} deliveries arrived", receipts.arrived()))?;
        drained(&db).await?;
        let took = started.elapsed();
        let peak_dead = sampler.stop().await;
        // The statistics of the server's connections reach the views after at most 10 s idle.
        tokio::time::sleep(Duration::from_secs(11)).await;
        let after = Snapshot::take(&db, server.pid()).await?;
        let load = Load { fan_out, events, took, before, after, peak_dead };
        load.print();
        loads.push(load);
    }
    if let [one, ten] = loads.as_slice() {
        split_cpu(one, ten);
    }
    vacuumed(&db).await?;
    receiver_handle.stop(false).await;
    Ok(())
}

/// Waits (up to three minutes) for autovacuum to visit the queue and the notifications after the
/// loads, and prints their dead rows then: what the per-table settings keep them to. On a server
/// with autovacuum off, it runs the same `VACUUM` itself and says so.
async fn vacuumed(db: &DatabaseConnection) -> Result<(), String> {
    let started = Instant::now();
    let on = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, "SELECT current_setting('autovacuum') = 'on' AS on"))
        .await
        .map_err(|e| e.to_string())?
        .map(|row| row.try_get::<bool>("", "on"))
        .transpose()
        .map_err(|e| e.to_string())?
        .unwrap_or(false);
    if on {
        let sql = "SELECT COUNT(*)::BIGINT AS n FROM pg_stat_user_tables WHERE relname IN ('notifications', \
                   'delivery_queue') AND last_autovacuum > now() - interval '10 minutes'";
        while count(db, sql).await? < 2 && started.elapsed() < Duration::from_secs(180) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    } else {
        println!("postgres   storage: autovacuum is off on this server; running the VACUUM it would run");
        db.execute_unprepared("VACUUM (ANALYZE) notifications, delivery_queue").await.map_err(|e| e.to_string())?;
        tokio::time::sleep(Duration::from_secs(11)).await;
    }
    for table in ["notifications", "delivery_queue"] {
        let live =
            count(db, &format!("SELECT n_live_tup AS n FROM pg_stat_user_tables WHERE relname = '{table}'")).await?;
        let dead =
            count(db, &format!("SELECT n_dead_tup AS n FROM pg_stat_user_tables WHERE relname = '{table}'")).await?;
        println!(
            "postgres   storage after vacuum ({:.0} s after the loads): {table:<14} live rows {live:>7}, dead rows {dead:>6}",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// Waits until every outcome is recorded: the queue is empty.
async fn drained(db: &DatabaseConnection) -> Result<(), String> {
    for _ in 0..3000 {
        if count(db, "SELECT COUNT(*)::BIGINT AS n FROM delivery_queue").await? == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("the queue did not drain".into())
}

async fn count(db: &DatabaseConnection, sql: &str) -> Result<i64, String> {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no row")?;
    row.try_get::<i64>("", "n").map_err(|e| e.to_string())
}

/// One table's counters.
#[derive(Debug, Clone, Copy, Default)]
struct TableStats {
    inserted: i64,
    updated: i64,
    hot: i64,
    deleted: i64,
    dead: i64,
}

/// Everything read before and after a load.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    wal: i64,
    commits: i64,
    inserted: i64,
    updated: i64,
    deleted: i64,
    tables: Vec<TableStats>,
    server_cpu_ms: f64,
    postgres_cpu_ms: f64,
}

impl Snapshot {
    async fn take(db: &DatabaseConnection, server: u32) -> Result<Self, String> {
        let one = |sql: &'static str| async move {
            db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no row: {sql}"))
        };
        let wal = one("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::BIGINT AS n").await?;
        let database = one(
            "SELECT xact_commit AS commits, tup_inserted AS inserted, tup_updated AS updated, tup_deleted AS deleted \
             FROM pg_stat_database WHERE datname = current_database()",
        )
        .await?;
        let get = |row: &sea_orm::QueryResult, name: &str| row.try_get::<i64>("", name).map_err(|e| e.to_string());
        let mut tables = Vec::new();
        for table in TABLES {
            let sql = format!(
                "SELECT n_tup_ins AS inserted, n_tup_upd AS updated, n_tup_hot_upd AS hot, n_tup_del AS deleted, \
                 n_dead_tup AS dead FROM pg_stat_user_tables WHERE relname = '{table}'"
            );
            let row = db
                .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no statistics for {table}"))?;
            tables.push(TableStats {
                inserted: get(&row, "inserted")?,
                updated: get(&row, "updated")?,
                hot: get(&row, "hot")?,
                deleted: get(&row, "deleted")?,
                dead: get(&row, "dead")?,
            });
        }
        Ok(Self {
            wal: get(&wal, "n")?,
            commits: get(&database, "commits")?,
            inserted: get(&database, "inserted")?,
            updated: get(&database, "updated")?,
            deleted: get(&database, "deleted")?,
            tables,
            server_cpu_ms: cpu_ms(&[server]),
            postgres_cpu_ms: cpu_ms(&postgres_pids()),
        })
    }
}

/// One load's figures.
struct Load {
    fan_out: usize,
    events: usize,
    took: Duration,
    before: Snapshot,
    after: Snapshot,
    peak_dead: Vec<i64>,
}

impl Load {
    fn deliveries(&self) -> f64 {
        (self.events * self.fan_out) as f64
    }

    fn cpu_per_event(&self) -> (f64, f64) {
        let events = self.events as f64;
        (
            (self.after.server_cpu_ms - self.before.server_cpu_ms) / events,
            (self.after.postgres_cpu_ms - self.before.postgres_cpu_ms) / events,
        )
    }

    fn print(&self) {
        let (events, deliveries) = (self.events as f64, self.deliveries());
        let (a, b) = (&self.after, &self.before);
        let label = format!("postgres   storage {} events x {:>2} subscriptions", self.events, self.fan_out);
        let (server, postgres) = self.cpu_per_event();
        println!(
            "{label}: {:.1} s; WAL {:.0} bytes/event, {:.0} bytes/delivery; commits {:.2}/event; rows inserted {:.2}, \
             updated {:.2}, deleted {:.2} per delivery; CPU per event: hookbus {server:.3} ms, PostgreSQL {postgres:.3} ms",
            self.took.as_secs_f64(),
            (a.wal - b.wal) as f64 / events,
            (a.wal - b.wal) as f64 / deliveries,
            (a.commits - b.commits) as f64 / events,
            (a.inserted - b.inserted) as f64 / deliveries,
            (a.updated - b.updated) as f64 / deliveries,
            (a.deleted - b.deleted) as f64 / deliveries,
        );
        for (index, table) in TABLES.iter().enumerate() {
            let (after, before) = (a.tables[index], b.tables[index]);
            let updated = after.updated - before.updated;
            let hot = after.hot - before.hot;
            println!(
                "{label}:   {table:<17} inserted {:>7}  updated {:>7} ({:>5.1}% HOT)  deleted {:>7}  dead rows: peak {:>6}, \
                 after {:>6}",
                after.inserted - before.inserted,
                updated,
                if updated > 0 { 100.0 * hot as f64 / updated as f64 } else { 0.0 },
                after.deleted - before.deleted,
                self.peak_dead.get(index).copied().unwrap_or(0),
                after.dead,
            );
        }
    }
}

/// The CPU of an event split into its parts, from a load at 1 delivery per event and one at 10.
fn split_cpu(one: &Load, ten: &Load) {
    let (server_one, postgres_one) = one.cpu_per_event();
    let (server_ten, postgres_ten) = ten.cpu_per_event();
    let fan = (ten.fan_out - one.fan_out) as f64;
    let per_delivery = ((server_ten - server_one) / fan, (postgres_ten - postgres_one) / fan);
    let per_event = (server_one - per_delivery.0, postgres_one - per_delivery.1);
    println!(
        "postgres   storage CPU model: per event hookbus {:.3} ms + PostgreSQL {:.3} ms; per delivery hookbus {:.3} ms \
         + PostgreSQL {:.3} ms",
        per_event.0, per_event.1, per_delivery.0, per_delivery.1
    );
}

/// Samples the delivery tables' dead rows every half second while a load runs.
struct DeadRows {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<i64>>,
}

impl DeadRows {
    async fn sample(database_url: &str) -> Result<Self, String> {
        let db = sea_orm::Database::connect(database_url).await.map_err(|e| e.to_string())?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut peak = vec![0; TABLES.len()];
            loop {
                for (index, table) in TABLES.iter().enumerate() {
                    let sql = format!("SELECT n_dead_tup AS n FROM pg_stat_user_tables WHERE relname = '{table}'");
                    if let Ok(dead) = count(&db, &sql).await {
                        peak[index] = peak[index].max(dead);
                    }
                }
                tokio::select! {
                    _ = &mut stopped => return peak,
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        });
        Ok(Self { stop, task })
    }

    async fn stop(self) -> Vec<i64> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// Every process named `postgres`.
fn postgres_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "postgres"))
        .collect()
}

/// User and system CPU of `pids`, in milliseconds.
fn cpu_ms(pids: &[u32]) -> f64 {
    // Clock ticks per second: 100 on Linux.
    const TICKS: f64 = 100.0;
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // Fields after the command (which may hold spaces) in parentheses.
            let rest = stat.rsplit_once(") ")?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // utime, stime, and the children's cutime, cstime: PostgreSQL's processes that exited
            // (autovacuum workers) count in the postmaster's.
            let ticks: f64 = (11..=14).filter_map(|field| fields.get(field)?.parse::<f64>().ok()).sum();
            Some(ticks / TICKS * 1000.0)
        })
        .sum()
}
