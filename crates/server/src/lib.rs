//! The hookbus server: configuration, HTTP, the CLI, metrics, and the wiring of the feature
//! crates. This is the only crate that knows HTTP; handlers here translate between HTTP and the
//! bus and hold no business rules.

// Feature crates register their commands through `inventory`; naming them here makes sure they
// are linked into every binary and test that uses the server.
use hookbus_configs as _;
use hookbus_tokens as _;

pub mod app;
mod auth;
mod body;
pub mod cli;
mod connection;
mod envelope;
pub mod memory;
mod metrics;
pub mod openapi;
pub mod reference;
mod retention;
mod routes;
pub mod settings;
mod state;
pub mod telemetry;

pub use app::{Application, Quiescence};
pub use settings::Settings;
