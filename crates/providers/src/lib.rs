//! The fixed provider routes (SPEC 4): Mono's callback, and Remita's payment and collection
//! notifications.
//!
//! A request is verified first, by its route's verifier (Mono's shared secret, Remita's IP
//! allow-list); only a [`Verified`](verify::Verified) request reaches dispatch. Its body becomes
//! notifications, each with a deduplication key; Remita payments are confirmed with Remita's
//! status API when it is configured; each new notification is claimed in the database (so
//! deduplication holds across instances), published as an outbound event and, when configured,
//! handed to a router configuration (`forward_to_key`). Every request is logged in the inbound
//! event log, secret headers redacted.
//!
//! This crate serves no HTTP: the server hands it an `InboundRequest` and the body, and turns
//! the `Reply` or `CommandError` into a response. Its only outgoing HTTP is the status API call.

mod answer;
mod claims;
mod dispatch;
mod forward;
mod mono;
mod notification;
mod publish;
mod remita;
mod route;
mod settings;
mod verify;

pub use claims::sweep;
pub use route::{Providers, Route, receive};
pub use settings::{MonoSettings, ProviderSettings, RemitaSettings, Secret};
