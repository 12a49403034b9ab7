//! The delivery engine's own errors. They keep their cause for the log; a command that meets one
//! turns it into a client error (an internal error with an id) at its edge.

use hookbus_core::CommandError;
use sea_orm::DbErr;

use crate::secret::Undecryptable;

#[derive(Debug, thiserror::Error)]
pub(crate) enum EngineError {
    #[error("the database failed")]
    Database(#[from] DbErr),
    #[error(transparent)]
    Secret(#[from] Undecryptable),
    #[error("an event's delivery body cannot be serialized")]
    Body(#[from] serde_json::Error),
}

impl From<EngineError> for CommandError {
    fn from(error: EngineError) -> Self {
        CommandError::internal(error)
    }
}
