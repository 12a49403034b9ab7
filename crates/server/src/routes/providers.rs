//! The fixed provider routes' HTTP side. Registered before `/api/webhooks/{key}`, so they win over
//! the dynamic router; any method but POST is a 405.

use actix_web::{HttpRequest, HttpResponse, web};
use hookbus_providers::Route;
use serde_json::Value;

use crate::{
    body::{digest_body, read_limited},
    envelope::{error_response, ok_response},
    routes::{bus::method_not_allowed, inbound},
    state::AppState,
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

/// Verifies the caller from what arrives before the body (its IP, its secret header); only then
/// reads the body and hands the request to the providers crate, which parses and logs it. The
/// body of a refused request is read only to log its size and digest. A body over the limit is
/// still handed on (as the 413 it gets), to be logged.
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
    let mut inbound = inbound::inbound_request(&request, route.log_key(), client, Value::Null, &[]);
    let admitted = match hookbus_providers::admit(&state.services, route, &inbound) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            let body = digest_body(payload, state.body_limits).await;
            return error_response(&hookbus_providers::refuse(&state.services, route, inbound, body, refusal).await);
        }
    };
    let body = read_limited(&request, payload, state.body_limits).await;
    inbound.raw_body = String::from_utf8_lossy(body.as_deref().unwrap_or_default()).into_owned();
    match hookbus_providers::receive(&state.services, admitted, inbound, body).await {
        Ok(reply) => ok_response(reply.into()),
        Err(error) => error_response(&error),
    }
}
