//! `POST /api/bpm/cmd` and `GET /api/bpm/commands`.

use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, web};
use hookbus_core::{CommandError, Context, Envelope, parse_command, run_command};
use hookbus_tokens::TokenAuthority;
use schemars::JsonSchema;
use serde::Serialize;

use crate::{
    auth::authenticate,
    body::read_limited,
    envelope::{error_response, ok_response},
    state::AppState,
};

/// Runs the command in the body for the bearer token's principal.
pub async fn execute(request: HttpRequest, payload: web::Payload, state: web::Data<AppState>) -> HttpResponse {
    match execute_inner(&request, payload, &state).await {
        Ok(envelope) => ok_response(envelope),
        Err(error) => error_response(&error),
    }
}

async fn execute_inner(
    request: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<Envelope, CommandError> {
    let principal = authenticate(request, state.services.get::<TokenAuthority>()?).await?;
    let body = read_limited(request, payload, state.body_limits).await?;
    let command = parse_command(&body)?;
    let ctx = Context::new(principal, state.services.clone());
    let started = Instant::now();
    let result = run_command(command.as_ref(), &ctx).await;
    state.metrics.record_command(command.name(), result.is_ok(), started.elapsed());
    result.map(Envelope::from)
}

/// A command as `GET /api/bpm/commands` lists it.
#[derive(Serialize, JsonSchema)]
pub struct CommandDescription {
    pub name: &'static str,
    pub permission: hookbus_core::Permission,
    /// The JSON Schema of its fields.
    pub schema: serde_json::Value,
    /// The JSON Schema of what a success answers as `data`.
    pub answer: serde_json::Value,
}

/// Every registered command with its permission and the JSON Schemas of its fields and its answer.
pub async fn list(request: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let tokens = match state.services.get::<TokenAuthority>() {
        Ok(tokens) => tokens,
        Err(error) => return error_response(&error),
    };
    if let Err(error) = authenticate(&request, tokens).await {
        return error_response(&error);
    }
    let commands: Vec<CommandDescription> = hookbus_core::catalog()
        .into_iter()
        .map(|info| CommandDescription {
            name: info.name,
            permission: info.permission,
            schema: info.schema().to_value(),
            answer: info.answer().to_value(),
        })
        .collect();
    match serde_json::to_value(commands) {
        Ok(data) => ok_response(Envelope::ok(data, "Commands retrieved successfully")),
        Err(e) => error_response(&CommandError::internal(e)),
    }
}

/// Any method but POST on the bus.
pub async fn method_not_allowed() -> HttpResponse {
    error_response(&CommandError::MethodNotAllowed { allow: "POST".into() })
}
