use std::error::Error as StdError;

use uuid::Uuid;

use crate::Permission;

/// The client-facing error of a command: a small set of kinds, each with one HTTP status.
///
/// Causes stay on the server: [`CommandError::internal`] logs the full cause chain with an error id
/// and gives the client only that id.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// 400: the body is not a command at all (not JSON, not an object, `$type` missing or unknown).
    #[error("Invalid command: {0}")]
    InvalidCommand(String),
    /// 401: no token, or a token that is unknown, revoked or expired.
    #[error("Unauthorized")]
    Unauthorized,
    /// 403: the token is valid but lacks the command's permission.
    #[error("Forbidden: requires permission {0}")]
    Forbidden(Permission),
    /// 403: a route or process definition names commands its saver may not run; one entry per
    /// command, naming it and the permission it needs.
    #[error("Forbidden: {}", .0.join("; "))]
    ForbiddenCommands(Vec<String>),
    /// 403: refused for a reason other than a permission (e.g. the client IP).
    #[error("Forbidden: {0}")]
    Denied(String),
    /// 400: a request body that is not what its content type says (e.g. malformed JSON).
    #[error("Invalid request body: {0}")]
    InvalidBody(String),
    /// Another error, with the status of the inner one and a message saying where it happened
    /// (e.g. "Step 2 (GetX) failed"); the details are the inner message and details.
    #[error("{message}: {inner}")]
    Wrapped { message: String, inner: Box<CommandError> },
    /// A status chosen by a handler itself, e.g. a script's `reject(401, "bad signature")`.
    /// Statuses outside 400..=599 become 500.
    #[error("{message}")]
    Rejected { status: u16, message: String, errors: Vec<String> },
    /// 404: the entity does not exist (or belongs to another owner).
    #[error("{message}")]
    NotFound { message: String, errors: Vec<String> },
    /// 405: the route exists but not for this method; `allow` lists the methods it takes.
    #[error("Method not allowed")]
    MethodNotAllowed { allow: String },
    /// 409: the request conflicts with the current state (duplicate key, already active).
    #[error("{message}")]
    Conflict { message: String, errors: Vec<String> },
    /// 408: the body did not arrive within `server.body_read_timeout_ms`; the connection is closed.
    #[error("Request timeout")]
    RequestTimeout { after_ms: u64 },
    /// 413: the body is over the configured limit.
    #[error("Payload too large")]
    PayloadTooLarge { limit: usize },
    /// 422: one entry per failed rule, each naming its field.
    #[error("Validation failed: {}", .0.join("; "))]
    Validation(Vec<String>),
    /// 503: a dependency is down, or a route is not configured on this server.
    #[error("{0}")]
    Unavailable(String),
    /// 500: something failed on our side. Only the id reaches the client.
    #[error("Internal server error (error id {id})")]
    Internal { id: Uuid },
}

impl CommandError {
    pub fn not_found(message: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::NotFound { message: message.into(), errors: vec![detail.into()] }
    }

    pub fn conflict(message: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Conflict { message: message.into(), errors: vec![detail.into()] }
    }

    pub fn validation(detail: impl Into<String>) -> Self {
        Self::Validation(vec![detail.into()])
    }

    /// Logs `cause` with its whole source chain under a new error id, and returns an error that
    /// carries only that id.
    pub fn internal(cause: impl StdError) -> Self {
        let id = Uuid::now_v7();
        tracing::error!(error_id = %id, error = %error_chain(&cause), "internal error");
        Self::Internal { id }
    }

    /// The HTTP status this kind maps to.
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidCommand(_) | Self::InvalidBody(_) => 400,
            Self::Denied(_) | Self::ForbiddenCommands(_) => 403,
            Self::Wrapped { inner, .. } => inner.status(),
            Self::Rejected { status, .. } => {
                if (400..=599).contains(status) {
                    *status
                } else {
                    500
                }
            }
            Self::Unauthorized => 401,
            Self::Forbidden(_) => 403,
            Self::NotFound { .. } => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::Conflict { .. } => 409,
            Self::RequestTimeout { .. } => 408,
            Self::PayloadTooLarge { .. } => 413,
            Self::Validation(_) => 422,
            Self::Internal { .. } => 500,
            Self::Unavailable(_) => 503,
        }
    }

    /// The envelope's `message`.
    pub fn message(&self) -> String {
        match self {
            Self::InvalidCommand(_) => "Invalid command".into(),
            Self::Unauthorized => "Unauthorized".into(),
            Self::Forbidden(_) | Self::Denied(_) | Self::ForbiddenCommands(_) => "Forbidden".into(),
            Self::InvalidBody(_) => "Invalid request body".into(),
            Self::Wrapped { message, .. } => message.clone(),
            Self::NotFound { message, .. } | Self::Conflict { message, .. } | Self::Rejected { message, .. } => {
                message.clone()
            }
            Self::MethodNotAllowed { .. } => "Method not allowed".into(),
            Self::RequestTimeout { .. } => "Request timeout".into(),
            Self::PayloadTooLarge { .. } => "Payload too large".into(),
            Self::Validation(_) => "Validation failed".into(),
            Self::Unavailable(message) => message.clone(),
            Self::Internal { .. } => "Internal server error".into(),
        }
    }

    /// The envelope's `errors`.
    pub fn details(&self) -> Vec<String> {
        match self {
            Self::InvalidCommand(detail) => vec![detail.clone()],
            Self::Unauthorized => vec!["a valid bearer token is required".into()],
            Self::Forbidden(permission) => vec![format!("requires permission {permission}")],
            Self::Denied(detail) | Self::InvalidBody(detail) => vec![detail.clone()],
            Self::Wrapped { inner, .. } => std::iter::once(inner.message()).chain(inner.details()).collect(),
            Self::NotFound { errors, .. } | Self::Conflict { errors, .. } | Self::Rejected { errors, .. } => {
                errors.clone()
            }
            Self::MethodNotAllowed { allow } => vec![format!("allowed methods: {allow}")],
            Self::Unavailable(_) => Vec::new(),
            Self::PayloadTooLarge { limit } => vec![format!("body is larger than {limit} bytes")],
            Self::RequestTimeout { after_ms } => vec![format!("the body did not arrive within {after_ms} ms")],
            Self::Validation(errors) | Self::ForbiddenCommands(errors) => errors.clone(),
            Self::Internal { id } => vec![format!("error id {id}")],
        }
    }
}

impl CommandError {
    /// The error as a JSON value, for places that record an error rather than answer with it
    /// (a chain step that may fail, a process step log).
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({"status": self.status(), "message": self.message(), "errors": self.details()})
    }
}

/// An error and its sources, outermost first, joined by `": "`.
pub fn error_chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
