//! `/healthz`, `/readyz` and `/metrics`.

use actix_web::{HttpResponse, web};
use hookbus_core::{CommandError, Envelope};
use serde_json::json;

use crate::{envelope::error_response, state::AppState};

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
