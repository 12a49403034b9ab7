//! Router configurations (`WebHookConfig`): the eight configuration commands and the rules a
//! configuration must satisfy before it is saved.
//!
//! Everything a configuration carries is parsed when it is saved: the key and path, the HTTP method,
//! the IP allow-list (into addresses and CIDR ranges), the JSONPaths of a command chain and of the
//! idempotency key, and the rhai script (compiled). A stored configuration is therefore always one
//! the router can run. This crate does not serve the router itself.

mod cache;
mod commands;
mod entity;
mod entry;
mod history;
mod input;
mod model;
mod queries;
pub mod secrets;
mod view;

pub use cache::{CacheError, CachedConfig, ConfigCache};
pub use commands::draft_entry;
pub use entry::{ChainStep, ConfigEntry, CorruptConfig, Execution, IdempotencyRule, StepInput};
pub use history::{Change, ConfigVersion, entry_at_version, sweep as sweep_history};
pub use input::{ChainStepInput, ConfigFields};
pub use model::{ExecutionType, HookPath, HttpMethod, IdempotencyKey, IpAllowList, WebhookKey};
pub use view::WebHookConfig;
