//! Inbound reliability: every request the router receives is logged with its
//! outcome; a configuration's `idempotencyKey` makes a repeat get the first result without running
//! again; `respondAsync` answers 202 and runs the handler from a durable queue in the database,
//! so a crash after the 202 loses nothing; any logged request can be replayed.
//!
//! Headers that carry secrets ([`HeaderRedaction`]) are redacted before anything is stored. The fixed provider routes log
//! their requests here too, through [`FixedRouteEntry`].

mod batch;
mod commands;
mod copy;
mod entity;
mod fixed;
mod intake;
mod outcome;
mod receive;
mod redact;
mod row;
mod status;
mod stored;
mod worker;

pub use batch::LogWriter;
pub use commands::list_statement;
pub use fixed::{FixedRouteEntry, FixedRouteReplayer, FixedRoutes};
pub use intake::Intake;
pub use outcome::Outcomes;
pub use receive::{Inbound, Receipt};
pub use redact::{DEFAULT_SECRET_HEADER_PARTS, HeaderRedaction, REDACTED};
pub use status::InboundStatus;
pub use worker::{AsyncWorker, Handoff, Handovers, poll_statement, sweep};
