//! Publishing accepted notifications as outbound events (SPEC 5.1): the one place this crate
//! hands anything to the events crate.

use hookbus_core::{CommandError, Services};
use serde_json::Value;

/// An event to publish.
#[derive(Debug, Clone)]
pub(crate) struct NewEvent {
    pub event_name: String,
    pub resource: Option<String>,
    pub data: Value,
    /// Fixed by the notification's deduplication key, so that publishing it again (a claim taken
    /// over from a request that died) stores nothing new.
    pub event_id: Option<String>,
}

/// Publishes `event`; returns the id it is stored under.
//
// The events crate (hookbus-outbound) is being written on main; until it is merged this stores
// nothing and answers with the event's own id.
pub(crate) async fn publish(_services: &Services, event: NewEvent) -> Result<String, CommandError> {
    Ok(event.event_id.unwrap_or_default())
}
