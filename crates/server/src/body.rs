//! Reading request bodies within a size limit and a time limit.

use std::time::Duration;

use actix_web::{HttpRequest, http::header::CONTENT_LENGTH, web};
use futures_util::StreamExt;
use hookbus_core::CommandError;
use hookbus_providers::BodyDigest;

/// How much of a body may arrive, and how fast.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body accepted, in bytes (larger: 413).
    pub bytes: usize,
    /// How long the whole body may take to arrive (longer: 408, and the connection is closed).
    pub read_timeout: Duration,
}

/// Reads the body, refusing it (413) as soon as it is known to be over the size limit, and (408)
/// when it has not all arrived within the time limit: a client that trickles its body cannot hold
/// a connection and a handler for longer than that.
pub async fn read_limited(
    request: &HttpRequest,
    payload: web::Payload,
    limits: BodyLimits,
) -> Result<Vec<u8>, CommandError> {
    let declared = declared_length(request);
    if declared.is_some_and(|length| length > limits.bytes) {
        return Err(CommandError::PayloadTooLarge { limit: limits.bytes });
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    let read = read_chunks(payload, limits.bytes, |chunk| body.extend_from_slice(chunk));
    match tokio::time::timeout(limits.read_timeout, read).await {
        Ok(Ok(())) => Ok(body),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(timed_out(limits)),
    }
}

/// Reads the body of a request whose caller was not verified only to record its size and
/// SHA-256: within the same limits, keeping nothing of it.
pub async fn digest_body(payload: web::Payload, limits: BodyLimits) -> BodyDigest {
    let mut digest = BodyDigest::default();
    let read = read_chunks(payload, limits.bytes, |chunk| digest.update(chunk));
    let complete = matches!(tokio::time::timeout(limits.read_timeout, read).await, Ok(Ok(())));
    if complete { digest.completed() } else { digest }
}

/// Feeds the body's chunks to `take` until its end; past `limit` bytes, a 413.
async fn read_chunks(mut payload: web::Payload, limit: usize, mut take: impl FnMut(&[u8])) -> Result<(), CommandError> {
    let mut read = 0;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| CommandError::InvalidBody(format!("could not read the body: {e}")))?;
        read += chunk.len();
        if read > limit {
            return Err(CommandError::PayloadTooLarge { limit });
        }
        take(&chunk);
    }
    Ok(())
}

fn declared_length(request: &HttpRequest) -> Option<usize> {
    request.headers().get(CONTENT_LENGTH).and_then(|value| value.to_str().ok()).and_then(|value| value.parse().ok())
}

fn timed_out(limits: BodyLimits) -> CommandError {
    CommandError::RequestTimeout { after_ms: u64::try_from(limits.read_timeout.as_millis()).unwrap_or(u64::MAX) }
}
