//! Structured logs through `tracing`: one line per request (its span closing), with the request id.

use std::io::IsTerminal;

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
