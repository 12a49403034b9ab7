use std::net::IpAddr;

use hookbus_configs::ConfigEntry;
use hookbus_core::CommandError;

/// The 404 for a key or path no configuration has.
pub fn not_found() -> CommandError {
    CommandError::not_found("Webhook configuration not found", "No webhook configuration matches this key or path")
}

/// Whether a request may run `entry`: enabled (else 404), the configured method (else 405 naming
/// it), and a client IP on the allow-list (else 403).
pub fn admit(entry: &ConfigEntry, method: &str, client: IpAddr) -> Result<(), CommandError> {
    if !entry.is_enabled {
        return Err(CommandError::not_found(
            "Webhook configuration is inactive",
            format!("Configuration '{}' is disabled", entry.key),
        ));
    }
    admit_caller(entry, method, client)
}

/// The caller's part of [`admit`]: the method and the allow-list, whether or not the
/// configuration is active (a dry run runs inactive ones too).
pub(crate) fn admit_caller(entry: &ConfigEntry, method: &str, client: IpAddr) -> Result<(), CommandError> {
    if !method.eq_ignore_ascii_case(entry.action.as_str()) {
        return Err(CommandError::MethodNotAllowed { allow: entry.action.as_str().to_owned() });
    }
    if !entry.allow_list.allows(client) {
        return Err(CommandError::Denied(format!("client IP {client} is not allowed to call this webhook")));
    }
    Ok(())
}
