//! The command bus, independent of transport and storage.
//!
//! This crate owns the [`Command`] trait that every management operation implements, the registry
//! of command names, the response [`Envelope`], the client-facing [`CommandError`] kinds and the
//! [`Permission`] model. It knows neither HTTP nor the database: feature crates put what their
//! handlers need (a database connection, caches, clients) into [`Services`] at start-up, and the
//! server crate turns envelopes into HTTP responses.

mod command;
mod context;
mod dispatch;
mod envelope;
mod error;
pub mod net;
mod paging;
mod permission;
mod registry;

pub use command::{BoxedCommand, Command, CommandFuture, Handler, Reply, ReplyData, SharedJson};
pub use context::{Context, Owner, Principal, Services, Subject};
pub use dispatch::{parse_command, parse_command_value, run_command};
pub use envelope::Envelope;
pub use error::{CommandError, error_chain};
pub use paging::{Page, PageRequest};
pub use permission::{Permission, PermissionSet};
pub use registry::{CommandInfo, catalog, lookup};

#[doc(hidden)]
pub mod __private {
    pub use inventory;
    pub use schemars;
}

/// Timestamps on the wire: RFC 3339, UTC, with `Z`.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// The current time, truncated to microseconds so that it survives a round trip through either
/// database unchanged.
pub fn now() -> Timestamp {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}
