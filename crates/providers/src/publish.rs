//! Publishing accepted notifications as outbound events: the one place this crate
//! hands anything to the events crate.

use hookbus_core::{CommandError, Services};
pub(crate) use hookbus_outbound::NewEvent;
use sha2::{Digest, Sha256};

/// The longest `eventId` the events crate takes.
const MAX_EVENT_ID: usize = 200;

/// Publishes `event`; returns the id it is stored under. Publishing an `eventId` again stores
/// nothing new and answers with the first.
pub(crate) async fn publish(services: &Services, event: NewEvent) -> Result<String, CommandError> {
    hookbus_outbound::publish(services, event).await.map(|published| published.event_id)
}

/// The event id of a notification, fixed by its provider and deduplication key, so that
/// publishing it again (a claim taken over from a request that died) stores nothing new. A key too
/// long for an event id is replaced by its SHA-256.
pub(crate) fn event_id(provider: &str, key: &str) -> String {
    let id = format!("{provider}:{key}");
    if id.len() <= MAX_EVENT_ID {
        id
    } else {
        format!("{provider}:sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
    }
}

/// The names among `names` that the event catalog does not know (a Mono event hookbus has not
/// heard of).
pub(crate) async fn unknown_names(services: &Services, names: &[&str]) -> Result<Vec<String>, CommandError> {
    let store = services.get::<hookbus_store::Store>()?;
    let mut unknown = Vec::new();
    for name in names {
        if hookbus_outbound::catalog::find(store.db(), name).await?.is_none() {
            unknown.push((*name).to_owned());
        }
    }
    Ok(unknown)
}
