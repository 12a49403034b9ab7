use std::collections::BTreeMap;

/// Headers whose values are secrets: never stored or logged.
const SECRET_HEADERS: [&str; 8] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "mono-webhook-secret",
    "x-api-key",
    "api-key",
    "x-auth-token",
];

pub const REDACTED: &str = "[redacted]";

/// Replaces the values of secret headers (names are lower-case already).
pub fn redact_headers(headers: &mut BTreeMap<String, String>) {
    for (name, value) in headers.iter_mut() {
        if SECRET_HEADERS.contains(&name.as_str()) {
            *value = REDACTED.to_owned();
        }
    }
}
