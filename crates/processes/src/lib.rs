//! The minimal process engine: definitions whose steps run a bus command (inputs mapped
//! by JSONPath over the process variables) or a rhai script, and instances whose state is saved
//! after every step, so that a running instance resumes after a restart without running a
//! completed step again.

mod commands;
mod definition;
mod engine;
mod entity;

pub use engine::ProcessEngine;

/// Instance states.
pub mod status {
    pub const RUNNING: &str = "RUNNING";
    pub const COMPLETED: &str = "COMPLETED";
    pub const ERROR: &str = "ERROR";
    pub const CANCELLED: &str = "CANCELLED";
}
