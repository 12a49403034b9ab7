//! Reading request bodies with a limit.

use actix_web::{HttpRequest, http::header::CONTENT_LENGTH, web};
use futures_util::StreamExt;
use hookbus_core::CommandError;

/// Reads the body, refusing it (413) as soon as it is known to be over `limit`.
pub async fn read_limited(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Vec<u8>, CommandError> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(CommandError::PayloadTooLarge { limit });
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| CommandError::InvalidBody(format!("could not read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(CommandError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
