//! Turning bus results into HTTP responses. Every response carries the envelope.

use actix_web::{
    HttpResponse,
    http::{StatusCode, header},
};
use hookbus_core::{CommandError, Envelope};

pub fn error_response(error: &CommandError) -> HttpResponse {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    match error {
        CommandError::MethodNotAllowed { allow } => {
            response.insert_header((header::ALLOW, allow.as_str()));
        }
        // The rest of the body may still be on its way: the connection cannot carry another
        // request.
        CommandError::RequestTimeout { .. } | CommandError::PayloadTooLarge { .. } => {
            response.force_close();
        }
        _ => {}
    }
    response.json(Envelope::from(error))
}

pub fn ok_response(envelope: Envelope) -> HttpResponse {
    HttpResponse::Ok().json(envelope)
}
