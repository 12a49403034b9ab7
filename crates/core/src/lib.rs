//! The command bus, independent of transport and storage.
//!
//! This crate owns the [`Command`] trait that every management operation implements, the registry
//! of command names, the response [`Envelope`], the client-facing [`CommandError`] kinds and the
//! [`Permission`] model. It knows neither HTTP nor the database: feature crates put what their
//! handlers need (a database connection, caches, clients) into [`Services`] at start-up, and the
//! server crate turns envelopes into HTTP responses.

mod command;
mod context;
mod delegation;
mod dispatch;
mod envelope;
mod error;
mod fields;
pub mod net;
mod paging;
mod permission;
mod registry;

pub use command::{Answered, BoxedCommand, Command, CommandFuture, Handler, Reply, ReplyData, SharedJson};
pub use context::{Context, MissingService, Owner, Principal, Services, Subject};
pub use delegation::{Delegation, DelegationView, authorize_commands};
pub use dispatch::{parse_command, parse_command_value, parse_named_command, run_command};
pub use envelope::Envelope;
pub use error::{CommandError, error_chain};
pub use fields::UnknownFields;
pub use paging::{Page, PageRequest};
pub use permission::{Permission, PermissionSet};
pub use registry::{CommandInfo, catalog, lookup};

#[doc(hidden)]
pub mod __private {
    pub use inventory;
    pub use schemars;

    /// The schema of what `T` serializes to: an `Option` member the answer always carries is
    /// required (present, maybe `null`); one it skips when empty is not.
    pub fn answer_schema<T: schemars::JsonSchema>() -> schemars::Schema {
        schemars::generate::SchemaSettings::default().for_serialize().into_generator().into_root_schema_for::<T>()
    }
}

/// Timestamps on the wire: RFC 3339, UTC, with `Z`.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// The current time, truncated to microseconds so that it survives a round trip through either
/// database unchanged.
pub fn now() -> Timestamp {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

/// The time `kept` before now: what a retention of `kept` deletes is older. `None` when that is
/// before any date a timestamp can hold: such a retention keeps everything.
pub fn retention_cutoff(kept: std::time::Duration) -> Option<Timestamp> {
    chrono::Duration::from_std(kept).ok().and_then(|kept| now().checked_sub_signed(kept))
}

/// Serializes a timestamp as its `Serialize` does, for `#[serde(serialize_with = ...)]` on fields
/// written on the request path: chrono's own implementation sends each character through
/// serde_json's string escaper, a measurable cost on the router's path for one field.
pub fn serialize_timestamp<S: serde::Serializer>(at: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_timestamp(at))
}

/// `at` as [`serialize_timestamp`] writes it.
pub fn format_timestamp(at: &Timestamp) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    #[derive(serde::Serialize)]
    struct Fast(#[serde(serialize_with = "super::serialize_timestamp")] super::Timestamp);

    #[test]
    fn a_retention_too_long_to_count_back_has_no_cutoff() {
        let day = std::time::Duration::from_secs(86_400);
        let cutoff = super::retention_cutoff(day).expect("a day back is a date");
        let back = super::now() - cutoff;
        assert!(back >= chrono::Duration::days(1) && back < chrono::Duration::days(1) + chrono::Duration::seconds(5));
        assert_eq!(super::retention_cutoff(std::time::Duration::from_secs(u64::MAX)), None);
        assert_eq!(super::retention_cutoff(day * 1_000_000_000), None);
    }

    #[test]
    fn timestamps_serialize_as_chrono_does() {
        let base = Utc.with_ymd_and_hms(2026, 11, 23, 1, 2, 3).single().expect("a valid date");
        let nanos = [0, 5_000_000, 533_798_000, 533_798_123, 999_999_999];
        for at in nanos.map(|n| base + chrono::Duration::nanoseconds(n)).into_iter().chain([super::now()]) {
            let ours = serde_json::to_string(&Fast(at)).expect("serializable");
            assert_eq!(ours, serde_json::to_string(&at).expect("serializable"));
        }
    }
}
