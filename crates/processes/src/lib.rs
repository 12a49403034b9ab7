//! The minimal process engine: definitions whose steps run a bus command (inputs mapped
//! by JSONPath over the process variables) or a rhai script, and instances whose state is saved
//! after every step, so that a running instance resumes after a restart without running a
//! completed step again.

mod commands;
mod definition;
mod engine;
mod entity;
mod status;

pub use engine::ProcessEngine;
pub use status::ProcessStatus;
