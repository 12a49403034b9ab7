//! The fixed provider routes' HTTP side (SPEC 4). Registered before `/api/webhooks/{key}`, so they
//! win over the dynamic router; any method but POST is a 405.

use actix_web::{HttpRequest, HttpResponse, web};
use hookbus_providers::Route;
use serde_json::Value;

use crate::{
    app::AppState,
    body::read_limited,
    envelope::{error_response, ok_response},
    routes::{bus::method_not_allowed, inbound},
};

/// Adds the three routes.
pub fn register(config: &mut web::ServiceConfig) {
    for route in Route::ALL {
        config.service(
            web::resource(route.path())
                .route(web::post().to(
                    move |request: HttpRequest, payload: web::Payload, state: web::Data<AppState>| {
                        receive(route, request, payload, state)
                    },
                ))
                .default_service(web::to(method_not_allowed)),
        );
    }
}

/// Hands the request to the providers crate, which verifies, parses and logs it. The body is read
/// within the limit; one over it is still handed on (as the 413 it gets), to be logged.
async fn receive(
    route: Route,
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let client = match inbound::client_ip(&request, &state) {
        Ok(client) => client,
        Err(error) => return error_response(&error),
    };
    let body = read_limited(&request, payload, state.body_limit).await;
    let raw = body.as_deref().unwrap_or_default();
    let inbound = inbound::inbound_request(&request, route.log_key(), client, Value::Null, raw);
    match hookbus_providers::receive(&state.services, route, inbound, body).await {
        Ok(reply) => ok_response(reply.into()),
        Err(error) => error_response(&error),
    }
}
