//! Configuration: read and checked once, at start, into [`Settings`]. Nothing reads the
//! environment after that.

use std::{net::SocketAddr, path::Path};

use figment::{
    Figment,
    providers::{Env, Format, Toml},
};
use hookbus_core::{Permission, PermissionSet};
use hookbus_outbound::OutboundSettings;
use hookbus_providers::ProviderSettings;
use hookbus_router::TrustedProxies;
use hookbus_script::ScriptLimits;
use serde::Deserialize;

/// The embedded defaults, every key commented.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// Environment variables with fixed names, and the key each sets.
const FIXED_ENV: [(&str, &str); 10] = [
    ("listen", "server.listen"),
    ("database_url", "database.url"),
    ("bootstrap_token", "auth.bootstrap_token"),
    ("outbound_allow_cidrs", "outbound.allow_cidrs"),
    ("outbound_allow_http", "outbound.allow_http"),
    ("trusted_proxies", "server.trusted_proxies"),
    ("mono_secret", "providers.mono.secret"),
    ("remita_merchant_id", "providers.remita.merchant_id"),
    ("remita_api_key", "providers.remita.api_key"),
    ("remita_base_url", "providers.remita.base_url"),
];

/// Fixed names whose values are taken as written. Figment reads other variables as TOML-like
/// values, so a secret or an id such as `0123` would become the number 123 and `true` a boolean.
const VERBATIM_ENV: [&str; 4] = ["bootstrap_token", "mono_secret", "remita_merchant_id", "remita_api_key"];

/// The shortest bootstrap token accepted: it is an admin token, so it must not be guessable.
const MIN_BOOTSTRAP_TOKEN: usize = 32;

/// Variables under the `HOOKBUS_` prefix that are not configuration keys.
const NOT_KEYS: [&str; 3] = ["config", "token", "url"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub script: ScriptLimits,
    pub router: RouterSettings,
    pub inbound: InboundSettings,
    pub processes: ProcessSettings,
    pub outbound: OutboundSettings,
    pub providers: ProviderSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSettings {
    pub lease_secs: u64,
    pub poll_ms: u64,
    pub supervised_wait_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundSettings {
    pub async_poll_ms: u64,
    pub async_lease_secs: u64,
    pub async_max_attempts: i32,
    pub async_retry_base_ms: u64,
    /// Queued requests an instance hands straight to its own worker in memory, waiting at most;
    /// 0 sends every one through the poll.
    pub async_handoff: usize,
    pub retention_days: u64,
    pub retention_sweep_secs: u64,
    /// Parts of header names that mark a secret: such headers are redacted before a request is
    /// stored or logged.
    #[serde(deserialize_with = "comma_list")]
    pub redact_headers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSettings {
    pub config_refresh_ms: u64,
    /// What the router's internal principal may do when it runs a configured command.
    #[serde(deserialize_with = "comma_list")]
    pub internal_permissions: Vec<String>,
}

impl RouterSettings {
    /// The parsed permissions; `check` has made sure every name is known.
    pub fn permissions(&self) -> PermissionSet {
        self.internal_permissions.iter().filter_map(|name| Permission::parse(name)).collect()
    }
}

/// A list given as a TOML array or, as environment variables must, as one comma-separated string.
fn comma_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        Many(Vec<String>),
        One(String),
    }
    Ok(match List::deserialize(deserializer)? {
        List::Many(items) => items,
        List::One(text) => text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub workers: usize,
    pub body_limit_bytes: usize,
    pub shutdown_timeout_secs: u64,
    /// How long an idle keep-alive connection is held open, in seconds; 0 turns keep-alive off.
    pub keep_alive_secs: u64,
    /// How long a request head may take from its first byte, in milliseconds (then 408 and the
    /// connection is closed), for every request on a connection.
    pub client_request_timeout_ms: u64,
    /// How long a request body may take to arrive, in milliseconds (then 408 and the connection is
    /// closed).
    pub body_read_timeout_ms: u64,
    /// Proxies whose `X-Forwarded-For` is believed: addresses and CIDR ranges.
    #[serde(deserialize_with = "comma_list")]
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub bootstrap_token: String,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bootstrap token is a secret: never print it.
        f.debug_struct("AuthSettings").field("bootstrap_token", &"<redacted>").finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// A setting that stops start-up; the message names the key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct SettingsError(String);

impl SettingsError {
    pub fn new(problem: impl Into<String>) -> Self {
        Self(problem.into())
    }
}

impl Settings {
    /// Defaults, then the `HOOKBUS_CONFIG` file if given, then the environment.
    pub fn load() -> Result<Self, SettingsError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Ok(path) = std::env::var("HOOKBUS_CONFIG") {
            if !Path::new(&path).is_file() {
                return Err(SettingsError(format!("HOOKBUS_CONFIG: no such file {path}")));
            }
            figment = figment.merge(Toml::file(path));
        }
        let figment = figment.merge(environment());
        let verbatim = verbatim_environment().fold(figment, |figment, (path, value)| figment.merge((path, value)));
        Self::extract(verbatim)
    }

    /// The embedded defaults alone, for tests and tools that set fields themselves.
    pub fn defaults() -> Result<Self, SettingsError> {
        Self::extract(Figment::from(Toml::string(DEFAULT_TOML)))
    }

    fn extract(figment: Figment) -> Result<Self, SettingsError> {
        let settings: Settings = figment.extract().map_err(describe)?;
        settings.check()?;
        Ok(settings)
    }

    /// Rules serde cannot express. `Application::build` checks again, so that settings changed in
    /// code are held to them too.
    pub fn check(&self) -> Result<(), SettingsError> {
        let url = &self.database.url;
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(SettingsError("database.url must start with sqlite:// or postgres://".into()));
        }
        if self.database.max_connections == 0 {
            return Err(SettingsError("database.max_connections must be at least 1".into()));
        }
        if let Err(problem) = TrustedProxies::parse(&self.server.trusted_proxies) {
            return Err(SettingsError(format!("server.trusted_proxies: {problem}")));
        }
        if let Some(unknown) = self.router.internal_permissions.iter().find(|name| Permission::parse(name).is_none()) {
            return Err(SettingsError(format!("router.internal_permissions: unknown permission '{unknown}'")));
        }
        if self.inbound.async_poll_ms == 0 || self.inbound.async_lease_secs == 0 {
            return Err(SettingsError("inbound.async_poll_ms and inbound.async_lease_secs must be at least 1".into()));
        }
        if self.processes.lease_secs == 0 || self.processes.poll_ms == 0 {
            return Err(SettingsError("processes.lease_secs and processes.poll_ms must be at least 1".into()));
        }
        if self.inbound.async_max_attempts < 1 {
            return Err(SettingsError("inbound.async_max_attempts must be at least 1".into()));
        }
        if self.router.config_refresh_ms == 0 {
            return Err(SettingsError("router.config_refresh_ms must be at least 1".into()));
        }
        if self.server.body_limit_bytes == 0 {
            return Err(SettingsError("server.body_limit_bytes must be at least 1".into()));
        }
        if self.server.client_request_timeout_ms == 0 || self.server.body_read_timeout_ms == 0 {
            return Err(SettingsError(
                "server.client_request_timeout_ms and server.body_read_timeout_ms must be at least 1: a client that \
                 never finishes its request would hold its connection for ever"
                    .into(),
            ));
        }
        let bootstrap = self.auth.bootstrap_token.chars().count();
        if bootstrap > 0 && bootstrap < MIN_BOOTSTRAP_TOKEN {
            return Err(SettingsError(format!(
                "auth.bootstrap_token (HOOKBUS_BOOTSTRAP_TOKEN) must be at least {MIN_BOOTSTRAP_TOKEN} characters: it is \
                 an admin token (e.g. `openssl rand -hex 32`)"
            )));
        }
        if let Err(problem) = hookbus_inbound::HeaderRedaction::new(&self.inbound.redact_headers) {
            return Err(SettingsError(format!("inbound.redact_headers: {problem}")));
        }
        let outbound = &self.outbound;
        if outbound.concurrency == 0
            || outbound.queue_capacity == 0
            || outbound.poll_ms == 0
            || outbound.lease_secs == 0
        {
            return Err(SettingsError(
                "outbound.concurrency, outbound.queue_capacity, outbound.poll_ms and outbound.lease_secs must be at least 1"
                    .into(),
            ));
        }
        if outbound.lease_secs.saturating_mul(1000) <= outbound.timeout_ms {
            return Err(SettingsError("outbound.lease_secs must be longer than outbound.timeout_ms".into()));
        }
        if !(1..=100).contains(&outbound.default_max_attempts)
            || !(1..=86_400).contains(&outbound.default_retry_interval_secs)
        {
            return Err(SettingsError(
                "outbound.default_max_attempts must be 1 to 100 and outbound.default_retry_interval_secs 1 to 86400"
                    .into(),
            ));
        }
        if !outbound.encryption_key.is_empty()
            && hookbus_outbound::secret::SecretBox::from_base64(&outbound.encryption_key).is_err()
        {
            return Err(SettingsError(format!("outbound.encryption_key: {}", hookbus_outbound::BadKey)));
        }
        self.providers.check().map_err(|bad| SettingsError(bad.to_string()))?;
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(SettingsError(format!("log.level: '{}' is not a valid filter", self.log.level)));
        }
        Ok(())
    }
}

/// One line per problem, each naming the key as `default.toml` spells it and where the value
/// came from.
fn describe(error: figment::Error) -> SettingsError {
    let lines: Vec<String> = error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".").to_ascii_lowercase();
            let source = e.metadata.as_ref().map(|m| m.name.to_string()).unwrap_or_else(|| "configuration".into());
            if key.is_empty() {
                format!("{} (from {source})", e.kind)
            } else {
                format!("{key}: {} (from {source})", e.kind)
            }
        })
        .collect();
    SettingsError(lines.join("; "))
}

/// `HOOKBUS_*` variables: the fixed names, and `HOOKBUS_<SECTION>__<KEY>` for the rest, except
/// those taken verbatim.
fn environment() -> Env {
    Env::prefixed("HOOKBUS_")
        .filter(|key| {
            let key = key.as_str().to_ascii_lowercase();
            !NOT_KEYS.contains(&key.as_str()) && !VERBATIM_ENV.contains(&key.as_str()) && !key.starts_with("test_")
        })
        .map(|key| match FIXED_ENV.iter().find(|(name, _)| key == *name) {
            Some((_, path)) => (*path).into(),
            None => key.as_str().replace("__", ".").into(),
        })
}

/// The [`VERBATIM_ENV`] variables that are set, each with the key it sets, as text.
fn verbatim_environment() -> impl Iterator<Item = (&'static str, String)> {
    FIXED_ENV
        .into_iter()
        .filter(|(name, _)| VERBATIM_ENV.contains(name))
        .filter_map(|(name, path)| Some((path, std::env::var(format!("HOOKBUS_{}", name.to_ascii_uppercase())).ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_defaults_are_valid() {
        let settings = Settings::defaults().ok();
        assert_eq!(settings.map(|s| s.server.listen.port()), Some(8080));
    }

    #[test]
    fn a_short_bootstrap_token_stops_start_up() {
        let short = Figment::from(Toml::string(DEFAULT_TOML)).merge(("auth.bootstrap_token", "change-me"));
        let error = Settings::extract(short).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("auth.bootstrap_token") && error.contains("32"), "{error}");
        let long = Figment::from(Toml::string(DEFAULT_TOML)).merge(("auth.bootstrap_token", "x".repeat(32)));
        assert!(Settings::extract(long).is_ok());
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let figment = Figment::from(Toml::string(DEFAULT_TOML)).merge(("server.listen", "not an address"));
        let error = Settings::extract(figment).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("server.listen"), "{error}");

        let figment = Figment::from(Toml::string(DEFAULT_TOML)).merge(("database.url", "mysql://x"));
        let error = Settings::extract(figment).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("database.url"), "{error}");

        let figment = Figment::from(Toml::string(DEFAULT_TOML)).merge(("server.wrokers", 3));
        let error = Settings::extract(figment).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("wrokers"), "{error}");
    }
}
