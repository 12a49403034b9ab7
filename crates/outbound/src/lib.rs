//! Outbound delivery: the event catalog, publishing, subscriptions, and the delivery
//! engine that sends each notification, signed, from a durable queue in the database.
//!
//! Publishing writes the event and one notification per matching subscription in one
//! transaction (publishes that arrive together share it: group commit), then hands the notifications straight to this instance's workers (no polling
//! delay). Each notification is leased while a worker holds it; notifications that wait for a
//! retry, or whose worker died, are claimed by whichever instance polls first
//! (`FOR UPDATE SKIP LOCKED` on PostgreSQL). Outcomes are written in batches.

pub mod catalog;
mod delivery;
mod entity;
pub mod filter;
pub mod guard;
mod keycheck;
mod lane;
mod metrics;
mod notifications;
mod owner;
mod publish;
mod queue;
mod recipients;
pub mod secret;
mod settings;
pub mod sign;
mod state;
mod status;
mod subscription;

use std::sync::Arc;

pub use delivery::{DeliveryBody, Dispatcher, Sender};
pub use metrics::DeliveryMetrics;
pub use publish::{NewEvent, Published, publish};
pub use settings::OutboundSettings;
pub use status::NotificationStatus;

pub use keycheck::KeyCheckError;
pub use secret::BadKey;

use crate::{guard::AddressPolicy, secret::SecretBox};

/// The outbound service every command and worker shares.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub settings: Arc<OutboundSettings>,
    pub policy: Arc<AddressPolicy>,
    pub secrets: SecretBox,
    pub dispatcher: Dispatcher,
    pub sender: Sender,
    pub metrics: DeliveryMetrics,
    /// Publishes outside a unit of work, committed in groups.
    events: hookbus_store::GroupCommit<publish::EventWriter>,
    /// The subscriptions of each event name, kept between publishes.
    recipients: Arc<recipients::Recipients>,
}

impl Outbound {
    /// Builds the service from its settings, publishing through `store` (its group commits counted
    /// in `groups`). Start its workers with [`Outbound::spawn`].
    pub fn new(
        settings: OutboundSettings,
        metrics: DeliveryMetrics,
        store: &hookbus_store::Store,
        groups: &hookbus_store::GroupCommitMetrics,
    ) -> Result<Self, BadKey> {
        let secrets = SecretBox::from_base64(&settings.encryption_key)?;
        let policy = Arc::new(AddressPolicy { allow: settings.allow_cidrs.clone(), allow_http: settings.allow_http });
        let sender = Sender::new(&settings, Arc::clone(&policy));
        let dispatcher = Dispatcher::new(&settings);
        let events = publish::EventWriter::group(store, groups);
        Ok(Self {
            settings: Arc::new(settings),
            policy,
            secrets,
            dispatcher,
            sender,
            metrics,
            events,
            recipients: Arc::default(),
        })
    }

    /// Checks the encryption key against the database (see `keycheck`): call it before serving.
    pub async fn check_key(&self, db: &impl sea_orm::ConnectionTrait) -> Result<(), KeyCheckError> {
        keycheck::check_key(db, &self.secrets).await
    }

    /// Starts the delivery engine on `store`: the senders, the outcome writer and the poller.
    /// They stop when the runtime does.
    pub fn spawn(&self, store: hookbus_store::Store) -> Vec<tokio::task::JoinHandle<()>> {
        self.dispatcher.spawn(store, self.clone())
    }
}
