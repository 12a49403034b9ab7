//! Logging plain requests off the request path.
//!
//! A request with neither an idempotency key nor `respondAsync` needs its log row only for the
//! record, so the row is written once, with its outcome, by a background task that stores many
//! rows per statement: `COPY ... FROM STDIN` on PostgreSQL (the database's bulk path: no
//! parameters to bind, no plan), multi-row `INSERT`s on SQLite. Requests that do need their row
//! first (idempotent ones, for the unique key; queued ones, to survive a crash) are written
//! directly. A crash can lose the plain log rows of the last few milliseconds (the batch filling and
//! the batch being written), never a handler's effects.

use std::{
    fmt::Write as _,
    sync::{Arc, LazyLock},
    time::Duration,
};

use chrono::{Datelike, Timelike};
use hookbus_core::{CommandError, Timestamp};
use hookbus_store::Store;
use sea_orm::DbBackend;
use sqlx::{
    AssertSqlSafe,
    postgres::{PgPool, PgPoolCopyExt},
    sqlite::SqlitePool,
};
use tokio::sync::{Semaphore, mpsc};

use crate::row::LogRow;

/// Rows the writer takes from the queue at once: one COPY, or one transaction of INSERTs.
const BATCH: usize = 500;

/// How long the writer lets a batch fill after its first row. Every transaction costs a commit
/// (on SQLite, a WAL append of each page it touched); without the wait, batches at 20k requests/s
/// were a few dozen rows, and the commits cost about a tenth of the router's CPU.
const LINGER: Duration = Duration::from_millis(10);

/// Rows per INSERT on SQLite.
const ROWS_PER_INSERT: usize = 32;

/// Statements in flight at once on PostgreSQL, each on its own connection: one at a time, the
/// writer's round trips bounded the router's throughput (the server sat partly idle). SQLite
/// takes one writer at a time anyway.
const POSTGRES_WRITES_IN_FLIGHT: usize = 4;

/// The columns a log row fills; the others (idempotency, replay, queue) stay NULL.
const COLUMNS: &str = "id, config_id, config_key, request, raw_body, duplicate_of, status, http_status, message, \
                       data, errors, attempts, duration_ms, received_at, completed_at";
const COLUMN_COUNT: usize = 15;

/// Sends finished plain log rows to the writer task.
#[derive(Debug, Clone)]
pub struct LogWriter {
    rows: mpsc::Sender<LogRow>,
}

impl LogWriter {
    /// Starts the writer task on `store`. `capacity` bounds the rows waiting: when it is full,
    /// requests wait for the writer (back-pressure) rather than dropping rows.
    pub fn spawn(store: Store, capacity: usize) -> Self {
        let (rows, mut queue) = mpsc::channel::<LogRow>(capacity);
        let sink = Arc::new(Sink::new(store));
        let in_flight = match sink.as_ref() {
            Sink::Postgres(_) => POSTGRES_WRITES_IN_FLIGHT,
            Sink::Sqlite(..) => 1,
        };
        let permits = Arc::new(Semaphore::new(in_flight));
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            // The turn first, then the rows: taken before the wait for a turn, a batch held only
            // what had come since the last one was taken, and the rows arriving during the wait
            // went to the batch after it.
            while let Ok(permit) = Arc::clone(&permits).acquire_owned().await {
                if queue.recv_many(&mut batch, BATCH).await == 0 {
                    break;
                }
                if batch.len() < BATCH {
                    tokio::time::sleep(LINGER).await;
                    while batch.len() < BATCH {
                        match queue.try_recv() {
                            Ok(row) => batch.push(row),
                            Err(_) => break,
                        }
                    }
                }
                let rows = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                let sink = Arc::clone(&sink);
                tokio::spawn(async move {
                    sink.store(rows).await;
                    drop(permit);
                });
            }
        });
        Self { rows }
    }

    pub(crate) async fn write(&self, row: LogRow) {
        // Fails only when the writer task is gone (the runtime is stopping).
        let _ = self.rows.send(row).await;
    }
}

/// Where rows go.
#[derive(Debug)]
enum Sink {
    Postgres(PgPool),
    /// SQLite's pool, and the store whose writer turn its transactions take.
    Sqlite(Store, SqlitePool),
}

impl Sink {
    fn new(store: Store) -> Self {
        match store.db().get_database_backend() {
            DbBackend::Postgres => Self::Postgres(store.db().get_postgres_connection_pool().clone()),
            _ => {
                let pool = store.db().get_sqlite_connection_pool().clone();
                Self::Sqlite(store, pool)
            }
        }
    }

    /// Stores `rows`; when the batch fails, each row on its own, so that one row the database
    /// refuses costs only itself. (Failures are logged where they happen.)
    async fn store(&self, rows: Vec<LogRow>) {
        if self.write(&rows).await.is_ok() {
            return;
        }
        let mut lost = 0;
        if rows.len() > 1 {
            for row in &rows {
                lost += usize::from(self.write(std::slice::from_ref(row)).await.is_err());
            }
            tracing::warn!(rows = rows.len(), lost, "inbound log batch failed; its rows were stored one by one");
        }
        if lost == rows.len() {
            // A failing database: don't spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn write(&self, rows: &[LogRow]) -> Result<(), CommandError> {
        match self {
            Self::Postgres(pool) => copy(pool, rows).await.map_err(CommandError::internal),
            Self::Sqlite(store, pool) => insert(store, pool, rows).await.map_err(CommandError::internal),
        }
    }
}

/// `COPY inbound_events FROM STDIN` in PostgreSQL's text format.
async fn copy(pool: &PgPool, rows: &[LogRow]) -> Result<(), sqlx::Error> {
    let mut copy = pool.copy_in_raw(&format!("COPY inbound_events ({COLUMNS}) FROM STDIN")).await?;
    copy.send(copy_text(rows).into_bytes()).await?;
    copy.finish().await?;
    Ok(())
}

/// Rows in COPY's text format: tab-separated, one per line, `\N` for NULL.
fn copy_text(rows: &[LogRow]) -> String {
    let mut out = String::with_capacity(
        rows.iter()
            .map(|row| row.request.len() + row.raw_body.len() + row.data.as_ref().map_or(0, |d| d.len()) + 256)
            .sum(),
    );
    for row in rows {
        let _ = write!(out, "{}\t{}\t", row.id, row.config_id);
        copy_field(&mut out, Some(&row.config_key));
        copy_field(&mut out, Some(&row.request));
        copy_field(&mut out, Some(&row.raw_body));
        match row.duplicate_of {
            Some(id) => {
                let _ = write!(out, "{id}\t");
            }
            None => out.push_str("\\N\t"),
        }
        copy_field(&mut out, Some(&row.status));
        copy_number(&mut out, row.http_status.map(i64::from));
        copy_field(&mut out, row.message.as_deref());
        copy_field(&mut out, row.data.as_deref());
        copy_field(&mut out, row.errors.as_deref());
        copy_number(&mut out, Some(i64::from(row.attempts)));
        copy_number(&mut out, row.duration_ms);
        copy_timestamp(&mut out, Some(row.received_at));
        copy_timestamp(&mut out, row.completed_at);
        // The last field's separator ends the line instead.
        out.pop();
        out.push('\n');
    }
    out
}

/// One field and its separator. Backslash, tab and line breaks are escaped; NUL, which a
/// PostgreSQL text value cannot hold, becomes U+FFFD. (The scan is by byte: all five are ASCII,
/// and no byte of a multi-byte UTF-8 character is.)
fn copy_field(out: &mut String, value: Option<&str>) {
    let Some(value) = value else {
        out.push_str("\\N\t");
        return;
    };
    let mut rest = value;
    while let Some(at) = rest.bytes().position(|byte| matches!(byte, b'\\' | b'\t' | b'\n' | b'\r' | b'\0')) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'\\' => "\\\\",
            b'\t' => "\\t",
            b'\n' => "\\n",
            b'\r' => "\\r",
            _ => "\u{FFFD}",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
    out.push('\t');
}

fn copy_number(out: &mut String, value: Option<i64>) {
    match value {
        Some(value) => {
            let _ = write!(out, "{value}\t");
        }
        None => out.push_str("\\N\t"),
    }
}

/// A timestamp in ISO 8601, microseconds, UTC, written field by field: chrono's `format` parses
/// its pattern again for every value, and that was most of the cost of a row's text.
fn copy_timestamp(out: &mut String, at: Option<Timestamp>) {
    let Some(at) = at else {
        out.push_str("\\N\t");
        return;
    };
    let _ = write!(
        out,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00\t",
        at.year(),
        at.month(),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.timestamp_subsec_micros()
    );
}

/// Multi-row `INSERT`s of up to [`ROWS_PER_INSERT`] rows in one write transaction, bound through
/// sqlx directly: the shared text columns are bound without a copy (sea-orm's values would take
/// each column by value, and then again into sqlx's arguments). A statement of the full size is
/// prepared once and then found in the connection's statement cache; one the size of a whole
/// batch would be parsed again for nearly every batch (batches vary in size), and parsing cost
/// SQLite more than inserting.
async fn insert(store: &Store, pool: &SqlitePool, rows: &[LogRow]) -> Result<(), sqlx::Error> {
    static FULL_INSERT: LazyLock<String> = LazyLock::new(|| insert_sql(ROWS_PER_INSERT));
    // The same turn as the store's own write transactions, taken at `BEGIN` (see `begin_write`).
    let _turn = store.write_turn().await;
    let mut txn = pool.begin_with("BEGIN IMMEDIATE").await?;
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut insert = if chunk.len() == ROWS_PER_INSERT {
            sqlx::query(FULL_INSERT.as_str())
        } else {
            sqlx::query(AssertSqlSafe(insert_sql(chunk.len())))
        };
        for row in chunk {
            insert = insert
                .bind(row.id)
                .bind(row.config_id)
                .bind(row.config_key.as_str())
                .bind(&*row.request)
                .bind(&*row.raw_body)
                .bind(row.duplicate_of)
                .bind(row.status.as_str())
                .bind(row.http_status)
                .bind(row.message.as_deref())
                .bind(row.data.as_deref())
                .bind(row.errors.as_deref())
                .bind(row.attempts)
                .bind(row.duration_ms)
                .bind(row.received_at)
                .bind(row.completed_at);
        }
        insert.execute(&mut *txn).await?;
    }
    txn.commit().await
}

/// `INSERT INTO inbound_events (...) VALUES (?, ...), ...` for `rows` rows.
fn insert_sql(rows: usize) -> String {
    let placeholders = format!("({})", vec!["?"; COLUMN_COUNT].join(", "));
    format!("INSERT INTO inbound_events ({COLUMNS}) VALUES {}", vec![placeholders; rows].join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_timestamps_are_iso_8601_in_microseconds() {
        use chrono::TimeZone;
        let at = chrono::Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single().expect("a time")
            + chrono::Duration::microseconds(67);
        let mut out = String::new();
        copy_timestamp(&mut out, Some(at));
        copy_timestamp(&mut out, None);
        assert_eq!(out, "2026-01-02 03:04:05.000067+00\t\\N\t");
    }

    #[test]
    fn copy_fields_escape_what_the_text_format_reserves() {
        let mut out = String::new();
        copy_field(&mut out, Some("a\\b\tc\nd\re\0f ₦ naïve"));
        copy_field(&mut out, None);
        assert_eq!(out, "a\\\\b\\tc\\nd\\re\u{FFFD}f ₦ naïve\t\\N\t");
    }
}
