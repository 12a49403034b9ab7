use serde::{Deserialize, Serialize};

use crate::{CommandError, Reply};

/// The body of every response of the bus, the router and the fixed routes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope {
    pub success: bool,
    pub data: serde_json::Value,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<String>>,
}

impl From<Reply> for Envelope {
    fn from(reply: Reply) -> Self {
        Self { success: true, data: reply.data, message: reply.message, errors: None }
    }
}

impl From<&CommandError> for Envelope {
    fn from(error: &CommandError) -> Self {
        Self { success: false, data: serde_json::Value::Null, message: error.message(), errors: Some(error.details()) }
    }
}
