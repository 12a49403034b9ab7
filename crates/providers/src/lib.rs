//! The fixed provider routes: Mono's callback, and Remita's payment and collection
//! notifications.
//!
//! A request is verified first, from what arrives before its body, by its route's verifier
//! (Mono's shared secret, Remita's IP allow-list): a body is read only for a verified caller, and
//! only a [`Verified`](verify::Verified) request reaches dispatch. A refused request is logged
//! with its body's size and SHA-256, never the body. Its body becomes
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
mod outcome;
mod publish;
mod remita;
mod route;
mod schema;
mod settings;
mod verify;

pub use claims::sweep;
pub use route::{Admitted, BodyDigest, Providers, Replayer, Route, admit, receive, refuse};
pub use settings::{BadSetting, MonoSettings, ProviderSettings, RemitaSettings, Secret};
