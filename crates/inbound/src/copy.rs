//! Log rows in PostgreSQL's binary `COPY` format.
//!
//! The binary format sends each field as its length and its bytes: PostgreSQL neither scans the
//! rows for delimiters and escapes nor parses uuids, numbers and timestamps from text. With the
//! text format, parsing the rows was about a quarter of the database's work under router load,
//! and escaping them a few percent of hookbus's own.
//!
//! Layout (PostgreSQL manual, "COPY", "Binary Format"): a signature, a flags word and a header
//! extension length; per row, the field count and each field as a 32-bit length (-1 for NULL)
//! and the type's binary representation; a trailer of -1. All integers are big-endian.

use std::borrow::Cow;

use hookbus_core::Timestamp;
use uuid::Uuid;

use crate::row::LogRow;

/// The columns the rows fill, in the order [`encode`] writes them; the others (idempotency,
/// replay, queue) stay NULL.
pub(crate) const COLUMNS: &str = "id, config_id, config_key, request, raw_body, duplicate_of, status, http_status, \
                                  message, data, errors, attempts, duration_ms, received_at, completed_at, config_version";
pub(crate) const COLUMN_COUNT: usize = 16;

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01T00:00:00Z).
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// `rows` as the data of one `COPY inbound_events (COLUMNS) FROM STDIN (FORMAT binary)`.
pub(crate) fn encode(rows: &[LogRow]) -> Vec<u8> {
    let size: usize = rows
        .iter()
        .map(|row| {
            row.request.len()
                + row.raw_body.len()
                + row.data.as_ref().map_or(0, |data| data.len())
                + row.message.as_ref().map_or(0, |message| message.len())
                + 160
        })
        .sum();
    let mut out = Fields(Vec::with_capacity(SIGNATURE.len() + 10 + size));
    out.0.extend_from_slice(SIGNATURE);
    out.0.extend_from_slice(&0_i32.to_be_bytes()); // flags: no OIDs
    out.0.extend_from_slice(&0_i32.to_be_bytes()); // header extension: none
    for row in rows {
        out.0.extend_from_slice(&(COLUMN_COUNT as i16).to_be_bytes());
        out.uuid(Some(row.id));
        out.int4(Some(row.config_id));
        out.text(Some(&row.config_key));
        out.text(Some(&row.request));
        out.text(Some(&row.raw_body));
        out.uuid(row.duplicate_of);
        out.text(Some(row.status.as_str()));
        out.int4(row.http_status);
        out.text(row.message.as_deref());
        out.text(row.data.as_deref());
        out.text(row.errors.as_deref());
        out.int4(Some(row.attempts));
        out.int8(row.duration_ms);
        out.timestamp(Some(row.received_at));
        out.timestamp(row.completed_at);
        out.int4(row.config_version);
    }
    out.0.extend_from_slice(&(-1_i16).to_be_bytes());
    out.0
}

struct Fields(Vec<u8>);

impl Fields {
    fn field(&mut self, bytes: Option<&[u8]>) {
        match bytes {
            Some(bytes) => {
                // A field over 2 GiB cannot reach here: the body limit is far below it.
                let length = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
                self.0.extend_from_slice(&length.to_be_bytes());
                self.0.extend_from_slice(bytes);
            }
            None => self.0.extend_from_slice(&(-1_i32).to_be_bytes()),
        }
    }

    fn uuid(&mut self, value: Option<Uuid>) {
        self.field(value.as_ref().map(|id| id.as_bytes().as_slice()));
    }

    fn int4(&mut self, value: Option<i32>) {
        self.field(value.map(i32::to_be_bytes).as_ref().map(|bytes| bytes.as_slice()));
    }

    fn int8(&mut self, value: Option<i64>) {
        self.field(value.map(i64::to_be_bytes).as_ref().map(|bytes| bytes.as_slice()));
    }

    /// `timestamptz`: microseconds since PostgreSQL's epoch.
    fn timestamp(&mut self, value: Option<Timestamp>) {
        self.int8(value.map(|at| at.timestamp_micros() - POSTGRES_EPOCH_MICROS));
    }

    /// Text as UTF-8; NUL, which a PostgreSQL text value cannot hold, becomes U+FFFD.
    fn text(&mut self, value: Option<&str>) {
        let value = value.map(|text| {
            if text.as_bytes().contains(&0) { Cow::Owned(text.replace('\0', "\u{FFFD}")) } else { Cow::Borrowed(text) }
        });
        self.field(value.as_deref().map(str::as_bytes));
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn row() -> LogRow {
        let at = chrono::Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 1).single().expect("a time");
        LogRow {
            id: Uuid::from_u128(1),
            config_id: 7,
            config_version: Some(3),
            config_key: "k".to_owned(),
            request: "{}".to_owned(),
            raw_body: "a\0b".to_owned(),
            duplicate_of: None,
            status: crate::InboundStatus::Succeeded,
            http_status: Some(200),
            message: None,
            data: None,
            errors: None,
            attempts: 1,
            duration_ms: Some(-2),
            received_at: at,
            completed_at: None,
        }
    }

    #[test]
    fn rows_are_framed_as_postgres_binary_copy() {
        let out = encode(&[row()]);
        let mut expected = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        expected.extend_from_slice(&[0, 16]);
        let field = |expected: &mut Vec<u8>, bytes: &[u8]| {
            expected.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
            expected.extend_from_slice(bytes);
        };
        let null = |expected: &mut Vec<u8>| expected.extend_from_slice(&[0xff; 4]);
        field(&mut expected, &1_u128.to_be_bytes());
        field(&mut expected, &[0, 0, 0, 7]);
        field(&mut expected, b"k");
        field(&mut expected, b"{}");
        field(&mut expected, "a\u{FFFD}b".as_bytes());
        null(&mut expected);
        field(&mut expected, b"Succeeded");
        field(&mut expected, &200_i32.to_be_bytes());
        null(&mut expected);
        null(&mut expected);
        null(&mut expected);
        field(&mut expected, &1_i32.to_be_bytes());
        field(&mut expected, &(-2_i64).to_be_bytes());
        field(&mut expected, &1_000_000_i64.to_be_bytes());
        null(&mut expected);
        field(&mut expected, &3_i32.to_be_bytes());
        expected.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(out, expected);
    }
}
