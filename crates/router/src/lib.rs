//! The dynamic inbound router: who may call a configuration, and what running it means.
//!
//! The server matches a request to a cached [`ConfigEntry`](hookbus_configs::ConfigEntry) and
//! turns it into an [`InboundRequest`]; this crate decides whether the request is admitted
//! ([`admit`]) and runs the configuration's handler on the bus ([`Router::execute`]) with the
//! router's internal principal, in one unit of work per request; [`TestWebHookConfigCommand`]
//! runs it as a dry run. It knows no HTTP framework, and the database only through the store's
//! units of work.

mod admit;
mod client_ip;
mod dry_run;
mod execute;
mod request;

pub use admit::{admit, not_found};
pub use client_ip::{BadProxy, TrustedProxies};
pub use dry_run::{DryRun, TestWebHookConfigCommand};
pub use execute::{BusHost, Router, json_kind, run_named, script_error};
pub use request::InboundRequest;
