//! HTTP routes. Handlers here only translate between HTTP and the bus.

pub mod bus;
pub mod inbound;
pub mod ops;
pub mod partner;
pub mod providers;

/// Answers a method other than GET on a GET route: 405 with `Allow: GET`.
pub async fn only_get() -> actix_web::HttpResponse {
    crate::envelope::error_response(&hookbus_core::CommandError::MethodNotAllowed { allow: "GET".into() })
}

/// A fixed GET route; any other method is a 405.
pub fn get_only<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    actix_web::web::resource(path)
        .route(actix_web::web::get().to(handler))
        .default_service(actix_web::web::to(only_get))
}
