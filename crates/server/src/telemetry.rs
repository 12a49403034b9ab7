//! Structured logs through `tracing`: one line per request (its span closing), with the request id.

use std::io::IsTerminal;

use actix_web::{
    Error,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
};
use tracing::{Level, Span};
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder, root_span};
use tracing_subscriber::{EnvFilter, fmt::format::FmtSpan};

use crate::settings::{LogFormat, LogSettings};

/// Installs the global subscriber. Calling it again (as tests do) is harmless.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_new(&settings.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(std::io::stdout().is_terminal());
    let _ = match settings.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Each request's root span: tracing-actix-web's own, built only when the subscriber records
/// spans at `info` here. Its fields (connection info, the route pattern, the user agent) are
/// gathered before the span exists, whether or not anyone records it, which with request logging
/// off would be work for nothing on every request.
#[derive(Debug)]
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        if tracing::enabled!(kind: tracing::metadata::Kind::SPAN, Level::INFO) {
            root_span!(level = Level::INFO, request)
        } else {
            Span::none()
        }
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}
