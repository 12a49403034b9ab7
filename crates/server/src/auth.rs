//! Bearer-token authentication for the bus.

use actix_web::{HttpRequest, http::header::AUTHORIZATION};
use hookbus_core::{CommandError, Principal};
use hookbus_tokens::TokenAuthority;

/// The principal behind the request's `Authorization: Bearer` header.
pub async fn authenticate(request: &HttpRequest, tokens: &TokenAuthority) -> Result<Principal, CommandError> {
    let header = request.headers().get(AUTHORIZATION).and_then(|value| value.to_str().ok());
    let token = header
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or(CommandError::Unauthorized)?;
    tokens.authenticate(token).await
}
