//! What becomes of each notification of a request: decided by dispatch, told by the answer.

use hookbus_core::CommandError;
use uuid::Uuid;

use crate::{claims::Seen, notification::Notification};

/// What became of one notification.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Published now, under this event id.
    Accepted { event_id: String },
    /// Taken before by the request logged as `first` (this one, for a repeat within a request).
    Duplicate { first: Uuid },
    /// Being published right now by the request logged as `first`.
    InProgress { first: Uuid },
    /// Remita says it is not paid: Remita's status code and message.
    NotPaid { status: String, message: String },
    /// Remita says it is paid, for another amount than the notification claims.
    AmountMismatch { notified: String, paid: String },
    /// Not processed; the provider should send it again.
    Failed(CommandError),
    /// Not published: its event name is not in the catalog. Acknowledged, so the provider does not
    /// send it again for days; registering the name and replaying the logged request publishes it.
    Ignored { reason: String },
}

/// A notification and what became of it (`None`: not decided yet).
#[derive(Debug)]
pub(crate) struct Item {
    pub notification: Notification,
    pub outcome: Option<Outcome>,
}

impl From<Seen> for Outcome {
    fn from(seen: Seen) -> Self {
        match seen {
            Seen::Published { first } => Self::Duplicate { first },
            Seen::InProgress { first } => Self::InProgress { first },
        }
    }
}
