//! `/healthz`, `/readyz`, `/metrics` and `/api/openapi.json`.

use actix_web::HttpRequest;
use actix_web::{HttpResponse, web};
use hookbus_core::{CommandError, Envelope};
use hookbus_store::Store;
use hookbus_tokens::TokenAuthority;
use serde_json::json;

use crate::{auth::authenticate, envelope::error_response, state::AppState};

/// The process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Envelope::ok(json!({"status": "ok"}), "OK"))
}

/// The database answers.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if hookbus_store::ping(&state.db).await {
        HttpResponse::Ok().json(Envelope::ok(json!({"status": "ready", "database": "ok"}), "Ready"))
    } else {
        error_response(&CommandError::Unavailable("Database unreachable".into()))
    }
}

pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(state.metrics.render())
}

/// The OpenAPI document, its `webhooks` listing the event catalog as it stands. Any valid token
/// may read it, as it may read `/api/bpm/commands`.
pub async fn openapi(request: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let document = async {
        authenticate(&request, state.services.get::<TokenAuthority>()?).await?;
        let events = hookbus_outbound::catalog::all(state.services.get::<Store>()?.db()).await?;
        Ok::<_, CommandError>(crate::openapi::document(&events))
    };
    match document.await {
        Ok(document) => HttpResponse::Ok().json(document),
        Err(error) => error_response(&error),
    }
}
